//! Differential test of how documents are read, with Go as the oracle: `tests/go/jsondecode` decodes
//! each document with `encoding/json` into the image-spec's structs (what dockerd, containerd and
//! skopeo do), portcullis parses it with `oci::document`. For every document, portcullis must either
//! refuse it, or read every field it judges exactly as Go did. Guards against a document that the
//! clients read one way and portcullis another (a `"Config"` key, a key given twice with the
//! malicious value last, invalid UTF-8…): that would be a bypass.
//!
//! The documents: hand-written cases, then a few thousand seeded mutations of real-looking
//! manifests, indexes and configs. The test also parses each document the way portcullis would
//! without its Go-compatibility check (serde and oci-spec alone) and requires that to disagree
//! with Go on some of them: the oracle has teeth.

use base64::Engine as _;
use oci_spec::image as spec;
use portcullis::oci::media::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use portcullis::oci::{Descriptor, ImageConfig, Manifest};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
const MINER: &str = "sha256:bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Manifest(&'static str),
    Index(&'static str),
    Config,
}

impl Kind {
    fn oracle_name(self) -> &'static str {
        match self {
            Kind::Manifest(_) => "manifest",
            Kind::Index(_) => "index",
            Kind::Config => "config",
        }
    }
}

/// The Go oracle, built with the Debian toolchain into a temp dir (no network, no modules).
struct Oracle {
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl Oracle {
    fn build() -> Oracle {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/jsondecode");
        let bin = dir.path().join("jsondecode");
        let out = Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&bin)
            .arg(".")
            .current_dir(&src)
            .env("GOCACHE", dir.path().join("cache"))
            .env("GOPATH", dir.path().join("gopath"))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("CGO_ENABLED", "0")
            .output()
            .expect("go is installed (.ci/run installs golang-go)");
        assert!(
            out.status.success(),
            "go build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Oracle { bin, _dir: dir }
    }

    /// What Go decodes from each document: its canonical view, or its error.
    fn decode(&self, docs: &[(Kind, Vec<u8>)]) -> Vec<Result<Value, String>> {
        let mut child = Command::new(&self.bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input: Vec<u8> = docs
            .iter()
            .flat_map(|(kind, doc)| {
                format!(
                    "{} {}\n",
                    kind.oracle_name(),
                    base64::engine::general_purpose::STANDARD.encode(doc)
                )
                .into_bytes()
            })
            .collect();
        let feed = std::thread::spawn(move || stdin.write_all(&input).unwrap());
        let results: Vec<Result<Value, String>> = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map(|line| {
                let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
                if v["ok"] == true {
                    Ok(v["value"].clone())
                } else {
                    Err(v["error"].as_str().unwrap_or("").to_string())
                }
            })
            .collect();
        feed.join().unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(results.len(), docs.len(), "one answer per document");
        results
    }
}

// --- the fields portcullis judges, in the oracle's canonical form ---

fn descriptor_view(d: &Descriptor) -> Value {
    let annotations: serde_json::Map<String, Value> = d
        .spec()
        .annotations()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "mediaType": d.media_type(),
        "digest": d.digest.to_string(),
        "size": d.size(),
        "platform": d.platform().map(|p| json!({
            "architecture": p.architecture, "os": p.os, "variant": p.variant.clone().unwrap_or_default(),
        })),
        "annotations": annotations,
    })
}

/// portcullis' reading: `None` when it refuses the document.
fn portcullis_view(kind: Kind, doc: &[u8]) -> Option<Value> {
    match kind {
        Kind::Manifest(t) | Kind::Index(t) => match Manifest::parse(t, doc).ok()? {
            Manifest::Image(m) => Some(json!({
                "schemaVersion": m.spec().schema_version(),
                "mediaType": m.spec().media_type().as_ref().map(|t| t.to_string()).unwrap_or_default(),
                "config": descriptor_view(&m.config),
                "layers": m.layers.iter().map(descriptor_view).collect::<Vec<_>>(),
            })),
            Manifest::Index(i) => Some(json!({
                "schemaVersion": i.spec().schema_version(),
                "mediaType": i.spec().media_type().as_ref().map(|t| t.to_string()).unwrap_or_default(),
                "manifests": i.manifests.iter().map(descriptor_view).collect::<Vec<_>>(),
            })),
        },
        Kind::Config => {
            let c = ImageConfig::parse(doc).ok()?;
            let history: Vec<Value> = c
                .history()
                .iter()
                .map(|h| json!({"created_by": h.created_by().clone().unwrap_or_default(), "comment": h.comment().clone().unwrap_or_default()}))
                .collect();
            Some(json!({
                "architecture": c.platform().architecture,
                "os": c.platform().os,
                "variant": c.platform().variant.clone().unwrap_or_default(),
                "config": {
                    "User": c.user().unwrap_or_default(),
                    "Env": c.env(),
                    "Entrypoint": c.entrypoint(),
                    "Cmd": c.cmd(),
                    "WorkingDir": c.working_dir().unwrap_or_default(),
                    "Labels": c.labels(),
                    "Healthcheck": c.healthcheck_test(),
                    "OnBuild": c.on_build(),
                },
                "history": history,
            }))
        }
    }
}

/// What portcullis would read without its Go-compatibility check: serde and oci-spec alone (the
/// digests, platforms and Docker fields read the same way, minus the check).
fn unchecked_view(kind: Kind, doc: &[u8]) -> Option<Value> {
    #[derive(serde::Deserialize, Default)]
    struct P {
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        os: String,
        #[serde(default)]
        variant: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct RawDesc {
        #[serde(default)]
        platform: Option<P>,
    }
    let desc = |d: &spec::Descriptor, raw: &RawDesc| {
        let annotations: serde_json::Map<String, Value> = d
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({
            "mediaType": d.media_type().to_string(),
            "digest": d.digest().to_string(),
            "size": d.size(),
            "platform": raw.platform.as_ref().map(|p| json!({
                "architecture": p.architecture, "os": p.os, "variant": p.variant.clone().unwrap_or_default(),
            })),
            "annotations": annotations,
        })
    };
    match kind {
        Kind::Manifest(_) => {
            #[derive(serde::Deserialize)]
            struct Raw {
                config: RawDesc,
                layers: Vec<RawDesc>,
            }
            let m: spec::ImageManifest = serde_json::from_slice(doc).ok()?;
            let raw: Raw = serde_json::from_slice(doc).ok()?;
            Some(json!({
                "schemaVersion": m.schema_version(),
                "mediaType": m.media_type().as_ref().map(|t| t.to_string()).unwrap_or_default(),
                "config": desc(m.config(), &raw.config),
                "layers": m.layers().iter().zip(&raw.layers).map(|(d, r)| desc(d, r)).collect::<Vec<_>>(),
            }))
        }
        Kind::Index(_) => {
            #[derive(serde::Deserialize)]
            struct Raw {
                manifests: Vec<RawDesc>,
            }
            let i: spec::ImageIndex = serde_json::from_slice(doc).ok()?;
            let raw: Raw = serde_json::from_slice(doc).ok()?;
            Some(json!({
                "schemaVersion": i.schema_version(),
                "mediaType": i.media_type().as_ref().map(|t| t.to_string()).unwrap_or_default(),
                "manifests": i.manifests().iter().zip(&raw.manifests).map(|(d, r)| desc(d, r)).collect::<Vec<_>>(),
            }))
        }
        Kind::Config => {
            #[derive(serde::Deserialize, Default)]
            struct Health {
                #[serde(rename = "Test", default)]
                test: Option<Vec<String>>,
            }
            #[derive(serde::Deserialize, Default)]
            struct Run {
                #[serde(rename = "Healthcheck", default)]
                healthcheck: Option<Health>,
                #[serde(rename = "OnBuild", default)]
                on_build: Option<Vec<String>>,
            }
            #[derive(serde::Deserialize)]
            struct Extras {
                #[serde(flatten)]
                platform: P,
                #[serde(default)]
                config: Option<Run>,
            }
            let c: spec::ImageConfiguration = serde_json::from_slice(doc).ok()?;
            let extras: Extras = serde_json::from_slice(doc).ok()?;
            let run = c.config().clone().unwrap_or_default();
            let docker = extras.config.unwrap_or_default();
            let labels: std::collections::BTreeMap<String, String> = run
                .labels()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            let history: Vec<Value> = c
                .history()
                .iter()
                .flatten()
                .map(|h| json!({"created_by": h.created_by().clone().unwrap_or_default(), "comment": h.comment().clone().unwrap_or_default()}))
                .collect();
            Some(json!({
                "architecture": extras.platform.architecture,
                "os": extras.platform.os,
                "variant": extras.platform.variant.unwrap_or_default(),
                "config": {
                    "User": run.user().clone().unwrap_or_default(),
                    "Env": run.env().clone().unwrap_or_default(),
                    "Entrypoint": run.entrypoint().clone().unwrap_or_default(),
                    "Cmd": run.cmd().clone().unwrap_or_default(),
                    "WorkingDir": run.working_dir().clone().unwrap_or_default(),
                    "Labels": labels,
                    "Healthcheck": docker.healthcheck.and_then(|h| h.test).unwrap_or_default(),
                    "OnBuild": docker.on_build.unwrap_or_default(),
                },
                "history": history,
            }))
        }
    }
}

// --- documents: a JSON tree that can say what serde_json::Value cannot (a key twice, raw bytes) ---

#[derive(Clone, Debug)]
enum J {
    /// A literal written as is: null, true, a number, or anything odd.
    Raw(Vec<u8>),
    /// A string's bytes between the quotes, escapes and all.
    Str(Vec<u8>),
    Arr(Vec<J>),
    /// Keys as written between the quotes.
    Obj(Vec<(Vec<u8>, J)>),
}

impl J {
    fn from(v: &Value) -> J {
        let quoted = |s: &str| {
            let q = serde_json::to_vec(s).unwrap();
            q[1..q.len() - 1].to_vec()
        };
        match v {
            Value::String(s) => J::Str(quoted(s)),
            Value::Array(a) => J::Arr(a.iter().map(J::from).collect()),
            Value::Object(o) => J::Obj(o.iter().map(|(k, v)| (quoted(k), J::from(v))).collect()),
            other => J::Raw(serde_json::to_vec(other).unwrap()),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            J::Raw(b) => out.extend_from_slice(b),
            J::Str(b) => {
                out.push(b'"');
                out.extend_from_slice(b);
                out.push(b'"');
            }
            J::Arr(a) => {
                out.push(b'[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write(out);
                }
                out.push(b']');
            }
            J::Obj(o) => {
                out.push(b'{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.push(b'"');
                    out.extend_from_slice(k);
                    out.extend_from_slice(b"\":");
                    v.write(out);
                }
                out.push(b'}');
            }
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    /// Every node, depth first (the root first), as a path of child indexes.
    fn paths(&self, at: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        out.push(at.clone());
        let children: Vec<&J> = match self {
            J::Arr(a) => a.iter().collect(),
            J::Obj(o) => o.iter().map(|(_, v)| v).collect(),
            _ => Vec::new(),
        };
        for (i, c) in children.into_iter().enumerate() {
            at.push(i);
            c.paths(at, out);
            at.pop();
        }
    }

    fn at_mut(&mut self, path: &[usize]) -> &mut J {
        match path.split_first() {
            None => self,
            Some((&i, rest)) => match self {
                J::Arr(a) => a[i].at_mut(rest),
                J::Obj(o) => o[i].1.at_mut(rest),
                _ => unreachable!("paths lead through containers"),
            },
        }
    }
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Spellings Go takes for the same key: case changes, Kelvin sign, long s, escapes.
fn respell(rng: &mut Rng, key: &[u8]) -> Vec<u8> {
    let Ok(k) = std::str::from_utf8(key) else {
        return key.to_vec();
    };
    match rng.below(4) {
        0 => k.to_uppercase().into_bytes(),
        1 => {
            let mut c: Vec<char> = k.chars().collect();
            if let Some(first) = c.first_mut() {
                *first = if first.is_ascii_lowercase() {
                    first.to_ascii_uppercase()
                } else {
                    first.to_ascii_lowercase()
                };
            }
            c.into_iter().collect::<String>().into_bytes()
        }
        2 => k
            .replace('k', "\u{212a}")
            .replace('s', "\u{17f}")
            .replace('K', "\u{212a}")
            .into_bytes(),
        _ => k
            .chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("\\u{:04x}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into_bytes(),
    }
}

/// A value to put somewhere: another field's value, the malicious ones, odd literals.
fn odd_value(rng: &mut Rng) -> J {
    let raws: [&[u8]; 14] = [
        b"null",
        b"true",
        b"0",
        b"-1",
        b"1.5",
        b"1e3",
        b"99999999999999999999",
        b"-0",
        b"\"\"",
        b"[]",
        b"{}",
        b"[null]",
        b"{\"a\":null}",
        b"\"\\ud800\"",
    ];
    match rng.below(6) {
        0 => J::Str(MINER.as_bytes().to_vec()),
        1 => J::from(&json!([
            "/tmp/.x/xmrig",
            "-o",
            "stratum+tcp://pool.example:3333"
        ])),
        2 => J::Str(b"caf\xff\xfe".to_vec()),
        3 => J::from(
            &json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": MINER, "size": 1}),
        ),
        _ => J::Raw(rng.pick(&raws).to_vec()),
    }
}

/// One random change to `doc`.
fn mutate(rng: &mut Rng, doc: &mut J) {
    let mut paths = Vec::new();
    doc.paths(&mut Vec::new(), &mut paths);
    let objects: Vec<Vec<usize>> = paths
        .iter()
        .filter(|p| matches!(doc.clone().at_mut(p), J::Obj(o) if !o.is_empty()))
        .cloned()
        .collect();
    match rng.below(15) {
        // Changes that keep the document clean: another ordinary string, keys in another order,
        // an unknown key, a key spelled with escapes, whitespace around.
        10 => {
            let strings: Vec<Vec<usize>> = paths
                .iter()
                .filter(|p| matches!(doc.clone().at_mut(p), J::Str(_)))
                .cloned()
                .collect();
            if !strings.is_empty() {
                let p = rng.pick(&strings).clone();
                let texts: [&[u8]; 6] = [
                    br#"caf\u00e9 \/ \\ \"q\""#,
                    "\u{2028}\u{1F600}".as_bytes(),
                    b"",
                    b"/bin/sh -c 'sleep 1'",
                    br"\ud83d\ude00",
                    MINER.as_bytes(),
                ];
                *doc.at_mut(&p) = J::Str(rng.pick(&texts).to_vec());
            }
        }
        11 if !objects.is_empty() => {
            let p = rng.pick(&objects).clone();
            if let J::Obj(o) = doc.at_mut(&p) {
                o.reverse();
                let i = rng.below(o.len());
                o.rotate_left(i);
            }
        }
        12 if !objects.is_empty() => {
            let p = rng.pick(&objects).clone();
            let names: [&[u8]; 4] = [b"x-unknown", b"extra", b"configs", b"layer"];
            let name = rng.pick(&names).to_vec();
            if let J::Obj(o) = doc.at_mut(&p) {
                let i = rng.below(o.len() + 1);
                o.insert(i, (name, J::from(&json!({"a": [1, "b", null]}))));
            }
        }
        13 if !objects.is_empty() => {
            let p = rng.pick(&objects).clone();
            if let J::Obj(o) = doc.at_mut(&p) {
                let i = rng.below(o.len());
                if let Ok(k) = std::str::from_utf8(&o[i].0) {
                    if !k.contains('\\') {
                        o[i].0 = k
                            .chars()
                            .map(|c| format!("\\u{:04x}", c as u32))
                            .collect::<String>()
                            .into_bytes();
                    }
                }
            }
        }
        14 => {
            let inner = doc.bytes();
            *doc = J::Raw([b" \n\t".as_slice(), &inner, b"\r\n "].concat());
        }
        // A key respelled the way Go would still match it.
        0 | 1 if !objects.is_empty() => {
            let p = rng.pick(&objects).clone();
            if let J::Obj(o) = doc.at_mut(&p) {
                let i = rng.below(o.len());
                o[i].0 = respell(rng, &o[i].0);
            }
        }
        // A key given twice: the copy (respelled or not, with another value) after or before.
        2 | 3 if !objects.is_empty() => {
            let p = rng.pick(&objects).clone();
            let respelled = rng.below(2) == 0;
            let value = odd_value(rng);
            let first = rng.below(3) == 0;
            if let J::Obj(o) = doc.at_mut(&p) {
                let i = rng.below(o.len());
                let mut key = o[i].0.clone();
                if respelled {
                    key = respell(rng, &key);
                }
                if first {
                    o.insert(0, (key, value));
                } else {
                    o.push((key, value));
                }
            }
        }
        // A value replaced.
        4 | 5 if paths.len() > 1 => {
            let p = rng.pick(&paths[1..]).clone();
            *doc.at_mut(&p) = odd_value(rng);
        }
        // A key dropped.
        6 if !objects.is_empty() => {
            let p = rng.pick(&objects).clone();
            if let J::Obj(o) = doc.at_mut(&p) {
                let i = rng.below(o.len());
                o.remove(i);
            }
        }
        // Invalid UTF-8 or a lone surrogate in a string, or in a key.
        7 => {
            let strings: Vec<Vec<usize>> = paths
                .iter()
                .filter(|p| matches!(doc.clone().at_mut(p), J::Str(_)))
                .cloned()
                .collect();
            if let Some(p) = (!strings.is_empty()).then(|| rng.pick(&strings).clone()) {
                let bad: &[u8] = if rng.below(2) == 0 {
                    b"\xc3\x28"
                } else {
                    b"\\udc00"
                };
                if let J::Str(s) = doc.at_mut(&p) {
                    s.extend_from_slice(bad);
                }
            }
        }
        // A key of the other kind of document, or an unknown key hiding a duplicate.
        8 => {
            if let J::Obj(o) = doc {
                let extra = match rng.below(4) {
                    0 => (b"manifests".to_vec(), J::from(&json!([]))),
                    1 => (b"layers".to_vec(), J::from(&json!([]))),
                    2 => (
                        b"x-extra".to_vec(),
                        J::Obj(vec![
                            (b"k".to_vec(), J::Raw(b"1".to_vec())),
                            (b"k".to_vec(), J::Raw(b"2".to_vec())),
                        ]),
                    ),
                    _ => (b"mediaType".to_vec(), J::Str(OCI_INDEX.as_bytes().to_vec())),
                };
                o.push(extra);
            }
        }
        // Something around the document: wrapping, trailing data, a BOM, a comment.
        _ => {
            let inner = doc.bytes();
            let wrapped: Vec<u8> = match rng.below(5) {
                0 => [b"\xef\xbb\xbf".as_slice(), &inner].concat(),
                1 => [inner.as_slice(), b" {}"].concat(),
                2 => [inner.as_slice(), b"\n\t "].concat(),
                3 => [b"/* c */".as_slice(), &inner].concat(),
                _ => [inner.as_slice(), b"x"].concat(),
            };
            *doc = J::Raw(wrapped);
        }
    }
}

// --- the base documents ---

fn oci_manifest() -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": 1469},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D2, "size": 3208942},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D3, "size": 88,
             "annotations": {"org.opencontainers.image.title": "app"}},
        ],
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    })
}

fn docker_manifest() -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": D1, "size": 7023},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": D2, "size": 32654}],
    })
}

fn index(media_type: &str, child: &str) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {"mediaType": child, "digest": D1, "size": 1000, "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": child, "digest": D2, "size": 1001, "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
            {"mediaType": child, "digest": D3, "size": 566, "platform": {"architecture": "unknown", "os": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
        ],
    })
}

fn config() -> Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "User": "app",
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"],
            "Entrypoint": ["/usr/bin/tini", "--"],
            "Cmd": ["nginx", "-g", "daemon off;"],
            "WorkingDir": "/srv",
            "Labels": {"maintainer": "someone", "org.opencontainers.image.version": "1.2"},
            "Healthcheck": {"Test": ["CMD", "curl", "-f", "http://localhost/"]},
            "OnBuild": ["RUN make"],
            "ExposedPorts": {"80/tcp": {}},
        },
        "rootfs": {"type": "layers", "diff_ids": [D2]},
        "history": [{"created_by": "RUN apt-get install -y nginx", "comment": "buildkit"}, {"created_by": "CMD", "empty_layer": true}],
    })
}

fn hand_written() -> Vec<(&'static str, Kind, Vec<u8>)> {
    let m = |s: String| s.into_bytes();
    let good_config = format!(
        r#"{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":10}}"#
    );
    let bad_config = format!(
        r#"{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{MINER}","size":10}}"#
    );
    let layer = format!(
        r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D2}","size":5}}"#
    );
    let oci = Kind::Manifest(OCI_MANIFEST);
    let cfg_base =
        r#""architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}"#;
    vec![
        ("plain manifest", oci, m(format!(r#"{{"schemaVersion":2,"config":{good_config},"layers":[{layer}]}}"#))),
        ("Config/Layers keys", oci, m(format!(r#"{{"schemaVersion":2,"Config":{bad_config},"Layers":[{layer}],"config":{good_config},"layers":[]}}"#))),
        ("only case-variant keys", oci, m(format!(r#"{{"schemaVersion":2,"Config":{bad_config},"LAYERS":[{layer}]}}"#))),
        ("config twice, malicious last", oci, m(format!(r#"{{"schemaVersion":2,"config":{good_config},"layers":[],"config":{bad_config}}}"#))),
        ("digest twice inside config", oci, m(format!(r#"{{"schemaVersion":2,"config":{{"mediaType":"a/b","digest":"{D1}","size":1,"digest":"{MINER}"}},"layers":[]}}"#))),
        ("nested case variant", oci, m(format!(r#"{{"schemaVersion":2,"config":{{"mediaType":"a/b","digest":"{D1}","size":1,"Digest":"{MINER}"}},"layers":[]}}"#))),
        ("kelvin sign", Kind::Config, m(format!("{{{cfg_base},\"config\":{{\"Healthchec\u{212a}\":{{\"Test\":[\"CMD\",\"/tmp/x\"]}}}}}}"))),
        ("long s", oci, m(format!("{{\"schemaVersion\":2,\"config\":{good_config},\"layers\":[],\"layer\u{17f}\":[{layer}]}}"))),
        ("escaped key", oci, m(format!(r#"{{"schemaVersion":2,"\u0063onfig":{good_config},"layers":[]}}"#))),
        ("invalid UTF-8", Kind::Config, [format!("{{{cfg_base},\"config\":{{\"Cmd\":[\"/bin/x").as_bytes(), b"\xff\"]}}"].concat()),
        ("lone surrogate", Kind::Config, m(format!(r#"{{{cfg_base},"config":{{"Cmd":["\ud800"]}}}}"#))),
        ("null fields", Kind::Config, m(format!(r#"{{{cfg_base},"config":{{"Entrypoint":null,"Cmd":null,"Env":null,"Labels":null,"WorkingDir":null}},"history":null}}"#))),
        ("null config", Kind::Config, m(format!(r#"{{{cfg_base},"config":null}}"#))),
        ("null in a list", Kind::Config, m(format!(r#"{{{cfg_base},"config":{{"Cmd":["/a",null]}}}}"#))),
        ("string entrypoint", Kind::Config, m(format!(r#"{{{cfg_base},"config":{{"Entrypoint":"/tmp/xmrig"}}}}"#))),
        ("Cmd twice", Kind::Config, m(format!(r#"{{{cfg_base},"config":{{"Cmd":["/ok"],"Cmd":["/tmp/xmrig"]}}}}"#))),
        ("lower-case entrypoint", Kind::Config, m(format!(r#"{{{cfg_base},"config":{{"entrypoint":["/tmp/xmrig"]}}}}"#))),
        ("huge size", oci, m(format!(r#"{{"schemaVersion":2,"config":{{"mediaType":"a/b","digest":"{D1}","size":99999999999999999999999}},"layers":[]}}"#))),
        ("float size", oci, m(format!(r#"{{"schemaVersion":2,"config":{{"mediaType":"a/b","digest":"{D1}","size":1.0}},"layers":[]}}"#))),
        ("negative size", oci, m(format!(r#"{{"schemaVersion":2,"config":{{"mediaType":"a/b","digest":"{D1}","size":-1}},"layers":[]}}"#))),
        ("BOM", oci, [b"\xef\xbb\xbf".as_slice(), format!(r#"{{"schemaVersion":2,"config":{good_config},"layers":[]}}"#).as_bytes()].concat()),
        ("trailing document", oci, m(format!(r#"{{"schemaVersion":2,"config":{good_config},"layers":[]}} {{"config":{bad_config}}}"#))),
        ("trailing garbage", oci, m(format!(r#"{{"schemaVersion":2,"config":{good_config},"layers":[]}}garbage"#))),
        ("comment", oci, m(format!(r#"{{"schemaVersion":2,/* x */"config":{good_config},"layers":[]}}"#))),
        ("trailing comma", oci, m(format!(r#"{{"schemaVersion":2,"config":{good_config},"layers":[],}}"#))),
        ("null document", oci, m("null".into())),
        ("array document", oci, m("[]".into())),
        ("random bytes", oci, vec![0x8b, 0x1f, 0x00, 0xff, 0x7b]),
        ("manifest with manifests", oci, m(format!(r#"{{"schemaVersion":2,"config":{good_config},"layers":[],"manifests":[{bad_config}]}}"#))),
        ("index with Manifests", Kind::Index(OCI_INDEX), m(format!(r#"{{"schemaVersion":2,"manifests":[],"Manifests":[{bad_config}]}}"#))),
        ("platform OS", Kind::Index(OCI_INDEX), m(format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":1,"platform":{{"architecture":"amd64","os":"unknown","OS":"linux"}}}}]}}"#))),
        ("deep nesting", oci, m(format!(r#"{{"schemaVersion":2,"config":{good_config},"layers":[],"x":{}1{}}}"#, "[".repeat(300), "]".repeat(300)))),
        ("armbe", Kind::Index(OCI_INDEX), m(format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":1,"platform":{{"architecture":"armbe","os":"linux"}}}}]}}"#))),
    ]
}

#[derive(Default, Debug)]
struct Counts {
    equal: usize,
    refused: usize,
    /// Go itself fails on the document (the clients refuse it), portcullis reads it: harmless.
    go_refused: usize,
    /// Without the Go-compatibility check, portcullis would read it otherwise than Go.
    unchecked_differs: usize,
}

/// Checks one document; a description of the disagreement, if any.
fn judge(
    kind: Kind,
    doc: &[u8],
    go: &Result<Value, String>,
    counts: &mut Counts,
) -> Option<String> {
    let ours = portcullis_view(kind, doc);
    if let (Ok(go), theirs) = (go, unchecked_view(kind, doc)) {
        if theirs.as_ref().is_some_and(|t| t != go) {
            counts.unchecked_differs += 1;
        }
    }
    match (ours, go) {
        (None, _) => counts.refused += 1,
        (Some(_), Err(_)) => counts.go_refused += 1,
        (Some(ours), Ok(go)) if &ours == go => counts.equal += 1,
        (Some(ours), Ok(go)) => return Some(format!("portcullis read {ours}\nGo read {go}")),
    }
    None
}

#[test]
fn portcullis_reads_documents_as_go_does_or_refuses_them() {
    let oracle = Oracle::build();
    let mut docs: Vec<(String, Kind, Vec<u8>)> = hand_written()
        .into_iter()
        .map(|(name, kind, doc)| (name.to_string(), kind, doc))
        .collect();
    let hand = docs.len();
    let bases: Vec<(Kind, Value)> = vec![
        (Kind::Manifest(OCI_MANIFEST), oci_manifest()),
        (Kind::Manifest(DOCKER_MANIFEST), docker_manifest()),
        (Kind::Index(OCI_INDEX), index(OCI_INDEX, OCI_MANIFEST)),
        (
            Kind::Index(DOCKER_LIST),
            index(DOCKER_LIST, DOCKER_MANIFEST),
        ),
        (Kind::Config, config()),
    ];
    for (kind, base) in &bases {
        docs.push((
            format!("base {kind:?}"),
            *kind,
            serde_json::to_vec(base).unwrap(),
        ));
    }
    let mut rng = Rng(0x005e_ed0f_9017_c0de);
    for n in 0..3000 {
        let (kind, base) = rng.pick(&bases).clone();
        let mut doc = J::from(&base);
        for _ in 0..1 + rng.below(2) {
            mutate(&mut rng, &mut doc);
        }
        docs.push((format!("mutant {n} of {kind:?}"), kind, doc.bytes()));
    }
    let go = oracle.decode(
        &docs
            .iter()
            .map(|(_, k, d)| (*k, d.clone()))
            .collect::<Vec<_>>(),
    );

    let mut counts = Counts::default();
    let mut failures = Vec::new();
    for ((name, kind, doc), go) in docs.iter().zip(&go) {
        if let Some(why) = judge(*kind, doc, go, &mut counts) {
            failures.push(format!(
                "{name} ({kind:?}): {}\n{why}",
                String::from_utf8_lossy(doc)
            ));
        }
    }
    eprintln!(
        "JSON differential: {} documents: {} read as Go reads them, {} refused, {} that Go refuses read anyway; {} read otherwise than Go without the check",
        docs.len(),
        counts.equal,
        counts.refused,
        counts.go_refused,
        counts.unchecked_differs
    );
    assert!(
        failures.is_empty(),
        "{} documents read otherwise than Go:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n\n")
    );
    // Every hand-written attack is refused, and the clean documents are read alike.
    for ((name, kind, doc), go) in docs.iter().zip(&go).take(hand) {
        let ours = portcullis_view(*kind, doc);
        let clean = matches!(
            name.as_str(),
            "plain manifest" | "escaped key" | "null fields" | "null config" | "armbe"
        );
        assert_eq!(
            ours.is_some(),
            clean,
            "{name}: portcullis {ours:?}, Go {go:?}"
        );
    }
    for (name, kind, doc) in docs.iter().skip(hand).take(bases.len()) {
        assert!(portcullis_view(*kind, doc).is_some(), "{name}");
    }
    assert_eq!(
        counts.equal + counts.refused + counts.go_refused,
        docs.len()
    );
    // The oracle has teeth: without the check, portcullis would misread many of these.
    assert!(
        counts.unchecked_differs > 50,
        "only {} documents read otherwise without the check",
        counts.unchecked_differs
    );
    // And the mutants are not all refused: many still read alike.
    assert!(counts.equal > 200, "{counts:?}");
}
