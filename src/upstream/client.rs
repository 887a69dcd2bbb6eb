//! The HTTP client for upstream registries: auth, timeouts, retries with backoff, redirects
//! (followed here, hop by hop, under the rules of [`super::egress`]).

use super::auth::{parse_challenges, realm_allowed, Challenge, TokenCache, TokenResponse};
use super::egress::{self, EgressResolver, Refusal, MAX_REDIRECTS};
use super::route::{Route, Upstream};
use crate::config::UpstreamSettings;
use bytes::Bytes;
use futures_util::Stream;
use http::header::{AUTHORIZATION, LOCATION, RETRY_AFTER, USER_AGENT, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Why an upstream request produced no response at all. An upstream that answers, even with an
/// error status, yields a response instead: the caller decides what that status means.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach upstream {host}: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("upstream {host} sent no response within {secs} s")]
    Timeout { host: String, secs: u64 },
    #[error("token service of upstream {host}: {reason}")]
    Auth { host: String, reason: String },
    /// The token service refused (401/403), e.g. wrong credentials: retrying cannot help.
    #[error("token service of upstream {host} refused access: {reason}")]
    AuthDenied { host: String, reason: String },
    /// The upstream pointed somewhere portcullis does not go (a redirect of a manifest, a
    /// redirect or token realm to a host that is not allowed). `reason` names no URL.
    #[error("upstream {host} {reason}")]
    Refused { host: String, reason: String },
}

pub struct UpstreamClient {
    http: reqwest::Client,
    settings: UpstreamSettings,
    tokens: TokenCache,
    resolver: EgressResolver,
}

const UA: &str = concat!("portcullis/", env!("CARGO_PKG_VERSION"));

/// The most of a token service's answer (success or refusal) that is read.
const MAX_TOKEN_BODY: usize = 64 * 1024;

/// Why one exchange (a request and the redirects it is allowed to follow) produced no response.
enum Exchange {
    Http(reqwest::Error),
    Refused(Refusal),
}

impl UpstreamClient {
    pub fn new(settings: UpstreamSettings) -> Result<Self, reqwest::Error> {
        let resolver = EgressResolver::default();
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout())
            // No client-wide read_timeout: reqwest applies it to the wait for the response head
            // too, which would cut first_byte_timeout short. Bodies go through `idle_body`.
            // Redirects are followed by `exchange`, which decides per hop whether to go at all
            // and whether `Authorization` goes along.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(resolver.clone()))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        Ok(UpstreamClient {
            http,
            settings,
            tokens: TokenCache::default(),
            resolver,
        })
    }

    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// Sends `method /v2/<repo>/<rest>?<query>` to the route's upstream, authenticating as the
    /// upstream asks, retrying connect errors, timeouts, 5xx and 429 with backoff. Returns the
    /// upstream's response whatever its status once one arrives within the attempts.
    ///
    /// Redirects are followed only for blob reads (`GET`/`HEAD blobs/<digest>`, or every read of
    /// an upstream with `redirect_all_requests`), at most [`MAX_REDIRECTS`] hops, each to the
    /// upstream's own origin (with its `Authorization`) or to a host its `redirect_hosts` allow
    /// (without it); a redirect of anything else, or to anywhere else, is
    /// [`UpstreamError::Refused`] and nothing is read from its target.
    pub async fn send(
        &self,
        route: &Route,
        method: Method,
        rest: &str,
        query: Option<&str>,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, UpstreamError> {
        let up = &route.upstream;
        self.resolver.admit(up);
        let mut url = up.url(&route.repo, rest);
        url.set_query(query);
        let follow = up.redirects.followed(&method, rest);
        let scope = format!("repository:{}:pull", route.repo);
        let attempts = self.settings.attempts;
        let mut attempt = 0;
        let mut reauthenticated = false;
        let mut backoff = Duration::from_millis(self.settings.backoff_ms);
        loop {
            attempt += 1;
            let last = attempt >= attempts;
            let auth = self.authorization(up, &scope).await?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .header(USER_AGENT, UA);
            if let Some(auth) = &auth {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            let exchange = self.exchange(up, request, &method, &headers, &url, &auth, follow);
            let outcome = tokio::time::timeout(self.settings.first_byte_timeout(), exchange).await;
            let (response, redirected) = match outcome {
                Err(_) if !last => {
                    tracing::warn!(upstream = %up.host, attempt, "upstream timed out; retrying");
                    sleep_backoff(&mut backoff).await;
                    continue;
                }
                Err(_) => {
                    return Err(UpstreamError::Timeout {
                        host: up.host.clone(),
                        secs: self.settings.first_byte_timeout_seconds,
                    })
                }
                Ok(Err(Exchange::Http(e))) if egress::refused_by_resolver(&e) => {
                    return Err(UpstreamError::Refused {
                        host: up.host.clone(),
                        reason: "redirected to a host that resolves to a loopback, private or link-local address".into(),
                    })
                }
                Ok(Err(Exchange::Http(e)))
                    if !last && (e.is_connect() || e.is_timeout() || e.is_request()) =>
                {
                    tracing::warn!(upstream = %up.host, attempt, error = %describe(e), "upstream unreachable; retrying");
                    sleep_backoff(&mut backoff).await;
                    continue;
                }
                Ok(Err(Exchange::Http(e))) => {
                    return Err(UpstreamError::Unreachable {
                        host: up.host.clone(),
                        reason: describe(e),
                    })
                }
                Ok(Err(Exchange::Refused(Refusal::Unresolved(reason)))) if !last => {
                    tracing::warn!(upstream = %up.host, attempt, error = %reason, "redirect target unresolved; retrying");
                    sleep_backoff(&mut backoff).await;
                    continue;
                }
                Ok(Err(Exchange::Refused(Refusal::Unresolved(reason)))) => {
                    return Err(UpstreamError::Unreachable {
                        host: up.host.clone(),
                        reason,
                    })
                }
                Ok(Err(Exchange::Refused(Refusal::Forbidden(reason)))) => {
                    return Err(UpstreamError::Refused {
                        host: up.host.clone(),
                        reason,
                    });
                }
                Ok(Ok(r)) => r,
            };
            let status = response.status();
            // A challenge is the upstream's own: a 401 from a redirect target (a CDN) is not
            // answered with the upstream's credentials.
            if status == StatusCode::UNAUTHORIZED && !reauthenticated && !redirected {
                let challenges = parse_challenges(
                    response
                        .headers()
                        .get_all(WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok()),
                );
                if let Some(c) = pick_challenge(&challenges, up) {
                    reauthenticated = true;
                    attempt -= 1; // answering a challenge is not a failed attempt
                                  // Only the token this request sent was refused: one another request fetched
                                  // meanwhile (this one went out anonymous, say) is kept.
                    if self
                        .tokens
                        .get(&up.host, &scope)
                        .is_some_and(|t| Some(bearer(t.expose())) == auth)
                    {
                        self.tokens.forget(&up.host, &scope);
                    }
                    self.tokens.remember_challenge(&up.host, c);
                    continue;
                }
            }
            if (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) && !last {
                let wait = retry_after(response.headers());
                match wait {
                    Some(w) if w > Duration::from_secs(self.settings.max_retry_after_seconds) => {
                        return Ok(response)
                    }
                    Some(w) => tokio::time::sleep(w).await,
                    None => sleep_backoff(&mut backoff).await,
                }
                tracing::warn!(upstream = %up.host, attempt, %status, "upstream answered with a retryable status; retrying");
                continue;
            }
            return Ok(response);
        }
    }

    /// Sends `first` and follows the redirects it may (see [`Self::send`]); `true` when the
    /// response came from a redirect target.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        up: &Upstream,
        first: reqwest::RequestBuilder,
        method: &Method,
        headers: &HeaderMap,
        url: &Url,
        auth: &Option<HeaderValue>,
        follow: bool,
    ) -> Result<(reqwest::Response, bool), Exchange> {
        let mut response = first.send().await.map_err(Exchange::Http)?;
        let mut current = url.clone();
        let mut hops = 0;
        while is_redirect(response.status()) {
            let forbidden = |why: String| Err(Exchange::Refused(Refusal::Forbidden(why)));
            if !follow {
                let what = url.path().rsplit('/').nth(1).unwrap_or("");
                let what = match what {
                    "manifests" => "a manifest",
                    "tags" => "a tag list",
                    "referrers" => "a referrers",
                    _ => "a",
                };
                return forbidden(format!(
                    "answered {what} request with a redirect ({}), which portcullis follows only for blob downloads",
                    response.status().as_u16()
                ));
            }
            hops += 1;
            if hops > MAX_REDIRECTS {
                return forbidden(format!("redirected more than {MAX_REDIRECTS} times"));
            }
            let target = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| current.join(l).ok());
            let Some(target) = target else {
                return forbidden("redirected without a valid Location".into());
            };
            let hop = match egress::check_redirect(up, &current, &target).await {
                Ok(hop) => hop,
                Err(refusal) => {
                    // The host only: the path and query of a signed URL are secrets.
                    tracing::warn!(upstream = %up.host, target = %target.host_str().unwrap_or(""), "refused a redirect");
                    return Err(Exchange::Refused(refusal));
                }
            };
            let mut request = self
                .http
                .request(method.clone(), target.clone())
                .headers(headers.clone())
                .header(USER_AGENT, UA);
            if hop.same_origin {
                if let Some(auth) = auth {
                    request = request.header(AUTHORIZATION, auth.clone());
                }
            }
            response = request.send().await.map_err(Exchange::Http)?;
            current = target;
        }
        Ok((response, hops > 0))
    }

    /// The `Authorization` value for a request: a cached token, a new token when the upstream is
    /// known to want one, Basic when it asked for Basic, or nothing (anonymous first try).
    async fn authorization(
        &self,
        up: &Upstream,
        scope: &str,
    ) -> Result<Option<HeaderValue>, UpstreamError> {
        if let Some(t) = self.tokens.get(&up.host, scope) {
            return Ok(Some(bearer(t.expose())));
        }
        let Some(challenge) = self.tokens.challenge(&up.host) else {
            return Ok(None);
        };
        match challenge.scheme.as_str() {
            "bearer" => {
                let gate = self.tokens.gate(&up.host, scope);
                let _one_at_a_time = gate.lock().await;
                // Whoever held the gate before may have fetched it.
                if let Some(t) = self.tokens.get(&up.host, scope) {
                    return Ok(Some(bearer(t.expose())));
                }
                let token = self.fetch_token(up, &challenge, scope).await?;
                Ok(Some(bearer(&token)))
            }
            "basic" => Ok(up
                .credentials
                .as_ref()
                .map(|c| basic(&c.username, c.password.expose()))),
            _ => Ok(None),
        }
    }

    async fn fetch_token(
        &self,
        up: &Upstream,
        challenge: &Challenge,
        scope: &str,
    ) -> Result<String, UpstreamError> {
        let auth_err = |reason: String| UpstreamError::Auth {
            host: up.host.clone(),
            reason,
        };
        let realm = challenge
            .param("realm")
            .ok_or_else(|| auth_err("challenge has no realm".into()))?;
        let mut url = Url::parse(realm)
            .map_err(|e| auth_err(format!("challenge realm is not a URL: {e}")))?;
        if let Err(refusal) = egress::check_realm(up, &url).await {
            tracing::warn!(upstream = %up.host, realm = %url.host_str().unwrap_or(""), "refused a token realm");
            return Err(match refusal {
                Refusal::Forbidden(reason) => UpstreamError::Refused {
                    host: up.host.clone(),
                    reason,
                },
                Refusal::Unresolved(reason) => auth_err(reason),
            });
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                q.append_pair("service", service);
            }
            q.append_pair("scope", scope);
        }
        let mut request = self.http.get(url.clone()).header(USER_AGENT, UA);
        match &up.credentials {
            Some(c) if realm_allowed(up, &url) => {
                request = request.header(AUTHORIZATION, basic(&c.username, c.password.expose()));
            }
            Some(_) => {
                tracing::warn!(upstream = %up.host, realm = %url.host_str().unwrap_or(""),
                    "token realm is not the upstream's host or domain: asking anonymously (list it in auth_hosts to send credentials)");
            }
            None => {}
        }
        let response = tokio::time::timeout(self.settings.first_byte_timeout(), request.send())
            .await
            .map_err(|_| auth_err("timed out".into()))?
            .map_err(|e| match egress::refused_by_resolver(&e) {
                true => UpstreamError::Refused {
                    host: up.host.clone(),
                    reason: "named a token realm that resolves to a loopback, private or link-local address (list its host in auth_hosts to allow it)".into(),
                },
                false => auth_err(describe(e)),
            })?;
        let status = response.status();
        let idle = self.settings.idle_timeout();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            // Docker Hub says why in `details`, distribution-style services in `errors`.
            let body = read_capped(response, MAX_TOKEN_BODY, idle)
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .unwrap_or_default();
            let why = body["details"]
                .as_str()
                .or(body["errors"][0]["message"].as_str());
            let reason = match why {
                Some(why) => format!("answered {status}: {}", upstream_text(why)),
                None => format!("answered {status}"),
            };
            return Err(UpstreamError::AuthDenied {
                host: up.host.clone(),
                reason,
            });
        }
        if is_redirect(status) {
            return Err(auth_err(format!(
                "answered {status}: a redirect, which is never followed for a token"
            )));
        }
        if !status.is_success() {
            return Err(auth_err(format!("answered {status}")));
        }
        let body = read_capped(response, MAX_TOKEN_BODY, idle)
            .await
            .map_err(|e| auth_err(format!("token response: {e}")))?;
        let body: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| auth_err(format!("unreadable token response: {e}")))?;
        let (token, ttl) = body
            .into_token()
            .ok_or_else(|| auth_err("token response carries no token".into()))?;
        let value = token.expose().to_string();
        self.tokens.put(&up.host, scope, token, ttl);
        Ok(value)
    }
}

/// Bearer is preferred when offered with Basic; Basic only helps when credentials are configured.
fn pick_challenge(challenges: &[Challenge], up: &Upstream) -> Option<Challenge> {
    challenges
        .iter()
        .find(|c| c.scheme == "bearer" && c.param("realm").is_some())
        .or_else(|| {
            challenges
                .iter()
                .find(|c| c.scheme == "basic" && up.credentials.is_some())
        })
        .cloned()
}

fn bearer(token: &str) -> HeaderValue {
    let mut v =
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or(HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

fn basic(user: &str, password: &str) -> HeaderValue {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut v =
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or(HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

async fn sleep_backoff(backoff: &mut Duration) {
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
}

/// Reads a whole body, refusing one longer than `cap` without buffering past it, or one that
/// stalls for `idle`.
pub async fn read_capped(
    response: reqwest::Response,
    cap: usize,
    idle: Duration,
) -> Result<Bytes, String> {
    let mut buf = bytes::BytesMut::new();
    let mut stream = idle_body(response, idle);
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > cap {
            return Err(format!("body larger than {cap} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// An upstream response body as a stream of chunks, with errors as text.
pub type UpstreamBody = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// A response body that fails once no byte has arrived for `idle`: a stalled upstream is
/// abandoned after this long, however long the whole transfer takes.
pub fn idle_body(response: reqwest::Response, idle: Duration) -> UpstreamBody {
    Box::pin(IdleBody {
        inner: Box::pin(response.bytes_stream()),
        idle,
        last: tokio::time::Instant::now(),
        timer: Box::pin(tokio::time::sleep(idle)),
        done: false,
    })
}

/// An upstream body that fails once no byte has arrived for `idle`. The timer is not reset per
/// chunk (a blob is tens of thousands of chunks): each chunk only notes the time, and when the
/// timer fires it is moved to the last chunk's time plus `idle`, or ends the body.
struct IdleBody {
    inner:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    idle: Duration,
    last: tokio::time::Instant,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl futures_util::Stream for IdleBody {
    type Item = Result<bytes::Bytes, String>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.last = tokio::time::Instant::now();
                return Poll::Ready(Some(Ok(chunk)));
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                return Poll::Ready(Some(Err(describe(e))));
            }
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        loop {
            if std::future::Future::poll(self.timer.as_mut(), cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.last + self.idle;
            if tokio::time::Instant::now() >= deadline {
                self.done = true;
                return Poll::Ready(Some(Err(format!(
                    "upstream sent nothing for {} s",
                    self.idle.as_secs()
                ))));
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// Whether a status is a redirect to follow (or refuse): 301, 302, 303, 307, 308. (300 and 304
/// name no one target and are unexpected answers.)
fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// A reqwest error as text for clients and logs: without its URL (an upstream URL, or a redirect
/// target whose query is a CDN's signature), with its causes.
pub fn describe(e: reqwest::Error) -> String {
    error_chain(&e.without_url())
}

/// An error with its causes, which is where reqwest keeps the useful part ("connection refused").
/// Any URL a cause still carries is cut to its scheme and host.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    redact_urls(&s, false)
}

/// Text written by an upstream (an error message), as passed on: any URL in it keeps its path
/// but loses its query and fragment, where signed URLs keep their grant.
pub fn upstream_text(s: &str) -> String {
    redact_urls(s, true)
}

/// Cuts every `http://` or `https://` URL in `s` down to scheme and host (and path when
/// `keep_path`).
fn redact_urls(s: &str, keep_path: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let scheme_start = rest[..i]
            .rfind(|c: char| !c.is_ascii_alphanumeric())
            .map_or(0, |j| j + 1);
        let scheme = &rest[scheme_start..i];
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            out.push_str(&rest[..i + 3]);
            rest = &rest[i + 3..];
            continue;
        }
        out.push_str(&rest[..i + 3]);
        let after = &rest[i + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ','))
            .unwrap_or(after.len());
        let url = &after[..end];
        let host_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let kept_end = match keep_path {
            true => url.find(['?', '#']).unwrap_or(url.len()),
            false => host_end,
        };
        out.push_str(&url[..kept_end]);
        if kept_end < url.len() {
            out.push_str(if keep_path { "?…" } else { "/…" });
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(100);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(95) && d <= Duration::from_secs(100),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn urls_in_error_text_lose_their_secrets() {
        let e = "error sending request for url (https://cdn.example/blobs/sha256:ab?X-Amz-Signature=s3cr3t&x=1): connection refused";
        let text = redact_urls(e, false);
        assert_eq!(
            text,
            "error sending request for url (https://cdn.example/…): connection refused"
        );
        let msg = "too many requests, see https://www.docker.com/increase-rate-limit?utm=x, or http://a.example";
        assert_eq!(
            upstream_text(msg),
            "too many requests, see https://www.docker.com/increase-rate-limit?…, or http://a.example"
        );
        assert_eq!(
            redact_urls("no url: ftp://x/y?z", false),
            "no url: ftp://x/y?z"
        );
        assert_eq!(redact_urls("https://h:1", false), "https://h:1");
    }

    #[test]
    fn only_real_redirects_count() {
        for s in [301, 302, 303, 307, 308] {
            assert!(is_redirect(StatusCode::from_u16(s).unwrap()));
        }
        for s in [200, 300, 304, 305, 401] {
            assert!(!is_redirect(StatusCode::from_u16(s).unwrap()));
        }
    }

    #[test]
    fn auth_headers_are_sensitive() {
        assert!(bearer("t").is_sensitive());
        let b = basic("user", "pass");
        assert!(b.is_sensitive());
        assert_eq!(b.to_str().unwrap(), "Basic dXNlcjpwYXNz");
    }
}
