//! The pull-through registry: what a client asks (`Registry`), answered from the disk cache when it
//! can, else from the routed upstream through one shared fetch per blob, judged on the way.
//!
//! One pull, stage by stage: [`manifests`] resolves a manifest (cache, tag TTL, upstream),
//! [`judging`] has the guard judge its name and image before it is answered, [`blobs`] streams
//! each blob through its checks with tail-hold (from the cache, or from a shared fill), and
//! [`listing`] passes tag lists and referrers through.

mod blobs;
pub mod error;
mod judging;
mod listing;
mod manifests;
pub mod range;
pub mod tags;

pub use error::{Error, Result};
pub use judging::MAX_INDEX_DEPTH;
pub use range::ByteRange;
pub use tags::Page;

use crate::cache::{Cache, Fills};
use crate::oci::{Digest, Reference};
use crate::policy::guard::{Guard, Who};
use crate::stream::offload::Pool;
use crate::upstream::{Route, UpstreamClient};
use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, Method};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A blob body as it reaches the server: bytes, or an error that must abort the response.
pub type BlobBody = Pin<Box<dyn Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send>>;

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

/// The pull-through registry.
pub struct PullThrough {
    client: Arc<UpstreamClient>,
    guard: Option<Arc<Guard>>,
    cache: Option<Arc<Cache>>,
    fills: Arc<Fills>,
    fill_timeout: Duration,
    /// The inspector threads every layer inspection runs on.
    inspectors: Option<Arc<Pool>>,
    /// One revalidation per tag at a time: concurrent pulls after the TTL send one `HEAD`.
    tag_checks: crate::gates::Gates<String>,
}

impl PullThrough {
    pub fn new(client: Arc<UpstreamClient>) -> Self {
        PullThrough {
            client,
            guard: None,
            cache: None,
            fills: Arc::new(Fills::default()),
            fill_timeout: Duration::from_secs(3600),
            inspectors: None,
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

    /// Judges names, images and layers on the way through (without it, nothing is inspected),
    /// inspecting layers on `inspectors`.
    pub fn with_guard(mut self, guard: Arc<Guard>, inspectors: Arc<Pool>) -> Self {
        self.guard = Some(guard);
        self.inspectors = Some(inspectors);
        self
    }

    /// Deletes a cached blob judged malicious, on the blocking pool.
    fn drop_cached(&self, digest: &Digest) {
        if let Some(cache) = self.cache.clone() {
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || cache.blobs.remove(&digest));
        }
    }

    /// `method <rest>` on the route's upstream: a success, or the error it means for the client.
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
            return Ok(response);
        }
        let settings = self.client.settings();
        let error = crate::upstream::status::status_error(
            route,
            response,
            rest,
            settings.attempts,
            settings.idle_timeout(),
        )
        .await;
        Err(error.into())
    }
}

impl Registry for PullThrough {
    async fn manifest(&self, req: ManifestRequest) -> Result<ManifestReply> {
        let name = self.check_name(&req.route, &req.who).await?;
        let (reply, cached) = self
            .resolve_manifest(&req.route, &req.reference, &req.accept)
            .await?;
        let doc = manifests::document(&req.route, &reply)?;
        self.judge(&req, &name, &reply.digest, &doc).await?;
        // Kept once judged: a manifest refused by policy is not cached.
        if !cached {
            let tag = match &req.reference {
                Reference::Tag(t) => Some(t),
                Reference::Digest(_) => None,
            };
            self.keep_manifest(&req.route, tag, &reply).await;
        }
        Ok(reply)
    }

    async fn blob(&self, req: BlobRequest) -> Result<BlobReply> {
        let name = self.check_name(&req.route, &req.who).await?;
        self.serve_blob(req, name).await
    }

    async fn tags(&self, route: Route, page: Page, link_base: String) -> Result<JsonReply> {
        self.check_name(&route, &Who::default()).await?;
        self.list_tags(route, page, link_base).await
    }

    async fn referrers(
        &self,
        route: Route,
        digest: Digest,
        query: Option<String>,
    ) -> Result<JsonReply> {
        self.check_name(&route, &Who::default()).await?;
        self.list_referrers(route, digest, query).await
    }
}
