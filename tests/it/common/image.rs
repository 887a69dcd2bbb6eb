//! Fixture images built by test code: tar layers (plain, gzip, zstd), a config, a manifest, and
//! multi-platform indexes, written as an OCI layout that skopeo can push.

use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    /// Gzip by the system's `gzip -6`, which, like the Go encoder that docker and buildkit use,
    /// writes incompressible stretches as stored blocks (flate2's fast level Huffman-codes them,
    /// which makes them two to three times as slow to inflate as in real images).
    GzipCommand,
    Zstd,
}

impl Compression {
    fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip | Compression::GzipCommand => {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            }
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// One layer: files with their modes, compressed one way.
#[derive(Clone)]
pub struct Layer {
    files: Vec<(String, Vec<u8>, u32)>,
    compression: Compression,
}

impl Layer {
    pub fn new(compression: Compression) -> Layer {
        Layer {
            files: Vec::new(),
            compression,
        }
    }

    /// A regular file, mode 0644.
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Layer {
        self.files.push((path.to_string(), content.into(), 0o644));
        self
    }

    /// An executable file, mode 0755.
    pub fn exec(mut self, path: &str, content: impl Into<Vec<u8>>) -> Layer {
        self.files.push((path.to_string(), content.into(), 0o755));
        self
    }

    /// A file of `size` pseudo-random (incompressible) bytes, deterministic per `seed`.
    pub fn random_file(self, path: &str, size: usize, seed: u64) -> Layer {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut data = Vec::with_capacity(size);
        while data.len() < size {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.truncate(size);
        self.file(path, data)
    }

    /// The uncompressed tar.
    pub fn tar(&self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content, mode) in &self.files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(*mode);
            h.set_mtime(1_700_000_000);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, content.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// The blob as pushed: the tar, compressed.
    pub fn blob(&self) -> (Vec<u8>, Vec<u8>) {
        let tar = self.tar();
        let blob = match self.compression {
            Compression::None => tar.clone(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&tar).unwrap();
                e.finish().unwrap()
            }
            Compression::GzipCommand => {
                let mut gzip = std::process::Command::new("gzip")
                    .args(["-6", "-n", "-c"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("gzip runs");
                let mut stdin = gzip.stdin.take().unwrap();
                let input = tar.clone();
                let feed = std::thread::spawn(move || stdin.write_all(&input).unwrap());
                let out = gzip.wait_with_output().unwrap();
                feed.join().unwrap();
                assert!(out.status.success(), "gzip failed");
                out.stdout
            }
            Compression::Zstd => zstd::encode_all(tar.as_slice(), 3).unwrap(),
        };
        (tar, blob)
    }
}

#[derive(Clone, Debug)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

impl Platform {
    pub fn new(os: &str, arch: &str) -> Platform {
        Platform {
            os: os.into(),
            arch: arch.into(),
        }
    }
}

/// An image: layers plus the config fields a test cares about.
#[derive(Clone)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub platform: Platform,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: Value,
    pub history: Vec<Value>,
}

/// What writing an image produced.
#[derive(Clone, Debug)]
pub struct Written {
    pub manifest_digest: String,
    pub manifest: Vec<u8>,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
    pub size: u64,
}

impl Default for Image {
    fn default() -> Self {
        Image::new()
    }
}

impl Image {
    pub fn new() -> Image {
        Image {
            layers: Vec::new(),
            platform: Platform::new("linux", "amd64"),
            entrypoint: None,
            cmd: Some(vec!["/bin/sh".into()]),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            labels: json!({}),
            history: Vec::new(),
        }
    }

    pub fn layer(mut self, l: Layer) -> Image {
        self.layers.push(l);
        self
    }

    pub fn platform(mut self, os: &str, arch: &str) -> Image {
        self.platform = Platform::new(os, arch);
        self
    }

    pub fn entrypoint(mut self, e: &[&str]) -> Image {
        self.entrypoint = Some(e.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn env(mut self, e: &str) -> Image {
        self.env.push(e.into());
        self
    }

    /// Writes the image's blobs and manifest into `layout` (created if needed); tags it when `tag`
    /// is given (an index's children go untagged).
    pub fn write(&self, layout: &Path, tag: Option<&str>) -> Written {
        init_layout(layout);
        let mut diff_ids = Vec::new();
        let mut layer_descs = Vec::new();
        let mut layer_digests = Vec::new();
        let mut size = 0u64;
        for l in &self.layers {
            let (tar, blob) = l.blob();
            diff_ids.push(super::sha256(&tar));
            let d = put_blob(layout, &blob);
            size += blob.len() as u64;
            layer_descs.push(
                json!({"mediaType": l.compression.media_type(), "digest": d, "size": blob.len()}),
            );
            layer_digests.push(d);
        }
        let mut history = self.history.clone();
        if history.is_empty() {
            history = self
                .layers
                .iter()
                .map(|_| json!({"created_by": "portcullis fixture"}))
                .collect();
        }
        let config = json!({
            "architecture": self.platform.arch,
            "os": self.platform.os,
            "config": {
                "Entrypoint": self.entrypoint,
                "Cmd": self.cmd,
                "Env": self.env,
                "Labels": self.labels,
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        });
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let config_digest = put_blob(layout, &config_bytes);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
            "layers": layer_descs,
        });
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let manifest_digest = put_blob(layout, &manifest);
        if let Some(tag) = tag {
            add_to_index(
                layout,
                json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}),
            );
        }
        Written {
            manifest_digest,
            manifest,
            config_digest,
            layer_digests,
            size: size + config_bytes.len() as u64,
        }
    }
}

/// Writes a multi-platform OCI index of `images` into `layout` under `tag`; returns its digest and
/// the children as written.
pub fn write_index(layout: &Path, tag: &str, images: &[Image]) -> (String, Vec<Written>) {
    let children: Vec<Written> = images.iter().map(|i| i.write(layout, None)).collect();
    let manifests: Vec<Value> = images
        .iter()
        .zip(&children)
        .map(|(i, w)| {
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": w.manifest_digest, "size": w.manifest.len(),
                   "platform": {"os": i.platform.os, "architecture": i.platform.arch}})
        })
        .collect();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let digest = put_blob(layout, &index);
    add_to_index(
        layout,
        json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": index.len(),
               "annotations": {"org.opencontainers.image.ref.name": tag}}),
    );
    (digest, children)
}

fn init_layout(layout: &Path) {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let marker = layout.join("oci-layout");
    if !marker.exists() {
        std::fs::write(marker, r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        std::fs::write(
            layout.join("index.json"),
            r#"{"schemaVersion":2,"manifests":[]}"#,
        )
        .unwrap();
    }
}

fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let d = super::sha256(bytes);
    std::fs::write(layout.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
    d
}

fn add_to_index(layout: &Path, desc: Value) {
    let path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    index["manifests"].as_array_mut().unwrap().push(desc);
    std::fs::write(path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A multi-layer image: gzip layers (one of them 300 kB of noise), a zstd layer, an uncompressed
/// layer and an empty one.
pub fn mixed_image() -> Image {
    Image::new()
        .layer(
            Layer::new(Compression::Gzip)
                .file("etc/os-release", "ID=fixture\n")
                .exec("bin/tool", "#!/bin/sh\necho tool\n"),
        )
        .layer(Layer::new(Compression::Gzip).random_file("opt/data.bin", 300_000, 1))
        .layer(Layer::new(Compression::Zstd).file("usr/share/doc/readme", "zstd layer\n"))
        .layer(Layer::new(Compression::None).file("srv/plain.txt", "uncompressed layer\n"))
        .layer(Layer::new(Compression::Gzip))
}

/// An upstream registry holding the mixed image as `library/mixed:v1` and `someuser/app:v1`, and
/// an amd64 + arm64 index as `library/multi:v1`; the OCI layout they were pushed from.
pub struct MixedUpstream {
    pub upstream: super::Registry,
    pub layout: tempfile::TempDir,
    pub mixed: Written,
    pub index_digest: String,
    /// amd64, arm64.
    pub children: Vec<Written>,
}

pub fn mixed_upstream() -> MixedUpstream {
    let upstream = super::Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let mixed = mixed_image().write(layout.path(), Some("mixed"));
    let (index_digest, children) = write_index(
        layout.path(),
        "multi",
        &[
            Image::new().layer(Layer::new(Compression::Gzip).file("arch", "amd64\n")),
            Image::new()
                .platform("linux", "arm64")
                .layer(Layer::new(Compression::Gzip).file("arch", "arm64\n")),
        ],
    );
    upstream.push(layout.path(), "mixed", "library/mixed", "v1");
    upstream.push(layout.path(), "mixed", "someuser/app", "v1");
    upstream.push(layout.path(), "multi", "library/multi", "v1");
    MixedUpstream {
        upstream,
        layout,
        mixed,
        index_digest,
        children,
    }
}
