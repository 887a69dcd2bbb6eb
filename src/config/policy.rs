//! `[policy]`: thresholds, enforce or audit per scope, failing closed or open, and how a block is
//! shown to each kind of client.

use serde::Deserialize;

/// `[policy]` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Score at or above which an image is reported as suspicious (allowed, logged). Default 20.
    pub warn_score: f64,
    /// Score at or above which an image is refused. Default 100.
    pub block_score: f64,
    /// `enforce` (refuse what is blocked) or `audit` (log the decision, serve anyway). Default enforce.
    pub mode: Mode,
    /// When a layer cannot be judged (corrupt, over the limits, upstream cut it): `closed` refuses
    /// it, `open` lets it through with a warning. Default closed.
    pub fail: FailMode,
    /// Judge every layer before answering the manifest (first pull waits; blocks never reach the
    /// client at all), instead of judging layers as they stream. Default false.
    pub strict: bool,
    /// Per-upstream or per-namespace modes: the first matching pattern wins. Default none.
    pub scopes: Vec<ScopeRule>,
    /// How a block is shown to each kind of client.
    pub clients: ClientConfig,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            warn_score: 20.0,
            block_score: 100.0,
            mode: Mode::Enforce,
            fail: FailMode::Closed,
            strict: false,
            scopes: Vec::new(),
            clients: ClientConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Closed,
    Open,
}

/// A mode for the repositories matching `pattern`, a glob over `<registry host>/<repository>`
/// (`docker.io/library/*`, `ghcr.io/myorg/**`, `quay.io/**`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeRule {
    pub pattern: String,
    pub mode: Mode,
}

/// `[policy.clients]`: the client-specific ways of getting a block's reason across.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Answer a docker (`User-Agent: docker/…`) *tag* pull of a blocked image with a small
    /// synthetic manifest whose config media type names the reason: classic dockerd then stops
    /// without falling back to Docker Hub and prints it. Default true.
    pub docker_synthetic_manifest: bool,
    /// Answer HEAD on a blocked manifest with 405, so containerd retries with GET and shows the
    /// JSON reason (a HEAD answer has no body). Default true.
    pub head_405_when_blocked: bool,
    /// Put the reason in the HTTP/1.1 status line (`403 Blocked by portcullis: …`), which is
    /// what containerd prints. Default true.
    pub reason_phrase: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            docker_synthetic_manifest: true,
            head_405_when_blocked: true,
            reason_phrase: true,
        }
    }
}
