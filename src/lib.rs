//! portcullis: a pull-through proxy for container registries that refuses malicious images at
//! pull time. See `docs/DESIGN.md` for the request path and tail-hold.

#![forbid(unsafe_code)]

pub mod config;
pub mod inspect;
pub mod oci;
pub mod proxy;
pub mod server;
pub mod upstream;

use std::sync::Arc;

/// Builds the whole service from a validated config: upstream client, registry, router.
pub fn app(config: &config::Config) -> anyhow::Result<axum::Router> {
    let upstreams = upstream::Upstreams::from_config(config)?;
    let client = Arc::new(upstream::UpstreamClient::new(config.upstream.clone())?);
    let registry = proxy::PullThrough::new(client);
    let state = Arc::new(server::AppState {
        registry,
        upstreams,
    });
    Ok(server::router(state))
}
