//! Runs CPU-heavy [`BlobCheck`]s (layer inspection: inflate, untar, scan) on a fixed pool of
//! inspector threads, so a blob keeps streaming to the client while it is judged and only the held
//! tail waits for the verdict. However many layers stream at once, there are never more inspector
//! threads than the pool's size: each layer is a job whose chunks queue up, and a worker takes a
//! job with chunks waiting, runs a few of them, and puts it back in line, so every layer moves on.
//!
//! Bounded: at most `capacity` chunks wait per job; past that, [`Offloaded::update_bytes`] blocks
//! the (blocking-pool) thread that feeds it until the inspector catches up, which is the same
//! backpressure an inline check gives. A veto the inspector reaches mid-stream is seen by the next
//! `update`, once; the inspector keeps reading, so the verdict covers the whole blob.

use super::{BlobCheck, Veto};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Chunks waiting per job: a few MiB with hyper's read sizes. A fill reads its upstream as fast as
/// it can write the cache, so this bounds the memory of an inspection that lags.
pub const DEFAULT_CAPACITY: usize = 64;

/// Chunks a worker runs from one job before it lets the next job in line have a turn.
const TURN: usize = 16;

/// The inspector threads. Dropping the pool lets its threads end once their jobs are done.
pub struct Pool {
    queue: Mutex<Sender<Arc<Job>>>,
    size: usize,
}

impl Pool {
    /// A pool of `size` threads (at least one), named `inspect-N`.
    pub fn new(size: usize) -> std::io::Result<Arc<Pool>> {
        let size = size.max(1);
        let (tx, rx) = channel::<Arc<Job>>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..size {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("inspect-{n}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Arc::new(Pool {
            queue: Mutex::new(tx),
            size,
        }))
    }

    /// One thread per core: inspection is CPU-bound.
    pub fn per_core() -> std::io::Result<Arc<Pool>> {
        Pool::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `check` on the pool; the returned check hands it every chunk.
    pub fn offload(self: &Arc<Self>, check: Box<dyn BlobCheck>, capacity: usize) -> Offloaded {
        Offloaded {
            job: Arc::new(Job {
                pool: Arc::downgrade(self),
                state: Mutex::new(JobState {
                    check: Some(check),
                    chunks: VecDeque::new(),
                    finish: false,
                    abandoned: false,
                    queued: false,
                    early: None,
                    told: false,
                    result: None,
                }),
                changed: Condvar::new(),
            }),
            pool: self.clone(),
            capacity: capacity.max(1),
            finished: false,
        }
    }

    fn schedule(&self, job: &Arc<Job>) {
        // The workers only go away with the process.
        let _ = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job.clone());
    }
}

struct Job {
    pool: std::sync::Weak<Pool>,
    state: Mutex<JobState>,
    /// Signalled when chunks were taken, a veto was found, or the result is in.
    changed: Condvar,
}

struct JobState {
    /// Out while a worker runs it.
    check: Option<Box<dyn BlobCheck>>,
    chunks: VecDeque<Bytes>,
    /// Every chunk was sent and the earlier checks (the digest) passed: judge.
    finish: bool,
    /// The stream went away: these bytes are not the blob, so no verdict is made from them.
    abandoned: bool,
    /// In the pool's line, or being run.
    queued: bool,
    early: Option<Veto>,
    /// The stream was told of a veto: later ones change nothing.
    told: bool,
    result: Option<Result<(), Veto>>,
}

impl Job {
    fn lock(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A worker: takes jobs in line and gives each a turn.
fn work(rx: &Mutex<Receiver<Arc<Job>>>) {
    loop {
        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        turn(&job);
    }
}

/// Runs up to [`TURN`] chunks of `job`, then its end if it is due; re-queues it when more waits.
fn turn(job: &Arc<Job>) {
    let (mut check, chunks) = {
        let mut s = job.lock();
        if s.abandoned {
            s.check = None;
            s.queued = false;
            return;
        }
        let n = s.chunks.len().min(TURN);
        let chunks: Vec<Bytes> = s.chunks.drain(..n).collect();
        match s.check.take() {
            Some(check) => (check, chunks),
            None => {
                s.queued = false;
                return;
            }
        }
    };
    job.changed.notify_all();
    for chunk in &chunks {
        // A panicking inspector is a failed inspection, never a served blob.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check.update(chunk)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(veto)) => {
                let mut s = job.lock();
                if s.early.is_none() && !s.told {
                    s.early = Some(veto);
                }
            }
            Err(_) => {
                let mut s = job.lock();
                s.result = Some(Err(Veto::failed("the inspector failed")));
                s.queued = false;
                drop(s);
                job.changed.notify_all();
                return;
            }
        }
    }
    let mut s = job.lock();
    if s.abandoned {
        s.queued = false;
        return;
    }
    if !s.chunks.is_empty() {
        s.check = Some(check);
        drop(s);
        job.changed.notify_all();
        // Back in line behind the other jobs.
        requeue(job);
        return;
    }
    if s.finish {
        drop(s);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check.finish()))
            .unwrap_or_else(|_| Err(Veto::failed("the inspector failed")));
        let mut s = job.lock();
        s.result = Some(result);
        s.queued = false;
        drop(s);
        job.changed.notify_all();
        return;
    }
    s.check = Some(check);
    s.queued = false;
    drop(s);
    job.changed.notify_all();
}

/// Puts a job back in its pool's line. The pool outlives the job's stream (the stream holds it);
/// a job whose pool is gone has no stream left to serve.
fn requeue(job: &Arc<Job>) {
    if let Some(pool) = job.pool.upgrade() {
        pool.schedule(job);
    }
}

/// The check handed to the stream: queues chunks for the pool, reports its veto and verdict.
pub struct Offloaded {
    job: Arc<Job>,
    pool: Arc<Pool>,
    capacity: usize,
    finished: bool,
}

impl Offloaded {
    fn schedule(&self, mut s: MutexGuard<'_, JobState>) {
        if !s.queued {
            s.queued = true;
            drop(s);
            self.pool.schedule(&self.job);
        }
    }
}

impl BlobCheck for Offloaded {
    fn update(&mut self, chunk: &[u8]) -> Result<(), Veto> {
        self.update_bytes(&Bytes::copy_from_slice(chunk))
    }

    fn update_bytes(&mut self, chunk: &Bytes) -> Result<(), Veto> {
        let mut s = self.job.lock();
        while s.chunks.len() >= self.capacity && s.result.is_none() {
            if !s.queued {
                self.schedule(s);
                s = self.job.lock();
                continue;
            }
            s = self.job.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(veto) = s.early.take() {
            s.told = true;
            return Err(veto);
        }
        match &s.result {
            // A failed inspector fails every chunk after it.
            Some(Err(failed)) => return Err(failed.clone()),
            Some(Ok(())) => return Ok(()),
            None => {}
        }
        s.chunks.push_back(chunk.clone());
        self.schedule(s);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Veto> {
        self.finished = true;
        let mut s = self.job.lock();
        s.finish = true;
        if !s.queued && s.result.is_none() {
            self.schedule(s);
            s = self.job.lock();
        }
        loop {
            if let Some(result) = s.result.take() {
                return result;
            }
            if !s.queued {
                // Nothing in line and no result: its turn ended before `finish` was set.
                self.schedule(s);
                s = self.job.lock();
                continue;
            }
            s = self.job.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Offloaded {
    fn drop(&mut self) {
        if !self.finished {
            // A dropped stream (client gone, wrong digest, upstream cut): never judged.
            let mut s = self.job.lock();
            s.abandoned = true;
            s.chunks.clear();
            if !s.queued {
                s.check = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts bytes; vetoes past `limit`, or at the end when `fail_at_end`.
    struct Counting {
        seen: usize,
        limit: usize,
        fail_at_end: bool,
    }

    impl BlobCheck for Counting {
        fn update(&mut self, chunk: &[u8]) -> Result<(), Veto> {
            self.seen += chunk.len();
            if self.seen > self.limit {
                return Err(Veto::failed(format!("over {}", self.limit)));
            }
            Ok(())
        }
        fn finish(&mut self) -> Result<(), Veto> {
            if self.fail_at_end {
                Err(Veto::failed(format!("bad after {}", self.seen)))
            } else {
                Ok(())
            }
        }
    }

    fn offload(pool: &Arc<Pool>, limit: usize, fail_at_end: bool) -> Offloaded {
        let c = Counting {
            seen: 0,
            limit,
            fail_at_end,
        };
        pool.offload(Box::new(c), 4)
    }

    #[test]
    fn passes_every_byte_and_the_final_verdict() {
        let pool = Pool::new(2).unwrap();
        let mut o = offload(&pool, usize::MAX, false);
        for _ in 0..100 {
            o.update(&[0u8; 1000]).unwrap();
        }
        assert_eq!(o.finish(), Ok(()));
        let mut o = offload(&pool, usize::MAX, true);
        o.update(&[0u8; 10]).unwrap();
        assert_eq!(o.finish(), Err(Veto::failed("bad after 10")));
    }

    #[test]
    fn an_abandoned_stream_is_never_judged() {
        let judged = Arc::new(AtomicUsize::new(0));
        struct Flag(Arc<AtomicUsize>);
        impl BlobCheck for Flag {
            fn update(&mut self, _: &[u8]) -> Result<(), Veto> {
                Ok(())
            }
            fn finish(&mut self) -> Result<(), Veto> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
        let pool = Pool::new(1).unwrap();
        let mut o = pool.offload(Box::new(Flag(judged.clone())), 4);
        o.update(b"abc").unwrap();
        drop(o);
        // Another job runs to its end on the same single thread after the abandoned one.
        let mut other = offload(&pool, usize::MAX, false);
        other.update(b"x").unwrap();
        assert_eq!(other.finish(), Ok(()));
        assert_eq!(
            judged.load(Ordering::SeqCst),
            0,
            "finish ran for a stream that never ended"
        );
    }

    #[test]
    fn an_early_veto_is_told_once_and_the_check_reads_on_to_its_verdict() {
        let pool = Pool::new(1).unwrap();
        let mut o = offload(&pool, 2500, false);
        let mut vetoes = Vec::new();
        for _ in 0..1000 {
            if let Err(v) = o.update(&[0u8; 1000]) {
                vetoes.push(v);
            }
        }
        assert_eq!(vetoes, vec![Veto::failed("over 2500")]);
        // It saw every byte: its finish ran over all of them.
        assert_eq!(o.finish(), Ok(()));
    }

    #[test]
    fn many_streams_share_a_few_threads_and_each_gets_its_own_verdict() {
        let pool = Pool::new(2).unwrap();
        let threads_before = thread_count();
        let results: Vec<Result<(), Veto>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..20)
                .map(|i| {
                    let pool = pool.clone();
                    s.spawn(move || {
                        let mut o = offload(&pool, usize::MAX, i % 2 == 1);
                        for _ in 0..50 {
                            o.update(&[1u8; 4096]).unwrap();
                        }
                        o.finish()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_err(), i % 2 == 1, "stream {i}: {r:?}");
        }
        assert_eq!(pool.size(), 2);
        // The pool itself added no thread per stream (only the 20 feeders came and went).
        if let (Some(before), Some(after)) = (threads_before, thread_count()) {
            assert!(
                after <= before + 2,
                "{before} threads before, {after} after"
            );
        }
    }

    #[test]
    fn a_panicking_inspector_fails_its_stream_only() {
        struct Panics;
        impl BlobCheck for Panics {
            fn update(&mut self, _: &[u8]) -> Result<(), Veto> {
                panic!("bug in an inspector")
            }
            fn finish(&mut self) -> Result<(), Veto> {
                Ok(())
            }
        }
        let pool = Pool::new(1).unwrap();
        let mut bad = pool.offload(Box::new(Panics), 4);
        let _ = bad.update(b"x");
        assert!(bad.finish().is_err());
        let mut good = offload(&pool, usize::MAX, false);
        good.update(b"y").unwrap();
        assert_eq!(good.finish(), Ok(()));
    }

    /// Threads of this process, where /proc tells.
    fn thread_count() -> Option<usize> {
        std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
    }
}
