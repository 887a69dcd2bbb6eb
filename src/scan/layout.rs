//! OCI image layouts (`index.json`, `oci-layout`, `blobs/<alg>/<hex>`), in a directory or inside a
//! tar archive: which images a tag names, their manifests and configs (read whole, verified), and
//! where their layers are (read later, streamed).

use super::{
    select_platforms, LayerSource, LocalImage, Platforms, Result, ScanError, IMAGE_CONFIG_TYPES,
    MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES,
};
use crate::oci::media::{Descriptor, ManifestDoc};
use crate::oci::Digest;
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

fn parse_digest(d: &Descriptor, what: &str) -> Result<Digest> {
    d.digest
        .parse()
        .map_err(|e| ScanError::Input(format!("{what} lists a bad digest: {e}")))
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
    let index: ManifestDoc = serde_json::from_slice(&index_bytes)
        .map_err(|e| ScanError::Input(format!("index.json: {e}")))?;
    let tags = || {
        let t: Vec<&str> = index
            .manifests
            .iter()
            .filter_map(|m| m.annotations.get(REF_NAME).map(String::as_str))
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
                    m.annotations.get(REF_NAME).map(String::as_str) == Some(tag)
                        || m.annotations.get(CONTAINERD_NAME).map(String::as_str) == Some(tag)
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
            let all_platforms = index.manifests.iter().all(|m| m.platform.is_some());
            let names: std::collections::BTreeSet<&str> = index
                .manifests
                .iter()
                .filter_map(|m| m.annotations.get(REF_NAME).map(String::as_str))
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

/// Reads the manifest `d` names: an image is added to `out`, an index is narrowed to
/// `platforms` and each of its images read.
fn resolve(
    blobs: &dyn Blobs,
    d: &Descriptor,
    platforms: &Platforms,
    out: &mut Vec<LocalImage>,
    depth: usize,
) -> Result<()> {
    let digest = parse_digest(d, "the index")?;
    let bytes = read_blob(blobs, &digest, MAX_MANIFEST_BYTES)?;
    let doc = ManifestDoc::parse(&bytes).ok_or_else(|| {
        ScanError::Input(format!("manifest {digest}: not a manifest or an index"))
    })?;
    if doc.is_index() {
        if depth > 0 {
            return Err(ScanError::Input(format!(
                "index {digest} lists another index: nested indexes are not scanned"
            )));
        }
        for child in select_platforms(&doc.manifests, platforms)? {
            resolve(blobs, child, platforms, out, depth + 1)?;
        }
        return Ok(());
    }
    let Some(config) = &doc.config else {
        return Err(ScanError::Input(format!(
            "manifest {digest}: no config (a schema 1 manifest?)"
        )));
    };
    let config_digest = parse_digest(config, "the manifest")?;
    let config_bytes = if IMAGE_CONFIG_TYPES.contains(&config.media_type.as_str()) {
        Some(read_blob(blobs, &config_digest, MAX_CONFIG_BYTES)?)
    } else {
        None
    };
    let layers = doc
        .layers
        .iter()
        .map(|l| {
            let ld = parse_digest(l, "the manifest")?;
            Ok(LayerSource {
                path: blob_path(&ld),
                media_type: l.media_type.clone(),
                digest: Some(ld),
                // A descriptor without a size deserializes as 0; no real layer is empty.
                size: (l.size > 0).then_some(l.size),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    out.push(LocalImage {
        manifest: Some(digest),
        config_digest: Some(config_digest),
        config: config_bytes,
        platform: super::descriptor_platform(d),
        layers,
    });
    Ok(())
}
