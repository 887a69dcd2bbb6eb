//! Enforcement end to end: images that look malicious are refused by real clients' pulls through
//! portcullis, with the reason where the client shows it; clean images pass untouched.
//!
//! The "malicious" images are inert stand-ins built here: a config whose entrypoint runs a
//! `kworker` shell stub with XMRig flags, a stratum pool URL and a Monero wallet that is made up
//! but valid (base58 + Keccak checksum, encoded below); and a layer holding a fake ELF (a bare
//! header followed by XMRig strings) next to an XMRig `config.json` with a pool and such a wallet,
//! while that image's config is clean, so only the layer inspection can catch it, mid-stream.
//!
//! What the real clients show here (and these tests hold them to):
//! - skopeo: `reading manifest v1 in <proxy>/<repo>: denied: blocked by portcullis: …` with the
//!   rule ids; for a layer cut mid-stream on its first pull only `writing blob: happened during
//!   read: unexpected EOF`.
//! - containerd 1.6 (`ctr`, portcullis as `server` and only `[host]`): HEAD → 405, GET → 403, once
//!   per host entry; it prints the status line, not the JSON: `failed with status code
//!   [manifests v1]: 403 Blocked by portcullis: <rule>: …`. For a layer cut mid-stream it reports
//!   `failed to read expected number of bytes: unexpected EOF`, not the 403s its retries then got.
//! - dockerd 20.10 (`registry-mirrors`): `unsupported media type
//!   application/vnd.portcullis.blocked.<rule>+json`, and no fallback to Docker Hub.

use crate::common::access_log::Logged;
use crate::common::containerd::{write_hosts_toml, Containerd};
use crate::common::dockerd::Dockerd;
use crate::common::image::Written;
use crate::common::*;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The image whose config is the giveaway.
const BAD_CONFIG: &str = "acme/webtool";
/// The image whose config is clean and one layer carries the miner.
const BAD_LAYER: &str = "acme/dataproc";
/// A clean image.
const CLEAN: &str = "acme/greeter";

// ---------------------------------------------------------------------------------------------
// A Monero wallet: Monero's base58 (8-byte blocks, 11 characters each, a short last block) over
// network byte ‖ keys ‖ the first 4 bytes of the original Keccak-256 of those.

const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// Characters a block of `n` bytes encodes to, for `n` in `0..=8`.
const ENCODED_SIZES: [usize; 9] = [0, 2, 3, 5, 6, 7, 9, 10, 11];

fn keccak256(data: &[u8]) -> [u8; 32] {
    use tiny_keccak::Hasher as _;
    let mut k = tiny_keccak::Keccak::v256();
    k.update(data);
    let mut out = [0u8; 32];
    k.finalize(&mut out);
    out
}

fn monero_base58(data: &[u8]) -> String {
    let mut out = String::new();
    for block in data.chunks(8) {
        let mut value: u128 = 0;
        for &b in block {
            value = (value << 8) | u128::from(b);
        }
        let mut digits = vec![ALPHABET[0]; ENCODED_SIZES[block.len()]];
        for d in digits.iter_mut().rev() {
            *d = ALPHABET[(value % 58) as usize];
            value /= 58;
        }
        out.push_str(std::str::from_utf8(&digits).unwrap());
    }
    out
}

/// A mainnet standard address (network byte 18, leading `4`) with made-up keys: the checksum is
/// right, so it is valid, but no one holds its keys.
fn wallet(seed: u8) -> String {
    let mut bytes = vec![18u8];
    bytes.extend((0..64u8).map(|i| i.wrapping_mul(37).wrapping_add(seed)));
    let sum = keccak256(&bytes);
    bytes.extend_from_slice(&sum[..4]);
    let address = monero_base58(&bytes);
    assert_eq!(address.len(), 95, "{address}");
    assert!(address.starts_with('4'), "{address}");
    assert!(
        portcullis::inspect::wallet::validate_monero(&address),
        "{address} does not validate"
    );
    address
}

// ---------------------------------------------------------------------------------------------
// The images.

/// A 64-bit little-endian ELF header with `shnum` section headers, then each string between
/// filler: the shape of a binary to a strings scanner, with no code at all.
fn fake_elf(strings: &[&str]) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // 64-bit
    h[5] = 1; // little-endian
    h[6] = 1; // version
    h[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    h[18..20].copy_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[52..54].copy_from_slice(&64u16.to_le_bytes());
    h[58..60].copy_from_slice(&64u16.to_le_bytes());
    h[60..62].copy_from_slice(&27u16.to_le_bytes()); // section headers: not packed
    for (i, s) in strings.iter().enumerate() {
        h.extend(std::iter::repeat_n(b'.', 200 + 37 * i));
        h.push(0);
        h.extend_from_slice(s.as_bytes());
        h.push(0);
    }
    h.extend(std::iter::repeat_n(0u8, 512));
    h
}

fn xmrig_config(wallet: &str) -> String {
    format!(
        r#"{{
    "autosave": true,
    "donate-level": 0,
    "cpu": {{"enabled": true, "huge-pages": true}},
    "randomx": {{"init": -1, "mode": "auto"}},
    "pools": [
        {{"algo": "rx/0", "coin": "monero", "url": "pool.supportxmr.com:3333",
          "user": "{wallet}.w1", "pass": "x", "keepalive": true}}
    ]
}}
"#
    )
}

/// Entrypoint runs a "kworker" (a shell stub) with miner flags, a pool and a wallet.
fn bad_config_image() -> Image {
    let wallet = wallet(7);
    Image::new()
        .layer(
            Layer::new(Compression::Gzip)
                .exec(
                    "usr/local/bin/kworker",
                    "#!/bin/sh\n# inert stand-in\nexit 0\n",
                )
                .file("etc/os-release", "ID=fixture\n"),
        )
        .entrypoint(&[
            "/usr/local/bin/kworker",
            "-o",
            "stratum+tcp://pool.supportxmr.com:3333",
            "-u",
            &wallet,
            "--donate-level=0",
        ])
}

/// The bad layer: 1 MB of noise first (so plenty streams before the verdict), then the fake
/// XMRig ELF and its config in a hidden directory.
fn bad_layer() -> Layer {
    Layer::new(Compression::Gzip)
        .random_file("opt/data/blob.bin", 1_000_000, 3)
        .exec(
            "opt/.cache/helper",
            fake_elf(&[
                "XMRig/%s libuv/%s%s",
                "'h' hashrate, 'p' pause, 'r' resume",
                "--cpu-affinity",
                "password for mining server",
            ]),
        )
        .file("opt/.cache/config.json", xmrig_config(&wallet(9)))
}

/// A clean config (runs `/app/run`), a clean first layer, and the bad layer.
fn bad_layer_image() -> Image {
    Image::new()
        .layer(Layer::new(Compression::Gzip).exec("app/run", "#!/bin/sh\necho processing\n"))
        .layer(bad_layer())
        .entrypoint(&["/app/run"])
}

fn clean_image() -> Image {
    Image::new()
        .layer(
            Layer::new(Compression::Gzip)
                .exec("app/greet", "#!/bin/sh\necho hello\n")
                .file("etc/os-release", "ID=fixture\n"),
        )
        .layer(Layer::new(Compression::Gzip).random_file("app/data.bin", 200_000, 5))
        .layer(Layer::new(Compression::None).file("app/README", "a clean image\n"))
        .entrypoint(&["/app/greet"])
}

/// An upstream holding the three images as `<repo>:v1`.
struct Upstream {
    registry: Registry,
    layout: tempfile::TempDir,
    bad_config: Written,
    bad_layer: Written,
    clean: Written,
}

impl Upstream {
    fn start() -> Upstream {
        let registry = Registry::start();
        let layout = tempfile::tempdir().unwrap();
        let bad_config = bad_config_image().write(layout.path(), Some("bad-config"));
        let bad_layer = bad_layer_image().write(layout.path(), Some("bad-layer"));
        let clean = clean_image().write(layout.path(), Some("clean"));
        registry.push(layout.path(), "bad-config", BAD_CONFIG, "v1");
        registry.push(layout.path(), "bad-layer", BAD_LAYER, "v1");
        registry.push(layout.path(), "clean", CLEAN, "v1");
        Upstream {
            registry,
            layout,
            bad_config,
            bad_layer,
            clean,
        }
    }

    /// The digest of the layer carrying the miner.
    fn miner_layer(&self) -> &str {
        &self.bad_layer.layer_digests[1]
    }

    /// `--upstream docker.io=<this registry>`.
    fn arg(&self) -> String {
        format!("docker.io={}", self.registry.url())
    }

    /// How many times the upstream was asked `GET <path>` (its access log).
    fn gets(&self, path: &str) -> usize {
        self.registry
            .log_text()
            .matches(&format!("\"GET {path} HTTP/"))
            .count()
    }

    /// Asserts the upstream was asked `GET <path>` exactly `n` times, waiting a little for its
    /// log: it logs a request when its handler ends, which for a body the proxy stopped reading
    /// is a moment after the proxy moved on.
    fn assert_gets(&self, path: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.gets(path) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(self.gets(path), n, "upstream GETs of {path}");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// `skopeo copy docker://<proxy>/<repo>:v1 oci:<tmp>:out`: the layout, or skopeo's stderr.
fn skopeo_pull(proxy: &str, repo: &str) -> Result<tempfile::TempDir, String> {
    let dest = tempfile::tempdir().unwrap();
    let src = format!("docker://{}/{repo}:v1", proxy.trim_start_matches("http://"));
    let dst = format!("oci:{}:out", dest.path().display());
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--preserve-digests",
        &src,
        &dst,
    ])
    .map(|_| dest)
}

/// Every blob of the pulled layout is the very file pushed upstream, and `image`'s are all there.
fn assert_same_blobs(source: &Path, pulled: &Path, image: &Written) {
    let src = layout_blobs(source);
    let got = layout_blobs(pulled);
    for (name, bytes) in &got {
        assert!(
            src.get(name) == Some(bytes),
            "blob {name} differs from the pushed one"
        );
    }
    for d in std::iter::once(&image.manifest_digest)
        .chain(std::iter::once(&image.config_digest))
        .chain(&image.layer_digests)
    {
        assert!(got.contains_key(d), "{d} was not pulled");
    }
}

/// A GET read to its end, however it ends.
struct Fetched {
    status: u16,
    reason: String,
    content_length: Option<u64>,
    content_type: String,
    body: Vec<u8>,
    /// The error the body ended with, if it did not end cleanly.
    error: Option<String>,
    elapsed: Duration,
}

impl Fetched {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: not JSON ({e}): {}",
                self.status,
                self.reason,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A `403` with an OCI `DENIED` error whose message is portcullis' reason.
    fn assert_denied(&self, what: &str) -> String {
        assert_eq!(
            self.status,
            403,
            "{what}: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type, "application/json", "{what}");
        assert!(
            self.reason.starts_with("Blocked by portcullis: "),
            "{what}: reason phrase {:?}",
            self.reason
        );
        let v = self.json();
        assert_eq!(v["errors"][0]["code"], "DENIED", "{what}: {v}");
        let message = v["errors"][0]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("blocked by portcullis"),
            "{what}: {message}"
        );
        message
    }
}

/// `GET <path>` over a plain socket (HTTP/1.1, `Connection: close`), read until the server
/// closes: the status line verbatim (its reason phrase), the headers, and every body byte that
/// arrived.
fn fetch(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Fetched {
    use std::io::Write;
    let started = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read_error = loop {
        match s.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => break Some(e.to_string()),
        }
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "GET {path}: no header end in {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut head_lines = head.split("\r\n");
    let status_line = head_lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let reason = parts.next().unwrap_or("").to_string();
    let header = |name: &str| {
        head_lines.clone().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let content_length: Option<u64> = header("content-length").and_then(|v| v.parse().ok());
    let content_type = header("content-type").unwrap_or_default();
    let error = match (read_error, content_length) {
        (Some(e), _) => Some(e),
        (None, Some(len)) if (body.len() as u64) < len => Some(format!(
            "connection closed after {} of the {len} bytes announced",
            body.len()
        )),
        _ => None,
    };
    Fetched {
        status,
        reason,
        content_length,
        content_type,
        body,
        error,
        elapsed: started.elapsed(),
    }
}

/// The requests as `METHOD path -> status`, one per line, for failure messages.
fn lines(reqs: &[Logged]) -> String {
    reqs.iter().map(|r| format!("\n  {}", r.line())).collect()
}

/// The audit log's JSON lines.
fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect()
}

fn rules_of(line: &Value) -> Vec<String> {
    line["rules"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A config file in `dir`: `body` plus the docker.io upstream.
fn config_file(dir: &Path, up: &Upstream, body: &str) -> PathBuf {
    let path = dir.join("portcullis.toml");
    std::fs::write(
        &path,
        format!(
            "[upstreams.\"docker.io\"]\nurl = \"{}\"\n\n{body}",
            up.registry.url()
        ),
    )
    .unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// skopeo: the image whose config mines is refused at its manifest (no blob is asked for) with
/// `denied` and the rule ids in skopeo's error; the clean image arrives byte for byte.
#[test]
fn skopeo_is_refused_the_miner_config_and_gets_the_clean_image() {
    let up = Upstream::start();
    let p = Portcullis::start(&["--upstream", &up.arg()]);

    let err = skopeo_pull(&p.url(), BAD_CONFIG).expect_err("the miner image was pulled");
    eprintln!("skopeo on {BAD_CONFIG}: {err}");
    assert!(err.contains("denied: blocked by portcullis"), "{err}");
    assert!(err.contains("miner."), "{err}");
    assert!(
        err.contains(&format!(
            "docker.io/{BAD_CONFIG}@{}",
            up.bad_config.manifest_digest
        )),
        "{err}"
    );
    let reqs = p.requests();
    let bad: Vec<&Logged> = reqs.iter().filter(|r| r.repo == BAD_CONFIG).collect();
    assert!(
        !bad.is_empty()
            && bad
                .iter()
                .all(|r| r.path.contains("/manifests/") && r.status == 403),
        "{}",
        lines(&reqs)
    );
    // Nothing of the image but its manifest and config went through the upstream either.
    for d in &up.bad_config.layer_digests {
        assert_eq!(up.gets(&format!("/v2/{BAD_CONFIG}/blobs/{d}")), 0, "{d}");
    }
    // Asked again, the image is refused on its stored verdict: its config is not fetched again
    // (it is not cached, being a miner's).
    let config_path = format!("/v2/{BAD_CONFIG}/blobs/{}", up.bad_config.config_digest);
    let config_gets = up.gets(&config_path);
    assert!(config_gets >= 1);
    skopeo_pull(&p.url(), BAD_CONFIG).expect_err("the miner image was pulled the second time");
    assert_eq!(
        up.gets(&config_path),
        config_gets,
        "the config was fetched again"
    );

    let pulled = skopeo_pull(&p.url(), CLEAN).unwrap_or_else(|e| panic!("{e}\n{}", p.log_text()));
    assert_same_blobs(up.layout.path(), pulled.path(), &up.clean);
    let clean: Vec<Logged> = p
        .requests()
        .into_iter()
        .filter(|r| r.repo == CLEAN)
        .collect();
    assert!(
        clean
            .iter()
            .all(|r| r.status == 200 && r.outcome == "complete"),
        "{}",
        lines(&clean)
    );
}

/// Tail-hold: the image's config is clean, so its manifest is served; its miner layer streams
/// until the inspector has seen enough, and then the response is cut: fewer bytes than announced,
/// never the tail, the connection closed. The verdict sticks at once: the blob and the manifest
/// are refused with 403 DENIED from then on, without going upstream for the blob, and skopeo
/// cannot pull the image.
#[test]
fn a_miner_layer_is_cut_mid_stream_and_stays_refused() {
    let up = Upstream::start();
    let p = Portcullis::start(&["--upstream", &up.arg()]);
    let manifest_path = format!("/v2/{BAD_LAYER}/manifests/v1");
    let accept = [("Accept", "application/vnd.oci.image.manifest.v1+json")];
    let m = fetch(p.addr, &manifest_path, &accept);
    assert_eq!(m.status, 200, "{}", String::from_utf8_lossy(&m.body));
    assert_eq!(m.body, up.bad_layer.manifest);

    // The clean first layer streams whole.
    let first = &up.bad_layer.layer_digests[0];
    let f = fetch(p.addr, &format!("/v2/{BAD_LAYER}/blobs/{first}"), &[]);
    assert_eq!((f.status, f.error.as_deref()), (200, None));
    assert_eq!(sha256(&f.body), *first);

    let bad = up.miner_layer();
    let blob_path = format!("/v2/{BAD_LAYER}/blobs/{bad}");
    let pushed = std::fs::read(up.layout.path().join("blobs/sha256").join(&bad[7..])).unwrap();
    let cut = fetch(p.addr, &blob_path, &[]);
    eprintln!(
        "miner layer: {} {}; {} of {:?} bytes, then: {:?}",
        cut.status,
        cut.reason,
        cut.body.len(),
        cut.content_length,
        cut.error
    );
    assert_eq!(cut.status, 200);
    assert_eq!(cut.content_length, Some(pushed.len() as u64));
    assert!(
        !cut.body.is_empty() && cut.body.len() < pushed.len(),
        "{} of {} bytes arrived",
        cut.body.len(),
        pushed.len()
    );
    // What came is the blob's head: the upstream's bytes, in order, just not all of them.
    assert!(
        pushed.starts_with(&cut.body),
        "the bytes sent are not the blob's"
    );
    assert!(cut.error.is_some(), "the body ended cleanly");
    let cut_log = wait_for("the cut to be logged", Duration::from_secs(10), || {
        p.requests()
            .into_iter()
            .find(|r| r.path == blob_path && r.method == "GET")
    });
    assert_eq!((cut_log.status, cut_log.outcome.as_str()), (200, "aborted"));
    assert!(
        p.log_text()
            .contains("blob refused mid-stream: tail withheld, response aborted"),
        "{}",
        p.log_text()
    );
    up.assert_gets(&blob_path, 1);

    // The next request for the blob: refused at once, and the upstream is not asked again.
    let again = fetch(p.addr, &blob_path, &[]);
    let message = again.assert_denied("the miner layer again");
    eprintln!(
        "miner layer again: {} {}: {message}",
        again.status, again.reason
    );
    assert!(message.contains("miner.xmrig-strings"), "{message}");
    let v = again.json();
    let rules: Vec<&str> = v["errors"][0]["detail"]["verdict"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert!(rules.contains(&"miner.xmrig-strings"), "{v}");
    up.assert_gets(&blob_path, 1);

    // The image that uses it is refused now too, by tag and by digest.
    let m = fetch(p.addr, &manifest_path, &accept);
    let message = m.assert_denied("the manifest after the cut");
    assert!(message.contains("miner.xmrig-strings"), "{message}");
    let by_digest = format!("/v2/{BAD_LAYER}/manifests/{}", up.bad_layer.manifest_digest);
    fetch(p.addr, &by_digest, &accept).assert_denied("the manifest by digest");

    let err = skopeo_pull(&p.url(), BAD_LAYER).expect_err("skopeo pulled the miner image");
    eprintln!("skopeo on {BAD_LAYER}: {err}");
    assert!(err.contains("denied: blocked by portcullis"), "{err}");
    assert!(err.contains("miner.xmrig-strings"), "{err}");
}

/// One upstream fetch serves every client that asks for a blob at once, but each is judged under
/// its own repository: the miner layer, asked for at the same time under a repository in audit
/// mode and one in enforce mode, reaches the audit client whole and the enforce client never
/// whole (cut, or refused). A blob judged malicious is not kept in the cache either way.
#[test]
fn clients_sharing_a_fetch_are_each_judged_under_their_own_repository() {
    let up = Upstream::start();
    let layout = up.layout.path();
    up.registry
        .push(layout, "bad-layer", "audited/dataproc", "v1");
    up.registry
        .push(layout, "bad-layer", "enforced/dataproc", "v1");
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &up,
        "[[policy.scopes]]\npattern = \"docker.io/audited/**\"\nmode = \"audit\"\n",
    );
    let cache = dir.path().join("cache");
    let p = Portcullis::start(&[
        "--config",
        config.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    let bad = up.miner_layer().to_string();
    let pushed = std::fs::read(layout.join("blobs/sha256").join(&bad[7..])).unwrap();
    let path = |repo: &str| format!("/v2/{repo}/blobs/{bad}");
    let (audited, enforced) = std::thread::scope(|s| {
        let a = s.spawn(|| fetch(p.addr, &path("audited/dataproc"), &[]));
        let e = s.spawn(|| fetch(p.addr, &path("enforced/dataproc"), &[]));
        (a.join().unwrap(), e.join().unwrap())
    });
    eprintln!(
        "audit client: {} {} bytes {:?}; enforce client: {} {} bytes {:?}",
        audited.status,
        audited.body.len(),
        audited.error,
        enforced.status,
        enforced.body.len(),
        enforced.error
    );
    assert!(
        enforced.body.len() < pushed.len() || enforced.status == 403,
        "the enforce client got the whole miner layer"
    );
    // The audit client is served whole, at once or (when the enforce client's fetch was the one
    // both read, and it was cut) on its retry.
    let audited = if audited.error.is_none() && audited.status == 200 {
        audited
    } else {
        fetch(p.addr, &path("audited/dataproc"), &[])
    };
    assert_eq!((audited.status, audited.error.as_deref()), (200, None));
    assert_eq!(audited.body, pushed, "the audit client got the layer whole");
    // Served under audit, refused under enforce, kept by neither.
    fetch(p.addr, &path("enforced/dataproc"), &[]).assert_denied("the miner layer, enforced");
    let kept = cache.join("blobs/sha256").join(&bad[7..]);
    assert!(!kept.exists(), "the miner layer was cached");
    let again = fetch(p.addr, &path("audited/dataproc"), &[]);
    assert_eq!(again.body, pushed);
    assert!(
        !kept.exists(),
        "the miner layer was cached after an audit-mode read"
    );
}

/// Strict mode: every layer is judged before the manifest is answered, so the first request for
/// the miner image's manifest is already refused, and not a byte of a blob reaches a client. The
/// proxy itself read the layers from the upstream to judge them.
#[test]
fn strict_mode_refuses_the_manifest_before_any_blob_is_asked_for() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &up, "[policy]\nstrict = true\n");
    let p = Portcullis::start(&["--config", config.to_str().unwrap()]);
    let manifest_path = format!("/v2/{BAD_LAYER}/manifests/v1");
    let m = fetch(
        p.addr,
        &manifest_path,
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
    );
    let message = m.assert_denied("the first manifest request in strict mode");
    eprintln!("strict: {} {} after {:?}", m.status, m.reason, m.elapsed);
    assert!(message.contains("miner.xmrig-strings"), "{message}");
    let reqs = p.requests();
    assert_eq!(reqs.len(), 1, "{}", lines(&reqs));
    assert_eq!(reqs[0].line(), format!("GET {manifest_path} -> 403"));
    // The proxy judged both layers upstream before it answered.
    for d in &up.bad_layer.layer_digests {
        up.assert_gets(&format!("/v2/{BAD_LAYER}/blobs/{d}"), 1);
    }

    // skopeo: refused at the manifest, asks for no blob.
    let err = skopeo_pull(&p.url(), BAD_LAYER).expect_err("skopeo pulled the miner image");
    assert!(err.contains("denied: blocked by portcullis"), "{err}");
    assert!(err.contains("miner.xmrig-strings"), "{err}");
    let reqs = p.requests();
    assert!(
        reqs.iter().all(|r| !r.path.contains("/blobs/")),
        "{}",
        lines(&reqs)
    );
    // Nothing was fetched upstream twice: the layer verdicts were reused.
    for d in &up.bad_layer.layer_digests {
        up.assert_gets(&format!("/v2/{BAD_LAYER}/blobs/{d}"), 1);
    }

    // A clean image passes strict mode, byte for byte.
    let pulled = skopeo_pull(&p.url(), CLEAN).unwrap_or_else(|e| panic!("{e}\n{}", p.log_text()));
    assert_same_blobs(up.layout.path(), pulled.path(), &up.clean);
}

/// Audit mode serves the miner images (config and layer) byte for byte and writes the block it
/// would have made to the audit log: decision `block`, mode `audit`, the repository and the rule
/// ids. In enforce mode the refusal is in the audit log too, as mode `enforce`.
#[test]
fn audit_mode_serves_and_records_what_enforce_mode_refuses() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let config = config_file(
        dir.path(),
        &up,
        &format!(
            "[policy]\nmode = \"audit\"\n\n[audit]\npath = \"{}\"\n",
            audit.display()
        ),
    );
    let p = Portcullis::start(&["--config", config.to_str().unwrap()]);
    for (repo, image) in [(BAD_CONFIG, &up.bad_config), (BAD_LAYER, &up.bad_layer)] {
        let pulled = skopeo_pull(&p.url(), repo)
            .unwrap_or_else(|e| panic!("audit mode refused {repo}: {e}\n{}", p.log_text()));
        assert_same_blobs(up.layout.path(), pulled.path(), image);
    }
    let lines = audit_lines(&audit);
    let find = |repo: &str, subject: &str, rule: &str| {
        lines
            .iter()
            .find(|l| {
                l["repository"] == repo
                    && l["subject"] == subject
                    && l["decision"] == "block"
                    && rules_of(l).iter().any(|r| r == rule)
            })
            .unwrap_or_else(|| {
                panic!("no {subject} block of {repo} for {rule} in the audit log: {lines:#?}")
            })
    };
    let config_block = find(BAD_CONFIG, "manifest", "miner.stratum-url");
    eprintln!("audit: {config_block}");
    assert_eq!(config_block["mode"], "audit");
    assert_eq!(config_block["upstream"], "docker.io");
    assert_eq!(config_block["reference"], "v1");
    assert_eq!(
        config_block["digest"],
        up.bad_config.manifest_digest.as_str()
    );
    assert!(config_block["score"].as_f64().unwrap() >= 100.0);
    assert!(rules_of(config_block).contains(&"miner.monero-wallet".to_string()));
    let layer_block = find(BAD_LAYER, "blob", "miner.xmrig-strings");
    assert_eq!(layer_block["mode"], "audit");
    assert_eq!(layer_block["digest"], up.miner_layer());
    // Nothing of the clean image is a block.
    let pulled = skopeo_pull(&p.url(), CLEAN).unwrap();
    assert_same_blobs(up.layout.path(), pulled.path(), &up.clean);
    assert!(
        audit_lines(&audit)
            .iter()
            .all(|l| l["repository"] != CLEAN || l["decision"] != "block"),
        "{:#?}",
        audit_lines(&audit)
    );

    // Enforce mode, the same trail: the refusal is recorded as enforced.
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let config = config_file(
        dir.path(),
        &up,
        &format!(
            "[policy]\nmode = \"enforce\"\n\n[audit]\npath = \"{}\"\n",
            audit.display()
        ),
    );
    let p = Portcullis::start(&["--config", config.to_str().unwrap()]);
    let err = skopeo_pull(&p.url(), BAD_CONFIG).expect_err("enforce mode served the miner");
    assert!(err.contains("denied: blocked by portcullis"), "{err}");
    let lines = audit_lines(&audit);
    let enforced = lines
        .iter()
        .find(|l| l["repository"] == BAD_CONFIG && l["decision"] == "block")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    eprintln!("audit: {enforced}");
    assert_eq!(enforced["mode"], "enforce");
    assert_eq!(enforced["subject"], "manifest");
    assert!(rules_of(enforced).contains(&"miner.stratum-url".to_string()));
}

/// `portcullis override add`, as an operator runs it: on the data dir of a stopped proxy.
fn override_add(data: &Path, args: &[&str]) -> String {
    let out = Command::new(PORTCULLIS)
        .args(["override", "add"])
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "override add {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Overrides beat verdicts: an `--allow` on a refused miner image's repository lets it through
/// byte for byte, stored block verdicts and all (the config miner, and the layer miner whose
/// layer was cut mid-stream before and is streamed whole now), and a `--deny` on the clean one
/// refuses it with the override's reason. Added with the proxy stopped, read by the next proxy on
/// that data dir.
#[test]
fn overrides_allow_a_blocked_image_and_deny_a_clean_one() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let upstream = up.arg();
    let args = ["--upstream", upstream.as_str()];

    let p = Portcullis::start_in(&data, &args);
    for repo in [BAD_CONFIG, BAD_LAYER] {
        skopeo_pull(&p.url(), repo).expect_err("a miner image was pulled");
    }
    let err = skopeo_pull(&p.url(), BAD_CONFIG).expect_err("the miner image was pulled");
    assert!(err.contains("denied: blocked by portcullis"), "{err}");
    let err = skopeo_pull(&p.url(), BAD_LAYER).expect_err("the miner image was pulled");
    assert!(err.contains("miner.xmrig-strings"), "{err}");
    let pulled = skopeo_pull(&p.url(), CLEAN).unwrap();
    assert_same_blobs(up.layout.path(), pulled.path(), &up.clean);
    p.stop();

    for repo in [BAD_CONFIG, BAD_LAYER] {
        let out = override_add(
            &data,
            &[
                "--repo",
                &format!("docker.io/{repo}"),
                "--allow",
                "--reason",
                "test",
                "--author",
                "t",
            ],
        );
        assert!(out.contains("allow"), "{out}");
    }
    let out = override_add(
        &data,
        &[
            "--repo",
            &format!("docker.io/{CLEAN}"),
            "--deny",
            "--reason",
            "withdrawn by the security team",
            "--author",
            "t",
        ],
    );
    assert!(out.contains("deny"), "{out}");

    let p = Portcullis::start_in(&data, &args);
    let pulled = skopeo_pull(&p.url(), BAD_CONFIG)
        .unwrap_or_else(|e| panic!("the allowed image was refused: {e}\n{}", p.log_text()));
    assert_same_blobs(up.layout.path(), pulled.path(), &up.bad_config);
    let pulled = skopeo_pull(&p.url(), BAD_LAYER)
        .unwrap_or_else(|e| panic!("the allowed image was refused: {e}\n{}", p.log_text()));
    assert_same_blobs(up.layout.path(), pulled.path(), &up.bad_layer);
    let err = skopeo_pull(&p.url(), CLEAN).expect_err("the denied image was pulled");
    eprintln!("skopeo on the denied {CLEAN}: {err}");
    assert!(err.contains("denied: blocked by portcullis"), "{err}");
    assert!(
        err.contains("denied by override 3: withdrawn by the security team"),
        "{err}"
    );
    // Its blobs, though cached as clean, are refused too.
    let d = &up.clean.layer_digests[0];
    let b = fetch(p.addr, &format!("/v2/{CLEAN}/blobs/{d}"), &[]);
    let message = b.assert_denied("a blob of the denied repository");
    assert!(
        message.contains("withdrawn by the security team"),
        "{message}"
    );
}

/// Verdicts are kept in the data dir: after a miner layer was cut mid-stream (skopeo's first
/// pull fails on it), a restarted proxy refuses the layer and the image at once, and never asks
/// the upstream for that layer again.
#[test]
fn a_verdict_survives_a_restart() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let upstream = up.arg();
    let args = ["--upstream", upstream.as_str()];
    let bad = up.miner_layer().to_string();
    let blob_path = format!("/v2/{BAD_LAYER}/blobs/{bad}");

    let p = Portcullis::start_in(&data, &args);
    let err = skopeo_pull(&p.url(), BAD_LAYER).expect_err("skopeo pulled the miner image");
    eprintln!("skopeo, first pull of {BAD_LAYER}: {err}");
    // skopeo sees a body that ended early, or (when the fill judged the small layer before this
    // client's first byte went out) the refusal itself.
    assert!(
        err.contains("unexpected EOF") || err.contains("403"),
        "{err}"
    );
    let reqs = p.requests();
    assert!(
        reqs.iter().any(|r| r.path == blob_path
            && ((r.status == 200 && r.outcome == "aborted") || r.status == 403)),
        "the layer was neither cut nor refused:{}",
        lines(&reqs)
    );
    // Each 200 went upstream; a retry after the cut would have been a 403.
    let fetched = reqs
        .iter()
        .filter(|r| r.path == blob_path && r.status == 200)
        .count();
    p.stop();
    up.assert_gets(&blob_path, fetched);

    let p = Portcullis::start_in(&data, &args);
    let b = fetch(p.addr, &blob_path, &[]);
    let message = b.assert_denied("the miner layer after a restart");
    assert!(message.contains("miner.xmrig-strings"), "{message}");
    let m = fetch(
        p.addr,
        &format!("/v2/{BAD_LAYER}/manifests/v1"),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
    );
    let message = m.assert_denied("the miner image after a restart");
    assert!(message.contains("miner.xmrig-strings"), "{message}");
    let err = skopeo_pull(&p.url(), BAD_LAYER).expect_err("skopeo pulled the miner image");
    assert!(err.contains("denied: blocked by portcullis"), "{err}");
    assert!(err.contains("miner.xmrig-strings"), "{err}");
    up.assert_gets(&blob_path, fetched);
    let reqs = p.requests();
    assert!(
        reqs.iter().all(|r| r.repo != BAD_LAYER || r.status == 403),
        "the restarted proxy served the image:{}",
        lines(&reqs)
    );
}

/// containerd 1.6 with portcullis as `server` and only `[host]` (no way around it): the miner
/// image's tag is answered 405 on containerd's HEAD, containerd retries with GET and gets the
/// 403 whose status line carries the reason, and `ctr` prints it; the clean image pulls whole.
#[test]
fn ctr_is_refused_the_miner_image_with_the_reason() {
    let up = Upstream::start();
    let p = Portcullis::start(&["--upstream", &up.arg()]);
    let hosts = tempfile::tempdir().unwrap();
    let url = p.url();
    write_hosts_toml(
        hosts.path(),
        "docker.io",
        &url,
        &[(&url, &["pull", "resolve"])],
    );
    let ctrd = Containerd::start();

    let reference = format!("docker.io/{BAD_CONFIG}:v1");
    let err = ctrd
        .pull(hosts.path(), &reference, &[])
        .expect_err("ctr pulled the miner image");
    eprintln!("ctr on {BAD_CONFIG}: {err}");
    let reqs = p.requests();
    eprintln!("portcullis saw:{}", lines(&reqs));
    // ctr prints the status line of the GET it retried with, the rule id first.
    assert!(
        err.contains(&format!(
            "failed with status code [manifests v1]: 403 Blocked by portcullis: \
             miner.wallet-with-pool: docker.io/{BAD_CONFIG}@{}",
            up.bad_config.manifest_digest
        )),
        "{err}"
    );
    assert!(ctrd.image_digest(&reference).is_none());

    // HEAD 405, then GET 403: once with portcullis as the `[host]`, once as the `server`; the
    // tag is never resolved, so nothing else is asked for.
    let manifest = format!("/v2/{BAD_CONFIG}/manifests/v1?ns=docker.io");
    let want: Vec<String> = ["HEAD", "GET", "HEAD", "GET"]
        .iter()
        .zip([405, 403, 405, 403])
        .map(|(m, s)| format!("{m} {manifest} -> {s}"))
        .collect();
    assert_eq!(reqs.iter().map(Logged::line).collect::<Vec<_>>(), want);

    // The miner layer: cut mid-stream on the first fetch.
    let before = p.requests().len();
    let reference = format!("docker.io/{BAD_LAYER}:v1");
    let err = ctrd
        .pull(hosts.path(), &reference, &[])
        .expect_err("ctr pulled the miner layer");
    eprintln!("ctr on {BAD_LAYER}: {err}");
    let reqs = p.requests().split_off(before);
    eprintln!("portcullis saw:{}", lines(&reqs));
    // containerd reports the cut, or, when its reader re-opened the broken blob (a new GET, which
    // is how containerd's httpReadSeeker recovers from a failed read), the 403 that got, with
    // the layer's rule: which of the two depends on where the cut caught its read.
    assert!(
        err.contains("ctr: failed to read expected number of bytes: unexpected EOF")
            || err.contains("403 Blocked by portcullis: ") && err.contains("[miner.xmrig-strings]"),
        "{err}"
    );
    let layer = format!("/v2/{BAD_LAYER}/blobs/{}", up.miner_layer());
    let tries: Vec<(u16, &str)> = reqs
        .iter()
        .filter(|r| r.path == layer)
        .map(|r| (r.status, r.outcome.as_str()))
        .collect();
    assert_eq!(tries.first(), Some(&(200, "aborted")), "{}", lines(&reqs));
    assert!(tries[1..].iter().all(|t| t.0 == 403), "{}", lines(&reqs));
    assert!(ctrd.image_digest(&reference).is_none());
    // Pulled again, it is refused at the tag, with the layer's rule in the status line.
    let err = ctrd
        .pull(hosts.path(), &reference, &[])
        .expect_err("ctr pulled the miner layer");
    eprintln!("ctr on {BAD_LAYER} again: {err}");
    assert!(
        err.contains(
            "failed with status code [manifests v1]: 403 Blocked by portcullis: miner.xmrig-strings: "
        ),
        "{err}"
    );

    let reference = format!("docker.io/{CLEAN}:v1");
    ctrd.pull(hosts.path(), &reference, &[])
        .unwrap_or_else(|e| panic!("{e}\n{}", p.log_text()));
    assert_eq!(
        ctrd.image_digest(&reference).as_deref(),
        Some(up.clean.manifest_digest.as_str())
    );
    assert!(ctrd.image_ready(&reference));
    let pushed = layout_blobs(up.layout.path());
    for d in &up.clean.layer_digests {
        assert!(ctrd.content(d).unwrap() == pushed[d], "{d}");
    }
}

/// dockerd 20.10 with portcullis as its `registry-mirrors` entry: the miner image's tag pull is
/// answered with the synthetic manifest whose config media type names the rule; dockerd stops
/// there (no fallback to Docker Hub) and the CLI prints the media type. The clean image pulls.
#[test]
fn docker_is_refused_the_miner_image_without_falling_back() {
    let up = Upstream::start();
    let p = Portcullis::start(&["--upstream", &up.arg()]);
    let d = Dockerd::with_mirror(&p.url());

    let err = d
        .docker(&["pull", &format!("{BAD_CONFIG}:v1")])
        .expect_err("docker pulled the miner image");
    eprintln!("docker pull {BAD_CONFIG}:v1: {err}");
    let log = d.log_text();
    let stop: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Not continuing with pull after error"))
        .collect();
    eprintln!("dockerd: {stop:?}");
    eprintln!("portcullis saw:{}", lines(&p.requests()));
    assert!(
        err.contains("unsupported media type application/vnd.portcullis.blocked.miner."),
        "{err}"
    );
    assert_eq!(stop.len(), 1, "{}", d.log_tail(30));
    assert!(
        stop[0].contains("unsupported media type application/vnd.portcullis.blocked.miner."),
        "{}",
        stop[0]
    );
    assert!(
        !log.contains("Attempting next endpoint"),
        "{}",
        d.log_tail(30)
    );
    assert!(!err.contains("registry-1.docker.io"), "{err}");
    assert!(d
        .docker(&["image", "inspect", &format!("{BAD_CONFIG}:v1")])
        .is_err());
    // What dockerd asked: HEAD on the tag, given the synthetic manifest's digest (not the real
    // one), then that manifest by digest; no config, no layer.
    let reqs: Vec<String> = p
        .requests()
        .iter()
        .filter(|r| r.repo == BAD_CONFIG)
        .map(Logged::line)
        .collect();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(
        reqs[0],
        format!("HEAD /v2/{BAD_CONFIG}/manifests/v1 -> 200")
    );
    let synthetic = reqs[1]
        .strip_prefix(&format!("GET /v2/{BAD_CONFIG}/manifests/"))
        .and_then(|r| r.strip_suffix(" -> 200"))
        .unwrap_or_else(|| panic!("{reqs:?}"));
    assert!(synthetic.starts_with("sha256:"), "{reqs:?}");
    assert_ne!(synthetic, up.bad_config.manifest_digest);

    let out = d
        .docker(&["pull", &format!("{CLEAN}:v1")])
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log_tail(30)));
    assert!(
        out.contains(&format!("Digest: {}", up.clean.manifest_digest)),
        "{out}"
    );
    let info = d.inspect_image(&format!("{CLEAN}:v1"));
    assert_eq!(info["Id"], up.clean.config_digest.as_str());
    assert!(!d.log_text().contains("Attempting next endpoint"));
}

/// The verdict behind a refusal is on disk before the client hears of it: a `kill -9` right after
/// the refusal loses nothing, and the restarted proxy refuses from the stored verdict without
/// judging the image again.
#[test]
fn a_refusal_survives_a_kill_right_after_it() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let upstream = up.arg();
    let args = ["--upstream", upstream.as_str()];
    let path = format!("/v2/{BAD_CONFIG}/manifests/v1");
    let accept = [("Accept", "application/vnd.oci.image.manifest.v1+json")];

    let mut p = Portcullis::start_in(&data, &args);
    fetch(p.addr, &path, &accept).assert_denied("the miner config");
    p.child().kill().unwrap(); // SIGKILL, at once
    p.child().wait().unwrap();

    let p = Portcullis::start_in(&data, &args);
    let message = fetch(p.addr, &path, &accept).assert_denied("the miner config after a kill");
    assert!(message.contains("miner."), "{message}");
    let fresh = p
        .log_text()
        .lines()
        .filter(|l| l.contains("inspection decision") && l.contains("\"subject\":\"manifest\""))
        .count();
    assert_eq!(fresh, 0, "the image was judged again: its verdict was lost");
}
