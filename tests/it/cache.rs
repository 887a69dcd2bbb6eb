//! The blob/manifest cache (issue 4), seen from the outside: warm pulls come from disk, the
//! cache stays within its size limit by evicting the least recently used blobs, concurrent pulls
//! share one upstream fetch per blob, skopeo, containerd and docker still pull when the upstream
//! is gone, and tags are revalidated (HEAD) only once their TTL has run out.
//!
//! What the upstream was asked is read from its own access log (`common::upstream_log`), counting
//! only the requests portcullis sent (the fixture pushes are skopeo's).

use crate::common::containerd::{write_hosts_toml, Containerd};
use crate::common::dockerd::Dockerd;
use crate::common::image::Written;
use crate::common::upstream_log::{self, Request};
use crate::common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIB: u64 = 1024 * 1024;
const DOCKER_HUB: &str = "https://registry-1.docker.io";
const STALE_WARNING: &str = "upstream unreachable: serving the cached tag";
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// An image of gzip layers, one file of `size` incompressible bytes each; `seed` makes it unique.
fn random_image(seed: u64, sizes: &[usize]) -> Image {
    sizes
        .iter()
        .enumerate()
        .fold(Image::new(), |image, (i, size)| {
            image.layer(Layer::new(Compression::Gzip).random_file(
                &format!("data/{i}.bin"),
                *size,
                seed * 100 + i as u64,
            ))
        })
}

/// An image pushed upstream, and an OCI layout that holds that image and nothing else.
struct Pushed {
    layout: tempfile::TempDir,
    written: Written,
}

impl Pushed {
    /// The config and the layers.
    fn blobs(&self) -> Vec<&str> {
        std::iter::once(&self.written.config_digest)
            .chain(&self.written.layer_digests)
            .map(String::as_str)
            .collect()
    }

    fn digest(&self) -> &str {
        &self.written.manifest_digest
    }
}

fn push(upstream: &Registry, image: &Image, repo: &str, tag: &str) -> Pushed {
    let layout = tempfile::tempdir().unwrap();
    let written = image.write(layout.path(), Some("src"));
    upstream.push(layout.path(), "src", repo, tag);
    Pushed { layout, written }
}

/// portcullis with `docker.io` at `upstream`, its cache in `cache`, and `extra` flags.
fn proxy(upstream: &Registry, cache: &Path, extra: &[&str]) -> Portcullis {
    let mut args = vec![
        "--upstream".to_string(),
        format!("docker.io={}", upstream.url()),
        "--cache-dir".to_string(),
        cache.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Portcullis::start(&args)
}

/// `skopeo copy <src> oci:<fresh dir>:out`, digests preserved.
fn copy(src: &str) -> Result<tempfile::TempDir, String> {
    let dest = tempfile::tempdir().unwrap();
    let d = format!("oci:{}:out", dest.path().display());
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--preserve-digests",
        src,
        &d,
    ])
    .map(|_| dest)
}

/// `copy`, which must succeed; the proxy's log goes into the panic message otherwise.
fn pull(p: &Portcullis, src: &str) -> tempfile::TempDir {
    copy(src)
        .unwrap_or_else(|e| panic!("skopeo copy {src}: {e}\nportcullis log:\n{}", p.log_text()))
}

/// The manifest digest a layout written by [`copy`] holds under its one tag.
fn layout_manifest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    manifests[0]["digest"].as_str().unwrap().to_string()
}

/// `pulled` holds exactly the pushed image: the same manifest under its tag and the same blobs,
/// byte for byte.
fn assert_same_image(source: &Pushed, pulled: &Path) {
    assert_eq!(
        layout_manifest(pulled),
        source.digest(),
        "{}",
        pulled.display()
    );
    let want = layout_blobs(source.layout.path());
    let got = layout_blobs(pulled);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "blobs in {}",
        pulled.display()
    );
    for (name, bytes) in &got {
        assert!(want[name] == *bytes, "{name} differs from the pushed blob");
    }
}

fn blob_path(repo: &str, digest: &str) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

fn manifest_path(repo: &str, reference: &str) -> String {
    format!("/v2/{repo}/manifests/{reference}")
}

/// What portcullis asked the upstream, once the upstream has logged every answer it was busy
/// with (a line is written when its answer ends, which may be just after the client is done).
fn settled(upstream: &Registry) -> Vec<Request> {
    let mut last = upstream.proxy_requests();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = upstream.proxy_requests();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// The committed blobs in the cache: `sha256:<hex>` → size.
fn cached_blobs(cache: &Path) -> BTreeMap<String, u64> {
    let Ok(dir) = std::fs::read_dir(cache.join("blobs/sha256")) else {
        return BTreeMap::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let size = e.metadata().ok()?.len();
        Some((format!("sha256:{}", e.file_name().to_string_lossy()), size))
    })
    .collect()
}

/// The total size of the files under `dir`, at any depth.
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Waits (the commit may land just after the client got the last byte) until `digest` is a
/// committed blob in the cache, and checks it holds the pushed bytes.
fn wait_cached(cache: &Path, source: &Pushed, digest: &str) {
    let path: PathBuf = cache.join("blobs/sha256").join(&digest[7..]);
    let want = &layout_blobs(source.layout.path())[digest];
    wait_for(
        &format!("{digest} to be committed to the cache"),
        Duration::from_secs(10),
        || (std::fs::metadata(&path).ok()?.len() == want.len() as u64).then_some(()),
    );
    assert!(
        std::fs::read(&path).unwrap() == *want,
        "the cached {digest} is not the pushed blob"
    );
}

/// Scrapes `/metrics` and reads one counter (summed over its labels, or those given).
fn metric(p: &Portcullis, name: &str, labels: &[(&str, &str)]) -> f64 {
    p.metrics().value(name, labels)
}

#[test]
fn warm_pulls_by_tag_and_digest_come_from_disk_not_upstream() {
    let upstream = Registry::start();
    let source = push(
        &upstream,
        &random_image(1, &[1 << 20, 1 << 20, 1 << 20]),
        "library/warm",
        "v1",
    );
    let cache = tempfile::tempdir().unwrap();
    // A long TTL: the warm pull by tag has no reason to ask upstream either.
    let p = proxy(&upstream, cache.path(), &["--tag-ttl", "1h"]);
    let by_tag = format!("docker://{}/warm:v1", p.addr);
    let by_digest = format!("docker://{}/warm@{}", p.addr, source.digest());

    let cold = pull(&p, &by_tag);
    assert_same_image(&source, cold.path());
    let after_cold = settled(&upstream);
    for d in source.blobs() {
        assert_eq!(
            upstream_log::count(&after_cold, "GET", &blob_path("library/warm", d)),
            1,
            "cold pull, {d}:{}",
            upstream_log::lines(&after_cold)
        );
        wait_cached(cache.path(), &source, d);
    }

    let warm_tag = pull(&p, &by_tag);
    assert_same_image(&source, warm_tag.path());
    let warm_digest = pull(&p, &by_digest);
    assert_same_image(&source, warm_digest.path());

    let all = settled(&upstream);
    for d in source.blobs() {
        assert_eq!(
            upstream_log::count(&all, "GET", &blob_path("library/warm", d)),
            1,
            "{d} over all three pulls:{}",
            upstream_log::lines(&all)
        );
    }
    // Nothing at all about the image: blobs, the manifest by digest and the tag (within its TTL)
    // are all cache hits.
    let warm: Vec<Request> = all[after_cold.len()..]
        .iter()
        .filter(|r| r.path.starts_with("/v2/library/warm/"))
        .cloned()
        .collect();
    assert!(
        warm.is_empty(),
        "the warm pulls asked upstream:{}",
        upstream_log::lines(&warm)
    );

    let m = p.metrics();
    // Each warm pull fetched the config and three layers.
    let hits = m.value("portcullis_cache_hits_total", &[("kind", "blob")]);
    assert!(hits >= 8.0, "blob hits {hits}:\n{}", m.text);
    let fetched = all
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/v2/library/warm/blobs/"))
        .count();
    assert_eq!(
        m.value("portcullis_upstream_blob_fetches_total", &[]),
        fetched as f64,
        "{}",
        m.text
    );
}

#[test]
fn eviction_keeps_the_blob_cache_within_its_size_limit() {
    let upstream = Registry::start();
    // Five images of one ~0.96 MiB incompressible layer each: three fit in 3 MiB, four do not.
    let images: Vec<Pushed> = (0..5)
        .map(|i| {
            push(
                &upstream,
                &random_image(10 + i, &[1_000_000]),
                &format!("library/evict{i}"),
                "v1",
            )
        })
        .collect();
    let cache = tempfile::tempdir().unwrap();
    let p = proxy(&upstream, cache.path(), &["--cache-max-size", "3MiB"]);
    let limit = 3 * MIB;
    let blobs_dir = cache.path().join("blobs");
    let assert_within = |when: &str| {
        let size = tree_size(&blobs_dir);
        assert!(
            size <= limit,
            "{when}: blobs/ holds {size} bytes > {limit}: {:#?}",
            cached_blobs(cache.path())
        );
    };

    let layer = |i: usize| images[i].written.layer_digests[0].as_str();
    let pull_image = |i: usize| {
        let out = pull(&p, &format!("docker://{}/evict{i}:v1", p.addr));
        assert_same_image(&images[i], out.path());
        assert_within(&format!("right after pulling image {i}"));
        // The blob just pulled is the most recently used: it is kept.
        wait_cached(cache.path(), &images[i], layer(i));
        assert_within(&format!("after image {i} was committed"));
    };
    let assert_cached = |i: usize, kept: bool| {
        let cached = cached_blobs(cache.path());
        assert_eq!(
            cached.contains_key(layer(i)),
            kept,
            "image {i}'s layer {}: {cached:#?}",
            layer(i)
        );
    };

    for i in 0..3 {
        pull_image(i);
    }
    // Image 1 again, a cache hit, which makes it more recently used than images 0 and 2.
    pull_image(1);
    assert_eq!(upstream.blob_requests("GET", "library/evict1", layer(1)), 1);
    // Image 3 does not fit beside the other three: the least recently used (image 0, not the
    // older entry 1 that was read since) makes room.
    pull_image(3);
    assert_cached(0, false);
    assert_cached(1, true);
    pull_image(4);
    assert_cached(2, false);
    let evictions = metric(&p, "portcullis_cache_evictions_total", &[]);
    assert!(evictions >= 2.0, "{evictions} evictions");

    // The first image again: fetched anew, served whole, cached again, still within the limit.
    assert_eq!(upstream.blob_requests("GET", "library/evict0", layer(0)), 1);
    pull_image(0);
    let all = settled(&upstream);
    assert_eq!(
        upstream_log::count(&all, "GET", &blob_path("library/evict0", layer(0))),
        2,
        "{}",
        upstream_log::lines(&all)
    );
    let m = p.metrics();
    let bytes = m.value("portcullis_cache_bytes", &[]);
    assert!(bytes > 0.0 && bytes <= limit as f64, "{}", m.text);
    assert!(
        m.value("portcullis_cache_evictions_total", &[]) > evictions,
        "{}",
        m.text
    );
}

#[test]
fn concurrent_pulls_of_an_uncached_image_fetch_each_blob_once() {
    const PULLS: usize = 20;
    let upstream = Registry::start();
    let source = push(
        &upstream,
        &random_image(3, &[2_000_000, 3_000_000, 4_000_000]),
        "library/crowd",
        "v1",
    );
    let cache = tempfile::tempdir().unwrap();
    let p = proxy(&upstream, cache.path(), &[]);
    let src = format!("docker://{}/crowd:v1", p.addr);
    let start = std::sync::Barrier::new(PULLS);
    let results: Vec<Result<tempfile::TempDir, String>> = std::thread::scope(|s| {
        let pulls: Vec<_> = (0..PULLS)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    copy(&src)
                })
            })
            .collect();
        pulls.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(out) => assert_same_image(&source, out.path()),
            Err(e) => panic!("pull {i}: {e}\nportcullis log:\n{}", p.log_text()),
        }
    }
    let all = settled(&upstream);
    for d in source.blobs() {
        assert_eq!(
            upstream_log::count(&all, "GET", &blob_path("library/crowd", d)),
            1,
            "{d}:{}",
            upstream_log::lines(&all)
        );
    }
    let m = p.metrics();
    assert_eq!(
        m.value("portcullis_upstream_blob_fetches_total", &[]),
        source.blobs().len() as f64,
        "{}",
        m.text
    );
    eprintln!(
        "{PULLS} pulls: {} blob hits, {} single-flight joins, {} upstream blob fetches",
        m.get("portcullis_cache_hits_total", &[("kind", "blob")])
            .unwrap_or(-1.0),
        m.get("portcullis_singleflight_joins_total", &[])
            .unwrap_or(-1.0),
        m.get("portcullis_upstream_blob_fetches_total", &[])
            .unwrap_or(-1.0),
    );
}

/// An image pulled through a proxy that revalidates tags on every request (`--tag-ttl 0s`), so
/// that once the upstream is gone every pull by tag needs the stale fallback.
struct Offline {
    source: Pushed,
    /// `None` once killed.
    upstream: Option<Registry>,
    upstream_addr: std::net::SocketAddr,
    _cache: tempfile::TempDir,
    p: Portcullis,
    /// How many requests portcullis had logged when the upstream was killed.
    mark: usize,
}

/// Small enough for quick pulls, gzip only (docker 20.10 unpacks nothing else), unique per test.
fn offline(repo: &str, seed: u64) -> Offline {
    let upstream = Registry::start();
    let image = random_image(seed, &[200_000]).layer(
        Layer::new(Compression::Gzip)
            .file("etc/motd", format!("offline {seed}\n"))
            .exec("bin/hello", "#!/bin/sh\necho hello\n"),
    );
    let source = push(&upstream, &image, repo, "v1");
    let cache = tempfile::tempdir().unwrap();
    let p = proxy(&upstream, cache.path(), &["--tag-ttl", "0s"]);
    Offline {
        source,
        upstream_addr: upstream.addr,
        upstream: Some(upstream),
        _cache: cache,
        p,
        mark: 0,
    }
}

impl Offline {
    /// Kills the upstream registry and checks nothing answers on its port any more.
    fn kill_upstream(&mut self) {
        self.mark = self.p.requests().len();
        drop(self.upstream.take());
        assert!(
            std::net::TcpStream::connect(self.upstream_addr).is_err(),
            "the upstream still answers"
        );
    }

    /// Since the upstream died, portcullis answered each blob of the image 200 at least `times`
    /// times (so the client really fetched again) and the manifest by digest at least once, and
    /// served the tag stale at least once.
    fn assert_served_offline(&self, times: usize) {
        let reqs = self.p.requests();
        let since = &reqs[self.mark..];
        let all: String = since.iter().map(|r| format!("\n  {}", r.line())).collect();
        let manifest = format!("/manifests/{}", self.source.digest());
        assert!(
            since
                .iter()
                .any(|r| r.method == "GET" && r.path.ends_with(&manifest) && r.status == 200),
            "the manifest was not served by digest offline:{all}"
        );
        for d in self.source.blobs() {
            let served = since
                .iter()
                .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/blobs/{d}")))
                .filter(|r| r.status == 200)
                .count();
            assert!(served >= times, "{d} served {served} times offline:{all}");
        }
        let stale = metric(&self.p, "portcullis_stale_tags_served_total", &[]);
        assert!(stale >= 1.0, "{stale} stale tags served");
        let log = self.p.log_text();
        let warned = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["level"] == "WARN" && v["message"] == STALE_WARNING);
        assert!(warned, "no WARN {STALE_WARNING:?} in:\n{log}");
    }
}

#[test]
fn offline_skopeo_pulls_by_tag_and_digest_from_the_cache() {
    let mut f = offline("library/offline", 41);
    let by_tag = format!("docker://{}/offline:v1", f.p.addr);
    let by_digest = format!("docker://{}/offline@{}", f.p.addr, f.source.digest());
    let online = pull(&f.p, &by_tag);
    assert_same_image(&f.source, online.path());

    f.kill_upstream();
    for src in [&by_tag, &by_digest] {
        let out = pull(&f.p, src);
        assert_same_image(&f.source, out.path());
    }
    f.assert_served_offline(2);
}

/// containerd forgets the image, its content and its snapshots, so the next pull fetches all.
fn ctr_forget(ctrd: &Containerd, reference: &str, source: &Pushed) {
    ctrd.ctr(&["images", "rm", "--sync", reference]).unwrap();
    let listed = ctrd.ctr(&["content", "ls", "-q"]).unwrap();
    let mut digests = vec![source.digest()];
    digests.extend(source.blobs());
    for d in digests {
        if listed.lines().any(|l| l.trim() == d) {
            ctrd.ctr(&["content", "rm", d]).unwrap();
        }
    }
    let listed = ctrd.ctr(&["content", "ls", "-q"]).unwrap();
    assert!(listed.trim().is_empty(), "content left: {listed}");
    let snapshots = ctrd
        .ctr(&[
            "snapshots",
            "--snapshotter",
            crate::common::containerd::SNAPSHOTTER,
            "ls",
        ])
        .unwrap();
    assert!(
        snapshots.lines().count() <= 1,
        "snapshots left:\n{snapshots}"
    );
}

/// containerd holds the pushed image under `reference`: complete, unpacked, every blob as pushed.
fn assert_ctr_has(ctrd: &Containerd, reference: &str, source: &Pushed) {
    assert_eq!(
        ctrd.image_digest(reference).as_deref(),
        Some(source.digest()),
        "{reference}"
    );
    assert!(ctrd.image_ready(reference), "{reference} is not complete");
    let pushed = layout_blobs(source.layout.path());
    let mut digests = vec![source.digest()];
    digests.extend(source.blobs());
    for d in digests {
        let got = ctrd.content(d).unwrap();
        assert!(got == pushed[d], "{reference}: containerd's {d} differs");
    }
}

#[test]
fn offline_ctr_pulls_by_tag_and_digest_from_the_cache() {
    let mut f = offline("library/offline", 42);
    let hosts = tempfile::tempdir().unwrap();
    // The proxy first, Docker Hub (unreachable here) as the fallback: whatever arrives came
    // through the proxy.
    write_hosts_toml(
        hosts.path(),
        "docker.io",
        DOCKER_HUB,
        &[(&f.p.url(), &["pull", "resolve"])],
    );
    let ctrd = Containerd::start();
    let by_tag = "docker.io/library/offline:v1";
    let by_digest = format!("docker.io/library/offline@{}", f.source.digest());
    let ctr_pull = |reference: &str, p: &Portcullis| {
        ctrd.pull(hosts.path(), reference, &[])
            .unwrap_or_else(|e| panic!("{e}\nportcullis log:\n{}", p.log_text()));
    };
    ctr_pull(by_tag, &f.p);
    assert_ctr_has(&ctrd, by_tag, &f.source);

    f.kill_upstream();
    ctr_forget(&ctrd, by_tag, &f.source);
    ctr_pull(by_tag, &f.p);
    assert_ctr_has(&ctrd, by_tag, &f.source);
    ctr_forget(&ctrd, by_tag, &f.source);
    ctr_pull(&by_digest, &f.p);
    assert_ctr_has(&ctrd, &by_digest, &f.source);
    f.assert_served_offline(2);
}

/// `docker rmi`, after which docker holds no trace of the image.
fn docker_forget(d: &Dockerd, name: &str) {
    d.docker(&["rmi", name])
        .unwrap_or_else(|e| panic!("docker rmi {name}: {e}"));
    let images = d.docker(&["images", "-q"]).unwrap();
    assert!(images.trim().is_empty(), "images left: {images}");
}

fn docker_pull(d: &Dockerd, p: &Portcullis, name: &str, source: &Pushed) {
    let out = d.docker(&["pull", name]).unwrap_or_else(|e| {
        panic!(
            "docker pull {name}: {e}\ndockerd:\n{}\nportcullis log:\n{}",
            d.log_tail(30),
            p.log_text()
        )
    });
    assert!(
        out.contains(&format!("Digest: {}", source.digest())),
        "{name}: {out}"
    );
    assert_eq!(
        d.inspect_image(name)["Id"],
        source.written.config_digest.as_str(),
        "{name}"
    );
}

#[test]
fn offline_docker_pulls_by_tag_and_digest_from_the_cache() {
    let mut f = offline("library/offline", 43);
    let d = Dockerd::with_mirror(&f.p.url());
    let by_digest = format!("offline@{}", f.source.digest());
    docker_pull(&d, &f.p, "offline:v1", &f.source);

    f.kill_upstream();
    docker_forget(&d, "offline:v1");
    docker_pull(&d, &f.p, "offline:v1", &f.source);
    docker_forget(&d, "offline:v1");
    // dockerd keeps the manifest it pulled (in its containerd's content store) beyond `rmi`, so
    // this pull by digest asks the mirror for the blobs only ...
    docker_pull(&d, &f.p, &by_digest, &f.source);
    // ... and a daemon that never saw the image asks for the manifest by digest too.
    let fresh = Dockerd::with_mirror(&f.p.url());
    docker_pull(&fresh, &f.p, &by_digest, &f.source);
    // Had the mirror failed, dockerd would have gone on to Docker Hub (and failed there).
    for d in [&d, &fresh] {
        assert!(
            !d.log_text().contains("Attempting next endpoint"),
            "dockerd left the mirror:\n{}",
            d.log_tail(30)
        );
    }
    f.assert_served_offline(3);
}

/// `GET <base>/v2/<name>/manifests/<reference>` accepting OCI and Docker manifests and indexes:
/// the digest header and the body, checked against each other.
fn get_manifest(base: &str, name: &str, reference: &str) -> (String, Vec<u8>) {
    let r = http()
        .get(format!("{base}/v2/{name}/manifests/{reference}"))
        .header("Accept", MANIFEST_ACCEPT)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "GET {base} {name}:{reference}");
    let digest = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    let body = r.bytes().unwrap().to_vec();
    assert_eq!(sha256(&body), digest, "{base} {name}:{reference}");
    (digest, body)
}

/// `HEAD` of the same: the digest header.
fn head_manifest(base: &str, name: &str, reference: &str) -> String {
    let r = http()
        .head(format!("{base}/v2/{name}/manifests/{reference}"))
        .header("Accept", MANIFEST_ACCEPT)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "HEAD {base} {name}:{reference}");
    r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string()
}

/// What skopeo gets for the tag through the proxy: the digest of the raw manifest.
fn skopeo_digest(p: &Portcullis, name: &str) -> String {
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/{name}", p.addr),
    ])
    .unwrap_or_else(|e| panic!("skopeo inspect {name}: {e}"));
    sha256(raw.as_bytes())
}

/// The upstream requests portcullis made about `repo`'s manifests, from `from` on.
fn manifest_requests(upstream: &Registry, repo: &str, from: usize) -> Vec<Request> {
    settled(upstream)
        .split_off(from)
        .into_iter()
        .filter(|r| r.path.starts_with(&format!("/v2/{repo}/manifests/")))
        .collect()
}

#[test]
fn within_the_tag_ttl_a_cached_tag_is_served_without_asking_upstream() {
    let upstream = Registry::start();
    let old = push(&upstream, &random_image(51, &[10_000]), "library/ttl", "v1");
    let cache = tempfile::tempdir().unwrap();
    let p = proxy(&upstream, cache.path(), &["--tag-ttl", "1h"]);
    let (digest, body) = get_manifest(&p.url(), "ttl", "v1");
    assert_eq!(digest, old.digest());
    assert_eq!(body, old.written.manifest);
    let mark = settled(&upstream).len();

    let new = push(&upstream, &random_image(52, &[10_000]), "library/ttl", "v1");
    assert_ne!(new.digest(), old.digest());
    // The upstream does serve the new image under the tag now.
    assert_eq!(
        get_manifest(&upstream.url(), "library/ttl", "v1").0,
        new.digest()
    );

    let (digest, body) = get_manifest(&p.url(), "ttl", "v1");
    assert_eq!(digest, old.digest(), "GET within the TTL");
    assert_eq!(body, old.written.manifest);
    assert_eq!(head_manifest(&p.url(), "ttl", "v1"), old.digest());
    assert_eq!(skopeo_digest(&p, "ttl:v1"), old.digest());
    let asked = manifest_requests(&upstream, "library/ttl", mark);
    assert!(
        asked.is_empty(),
        "asked upstream within the TTL:{}",
        upstream_log::lines(&asked)
    );
}

#[test]
fn after_the_tag_ttl_a_tag_is_revalidated_with_head() {
    let upstream = Registry::start();
    let old = push(
        &upstream,
        &random_image(61, &[10_000]),
        "library/reval",
        "v1",
    );
    let cache = tempfile::tempdir().unwrap();
    let p = proxy(&upstream, cache.path(), &["--tag-ttl", "0s"]);
    let tag = manifest_path("library/reval", "v1");
    let (digest, _) = get_manifest(&p.url(), "reval", "v1");
    assert_eq!(digest, old.digest());

    // Unchanged upstream: a HEAD on the tag, and the manifest comes from the cache.
    let mark = settled(&upstream).len();
    let (digest, body) = get_manifest(&p.url(), "reval", "v1");
    assert_eq!(digest, old.digest());
    assert_eq!(body, old.written.manifest);
    let asked = manifest_requests(&upstream, "library/reval", mark);
    let heads = upstream_log::count(&asked, "HEAD", &tag);
    assert_eq!(heads, 1, "{}", upstream_log::lines(&asked));
    assert_eq!(
        asked.len(),
        1,
        "only the HEAD:{}",
        upstream_log::lines(&asked)
    );

    // A new image under the tag: the proxy sees the new digest and fetches it.
    let new = push(
        &upstream,
        &random_image(62, &[10_000]),
        "library/reval",
        "v1",
    );
    assert_ne!(new.digest(), old.digest());
    let mark = settled(&upstream).len();
    let (digest, body) = get_manifest(&p.url(), "reval", "v1");
    assert_eq!(digest, new.digest(), "GET after the TTL");
    assert_eq!(body, new.written.manifest);
    let asked = manifest_requests(&upstream, "library/reval", mark);
    let lines = upstream_log::lines(&asked);
    assert_eq!(upstream_log::count(&asked, "HEAD", &tag), 1, "{lines}");
    let gets = upstream_log::count(&asked, "GET", &tag)
        + upstream_log::count(&asked, "GET", &manifest_path("library/reval", new.digest()));
    assert_eq!(gets, 1, "one GET of the new manifest:{lines}");
    assert_eq!(asked.len(), 2, "{lines}");

    // A real client gets the new image too; HEAD through the proxy agrees.
    assert_eq!(skopeo_digest(&p, "reval:v1"), new.digest());
    assert_eq!(head_manifest(&p.url(), "reval", "v1"), new.digest());
}

/// A cached blob answers ranges from disk: one range is a 206 with exactly those bytes, a range
/// past the end is a 416, HEAD gives the size; none of it reaches the upstream.
#[test]
fn ranges_and_heads_of_a_cached_blob_come_from_disk() {
    let upstream = Registry::start();
    let source = push(
        &upstream,
        &random_image(71, &[300_000]),
        "acme/ranged",
        "v1",
    );
    let cache = tempfile::tempdir().unwrap();
    let p = proxy(&upstream, cache.path(), &[]);
    let layer = source.written.layer_digests[0].clone();
    let url = format!("{}/v2/acme/ranged/blobs/{layer}", p.url());
    let whole = http().get(&url).send().unwrap();
    assert_eq!(whole.status(), 200);
    let whole = whole.bytes().unwrap().to_vec();
    wait_cached(cache.path(), &source, &layer);
    let before = settled(&upstream).len();

    let r = http()
        .get(&url)
        .header("Range", "bytes=1000-4999")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes 1000-4999/{}", whole.len())
    );
    assert_eq!(r.bytes().unwrap().as_ref(), &whole[1000..5000]);
    let r = http()
        .get(&url)
        .header("Range", format!("bytes={}-", whole.len() - 10))
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().unwrap().as_ref(), &whole[whole.len() - 10..]);
    let r = http()
        .get(&url)
        .header("Range", format!("bytes={}-", whole.len() + 10))
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    let h = http().head(&url).send().unwrap();
    assert_eq!(h.status(), 200);
    // reqwest's content_length() is the body's size hint, 0 for HEAD: read the header.
    assert_eq!(
        h.headers()["content-length"].to_str().unwrap(),
        whole.len().to_string()
    );
    assert_eq!(
        settled(&upstream).len(),
        before,
        "a cached blob's range or HEAD went upstream"
    );
    assert!(metric(&p, "portcullis_cache_hits_total", &[("kind", "blob")]) >= 4.0);
}

/// Concurrent pulls of a tag past its TTL revalidate it once: one `HEAD` upstream, the other
/// requests wait for it and are answered from the cache.
#[test]
fn concurrent_pulls_past_the_tag_ttl_revalidate_once() {
    let upstream = Registry::start();
    let source = push(&upstream, &random_image(73, &[10_000]), "acme/busy", "v1");
    let cache = tempfile::tempdir().unwrap();
    let p = proxy(&upstream, cache.path(), &["--tag-ttl", "2s"]);
    let url = format!("{}{}", p.url(), manifest_path("acme/busy", "v1"));
    let get = || {
        let r = http()
            .get(&url)
            .header("Accept", MANIFEST_ACCEPT)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(sha256(&r.bytes().unwrap()), source.digest());
    };
    get();
    settled(&upstream);
    let heads = || upstream.manifest_requests("HEAD", "acme/busy", "v1");
    let gets = || upstream.manifest_requests("GET", "acme/busy", "v1");
    let (heads_before, gets_before) = (heads(), gets());
    std::thread::sleep(Duration::from_millis(2500));
    concurrently(8, get);
    settled(&upstream);
    assert_eq!(heads() - heads_before, 1, "one revalidation for 8 pulls");
    assert_eq!(gets(), gets_before, "the tag was not fetched again");
}

/// A cached layer without a verdict under the current rules (here: cached by a proxy with
/// inspection off; in production, a lost verdict store or a rule change) is judged again as it is
/// read from disk, not fetched again. A clean one is served whole. A malicious one is never
/// received whole, is deleted from the cache, and is refused (403) from then on.
#[test]
fn a_cached_layer_without_a_verdict_is_judged_again_as_it_is_read() {
    let upstream = Registry::start();
    let image = Image::new()
        .layer(
            Layer::new(Compression::Gzip)
                .random_file("opt/data/blob.bin", 2_000_000, 41)
                .exec("opt/.cache/helper", corpus::xmrig_elf(41)),
        )
        .layer(Layer::new(Compression::Gzip).random_file("app/data.bin", 300_000, 42));
    let source = push(&upstream, &image, "library/tool", "v1");
    let (bad, clean) = (
        source.written.layer_digests[0].clone(),
        source.written.layer_digests[1].clone(),
    );
    let blobs = layout_blobs(source.layout.path());
    let cache = tempfile::tempdir().unwrap();

    // Cached while inspection was off: no verdict anywhere.
    let off =
        Portcullis::inspection_off(&upstream, &["--cache-dir", cache.path().to_str().unwrap()]);
    pull(&off, &format!("docker://{}/library/tool:v1", off.addr));
    wait_cached(cache.path(), &source, &bad);
    wait_cached(cache.path(), &source, &clean);
    drop(off);

    // The same cache under a proxy that inspects, with an empty verdict store.
    let on = proxy(&upstream, cache.path(), &[]);
    let asked_before = settled(&upstream).len();
    let url = |digest: &str| format!("{}{}", on.url(), blob_path("library/tool", digest));

    let r = http().get(url(&clean)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.bytes().unwrap() == blobs[&clean],
        "the clean cached layer, whole"
    );

    let size = blobs[&bad].len();
    match http().get(url(&bad)).send() {
        // Cut short: the verdict came while the tail was held.
        Ok(r) if r.status() == 200 => {
            let got = r.bytes().map_or(0, |b| b.len());
            assert!(
                got < size,
                "the malicious layer arrived whole ({got} bytes)"
            );
        }
        Ok(r) => panic!("unexpected {}", r.status()),
        Err(_) => {}
    }
    let path = cache.path().join("blobs/sha256").join(&bad[7..]);
    wait_for(
        "the malicious layer to leave the cache",
        Duration::from_secs(10),
        || (!path.exists()).then_some(()),
    );
    let again = http().get(url(&bad)).send().unwrap();
    assert_eq!(again.status(), 403, "{}", on.log_text());
    let body = again.text().unwrap();
    assert!(body.contains("DENIED") && body.contains("miner."), "{body}");

    // Both were read from disk: the upstream was not asked for either.
    let asked: Vec<Request> = settled(&upstream).split_off(asked_before);
    for digest in [&bad, &clean] {
        let path = blob_path("library/tool", digest);
        assert!(
            !asked.iter().any(|r| r.path == path && r.method == "GET"),
            "{digest} was fetched again: {asked:?}"
        );
    }
}
