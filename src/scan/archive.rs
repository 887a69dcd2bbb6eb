//! `docker save` archives: a tar of `manifest.json` (`Config`, `RepoTags`, `Layers`), the config
//! and the layer tars (plain or gzip, under `<id>/layer.tar` or `blobs/sha256/<hex>`, possibly as
//! symlinks to one another), or an OCI layout in a tar as newer docker versions and
//! `oci-archive:` write it.
//!
//! The archive is indexed once (names and data offsets, seeking past the data), then each file is
//! read straight from its offset: nothing is unpacked, and `manifest.json` may come last.

use super::layout::{self, read_small, Blobs};
use super::{
    config_platform, read_config, LayerSource, LocalImage, Platforms, Result, ScanError,
    MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES,
};
use crate::oci::Digest;
use serde::Deserialize;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Link hops followed before a link is taken to be a loop.
const MAX_LINK_HOPS: usize = 16;

#[derive(Debug, Clone)]
enum Entry {
    File {
        offset: u64,
        size: u64,
    },
    /// Target as written (relative to the link's directory unless absolute).
    Symlink(String),
    /// Target as an archive path.
    Hardlink(String),
}

/// The files of a tar archive on disk, by normalized path.
pub struct TarBlobs {
    file: PathBuf,
    entries: HashMap<String, Entry>,
}

impl TarBlobs {
    /// Indexes the archive at `file`.
    pub fn open(file: &Path) -> Result<TarBlobs> {
        let io = |e| ScanError::io(file, e);
        let mut f = std::fs::File::open(file).map_err(io)?;
        let mut magic = [0u8; 4];
        let n = f.read(&mut magic).map_err(io)?;
        if n >= 2 && magic[..2] == [0x1f, 0x8b] || n >= 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(ScanError::Input(format!(
                "{}: a compressed archive; decompress it first (docker save writes plain tar)",
                file.display()
            )));
        }
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut archive = tar::Archive::new(f);
        let mut entries = HashMap::new();
        // The tar crate quotes the bytes it choked on: cut them to something printable.
        let bad = |e: std::io::Error| {
            ScanError::Input(format!(
                "{}: not a readable tar archive: {}",
                file.display(),
                crate::inspect::cut(&e.to_string())
            ))
        };
        for entry in archive.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let raw = entry.path().map_err(bad)?.to_string_lossy().into_owned();
            let Some(path) = normalize(&raw) else {
                continue;
            };
            let kind = entry.header().entry_type();
            let link = || -> Result<String> {
                Ok(entry
                    .link_name()
                    .map_err(bad)?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default())
            };
            let e = match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => Entry::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink => Entry::Symlink(link()?),
                tar::EntryType::Link => Entry::Hardlink(link()?),
                _ => continue,
            };
            entries.insert(path, e);
        }
        Ok(TarBlobs {
            file: file.to_path_buf(),
            entries,
        })
    }

    /// The data of `path` (links followed): offset and size in the archive.
    fn locate(&self, path: &str) -> Result<(u64, u64)> {
        let missing = || ScanError::Input(format!("{path}: not in the archive"));
        let mut at = normalize(path).ok_or_else(missing)?;
        for _ in 0..MAX_LINK_HOPS {
            match self.entries.get(&at).ok_or_else(missing)? {
                Entry::File { offset, size } => return Ok((*offset, *size)),
                Entry::Hardlink(target) => at = normalize(target).ok_or_else(missing)?,
                Entry::Symlink(target) => {
                    let joined = match target.strip_prefix('/') {
                        Some(abs) => abs.to_string(),
                        None => match at.rsplit_once('/') {
                            Some((dir, _)) => format!("{dir}/{target}"),
                            None => target.clone(),
                        },
                    };
                    at = normalize(&joined).ok_or_else(missing)?;
                }
            }
        }
        Err(ScanError::Input(format!("{path}: too many links")))
    }
}

impl Blobs for TarBlobs {
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>> {
        let (offset, size) = self.locate(path)?;
        let io = |e| ScanError::io(&self.file, e);
        let mut f = std::fs::File::open(&self.file).map_err(io)?;
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        Ok(Box::new(
            std::io::BufReader::with_capacity(1 << 16, f).take(size),
        ))
    }

    fn exists(&self, path: &str) -> bool {
        self.locate(path).is_ok()
    }
}

/// An archive path with `.`, empty and leading-`/` parts removed and `..` applied; `None` when
/// it climbs out of the archive.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// One image of `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// `name:tag` in the short form docker prints (`nginx:latest` for `docker.io/library/nginx`).
fn familiar(reference: &str) -> String {
    let r = reference.strip_prefix("docker.io/").unwrap_or(reference);
    let r = r.strip_prefix("library/").unwrap_or(r);
    let last = r.rfind('/').map_or(0, |i| i + 1);
    if r[last..].contains(':') || r.contains('@') {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}

/// The digest a `docker save` path is named by, if it is one: `blobs/<alg>/<hex>`, or the legacy
/// `<hex>.json` config (named by the image id, the config's sha256).
fn named_digest(path: &str) -> Option<Digest> {
    if let Some(rest) = path.strip_prefix("blobs/") {
        let (alg, hex) = rest.split_once('/')?;
        return format!("{alg}:{hex}").parse().ok();
    }
    let hex = path.strip_suffix(".json")?;
    format!("sha256:{hex}").parse().ok()
}

/// The images of an archive to scan: the `manifest.json` entry `reference` names (a `RepoTags`
/// entry), or its only image; an archive without `manifest.json` is read as an OCI layout.
pub fn images(
    archive: &TarBlobs,
    reference: Option<&str>,
    platforms: &Platforms,
) -> Result<Vec<LocalImage>> {
    if !archive.exists("manifest.json") {
        if archive.exists("index.json") {
            return layout::images(archive, reference, platforms);
        }
        return Err(ScanError::Input(format!(
            "{}: not a docker save archive (no manifest.json) nor an OCI layout (no index.json)",
            archive.file.display()
        )));
    }
    let bytes = read_small(archive, "manifest.json", MAX_MANIFEST_BYTES)?;
    // `docker load` reads it with Go's encoding/json too.
    crate::oci::json::check(&bytes, &crate::oci::json::SAVED_MANIFEST).map_err(|e| {
        ScanError::Input(format!(
            "manifest.json: Go clients would read it differently: {e}"
        ))
    })?;
    let saved: Vec<SavedImage> = serde_json::from_slice(&bytes)
        .map_err(|e| ScanError::Input(format!("manifest.json: {e}")))?;
    let tags = || {
        let t: Vec<&str> = saved
            .iter()
            .flat_map(|s| s.repo_tags.iter().flatten())
            .map(String::as_str)
            .collect();
        if t.is_empty() {
            "none".to_string()
        } else {
            t.join(", ")
        }
    };
    let image = match reference {
        Some(r) => saved
            .iter()
            .find(|s| {
                s.repo_tags
                    .iter()
                    .flatten()
                    .any(|t| t == r || familiar(t) == familiar(r))
            })
            .ok_or_else(|| {
                ScanError::Input(format!("no image {r:?} in the archive (tags: {})", tags()))
            })?,
        None => match saved.as_slice() {
            [one] => one,
            [] => return Err(ScanError::Input("manifest.json lists no image".into())),
            more => {
                return Err(ScanError::Usage(format!(
                "the archive holds {} images; name one as docker-archive:FILE:REPO:TAG (tags: {})",
                more.len(),
                tags()
            )))
            }
        },
    };
    let config = read_small(archive, &image.config, MAX_CONFIG_BYTES)?;
    read_config(&image.config, &config)?;
    let config_digest = match named_digest(&image.config) {
        Some(expected) => {
            let got = Digest::compute(expected.algorithm(), &config);
            if got != expected {
                return Err(ScanError::Digest {
                    what: format!("config {}", image.config),
                    expected,
                    got,
                });
            }
            expected
        }
        None => Digest::sha256_of(&config),
    };
    let layers = image
        .layers
        .iter()
        .map(|path| LayerSource {
            path: path.clone(),
            // The layer tar says itself whether it is compressed.
            media_type: String::new(),
            digest: path
                .starts_with("blobs/")
                .then(|| named_digest(path))
                .flatten(),
            size: None,
        })
        .collect();
    Ok(vec![LocalImage {
        manifest: None,
        config_digest: Some(config_digest),
        platform: config_platform(&config),
        config: Some(config),
        layers,
    }])
}
