//! The one place where request-path errors become HTTP answers: a status and the OCI envelope.

use crate::oci::{ErrorCode, ErrorEnvelope, ErrorInfo};
use crate::proxy::Error;
use crate::upstream::UpstreamError;
use axum::response::{IntoResponse, Response};
use http::header::{ALLOW, CONTENT_RANGE, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};

/// Whose fault an error is; sent in `detail` so an operator can tell at a glance.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Client,
    Upstream,
    Proxy,
    /// A policy decision: the content was judged and refused.
    Policy,
}

/// An error on its way to the client.
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, ErrorCode, Source) {
        use Source::*;
        match &self.0 {
            Error::NameInvalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::NameInvalid, Client),
            Error::DigestInvalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid, Client),
            Error::ReferenceInvalid(_) => {
                (StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, Client)
            }
            Error::RangeInvalid { .. } => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::RangeInvalid,
                Client,
            ),
            Error::NotConfigured(_) => (StatusCode::FORBIDDEN, ErrorCode::Denied, Client),
            Error::Blocked(_) => (StatusCode::FORBIDDEN, ErrorCode::Denied, Policy),
            Error::Unsupported { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::Unsupported,
                Client,
            ),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound, Client),
            Error::Upstream { status, code, .. } => (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
                *code,
                Upstream,
            ),
            Error::Unreachable(UpstreamError::AuthDenied { .. }) => {
                (StatusCode::FORBIDDEN, ErrorCode::Denied, Upstream)
            }
            Error::Unreachable(UpstreamError::Timeout { .. }) => (
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::Unavailable,
                Upstream,
            ),
            Error::Unreachable(_) => (StatusCode::BAD_GATEWAY, ErrorCode::Unavailable, Upstream),
            // An upstream that says it is unavailable (maintenance, overload) is passed on as
            // such, with its Retry-After; other 5xx are a bad gateway.
            Error::UpstreamFailed { status: 503, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                Upstream,
            ),
            Error::UpstreamFailed { .. } => {
                (StatusCode::BAD_GATEWAY, ErrorCode::Unavailable, Upstream)
            }
            Error::RateLimited { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::TooManyRequests,
                Upstream,
            ),
            Error::BadUpstream { .. } => (StatusCode::BAD_GATEWAY, ErrorCode::Unknown, Upstream),
            // The upstream's document is at fault (`detail.source` says so), but the answer is
            // a 4xx: it will not change on a retry (clients retry 5xx, each retry a fetch
            // upstream), and clients show a 4xx's OCI error (skopeo: `manifest invalid: …`)
            // where they show only the status of a 5xx.
            Error::InvalidDocument { .. } => (
                StatusCode::BAD_REQUEST,
                ErrorCode::ManifestInvalid,
                Upstream,
            ),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, Proxy),
        }
    }
}

/// The longest reason phrase sent.
const MAX_REASON: usize = 200;

/// `Blocked by portcullis: <slug>: …` as a valid HTTP/1.1 reason phrase (visible ASCII and
/// spaces). The slug (the main rule id) comes first: the phrase is cut at [`MAX_REASON`], and the
/// message starts with the subject's 71-character digest.
pub fn reason_phrase(slug: &str, message: &str) -> hyper::ext::ReasonPhrase {
    let text = message
        .strip_prefix("blocked by portcullis: ")
        .unwrap_or(message);
    let mut phrase: String = format!("Blocked by portcullis: {slug}: {text}")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_REASON)
        .collect();
    if phrase.len() == MAX_REASON {
        phrase.push_str("...");
    }
    hyper::ext::ReasonPhrase::try_from(phrase.into_bytes())
        .unwrap_or_else(|_| hyper::ext::ReasonPhrase::from_static(b"Blocked by portcullis"))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, source) = self.status_and_code();
        let mut detail = serde_json::json!({ "source": source, "retryable": self.0.retryable() });
        if let Error::Blocked(b) = &self.0 {
            detail["verdict"] = b.detail.clone();
        }
        let envelope = ErrorEnvelope {
            errors: vec![ErrorInfo {
                code,
                message: self.0.to_string(),
                detail: Some(detail),
            }],
        };
        let body = serde_json::to_vec(&envelope).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match &self.0 {
            Error::Unsupported { .. } => {
                headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            Error::RangeInvalid { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(CONTENT_RANGE, v);
                }
            }
            Error::RateLimited {
                retry_after: Some(d),
                ..
            }
            | Error::UpstreamFailed {
                retry_after: Some(d),
                ..
            } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)));
            }
            Error::Blocked(b) => {
                // containerd prints the status line, not the body: the reason goes there too
                // (HTTP/1.1 only; HTTP/2 has no reason phrase).
                response
                    .extensions_mut()
                    .insert(reason_phrase(&b.rule, &b.message));
            }
            _ => {}
        }
        if status.is_server_error() {
            tracing::warn!(%status, error = %self.0, "request failed");
        } else {
            tracing::info!(%status, error = %self.0, "request refused");
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_document_is_a_4xx_that_blames_the_upstream() {
        let e = ApiError(Error::InvalidDocument {
            host: "docker.io".into(),
            reason: "manifest sha256:…: key \"Config\"".into(),
        });
        let (status, code, source) = e.status_and_code();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(code, ErrorCode::ManifestInvalid);
        assert!(matches!(source, Source::Upstream));
        assert!(!e.0.retryable());
    }

    #[test]
    fn the_reason_phrase_names_the_rule_before_it_is_cut() {
        let message = format!(
            "blocked by portcullis: docker.io/acme/app@sha256:{} (score 450): {}",
            "a".repeat(64),
            "a validated Monero wallet together with a pool host\u{2026} ".repeat(5)
        );
        let phrase = reason_phrase("miner.wallet-with-pool", &message);
        let phrase = std::str::from_utf8(phrase.as_bytes()).unwrap();
        assert!(
            phrase
                .starts_with("Blocked by portcullis: miner.wallet-with-pool: docker.io/acme/app@"),
            "{phrase}"
        );
        assert!(phrase.ends_with("..."), "{phrase}");
        assert_eq!(phrase.len(), MAX_REASON + 3);
        assert!(phrase.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
    }
}
