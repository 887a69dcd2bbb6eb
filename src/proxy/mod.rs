//! The pull-through request path: manifests, blobs, tags and referrers fetched from the routed
//! upstream, verified, and streamed on with tail-hold.

pub mod error;
pub mod offload;
pub mod range;
pub mod tags;
pub mod tailhold;

pub use error::{Error, Result};
pub use range::ByteRange;
pub use tags::Page;
pub use tailhold::{BlobCheck, DigestCheck, TailHold, Veto, Window};

use crate::cache::{Cache, Fill, FillSpec, Fills, Joined, Manifest, Reader, TagRecord};
use crate::metrics;
use crate::oci::media::ManifestDoc;
use crate::oci::{media, Digest, ErrorCode, ErrorEnvelope, Reference, Tag};
use crate::policy::guard::{Guard, Who};
use crate::store::ImageBlobs;
use crate::upstream::client::idle_body;
use crate::upstream::{Route, UpstreamClient, UpstreamError};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LINK};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A blob body as it reaches the server: bytes, or an error that must abort the response.
pub type BlobBody = Pin<Box<dyn Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send>>;

/// Upstream headers worth passing on to clients (Docker Hub's rate-limit figures).
const PASSTHROUGH_HEADERS: [&str; 3] = [
    "ratelimit-limit",
    "ratelimit-remaining",
    "docker-ratelimit-source",
];

#[derive(Debug, Clone)]
pub struct ManifestRequest {
    pub route: Route,
    pub reference: Reference,
    /// The client's `Accept` types, as a set (dockerd sends them in random order).
    pub accept: Vec<String>,
    pub who: Who,
}

pub struct ManifestReply {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
    pub headers: HeaderMap,
}

#[derive(Debug, Clone)]
pub struct BlobRequest {
    pub route: Route,
    pub digest: Digest,
    pub range: Option<ByteRange>,
    /// HEAD: only the size and digest are wanted.
    pub head: bool,
    pub who: Who,
}

pub struct BlobReply {
    pub digest: Digest,
    /// Size of the whole blob, when known.
    pub size: Option<u64>,
    /// The part being sent, when a range was asked for and can be served.
    pub window: Option<(u64, u64)>,
    /// `None` for HEAD.
    pub body: Option<BlobBody>,
    pub headers: HeaderMap,
}

/// A JSON document passed through from the upstream (tag lists, referrers).
pub struct JsonReply {
    pub content_type: String,
    pub bytes: Bytes,
    pub headers: HeaderMap,
}

/// The read side of a registry. The pull-through proxy implements it; a local store would too, so
/// handlers cannot tell where content comes from.
pub trait Registry: Send + Sync + 'static {
    /// A manifest or index, byte-exact, with its digest. HEAD and GET share this.
    fn manifest(&self, req: ManifestRequest) -> impl Future<Output = Result<ManifestReply>> + Send;
    /// A blob; its body, if any, never completes unless its bytes match `req.digest`.
    fn blob(&self, req: BlobRequest) -> impl Future<Output = Result<BlobReply>> + Send;
    /// `tags/list`, with `n`/`last` passed on; `link_base` is the client-facing path for `Link`.
    fn tags(
        &self,
        route: Route,
        page: Page,
        link_base: String,
    ) -> impl Future<Output = Result<JsonReply>> + Send;
    /// `referrers/<digest>`, with `artifactType` passed on.
    fn referrers(
        &self,
        route: Route,
        digest: Digest,
        query: Option<String>,
    ) -> impl Future<Output = Result<JsonReply>> + Send;
}

/// The pull-through registry: requests are answered from the disk cache when it can, else from
/// the routed upstream through one shared fetch per blob.
pub struct PullThrough {
    client: Arc<UpstreamClient>,
    guard: Option<Arc<Guard>>,
    cache: Option<Arc<Cache>>,
    fills: Arc<Fills>,
    fill_timeout: Duration,
    /// One revalidation per tag at a time: concurrent pulls after the TTL send one `HEAD`.
    tag_checks: crate::gates::Gates<String>,
}

/// Children of an index judged when the index is asked for (platform images, not attestations).
const MAX_INDEX_CHILDREN: usize = 32;
/// The largest image config fetched to be judged.
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;
const IMAGE_CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

impl PullThrough {
    pub fn new(client: Arc<UpstreamClient>) -> Self {
        PullThrough {
            client,
            guard: None,
            cache: None,
            fills: Arc::new(Fills::default()),
            fill_timeout: Duration::from_secs(3600),
            tag_checks: crate::gates::Gates::default(),
        }
    }

    /// Keeps blobs and manifests on disk (without it, every request goes upstream).
    pub fn with_cache(mut self, cache: Cache) -> Self {
        self.cache = Some(Arc::new(cache));
        self
    }

    /// The longest one upstream blob fetch may run.
    pub fn with_fill_timeout(mut self, timeout: Duration) -> Self {
        self.fill_timeout = timeout;
        self
    }

    /// Judges names, images and layers on the way through (without it, nothing is inspected).
    pub fn with_guard(mut self, guard: Arc<Guard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Fetches a manifest, byte-exact, and checks it against its digest.
    async fn fetch_manifest(
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
        let media_type = media::manifest_media_type(content_type.as_deref(), &bytes)
            .ok_or_else(|| bad("manifest has no media type".into()))?;
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

    /// Judges what a manifest names: an image (its config and known layers), or each platform
    /// image of an index (the index is refused when one of them is).
    async fn judge(
        &self,
        guard: &Arc<Guard>,
        req: &ManifestRequest,
        reply: &ManifestReply,
    ) -> Result<()> {
        let Some(doc) = ManifestDoc::parse(&reply.bytes) else {
            return Ok(());
        };
        if !doc.is_index() {
            return self.judge_image(guard, req, &reply.digest, &doc).await;
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
                self.judge_image(guard, req, &digest, &child_doc).await?;
            }
            if !cached {
                self.keep_manifest(&req.route, None, &child_reply);
            }
        }
        Ok(())
    }

    async fn judge_image(
        &self,
        guard: &Arc<Guard>,
        req: &ManifestRequest,
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
        };
        // Artifacts (Helm charts, signatures) have other config types: only their layers count. An
        // image judged under the current rules is not judged again, so its config is not read (a
        // blocked image's config is not cached, and must not cost an upstream request each time).
        let config_bytes = if guard.knows_image(digest) {
            Bytes::new()
        } else if IMAGE_CONFIG_TYPES.contains(&config.media_type.as_str()) {
            match self
                .read_small_blob(&req.route, &blobs.config, &req.who, MAX_CONFIG_BYTES)
                .await
            {
                Ok(b) => b,
                // No client can pull an image whose config is missing; nothing to judge.
                Err(Error::Upstream { status: 404, .. }) => {
                    tracing::warn!(config = %blobs.config, "image config not found upstream: manifest passed on unjudged");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        } else {
            Bytes::from_static(b"{}")
        };
        if guard.policy.config.strict {
            for layer in guard.unjudged_layers(&blobs) {
                self.judge_layer_now(&req.route, &layer, &req.who).await?;
            }
        }
        let judged = guard.judge_image(
            &req.route,
            &req.reference,
            digest,
            &blobs,
            &config_bytes,
            &req.who,
        );
        // The config of a malicious image is not kept (audit mode still serves it).
        if let Some(cache) = &self.cache {
            if guard.judged_malicious(&blobs.config) {
                cache.blobs.remove(&blobs.config);
            }
        }
        judged?;
        Ok(())
    }

    /// `GET blobs/<digest>` from the route's upstream, a success or the error it means.
    async fn get_blob(&self, route: &Route, digest: &Digest) -> Result<reqwest::Response> {
        self.get(
            route,
            Method::GET,
            &format!("blobs/{digest}"),
            None,
            HeaderMap::new(),
        )
        .await
    }

    /// A small blob (an image config), whole and verified: from the cache, or through the shared
    /// fetch (so concurrent pulls of a new image ask the upstream for its config once).
    async fn read_small_blob(
        &self,
        route: &Route,
        digest: &Digest,
        who: &Who,
        cap: usize,
    ) -> Result<Bytes> {
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
        let (fill, mut reader) = self.open_fill(route, digest, who, false).await?;
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
            .map_err(|veto| refusal(&route.upstream.host, veto))?;
        Ok(buf.freeze())
    }

    /// Strict mode: reads a whole layer from the upstream through its checks, sending nothing, so
    /// its verdict is known before the manifest is answered (and the layer is cached for the pull
    /// that follows).
    async fn judge_layer_now(&self, route: &Route, digest: &Digest, who: &Who) -> Result<()> {
        let (fill, mut reader) = self.open_fill(route, digest, who, true).await?;
        while let Some(chunk) = reader.next().await {
            chunk.map_err(|e| Error::Internal(format!("reading a fetch: {e}")))?;
        }
        if let Err(veto) = fill.outcome().finish() {
            // A refused layer has its verdict stored by now; judge_image will report it.
            tracing::info!(%digest, reason = %veto, "strict mode: layer refused before the manifest was answered");
        }
        Ok(())
    }

    /// Joins the fetch of a blob under way, or starts it: `GET` from the upstream, every check
    /// (digest; with `inspect`, the layer's inspection) on its own task, kept in the cache when it
    /// passes. Returns the fill and a reader from its first byte.
    async fn open_fill(
        &self,
        route: &Route,
        digest: &Digest,
        who: &Who,
        inspect: bool,
    ) -> Result<(Arc<Fill>, Reader)> {
        let key = (route.upstream.host.clone(), digest.clone());
        let lead = match self.fills.join(key.clone()).await {
            Joined::Follow(fill) => {
                let reader = fill.reader();
                return Ok((fill, reader));
            }
            Joined::Lead(lead) => lead,
        };
        // An error here drops the lead: requests waiting on it then ask on their own.
        let response = self.get_blob(route, digest).await?;
        let headers = passthrough_headers(response.headers());
        let size = content_length(response.headers());
        let mut checks: Vec<Box<dyn BlobCheck>> =
            vec![Box::new(DigestCheck::new(digest.clone(), size))];
        if let (true, Some(g)) = (inspect, &self.guard) {
            if let Some(check) = g.layer_check(route, digest, who) {
                checks.push(offloaded(digest, check)?);
            }
        }
        let guard = self.guard.clone();
        let d = digest.clone();
        Ok(Fill::start(
            lead,
            FillSpec {
                key,
                body: idle_body(response, self.client.settings().idle_timeout()),
                size,
                headers,
                checks,
                store: self.cache.as_ref().map(|c| c.blobs.clone()),
                keep: Box::new(move || guard.is_none_or(|g| !g.judged_malicious(&d))),
                timeout: self.fill_timeout,
            },
        ))
    }

    /// A blob from the cache. Its bytes were verified when they were committed; a blob without a
    /// verdict under the current rules (the rules changed) is judged again as it is read.
    fn serve_cached(
        &self,
        req: BlobRequest,
        cached: crate::cache::CachedBlob,
    ) -> Result<BlobReply> {
        let size = cached.size;
        let window = match req.range {
            Some(range) => Some(range.resolve(size).ok_or(Error::RangeInvalid { size })?),
            None => None,
        };
        let mut reply = BlobReply {
            digest: req.digest.clone(),
            size: Some(size),
            window,
            body: None,
            headers: HeaderMap::new(),
        };
        if req.head {
            return Ok(reply);
        }
        let check = self
            .guard
            .as_ref()
            .and_then(|g| g.layer_check(&req.route, &req.digest, &req.who));
        let body: BlobBody = match check {
            None => {
                let (start, end) = window.unwrap_or((0, size.saturating_sub(1)));
                let len = if size == 0 { 0 } else { end + 1 - start };
                Box::pin(file_stream(cached, start, len))
            }
            Some(check) => {
                let checks = vec![offloaded(&req.digest, check)?];
                let w = Window::of(window);
                let cache = self.cache.clone();
                let guard = self.guard.clone();
                let digest = req.digest.clone();
                let whole = file_stream(cached, 0, size);
                // The inspector's backpressure and the wait for its verdict block: the checked
                // stream runs on a blocking-pool thread, never on an async worker.
                off_runtime(TailHold::new(Box::pin(whole), checks, w).on_end(Box::new(
                    move |outcome| {
                        if outcome.is_err() && guard.is_some_and(|g| g.judged_malicious(&digest)) {
                            if let Some(c) = cache {
                                c.blobs.remove(&digest);
                            }
                        }
                    },
                )))
            }
        };
        reply.body = Some(body);
        Ok(reply)
    }

    /// A manifest from the cache when it can answer, else from the upstream; `true` when it came
    /// from the cache. Tags are trusted for the cache's TTL, then checked with `HEAD`; when the
    /// upstream cannot be asked, the last known digest is served.
    async fn resolve_manifest(
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
                    if let Err(e) = cache.manifests.put_tag(host, &route.repo, tag, &record) {
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
                        cache.manifests.remove_tag(host, &route.repo, tag);
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

    /// Keeps a manifest that was fetched and judged (and the tag it was asked by).
    fn keep_manifest(&self, route: &Route, tag: Option<&Tag>, reply: &ManifestReply) {
        let Some(cache) = &self.cache else {
            return;
        };
        let m = Manifest {
            media_type: reply.media_type.clone(),
            bytes: reply.bytes.clone(),
        };
        let mut result = cache.manifests.put(&reply.digest, &m);
        if let (Ok(()), Some(tag)) = (&result, tag) {
            let record = TagRecord {
                digest: reply.digest.clone(),
                media_type: reply.media_type.clone(),
                checked: crate::cache::manifests::unix_now(),
            };
            result = cache
                .manifests
                .put_tag(&route.upstream.host, &route.repo, tag, &record);
        }
        if let Err(e) = result {
            metrics::CACHE_WRITE_ERRORS.inc();
            tracing::error!(digest = %reply.digest, error = %e, "cache write failed: serving uncached");
        }
    }

    async fn get(
        &self,
        route: &Route,
        method: Method,
        rest: &str,
        query: Option<&str>,
        headers: HeaderMap,
    ) -> Result<reqwest::Response> {
        let response = self
            .client
            .send(route, method, rest, query, headers)
            .await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.status_error(route, response, rest).await)
        }
    }

    /// Turns an upstream's non-success answer into the error the client should see.
    async fn status_error(&self, route: &Route, response: reqwest::Response, rest: &str) -> Error {
        let host = route.upstream.host.clone();
        let status = response.status();
        let retry_after = crate::upstream::client::retry_after(response.headers());
        let attempts = self.client.settings().attempts;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Error::RateLimited { host, retry_after };
        }
        if status.is_server_error() {
            return Error::UpstreamFailed {
                host,
                status: status.as_u16(),
                attempts,
                retry_after,
            };
        }
        let idle = self.client.settings().idle_timeout();
        let body = read_capped(response, 64 * 1024, idle)
            .await
            .unwrap_or_default();
        let upstream_err = ErrorEnvelope::parse(&body).and_then(|e| e.errors.into_iter().next());
        let default_code = if rest.starts_with("blobs/") {
            ErrorCode::BlobUnknown
        } else if rest.starts_with("manifests/") {
            ErrorCode::ManifestUnknown
        } else {
            ErrorCode::NameUnknown
        };
        match status {
            StatusCode::NOT_FOUND => {
                let (code, message) = match upstream_err {
                    Some(e)
                        if matches!(
                            e.code,
                            ErrorCode::NameUnknown
                                | ErrorCode::ManifestUnknown
                                | ErrorCode::BlobUnknown
                        ) =>
                    {
                        (e.code, e.message)
                    }
                    _ => (default_code, String::new()),
                };
                let message = if message.is_empty() {
                    format!("{} not found on {host}", route.repo)
                } else {
                    format!("{message} ({} on {host})", route.repo)
                };
                Error::Upstream {
                    status: 404,
                    code,
                    message,
                }
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let why = upstream_err
                    .map(|e| e.message)
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| status.to_string());
                Error::Upstream {
                    status: 403,
                    code: ErrorCode::Denied,
                    message: format!("upstream {host} refused access to {}: {why}", route.repo),
                }
            }
            s if s.is_client_error() && s != StatusCode::METHOD_NOT_ALLOWED => {
                let (code, message) = upstream_err
                    .map(|e| (e.code, e.message))
                    .unwrap_or((ErrorCode::Unknown, s.to_string()));
                Error::Upstream {
                    status: s.as_u16(),
                    code,
                    message: format!("upstream {host}: {message}"),
                }
            }
            s => Error::BadUpstream {
                host,
                reason: format!("unexpected status {s}"),
            },
        }
    }
}

impl Registry for PullThrough {
    async fn manifest(&self, req: ManifestRequest) -> Result<ManifestReply> {
        if let Some(g) = &self.guard {
            g.check_name(&req.route, &req.who).await?;
        }
        let (reply, cached) = self
            .resolve_manifest(&req.route, &req.reference, &req.accept)
            .await?;
        if let Some(g) = &self.guard {
            self.judge(g, &req, &reply).await?;
        }
        // Kept once judged: a manifest refused by policy is not cached.
        if !cached {
            let tag = match &req.reference {
                Reference::Tag(t) => Some(t),
                Reference::Digest(_) => None,
            };
            self.keep_manifest(&req.route, tag, &reply);
        }
        Ok(reply)
    }

    async fn blob(&self, req: BlobRequest) -> Result<BlobReply> {
        if let Some(g) = &self.guard {
            g.check_name(&req.route, &req.who).await?;
            if let Err(blocked) = g.check_blob(&req.route, &req.digest, &req.who) {
                if let (Some(c), true) = (&self.cache, g.judged_malicious(&req.digest)) {
                    c.blobs.remove(&req.digest);
                }
                return Err(blocked.into());
            }
        }
        if let Some(cache) = &self.cache {
            if let Some(cached) = cache.blobs.open_blob(&req.digest) {
                metrics::BLOB_HITS.inc();
                return self.serve_cached(req, cached);
            }
            metrics::BLOB_MISSES.inc();
        }
        if req.head {
            let rest = format!("blobs/{}", req.digest);
            let response = self
                .get(&req.route, Method::HEAD, &rest, None, HeaderMap::new())
                .await?;
            return Ok(BlobReply {
                digest: req.digest,
                size: content_length(response.headers()),
                window: None,
                body: None,
                headers: passthrough_headers(response.headers()),
            });
        }
        // The whole blob is always fetched: its digest can only be checked over all of it, so a
        // range is cut out of the verified stream rather than asked of the upstream.
        let (fill, reader) = self
            .open_fill(&req.route, &req.digest, &req.who, true)
            .await?;
        let size = fill.size;
        let window = match (req.range, size) {
            (Some(range), Some(size)) => {
                Some(range.resolve(size).ok_or(Error::RangeInvalid { size })?)
            }
            _ => None,
        };
        let w = Window::of(window);
        // The fill's outcome releases the held tail. A client that joined another's fill is
        // checked again under its own repository once the blob's verdict is known.
        let mut checks = vec![fill.outcome()];
        if let Some(g) = &self.guard {
            checks.push(Box::new(VerdictCheck {
                guard: g.clone(),
                route: req.route.clone(),
                digest: req.digest.clone(),
                who: req.who.clone(),
            }));
        }
        let mut body = TailHold::new(Box::pin(reader.into_stream()), checks, w);
        // Nothing is answered until the first chunk may go out. A blob refused before that (a small
        // layer judged whole, wrong bytes in the first chunks) gets a proper error with its reason
        // instead of a cut-off 200.
        let first = match body.next().await {
            Some(Ok(chunk)) => Some(chunk),
            None => None,
            Some(Err(e)) => return Err(refusal(&req.route.upstream.host, e)),
        };
        let body = futures_util::stream::iter(first.map(Ok)).chain(body);
        Ok(BlobReply {
            digest: req.digest,
            size,
            window,
            body: Some(Box::pin(body)),
            headers: fill.headers.clone(),
        })
    }

    async fn tags(&self, route: Route, page: Page, link_base: String) -> Result<JsonReply> {
        if let Some(g) = &self.guard {
            g.check_name(&route, &Who::default()).await?;
        }
        let query = page.query();
        let response = self
            .get(
                &route,
                Method::GET,
                "tags/list",
                query.as_deref(),
                HeaderMap::new(),
            )
            .await?;
        let mut headers = passthrough_headers(response.headers());
        // The upstream's Link names its own path; the client must be sent back to ours.
        let upstream_next = response
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link_query);
        let idle = self.client.settings().idle_timeout();
        let mut reply =
            json_reply(&route, response, HeaderMap::new(), "application/json", idle).await?;
        // Some upstreams (distribution 2.8) ignore `n` and `last`; the spec says at most `n`
        // tags after `last`, in lexical order, so the page is cut here when they did.
        let mut next = upstream_next;
        if let Some(cut) = page.apply(&reply.bytes) {
            reply.bytes = cut.body;
            next = next.or(cut.next);
        }
        if let Some(next) = next {
            if let Ok(v) = HeaderValue::from_str(&format!("<{link_base}?{next}>; rel=\"next\"")) {
                headers.insert(LINK, v);
            }
        }
        reply.headers = headers;
        Ok(reply)
    }

    async fn referrers(
        &self,
        route: Route,
        digest: Digest,
        query: Option<String>,
    ) -> Result<JsonReply> {
        if let Some(g) = &self.guard {
            g.check_name(&route, &Who::default()).await?;
        }
        let rest = format!("referrers/{digest}");
        let response = self
            .get(
                &route,
                Method::GET,
                &rest,
                query.as_deref(),
                HeaderMap::new(),
            )
            .await?;
        let mut headers = passthrough_headers(response.headers());
        if let Some(v) = response.headers().get("oci-filters-applied") {
            headers.insert(HeaderName::from_static("oci-filters-applied"), v.clone());
        }
        let idle = self.client.settings().idle_timeout();
        json_reply(&route, response, headers, media::OCI_INDEX, idle).await
    }
}

/// The error for a blob refused before its first byte went out: a policy block (403, with the
/// reason), or the upstream's fault (wrong bytes, cut body: 502).
fn refusal(host: &str, e: impl std::fmt::Display) -> Error {
    let reason = e.to_string();
    if reason.starts_with(crate::policy::guard::BLOCKED_PREFIX) {
        Error::from(crate::policy::guard::Blocked {
            message: reason,
            slug: "layer".into(),
            detail: serde_json::json!({}),
        })
    } else {
        Error::BadUpstream {
            host: host.to_string(),
            reason,
        }
    }
}

/// Refuses the tail of a blob whose verdict, once known, blocks it under the repository this
/// client asked for (a client reading a fetch started under another repository or mode).
struct VerdictCheck {
    guard: Arc<Guard>,
    route: Route,
    digest: Digest,
    who: Who,
}

impl BlobCheck for VerdictCheck {
    fn update(&mut self, _: &[u8]) -> std::result::Result<(), Veto> {
        Ok(())
    }

    fn finish(&mut self) -> std::result::Result<(), Veto> {
        self.guard
            .check_blob(&self.route, &self.digest, &self.who)
            .map_err(|b| Veto(b.message))
    }
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

/// `len` bytes of a cached blob from `start`, read in large blocks on a blocking-pool thread a
/// few blocks ahead of the socket, so reading the file overlaps sending the previous block. The
/// blob stays pinned (not evictable) until the stream is dropped and the thread sees it.
fn file_stream(
    cached: crate::cache::CachedBlob,
    start: u64,
    len: u64,
) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send {
    const BLOCK: u64 = 1024 * 1024;
    const AHEAD: usize = 4;
    let (tx, rx) = tokio::sync::mpsc::channel(AHEAD);
    tokio::task::spawn_blocking(move || {
        let end = start + len;
        let mut pos = start;
        while pos < end {
            let n = (end - pos).min(BLOCK);
            let mut buf = vec![0; n as usize];
            let read = std::os::unix::fs::FileExt::read_exact_at(&cached.file, &mut buf, pos)
                .map(|()| Bytes::from(buf));
            let failed = read.is_err();
            // The receiver is gone when the client went away: stop reading.
            if tx.blocking_send(read).is_err() || failed {
                return;
            }
            pos += n;
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    })
}

/// Polls `body` on a blocking-pool thread and hands its items over through a small channel: for
/// bodies whose checks may block the thread that polls them. When the client goes away, the
/// channel closes and the thread drops the body.
fn off_runtime(
    body: impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + 'static,
) -> BlobBody {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        runtime.block_on(async move {
            let mut body = std::pin::pin!(body);
            while let Some(item) = body.next().await {
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        })
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    }))
}

/// Runs a layer's inspection on its own thread, so the blob streams while it is judged.
fn offloaded(digest: &Digest, check: Box<dyn BlobCheck>) -> Result<Box<dyn BlobCheck>> {
    let name = format!("inspect-{}", &digest.hex()[..12.min(digest.hex().len())]);
    offload::Offloaded::new(name, check, offload::DEFAULT_CAPACITY)
        .map(|o| Box::new(o) as Box<dyn BlobCheck>)
        .map_err(|e| Error::Internal(format!("cannot start an inspector thread: {e}")))
}

/// The largest tag list or referrers index passed through.
const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;

async fn json_reply(
    route: &Route,
    response: reqwest::Response,
    headers: HeaderMap,
    default_type: &str,
    idle: Duration,
) -> Result<JsonReply> {
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(default_type)
        .to_string();
    let bytes = read_capped(response, MAX_JSON_BYTES, idle)
        .await
        .map_err(|e| Error::BadUpstream {
            host: route.upstream.host.clone(),
            reason: e,
        })?;
    Ok(JsonReply {
        content_type,
        bytes,
        headers,
    })
}

/// The query of a `Link: </v2/x/tags/list?n=2&last=b>; rel="next"` header.
fn next_link_query(link: &str) -> Option<String> {
    let target = link
        .split(';')
        .next()?
        .trim()
        .strip_prefix('<')?
        .strip_suffix('>')?;
    let query = target.split_once('?')?.1;
    // Only the pagination parameters go back to the client; nothing else of the upstream's URL.
    let kept: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "n" || k == "last")
        .map(|(k, v)| {
            format!(
                "{k}={}",
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The `Content-Length` header itself: reqwest's `content_length()` is the body's size hint, which
/// is 0 for any HEAD answer.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn passthrough_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in PASSTHROUGH_HEADERS {
        if let Some(v) = upstream.get(name) {
            out.insert(HeaderName::from_static(name), v.clone());
        }
    }
    out
}

/// Reads a whole body, refusing one longer than `cap` without buffering past it, or one that
/// stalls for `idle`.
async fn read_capped(
    response: reqwest::Response,
    cap: usize,
    idle: Duration,
) -> std::result::Result<Bytes, String> {
    let mut buf = BytesMut::new();
    let mut stream = idle_body(response, idle);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > cap {
            return Err(format!("body larger than {cap} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body whose polling blocks its thread (as an inspector that lags does) leaves the async
    /// workers free: on a runtime with a single worker, a timer still fires while it blocks.
    #[test]
    fn a_blocking_body_does_not_hold_up_the_async_workers() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let slow = futures_util::stream::iter(0..3).map(|i| {
                std::thread::sleep(Duration::from_millis(300));
                Ok::<_, std::io::Error>(Bytes::from(vec![i as u8]))
            });
            let body = tokio::spawn(off_runtime(slow).collect::<Vec<_>>());
            // Another task on the same worker, as every other request would be.
            let started = std::time::Instant::now();
            let timer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                started.elapsed()
            });
            // Polled on the worker itself, the body would hold it for 900 ms.
            let waited = timer.await.unwrap();
            assert!(
                waited < Duration::from_millis(600),
                "the worker was blocked for {waited:?}"
            );
            let got: Vec<u8> = body
                .await
                .unwrap()
                .into_iter()
                .map(|b| b.unwrap()[0])
                .collect();
            assert_eq!(got, vec![0, 1, 2]);
        });
    }

    #[test]
    fn link_queries_keep_only_pagination() {
        assert_eq!(
            next_link_query(r#"</v2/library/x/tags/list?last=b&n=2&evil=1>; rel="next""#)
                .as_deref(),
            Some("last=b&n=2")
        );
        assert_eq!(next_link_query("garbage"), None);
    }
}
