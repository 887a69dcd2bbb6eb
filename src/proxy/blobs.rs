//! The streaming stage of a pull: a blob refused at once when its verdict says so, else served from
//! the cache or through the shared fill of its upstream fetch, every byte through its checks and
//! the last chunk held until they all passed (tail-hold, [`crate::stream`]).

use super::{BlobBody, BlobReply, BlobRequest, Error, PullThrough, Result};
use crate::cache::{CachedBlob, Fill, FillSpec, Joined, Reader};
use crate::metrics;
use crate::oci::Digest;
use crate::policy::guard::{BlobPlan, LayerSlot, NameVerdict};
use crate::stream::offload::DEFAULT_CAPACITY;
use crate::stream::{BlobCheck, DigestCheck, TailHold, Veto, Window};
use crate::upstream::client::idle_body;
use crate::upstream::status::{content_length, passthrough_headers};
use crate::upstream::Route;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, Method};
use std::sync::Arc;

/// Bytes read from a cached blob per read: small enough that 200 slow clients hold little memory
/// (at most [`AHEAD`] reads each), large enough that a warm pull costs few system calls.
const BLOCK: u64 = 128 * 1024;
/// Reads of a cached blob in flight ahead of the socket, so reading overlaps sending.
const AHEAD: usize = 2;

/// The judgement slot a fill carries for its readers.
type Attachment = Arc<dyn std::any::Any + Send + Sync>;

impl PullThrough {
    /// Serves a blob to a client whose name judgement is `name`.
    pub(super) async fn serve_blob(
        &self,
        req: BlobRequest,
        name: NameVerdict,
    ) -> Result<BlobReply> {
        let mut plan = match &self.guard {
            Some(g) => match g.plan_blob(&req.route, &req.digest, &name, &req.who) {
                Ok(plan) => Some(plan),
                Err(refusal) => {
                    if g.judged_malicious(&req.digest) {
                        self.drop_cached(&req.digest);
                    }
                    g.persist().await;
                    return Err(refusal.into());
                }
            },
            None => None,
        };
        if let Some(cache) = &self.cache {
            if let Some(cached) = cache.blobs.open_blob(&req.digest) {
                metrics::BLOB_HITS.inc();
                return self.serve_cached(req, cached, plan).await;
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
            .open_fill(&req.route, &req.digest, plan.as_mut())
            .await?;
        let size = fill.size;
        let window = match (req.range, size) {
            (Some(range), Some(size)) => {
                Some(range.resolve(size).ok_or(Error::RangeInvalid { size })?)
            }
            _ => None,
        };
        let headers = fill.headers.clone();
        let tail = tail_check(plan.as_ref(), &fill);
        let body = self.read_fill(&req, fill, reader, window, tail).await?;
        Ok(BlobReply {
            digest: req.digest,
            size,
            window,
            body: Some(body),
            headers,
        })
    }

    /// One client's stream of a fill: the fill's outcome releases the held tail. A client that
    /// joined a fetch started under another repository is checked again under its own name once
    /// the blob's verdict is known. Nothing is answered until the first chunk may go out, so a
    /// blob refused before that (a small layer judged whole, wrong bytes in the first chunks) gets
    /// a proper error with its reason instead of a cut-off 200.
    async fn read_fill(
        &self,
        req: &BlobRequest,
        fill: Arc<Fill>,
        reader: Reader,
        window: Option<(u64, u64)>,
        tail: Option<Box<dyn BlobCheck>>,
    ) -> Result<BlobBody> {
        let mut checks = vec![fill.outcome()];
        checks.extend(tail);
        let mut body = TailHold::new(Box::pin(reader.into_stream()), checks, Window::of(window));
        let first = match body.next().await {
            Some(Ok(chunk)) => Some(chunk),
            None => None,
            Some(Err(e)) => {
                // The reason of a refusal travels as the error's source.
                let veto = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<Veto>())
                    .cloned()
                    .unwrap_or_else(|| Veto::failed(e.to_string()));
                return Err(refusal(&req.route.upstream.host, veto));
            }
        };
        Ok(Box::pin(
            futures_util::stream::iter(first.map(Ok)).chain(body),
        ))
    }

    /// `GET blobs/<digest>` from the route's upstream, a success or the error it means.
    async fn get_blob(&self, route: &Route, digest: &Digest) -> Result<reqwest::Response> {
        let rest = format!("blobs/{digest}");
        self.get(route, Method::GET, &rest, None, HeaderMap::new())
            .await
    }

    /// Joins the fetch of a blob under way, or starts it: `GET` from the upstream, every check
    /// (digest; the inspection `plan` carries, on the inspector pool) on the fill's task, kept in
    /// the cache when it passes. Returns the fill and a reader from its first byte.
    pub(super) async fn open_fill(
        &self,
        route: &Route,
        digest: &Digest,
        plan: Option<&mut BlobPlan>,
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
        let (keep, attachment) = self.judging(digest, plan, &mut checks);
        Ok(Fill::start(
            lead,
            FillSpec {
                key,
                body: idle_body(response, self.client.settings().idle_timeout()),
                size,
                headers,
                checks,
                store: self.cache.as_ref().map(|c| c.blobs.clone()),
                keep,
                on_end: None,
                attachment,
                timeout: self.fill_timeout,
            },
        ))
    }

    /// What a fill led under `plan` adds: the inspection (on the inspector pool) to `checks`, the
    /// decision to keep the blob, and the slot its judgement arrives in for every reader.
    fn judging(
        &self,
        digest: &Digest,
        plan: Option<&mut BlobPlan>,
        checks: &mut Vec<Box<dyn BlobCheck>>,
    ) -> (Box<dyn FnOnce() -> bool + Send>, Option<Attachment>) {
        let Some(plan) = plan else {
            let (guard, d) = (self.guard.clone(), digest.clone());
            return (
                Box::new(move || guard.is_none_or(|g| !g.judged_malicious(&d))),
                None,
            );
        };
        if let (Some(check), Some(pool)) = (plan.inspect.take(), &self.inspectors) {
            checks.push(Box::new(pool.offload(check, DEFAULT_CAPACITY)));
        }
        let attachment = plan.slot().map(|s| s as Attachment);
        (plan.keep(), attachment)
    }

    /// A blob from the cache. Its bytes were verified when they were committed; a blob without a
    /// verdict under the current rules (the rules changed) is judged again as it is read, through
    /// a fill whose source is the cached file (so a block is made from the whole blob and the
    /// cached copy is deleted).
    async fn serve_cached(
        &self,
        req: BlobRequest,
        cached: CachedBlob,
        mut plan: Option<BlobPlan>,
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
        if plan.as_ref().is_none_or(|p| p.inspect.is_none()) {
            let (start, end) = window.unwrap_or((0, size.saturating_sub(1)));
            let len = if size == 0 { 0 } else { end + 1 - start };
            reply.body = Some(Box::pin(file_stream(cached, start, len)));
            return Ok(reply);
        }
        let key = (req.route.upstream.host.clone(), req.digest.clone());
        let lead = match self.fills.join(key.clone()).await {
            Joined::Lead(lead) => lead,
            // Somebody fetches it anew: read that fetch (it is judged there).
            Joined::Follow(fill) => {
                let reader = fill.reader();
                let tail = tail_check(plan.as_ref(), &fill);
                let body = self.read_fill(&req, fill, reader, window, tail).await?;
                reply.body = Some(body);
                return Ok(reply);
            }
        };
        let mut checks: Vec<Box<dyn BlobCheck>> =
            vec![Box::new(DigestCheck::new(req.digest.clone(), Some(size)))];
        let (keep, attachment) = self.judging(&req.digest, plan.as_mut(), &mut checks);
        let (cache, digest) = (self.cache.clone(), req.digest.clone());
        let whole = file_stream(cached, 0, size).map(|r| r.map_err(|e| e.to_string()));
        let (fill, reader) = Fill::start(
            lead,
            FillSpec {
                key,
                body: Box::pin(whole),
                size: Some(size),
                headers: HeaderMap::new(),
                checks,
                // Already in the cache: nothing to commit; a blob now judged malicious goes.
                store: None,
                keep: Box::new(|| false),
                on_end: Some(Box::new(move |_| {
                    if !keep() {
                        if let Some(c) = cache {
                            c.blobs.remove(&digest);
                        }
                    }
                })),
                attachment,
                timeout: self.fill_timeout,
            },
        );
        let tail = tail_check(plan.as_ref(), &fill);
        let body = self.read_fill(&req, fill, reader, window, tail).await?;
        reply.body = Some(body);
        Ok(reply)
    }
}

/// The check at a client's tail under its `plan`, for the fetch it reads (wherever that fetch was
/// started: the judgement arrives in the fetch's slot).
fn tail_check(plan: Option<&BlobPlan>, fill: &Fill) -> Option<Box<dyn BlobCheck>> {
    let slot = fill
        .attachment
        .clone()
        .and_then(|a| a.downcast::<LayerSlot>().ok());
    plan.map(|p| p.tail_check(slot))
}

/// The error for a blob refused before its first byte went out: a policy block (403, with the
/// reason), or the upstream's fault (wrong bytes, cut body: 502).
pub(super) fn refusal(host: &str, veto: Veto) -> Error {
    match veto {
        Veto::Blocked(refusal) => Error::Blocked(refusal),
        Veto::Failed(reason) => Error::BadUpstream {
            host: host.to_string(),
            reason,
        },
    }
}

/// `len` bytes of a cached blob from `start`, each [`BLOCK`] read by the cache's bounded readers,
/// [`AHEAD`] of them in flight. No thread is held between reads, so a slow client costs at most
/// `AHEAD` blocks of memory and no thread. The blob stays pinned (not evictable) until the stream
/// is dropped.
fn file_stream(
    cached: CachedBlob,
    start: u64,
    len: u64,
) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send {
    let file = Arc::new(cached.file);
    // Unpinned (evictable again) when the stream is dropped.
    let pin = Arc::new(cached.pin);
    let end = start + len;
    let blocks = (start..end).step_by(BLOCK as usize).map(move |pos| {
        let (file, _pin) = (file.clone(), pin.clone());
        let n = (end - pos).min(BLOCK) as usize;
        async move { crate::cache::blobs::read_at(file, pos, n).await }
    });
    futures_util::stream::iter(blocks).buffered(AHEAD)
}
