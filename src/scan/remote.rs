//! Remote images: fetched through the proxy's own upstream path ([`PullThrough`] without a guard:
//! configured upstreams only, routing, auth, retries, digest checks), the manifest and config read
//! whole, each layer streamed through its inspector and dropped.

use super::{
    select_platforms, InspectedImage, InspectedLayer, Platforms, Result, ScanError, ScanReport,
    Scanner, IMAGE_CONFIG_TYPES, MAX_CONFIG_BYTES,
};
use crate::oci::media::{Descriptor, ManifestDoc};
use crate::oci::{Digest, Reference};
use crate::policy::guard::Who;
use crate::proxy::{BlobRequest, ManifestRequest, PullThrough, Registry};
use crate::upstream::{Route, RouteError, UpstreamClient, Upstreams};
use futures_util::StreamExt;
use std::sync::Arc;

/// Scans `name` (`[host/]repo`, routed as a pull through the proxy would be) at `reference`.
pub async fn scan(
    scanner: &Scanner,
    upstreams: &Upstreams,
    client: Arc<UpstreamClient>,
    name: &str,
    reference: &Reference,
    platforms: &Platforms,
) -> Result<ScanReport> {
    let route = upstreams.route(name, None).map_err(|e| match e {
        RouteError::NotConfigured(host) => ScanError::Input(format!(
            "registry {host:?} is not a configured upstream (add it with --upstream {host}=URL or in --config)"
        )),
        e => e.into(),
    })?;
    let label = match reference {
        Reference::Tag(t) => format!("{}/{}:{t}", route.upstream.host, route.repo),
        Reference::Digest(d) => format!("{}/{}@{d}", route.upstream.host, route.repo),
    };
    let names = scanner.name_findings(&route.upstream.host, &route.repo);
    let registry = PullThrough::new(client);
    let top = manifest(&registry, &route, reference.clone(), Vec::new()).await?;
    let doc = ManifestDoc::parse(&top.1)
        .ok_or_else(|| ScanError::Input(format!("{label}: not a manifest or an index")))?;
    let mut images = Vec::new();
    if doc.is_index() {
        for child in select_platforms(&doc.manifests, platforms)? {
            let digest: Digest = child
                .digest
                .parse()
                .map_err(|e| ScanError::Input(format!("the index lists a bad digest: {e}")))?;
            let (digest, bytes) = manifest(
                &registry,
                &route,
                Reference::Digest(digest),
                vec![child.media_type.clone()],
            )
            .await?;
            let child_doc = ManifestDoc::parse(&bytes)
                .filter(|d| !d.is_index())
                .ok_or_else(|| ScanError::Input(format!("{digest}: not an image manifest")))?;
            let image = image(scanner, &registry, &route, digest, &child_doc, Some(child)).await?;
            images.push(scanner.judge(&names, image));
        }
    } else {
        let image = image(scanner, &registry, &route, top.0, &doc, None).await?;
        images.push(scanner.judge(&names, image));
    }
    Ok(scanner.report(label, names, images))
}

/// A manifest, verified against its digest (or the one the upstream announced for a tag).
async fn manifest(
    registry: &PullThrough,
    route: &Route,
    reference: Reference,
    accept: Vec<String>,
) -> Result<(Digest, bytes::Bytes)> {
    let reply = registry
        .manifest(ManifestRequest {
            route: route.clone(),
            reference,
            accept,
            who: Who::default(),
        })
        .await?;
    Ok((reply.digest, reply.bytes))
}

/// Fetches an image's config and streams each of its layers through an inspector.
async fn image(
    scanner: &Scanner,
    registry: &PullThrough,
    route: &Route,
    manifest: Digest,
    doc: &ManifestDoc,
    from_index: Option<&Descriptor>,
) -> Result<InspectedImage> {
    let config_desc = doc.config.as_ref().ok_or_else(|| {
        ScanError::Input(format!(
            "manifest {manifest}: no config (a schema 1 manifest?)"
        ))
    })?;
    let config_digest: Digest = config_desc
        .digest
        .parse()
        .map_err(|e| ScanError::Input(format!("manifest {manifest} lists a bad digest: {e}")))?;
    // Artifacts (Helm charts, signatures) have other config types: only their layers count.
    let config = if IMAGE_CONFIG_TYPES.contains(&config_desc.media_type.as_str()) {
        Some(blob_bytes(registry, route, &config_digest, MAX_CONFIG_BYTES).await?)
    } else {
        None
    };
    let mut layers = Vec::new();
    for l in &doc.layers {
        let digest: Digest = l.digest.parse().map_err(|e| {
            ScanError::Input(format!("manifest {manifest} lists a bad digest: {e}"))
        })?;
        let mut inspector = scanner.layer_inspector(&l.media_type, Some(&digest));
        let mut body = blob_body(registry, route, &digest).await?;
        // The body ends in an error, its last bytes withheld, unless they hash to the digest.
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ScanError::Input(format!("layer {digest}: {e}")))?;
            inspector.update(&chunk);
        }
        layers.push(InspectedLayer {
            digest,
            report: inspector.finish(),
        });
    }
    Ok(InspectedImage {
        manifest: Some(manifest),
        config_digest: Some(config_digest),
        config,
        platform: from_index.and_then(super::descriptor_platform),
        layers,
    })
}

async fn blob_body(
    registry: &PullThrough,
    route: &Route,
    digest: &Digest,
) -> Result<crate::proxy::BlobBody> {
    let reply = registry
        .blob(BlobRequest {
            route: route.clone(),
            digest: digest.clone(),
            range: None,
            head: false,
            who: Who::default(),
        })
        .await?;
    reply
        .body
        .ok_or_else(|| ScanError::Input(format!("blob {digest}: no body")))
}

/// A small blob (the config), whole and verified.
async fn blob_bytes(
    registry: &PullThrough,
    route: &Route,
    digest: &Digest,
    cap: usize,
) -> Result<Vec<u8>> {
    let mut body = blob_body(registry, route, digest).await?;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ScanError::Input(format!("blob {digest}: {e}")))?;
        if out.len() + chunk.len() > cap {
            return Err(ScanError::Input(format!(
                "blob {digest}: larger than {cap} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
