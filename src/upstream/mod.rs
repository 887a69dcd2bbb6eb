//! Upstream registries: which ones exist (routing), how to talk to them (client, auth).

pub mod auth;
pub mod client;
pub mod route;

pub use client::{UpstreamClient, UpstreamError};
pub use route::{Route, RouteError, Upstream, Upstreams};
