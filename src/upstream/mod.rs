//! Upstream registries: which ones exist (routing), how to talk to them (client, auth), and what
//! their answers mean for the client (status).

pub mod auth;
pub mod client;
pub mod egress;
pub mod route;
pub mod status;

pub use client::{UpstreamClient, UpstreamError};
pub use route::{Route, RouteError, Upstream, Upstreams};
pub use status::StatusError;
