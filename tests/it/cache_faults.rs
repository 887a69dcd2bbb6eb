//! The blob cache under faults: a proxy killed with SIGKILL in the middle of a fill, a cache dir
//! that is full or read-only, a client that leaves a shared fill early, and an upstream that sends
//! the wrong bytes. In every case the pull must still succeed (or fail as it would without a
//! cache), and nothing partial or wrong may ever sit under `<cache>/blobs/`.
//!
//! The upstream is the real `docker-registry` where it can be, and the fault-injecting fake where
//! the fault is the upstream's (a slow or lying body). Cache dirs that must fail are small tmpfs
//! mounts (the suite runs as root), unmounted when the test ends.

use crate::common::fake::{raw_get, Ended, Fake, Fault, RawResponse};
use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A tmpfs mounted on a fresh temp dir; unmounted (then the dir removed) on drop. Declare it
/// before the portcullis that uses it, so the proxy is gone before the unmount.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `mount -t tmpfs -o <options> tmpfs <tmp>`.
    fn mount(options: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t tmpfs -o {options} (the suite runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `mount -o remount,ro`.
    fn remount_read_only(&self) {
        let out = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount ro: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file open there: detach it so the dir can go.
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

/// Every regular file under `dir` (none if it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.map(Result::unwrap) {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// `(path, size)` of every file under `<cache>/tmp/`.
fn temp_files(cache: &Path) -> Vec<(PathBuf, u64)> {
    files_under(&cache.join("tmp"))
        .into_iter()
        .map(|f| {
            let len = std::fs::metadata(&f).map_or(0, |m| m.len());
            (f, len)
        })
        .collect()
}

/// Waits until `<cache>/tmp/` is empty: a fill that failed removes its temp file, maybe a
/// moment after the client's response ended.
fn assert_tmp_empties(cache: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !temp_files(cache).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(temp_files(cache), vec![], "{what}: left in <cache>/tmp/");
}

/// `<cache>/blobs/sha256/<hex>` for `digest`.
fn cached_blob(cache: &Path, digest: &str) -> PathBuf {
    cache
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Every file under `<cache>/blobs/` and `<cache>/manifests/` is whole: its content (for a
/// manifest, what follows the media-type line) hashes to its own name (`sha256/<hex>`). Returns
/// how many there are.
fn assert_cache_is_sound(cache: &Path) -> usize {
    let mut n = 0;
    for kind in ["blobs", "manifests"] {
        for f in files_under(&cache.join(kind)) {
            let hex = f.file_name().unwrap().to_string_lossy().into_owned();
            let alg = f.parent().unwrap().file_name().unwrap().to_string_lossy();
            assert_eq!(alg, "sha256", "{}: not under {kind}/sha256/", f.display());
            let bytes = std::fs::read(&f).unwrap();
            let content = if kind == "manifests" {
                let nl = bytes.iter().position(|&b| b == b'\n');
                &bytes[nl.map_or(0, |i| i + 1)..]
            } else {
                &bytes[..]
            };
            assert_eq!(
                sha256(content),
                format!("sha256:{hex}"),
                "{} does not hash to its name: a partial or wrong file was committed",
                f.display()
            );
            n += 1;
        }
    }
    n
}

/// The JSON lines of portcullis' log whose message is `message`.
fn log_events(p: &Portcullis, message: &str) -> Vec<Value> {
    p.log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == message)
        .collect()
}

/// `skopeo copy docker://<addr>/<repo>:v1 oci:<tmp>:out`: the layout, or skopeo's stderr.
fn skopeo_pull(addr: SocketAddr, repo: &str) -> Result<tempfile::TempDir, String> {
    let dest = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--preserve-digests",
        &format!("docker://{addr}/{repo}:v1"),
        &format!("oci:{}:out", dest.path().display()),
    ])
    .map(|_| dest)
}

/// The pulled layout holds `image`'s manifest, config and layers, each the very bytes written
/// into `source`.
fn assert_same_blobs(source: &Path, pulled: &Path, image: &image::Written) {
    let src = layout_blobs(source);
    let got = layout_blobs(pulled);
    for d in [&image.manifest_digest, &image.config_digest]
        .into_iter()
        .chain(&image.layer_digests)
    {
        let got = got
            .get(d)
            .unwrap_or_else(|| panic!("{d} missing from the pull"));
        assert_eq!(sha256(got), *d, "pulled {d} does not hash to its digest");
        assert!(
            src.get(d) == Some(got),
            "pulled {d} differs from the source"
        );
    }
}

/// Sends `GET path` on a new connection and reads what arrives within `for_`, without waiting
/// for the end; returns the open stream and the bytes read (head and body).
fn start_get(addr: SocketAddr, path: &str, for_: Duration) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + for_;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {} // read timeout: keep waiting until `for_` is up
        }
    }
    (s, got)
}

/// The answer was not the whole blob: an error status, or a 200 whose body ended short.
fn assert_aborted(r: &RawResponse, len: usize, what: &str) {
    let whole = r.status == 200 && matches!(r.ended, Ended::Complete) && r.body.len() == len;
    assert!(
        !whole,
        "{what}: the client got the whole blob ({} bytes, {:?})",
        r.body.len(),
        r.ended
    );
    if r.status == 200 {
        assert!(
            !matches!(r.ended, Ended::Complete),
            "{what}: a 200 that reads as complete with {} of {len} bytes",
            r.body.len()
        );
    } else {
        assert!(r.status >= 500, "{what}: status {}", r.status);
    }
}

/// A config whose entrypoint runs a miner against a pool: blocked at its manifest.
fn miner_image() -> Image {
    Image::new()
        .layer(Layer::new(Compression::Gzip).file("etc/os-release", "ID=fixture\n"))
        .entrypoint(&[
            "/usr/local/bin/xmrig",
            "-o",
            "stratum+tcp://pool.supportxmr.com:3333",
            "--donate-level=0",
        ])
}

/// How many image verdicts portcullis made afresh (not read from its store): its "inspection
/// decision" log lines about a manifest.
fn fresh_manifest_decisions(p: &Portcullis) -> usize {
    log_events(p, "inspection decision")
        .iter()
        .filter(|e| e["subject"] == "manifest")
        .count()
}

/// `GET /v2/<repo>/manifests/v1` with the OCI Accept header: (status, body).
fn get_manifest(p: &Portcullis, repo: &str) -> (u16, String) {
    let r = http()
        .get(format!("{}/v2/{repo}/manifests/v1", p.url()))
        .header("Accept", OCI_MANIFEST)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// 1. SIGKILL in the middle of a fill.

/// Guards against a crash leaving its mark: a proxy killed with SIGKILL while a 4 MiB layer is
/// being filled leaves a partial temp file; the restarted proxy sweeps `<cache>/tmp/` ("cache
/// swept", removed ≥ 1), has nothing partial under `blobs/`, still knows the verdict it made
/// before the kill (the miner image is refused without being judged again), pulls
/// the image whole, and leaves a verdict store that `portcullis override list` opens.
#[test]
fn sigkill_mid_fill_leaves_no_partial_blob_and_a_working_store() {
    let fake = Fake::start();
    let layout = tempfile::tempdir().unwrap();
    let big = Image::new()
        .layer(Layer::new(Compression::None).random_file("opt/big.bin", 4 << 20, 11))
        .write(layout.path(), Some("big"));
    let miner = miner_image().write(layout.path(), Some("miner"));
    fake.image("library/big", "v1", layout.path(), &big);
    fake.image("library/miner", "v1", layout.path(), &miner);
    let layer = &big.layer_digests[0];
    let layer_path = format!("/v2/library/big/blobs/{layer}");
    // About 6.4 s for the layer: 64 KiB every 100 ms.
    fake.fault(
        &layer_path,
        Fault::Pace {
            chunk: 64 * 1024,
            delay: Duration::from_millis(100),
        },
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cache = data.join("cache"); // the default: <data-dir>/cache
    let upstream = format!("docker.io={}", fake.url());
    let args = ["--upstream", upstream.as_str()];

    let mut p = Portcullis::start_in(&data, &args);
    // A verdict made before the kill.
    let (status, body) = get_manifest(&p, "miner");
    assert_eq!(status, 403, "the miner image was not refused: {body}");
    assert!(body.contains("DENIED") && body.contains("miner."), "{body}");
    assert_eq!(
        fresh_manifest_decisions(&p),
        1,
        "the miner image was judged there and then"
    );

    // skopeo pulls `big`; the manifest and config arrive, the layer crawls in.
    let out = tempfile::tempdir().unwrap();
    let mut client = Proc {
        child: Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/big:v1", p.addr))
            .arg(format!("oci:{}:out", out.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        name: "skopeo",
    };
    let partial = wait_for(
        "a partial fill of the layer in <cache>/tmp/",
        Duration::from_secs(20),
        || {
            temp_files(&cache)
                .into_iter()
                .find(|(_, len)| *len >= 256 * 1024)
        },
    );
    assert!(
        !cached_blob(&cache, layer).exists(),
        "the layer was committed before it was all fetched"
    );
    p.child().kill().unwrap(); // SIGKILL
    p.child().wait().unwrap();
    assert!(
        partial.0.exists(),
        "the kill did not leave the partial file {} behind; the test proves nothing",
        partial.0.display()
    );
    assert!(
        !cached_blob(&cache, layer).exists(),
        "the killed proxy committed the layer"
    );
    let _ = client.child.kill();
    let _ = client.child.wait();
    drop(p);

    // The fake is quick from now on.
    fake.fault(&layer_path, Fault::Delay(Duration::ZERO));
    let p = Portcullis::start_in(&data, &args);
    let swept = wait_for(
        "a \"cache swept\" log line",
        Duration::from_secs(10),
        || log_events(&p, "cache swept").pop(),
    );
    let removed = swept["removed"].as_u64();
    assert!(
        removed.is_some_and(|n| n >= 1),
        "cache swept without removed >= 1: {swept}"
    );
    assert_eq!(temp_files(&cache), vec![], "<cache>/tmp/ after start-up");
    let committed = assert_cache_is_sound(&cache);
    eprintln!(
        "after the kill: {committed} whole files in the cache, removed {removed:?} from tmp/"
    );

    // The verdict store opened and kept its verdict: refused again, from the stored verdict (a
    // verdict made afresh logs "inspection decision").
    let (status, body) = get_manifest(&p, "miner");
    assert_eq!(status, 403, "the miner image after the restart: {body}");
    assert!(body.contains("DENIED") && body.contains("miner."), "{body}");
    assert_eq!(
        fresh_manifest_decisions(&p),
        0,
        "the restarted proxy judged the miner image again: its verdict was lost"
    );
    assert!(
        !cached_blob(&cache, &miner.config_digest).exists(),
        "a blocked image's config was kept in the cache"
    );

    let pulled = skopeo_pull(p.addr, "big").unwrap_or_else(|e| panic!("{e}\n{}", p.log_text()));
    assert_same_blobs(layout.path(), pulled.path(), &big);
    wait_for("the layer to be committed", Duration::from_secs(10), || {
        cached_blob(&cache, layer).exists().then_some(())
    });
    assert!(assert_cache_is_sound(&cache) > committed);
    assert_eq!(
        temp_files(&cache),
        vec![],
        "<cache>/tmp/ after a whole pull"
    );

    p.stop();
    let out = Command::new(PORTCULLIS)
        .args(["override", "list", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "override list on the store after a SIGKILL and a restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// 2. A cache dir that cannot be written.

/// An upstream (the real registry) holding `library/big:v1`: one 3 MiB random layer.
fn big_upstream() -> (Registry, tempfile::TempDir, image::Written) {
    let registry = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let img = Image::new()
        .layer(Layer::new(Compression::Gzip).random_file("opt/big.bin", 3 << 20, 21))
        .write(layout.path(), Some("big"));
    registry.push(layout.path(), "big", "library/big", "v1");
    (registry, layout, img)
}

/// Pulls `big` with skopeo and checks it byte for byte.
fn pull_big_whole(p: &Portcullis, layout: &Path, img: &image::Written, what: &str) {
    let pulled = skopeo_pull(p.addr, "big")
        .unwrap_or_else(|e| panic!("{what}: the pull failed: {e}\n{}", p.log_text()));
    assert_same_blobs(layout, pulled.path(), img);
}

/// The ERROR line a failed cache write logs, and the counter.
fn assert_write_failure_reported(p: &Portcullis, what: &str) {
    let errors = log_events(p, "cache write failed: serving uncached");
    assert!(
        !errors.is_empty(),
        "{what}: no \"cache write failed: serving uncached\" in the log:\n{}",
        p.log_text()
    );
    assert!(
        errors.iter().all(|e| e["level"] == "ERROR"),
        "{what}: {errors:?}"
    );
    let n = p.metrics().get("portcullis_cache_write_errors_total", &[]);
    assert!(
        n.is_some_and(|n| n >= 1.0),
        "{what}: portcullis_cache_write_errors_total = {n:?}"
    );
}

/// portcullis in front of `registry`, caching in `cache/` on the tmpfs.
fn proxy_caching_in(fs: &Tmpfs, registry: &Registry) -> (std::path::PathBuf, Portcullis) {
    let cache = fs.path().join("cache");
    let p = Portcullis::start(&[
        "--upstream",
        &format!("docker.io={}", registry.url()),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    (cache, p)
}

/// Guards against ENOSPC failing a pull: the cache is a 512 KiB tmpfs and the layer 3 MiB, so
/// its fill runs out of space part-way. The pull succeeds byte for byte (twice), the failure is
/// logged and counted, the partial temp file is removed and nothing partial is committed.
#[test]
fn a_full_cache_dir_serves_uncached() {
    let (registry, layout, img) = big_upstream();
    let fs = Tmpfs::mount("size=512k");
    let (cache, p) = proxy_caching_in(&fs, &registry);
    pull_big_whole(&p, layout.path(), &img, "first pull, cache full");
    assert_write_failure_reported(&p, "ENOSPC");
    assert!(!cached_blob(&cache, &img.layer_digests[0]).exists());
    assert_tmp_empties(&cache, "after ENOSPC");
    assert_cache_is_sound(&cache);

    pull_big_whole(&p, layout.path(), &img, "second pull, cache full");
    assert!(!cached_blob(&cache, &img.layer_digests[0]).exists());
    assert_tmp_empties(&cache, "after the second pull");
    assert_cache_is_sound(&cache);
}

/// Guards against EROFS failing a pull: the proxy lays out its cache on a tmpfs which is then
/// remounted read-only under it. Two pulls succeed byte for byte; the failure is logged and
/// counted.
#[test]
fn a_read_only_cache_dir_serves_uncached() {
    let (registry, layout, img) = big_upstream();
    let fs = Tmpfs::mount("size=64m");
    let (cache, p) = proxy_caching_in(&fs, &registry);
    fs.remount_read_only();
    assert!(
        std::fs::write(fs.path().join("probe"), b"x").is_err(),
        "the tmpfs is still writable"
    );
    pull_big_whole(&p, layout.path(), &img, "first pull, cache read-only");
    assert_write_failure_reported(&p, "EROFS");
    pull_big_whole(&p, layout.path(), &img, "second pull, cache read-only");
    assert!(files_under(&cache.join("blobs")).is_empty());
}

/// A cache directory that is read-only from the start (the cache cannot even be opened): the
/// proxy starts anyway, says so, and serves every pull uncached.
#[test]
fn a_cache_dir_read_only_at_start_up_serves_uncached() {
    let (registry, layout, img) = big_upstream();
    let fs = Tmpfs::mount("size=64m");
    fs.remount_read_only();
    let (cache, p) = proxy_caching_in(&fs, &registry);
    assert!(
        !cache.exists(),
        "the cache dir was created on a read-only mount"
    );
    assert_write_failure_reported(&p, "EROFS at start-up");
    pull_big_whole(&p, layout.path(), &img, "first pull, no cache");
    pull_big_whole(&p, layout.path(), &img, "second pull, no cache");
    // Both pulls went upstream for the layer.
    let layer_gets = registry
        .proxy_requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&img.layer_digests[0]))
        .count();
    assert_eq!(layer_gets, 2);
}

// ---------------------------------------------------------------------------------------------
// 3. Single flight when a client leaves.

/// A 2 MiB blob served slowly (64 KiB every 80 ms: about 2.5 s) by the fake, and a proxy.
fn slow_blob(seed: u64) -> (Fake, Portcullis, Vec<u8>, String) {
    let fake = Fake::start();
    let blob = noise(2 << 20, seed);
    let digest = fake.blob("library/slow", &blob);
    fake.fault(
        &format!("/v2/library/slow/blobs/{digest}"),
        Fault::Pace {
            chunk: 64 * 1024,
            delay: Duration::from_millis(80),
        },
    );
    let p = Portcullis::start(&["--upstream", &format!("docker.io={}", fake.url())]);
    (fake, p, blob, digest)
}

/// Guards against one client's disconnect cancelling a fill others share: A and B ask for the
/// same slow blob at once, A leaves early; B still gets the whole blob, the upstream was asked
/// once, and then C gets it from the cache without the upstream.
#[test]
fn a_client_leaving_a_shared_fill_does_not_cut_the_others() {
    let (fake, p, blob, digest) = slow_blob(31);
    let upstream_path = format!("/v2/library/slow/blobs/{digest}");
    let path = format!("/v2/slow/blobs/{digest}");
    let cache = p.data.join("cache");

    // A reads what arrives in its first 600 ms, then stops reading (its connection stays open).
    let a = {
        let (addr, path) = (p.addr, path.clone());
        std::thread::spawn(move || start_get(addr, &path, Duration::from_millis(600)))
    };
    wait_for("the upstream fetch", Duration::from_secs(10), || {
        (fake.requests(&upstream_path) > 0).then_some(())
    });
    let b = {
        let (addr, path) = (p.addr, path.clone());
        std::thread::spawn(move || raw_get(addr, &path, Duration::from_secs(30)))
    };
    wait_for("B to join A's fill", Duration::from_secs(10), || {
        p.metrics()
            .get("portcullis_singleflight_joins_total", &[])
            .is_some_and(|n| n >= 1.0)
            .then_some(())
    });
    // A leaves.
    let (a_stream, a_bytes) = a.join().unwrap();
    assert!(
        a_bytes.len() < blob.len(),
        "A got {} bytes before leaving: it did not leave early",
        a_bytes.len()
    );
    assert!(
        !b.is_finished(),
        "B was done before A left; the test proves nothing"
    );
    let _ = a_stream.shutdown(std::net::Shutdown::Both);
    drop(a_stream);

    let b = b.join().unwrap();
    assert_eq!(b.status, 200);
    assert!(
        matches!(b.ended, Ended::Complete),
        "B: {:?} after {} bytes",
        b.ended,
        b.body.len()
    );
    assert!(b.body == blob, "B got the wrong bytes");
    assert_eq!(fake.requests(&upstream_path), 1, "{:?}", fake.request_log());

    wait_for("the blob to be committed", Duration::from_secs(10), || {
        cached_blob(&cache, &digest).exists().then_some(())
    });
    let c = raw_get(p.addr, &path, Duration::from_secs(30));
    assert!(matches!(c.ended, Ended::Complete) && c.body == blob, "C");
    assert_eq!(
        fake.requests(&upstream_path),
        1,
        "C went upstream: {:?}",
        fake.request_log()
    );
    assert_cache_is_sound(&cache);
}

/// Guards against a fill that dies with its only client: A asks for a slow blob and leaves at
/// once; the fill runs on, the blob is committed, and the next request is served from the cache
/// with the upstream asked only once.
#[test]
fn a_fill_runs_on_when_its_only_client_leaves() {
    let (fake, p, blob, digest) = slow_blob(32);
    let upstream_path = format!("/v2/library/slow/blobs/{digest}");
    let path = format!("/v2/slow/blobs/{digest}");
    let cache = p.data.join("cache");

    let (stream, got) = start_get(p.addr, &path, Duration::from_millis(400));
    assert!(got.len() < blob.len());
    drop(stream);
    assert_eq!(fake.requests(&upstream_path), 1);

    wait_for(
        "the abandoned fill to be committed",
        Duration::from_secs(20),
        || cached_blob(&cache, &digest).exists().then_some(()),
    );
    assert_eq!(sha256_file(&cached_blob(&cache, &digest)), digest);
    let r = raw_get(p.addr, &path, Duration::from_secs(30));
    assert!(matches!(r.ended, Ended::Complete) && r.body == blob);
    assert_eq!(fake.requests(&upstream_path), 1, "{:?}", fake.request_log());
}

// ---------------------------------------------------------------------------------------------
// 4. Wrong bytes from the upstream.

/// Guards against committing (and so serving for ever) bytes that are not the digest: the fake
/// serves a 1 MiB blob with one byte changed near its end. The client's answer is aborted,
/// nothing is committed or left in tmp/, and the next request goes upstream again; once the
/// upstream serves the right bytes, they are fetched, committed and then served from the cache.
#[test]
fn wrong_upstream_bytes_are_never_committed() {
    let fake = Fake::start();
    let real = noise(1 << 20, 41);
    let digest = sha256(&real);
    let mut wrong = real.clone();
    let at = wrong.len() - 10;
    wrong[at] ^= 0xff;
    fake.blob_as("library/liar", &digest, &wrong);
    let upstream_path = format!("/v2/library/liar/blobs/{digest}");
    let path = format!("/v2/liar/blobs/{digest}");
    let p = Portcullis::start(&["--upstream", &format!("docker.io={}", fake.url())]);
    let cache = p.data.join("cache");

    let mut fetches = 0;
    for attempt in 1..=2 {
        let what = format!("wrong bytes, request {attempt}");
        let r = raw_get(p.addr, &path, Duration::from_secs(30));
        assert_aborted(&r, real.len(), &what);
        if r.status == 200 {
            assert!(wrong.starts_with(&r.body), "{what}: not a prefix");
        }
        assert!(
            fake.requests(&upstream_path) > fetches,
            "{what}: a blob that failed its digest was not fetched again: {:?}",
            fake.request_log()
        );
        fetches = fake.requests(&upstream_path);
        assert_tmp_empties(&cache, &what);
        assert!(
            !cached_blob(&cache, &digest).exists(),
            "{what}: the wrong bytes were committed"
        );
        assert_cache_is_sound(&cache);
    }

    // The upstream is fixed: the blob is fetched once more and kept.
    fake.blob_as("library/liar", &digest, &real);
    let r = raw_get(p.addr, &path, Duration::from_secs(30));
    assert!(
        r.status == 200 && matches!(r.ended, Ended::Complete) && r.body == real,
        "the right bytes: {} {:?} {} bytes",
        r.status,
        r.ended,
        r.body.len()
    );
    assert!(fake.requests(&upstream_path) > fetches);
    fetches = fake.requests(&upstream_path);
    wait_for("the blob to be committed", Duration::from_secs(10), || {
        cached_blob(&cache, &digest).exists().then_some(())
    });
    assert_eq!(sha256_file(&cached_blob(&cache, &digest)), digest);
    let r = raw_get(p.addr, &path, Duration::from_secs(30));
    assert!(matches!(r.ended, Ended::Complete) && r.body == real);
    assert_eq!(
        fake.requests(&upstream_path),
        fetches,
        "not served from the cache"
    );
}
