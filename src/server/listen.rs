//! The listener: HTTP/1.1 connections served by hyper with the limits a shared service needs. A
//! client has `header_timeout` to send each request's headers, and a kept-alive connection may sit
//! idle no longer than that (slowloris and idle connections are closed); at most `max_connections`
//! connections are open (more wait in the kernel's backlog) and at most `max_requests` requests are
//! answered at once (more wait their turn); each connection buffers at most [`MAX_BUF`] bytes, so
//! many slow clients hold little memory. On shutdown, new connections stop and those open finish
//! their request in flight.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The most a connection buffers, reading or writing (hyper's default is about 400 KB).
const MAX_BUF: usize = 64 * 1024;

/// The limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_requests: usize,
}

impl Limits {
    pub fn of(config: &crate::config::ServerConfig) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(config.header_timeout_seconds),
            max_connections: config.max_connections,
            max_requests: config.max_requests,
        }
    }
}

/// Serves `app` on `listener` until `stop` resolves; then waits for the connections still open
/// to finish the request they are answering (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) -> impl Future<Output = ()> {
    let app = app.layer(tower::limit::GlobalConcurrencyLimitLayer::new(
        limits.max_requests,
    ));
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUF);
    let mut stop = std::pin::pin!(stop);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown()
}
