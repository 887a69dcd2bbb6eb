//! The HTTP face of portcullis: the axum router, request logging, and the handlers.

pub mod blocked;
pub mod error;
pub mod handlers;
pub mod listen;
pub mod path;

#[cfg(test)]
mod tests;

use crate::proxy::{Error, Registry};
use crate::upstream::Upstreams;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use http::{HeaderValue, Method};
use http_body::{Body as _, Frame};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument;

/// What every handler shares.
pub struct AppState<R> {
    pub registry: R,
    pub upstreams: Upstreams,
    /// How blocks are shown to each kind of client.
    pub clients: crate::policy::ClientConfig,
    pub synthetic: blocked::Synthetic,
}

pub fn router<R: Registry>(state: Arc<AppState<R>>) -> Router {
    Router::new()
        .route("/v2", any(handlers::version))
        .route("/v2/", any(handlers::version))
        .route("/v2/{*rest}", any(handlers::api::<R>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(|| async {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    crate::metrics::render(),
                )
            }),
        )
        .fallback(|method: Method, uri: http::Uri| async move {
            error::ApiError(Error::NotFound(format!("{method} {}", uri.path()))).into_response()
        })
        .layer(middleware::from_fn(access_log))
        .with_state(state)
}

/// One span per request with its routing fields, the distribution API version header on every
/// answer, and one log line when the response body ends (with its size and duration).
async fn access_log(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        query = request.uri().query().unwrap_or(""),
        upstream = tracing::field::Empty,
        repo = tracing::field::Empty,
        reference = tracing::field::Empty,
        digest = tracing::field::Empty,
    );
    let start = Instant::now();
    let head = request.method() == Method::HEAD;
    let mut response = next.run(request).instrument(span.clone()).await;
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let expected = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = LoggedBody {
        inner: body,
        expected,
        head,
        bytes: 0,
        status,
        start,
        span,
        finished: false,
    };
    Response::from_parts(parts, Body::new(body))
}

/// A response body that logs, once, how it ended.
struct LoggedBody {
    inner: Body,
    /// The announced length: hyper stops polling once it has sent that much.
    expected: Option<u64>,
    /// An answer to HEAD: hyper sends no body at all, whatever the handler made.
    head: bool,
    bytes: u64,
    status: u16,
    start: Instant,
    span: tracing::Span,
    finished: bool,
}

impl LoggedBody {
    fn log(&mut self, outcome: &str) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let _enter = self.span.enter();
        tracing::info!(
            status = self.status,
            bytes = self.bytes,
            duration_ms = self.start.elapsed().as_millis() as u64,
            outcome,
            "response"
        );
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => self.log("aborted"),
            Poll::Ready(None) => self.log("complete"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // An empty body may end without being polled; a client that hung up drops it midway.
        let complete = self.head || self.inner.is_end_stream() || self.expected == Some(self.bytes);
        let outcome = if complete { "complete" } else { "client gone" };
        self.log(outcome);
    }
}
