//! What an upstream's non-success answer means for the client: passed on (not found, denied),
//! a retryable outage (429, 5xx), or a bad answer. The proxy's error type wraps these.

pub use super::client::read_capped;
use super::client::{retry_after, upstream_text};
use super::Route;
use crate::oci::{ErrorCode, ErrorEnvelope};
use http::{HeaderMap, HeaderName, StatusCode};
use std::time::Duration;

/// The most of an error body read to find the upstream's own error code and message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Upstream headers worth passing on to clients (Docker Hub's rate-limit figures).
const PASSTHROUGH_HEADERS: [&str; 3] = [
    "ratelimit-limit",
    "ratelimit-remaining",
    "docker-ratelimit-source",
];

/// An upstream answer that is not a success, as the client should be told.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusError {
    /// 429 after the retries: the upstream is rate-limiting this proxy.
    RateLimited {
        host: String,
        retry_after: Option<Duration>,
    },
    /// 5xx after the retries.
    Failed {
        host: String,
        status: u16,
        attempts: u32,
        retry_after: Option<Duration>,
    },
    /// A real answer passed on to the client: not found, denied, another 4xx.
    Refused {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    /// A status that makes no sense for a read.
    Unexpected { host: String, status: u16 },
}

/// Turns an upstream's non-success answer to `GET|HEAD <rest>` into what the client is told.
pub async fn status_error(
    route: &Route,
    response: reqwest::Response,
    rest: &str,
    attempts: u32,
    idle: Duration,
) -> StatusError {
    let host = route.upstream.host.clone();
    let status = response.status();
    let retry_after = retry_after(response.headers());
    if status == StatusCode::TOO_MANY_REQUESTS {
        return StatusError::RateLimited { host, retry_after };
    }
    if status.is_server_error() {
        return StatusError::Failed {
            host,
            status: status.as_u16(),
            attempts,
            retry_after,
        };
    }
    let body = read_capped(response, MAX_ERROR_BODY, idle)
        .await
        .unwrap_or_default();
    // The upstream's own words are passed on, but never a signed URL's grant inside them.
    let upstream_err = ErrorEnvelope::parse(&body)
        .and_then(|e| e.errors.into_iter().next())
        .map(|mut e| {
            e.message = upstream_text(&e.message);
            e
        });
    let default_code = if rest.starts_with("blobs/") {
        ErrorCode::BlobUnknown
    } else if rest.starts_with("manifests/") {
        ErrorCode::ManifestUnknown
    } else {
        ErrorCode::NameUnknown
    };
    match status {
        StatusCode::NOT_FOUND => {
            let (code, message) = match upstream_err {
                Some(e)
                    if matches!(
                        e.code,
                        ErrorCode::NameUnknown
                            | ErrorCode::ManifestUnknown
                            | ErrorCode::BlobUnknown
                    ) =>
                {
                    (e.code, e.message)
                }
                _ => (default_code, String::new()),
            };
            let message = if message.is_empty() {
                format!("{} not found on {host}", route.repo)
            } else {
                format!("{message} ({} on {host})", route.repo)
            };
            StatusError::Refused {
                status: 404,
                code,
                message,
            }
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            let why = upstream_err
                .map(|e| e.message)
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| status.to_string());
            StatusError::Refused {
                status: 403,
                code: ErrorCode::Denied,
                message: format!("upstream {host} refused access to {}: {why}", route.repo),
            }
        }
        s if s.is_client_error() && s != StatusCode::METHOD_NOT_ALLOWED => {
            let (code, message) = upstream_err
                .map(|e| (e.code, e.message))
                .unwrap_or((ErrorCode::Unknown, s.to_string()));
            StatusError::Refused {
                status: s.as_u16(),
                code,
                message: format!("upstream {host}: {message}"),
            }
        }
        s => StatusError::Unexpected {
            host,
            status: s.as_u16(),
        },
    }
}

/// The `Content-Length` header itself: reqwest's `content_length()` is the body's size hint, which
/// is 0 for any HEAD answer.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The upstream headers passed on to clients.
pub fn passthrough_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in PASSTHROUGH_HEADERS {
        if let Some(v) = upstream.get(name) {
            out.insert(HeaderName::from_static(name), v.clone());
        }
    }
    out
}
