//! The disk cache: verified blobs by digest within a size limit, manifests by digest, the last
//! digest of each tag, and the single-flight fills that feed it. See `docs/DESIGN.md` ("Cache").

pub mod blobs;
pub mod fill;
pub mod manifests;

pub use blobs::{BlobStore, CachedBlob};
pub use fill::{Fill, FillKey, FillSpec, Fills, Joined, Reader};
pub use manifests::{Manifest, ManifestStore, TagRecord};

use crate::config::CacheConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct Cache {
    pub blobs: Arc<BlobStore>,
    pub manifests: ManifestStore,
    /// How long a tag's digest is trusted before the upstream is asked again.
    pub tag_ttl: Duration,
}

impl Cache {
    /// Opens the cache at `dir`, sweeping what a crash left behind.
    pub fn open(config: &CacheConfig, dir: PathBuf) -> std::io::Result<Cache> {
        let (blobs, removed) = BlobStore::open(&dir, config.max_size.0)?;
        let manifests = ManifestStore::open(&dir)?;
        tracing::info!(
            dir = %dir.display(),
            removed,
            blobs_bytes = blobs.total(),
            max_size = config.max_size.0,
            "cache swept"
        );
        Ok(Cache {
            blobs,
            manifests,
            tag_ttl: config.tag_ttl.0,
        })
    }
}
