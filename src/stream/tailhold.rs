//! Tail-hold: a blob streams to the client while every byte passes through a set of checks, and the
//! last chunk is held back until all of them have passed on the whole blob.
//!
//! Clients verify blob digests, so a client that never receives the last chunk never accepts the
//! blob. A check that fails (wrong digest, too many bytes, and — with inspection — a malicious
//! layer) ends the stream with an error instead of the held chunk; the server then aborts the
//! response, and the client holds an incomplete blob it will discard.
//!
//! Failure modes: an upstream error mid-stream aborts the same way (the tail is never sent); a
//! client that goes away drops the stream, which drops the upstream body. Memory is bounded by one
//! held chunk: nothing is buffered beyond what the upstream delivers per read.

use super::Veto;
use crate::oci::{Digest, Hasher};
use bytes::Bytes;
use futures_util::Stream;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A check over the bytes of one blob: the hook digest verification and inspection plug into.
/// Checks are synchronous and do no I/O; they see every byte once, in order.
pub trait BlobCheck: Send {
    /// Sees the next chunk. An `Err` refuses the blob at once.
    fn update(&mut self, chunk: &[u8]) -> Result<(), Veto>;
    /// The same, for a caller that holds the chunk as `Bytes`: a check that keeps chunks (hands
    /// them to another thread) takes a reference instead of a copy.
    fn update_bytes(&mut self, chunk: &Bytes) -> Result<(), Veto> {
        self.update(chunk)
    }
    /// Called once after the last byte. An `Err` refuses the blob: its held tail is never sent.
    fn finish(&mut self) -> Result<(), Veto>;
}

/// Verifies that the bytes hash to the expected digest and that there are exactly `size` of them
/// when the size is known.
pub struct DigestCheck {
    expected: Digest,
    size: Option<u64>,
    seen: u64,
    hasher: Option<Hasher>,
}

impl DigestCheck {
    pub fn new(expected: Digest, size: Option<u64>) -> Self {
        let hasher = Some(expected.algorithm().hasher());
        DigestCheck {
            expected,
            size,
            seen: 0,
            hasher,
        }
    }
}

impl BlobCheck for DigestCheck {
    fn update(&mut self, chunk: &[u8]) -> Result<(), Veto> {
        self.seen += chunk.len() as u64;
        if let Some(size) = self.size.filter(|s| self.seen > *s) {
            return Err(Veto::failed(format!(
                "upstream sent more than the {size} bytes it announced"
            )));
        }
        if let Some(h) = &mut self.hasher {
            h.update(chunk);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Veto> {
        if let Some(size) = self.size.filter(|s| self.seen != *s) {
            return Err(Veto::failed(format!(
                "upstream sent {} of the {size} bytes it announced",
                self.seen
            )));
        }
        let got = self.hasher.take().expect("finish is called once").finish();
        if got != self.expected {
            return Err(Veto::failed(format!(
                "upstream bytes hash to {got}, not to {}",
                self.expected
            )));
        }
        Ok(())
    }
}

/// The byte window of the blob that is sent to the client: all of it, or one requested range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u64,
    /// Exclusive end; `u64::MAX` for "to the end".
    pub end: u64,
}

impl Window {
    pub const ALL: Window = Window {
        start: 0,
        end: u64::MAX,
    };

    /// The window of a resolved range (`first..=last`), or the whole blob.
    pub fn of(range: Option<(u64, u64)>) -> Window {
        range.map_or(Window::ALL, |(start, last)| Window {
            start,
            end: last + 1,
        })
    }
}

/// Called once with the outcome when the stream ends (not when it is dropped early).
pub type OnEnd = Box<dyn FnOnce(&Result<u64, Veto>) + Send>;

/// The stream wrapper. Items are the bytes of `window`; the stream reads the upstream to its end
/// (past the window, if needed) so the checks always see the whole blob before the tail goes out.
pub struct TailHold<S> {
    inner: S,
    checks: Vec<Box<dyn BlobCheck>>,
    window: Window,
    pos: u64,
    held: Option<Bytes>,
    done: bool,
    on_end: Option<OnEnd>,
}

impl<S> TailHold<S> {
    pub fn new(inner: S, checks: Vec<Box<dyn BlobCheck>>, window: Window) -> Self {
        TailHold {
            inner,
            checks,
            window,
            pos: 0,
            held: None,
            done: false,
            on_end: None,
        }
    }

    pub fn on_end(mut self, f: OnEnd) -> Self {
        self.on_end = Some(f);
        self
    }

    fn end(&mut self, outcome: Result<u64, Veto>) -> Option<Result<Bytes, io::Error>> {
        self.done = true;
        if let Some(f) = self.on_end.take() {
            f(&outcome);
        }
        match outcome {
            Ok(_) => self.held.take().map(Ok),
            Err(veto) => {
                // Dropping the held tail here is the whole point: the client never gets it.
                self.held = None;
                Some(Err(io::Error::other(veto)))
            }
        }
    }

    /// The part of `chunk` (which starts at blob offset `pos`) that falls inside the window.
    fn clip(&self, chunk: Bytes) -> Bytes {
        let len = chunk.len() as u64;
        let start = self.window.start.saturating_sub(self.pos).min(len);
        let end = self.window.end.saturating_sub(self.pos).min(len);
        if start >= end {
            Bytes::new()
        } else {
            chunk.slice(start as usize..end as usize)
        }
    }
}

impl<S, E> Stream for TailHold<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Err(veto) = this
                        .checks
                        .iter_mut()
                        .try_for_each(|c| c.update_bytes(&chunk))
                    {
                        return Poll::Ready(this.end(Err(veto)));
                    }
                    let out = this.clip(chunk.clone());
                    this.pos += chunk.len() as u64;
                    if out.is_empty() {
                        continue;
                    }
                    if let Some(previous) = this.held.replace(out) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let veto = Veto::failed(format!(
                        "upstream body failed after {} bytes: {e}",
                        this.pos
                    ));
                    return Poll::Ready(this.end(Err(veto)));
                }
                Poll::Ready(None) => {
                    let verdict = this.checks.iter_mut().try_for_each(|c| c.finish());
                    let outcome = verdict.map(|()| this.pos);
                    return Poll::Ready(this.end(outcome));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{stream, StreamExt};

    fn chunks(data: &[u8], size: usize) -> Vec<Result<Bytes, io::Error>> {
        data.chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect()
    }

    async fn run(
        input: Vec<Result<Bytes, io::Error>>,
        checks: Vec<Box<dyn BlobCheck>>,
        window: Window,
    ) -> (Vec<u8>, Option<String>) {
        let mut s = TailHold::new(stream::iter(input), checks, window);
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
        (out, None)
    }

    fn digest_check(data: &[u8]) -> Vec<Box<dyn BlobCheck>> {
        vec![Box::new(DigestCheck::new(
            Digest::sha256_of(data),
            Some(data.len() as u64),
        ))]
    }

    #[tokio::test]
    async fn good_blob_passes_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let (out, err) = run(chunks(&data, 777), digest_check(&data), Window::ALL).await;
        assert_eq!(err, None);
        assert_eq!(out, data);
    }

    #[tokio::test]
    async fn wrong_bytes_never_deliver_the_tail() {
        let data = vec![7u8; 5000];
        let mut wrong = data.clone();
        wrong[4999] = 8;
        let (out, err) = run(chunks(&wrong, 1000), digest_check(&data), Window::ALL).await;
        assert!(err.unwrap().contains("hash to"));
        assert_eq!(out.len(), 4000, "the last chunk is held back");
    }

    #[tokio::test]
    async fn a_single_chunk_blob_is_held_whole_on_failure() {
        let (out, err) = run(chunks(b"evil", 100), digest_check(b"good"), Window::ALL).await;
        assert!(err.is_some());
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn truncated_and_oversized_bodies_fail() {
        let data = vec![1u8; 3000];
        let (out, err) = run(chunks(&data[..2500], 500), digest_check(&data), Window::ALL).await;
        assert!(err.unwrap().contains("2500 of the 3000"));
        assert_eq!(out.len(), 2000);
        let mut more = data.clone();
        more.extend_from_slice(b"extra");
        let (out, err) = run(chunks(&more, 1000), digest_check(&data), Window::ALL).await;
        assert!(err.unwrap().contains("more than"));
        assert!(out.len() < data.len());
    }

    #[tokio::test]
    async fn upstream_errors_abort_without_the_tail() {
        let mut input = chunks(&[3u8; 2000], 500);
        input.push(Err(io::Error::other("connection reset")));
        let (out, err) = run(input, digest_check(&[3u8; 4000]), Window::ALL).await;
        assert!(err.unwrap().contains("connection reset"));
        assert_eq!(out.len(), 1500);
    }

    #[tokio::test]
    async fn ranges_are_clipped_and_still_wait_for_the_whole_blob() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let w = Window {
            start: 100,
            end: 1100,
        };
        let (out, err) = run(chunks(&data, 300), digest_check(&data), w).await;
        assert_eq!(err, None);
        assert_eq!(out, &data[100..1100]);
        // The same range of a blob that fails its digest loses the window's last chunk.
        let mut bad = data.clone();
        bad[4000] ^= 1;
        let (out, err) = run(chunks(&bad, 300), digest_check(&data), w).await;
        assert!(err.is_some());
        assert_eq!(out, &data[100..900]);
    }

    #[tokio::test]
    async fn on_end_reports_the_outcome() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let s2 = seen.clone();
        let data = b"hello".to_vec();
        let s = TailHold::new(
            stream::iter(chunks(&data, 2)),
            digest_check(&data),
            Window::ALL,
        )
        .on_end(Box::new(move |r| *s2.lock().unwrap() = Some(r.clone())));
        let _: Vec<_> = s.collect().await;
        assert_eq!(*seen.lock().unwrap(), Some(Ok(5)));
    }
}
