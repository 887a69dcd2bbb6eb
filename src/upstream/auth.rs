//! Upstream authentication: `WWW-Authenticate` challenges, the Bearer token flow and its cache.

use super::route::Upstream;
use crate::config::Secret;
use crate::gates::{Gate, Gates};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use url::Url;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased scheme: `bearer`, `basic`.
    pub scheme: String,
    pub params: HashMap<String, String>,
}

impl Challenge {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
}

/// Parses every challenge of one or more `WWW-Authenticate` values (RFC 9110 §11.6.1). A value
/// may carry several (`Basic realm="x", Bearer realm="y",service="z"`), as quay.io sends.
pub fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    for value in values {
        for item in split_outside_quotes(value) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            // "Scheme k=v", "Scheme", or "k=v" continuing the current challenge.
            let (head, rest) = match item.find(|c: char| c.is_whitespace()) {
                Some(i) => (&item[..i], item[i..].trim()),
                None => (item, ""),
            };
            if head.contains('=') {
                if let (Some(c), Some((k, v))) = (out.last_mut(), parse_param(item)) {
                    c.params.insert(k, v);
                }
                continue;
            }
            let mut c = Challenge {
                scheme: head.to_ascii_lowercase(),
                params: HashMap::new(),
            };
            if let Some((k, v)) = parse_param(rest) {
                c.params.insert(k, v);
            }
            out.push(c);
        }
    }
    out
}

fn parse_param(s: &str) -> Option<(String, String)> {
    let (k, v) = s.split_once('=')?;
    let v = v.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .map(|v| v.replace("\\\"", "\""))
        .unwrap_or_else(|| v.to_string());
    Some((k.trim().to_ascii_lowercase(), v))
}

fn split_outside_quotes(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Whether the upstream's credentials may go to a token service at `realm`: its own host, a host
/// of the same registrable domain (per the Public Suffix List, so `auth.example.co.uk` goes with
/// `registry.example.co.uk` but two hosts under `co.uk`, `s3.amazonaws.com` or `github.io` never
/// share a site; never for IP addresses), or one configured in `auth_hosts`. Anything else gets
/// an anonymous token request, so a hostile challenge cannot harvest credentials.
pub fn realm_allowed(upstream: &Upstream, realm: &Url) -> bool {
    let normal = |h: &str| h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    let Some(realm_host) = realm.host_str().map(normal) else {
        return false;
    };
    let up_host = normal(upstream.base.host_str().unwrap_or(""));
    if realm_host == up_host || upstream.auth_hosts.iter().any(|h| normal(h) == realm_host) {
        return true;
    }
    let is_name = |u: &Url| matches!(u.host(), Some(url::Host::Domain(_)));
    if !is_name(realm) || !is_name(&upstream.base) {
        return false;
    }
    match (psl::domain_str(&realm_host), psl::domain_str(&up_host)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The token endpoint's answer. One of `token`/`access_token` is present.
#[derive(Debug, serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<(Secret, Duration)> {
        let token = self.token.or(self.access_token).filter(|t| !t.is_empty())?;
        // The spec's default lifetime is 60 s; GHCR sends none.
        let ttl = Duration::from_secs(self.expires_in.unwrap_or(60).max(1));
        Some((Secret::new(token), ttl))
    }
}

/// Bearer tokens per (upstream, scope), kept until shortly before they expire.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<(String, String), (Secret, Instant)>>,
    /// The last Bearer challenge each upstream sent, so new scopes get a token without a 401 first.
    challenges: Mutex<HashMap<String, Challenge>>,
    /// One token request per (upstream, scope) at a time: concurrent first pulls of a repository
    /// wait for the one request rather than each asking the token service.
    gates: Gates<(String, String)>,
}

/// Tokens are dropped this long before their stated expiry, to allow for clock and transit time.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

impl TokenCache {
    pub fn get(&self, upstream: &str, scope: &str) -> Option<Secret> {
        let mut tokens = self.tokens.lock().unwrap();
        let key = (upstream.to_string(), scope.to_string());
        match tokens.get(&key) {
            Some((t, until)) if Instant::now() < *until => Some(t.clone()),
            Some(_) => {
                tokens.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, upstream: &str, scope: &str, token: Secret, ttl: Duration) {
        let until = Instant::now()
            + ttl
                .saturating_sub(EXPIRY_MARGIN)
                .max(Duration::from_secs(1));
        let mut tokens = self.tokens.lock().unwrap();
        // Expired entries are swept on insert so the map stays as small as the live scopes.
        let now = Instant::now();
        tokens.retain(|_, (_, u)| *u > now);
        tokens.insert((upstream.to_string(), scope.to_string()), (token, until));
    }

    /// The lock a token request for (upstream, scope) holds.
    pub fn gate(&self, upstream: &str, scope: &str) -> Gate {
        self.gates.gate((upstream.to_string(), scope.to_string()))
    }

    pub fn forget(&self, upstream: &str, scope: &str) {
        self.tokens
            .lock()
            .unwrap()
            .remove(&(upstream.to_string(), scope.to_string()));
    }

    pub fn challenge(&self, upstream: &str) -> Option<Challenge> {
        self.challenges.lock().unwrap().get(upstream).cloned()
    }

    pub fn remember_challenge(&self, upstream: &str, c: Challenge) {
        self.challenges
            .lock()
            .unwrap()
            .insert(upstream.to_string(), c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = parse_challenges([
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        ]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
    }

    #[test]
    fn parses_several_challenges_in_one_value_and_across_values() {
        let c = parse_challenges([
            r#"Basic realm="quay.io", Bearer realm="https://quay.io/v2/auth",service="quay.io""#,
        ]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("quay.io"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("service"), Some("quay.io"));
        let c = parse_challenges([
            "Basic realm=x",
            "Bearer realm=\"y\", error=\"insufficient_scope\"",
        ]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
        assert_eq!(parse_challenges(["Negotiate"])[0].scheme, "negotiate");
    }

    fn upstream(url: &str, auth_hosts: &[&str]) -> Upstream {
        Upstream {
            host: "x".into(),
            base: Url::parse(url).unwrap(),
            credentials: None,
            auth_hosts: auth_hosts.iter().map(|s| s.to_string()).collect(),
            official_prefix: false,
            redirects: Default::default(),
        }
    }

    #[test]
    fn credentials_go_only_to_related_realms() {
        let hub = upstream("https://registry-1.docker.io", &[]);
        assert!(realm_allowed(
            &hub,
            &Url::parse("https://auth.docker.io/token").unwrap()
        ));
        assert!(!realm_allowed(
            &hub,
            &Url::parse("https://evil.example/token").unwrap()
        ));
        assert!(!realm_allowed(
            &hub,
            &Url::parse("https://docker.io.evil.example/t").unwrap()
        ));
        let local = upstream("http://127.0.0.1:5001", &[]);
        assert!(realm_allowed(
            &local,
            &Url::parse("http://127.0.0.1:6000/token").unwrap()
        ));
        assert!(!realm_allowed(
            &local,
            &Url::parse("http://127.0.0.2:6000/token").unwrap()
        ));
        let listed = upstream("https://r.example", &["auth.other.example"]);
        assert!(realm_allowed(
            &listed,
            &Url::parse("https://auth.other.example/t").unwrap()
        ));
    }

    fn same_site(registry: &str, realm: &str) -> bool {
        realm_allowed(
            &upstream(&format!("https://{registry}"), &[]),
            &Url::parse(&format!("https://{realm}/token")).unwrap(),
        )
    }

    #[test]
    fn the_registrable_domain_comes_from_the_public_suffix_list() {
        assert!(same_site("registry.example.co.uk", "auth.example.co.uk"));
        assert!(same_site("registry.example.co.uk", "auth.EXAMPLE.co.uk."));
        // Two registrants under one public suffix are two sites.
        assert!(!same_site("registry.example.co.uk", "auth.evil.co.uk"));
        assert!(!same_site("example.co.uk", "co.uk"));
        assert!(!same_site("co.uk", "evil.co.uk"));
        // AWS suffixes on the list: every bucket, load balancer and instance is its own site.
        assert!(!same_site("reg.s3.amazonaws.com", "evil.s3.amazonaws.com"));
        assert!(!same_site(
            "reg.us-east-1.elb.amazonaws.com",
            "evil.us-east-1.elb.amazonaws.com"
        ));
        assert!(!same_site(
            "ec2-1-2-3-4.eu-west-1.compute.amazonaws.com",
            "ec2-5-6-7-8.eu-west-1.compute.amazonaws.com"
        ));
        assert!(!same_site("a.github.io", "b.github.io"));
        assert!(same_site("registry-1.docker.io", "auth.docker.io"));
        assert!(same_site("ghcr.io", "ghcr.io"));
        // IP addresses match only themselves; a single label has no registrable domain.
        assert!(!same_site("10.0.0.1", "10.0.0.2"));
        assert!(!same_site("registry", "auth"));
        let v6 = upstream("http://[::1]:5000", &[]);
        assert!(realm_allowed(
            &v6,
            &Url::parse("http://[::1]:5001/t").unwrap()
        ));
        assert!(!realm_allowed(&v6, &Url::parse("http://[::2]/t").unwrap()));
    }

    #[test]
    fn token_response_defaults_to_sixty_seconds() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"abc"}"#).unwrap();
        let (tok, ttl) = t.into_token().unwrap();
        assert_eq!(tok.expose(), "abc");
        assert_eq!(ttl, Duration::from_secs(60));
        let t: TokenResponse = serde_json::from_str(r#"{"token":"","expires_in":300}"#).unwrap();
        assert!(t.into_token().is_none());
    }

    #[test]
    fn cache_expires_tokens() {
        let c = TokenCache::default();
        c.put("u", "s", Secret::new("t"), Duration::from_secs(300));
        assert_eq!(c.get("u", "s").unwrap().expose(), "t");
        assert!(c.get("u", "other").is_none());
        c.put("u", "short", Secret::new("t2"), Duration::from_millis(1));
        // A 1 ms lifetime is raised to the 1 s floor, then it lapses.
        assert!(c.get("u", "short").is_some());
        c.forget("u", "s");
        assert!(c.get("u", "s").is_none());
    }
}
