//! Verified blobs on disk, by digest, within a size limit.
//!
//! Layout under the cache directory: `blobs/<algorithm>/<hex>` holds committed blobs, `tmp/`
//! holds blobs being written. A blob reaches `blobs/` only by `rename` of a complete, fsynced
//! temp file whose bytes passed their digest and verdict, so a file there is always whole; a
//! crash leaves at most files in `tmp/`, which `open` deletes.
//!
//! Eviction is least-recently-used over an in-memory index (rebuilt from file times at start-up).
//! A blob being read is pinned and never evicted; one being written is not in the index yet.

use crate::metrics;
use crate::oci::{Algorithm, Digest};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub struct BlobStore {
    root: PathBuf,
    max_size: u64,
    index: Mutex<Index>,
    temp_seq: AtomicU64,
}

#[derive(Default)]
struct Index {
    entries: HashMap<Digest, Entry>,
    total: u64,
    /// Bumped on every use: the least recently used entry has the smallest `used`.
    clock: u64,
    /// Blobs removed (judged malicious) while not in the cache: a commit of one under way when it
    /// was judged is dropped instead of landing after the removal.
    doomed: std::collections::HashSet<Digest>,
}

/// Removed-while-absent digests remembered at most; past it the set starts again (a commit
/// racing a removal lasts milliseconds).
const MAX_DOOMED: usize = 4096;

struct Entry {
    size: u64,
    used: u64,
    /// Readers holding the file open.
    pins: u32,
}

/// A committed blob opened for reading; it cannot be evicted while this lives.
/// Threads that read cached blobs for every client together: a small fixed pool, so 200 slow
/// clients of cached blobs cost no thread each (a read takes microseconds from the page cache; a
/// client waits for its turn, not for a thread of its own).
const READERS: usize = 4;

/// A read for the pool: where, how much, and where the bytes go.
type ReadJob = (
    Arc<File>,
    u64,
    usize,
    tokio::sync::oneshot::Sender<io::Result<bytes::Bytes>>,
);

fn readers() -> &'static std::sync::Mutex<std::sync::mpsc::Sender<ReadJob>> {
    static POOL: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<ReadJob>>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<ReadJob>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for n in 0..READERS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("cache-read-{n}"))
                .spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((file, pos, len, reply)) = job else {
                        return;
                    };
                    let mut buf = vec![0; len];
                    let read = std::os::unix::fs::FileExt::read_exact_at(&*file, &mut buf, pos)
                        .map(|()| bytes::Bytes::from(buf));
                    // The client may have gone away meanwhile.
                    let _ = reply.send(read);
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a cache reader thread");
            }
        }
        std::sync::Mutex::new(tx)
    })
}

/// `len` bytes of `file` at `pos`, read by the cache's reader threads.
pub async fn read_at(file: Arc<File>, pos: u64, len: usize) -> io::Result<bytes::Bytes> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    readers()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((file, pos, len, reply))
        .map_err(|_| io::Error::other("no cache reader thread"))?;
    answer
        .await
        .unwrap_or_else(|_| Err(io::Error::other("a cache reader thread failed")))
}

pub struct CachedBlob {
    pub file: File,
    pub size: u64,
    pub pin: Pin,
}

/// Keeps a cached blob from being evicted while it is read.
pub struct Pin {
    store: Arc<BlobStore>,
    digest: Digest,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut index = self.store.lock();
        if let Some(e) = index.entries.get_mut(&self.digest) {
            e.pins = e.pins.saturating_sub(1);
        }
        // A blob pinned while the limit was passed can go now.
        self.store.evict(&mut index);
    }
}

/// A blob being written: bytes go to `tmp/` and reach `blobs/` only through `BlobStore::commit`.
pub struct TempBlob {
    path: PathBuf,
    pub file: Arc<File>,
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        // Committed files were renamed away; anything still here is a dropped fill.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl BlobStore {
    /// Opens (creating) the store under `root`, deletes what a crash left in `tmp/`, and indexes
    /// the committed blobs. Returns the store and how many temp files were removed.
    pub fn open(root: &Path, max_size: u64) -> io::Result<(Arc<BlobStore>, usize)> {
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let mut removed = 0;
        for entry in std::fs::read_dir(&tmp)? {
            let path = entry?.path();
            let gone = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match gone {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale cache temp file")
                }
            }
        }
        let mut found = Vec::new();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = root.join("blobs").join(algorithm.as_str());
            std::fs::create_dir_all(&dir)?;
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let digest = name
                    .to_str()
                    .and_then(|hex| format!("{}:{hex}", algorithm.as_str()).parse().ok());
                let meta = entry.metadata()?;
                match digest {
                    Some(d) if meta.is_file() => {
                        let time = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                        found.push((time, d, meta.len()));
                    }
                    // Not ours: nothing else is ever written here.
                    _ => {
                        tracing::warn!(path = %entry.path().display(), "ignoring a stray file in the blob cache")
                    }
                }
            }
        }
        // Oldest first, so the clock order matches the files' last use.
        found.sort_by_key(|(time, _, _)| *time);
        let mut index = Index::default();
        for (_, digest, size) in found {
            index.clock += 1;
            index.total += size;
            index.entries.insert(
                digest,
                Entry {
                    size,
                    used: index.clock,
                    pins: 0,
                },
            );
        }
        let store = Arc::new(BlobStore {
            root: root.to_path_buf(),
            max_size,
            index: Mutex::new(index),
            temp_seq: AtomicU64::new(0),
        });
        store.evict(&mut store.lock());
        Ok((store, removed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Bytes of committed blobs.
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// The size of a cached blob, without opening it.
    pub fn size_of(&self, digest: &Digest) -> Option<u64> {
        self.lock().entries.get(digest).map(|e| e.size)
    }

    /// Opens a cached blob for reading, pinned and marked as just used.
    pub fn open_blob(self: &Arc<Self>, digest: &Digest) -> Option<CachedBlob> {
        let mut index = self.lock();
        index.clock += 1;
        let clock = index.clock;
        let entry = index.entries.get_mut(digest)?;
        let size = entry.size;
        match File::open(self.path(digest)) {
            Ok(file) => {
                entry.used = clock;
                entry.pins += 1;
                drop(index);
                // The file time carries the use across restarts; a read-only cache just loses it.
                let _ = file.set_modified(SystemTime::now());
                Some(CachedBlob {
                    file,
                    size,
                    pin: Pin {
                        store: self.clone(),
                        digest: digest.clone(),
                    },
                })
            }
            Err(e) => {
                // Deleted behind our back (an operator cleaning up): forget it, fetch again.
                tracing::warn!(%digest, error = %e, "a cached blob is gone from disk");
                let size = entry.size;
                index.entries.remove(digest);
                index.total -= size;
                metrics::CACHE_BYTES.set(index.total);
                None
            }
        }
    }

    /// A new temp file to write a blob into.
    pub fn temp(&self) -> io::Result<TempBlob> {
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join("tmp")
            .join(format!("{}-{seq}.part", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempBlob {
            path,
            file: Arc::new(file),
        })
    }

    /// Makes a fully written, verified temp file the cached copy of `digest`: fsync, rename into
    /// `blobs/`, fsync the directory. A blob larger than the whole cache is not kept.
    pub fn commit(&self, temp: TempBlob, digest: &Digest, size: u64) -> io::Result<bool> {
        if size > self.max_size {
            return Ok(false);
        }
        temp.file.sync_all()?;
        let target = self.path(digest);
        {
            // Renamed and indexed under the index's lock, so a removal is either before (and the
            // commit is dropped) or after (and finds the entry).
            let mut index = self.lock();
            if index.doomed.remove(digest) {
                return Ok(false);
            }
            std::fs::rename(&temp.path, &target)?;
            self.insert(&mut index, digest, size);
        }
        if let Some(dir) = target.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(true)
    }

    /// Writes a small blob already in memory (an image config) into the cache.
    pub fn put(&self, digest: &Digest, bytes: &[u8]) -> io::Result<bool> {
        if self.size_of(digest).is_some() {
            return Ok(true);
        }
        let temp = self.temp()?;
        (&*temp.file).write_all(bytes)?;
        self.commit(temp, digest, bytes.len() as u64)
    }

    fn insert(&self, index: &mut Index, digest: &Digest, size: u64) {
        index.clock += 1;
        let used = index.clock;
        let old = index.entries.insert(
            digest.clone(),
            Entry {
                size,
                used,
                pins: 0,
            },
        );
        // Two fills of the same blob (one under another upstream) wrote the same bytes.
        if let Some(old) = old {
            index.total -= old.size;
            if let Some(e) = index.entries.get_mut(digest) {
                e.pins = old.pins;
            }
        }
        index.total += size;
        self.evict(index);
    }

    /// Drops a blob from the cache (its verdict became a block). Readers that have it open keep
    /// reading their copy; no new reader gets it.
    pub fn remove(&self, digest: &Digest) {
        let mut index = self.lock();
        match index.entries.remove(digest) {
            Some(e) => {
                index.total -= e.size;
                metrics::CACHE_BYTES.set(index.total);
                if let Err(e) = std::fs::remove_file(self.path(digest)) {
                    tracing::warn!(%digest, error = %e, "cannot delete a cached blob");
                }
            }
            None => {
                if index.doomed.len() >= MAX_DOOMED {
                    index.doomed.clear();
                }
                index.doomed.insert(digest.clone());
            }
        }
    }

    /// Deletes least recently used, unpinned blobs until the total fits the limit.
    fn evict(&self, index: &mut Index) {
        while index.total > self.max_size {
            let victim = index
                .entries
                .iter()
                .filter(|(_, e)| e.pins == 0)
                .min_by_key(|(_, e)| e.used)
                .map(|(d, e)| (d.clone(), e.size));
            let Some((digest, size)) = victim else {
                // Everything left is being read; the next unpin tries again.
                break;
            };
            index.entries.remove(&digest);
            index.total -= size;
            metrics::EVICTIONS.inc();
            if let Err(e) = std::fs::remove_file(self.path(&digest)) {
                tracing::warn!(%digest, error = %e, "cannot delete an evicted blob");
            }
            tracing::debug!(%digest, size, "evicted from the blob cache");
        }
        metrics::CACHE_BYTES.set(index.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(store: &Arc<BlobStore>, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256_of(bytes);
        assert!(store.put(&digest, bytes).unwrap());
        digest
    }

    fn files(root: &Path, sub: &str) -> usize {
        std::fs::read_dir(root.join(sub)).unwrap().count()
    }

    #[test]
    fn committed_blobs_read_back_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = BlobStore::open(dir.path(), 1 << 20).unwrap();
        let d = commit(&store, b"hello");
        let mut got = String::new();
        io::Read::read_to_string(&mut store.open_blob(&d).unwrap().file, &mut got).unwrap();
        assert_eq!(got, "hello");
        drop(store);
        let (store, removed) = BlobStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(removed, 0);
        assert_eq!(store.size_of(&d), Some(5));
        assert_eq!(store.total(), 5);
    }

    #[test]
    fn a_dropped_temp_file_leaves_nothing_and_a_crash_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = BlobStore::open(dir.path(), 1 << 20).unwrap();
        let t = store.temp().unwrap();
        (&*t.file).write_all(b"partial").unwrap();
        drop(t);
        assert_eq!(files(dir.path(), "tmp"), 0);
        // What a kill -9 leaves behind.
        std::fs::write(dir.path().join("tmp/123-0.part"), b"half a blob").unwrap();
        drop(store);
        let (_, removed) = BlobStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(removed, 1);
        assert_eq!(files(dir.path(), "tmp"), 0);
    }

    #[test]
    fn a_blob_removed_while_its_commit_is_under_way_never_lands() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = BlobStore::open(dir.path(), 1 << 20).unwrap();
        let bytes = [9u8; 100];
        let digest = Digest::sha256_of(&bytes);
        // Judged malicious before its fill got to commit it.
        store.remove(&digest);
        let temp = store.temp().unwrap();
        (&*temp.file).write_all(&bytes).unwrap();
        assert!(!store.commit(temp, &digest, 100).unwrap());
        assert!(store.open_blob(&digest).is_none());
        // Only that commit: the blob can be kept later (its verdict changed).
        assert!(store.put(&digest, &bytes).unwrap());
        assert!(store.open_blob(&digest).is_some());
    }

    #[test]
    fn least_recently_used_blobs_go_first_and_pinned_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = BlobStore::open(dir.path(), 25).unwrap();
        let a = commit(&store, &[1; 10]);
        let b = commit(&store, &[2; 10]);
        // a is used after b: b is now the least recently used.
        drop(store.open_blob(&a).unwrap());
        let c = commit(&store, &[3; 10]);
        assert!(store.size_of(&b).is_none(), "b was evicted");
        assert!(store.size_of(&a).is_some() && store.size_of(&c).is_some());
        assert!(store.total() <= 25);
        // A pinned blob is never the victim, however old: the others go instead.
        let reading = store.open_blob(&a).unwrap();
        // a was used last, so without the pin it would be kept anyway; age it first.
        drop(store.open_blob(&c).unwrap());
        let d = commit(&store, &[4; 10]);
        assert!(store.size_of(&a).is_some(), "a is being read");
        assert!(store.size_of(&c).is_none(), "c went instead");
        let e = commit(&store, &[5; 10]);
        assert!(store.size_of(&a).is_some(), "a is still being read");
        assert!(store.size_of(&d).is_none());
        drop(reading);
        assert!(store.total() <= 25, "{}", store.total());
        assert!(store.size_of(&e).is_some());
        assert_eq!(files(dir.path(), "blobs/sha256"), 2);
    }

    #[test]
    fn a_blob_larger_than_the_cache_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = BlobStore::open(dir.path(), 4).unwrap();
        let digest = Digest::sha256_of(b"too big");
        assert!(!store.put(&digest, b"too big").unwrap());
        assert_eq!(files(dir.path(), "blobs/sha256"), 0);
        assert_eq!(files(dir.path(), "tmp"), 0);
    }

    #[test]
    fn removed_blobs_are_gone_for_new_readers() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = BlobStore::open(dir.path(), 1 << 20).unwrap();
        let d = commit(&store, b"evil");
        store.remove(&d);
        assert!(store.open_blob(&d).is_none());
        assert_eq!(store.total(), 0);
    }
}
