//! OCI image layouts (`index.json`, `oci-layout`, `blobs/<alg>/<hex>`), in a directory or inside a
//! tar archive: which images a tag names, their manifests and configs (read whole, verified), and
//! where their layers are (read later, streamed).

use super::{
    read_config, select_platforms, LayerSource, LocalImage, Platforms, Result, ScanError,
    IMAGE_CONFIG_TYPES, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES,
};
use crate::oci::{Descriptor, Digest, ImageIndex, Manifest};
use crate::proxy::MAX_INDEX_DEPTH;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The annotation an OCI layout tags an image with.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and `docker save` add with the full name (`docker.io/library/x:1`).
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Where a local image's files are: a directory, or a tar archive's entries. Paths are relative
/// and `/`-separated, as a layout or `manifest.json` writes them.
pub trait Blobs {
    /// Opens a file for reading from its start.
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>>;
    /// Whether the file exists.
    fn exists(&self, path: &str) -> bool;
}

/// Reads all of `path`, refusing a file longer than `cap`.
pub fn read_small(blobs: &dyn Blobs, path: &str, cap: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    blobs
        .open(path)?
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ScanError::io(path, e))?;
    if out.len() > cap {
        return Err(ScanError::Input(format!("{path}: larger than {cap} bytes")));
    }
    Ok(out)
}

/// A layout (or any tree of files) in a directory.
pub struct DirBlobs {
    root: PathBuf,
}

impl DirBlobs {
    pub fn new(root: &Path) -> DirBlobs {
        DirBlobs {
            root: root.to_path_buf(),
        }
    }

    /// `path` under the root; `None` when it would leave it.
    fn resolve(&self, path: &str) -> Option<PathBuf> {
        let rel = Path::new(path);
        let inside = rel.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        inside.then(|| self.root.join(rel))
    }
}

impl Blobs for DirBlobs {
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>> {
        let full = self
            .resolve(path)
            .ok_or_else(|| ScanError::Input(format!("{path}: leaves {}", self.root.display())))?;
        let f = std::fs::File::open(&full).map_err(|e| ScanError::io(&full, e))?;
        Ok(Box::new(f))
    }

    fn exists(&self, path: &str) -> bool {
        self.resolve(path).is_some_and(|p| p.is_file())
    }
}

/// The path of a blob in a layout.
pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
}

/// Reads a blob whole and checks it against its digest.
pub fn read_blob(blobs: &dyn Blobs, digest: &Digest, cap: usize) -> Result<Vec<u8>> {
    let bytes = read_small(blobs, &blob_path(digest), cap)?;
    let got = Digest::compute(digest.algorithm(), &bytes);
    if &got != digest {
        return Err(ScanError::Digest {
            what: "blob".into(),
            expected: digest.clone(),
            got,
        });
    }
    Ok(bytes)
}

/// The images of a layout to scan: those `tag` names (by `org.opencontainers.image.ref.name`, or
/// containerd's full image name), or when no tag is given the only image, or the platforms of
/// `index.json` itself; an index among them is narrowed to `platforms`.
pub fn images(
    blobs: &dyn Blobs,
    tag: Option<&str>,
    platforms: &Platforms,
) -> Result<Vec<LocalImage>> {
    if !blobs.exists("index.json") {
        return Err(ScanError::Input(
            "not an OCI layout: there is no index.json".into(),
        ));
    }
    let index_bytes = read_small(blobs, "index.json", MAX_MANIFEST_BYTES)?;
    let index = ImageIndex::parse_layout(&index_bytes)
        .map_err(|e| ScanError::Input(format!("index.json: {e}")))?;
    let tags = || {
        let t: Vec<&str> = index
            .manifests
            .iter()
            .filter_map(|m| m.annotation(REF_NAME))
            .collect();
        if t.is_empty() {
            "none".to_string()
        } else {
            t.join(", ")
        }
    };
    let chosen: Vec<&Descriptor> = match tag {
        Some(tag) => {
            let m = index
                .manifests
                .iter()
                .find(|m| {
                    m.annotation(REF_NAME) == Some(tag)
                        || m.annotation(CONTAINERD_NAME) == Some(tag)
                })
                .ok_or_else(|| {
                    ScanError::Input(format!(
                        "no image tagged {tag:?} in the layout (tags: {})",
                        tags()
                    ))
                })?;
            vec![m]
        }
        None if index.manifests.is_empty() => {
            return Err(ScanError::Input("the layout holds no image".into()))
        }
        None if index.manifests.len() == 1 => vec![&index.manifests[0]],
        None => {
            // Several entries: platforms of one image (index.json used as the index), or several
            // images, which need a tag to choose.
            let all_platforms = index.manifests.iter().all(|m| m.platform().is_some());
            let names: std::collections::BTreeSet<&str> = index
                .manifests
                .iter()
                .filter_map(|m| m.annotation(REF_NAME))
                .collect();
            if !all_platforms || names.len() > 1 {
                return Err(ScanError::Usage(format!(
                    "the layout holds {} images; name one as oci:DIR:TAG (tags: {})",
                    index.manifests.len(),
                    tags()
                )));
            }
            select_platforms(&index.manifests, platforms)?
        }
    };
    let mut out = Vec::new();
    for d in chosen {
        resolve(blobs, d, platforms, &mut out, 0)?;
    }
    Ok(out)
}

/// Reads the manifest `d` names, as the kind its descriptor says (as the clients do): an image is
/// added to `out`, an index (the `depth`-th one on the way, nested ones included up to
/// [`MAX_INDEX_DEPTH`]) is narrowed to `platforms` and each of its entries read.
fn resolve(
    blobs: &dyn Blobs,
    d: &Descriptor,
    platforms: &Platforms,
    out: &mut Vec<LocalImage>,
    depth: usize,
) -> Result<()> {
    let digest = &d.digest;
    let bytes = read_blob(blobs, digest, MAX_MANIFEST_BYTES)?;
    let doc = Manifest::parse(d.media_type(), &bytes)
        .map_err(|e| ScanError::Input(format!("manifest {digest}: {e}")))?;
    let image = match doc {
        Manifest::Index(_) if depth >= MAX_INDEX_DEPTH => {
            return Err(ScanError::Input(format!(
                "index {digest}: indexes nest more than {MAX_INDEX_DEPTH} deep"
            )))
        }
        Manifest::Index(index) => {
            for child in select_platforms(&index.manifests, platforms)? {
                resolve(blobs, child, platforms, out, depth + 1)?;
            }
            return Ok(());
        }
        Manifest::Image(image) => image,
    };
    let config = &image.config;
    let config_bytes = if IMAGE_CONFIG_TYPES.contains(&config.media_type()) {
        let bytes = read_blob(blobs, &config.digest, MAX_CONFIG_BYTES)?;
        read_config(&format!("manifest {digest}"), &bytes)?;
        Some(bytes)
    } else {
        None
    };
    let layers = image
        .layers
        .iter()
        .map(|l| LayerSource {
            path: blob_path(&l.digest),
            media_type: l.media_type().to_string(),
            digest: Some(l.digest.clone()),
            size: Some(l.size()),
        })
        .collect();
    out.push(LocalImage {
        manifest: Some(digest.clone()),
        config_digest: Some(config.digest.clone()),
        config: config_bytes,
        platform: d.platform_name(),
        layers,
    });
    Ok(())
}
