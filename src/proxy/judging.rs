//! The judging stage of a pull: the name before anything goes upstream, then the image a manifest
//! names (its config, fetched through the shared fill, and what is known of its layers), or each
//! platform image of an index. The decisions are the guard's; this module finds what it needs.

use super::{Error, ManifestReply, ManifestRequest, PullThrough, Result};
use crate::inspect::config::MAX_CONFIG_BYTES;
use crate::oci::media::{ManifestDoc, IMAGE_CONFIG_TYPES};
use crate::oci::{Digest, Reference};
use crate::policy::guard::{Guard, NameVerdict, Who};
use crate::store::ImageBlobs;
use crate::upstream::Route;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// Children of an index judged when the index is asked for (platform images, not attestations).
const MAX_INDEX_CHILDREN: usize = 32;

impl PullThrough {
    /// The name's judgement for this request (nothing to count without a guard).
    pub(super) async fn check_name(&self, route: &Route, who: &Who) -> Result<NameVerdict> {
        match &self.guard {
            Some(g) => Ok(g.check_name(route, who).await?),
            None => Ok(NameVerdict::default()),
        }
    }

    /// Judges what a manifest names: an image (its config and known layers), or each platform
    /// image of an index (the index is refused when one of them is).
    pub(super) async fn judge(
        &self,
        req: &ManifestRequest,
        name: &NameVerdict,
        reply: &ManifestReply,
    ) -> Result<()> {
        let Some(guard) = &self.guard else {
            return Ok(());
        };
        let Some(doc) = ManifestDoc::parse(&reply.bytes) else {
            return Ok(());
        };
        if !doc.is_index() {
            return self
                .judge_image(guard, req, name, &reply.digest, &doc)
                .await;
        }
        let children = doc
            .manifests
            .iter()
            .filter(|m| m.platform.as_ref().is_none_or(|p| p.os != "unknown"))
            .take(MAX_INDEX_CHILDREN);
        for child in children {
            let digest: Digest = child.digest.parse().map_err(|e| Error::BadUpstream {
                host: req.route.upstream.host.clone(),
                reason: format!("index lists a bad digest: {e}"),
            })?;
            let accept = vec![child.media_type.clone()];
            let reference = Reference::Digest(digest.clone());
            let (child_reply, cached) = self
                .resolve_manifest(&req.route, &reference, &accept)
                .await?;
            if let Some(child_doc) =
                ManifestDoc::parse(&child_reply.bytes).filter(|d| !d.is_index())
            {
                self.judge_image(guard, req, name, &digest, &child_doc)
                    .await?;
            }
            if !cached {
                self.keep_manifest(&req.route, None, &child_reply).await;
            }
        }
        Ok(())
    }

    async fn judge_image(
        &self,
        guard: &Arc<Guard>,
        req: &ManifestRequest,
        name: &NameVerdict,
        digest: &Digest,
        doc: &ManifestDoc,
    ) -> Result<()> {
        let Some(config) = &doc.config else {
            return Ok(());
        };
        let bad = |reason: String| Error::BadUpstream {
            host: req.route.upstream.host.clone(),
            reason,
        };
        let parse = |d: &str| {
            d.parse::<Digest>()
                .map_err(|e| bad(format!("manifest lists a bad digest: {e}")))
        };
        let blobs = ImageBlobs {
            config: parse(&config.digest)?,
            layers: doc
                .layers
                .iter()
                .map(|l| parse(&l.digest))
                .collect::<Result<_>>()?,
            runs: Vec::new(),
        };
        // Artifacts (Helm charts, signatures) have other config types: only their layers count. An
        // image judged under the current rules is not judged again, so its config is not read (a
        // blocked image's config is not cached, and must not cost an upstream request each time).
        let config_bytes = if guard.knows_image(digest) {
            None
        } else if IMAGE_CONFIG_TYPES.contains(&config.media_type.as_str()) {
            match self
                .read_small_blob(&req.route, &blobs.config, MAX_CONFIG_BYTES)
                .await
            {
                Ok(b) => Some(b),
                // No client can pull an image whose config is missing; nothing to judge.
                Err(Error::Upstream { status: 404, .. }) => {
                    tracing::warn!(config = %blobs.config, "image config not found upstream: manifest passed on unjudged");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        } else {
            Some(Bytes::from_static(b"{}"))
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
