//! The upstream registry's access log, parsed. Distribution 2.8 writes one Apache combined-log
//! line per request, next to its logrus lines:
//!
//! ```text
//! 127.0.0.1 - - [28/Nov/2026:20:54:52 +0000] "GET /v2/foo/blobs/sha256:… HTTP/1.1" 200 157 "" "portcullis/0.1.0"
//! ```
//!
//! The line is written when the response has ended, so a request shows up once it is answered.

/// One request the upstream registry answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query.
    pub path: String,
    pub query: String,
    pub status: u16,
    pub user_agent: String,
}

impl Request {
    /// Whether portcullis sent it (rather than skopeo pushing a fixture).
    pub fn by_portcullis(&self) -> bool {
        self.user_agent.starts_with("portcullis/")
    }

    /// `"GET /v2/x/blobs/sha256:… -> 200"`, for assertion messages.
    pub fn line(&self) -> String {
        format!("{} {} -> {}", self.method, self.path, self.status)
    }
}

/// Parses one access-log line; `None` for the registry's other log lines.
pub fn parse_line(line: &str) -> Option<Request> {
    // `<host> <ident> <user> [<time>] "<request>" <status> <size> "<referer>" "<agent>"`
    let (_, rest) = line.split_once(" [")?;
    let (_, rest) = rest.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let mut parts = request.split(' ');
    let (method, target, proto) = (parts.next()?, parts.next()?, parts.next()?);
    if !proto.starts_with("HTTP/") || parts.next().is_some() {
        return None;
    }
    let mut fields = rest.splitn(3, ' ');
    let status = fields.next()?.parse().ok()?;
    let _size = fields.next()?;
    // `"<referer>" "<agent>"`: the referer (empty here) never holds `" "`.
    let tail = fields.next()?.trim_end();
    let (_referer, user_agent) = tail.strip_suffix('"')?.split_once("\" \"")?;
    let user_agent = user_agent.to_string();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        status,
        user_agent,
    })
}

/// Every request in a registry log, in the order they were answered.
pub fn parse(log: &str) -> Vec<Request> {
    log.lines().filter_map(parse_line).collect()
}

/// How many of `requests` were `method path` (path without query).
pub fn count(requests: &[Request], method: &str, path: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .count()
}

/// The requests as lines, for assertion messages.
pub fn lines(requests: &[Request]) -> String {
    requests
        .iter()
        .map(|r| format!("\n  {}", r.line()))
        .collect()
}

impl super::Registry {
    /// The requests portcullis sent this registry so far (fixture pushes left out).
    pub fn proxy_requests(&self) -> Vec<Request> {
        parse(&self.log_text())
            .into_iter()
            .filter(Request::by_portcullis)
            .collect()
    }

    /// How many times portcullis asked this registry for `method /v2/<repo>/blobs/<digest>`.
    pub fn blob_requests(&self, method: &str, repo: &str, digest: &str) -> usize {
        count(
            &self.proxy_requests(),
            method,
            &format!("/v2/{repo}/blobs/{digest}"),
        )
    }

    /// How many times portcullis asked this registry for `method /v2/<repo>/manifests/<reference>`.
    pub fn manifest_requests(&self, method: &str, repo: &str, reference: &str) -> usize {
        count(
            &self.proxy_requests(),
            method,
            &format!("/v2/{repo}/manifests/{reference}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_distribution_access_line() {
        let r = parse_line(
            r#"127.0.0.1 - - [28/Nov/2026:20:54:52 +0000] "GET /v2/foo/blobs/sha256:00?x=1 HTTP/1.1" 404 157 "" "portcullis/0.1.0""#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request {
                method: "GET".into(),
                path: "/v2/foo/blobs/sha256:00".into(),
                query: "x=1".into(),
                status: 404,
                user_agent: "portcullis/0.1.0".into(),
            }
        );
        assert!(r.by_portcullis());
        let r = parse_line(
            r#"127.0.0.1 - - [28/Nov/2026:20:54:52 +0000] "HEAD /v2/foo/manifests/bar HTTP/1.1" 200 93 "" "skopeo/1.9.3 (go \"x\")""#,
        )
        .unwrap();
        assert_eq!((r.method.as_str(), r.status), ("HEAD", 200));
        assert!(!r.by_portcullis());
    }

    #[test]
    fn skips_the_registrys_other_lines() {
        assert_eq!(
            parse_line(
                r#"time="2026-11-28T20:54:50Z" level=info msg="listening on 127.0.0.1:45123" go.version=go1.19.8"#
            ),
            None
        );
        assert_eq!(parse_line(""), None);
    }
}
