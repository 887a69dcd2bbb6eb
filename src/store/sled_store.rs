//! The sled back-end: one sled database (by default `<data_dir>/verdicts`), one tree per kind of
//! record, values as JSON.
//!
//! | tree           | key                                  | value                                  |
//! |----------------|--------------------------------------|----------------------------------------|
//! | `meta`         | `format`                             | `1`, the layout version                |
//! | `meta`         | `last_override_id`                   | u64 big-endian: the last id given out  |
//! | `blob`         | `sha256:<hex>`                       | [`Verdict`]                            |
//! | `manifest`     | `sha256:<hex>`                       | [`Verdict`]                            |
//! | `repo`         | `docker.io/library/nginx`            | [`Verdict`]                            |
//! | `image_layers` | manifest digest                      | [`ImageBlobs`] (`{"config","layers"}`) |
//! | `layer_images` | `<blob digest>/<manifest digest>`    | empty: a scan by `<blob digest>/`      |
//! | `overrides`    | id, u64 big-endian (id order)        | [`Override`]                           |
//!
//! sled locks the database for one process: while `portcullis serve` runs, opening it elsewhere
//! fails with [`StoreError::Locked`].

use super::{
    ImageBlobs, Lookup, NewOverride, Override, OverrideSet, Result, StoreError, Subject,
    VerdictStore,
};
use crate::inspect::Verdict;
use crate::oci::Digest;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionResult, TransactionError, Transactional};
use sled::Tree;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// The layout version this code reads and writes.
const FORMAT: u32 = 1;
const FORMAT_KEY: &[u8] = b"format";
const LAST_ID_KEY: &[u8] = b"last_override_id";

pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    meta: Tree,
    blob: Tree,
    manifest: Tree,
    repo: Tree,
    image_layers: Tree,
    layer_images: Tree,
    overrides: Tree,
    /// The overrides as last loaded from their tree, or the entry that could not be read.
    snapshot: RwLock<std::result::Result<Arc<OverrideSet>, Unreadable>>,
    /// Serializes override writes, so ids and the snapshot follow the tree.
    override_writes: Mutex<()>,
}

#[derive(Debug, Clone)]
struct Unreadable {
    key: String,
    message: String,
}

impl Unreadable {
    fn error(&self) -> StoreError {
        StoreError::Corrupt {
            tree: "overrides",
            key: self.key.clone(),
            message: self.message.clone(),
        }
    }
}

impl SledStore {
    /// Opens (creating if needed) the database in the directory `path`, with a page cache of
    /// `cache_capacity_bytes`. Fails with [`StoreError::Locked`] while another process has it open,
    /// and with [`StoreError::Version`] if it was written in a layout this code does not know.
    pub fn open(path: &Path, cache_capacity_bytes: u64) -> Result<SledStore> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            .open()
            .map_err(|e| match &e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked {
                        path: path.to_path_buf(),
                    }
                }
                _ => StoreError::Sled(e),
            })?;
        let meta = db.open_tree("meta")?;
        match meta.get(FORMAT_KEY)? {
            None => {
                meta.insert(FORMAT_KEY, FORMAT.to_string().as_bytes())?;
            }
            Some(v) if v.as_ref() == FORMAT.to_string().as_bytes() => {}
            Some(v) => {
                return Err(StoreError::Version {
                    path: path.to_path_buf(),
                    found: String::from_utf8_lossy(&v).into_owned(),
                    expected: FORMAT,
                })
            }
        }
        let store = SledStore {
            path: path.to_path_buf(),
            meta,
            blob: db.open_tree("blob")?,
            manifest: db.open_tree("manifest")?,
            repo: db.open_tree("repo")?,
            image_layers: db.open_tree("image_layers")?,
            layer_images: db.open_tree("layer_images")?,
            overrides: db.open_tree("overrides")?,
            db,
            snapshot: RwLock::new(Ok(Arc::default())),
            override_writes: Mutex::new(()),
        };
        store.reload_overrides();
        match &*store.snapshot.read().unwrap_or_else(|e| e.into_inner()) {
            Ok(set) => {
                tracing::info!(path = %path.display(), overrides = set.len(), "verdict store open")
            }
            Err(u) => {
                tracing::warn!(path = %path.display(), error = %u.error(), "verdict store open; an override cannot be read: overrides fail until it is removed")
            }
        }
        Ok(store)
    }

    /// The directory the database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tree(&self, subject: Subject<'_>) -> (&Tree, &'static str, String) {
        match subject {
            Subject::Blob(d) => (&self.blob, "blob", d.to_string()),
            Subject::Manifest(d) => (&self.manifest, "manifest", d.to_string()),
            Subject::Repo(n) => (&self.repo, "repo", n.to_string()),
        }
    }

    fn reload_overrides(&self) {
        let loaded = self.load_overrides();
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = loaded;
    }

    fn load_overrides(&self) -> std::result::Result<Arc<OverrideSet>, Unreadable> {
        let mut entries = Vec::new();
        for item in self.overrides.iter() {
            let (k, v) = item.map_err(|e| Unreadable {
                key: String::new(),
                message: e.to_string(),
            })?;
            let key = id_of(&k).map_or_else(
                || String::from_utf8_lossy(&k).into_owned(),
                |id| id.to_string(),
            );
            let o: Override = decode(&v).map_err(|message| Unreadable {
                key: key.clone(),
                message,
            })?;
            if id_of(&k) != Some(o.id) {
                return Err(Unreadable {
                    key,
                    message: format!("holds override {}", o.id),
                });
            }
            entries.push(o);
        }
        Ok(Arc::new(OverrideSet::new(entries)))
    }

    fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.override_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

fn id_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("store records are plain structs with string keys")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

fn corrupt(tree: &'static str, key: impl Into<String>) -> impl FnOnce(String) -> StoreError {
    move |message| StoreError::Corrupt {
        tree,
        key: key.into(),
        message,
    }
}

fn reverse_key(blob: &Digest, manifest: &Digest) -> String {
    format!("{blob}/{manifest}")
}

fn storage_error(e: TransactionError<Infallible>) -> StoreError {
    match e {
        TransactionError::Abort(never) => match never {},
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

impl VerdictStore for SledStore {
    fn get_verdict(&self, subject: Subject<'_>, ruleset_hash: &str) -> Result<Lookup> {
        let (tree, name, key) = self.tree(subject);
        match tree.get(key.as_bytes())? {
            None => Ok(Lookup::Missing),
            Some(bytes) => {
                let verdict: Verdict = decode(&bytes).map_err(corrupt(name, key))?;
                Ok(Lookup::of(verdict, ruleset_hash))
            }
        }
    }

    fn put_verdict(&self, subject: Subject<'_>, verdict: &Verdict) -> Result<()> {
        let (tree, _, key) = self.tree(subject);
        tree.insert(key.as_bytes(), encode(verdict))?;
        Ok(())
    }

    fn put_image(&self, manifest: &Digest, blobs: &ImageBlobs) -> Result<()> {
        let key = manifest.to_string();
        let value = encode(blobs);
        (&self.image_layers, &self.layer_images)
            .transaction(
                |(images, blob_images)| -> ConflictableTransactionResult<(), Infallible> {
                    // A record that cannot be read is replaced; its reverse entries cannot be found.
                    if let Some(old) = images.get(key.as_bytes())? {
                        if let Ok(old) = decode::<ImageBlobs>(&old) {
                            for blob in old.all() {
                                blob_images.remove(reverse_key(blob, manifest).as_bytes())?;
                            }
                        }
                    }
                    images.insert(key.as_bytes(), value.as_slice())?;
                    for blob in blobs.all() {
                        blob_images.insert(reverse_key(blob, manifest).as_bytes(), &[][..])?;
                    }
                    Ok(())
                },
            )
            .map_err(storage_error)
    }

    fn image_blobs(&self, manifest: &Digest) -> Result<Option<ImageBlobs>> {
        let key = manifest.to_string();
        match self.image_layers.get(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode(&bytes).map_err(corrupt("image_layers", key))?)),
        }
    }

    fn images_with_blob(&self, blob: &Digest) -> Result<Vec<Digest>> {
        let prefix = format!("{blob}/");
        let mut out = Vec::new();
        for item in self.layer_images.scan_prefix(prefix.as_bytes()) {
            let (k, _) = item?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let manifest = key[prefix.len()..]
                .parse()
                .map_err(|e: crate::oci::DigestError| {
                    corrupt("layer_images", key.clone())(e.to_string())
                })?;
            out.push(manifest);
        }
        Ok(out)
    }

    fn add_override(&self, new: NewOverride) -> Result<Override> {
        new.validate().map_err(StoreError::InvalidOverride)?;
        let _w = self.write_lock();
        let last = match self.meta.get(LAST_ID_KEY)? {
            None => 0,
            Some(v) => {
                id_of(&v).ok_or_else(|| corrupt("meta", "last_override_id")("not a u64".into()))?
            }
        };
        let o = Override::new(last + 1, new);
        let value = encode(&o);
        (&self.meta, &self.overrides)
            .transaction(
                |(meta, overrides)| -> ConflictableTransactionResult<(), Infallible> {
                    meta.insert(LAST_ID_KEY, &o.id.to_be_bytes()[..])?;
                    overrides.insert(&o.id.to_be_bytes()[..], value.as_slice())?;
                    Ok(())
                },
            )
            .map_err(storage_error)?;
        self.db.flush()?;
        self.reload_overrides();
        Ok(o)
    }

    fn remove_override(&self, id: u64) -> Result<Override> {
        let _w = self.write_lock();
        let old = self
            .overrides
            .remove(id.to_be_bytes())?
            .ok_or(StoreError::NoSuchOverride(id))?;
        self.db.flush()?;
        self.reload_overrides();
        decode(&old).map_err(|e| {
            corrupt("overrides", id.to_string())(format!("{e} (the entry was removed)"))
        })
    }

    fn prune_overrides(&self, now_unix: u64) -> Result<Vec<Override>> {
        let _w = self.write_lock();
        let set = self.overrides()?;
        let expired: Vec<Override> = set.expired(now_unix).cloned().collect();
        if expired.is_empty() {
            return Ok(expired);
        }
        let mut batch = sled::Batch::default();
        for o in &expired {
            batch.remove(&o.id.to_be_bytes()[..]);
        }
        self.overrides.apply_batch(batch)?;
        self.db.flush()?;
        self.reload_overrides();
        Ok(expired)
    }

    fn overrides(&self) -> Result<Arc<OverrideSet>> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .map_err(|u| u.error())
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::Decision;
    use crate::store::{OverrideAction, OverrideTarget};

    const CACHE: u64 = 4 << 20;

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("verdicts"), CACHE).unwrap();
        (dir, store)
    }

    crate::store::conformance::suite!(store);

    /// Opens `path` again after a drop in this process. sled's background threads may hold the
    /// lock file a moment after the last handle is gone (another process sees it free only once
    /// this one exits, so this is a test-only wait).
    fn reopen(path: &Path) -> Result<SledStore> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match SledStore::open(path, CACHE) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn digest(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    fn deny(target: OverrideTarget) -> NewOverride {
        NewOverride {
            target,
            action: OverrideAction::Deny,
            reason: "test".into(),
            author: "me".into(),
            created_unix: 100,
            expires_unix: None,
        }
    }

    #[test]
    fn everything_survives_a_reopen() {
        let (dir, store) = store();
        let path = store.path().to_path_buf();
        let v = Verdict::new(Decision::Block, 9.5, vec![], "rules-1", 42);
        let repo = "docker.io/library/nginx".parse().unwrap();
        store.put_verdict(Subject::Blob(&digest("b")), &v).unwrap();
        store
            .put_verdict(Subject::Manifest(&digest("m")), &v)
            .unwrap();
        store.put_verdict(Subject::Repo(&repo), &v).unwrap();
        let blobs = ImageBlobs {
            config: digest("c"),
            layers: vec![digest("b")],
            runs: Vec::new(),
            rootfs: Vec::new(),
        };
        store.put_image(&digest("m"), &blobs).unwrap();
        let first = store
            .add_override(deny(OverrideTarget::Digest(digest("b"))))
            .unwrap();
        let second = store
            .add_override(deny(OverrideTarget::Digest(digest("c"))))
            .unwrap();
        store.remove_override(second.id).unwrap();
        drop(store);

        let store = reopen(&path).unwrap();
        let current = Lookup::Current(v.clone());
        assert_eq!(
            store
                .get_verdict(Subject::Blob(&digest("b")), "rules-1")
                .unwrap(),
            current
        );
        assert_eq!(
            store
                .get_verdict(Subject::Manifest(&digest("m")), "rules-1")
                .unwrap(),
            current
        );
        assert_eq!(
            store.get_verdict(Subject::Repo(&repo), "rules-1").unwrap(),
            current
        );
        assert_eq!(store.image_blobs(&digest("m")).unwrap(), Some(blobs));
        assert_eq!(
            store.images_with_blob(&digest("b")).unwrap(),
            vec![digest("m")]
        );
        assert_eq!(store.list_overrides().unwrap(), vec![first]);
        // Ids keep growing across a reopen, past the removed one.
        let third = store
            .add_override(deny(OverrideTarget::Digest(digest("d"))))
            .unwrap();
        assert_eq!(third.id, second.id + 1);
        drop(dir);
    }

    #[test]
    fn a_second_open_is_refused_as_locked() {
        let (_dir, store) = store();
        let err = SledStore::open(store.path(), CACHE)
            .err()
            .expect("second open must fail");
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("portcullis serve"), "{err}");
    }

    #[test]
    fn corrupt_values_are_errors_not_panics() {
        let (_dir, store) = store();
        let d = digest("x");
        let repo = "docker.io/a/b".parse().unwrap();
        store.blob.insert(d.to_string(), &b"{not json"[..]).unwrap();
        store
            .manifest
            .insert(d.to_string(), &b"\xff\xfe"[..])
            .unwrap();
        store
            .repo
            .insert("docker.io/a/b", &br#"{"decision":"maybe"}"#[..])
            .unwrap();
        store
            .image_layers
            .insert(d.to_string(), &b"[]"[..])
            .unwrap();
        store
            .layer_images
            .insert(format!("{d}/sha256:nope"), &[][..])
            .unwrap();
        for (result, tree) in [
            (
                store.get_verdict(Subject::Blob(&d), "h").map(|_| ()),
                "blob",
            ),
            (
                store.get_verdict(Subject::Manifest(&d), "h").map(|_| ()),
                "manifest",
            ),
            (
                store.get_verdict(Subject::Repo(&repo), "h").map(|_| ()),
                "repo",
            ),
            (store.image_blobs(&d).map(|_| ()), "image_layers"),
            (store.images_with_blob(&d).map(|_| ()), "layer_images"),
        ] {
            match result {
                Err(StoreError::Corrupt { tree: t, .. }) => assert_eq!(t, tree),
                other => panic!("{tree}: expected a corrupt-entry error, got {other:?}"),
            }
        }
        // A corrupt image record is replaced by a good one.
        let blobs = ImageBlobs {
            config: digest("c"),
            layers: vec![],
            runs: Vec::new(),
            rootfs: Vec::new(),
        };
        store.put_image(&d, &blobs).unwrap();
        assert_eq!(store.image_blobs(&d).unwrap(), Some(blobs));
    }

    #[test]
    fn an_unreadable_override_fails_closed_until_removed() {
        let (_dir, store) = store();
        let good = store
            .add_override(deny(OverrideTarget::Digest(digest("a"))))
            .unwrap();
        store
            .overrides
            .insert(7u64.to_be_bytes(), &br#"{"id":7,"target":{"tag":"x"}}"#[..])
            .unwrap();
        let path = store.path().to_path_buf();
        drop(store);

        // The store opens, but no override decision is made while one cannot be read: a deny
        // silently skipped would let an image through.
        let store = reopen(&path).unwrap();
        let repo = "docker.io/a/b".parse().unwrap();
        let err = store.override_for(&repo, None, 200).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { tree: "overrides", ref key, .. } if key == "7"),
            "{err}"
        );
        assert!(store.list_overrides().is_err());
        let err = store.remove_override(7).unwrap_err();
        assert!(err.to_string().contains("removed"), "{err}");
        assert_eq!(store.list_overrides().unwrap(), vec![good]);
    }

    #[test]
    fn an_unknown_layout_version_is_refused() {
        let (_dir, store) = store();
        store.meta.insert(FORMAT_KEY, &b"99"[..]).unwrap();
        let path = store.path().to_path_buf();
        drop(store);
        let err = reopen(&path).err().expect("must refuse");
        assert!(
            matches!(err, StoreError::Version { ref found, .. } if found == "99"),
            "{err}"
        );
    }
}
