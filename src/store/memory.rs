//! The in-memory back-end: maps behind one mutex. For tests and for running without a disk;
//! everything is lost when it is dropped.

use super::{
    ImageBlobs, Lookup, NewOverride, Override, OverrideSet, Result, StoreError, Subject,
    VerdictStore,
};
use crate::inspect::Verdict;
use crate::oci::{Digest, QualifiedName};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    blobs: HashMap<Digest, Verdict>,
    manifests: HashMap<Digest, Verdict>,
    repos: HashMap<QualifiedName, Verdict>,
    images: HashMap<Digest, ImageBlobs>,
    /// blob → the manifests that reference it, keyed by the manifest's string form (digest order).
    blob_images: HashMap<Digest, BTreeMap<String, Digest>>,
    overrides: BTreeMap<u64, Override>,
    snapshot: Arc<OverrideSet>,
    last_override_id: u64,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain maps behind, still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn refresh_overrides(&mut self) {
        self.snapshot = Arc::new(OverrideSet::new(self.overrides.values().cloned().collect()));
    }

    fn unlink_image(&mut self, manifest: &Digest) {
        let Some(old) = self.images.remove(manifest) else {
            return;
        };
        for blob in old.all() {
            if let Some(set) = self.blob_images.get_mut(blob) {
                set.remove(&manifest.to_string());
                if set.is_empty() {
                    self.blob_images.remove(blob);
                }
            }
        }
    }
}

impl VerdictStore for MemoryStore {
    fn get_verdict(&self, subject: Subject<'_>, ruleset_hash: &str) -> Result<Lookup> {
        let inner = self.lock();
        let found = match subject {
            Subject::Blob(d) => inner.blobs.get(d),
            Subject::Manifest(d) => inner.manifests.get(d),
            Subject::Repo(n) => inner.repos.get(n),
        };
        Ok(found.map_or(Lookup::Missing, |v| Lookup::of(v.clone(), ruleset_hash)))
    }

    fn put_verdict(&self, subject: Subject<'_>, verdict: &Verdict) -> Result<()> {
        let mut inner = self.lock();
        let v = verdict.clone();
        match subject {
            Subject::Blob(d) => inner.blobs.insert(d.clone(), v),
            Subject::Manifest(d) => inner.manifests.insert(d.clone(), v),
            Subject::Repo(n) => inner.repos.insert(n.clone(), v),
        };
        Ok(())
    }

    fn put_image(&self, manifest: &Digest, blobs: &ImageBlobs) -> Result<()> {
        let mut inner = self.lock();
        inner.unlink_image(manifest);
        for blob in blobs.all() {
            inner
                .blob_images
                .entry(blob.clone())
                .or_default()
                .insert(manifest.to_string(), manifest.clone());
        }
        inner.images.insert(manifest.clone(), blobs.clone());
        Ok(())
    }

    fn image_blobs(&self, manifest: &Digest) -> Result<Option<ImageBlobs>> {
        Ok(self.lock().images.get(manifest).cloned())
    }

    fn images_with_blob(&self, blob: &Digest) -> Result<Vec<Digest>> {
        Ok(self
            .lock()
            .blob_images
            .get(blob)
            .map(|set| set.values().cloned().collect())
            .unwrap_or_default())
    }

    fn add_override(&self, new: NewOverride) -> Result<Override> {
        new.validate().map_err(StoreError::InvalidOverride)?;
        let mut inner = self.lock();
        inner.last_override_id += 1;
        let o = Override::new(inner.last_override_id, new);
        inner.overrides.insert(o.id, o.clone());
        inner.refresh_overrides();
        Ok(o)
    }

    fn remove_override(&self, id: u64) -> Result<Override> {
        let mut inner = self.lock();
        let o = inner
            .overrides
            .remove(&id)
            .ok_or(StoreError::NoSuchOverride(id))?;
        inner.refresh_overrides();
        Ok(o)
    }

    fn prune_overrides(&self, now_unix: u64) -> Result<Vec<Override>> {
        let mut inner = self.lock();
        let expired: BTreeSet<u64> = inner.snapshot.expired(now_unix).map(|o| o.id).collect();
        let removed = expired
            .iter()
            .filter_map(|id| inner.overrides.remove(id))
            .collect();
        inner.refresh_overrides();
        Ok(removed)
    }

    fn overrides(&self) -> Result<Arc<OverrideSet>> {
        Ok(self.lock().snapshot.clone())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryStore;

    fn store() -> ((), MemoryStore) {
        ((), MemoryStore::new())
    }

    crate::store::conformance::suite!(store);
}
