//! Media types of manifests, indexes and image configs.

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

/// The media type a manifest was served as: the upstream's `Content-Type` without parameters, or
/// `None` when it sent none. The body's own `mediaType` is never a substitute: a client takes the
/// kind of a document from the `Content-Type`, so a manifest served as anything but a manifest or
/// index type is refused (see [`super::document::Manifest::parse`]).
pub fn manifest_media_type(content_type: Option<&str>) -> Option<String> {
    content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty())
}

/// Whether a layer media type names a file-system layer (a tar, compressed or not), OCI or Docker,
/// distributable or not.
pub fn is_rootfs_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_type_is_taken_without_parameters() {
        assert_eq!(
            manifest_media_type(Some(
                "application/vnd.oci.image.manifest.v1+json; charset=x"
            ))
            .as_deref(),
            Some(OCI_MANIFEST)
        );
        assert_eq!(
            manifest_media_type(Some("application/json")).as_deref(),
            Some("application/json")
        );
        assert_eq!(manifest_media_type(Some(" ; x")), None);
        assert_eq!(manifest_media_type(None), None);
    }
}
