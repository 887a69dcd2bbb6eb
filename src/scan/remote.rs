//! Remote images: fetched through the proxy's own upstream path ([`PullThrough`] without a guard:
//! configured upstreams only, routing, auth, retries, digest checks), the manifest and config read
//! whole, each layer streamed through its inspector and dropped.

use super::{
    read_config, select_platforms, InspectedImage, InspectedLayer, Platforms, Result, ScanError,
    ScanReport, Scanner, IMAGE_CONFIG_TYPES, MAX_CONFIG_BYTES,
};
use crate::oci::{Descriptor, Digest, ImageManifest, Manifest, Reference};
use crate::policy::guard::Who;
use crate::proxy::{BlobRequest, ManifestRequest, PullThrough, Registry, MAX_INDEX_DEPTH};
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
    let (top, _, doc) = manifest(&registry, &route, reference.clone(), Vec::new()).await?;
    let mut images = Vec::new();
    let index = match doc {
        Manifest::Image(m) => {
            let image = image(scanner, &registry, &route, top, &m, None).await?;
            images.push(scanner.judge(&names, image));
            return Ok(scanner.report(label, names, images));
        }
        Manifest::Index(index) => index,
    };
    // Depth first, in the order the indexes list them; nested indexes narrowed to `platforms` too.
    let mut todo: Vec<(Descriptor, usize)> = select_platforms(&index.manifests, platforms)?
        .into_iter()
        .rev()
        .map(|d| (d.clone(), 1))
        .collect();
    while let Some((child, depth)) = todo.pop() {
        let (digest, media_type, doc) = manifest(
            &registry,
            &route,
            Reference::Digest(child.digest.clone()),
            vec![child.media_type().to_string()],
        )
        .await?;
        if media_type != child.media_type() {
            return Err(ScanError::Input(format!(
                "{digest}: listed as {:?} but served as {media_type:?}",
                child.media_type()
            )));
        }
        match doc {
            Manifest::Image(m) => {
                let image = image(scanner, &registry, &route, digest, &m, Some(&child)).await?;
                images.push(scanner.judge(&names, image));
            }
            Manifest::Index(_) if depth >= MAX_INDEX_DEPTH => {
                return Err(ScanError::Input(format!(
                    "{label}: indexes nest more than {MAX_INDEX_DEPTH} deep"
                )))
            }
            Manifest::Index(nested) => {
                for d in select_platforms(&nested.manifests, platforms)?
                    .into_iter()
                    .rev()
                {
                    todo.push((d.clone(), depth + 1));
                }
            }
        }
    }
    Ok(scanner.report(label, names, images))
}

/// A manifest, verified against its digest (or the one the upstream announced for a tag) and read
/// as the clients read it (the proxy's own check: a refused document ends the scan).
async fn manifest(
    registry: &PullThrough,
    route: &Route,
    reference: Reference,
    accept: Vec<String>,
) -> Result<(Digest, String, Manifest)> {
    let reply = registry
        .manifest(ManifestRequest {
            route: route.clone(),
            reference,
            accept,
            who: Who::default(),
        })
        .await?;
    let doc = Manifest::parse(&reply.media_type, &reply.bytes)
        .map_err(|e| ScanError::Input(format!("manifest {}: {e}", reply.digest)))?;
    Ok((reply.digest, reply.media_type, doc))
}

/// Fetches an image's config and streams each of its layers through an inspector.
async fn image(
    scanner: &Scanner,
    registry: &PullThrough,
    route: &Route,
    manifest: Digest,
    doc: &ImageManifest,
    from_index: Option<&Descriptor>,
) -> Result<InspectedImage> {
    let config_digest = doc.config.digest.clone();
    // Artifacts (Helm charts, signatures) have other config types: only their layers count.
    let config = if IMAGE_CONFIG_TYPES.contains(&doc.config.media_type()) {
        let bytes = blob_bytes(registry, route, &config_digest, MAX_CONFIG_BYTES).await?;
        read_config(&format!("manifest {manifest}"), &bytes)?;
        Some(bytes)
    } else {
        None
    };
    let mut layers = Vec::new();
    for l in &doc.layers {
        let digest = l.digest.clone();
        let mut inspector = scanner.layer_inspector(l.media_type(), Some(&digest));
        let mut body = blob_body(registry, route, &digest).await?;
        // The body ends in an error, its last bytes withheld, unless they hash to the digest.
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ScanError::Input(format!("layer {digest}: {e}")))?;
            inspector.update(&chunk);
        }
        layers.push(InspectedLayer {
            digest,
            report: inspector.finish(),
            rootfs: crate::oci::media::is_rootfs_layer(l.media_type()),
        });
    }
    Ok(InspectedImage {
        manifest: Some(manifest),
        config_digest: Some(config_digest),
        config,
        platform: from_index.and_then(Descriptor::platform_name),
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
