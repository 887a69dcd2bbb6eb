//! The judging stage of a pull: the name before anything goes upstream, then the image a manifest
//! names (its config, fetched through the shared fill, and what is known of its layers), or every
//! image an index reaches, through nested indexes too. The decisions are the guard's; this module
//! finds what it needs.

use super::manifests::document;
use super::{Error, PullThrough, Result};
use crate::inspect::config::MAX_CONFIG_BYTES;
use crate::oci::media::IMAGE_CONFIG_TYPES;
use crate::oci::{Descriptor, Digest, ImageConfig, ImageManifest, Manifest, Reference};
use crate::policy::guard::{Guard, NameVerdict, Who};
use crate::store::ImageBlobs;
use crate::upstream::Route;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::Arc;

/// Manifests read when an index is asked for (nested indexes and platform images; attestations
/// are skipped). Past this, the rest of an index's images are judged when a client asks for them:
/// each is a manifest request of its own, judged like any other, so none is served unjudged.
const MAX_INDEX_MANIFESTS: usize = 64;
/// The most indexes an image may be reached through (the index asked for counts as one); an index
/// nested deeper is refused. Real images nest one index at most.
pub const MAX_INDEX_DEPTH: usize = 4;

/// What an artifact's config (a Helm chart's, a signature's) is judged as: an image config with
/// nothing in it. Only the artifact's layers count.
const ARTIFACT_CONFIG: &[u8] =
    br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;

impl PullThrough {
    /// The name's judgement for this request (nothing to count without a guard).
    pub(super) async fn check_name(&self, route: &Route, who: &Who) -> Result<NameVerdict> {
        match &self.guard {
            Some(g) => Ok(g.check_name(route, who).await?),
            None => Ok(NameVerdict::default()),
        }
    }

    /// Judges what a manifest (`digest`, already read as the clients read it) names: an image
    /// (its config and known layers), or every image an index reaches (the index is refused when
    /// one of them is, or when one of its manifests is refused as a document).
    pub(super) async fn judge(
        &self,
        req: &super::ManifestRequest,
        name: &NameVerdict,
        digest: &Digest,
        doc: &Manifest,
    ) -> Result<()> {
        let Some(guard) = &self.guard else {
            return Ok(());
        };
        let index = match doc {
            Manifest::Image(image) => {
                return self.judge_image(guard, req, name, digest, image).await
            }
            Manifest::Index(index) => index,
        };
        let images = |manifests: &[Descriptor], depth: usize| {
            manifests
                .iter()
                .filter(|m| !m.is_attestation())
                .map(|m| (m.clone(), depth))
                .collect::<Vec<_>>()
        };
        let mut queue: VecDeque<(Descriptor, usize)> = images(&index.manifests, 1).into();
        let mut read = 0;
        while let Some((child, depth)) = queue.pop_front() {
            if read == MAX_INDEX_MANIFESTS {
                tracing::info!(index = %digest, left = queue.len() + 1, "index lists more manifests than are read at once: the rest are judged when asked for");
                break;
            }
            read += 1;
            let refuse = |reason: String| Error::InvalidDocument {
                host: req.route.upstream.host.clone(),
                reason,
            };
            let (reply, cached) = self
                .resolve_manifest(
                    &req.route,
                    &Reference::Digest(child.digest.clone()),
                    &[child.media_type().to_string()],
                )
                .await?;
            // A client reads a child as the kind its descriptor names.
            if reply.media_type != child.media_type() {
                return Err(refuse(format!(
                    "index {digest} lists {} as {:?}, but it is served as {:?}",
                    child.digest,
                    child.media_type(),
                    reply.media_type
                )));
            }
            match document(&req.route, &reply)? {
                Manifest::Image(image) => {
                    self.judge_image(guard, req, name, &child.digest, &image)
                        .await?;
                }
                Manifest::Index(_) if depth >= MAX_INDEX_DEPTH => {
                    return Err(refuse(format!(
                        "index {digest} nests indexes more than {MAX_INDEX_DEPTH} deep"
                    )));
                }
                Manifest::Index(nested) => queue.extend(images(&nested.manifests, depth + 1)),
            }
            if !cached {
                self.keep_manifest(&req.route, None, &reply).await;
            }
        }
        Ok(())
    }

    async fn judge_image(
        &self,
        guard: &Arc<Guard>,
        req: &super::ManifestRequest,
        name: &NameVerdict,
        digest: &Digest,
        image: &ImageManifest,
    ) -> Result<()> {
        let blobs = ImageBlobs {
            config: image.config.digest.clone(),
            layers: image.layer_digests(),
            runs: Vec::new(),
            rootfs: image
                .layers
                .iter()
                .filter(|l| crate::oci::media::is_rootfs_layer(l.media_type()))
                .map(|l| l.digest.clone())
                .collect(),
        };
        // Artifacts (Helm charts, signatures) have other config types: only their layers count. An
        // image judged under the current rules is not judged again, so its config is not read (a
        // blocked image's config is not cached, and must not cost an upstream request each time).
        let config_bytes = if guard.knows_image(digest) {
            None
        } else if IMAGE_CONFIG_TYPES.contains(&image.config.media_type()) {
            match self
                .read_small_blob(&req.route, &blobs.config, MAX_CONFIG_BYTES)
                .await
            {
                Ok(b) => {
                    // An image config is read as the clients read it, or the image is refused
                    // (and its config not kept).
                    if let Err(e) = ImageConfig::parse(&b) {
                        tracing::warn!(manifest = %digest, config = %blobs.config, error = %e, "image config refused: not read as the clients read it");
                        self.drop_cached(&blobs.config);
                        return Err(Error::InvalidDocument {
                            host: req.route.upstream.host.clone(),
                            reason: format!(
                                "manifest {digest}: image config {}: {e}",
                                blobs.config
                            ),
                        });
                    }
                    Some(b)
                }
                // No client can pull an image whose config is missing; nothing to judge.
                Err(Error::Upstream { status: 404, .. }) => {
                    tracing::warn!(config = %blobs.config, "image config not found upstream: manifest passed on unjudged");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        } else {
            Some(Bytes::from_static(ARTIFACT_CONFIG))
        };
        if guard.policy.config.strict {
            for layer in guard.unjudged_layers(&blobs) {
                self.judge_layer_now(&req.route, &layer, name, &req.who)
                    .await?;
            }
        }
        let judged = guard.judge_image(
            &req.route,
            &req.reference,
            digest,
            &blobs,
            config_bytes.as_deref(),
            name,
            &req.who,
        );
        // The config of a malicious image is not kept (audit mode still serves it).
        if guard.judged_malicious(&blobs.config) {
            self.drop_cached(&blobs.config);
        }
        if judged.is_err() {
            // The verdict behind a refusal is on disk before the client hears of it.
            guard.persist().await;
        }
        judged?;
        Ok(())
    }

    /// A small blob (an image config), whole and verified: from the cache, or through the shared
    /// fetch (so concurrent pulls of a new image ask the upstream for its config once).
    async fn read_small_blob(&self, route: &Route, digest: &Digest, cap: usize) -> Result<Bytes> {
        let too_big = || Error::BadUpstream {
            host: route.upstream.host.clone(),
            reason: format!("blob {digest} is larger than {cap} bytes"),
        };
        if let Some(cached) = self.cache.as_ref().and_then(|c| c.blobs.open_blob(digest)) {
            if cached.size > cap as u64 {
                return Err(too_big());
            }
            let file = cached.file;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut &file, &mut buf).map(|_| buf)
            })
            .await;
            if let Ok(Ok(bytes)) = read {
                return Ok(Bytes::from(bytes));
            }
        }
        let (fill, mut reader) = self.open_fill(route, digest, None).await?;
        if fill.size.is_some_and(|s| s > cap as u64) {
            return Err(too_big());
        }
        let mut buf = BytesMut::new();
        while let Some(chunk) = reader.next().await {
            let chunk = chunk.map_err(|e| Error::Internal(format!("reading a fetch: {e}")))?;
            if buf.len() + chunk.len() > cap {
                return Err(too_big());
            }
            buf.extend_from_slice(&chunk);
        }
        fill.outcome()
            .finish()
            .map_err(|veto| super::blobs::refusal(&route.upstream.host, veto))?;
        Ok(buf.freeze())
    }

    /// Strict mode: reads a whole layer from the upstream through its checks, sending nothing, so
    /// its verdict is known before the manifest is answered (and the layer is cached for the pull
    /// that follows).
    async fn judge_layer_now(
        &self,
        route: &Route,
        digest: &Digest,
        name: &NameVerdict,
        who: &Who,
    ) -> Result<()> {
        let Some(guard) = &self.guard else {
            return Ok(());
        };
        // Refused already (a deny override, a block known): the image's judgement reports it.
        let Ok(mut plan) = guard.plan_blob(route, digest, name, who) else {
            return Ok(());
        };
        let (fill, mut reader) = self.open_fill(route, digest, Some(&mut plan)).await?;
        while let Some(chunk) = reader.next().await {
            chunk.map_err(|e| Error::Internal(format!("reading a fetch: {e}")))?;
        }
        // A reader stops at a cut while the fill reads on: wait for the verdict itself.
        let outcome = fill.settled().await;
        if let Err(veto) = outcome {
            // A refused layer has its verdict stored by now; judge_image will report it.
            tracing::info!(%digest, reason = %veto, "strict mode: layer refused before the manifest was answered");
        }
        Ok(())
    }
}
