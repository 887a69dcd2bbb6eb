//! How a refusal reaches each kind of client so that the person pulling sees why.
//!
//! - Everyone: `403 DENIED` with the reason in the JSON body and (HTTP/1.1) in the status line.
//! - containerd resolves tags with HEAD, whose answer has no body and whose status line it prints:
//!   a blocked HEAD may be answered `405`, so containerd retries with GET and reads the JSON.
//! - classic dockerd treats any mirror error as a reason to fall back to Docker Hub, except an
//!   unsupported config media type in a manifest: a *tag* pull is answered with a small synthetic
//!   manifest whose config media type names the reason, and dockerd stops and prints it.

use super::error::ApiError;
use crate::oci::{media, Digest, Reference};
use crate::policy::ClientConfig;
use crate::proxy::Error;
use crate::stream::Refusal;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderValue, StatusCode};
use std::collections::HashMap;
use std::sync::Mutex;

/// The clients that need their own way of being told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// dockerd (`User-Agent: docker/…`).
    Docker,
    /// containerd and what is built on it (`containerd/…`).
    Containerd,
    Other,
}

impl ClientKind {
    pub fn of(headers: &HeaderMap) -> ClientKind {
        let ua = headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if ua.starts_with("docker/") {
            ClientKind::Docker
        } else if ua.starts_with("containerd/") {
            ClientKind::Containerd
        } else {
            ClientKind::Other
        }
    }
}

/// The synthetic "blocked" manifests handed out, by digest: dockerd asks for the manifest by the
/// digest its HEAD returned, and must get the same bytes. Bounded; old entries are dropped.
#[derive(Default)]
pub struct Synthetic {
    issued: Mutex<HashMap<Digest, Bytes>>,
}

const MAX_SYNTHETIC: usize = 4096;

impl Synthetic {
    /// The synthetic manifest for a block whose main reason is `slug`. Its bytes depend only on
    /// the slug, so HEAD and GET (and every client) see one digest.
    pub fn manifest(&self, slug: &str) -> (Digest, Bytes) {
        let config_type = format!("application/vnd.portcullis.blocked.{slug}+json");
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {
                "mediaType": config_type,
                // The empty JSON object `{}`.
                "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                "size": 2
            },
            "layers": []
        });
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let digest = Digest::sha256_of(&bytes);
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if issued.len() >= MAX_SYNTHETIC && !issued.contains_key(&digest) {
            issued.clear();
        }
        issued.insert(digest.clone(), bytes.clone());
        (digest, bytes)
    }

    pub fn get(&self, digest: &Digest) -> Option<Bytes> {
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
    }
}

/// A synthetic manifest as a response.
pub fn synthetic_response(digest: &Digest, bytes: Bytes, head: bool) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media::OCI_MANIFEST));
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        headers.insert("docker-content-digest", v);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let body = if head {
        axum::body::Body::empty()
    } else {
        axum::body::Body::from(bytes)
    };
    (headers, body).into_response()
}

/// The answer to a manifest request refused by policy.
pub fn manifest_refusal(
    blocked: Box<Refusal>,
    reference: &Reference,
    head: bool,
    client: ClientKind,
    config: &ClientConfig,
    synthetic: &Synthetic,
) -> Response {
    if client == ClientKind::Docker
        && config.docker_synthetic_manifest
        && matches!(reference, Reference::Tag(_))
    {
        tracing::info!(reason = %blocked.message, "answering docker with a synthetic blocked manifest");
        let (digest, bytes) = synthetic.manifest(&blocked.rule);
        return synthetic_response(&digest, bytes, head);
    }
    let mut response = refusal(blocked, config);
    if head && client == ClientKind::Containerd && config.head_405_when_blocked {
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    }
    response
}

/// The plain refusal: 403 DENIED, the reason in the body and (unless turned off) the status line.
pub fn refusal(blocked: Box<Refusal>, config: &ClientConfig) -> Response {
    let mut response = ApiError(Error::Blocked(blocked)).into_response();
    if !config.reason_phrase {
        response
            .extensions_mut()
            .remove::<hyper::ext::ReasonPhrase>();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_manifests_are_stable_and_remembered() {
        let s = Synthetic::default();
        let (d1, b1) = s.manifest("miner.stratum-url");
        let (d2, b2) = s.manifest("miner.stratum-url");
        assert_eq!((d1.clone(), b1.clone()), (d2, b2));
        assert_eq!(s.get(&d1), Some(b1.clone()));
        let v: serde_json::Value = serde_json::from_slice(&b1).unwrap();
        assert_eq!(
            v["config"]["mediaType"],
            "application/vnd.portcullis.blocked.miner.stratum-url+json"
        );
        assert_eq!(Digest::sha256_of(b"{}").to_string(), v["config"]["digest"]);
        assert_ne!(s.manifest("name.typosquat").0, d1);
    }

    #[test]
    fn clients_are_told_apart_by_user_agent() {
        let mut h = HeaderMap::new();
        assert_eq!(ClientKind::of(&h), ClientKind::Other);
        h.insert(
            USER_AGENT,
            HeaderValue::from_static("docker/20.10.24 go/go1.19 os/linux"),
        );
        assert_eq!(ClientKind::of(&h), ClientKind::Docker);
        h.insert(USER_AGENT, HeaderValue::from_static("containerd/1.6.20"));
        assert_eq!(ClientKind::of(&h), ClientKind::Containerd);
    }
}
