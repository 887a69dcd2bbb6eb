//! What can go wrong on the request path, and whose fault it is.

use crate::oci::ErrorCode;
use crate::upstream::{RouteError, StatusError, UpstreamError};
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the request path. `server::error` is the one place that turns them into responses.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The client's fault.
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    #[error("invalid digest: {0}")]
    DigestInvalid(String),
    #[error("invalid reference: {0}")]
    ReferenceInvalid(String),
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeInvalid { size: u64 },
    #[error("{0}")]
    NotConfigured(String),
    #[error("{method} is not supported: this registry is a read-only pull-through proxy")]
    Unsupported { method: String },
    #[error("no such API endpoint: {0}")]
    NotFound(String),

    /// Refused by policy: a blocked name, image or blob.
    #[error("{}", .0.message)]
    Blocked(Box<crate::stream::Refusal>),

    /// The upstream answered with a client error (unknown manifest, denied, ...), passed on.
    #[error("{message}")]
    Upstream {
        status: u16,
        code: ErrorCode,
        message: String,
    },

    // The upstream's fault; a retry may help.
    #[error(transparent)]
    Unreachable(UpstreamError),
    #[error("upstream {host} answered {status} after {attempts} attempt(s)")]
    UpstreamFailed {
        host: String,
        status: u16,
        attempts: u32,
        /// The upstream's `Retry-After` (a 503 in maintenance, say), passed on.
        retry_after: Option<Duration>,
    },
    #[error("upstream {host} is rate-limiting this proxy (429)")]
    RateLimited {
        host: String,
        retry_after: Option<Duration>,
    },
    /// A fault of the proxy itself (out of threads, …).
    #[error("internal error: {0}")]
    Internal(String),

    /// The upstream sent something that cannot be right (wrong digest, oversized manifest).
    #[error("upstream {host} sent a bad answer: {reason}")]
    BadUpstream { host: String, reason: String },

    /// The upstream sent a manifest, an index or an image config that portcullis refuses to read
    /// (see `oci::document`): one the clients could read otherwise than portcullis does, or that
    /// cannot be judged. Never served nor cached; answered 400 `MANIFEST_INVALID`.
    #[error("upstream {host} sent a document portcullis refuses: {reason}")]
    InvalidDocument { host: String, reason: String },
}

impl Error {
    /// Whether a client retrying the same request may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Unreachable(UpstreamError::AuthDenied { .. }) => false,
            Error::Unreachable(_) | Error::UpstreamFailed { .. } | Error::RateLimited { .. } => {
                true
            }
            _ => false,
        }
    }
}

impl From<crate::stream::Refusal> for Error {
    fn from(r: crate::stream::Refusal) -> Self {
        Error::Blocked(Box::new(r))
    }
}

impl From<UpstreamError> for Error {
    fn from(e: UpstreamError) -> Self {
        match e {
            // Pointed somewhere portcullis does not go: a bad answer, not an outage.
            UpstreamError::Refused { host, reason } => Error::BadUpstream { host, reason },
            e => Error::Unreachable(e),
        }
    }
}

impl From<RouteError> for Error {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::NotConfigured(_) => Error::NotConfigured(e.to_string()),
            RouteError::Name(n) => Error::NameInvalid(n.0),
        }
    }
}

impl From<StatusError> for Error {
    fn from(e: StatusError) -> Self {
        match e {
            StatusError::RateLimited { host, retry_after } => {
                Error::RateLimited { host, retry_after }
            }
            StatusError::Failed {
                host,
                status,
                attempts,
                retry_after,
            } => Error::UpstreamFailed {
                host,
                status,
                attempts,
                retry_after,
            },
            StatusError::Refused {
                status,
                code,
                message,
            } => Error::Upstream {
                status,
                code,
                message,
            },
            StatusError::Unexpected { host, status } => Error::BadUpstream {
                host,
                reason: format!("unexpected status {status}"),
            },
        }
    }
}
