//! Media types of manifests, and the few manifest fields the proxy reads (it never rewrites one).

use serde::Deserialize;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Config media types of container images: judged as image configs. Artifacts (Helm charts,
/// signatures) have other config types, and only their layers count.
pub const IMAGE_CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// What a client accepts when it sends no `Accept`: every modern manifest type.
pub const DEFAULT_ACCEPT: [&str; 4] = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX];

/// The parts of a manifest or index that routing and (later) inspection need.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestHead {
    #[serde(default)]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub media_type: Option<String>,
}

/// A content descriptor inside a manifest or index.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    /// `org.opencontainers.image.ref.name` and friends (an OCI layout's `index.json` tags images
    /// with them).
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    /// `v7`, `v8`… for ARM; absent elsewhere.
    #[serde(default)]
    pub variant: Option<String>,
}

/// An image manifest or an index, as far as inspection needs it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestDoc {
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

impl ManifestDoc {
    pub fn parse(body: &[u8]) -> Option<ManifestDoc> {
        serde_json::from_slice(body).ok()
    }

    /// An index (or Docker manifest list): it lists manifests, not layers.
    pub fn is_index(&self) -> bool {
        self.config.is_none() && !self.manifests.is_empty()
    }
}

/// The media type of a manifest body: the upstream's `Content-Type` unless it is missing or
/// generic, then the body's own `mediaType` field.
pub fn manifest_media_type(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "application/octet-stream");
    ct.or_else(|| {
        serde_json::from_slice::<ManifestHead>(body)
            .ok()
            .and_then(|m| m.media_type)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_wins_then_body() {
        assert_eq!(
            manifest_media_type(
                Some("application/vnd.oci.image.manifest.v1+json; charset=x"),
                b"{}"
            )
            .as_deref(),
            Some(OCI_MANIFEST)
        );
        let body = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}"}}"#);
        assert_eq!(
            manifest_media_type(Some("application/json"), body.as_bytes()).as_deref(),
            Some(OCI_INDEX)
        );
        assert_eq!(manifest_media_type(None, b"not json"), None);
    }
}
