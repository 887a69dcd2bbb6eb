//! Single-flight fills: one upstream fetch per blob, however many clients ask for it at once.
//!
//! A fill reads the upstream body on its own task, runs every check over it (digest, inspection),
//! writes it to a temp file and, once everything passed, commits that file to the blob cache.
//! Clients are readers of the fill: they read what is written so far (from the temp file, which
//! the page cache serves), and wait for more, so a follower streams as the fill grows rather than
//! waiting for its end. The reader's last chunk is held (the client wraps it in [`TailHold`]) until
//! the fill's outcome is known, so no client completes a blob that failed its checks.
//!
//! The fill does not belong to any client: it goes on when they disconnect, bounded by its own
//! timeout. It runs on a thread of the blocking pool, since its checks and writes block. When the cache cannot be written (no temp file, disk full mid-way) the fill goes on
//! in memory for the readers it has, paced by the slowest, and takes no new ones; with no reader
//! left and nothing to cache, it stops.
//!
//! [`TailHold`]: crate::stream::TailHold

use super::blobs::{BlobStore, TempBlob};
use crate::metrics;
use crate::oci::Digest;
use crate::stream::{BlobCheck, Veto};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::HeaderMap;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Fills are shared per upstream host and digest.
pub type FillKey = (String, Digest);

/// The upstream body a fill reads.
pub type Body = crate::upstream::client::UpstreamBody;

/// Bytes a reader takes from the temp file per read.
const READ_CHUNK: u64 = 1024 * 1024;
/// Bytes held in memory for slow readers when the fill cannot use the disk.
const MEM_CAP: u64 = 16 * 1024 * 1024;
/// The newest bytes kept in memory besides the temp file, so readers at the live edge (the first
/// client, usually) take them from memory without a file read.
const RECENT: u64 = 4 * 1024 * 1024;

/// The fills under way, so a request for the same blob joins instead of fetching again.
#[derive(Default)]
pub struct Fills {
    inflight: Mutex<HashMap<FillKey, watch::Receiver<Slot>>>,
}

#[derive(Clone)]
enum Slot {
    /// The leader is asking the upstream.
    Pending,
    Running(Arc<Fill>),
    /// The leader gave up (upstream error) or its fill takes no followers: ask again.
    Gone,
}

/// What a request for a blob becomes: the one that fetches it, or a reader of that fetch.
pub enum Joined {
    Lead(Lead),
    Follow(Arc<Fill>),
}

/// The right (and duty) to start the fill of a key. Dropped without starting, it lets the
/// waiting requests try again themselves.
pub struct Lead {
    fills: Arc<Fills>,
    key: FillKey,
    tx: watch::Sender<Slot>,
}

impl Drop for Lead {
    fn drop(&mut self) {
        if matches!(*self.tx.borrow(), Slot::Pending) {
            self.fills.forget(&self.key, |s| matches!(s, Slot::Pending));
            self.tx.send_replace(Slot::Gone);
        }
    }
}

impl Fills {
    fn lock(&self) -> MutexGuard<'_, HashMap<FillKey, watch::Receiver<Slot>>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the fill of `key` under way, or becomes its leader.
    pub async fn join(self: &Arc<Self>, key: FillKey) -> Joined {
        loop {
            let mut rx = {
                let mut map = self.lock();
                match map.get(&key) {
                    Some(rx) => rx.clone(),
                    None => {
                        let (tx, rx) = watch::channel(Slot::Pending);
                        map.insert(key.clone(), rx);
                        return Joined::Lead(Lead {
                            fills: self.clone(),
                            key,
                            tx,
                        });
                    }
                }
            };
            let slot = rx
                .wait_for(|s| !matches!(s, Slot::Pending))
                .await
                .map(|s| s.clone());
            if let Ok(Slot::Running(fill)) = slot {
                if fill.joinable() {
                    metrics::SINGLEFLIGHT_JOINS.inc();
                    return Joined::Follow(fill);
                }
            }
            // Gone: the map entry was removed first, so the next round leads or joins anew.
            tokio::task::yield_now().await;
        }
    }

    /// Removes `key`'s entry when it is still the one `matches` describes.
    fn forget(&self, key: &FillKey, matches: impl Fn(&Slot) -> bool) {
        let mut map = self.lock();
        if map.get(key).is_some_and(|rx| matches(&rx.borrow())) {
            map.remove(key);
        }
    }

    fn forget_fill(&self, key: &FillKey, fill: &Arc<Fill>) {
        self.forget(
            key,
            |s| matches!(s, Slot::Running(f) if Arc::ptr_eq(f, fill)),
        );
    }

    /// Fills under way (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One upstream fetch of one blob, readable while it runs.
pub struct Fill {
    state: Mutex<State>,
    /// Bumped whenever bytes arrive or the fill ends; readers wait on it.
    progress: watch::Sender<u64>,
    /// Readers moved on: the fill may drop memory it held for them.
    consumed: Notify,
    file: Option<Arc<std::fs::File>>,
    /// The blob's size, when the upstream announced it.
    pub size: Option<u64>,
    /// Upstream headers passed on to clients.
    pub headers: HeaderMap,
    /// What the fill's checks hand their judgement to, for every reader: the cache carries it
    /// and never looks inside.
    pub attachment: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

struct State {
    /// Bytes readable from the temp file (a prefix of the blob).
    on_disk: u64,
    /// The newest bytes, from `mem_start` on: the last [`RECENT`] bytes while the disk works,
    /// everything no reader has read yet once it failed.
    mem: VecDeque<Bytes>,
    mem_start: u64,
    mem_len: u64,
    disk_ok: bool,
    /// Set when a check refused the blob mid-stream: every reader stops at once, while the fill
    /// reads on so the verdict is made from the whole blob once its digest checked out.
    cut: Option<Veto>,
    end: Option<Result<u64, Veto>>,
    /// Each reader's position, so memory is only dropped once every reader is past it.
    readers: HashMap<u64, u64>,
    next_reader: u64,
}

impl State {
    fn received(&self) -> u64 {
        self.mem_start + self.mem_len
    }

    fn push(&mut self, chunk: Bytes) {
        self.mem_len += chunk.len() as u64;
        self.mem.push_back(chunk);
    }

    /// Drops the oldest chunks in memory while the rest still covers `keep_from`.
    fn trim(&mut self, keep_from: u64) {
        while let Some(front) = self.mem.front() {
            let len = front.len() as u64;
            if self.mem_start + len > keep_from {
                break;
            }
            self.mem_start += len;
            self.mem_len -= len;
            self.mem.pop_front();
        }
    }
}

/// How a fill starts: where its bytes come from and what it must pass.
pub struct FillSpec {
    pub key: FillKey,
    pub body: Body,
    pub size: Option<u64>,
    pub headers: HeaderMap,
    /// Digest first, then any inspection.
    pub checks: Vec<Box<dyn BlobCheck>>,
    /// Where the blob is committed; `None` when there is no disk cache.
    pub store: Option<Arc<BlobStore>>,
    /// Asked after every check passed: whether the blob may be kept (not judged malicious).
    pub keep: Box<dyn FnOnce() -> bool + Send>,
    /// Called once the fill has ended, with its outcome (after the verdict was stored).
    pub on_end: Option<crate::stream::OnEnd>,
    /// Handed to every reader ([`Fill::attachment`]).
    pub attachment: Option<Arc<dyn std::any::Any + Send + Sync>>,
    pub timeout: Duration,
}

impl Fill {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a new reader can still get every byte from the start (from the temp file).
    fn joinable(&self) -> bool {
        let s = self.lock();
        s.disk_ok && s.cut.is_none() && !matches!(s.end, Some(Err(_)))
    }

    /// Starts the fill the lead was for; returns it with a first reader (the leader's client).
    pub fn start(lead: Lead, spec: FillSpec) -> (Arc<Fill>, Reader) {
        let temp = match (&spec.store, spec.size) {
            (Some(store), size) if size.is_none_or(|s| s <= store.max_size()) => {
                match store.temp() {
                    Ok(t) => Some(t),
                    Err(e) => {
                        write_failed(&spec.key.1, &e);
                        None
                    }
                }
            }
            _ => None,
        };
        let fill = Arc::new(Fill {
            state: Mutex::new(State {
                on_disk: 0,
                mem: VecDeque::new(),
                mem_start: 0,
                mem_len: 0,
                disk_ok: temp.is_some(),
                cut: None,
                end: None,
                readers: HashMap::new(),
                next_reader: 0,
            }),
            progress: watch::channel(0).0,
            consumed: Notify::new(),
            file: temp.as_ref().map(|t| t.file.clone()),
            size: spec.size,
            headers: spec.headers,
            attachment: spec.attachment,
        });
        let reader = fill.reader();
        let task = Task {
            fill: fill.clone(),
            fills: lead.fills.clone(),
            key: spec.key,
            checks: spec.checks,
            temp,
            store: spec.store,
        };
        if fill.joinable() {
            lead.tx.send_replace(Slot::Running(fill.clone()));
        } else {
            // Nothing on disk for a follower to catch up from: the others fetch on their own.
            drop(lead);
        }
        // The fill's own thread: its checks (hashing; handing chunks to the inspector, which
        // waits when the inspector lags) and its file writes block, which must never hold up the
        // async workers that serve every other request. The body is still read asynchronously.
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            runtime.block_on(task.run(spec.body, spec.keep, spec.timeout, spec.on_end))
        });
        (fill, reader)
    }

    /// A new reader from the first byte.
    pub fn reader(self: &Arc<Self>) -> Reader {
        let mut s = self.lock();
        let id = s.next_reader;
        s.next_reader += 1;
        s.readers.insert(id, 0);
        Reader {
            fill: self.clone(),
            id,
            pos: 0,
            progress: self.progress.subscribe(),
        }
    }

    /// The outcome as a check: passes once the fill passed every check, fails with its veto.
    pub fn outcome(self: &Arc<Self>) -> Box<dyn BlobCheck> {
        Box::new(Outcome(self.clone()))
    }

    /// Waits for the fill's end. Past a cut, readers stop at once but the verdict comes only
    /// when the fill has read and checked the whole blob.
    pub async fn settled(self: &Arc<Self>) -> Result<u64, Veto> {
        let mut progress = self.progress.subscribe();
        loop {
            if let Some(end) = self.lock().end.clone() {
                return end;
            }
            if progress.changed().await.is_err() {
                return Err(Veto::failed("the upstream fetch ended without an outcome"));
            }
        }
    }

    fn bump(&self) {
        self.progress.send_modify(|v| *v += 1);
    }
}

/// Reads a fill from the start. Yields bytes as they arrive and ends when the fill ends (right
/// away when it failed); whether it passed is told by [`Fill::outcome`].
pub struct Reader {
    fill: Arc<Fill>,
    id: u64,
    pos: u64,
    progress: watch::Receiver<u64>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.fill.lock().readers.remove(&self.id);
        self.fill.consumed.notify_one();
    }
}

enum Next {
    Disk(u64, u64),
    Mem(Bytes),
    End,
    Wait,
}

impl Reader {
    /// The next bytes, or `None` at the fill's end.
    pub async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            self.progress.borrow_and_update();
            let next = {
                let s = self.fill.lock();
                if s.cut.is_some() || matches!(s.end, Some(Err(_))) {
                    Next::End
                } else if self.pos < s.mem_start && self.pos < s.on_disk {
                    Next::Disk(self.pos, (s.on_disk - self.pos).min(READ_CHUNK))
                } else if self.pos < s.received() && self.pos >= s.mem_start {
                    let mut at = s.mem_start;
                    let chunk = s.mem.iter().find_map(|c| {
                        let end = at + c.len() as u64;
                        let hit = (self.pos < end).then(|| c.slice((self.pos - at) as usize..));
                        at = end;
                        hit
                    });
                    chunk.map_or(Next::End, Next::Mem)
                } else if s.end.is_some() {
                    Next::End
                } else {
                    Next::Wait
                }
            };
            let bytes = match next {
                Next::End => return None,
                Next::Wait => {
                    if self.progress.changed().await.is_err() {
                        return None;
                    }
                    continue;
                }
                Next::Mem(b) => b,
                Next::Disk(at, len) => {
                    let file = self.fill.file.clone().expect("bytes on disk have a file");
                    match super::blobs::read_at(file, at, len as usize).await {
                        Ok(b) => b,
                        Err(e) => return Some(Err(e)),
                    }
                }
            };
            self.pos += bytes.len() as u64;
            self.fill.lock().readers.insert(self.id, self.pos);
            self.fill.consumed.notify_one();
            return Some(Ok(bytes));
        }
    }

    /// The reader as a stream (for [`TailHold`](crate::stream::TailHold)).
    pub fn into_stream(self) -> impl Stream<Item = io::Result<Bytes>> + Send {
        futures_util::stream::unfold(self, |mut r| async move {
            let item = r.next().await?;
            Some((item, r))
        })
    }
}

struct Outcome(Arc<Fill>);

impl BlobCheck for Outcome {
    fn update(&mut self, _: &[u8]) -> Result<(), Veto> {
        let s = self.0.lock();
        match (&s.cut, &s.end) {
            (Some(v), _) | (None, Some(Err(v))) => Err(v.clone()),
            _ => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), Veto> {
        let s = self.0.lock();
        match (&s.cut, &s.end) {
            (Some(v), _) | (None, Some(Err(v))) => Err(v.clone()),
            (None, Some(Ok(_))) => Ok(()),
            (None, None) => Err(Veto::failed("the upstream fetch ended without an outcome")),
        }
    }
}

/// The fill's own task: upstream → checks → temp file (or memory) → commit.
struct Task {
    fill: Arc<Fill>,
    fills: Arc<Fills>,
    key: FillKey,
    checks: Vec<Box<dyn BlobCheck>>,
    temp: Option<TempBlob>,
    store: Option<Arc<BlobStore>>,
}

impl Task {
    async fn run(
        mut self,
        body: Body,
        keep: Box<dyn FnOnce() -> bool + Send>,
        timeout: Duration,
        on_end: Option<crate::stream::OnEnd>,
    ) {
        metrics::UPSTREAM_BLOB_FETCHES.inc();
        let outcome = match tokio::time::timeout(timeout, self.pump(body)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Veto::failed(format!(
                "the upstream fetch took longer than {}",
                humantime::format_duration(timeout)
            ))),
        };
        let digest = self.key.1.clone();
        match &outcome {
            Ok(_) => {}
            Err(veto) => {
                tracing::warn!(%digest, upstream = %self.key.0, reason = %veto, "blob refused mid-stream: tail withheld, response aborted");
                // No one may join a failed fill, and its temp file goes (readers keep the open
                // file until they see the failure).
                self.temp = None;
                self.fills.forget_fill(&self.key, &self.fill);
            }
        }
        self.fill.lock().end = Some(outcome.clone());
        self.fill.bump();
        if let (Ok(size), Some(temp), Some(store)) = (outcome, self.temp.take(), &self.store) {
            // Asked after the readers were released: the verdict is stored by now.
            if keep() {
                if let Err(e) = store.commit(temp, &digest, size) {
                    write_failed(&digest, &e);
                }
            }
        }
        self.fills.forget_fill(&self.key, &self.fill);
        if let Some(f) = on_end {
            f(&self.fill.lock().end.clone().expect("set above"));
        }
    }

    async fn pump(&mut self, mut body: Body) -> Result<u64, Veto> {
        let mut received = 0u64;
        let mut cut = None;
        while let Some(item) = body.next().await {
            let chunk = item.map_err(|e| {
                Veto::failed(format!("upstream body failed after {received} bytes: {e}"))
            })?;
            let mut refused = None;
            for check in &mut self.checks {
                match check.update_bytes(&chunk) {
                    Ok(()) => {}
                    // Refused on evidence: the readers stop now, the checks read on.
                    Err(veto @ Veto::Blocked(_)) => refused = refused.or(Some(veto)),
                    Err(veto @ Veto::Failed(_)) => return Err(veto),
                }
            }
            if let (None, Some(veto)) = (&cut, refused) {
                self.cut(&veto);
                cut = Some(veto);
            }
            received += chunk.len() as u64;
            if cut.is_some() {
                continue;
            }
            self.store_chunk(chunk);
            self.fill.bump();
            if self.temp.is_none() {
                wait_for_readers(&self.fill).await?;
            }
        }
        // The digest is checked first: a blob whose bytes are not what they claim never reaches
        // the inspection's `finish`, so no verdict is made from them.
        for check in &mut self.checks {
            check.finish()?;
        }
        match cut {
            Some(veto) => Err(veto),
            None => Ok(received),
        }
    }

    /// Stops every reader and takes no new one; nothing of this blob is kept.
    fn cut(&mut self, veto: &Veto) {
        self.temp = None;
        self.fills.forget_fill(&self.key, &self.fill);
        let mut s = self.fill.lock();
        s.cut = Some(veto.clone());
        s.mem_start += s.mem_len;
        s.mem_len = 0;
        s.mem.clear();
        drop(s);
        self.fill.bump();
    }

    /// Puts a chunk where readers find it: the temp file, or memory once the disk failed.
    fn store_chunk(&mut self, chunk: Bytes) {
        if let Some(temp) = &self.temp {
            match (&*temp.file).write_all(&chunk) {
                Ok(()) => {
                    let mut s = self.fill.lock();
                    s.on_disk += chunk.len() as u64;
                    s.push(chunk);
                    let keep_from = s.received().saturating_sub(RECENT);
                    s.trim(keep_from);
                    return;
                }
                Err(e) => {
                    write_failed(&self.key.1, &e);
                    // Dropping the temp blob deletes it; readers keep its open file for what
                    // was written before the failure.
                    self.temp = None;
                    // From here memory holds everything after what the file has.
                    self.fill.lock().disk_ok = false;
                    self.fills.forget_fill(&self.key, &self.fill);
                }
            }
        }
        self.fill.lock().push(chunk);
    }
}

/// Without a disk, memory is the only buffer: drops what every reader has read, and waits while
/// the slowest is more than [`MEM_CAP`] behind. With no reader left there is nobody to serve.
async fn wait_for_readers(fill: &Fill) -> Result<(), Veto> {
    loop {
        let consumed = fill.consumed.notified();
        tokio::pin!(consumed);
        consumed.as_mut().enable();
        {
            let mut s = fill.lock();
            let Some(slowest) = s.readers.values().min().copied() else {
                return Err(Veto::failed(
                    "every client went away and the blob cannot be cached",
                ));
            };
            s.trim(slowest);
            if s.mem_len <= MEM_CAP {
                return Ok(());
            }
        }
        consumed.await;
    }
}

fn write_failed(digest: &Digest, e: &io::Error) {
    metrics::CACHE_WRITE_ERRORS.inc();
    tracing::error!(%digest, error = %e, "cache write failed: serving uncached");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::DigestCheck;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn body(chunks: Vec<Bytes>, delay: Duration) -> Body {
        Box::pin(
            futures_util::stream::iter(chunks).then(move |c| async move {
                tokio::time::sleep(delay).await;
                Ok(c)
            }),
        )
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn chunks(bytes: &[u8], size: usize) -> Vec<Bytes> {
        bytes.chunks(size).map(Bytes::copy_from_slice).collect()
    }

    struct Setup {
        fills: Arc<Fills>,
        store: Option<Arc<BlobStore>>,
        _dir: tempfile::TempDir,
    }

    fn setup(with_store: bool) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = with_store.then(|| BlobStore::open(dir.path(), 1 << 30).unwrap().0);
        Setup {
            fills: Arc::new(Fills::default()),
            store,
            _dir: dir,
        }
    }

    fn spec(s: &Setup, bytes: &[u8], claimed: &[u8], delay: Duration) -> FillSpec {
        let digest = Digest::sha256_of(claimed);
        FillSpec {
            key: ("up".into(), digest.clone()),
            body: body(chunks(bytes, 1000), delay),
            size: Some(claimed.len() as u64),
            headers: HeaderMap::new(),
            checks: vec![Box::new(DigestCheck::new(
                digest,
                Some(claimed.len() as u64),
            ))],
            store: s.store.clone(),
            keep: Box::new(|| true),
            on_end: None,
            attachment: None,
            timeout: Duration::from_secs(30),
        }
    }

    async fn read_all(mut r: Reader, fill: &Arc<Fill>) -> (Vec<u8>, Result<(), Veto>) {
        let mut out = Vec::new();
        while let Some(b) = r.next().await {
            out.extend_from_slice(&b.unwrap());
        }
        (out, fill.outcome().finish())
    }

    async fn settled(fills: &Fills) {
        for _ in 0..200 {
            if fills.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the fill never ended");
    }

    /// Refuses (as a policy block) once it has seen `at` bytes; counts every byte it is shown and
    /// whether its end was judged.
    struct Refuses {
        at: usize,
        seen: Arc<AtomicUsize>,
        finished: Arc<AtomicUsize>,
    }

    impl BlobCheck for Refuses {
        fn update(&mut self, chunk: &[u8]) -> Result<(), Veto> {
            let before = self.seen.fetch_add(chunk.len(), Ordering::SeqCst);
            if before < self.at && before + chunk.len() >= self.at {
                return Err(Veto::blocked(crate::stream::Refusal {
                    message: "blocked by portcullis: test".into(),
                    rule: "test".into(),
                    detail: serde_json::Value::Null,
                }));
            }
            Ok(())
        }
        fn finish(&mut self) -> Result<(), Veto> {
            self.finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_block_cuts_every_reader_at_once_and_the_checks_read_the_whole_blob() {
        for (sent, digest_ok) in [(data(50_000), true), (data(49_000), false)] {
            let s = setup(true);
            let claimed = data(50_000);
            let (seen, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let mut spec = spec(&s, &sent, &claimed, Duration::from_millis(1));
            spec.checks.push(Box::new(Refuses {
                at: 5_000,
                seen: seen.clone(),
                finished: finished.clone(),
            }));
            let key = spec.key.clone();
            let Joined::Lead(lead) = s.fills.join(key.clone()).await else {
                panic!("leads")
            };
            let (fill, reader) = Fill::start(lead, spec);
            let (got, outcome) = read_all(reader, &fill).await;
            assert!(
                got.len() < 10_000,
                "the reader stopped at the cut: {}",
                got.len()
            );
            assert!(matches!(outcome, Err(Veto::Blocked(_))), "{outcome:?}");
            let end = fill.settled().await;
            assert!(end.is_err());
            // Read on to the end either way; judged only when the bytes were the blob.
            assert_eq!(seen.load(Ordering::SeqCst), sent.len());
            assert_eq!(finished.load(Ordering::SeqCst), usize::from(digest_ok));
            if digest_ok {
                assert!(matches!(end, Err(Veto::Blocked(_))), "{end:?}");
            } else {
                assert!(matches!(end, Err(Veto::Failed(_))), "{end:?}");
            }
            settled(&s.fills).await;
            assert!(s.store.unwrap().open_blob(&key.1).is_none(), "nothing kept");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn followers_share_one_fetch_and_stream_before_it_ends() {
        let s = setup(true);
        let bytes = data(20_000);
        let key = ("up".to_string(), Digest::sha256_of(&bytes));
        let Joined::Lead(lead) = s.fills.join(key.clone()).await else {
            panic!("first request leads")
        };
        let (fill, first) = Fill::start(lead, spec(&s, &bytes, &bytes, Duration::from_millis(5)));
        let Joined::Follow(same) = s.fills.join(key.clone()).await else {
            panic!("second request follows")
        };
        assert!(Arc::ptr_eq(&fill, &same));
        let mut follower = same.reader();
        // The follower gets bytes long before the 20 chunks × 5 ms are through.
        let early = follower.next().await.unwrap().unwrap();
        assert!(!early.is_empty());
        assert!(fill.lock().end.is_none(), "streaming while the fill runs");
        let (a, ra) = read_all(first, &fill).await;
        let (mut b, rb) = read_all(follower, &fill).await;
        b.splice(0..0, early);
        assert_eq!(a, bytes);
        assert_eq!(b, bytes);
        assert!(ra.is_ok() && rb.is_ok());
        settled(&s.fills).await;
        let store = s.store.unwrap();
        let mut cached = Vec::new();
        io::Read::read_to_end(&mut store.open_blob(&key.1).unwrap().file, &mut cached).unwrap();
        assert_eq!(cached, bytes);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_fill_fails_every_reader_and_caches_nothing() {
        let s = setup(true);
        let good = data(5000);
        let mut bad = good.clone();
        bad[4999] ^= 1;
        let key = ("up".to_string(), Digest::sha256_of(&good));
        let Joined::Lead(lead) = s.fills.join(key.clone()).await else {
            panic!()
        };
        let (fill, r) = Fill::start(lead, spec(&s, &bad, &good, Duration::ZERO));
        let (_, outcome) = read_all(r, &fill).await;
        assert!(outcome.unwrap_err().to_string().contains("hash to"));
        settled(&s.fills).await;
        let store = s.store.unwrap();
        assert!(store.size_of(&key.1).is_none());
        let tmp = std::fs::read_dir(s._dir.path().join("tmp"))
            .unwrap()
            .count();
        assert_eq!(tmp, 0, "the temp file is deleted");
        // The next request leads a new fetch.
        assert!(matches!(s.fills.join(key).await, Joined::Lead(_)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_fill_goes_on_when_its_client_leaves() {
        let s = setup(true);
        let bytes = data(10_000);
        let key = ("up".to_string(), Digest::sha256_of(&bytes));
        let Joined::Lead(lead) = s.fills.join(key.clone()).await else {
            panic!()
        };
        let (_fill, mut r) = Fill::start(lead, spec(&s, &bytes, &bytes, Duration::from_millis(2)));
        r.next().await.unwrap().unwrap();
        drop(r);
        settled(&s.fills).await;
        assert_eq!(s.store.unwrap().size_of(&key.1), Some(10_000));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_disk_the_fill_serves_its_reader_from_memory_and_takes_no_followers() {
        let s = setup(false);
        let bytes = data(50_000);
        let key = ("up".to_string(), Digest::sha256_of(&bytes));
        let Joined::Lead(lead) = s.fills.join(key.clone()).await else {
            panic!()
        };
        let (fill, r) = Fill::start(lead, spec(&s, &bytes, &bytes, Duration::from_millis(1)));
        assert!(
            matches!(s.fills.join(key.clone()).await, Joined::Lead(_)),
            "a fill with no disk cannot be joined"
        );
        let (got, outcome) = read_all(r, &fill).await;
        assert_eq!(got, bytes);
        assert!(outcome.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_memory_fill_with_no_reader_left_stops() {
        let s = setup(false);
        let bytes = data(50_000);
        let key = ("up".to_string(), Digest::sha256_of(&bytes));
        let Joined::Lead(lead) = s.fills.join(key).await else {
            panic!()
        };
        let pulled = Arc::new(AtomicUsize::new(0));
        let p = pulled.clone();
        let mut sp = spec(&s, &bytes, &bytes, Duration::from_millis(2));
        sp.body = Box::pin(
            body(chunks(&bytes, 1000), Duration::from_millis(2)).inspect(move |_| {
                p.fetch_add(1, Ordering::SeqCst);
            }),
        );
        let (fill, r) = Fill::start(lead, sp);
        drop(r);
        for _ in 0..100 {
            if fill.lock().end.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(fill.outcome().finish().is_err());
        assert!(
            pulled.load(Ordering::SeqCst) < 50,
            "the upstream was not read to its end"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blob_that_may_not_be_kept_is_not_committed() {
        let s = setup(true);
        let bytes = data(3000);
        let key = ("up".to_string(), Digest::sha256_of(&bytes));
        let Joined::Lead(lead) = s.fills.join(key.clone()).await else {
            panic!()
        };
        let mut sp = spec(&s, &bytes, &bytes, Duration::ZERO);
        sp.keep = Box::new(|| false);
        let (fill, r) = Fill::start(lead, sp);
        let (got, outcome) = read_all(r, &fill).await;
        assert_eq!(got, bytes);
        assert!(outcome.is_ok());
        settled(&s.fills).await;
        assert!(s.store.unwrap().size_of(&key.1).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_that_gives_up_lets_the_waiters_lead() {
        let s = setup(true);
        let key = ("up".to_string(), Digest::sha256_of(b"x"));
        let Joined::Lead(lead) = s.fills.join(key.clone()).await else {
            panic!()
        };
        let fills = s.fills.clone();
        let k = key.clone();
        let waiter = tokio::spawn(async move { matches!(fills.join(k).await, Joined::Lead(_)) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(lead);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fill_that_outlives_its_timeout_is_abandoned() {
        let s = setup(true);
        let bytes = data(10_000);
        let key = ("up".to_string(), Digest::sha256_of(&bytes));
        let Joined::Lead(lead) = s.fills.join(key.clone()).await else {
            panic!()
        };
        // Ten chunks, 50 ms apart: half a second, against a 120 ms limit.
        let mut sp = spec(&s, &bytes, &bytes, Duration::from_millis(50));
        sp.timeout = Duration::from_millis(120);
        let (fill, r) = Fill::start(lead, sp);
        let (got, outcome) = read_all(r, &fill).await;
        assert!(outcome
            .unwrap_err()
            .to_string()
            .contains("took longer than"));
        assert!(got.len() < bytes.len());
        settled(&s.fills).await;
        assert!(s.store.unwrap().size_of(&key.1).is_none());
        let tmp = std::fs::read_dir(s._dir.path().join("tmp"))
            .unwrap()
            .count();
        assert_eq!(tmp, 0);
    }
}
