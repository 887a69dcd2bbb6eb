//! portcullis's access log, parsed: one `"response"` JSON line per request, with the request
//! span's fields (method, path, query, upstream, repo) and the answer's status and outcome.

use serde_json::Value;

/// One request as portcullis logged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub outcome: String,
    pub upstream: String,
    pub repo: String,
}

impl Logged {
    /// Whether the query string holds `key=value` as one of its `&`-separated pairs.
    pub fn has_query(&self, key: &str, value: &str) -> bool {
        url::form_urlencoded::parse(self.query.as_bytes()).any(|(k, v)| k == key && v == value)
    }

    /// `"HEAD /v2/x/manifests/v1?ns=docker.io -> 200"`, for assertion messages.
    pub fn line(&self) -> String {
        let q = if self.query.is_empty() {
            String::new()
        } else {
            format!("?{}", self.query)
        };
        format!("{} {}{q} -> {}", self.method, self.path, self.status)
    }
}

/// Every request in a portcullis JSON log, in the order the responses ended.
pub fn parse(log: &str) -> Vec<Logged> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["message"] == "response")
        .map(|v| {
            let span = &v["span"];
            Logged {
                method: s(&span["method"]),
                path: s(&span["path"]),
                query: s(&span["query"]),
                status: v["status"].as_u64().unwrap_or(0) as u16,
                outcome: s(&v["outcome"]),
                upstream: s(&span["upstream"]),
                repo: s(&span["repo"]),
            }
        })
        .collect()
}

impl super::Portcullis {
    /// The requests logged so far.
    pub fn requests(&self) -> Vec<Logged> {
        parse(&self.log_text())
    }
}
