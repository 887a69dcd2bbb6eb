//! Manifests on disk: by digest (immutable, kept), and the last digest each tag was seen at.
//!
//! Layout under the cache directory: `manifests/<algorithm>/<hex>` holds the media type on its
//! first line and the manifest's exact bytes after it; `tags/<host>/<repo>/@<tag>` holds a tag's
//! record as JSON. `@` cannot occur in a repository component, so a tag file never collides with
//! a nested repository's directory. Every file is written to a temp file and renamed, so a crash
//! leaves the old record or the new one.
//!
//! Manifests are small and few next to layers; they are not counted in the size limit.

use crate::oci::{Digest, RepoName, Tag};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct ManifestStore {
    root: PathBuf,
    seq: AtomicU64,
}

/// A cached manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub bytes: Bytes,
}

/// What a tag pointed at when it was last checked upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    pub digest: Digest,
    pub media_type: String,
    /// Unix seconds of the last time the upstream confirmed it.
    pub checked: u64,
}

impl TagRecord {
    /// Whether it was confirmed less than `ttl` ago.
    pub fn fresh(&self, ttl: Duration) -> bool {
        Duration::from_secs(unix_now().saturating_sub(self.checked)) < ttl
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ManifestStore {
    pub fn open(root: &Path) -> io::Result<ManifestStore> {
        std::fs::create_dir_all(root.join("manifests"))?;
        std::fs::create_dir_all(root.join("tags"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(ManifestStore {
            root: root.to_path_buf(),
            seq: AtomicU64::new(0),
        })
    }

    fn manifest_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("manifests")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn tag_path(&self, host: &str, repo: &RepoName, tag: &Tag) -> PathBuf {
        self.root
            .join("tags")
            .join(host)
            .join(repo.as_str())
            .join(format!("@{}", tag.as_str()))
    }

    /// A cached manifest, checked against its digest (a damaged file is a miss, not an answer).
    pub fn get(&self, digest: &Digest) -> Option<Manifest> {
        let raw = std::fs::read(self.manifest_path(digest)).ok()?;
        let split = raw.iter().position(|b| *b == b'\n')?;
        let media_type = std::str::from_utf8(&raw[..split]).ok()?.to_string();
        let bytes = Bytes::copy_from_slice(&raw[split + 1..]);
        if &Digest::compute(digest.algorithm(), &bytes) != digest {
            tracing::warn!(%digest, "a cached manifest does not match its digest: ignored");
            return None;
        }
        Some(Manifest { media_type, bytes })
    }

    pub fn put(&self, digest: &Digest, manifest: &Manifest) -> io::Result<()> {
        let path = self.manifest_path(digest);
        if path.exists() {
            return Ok(());
        }
        let mut content = Vec::with_capacity(manifest.media_type.len() + 1 + manifest.bytes.len());
        content.extend_from_slice(manifest.media_type.as_bytes());
        content.push(b'\n');
        content.extend_from_slice(&manifest.bytes);
        self.write_atomic(&path, &content)
    }

    pub fn tag(&self, host: &str, repo: &RepoName, tag: &Tag) -> Option<TagRecord> {
        let raw = std::fs::read(self.tag_path(host, repo, tag)).ok()?;
        serde_json::from_slice(&raw).ok()
    }

    pub fn put_tag(
        &self,
        host: &str,
        repo: &RepoName,
        tag: &Tag,
        record: &TagRecord,
    ) -> io::Result<()> {
        let content = serde_json::to_vec(record).map_err(io::Error::other)?;
        self.write_atomic(&self.tag_path(host, repo, tag), &content)
    }

    /// Forgets a tag the upstream says no longer exists.
    pub fn remove_tag(&self, host: &str, repo: &RepoName, tag: &Tag) {
        let _ = std::fs::remove_file(self.tag_path(host, repo, tag));
    }

    fn write_atomic(&self, path: &Path, content: &[u8]) -> io::Result<()> {
        let dir = path.parent().expect("cache paths have a parent");
        std::fs::create_dir_all(dir)?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .root
            .join("tmp")
            .join(format!("{}-m{seq}.part", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&temp)?;
            f.write_all(content)?;
            f.sync_all()?;
            std::fs::rename(&temp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    fn tag(s: &str) -> Tag {
        s.parse().unwrap()
    }

    #[test]
    fn manifests_round_trip_and_damage_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store = ManifestStore::open(dir.path()).unwrap();
        let bytes = Bytes::from_static(b"{\"schemaVersion\":2}");
        let digest = Digest::sha256_of(&bytes);
        let m = Manifest {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            bytes,
        };
        assert_eq!(store.get(&digest), None);
        store.put(&digest, &m).unwrap();
        assert_eq!(store.get(&digest), Some(m));
        std::fs::write(store.manifest_path(&digest), b"x\n{}").unwrap();
        assert_eq!(store.get(&digest), None);
    }

    #[test]
    fn tags_of_nested_repositories_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let store = ManifestStore::open(dir.path()).unwrap();
        let rec = |d: &[u8]| TagRecord {
            digest: Digest::sha256_of(d),
            media_type: "m".into(),
            checked: unix_now(),
        };
        // `a` tagged `b`, and the repository `a/b` tagged `c`.
        store
            .put_tag("h", &repo("a"), &tag("b"), &rec(b"1"))
            .unwrap();
        store
            .put_tag("h", &repo("a/b"), &tag("c"), &rec(b"2"))
            .unwrap();
        assert_eq!(store.tag("h", &repo("a"), &tag("b")), Some(rec(b"1")));
        assert_eq!(store.tag("h", &repo("a/b"), &tag("c")), Some(rec(b"2")));
        store.remove_tag("h", &repo("a"), &tag("b"));
        assert_eq!(store.tag("h", &repo("a"), &tag("b")), None);
    }

    #[test]
    fn freshness_follows_the_ttl() {
        let mut r = TagRecord {
            digest: Digest::sha256_of(b""),
            media_type: "m".into(),
            checked: unix_now(),
        };
        assert!(r.fresh(Duration::from_secs(60)));
        assert!(!r.fresh(Duration::ZERO), "a zero TTL always asks upstream");
        r.checked -= 120;
        assert!(!r.fresh(Duration::from_secs(60)));
    }
}
