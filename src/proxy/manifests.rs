//! The manifest stage of a pull: from the cache when it can answer (by digest for good, by tag for
//! the tag TTL, then revalidated with `HEAD`), else fetched from the upstream byte-exact and checked
//! against its digest; the last known digest of a tag is served while the upstream is down.

use super::{Error, ManifestReply, PullThrough, Result};
use crate::cache::{Manifest, TagRecord};
use crate::metrics;
use crate::oci::{media, Digest, Reference, Tag};
use crate::upstream::status::{passthrough_headers, read_capped};
use crate::upstream::{Route, UpstreamError};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method};

impl PullThrough {
    /// Fetches a manifest, byte-exact, and checks it against its digest.
    pub(super) async fn fetch_manifest(
        &self,
        route: &Route,
        reference: &Reference,
        accept: &[String],
    ) -> Result<ManifestReply> {
        let host = &route.upstream.host;
        let bad = |reason: String| Error::BadUpstream {
            host: host.clone(),
            reason,
        };
        let rest = format!("manifests/{reference}");
        let response = self
            .get(route, Method::GET, &rest, None, accept_header(accept))
            .await?;
        let cap = self.client.settings().max_manifest_bytes;
        if response.content_length().is_some_and(|l| l > cap as u64) {
            return Err(bad(format!("manifest larger than {cap} bytes")));
        }
        let passthrough = passthrough_headers(response.headers());
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let announced: Option<Digest> = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = read_capped(response, cap, self.client.settings().idle_timeout())
            .await
            .map_err(|e| bad(format!("manifest body: {e}")))?;
        // Checked with the document itself (`document`): a manifest served as anything but a
        // manifest or an index type is refused there, not guessed from its body.
        let media_type = media::manifest_media_type(content_type.as_deref()).unwrap_or_default();
        let digest = match reference {
            Reference::Digest(expected) => {
                let got = Digest::compute(expected.algorithm(), &bytes);
                if &got != expected {
                    return Err(bad(format!("manifest {expected} hashes to {got}")));
                }
                got
            }
            Reference::Tag(_) => {
                if let Some(announced) = announced {
                    let got = Digest::compute(announced.algorithm(), &bytes);
                    if got != announced {
                        return Err(bad(format!(
                            "manifest announced as {announced} hashes to {got}"
                        )));
                    }
                }
                Digest::sha256_of(&bytes)
            }
        };
        Ok(ManifestReply {
            digest,
            media_type,
            bytes,
            headers: passthrough,
        })
    }

    /// A manifest from the cache when it can answer, else from the upstream; `true` when it came
    /// from the cache. Tags are trusted for the cache's TTL, then checked with `HEAD`; when the
    /// upstream cannot be asked, the last known digest is served.
    pub(super) async fn resolve_manifest(
        &self,
        route: &Route,
        reference: &Reference,
        accept: &[String],
    ) -> Result<(ManifestReply, bool)> {
        let Some(cache) = &self.cache else {
            return Ok((self.fetch_manifest(route, reference, accept).await?, false));
        };
        let tag = match reference {
            Reference::Digest(digest) => {
                if let Some(m) = cache.manifests.get(digest) {
                    metrics::MANIFEST_HITS.inc();
                    return Ok((cached_reply(digest.clone(), m), true));
                }
                metrics::MANIFEST_MISSES.inc();
                return Ok((self.fetch_manifest(route, reference, accept).await?, false));
            }
            Reference::Tag(tag) => tag,
        };
        let host = &route.upstream.host;
        let known = || {
            cache
                .manifests
                .tag(host, &route.repo, tag)
                .filter(|r| acceptable(accept, &r.media_type))
                .and_then(|r| cache.manifests.get(&r.digest).map(|m| (r, m)))
        };
        let fresh = |known: &Option<(TagRecord, Manifest)>| match known {
            Some((record, m)) if record.fresh(cache.tag_ttl) => {
                metrics::MANIFEST_HITS.inc();
                Some(cached_reply(record.digest.clone(), m.clone()))
            }
            _ => None,
        };
        let first = known();
        if let Some(reply) = fresh(&first) {
            return Ok((reply, true));
        }
        // Past the TTL: one request asks the upstream, the others wait and find its answer (a
        // tag never seen is not gated: its concurrent first pulls each fetch it).
        let gate = self
            .tag_checks
            .gate(format!("{host}/{}:{}", route.repo, tag.as_str()));
        let _one_check = match first {
            Some(_) => Some(gate.lock().await),
            None => None,
        };
        let known = if first.is_some() { known() } else { None };
        if let Some(reply) = fresh(&known) {
            return Ok((reply, true));
        }
        if let Some((record, m)) = &known {
            match self.head_manifest(route, reference, accept).await {
                Ok(Some(d)) if d == record.digest => {
                    let mut record = record.clone();
                    record.checked = crate::cache::manifests::unix_now();
                    let (cache, host, repo, tag) =
                        (cache.clone(), host.clone(), route.repo.clone(), tag.clone());
                    let written = record.clone();
                    // An fsync: on the blocking pool, awaited while this request holds the tag's
                    // gate, so the pulls waiting on it find the record refreshed.
                    let put = tokio::task::spawn_blocking(move || {
                        cache.manifests.put_tag(&host, &repo, &tag, &written)
                    })
                    .await;
                    if let Ok(Err(e)) = put {
                        tracing::warn!(error = %e, "cannot record a tag check");
                    }
                    metrics::MANIFEST_HITS.inc();
                    return Ok((cached_reply(record.digest, m.clone()), true));
                }
                // Moved (or the upstream names no digest): fetch it.
                Ok(_) => {}
                Err(e) if upstream_down(&e) => return Ok((stale(route, tag, record, m, &e), true)),
                Err(e) => {
                    if matches!(e, Error::Upstream { status: 404, .. }) {
                        let (cache, host, repo, tag) =
                            (cache.clone(), host.clone(), route.repo.clone(), tag.clone());
                        tokio::task::spawn_blocking(move || {
                            cache.manifests.remove_tag(&host, &repo, &tag)
                        });
                    }
                    return Err(e);
                }
            }
        }
        metrics::MANIFEST_MISSES.inc();
        match self.fetch_manifest(route, reference, accept).await {
            Ok(reply) => Ok((reply, false)),
            Err(e) if upstream_down(&e) => match &known {
                Some((record, m)) => Ok((stale(route, tag, record, m, &e), true)),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// The digest a tag has upstream now, asked with `HEAD` (Docker Hub does not count it
    /// against the pull limit).
    async fn head_manifest(
        &self,
        route: &Route,
        reference: &Reference,
        accept: &[String],
    ) -> Result<Option<Digest>> {
        let response = self
            .get(
                route,
                Method::HEAD,
                &format!("manifests/{reference}"),
                None,
                accept_header(accept),
            )
            .await?;
        Ok(response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()))
    }

    /// Keeps a manifest that was fetched and judged (and the tag it was asked by). The writes
    /// (and their fsync) run on the blocking pool, never on an async worker.
    pub(super) async fn keep_manifest(
        &self,
        route: &Route,
        tag: Option<&Tag>,
        reply: &ManifestReply,
    ) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        let m = Manifest {
            media_type: reply.media_type.clone(),
            bytes: reply.bytes.clone(),
        };
        let digest = reply.digest.clone();
        let tag_record = tag.map(|tag| {
            let record = TagRecord {
                digest: reply.digest.clone(),
                media_type: reply.media_type.clone(),
                checked: crate::cache::manifests::unix_now(),
            };
            (
                route.upstream.host.clone(),
                route.repo.clone(),
                tag.clone(),
                record,
            )
        });
        let written = tokio::task::spawn_blocking(move || {
            cache.manifests.put(&digest, &m)?;
            if let Some((host, repo, tag, record)) = tag_record {
                cache.manifests.put_tag(&host, &repo, &tag, &record)?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = written {
            metrics::CACHE_WRITE_ERRORS.inc();
            tracing::error!(digest = %reply.digest, error = %e, "cache write failed: serving uncached");
        }
    }
}

/// The manifest as the clients read it (`oci::document`), or, for a document they could read
/// otherwise than portcullis or that cannot be judged, the refusal: it is then neither served nor
/// cached. Checked on every answer, cached ones included (a cache written by an older version may
/// hold documents that were not checked), whether inspection is on or off.
pub(super) fn document(route: &Route, reply: &ManifestReply) -> Result<crate::oci::Manifest> {
    crate::oci::Manifest::parse(&reply.media_type, &reply.bytes).map_err(|e| {
        tracing::warn!(
            upstream = %route.upstream.host,
            repo = %route.repo,
            digest = %reply.digest,
            media_type = %reply.media_type,
            error = %e,
            "manifest refused: not read as the clients read it"
        );
        Error::InvalidDocument {
            host: route.upstream.host.clone(),
            reason: format!("manifest {}: {e}", reply.digest),
        }
    })
}

/// A manifest answered from the cache.
fn cached_reply(digest: Digest, m: Manifest) -> ManifestReply {
    ManifestReply {
        digest,
        media_type: m.media_type,
        bytes: m.bytes,
        headers: HeaderMap::new(),
    }
}

/// Whether a client asking with `accept` takes `media_type` (no `Accept` at all takes anything).
fn acceptable(accept: &[String], media_type: &str) -> bool {
    accept.is_empty() || accept.iter().any(|a| a == media_type || a == "*/*")
}

/// The `Accept` header of a manifest request: the client's types, or every type we know.
fn accept_header(accept: &[String]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let accept: Vec<&str> = if accept.is_empty() {
        media::DEFAULT_ACCEPT.to_vec()
    } else {
        accept.iter().map(String::as_str).collect()
    };
    if let Ok(v) = HeaderValue::from_str(&accept.join(", ")) {
        headers.insert(ACCEPT, v);
    }
    headers
}

/// Whether an error means the upstream could not be asked (rather than a real answer such as "no
/// such tag" or "access denied"): then the last known digest of a tag is served.
fn upstream_down(e: &Error) -> bool {
    match e {
        Error::Unreachable(UpstreamError::AuthDenied { .. }) => false,
        Error::Unreachable(_)
        | Error::UpstreamFailed { .. }
        | Error::RateLimited { .. }
        | Error::BadUpstream { .. } => true,
        _ => false,
    }
}

/// The last known manifest of a tag, served because the upstream could not be asked.
fn stale(route: &Route, tag: &Tag, record: &TagRecord, m: &Manifest, e: &Error) -> ManifestReply {
    metrics::STALE_TAGS.inc();
    tracing::warn!(
        upstream = %route.upstream.host,
        repo = %route.repo,
        tag = %tag,
        digest = %record.digest,
        checked = record.checked,
        error = %e,
        "upstream unreachable: serving the cached tag"
    );
    cached_reply(record.digest.clone(), m.clone())
}
