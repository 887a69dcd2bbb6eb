//! The verdict store: verdicts per blob, manifest and repository, which blobs each image
//! references, and the overrides that beat verdicts — one trait, a sled and an in-memory back-end.
//!
//! Every method is synchronous. Reads and non-flushing writes are a lookup in sled's page cache
//! (microseconds), so async handlers call them directly; the writes that flush to disk
//! (override changes, [`VerdictStore::flush`]) wait for an fsync and belong in
//! `tokio::task::spawn_blocking` or off the request path. Time never comes from the store: callers
//! pass `now` (see [`now_unix`]), so expiry is testable without sleeping.

#[cfg(test)]
mod conformance;
mod memory;
mod overrides;
mod sled_store;

pub use memory::MemoryStore;
pub use overrides::{
    NewOverride, Override, OverrideAction, OverrideSet, OverrideTarget, PatternError, RepoPattern,
};
pub use sled_store::SledStore;

use crate::inspect::Verdict;
use crate::oci::{Digest, QualifiedName};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (a running `portcullis serve`) holds the database.
    #[error("the verdict store at {} is locked by another process: stop `portcullis serve` using it and try again", path.display())]
    Locked { path: PathBuf },
    #[error("the verdict store at {} has format version {found}; this portcullis reads version {expected}", path.display())]
    Version {
        path: PathBuf,
        found: String,
        expected: u32,
    },
    #[error("verdict store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value that cannot be read back. The store never panics on one and never treats
    /// it as absent: the caller decides (re-judge, or refuse under `fail_closed`).
    #[error("corrupt entry {key:?} in the verdict store's {tree} tree: {message}")]
    Corrupt {
        tree: &'static str,
        key: String,
        message: String,
    },
    #[error("no override with id {0}")]
    NoSuchOverride(u64),
    #[error("invalid override: {0}")]
    InvalidOverride(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a verdict is about. Each kind has its own namespace: a blob and a manifest with the same
/// digest keep separate verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A layer or config blob.
    Blob(&'a Digest),
    /// An image manifest or an index.
    Manifest(&'a Digest),
    /// A repository name, qualified by its upstream host (`docker.io/library/nginx`).
    Repo(&'a QualifiedName),
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Blob(d) => write!(f, "blob {d}"),
            Subject::Manifest(d) => write!(f, "manifest {d}"),
            Subject::Repo(n) => write!(f, "repository {n}"),
        }
    }
}

/// A verdict looked up under the rule set in force.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Nothing stored: judge it.
    Missing,
    /// Made by another engine version or rule set: judge it again; never enforce it as it stands.
    Stale(Verdict),
    /// Made by this engine under the rule set in force: it holds.
    Current(Verdict),
}

impl Lookup {
    fn of(verdict: Verdict, ruleset_hash: &str) -> Lookup {
        if verdict.is_current(ruleset_hash) {
            Lookup::Current(verdict)
        } else {
            Lookup::Stale(verdict)
        }
    }

    /// The verdict, if it is current.
    pub fn current(self) -> Option<Verdict> {
        match self {
            Lookup::Current(v) => Some(v),
            Lookup::Missing | Lookup::Stale(_) => None,
        }
    }
}

/// The blobs an image manifest references, and the files its config starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageBlobs {
    pub config: Digest,
    pub layers: Vec<Digest>,
    /// The absolute paths the image config starts ([`crate::judge::Runs`]): evidence in them
    /// counts as running, whichever layer holds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<String>,
    /// The layers whose media type says they are file systems (tar, compressed or not): bytes
    /// that are no tar stream are then refused under `fail = "closed"`, where a signature's or
    /// an attestation's JSON layer is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rootfs: Vec<Digest>,
}

impl ImageBlobs {
    /// The config, then the layers.
    pub fn all(&self) -> impl Iterator<Item = &Digest> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

/// Verdicts, the image↔blob relation and overrides, behind one interface that every back-end
/// implements and that `conformance` tests hold each back-end to.
///
/// Every write is visible to every later read on return. Override changes are also durable on
/// return; other writes reach the disk within the back-end's flush interval (sled: 500 ms) or at
/// [`flush`](VerdictStore::flush). Losing the last verdicts in a crash costs a re-inspection, never
/// a wrong answer: a missing verdict is judged again.
pub trait VerdictStore: Send + Sync {
    /// The verdict for `subject`, marked [`Lookup::Stale`] unless it was made by this engine under
    /// the rule set whose hash is `ruleset_hash`. A value that cannot be read is an error.
    fn get_verdict(&self, subject: Subject<'_>, ruleset_hash: &str) -> Result<Lookup>;

    /// Stores `verdict` for `subject`, replacing any earlier one (the last write wins).
    fn put_verdict(&self, subject: Subject<'_>, verdict: &Verdict) -> Result<()>;

    /// Records the blobs the image manifest `manifest` references, in both directions, atomically.
    /// Recording a manifest again replaces its earlier record (and its reverse entries).
    fn put_image(&self, manifest: &Digest, blobs: &ImageBlobs) -> Result<()>;

    /// The blobs recorded for `manifest`.
    fn image_blobs(&self, manifest: &Digest) -> Result<Option<ImageBlobs>>;

    /// Every recorded manifest that references `blob` as its config or a layer, in digest order:
    /// how a blob requested under a blocked image is found and refused.
    fn images_with_blob(&self, blob: &Digest) -> Result<Vec<Digest>>;

    /// Adds an override under a fresh id (ids only grow; a removed id is never reused). Durable on
    /// return. [`NewOverride::validate`] failures are [`StoreError::InvalidOverride`].
    fn add_override(&self, new: NewOverride) -> Result<Override>;

    /// Removes the override `id` (expired or not) and returns it. Durable on return. A record
    /// that cannot be read is removed all the same and reported as [`StoreError::Corrupt`]: that
    /// is how an operator clears one.
    fn remove_override(&self, id: u64) -> Result<Override>;

    /// Removes every override expired at `now_unix` and returns them. Durable on return.
    fn prune_overrides(&self, now_unix: u64) -> Result<Vec<Override>>;

    /// A snapshot of every stored override, expired ones included, compiled for matching. Cheap
    /// (a shared pointer); take one per request and ask it [`OverrideSet::decide`].
    fn overrides(&self) -> Result<Arc<OverrideSet>>;

    /// Writes everything to disk.
    fn flush(&self) -> Result<()>;

    /// Every stored override in id order, expired ones included.
    fn list_overrides(&self) -> Result<Vec<Override>> {
        Ok(self.overrides()?.iter().cloned().collect())
    }

    /// The override in force at `now_unix` for `repo`, or for `digest` requested under it:
    /// see [`OverrideSet::decide`] for which one wins.
    fn override_for(
        &self,
        repo: &QualifiedName,
        digest: Option<&Digest>,
        now_unix: u64,
    ) -> Result<Option<Override>> {
        Ok(self.overrides()?.decide(repo, digest, now_unix).cloned())
    }
}

/// Seconds since the Unix epoch, from the system clock: the `now` callers pass to the store.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
