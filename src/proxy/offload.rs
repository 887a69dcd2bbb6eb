//! Runs a CPU-heavy [`BlobCheck`] (layer inspection: inflate, untar, scan) on its own thread, so
//! the blob keeps streaming to the client while it is judged, and only the held tail waits for the
//! verdict. Without it, every chunk would wait for its inspection before the next is read.
//!
//! Bounded: at most `capacity` chunks wait for the inspector; past that, `update` blocks until it
//! catches up, which is the same backpressure the inline check gave. A veto the inspector reaches
//! mid-stream is seen by the next `update`.

use super::tailhold::{BlobCheck, Veto};
use bytes::Bytes;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Chunks in flight to the inspector thread: a few MiB with hyper's read sizes. A fill reads its
/// upstream as fast as it can write the cache, so this bounds the memory of an inspection that lags.
pub const DEFAULT_CAPACITY: usize = 64;

/// What the stream tells the inspector thread.
enum Msg {
    Chunk(Bytes),
    /// Every byte was sent and the earlier checks (the digest) passed: judge.
    Finish,
}

pub struct Offloaded {
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<Result<(), Veto>>>,
    /// Set by the thread as soon as its check vetoes.
    early: Arc<Mutex<Option<Veto>>>,
}

impl Offloaded {
    pub fn new(
        name: String,
        mut inner: Box<dyn BlobCheck>,
        capacity: usize,
    ) -> std::io::Result<Offloaded> {
        let (tx, rx) = sync_channel::<Msg>(capacity);
        let early = Arc::new(Mutex::new(None));
        let flag = early.clone();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            for msg in rx.iter() {
                match msg {
                    Msg::Chunk(chunk) => {
                        if let Err(veto) = inner.update(&chunk) {
                            *flag.lock().unwrap_or_else(|p| p.into_inner()) = Some(veto.clone());
                            // Drain nothing more: the stream is being aborted.
                            return Err(veto);
                        }
                    }
                    Msg::Finish => return inner.finish(),
                }
            }
            // The stream was abandoned (client gone, wrong digest, upstream cut): these bytes are
            // not the blob, so no verdict is made from them.
            Ok(())
        })?;
        Ok(Offloaded {
            tx: Some(tx),
            thread: Some(thread),
            early,
        })
    }

    fn early_veto(&self) -> Option<Veto> {
        self.early.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn join(&mut self) -> Result<(), Veto> {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Finish);
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Veto("the inspector failed".into())),
            None => Ok(()),
        }
    }
}

impl BlobCheck for Offloaded {
    fn update(&mut self, chunk: &[u8]) -> Result<(), Veto> {
        self.update_bytes(&Bytes::copy_from_slice(chunk))
    }

    fn update_bytes(&mut self, chunk: &Bytes) -> Result<(), Veto> {
        if let Some(veto) = self.early_veto() {
            return Err(veto);
        }
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        if tx.send(Msg::Chunk(chunk.clone())).is_err() {
            // The thread stopped early: it vetoed (or died); report why.
            self.tx = None;
            return self.join().and(Err(Veto("the inspector stopped".into())));
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Veto> {
        self.join()
    }
}

impl Drop for Offloaded {
    fn drop(&mut self) {
        // A dropped stream (client gone) closes the channel; the thread finishes on its own.
        self.tx = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                return Err(Veto(format!("over {}", self.limit)));
            }
            Ok(())
        }
        fn finish(&mut self) -> Result<(), Veto> {
            if self.fail_at_end {
                Err(Veto(format!("bad after {}", self.seen)))
            } else {
                Ok(())
            }
        }
    }

    fn offload(limit: usize, fail_at_end: bool) -> Offloaded {
        let c = Counting {
            seen: 0,
            limit,
            fail_at_end,
        };
        Offloaded::new("test".into(), Box::new(c), 4).unwrap()
    }

    #[test]
    fn passes_every_byte_and_the_final_verdict() {
        let mut o = offload(usize::MAX, false);
        for _ in 0..100 {
            o.update(&[0u8; 1000]).unwrap();
        }
        assert_eq!(o.finish(), Ok(()));
        let mut o = offload(usize::MAX, true);
        o.update(&[0u8; 10]).unwrap();
        assert_eq!(o.finish(), Err(Veto("bad after 10".into())));
    }

    #[test]
    fn an_abandoned_stream_is_never_judged() {
        let judged = Arc::new(Mutex::new(false));
        struct Flag(Arc<Mutex<bool>>);
        impl BlobCheck for Flag {
            fn update(&mut self, _: &[u8]) -> Result<(), Veto> {
                Ok(())
            }
            fn finish(&mut self) -> Result<(), Veto> {
                *self.0.lock().unwrap() = true;
                Ok(())
            }
        }
        let mut o = Offloaded::new("t".into(), Box::new(Flag(judged.clone())), 4).unwrap();
        o.update(b"abc").unwrap();
        let thread = o.thread.take().unwrap();
        drop(o);
        thread.join().unwrap().unwrap();
        assert!(
            !*judged.lock().unwrap(),
            "finish ran for a stream that never ended"
        );
    }

    #[test]
    fn an_early_veto_stops_the_stream() {
        let mut o = offload(2500, false);
        let mut vetoed = None;
        for _ in 0..1000 {
            if let Err(v) = o.update(&[0u8; 1000]) {
                vetoed = Some(v);
                break;
            }
        }
        assert_eq!(vetoed, Some(Veto("over 2500".into())));
    }
}
