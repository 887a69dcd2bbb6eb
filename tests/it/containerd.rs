//! containerd 1.6 (`ctr images pull --hosts-dir`) pulls through portcullis, set up as a mirror
//! `[host]` in `docker.io/hosts.toml` (or as its `server`), and gets every byte as pushed.
//!
//! `server` is Docker Hub, which is unreachable here: whatever containerd gets came through the
//! proxy.

use crate::common::access_log::Logged;
use crate::common::containerd::{write_hosts_toml, Containerd};
use crate::common::image::{mixed_upstream, MixedUpstream, Written};
use crate::common::*;
use std::collections::BTreeMap;

const DOCKER_HUB: &str = "https://registry-1.docker.io";

/// The upstream with `library/mixed:v1`, `someuser/app:v1` (the same image) and `library/multi:v1`
/// (an amd64 + arm64 index), portcullis in front of it, and a containerd of its own.
struct Fixture {
    blobs: BTreeMap<String, Vec<u8>>,
    hosts: tempfile::TempDir,
    // Dropped in this order: containerd, then the proxy, then the upstream.
    ctrd: Containerd,
    proxy: Portcullis,
    up: MixedUpstream,
}

fn fixture() -> Fixture {
    let up = mixed_upstream();
    let blobs = layout_blobs(up.layout.path());
    let proxy = Portcullis::for_upstream(&up.upstream);
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(
        hosts.path(),
        "docker.io",
        DOCKER_HUB,
        &[(&proxy.url(), &["pull", "resolve"])],
    );
    let ctrd = Containerd::start();
    Fixture {
        blobs,
        hosts,
        ctrd,
        proxy,
        up,
    }
}

impl Fixture {
    fn pull(&self, reference: &str, extra: &[&str]) {
        if let Err(e) = self.ctrd.pull(self.hosts.path(), reference, extra) {
            panic!("{e}\nportcullis log:\n{}", self.proxy.log_text());
        }
    }

    /// `ctr content get <digest>` gives exactly the bytes pushed upstream.
    fn assert_content(&self, digest: &str) {
        let pushed = self
            .blobs
            .get(digest)
            .unwrap_or_else(|| panic!("{digest} is not a pushed blob"));
        let got = self
            .ctrd
            .content(digest)
            .unwrap_or_else(|e| panic!("{digest} not in containerd: {e}"));
        assert_eq!(
            sha256(&got),
            digest,
            "containerd holds other bytes under {digest}"
        );
        assert!(
            got == *pushed,
            "{digest}: containerd's {} bytes differ from the {} pushed",
            got.len(),
            pushed.len()
        );
    }

    /// The image is registered under `reference` with the pushed manifest, complete and unpacked,
    /// and the manifest, config and every layer are the pushed bytes.
    fn assert_pulled(&self, reference: &str, image: &Written) {
        assert_eq!(
            self.ctrd.image_digest(reference).as_deref(),
            Some(image.manifest_digest.as_str())
        );
        assert!(
            self.ctrd.image_ready(reference),
            "{reference} is not complete and unpacked"
        );
        self.assert_content(&image.manifest_digest);
        self.assert_content(&image.config_digest);
        for layer in &image.layer_digests {
            self.assert_content(layer);
        }
    }

    fn requests(&self) -> Vec<Logged> {
        self.proxy.requests()
    }

    /// Pushes the mixed image into the docker.io upstream under another name as `v1`.
    fn push_mixed_to_docker_io(&self, repo: &str) {
        self.up
            .upstream
            .push(self.up.layout.path(), "mixed", repo, "v1");
    }
}

fn lines(reqs: &[Logged]) -> String {
    reqs.iter().map(|r| format!("\n  {}", r.line())).collect()
}

/// The linux architecture containerd picks by default on this host.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no fixture child for {other}"),
    }
}

#[test]
fn ctr_pulls_official_image_through_the_mirror_byte_for_byte() {
    let f = fixture();
    let reference = "docker.io/library/mixed:v1";
    f.pull(reference, &[]);
    f.assert_pulled(reference, &f.up.mixed);
    // Every pushed blob of the image, and nothing else, is in containerd's content store.
    let listed = f.ctrd.ctr(&["content", "ls", "-q"]).unwrap();
    let mut listed: Vec<&str> = listed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = [&f.up.mixed.manifest_digest, &f.up.mixed.config_digest]
        .into_iter()
        .chain(&f.up.mixed.layer_digests)
        .map(String::as_str)
        .collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    // Unpacking checked each layer's diff ID; the files are there too (the native snapshotter
    // copies a parent snapshot into each child, so a file shows up once per later layer).
    let plain = f.ctrd.snapshot_files("srv/plain.txt");
    assert!(
        !plain.is_empty() && plain.iter().all(|c| c == b"uncompressed layer\n"),
        "{plain:?}"
    );
    let data = f.ctrd.snapshot_files("opt/data.bin");
    assert!(
        !data.is_empty() && data.iter().all(|c| c.len() == 300_000),
        "opt/data.bin unpacked"
    );
}

#[test]
fn ctr_pulls_user_image_through_the_mirror_byte_for_byte() {
    let f = fixture();
    let reference = "docker.io/someuser/app:v1";
    f.pull(reference, &[]);
    f.assert_pulled(reference, &f.up.mixed);
    // A user image keeps its name (no `library/`) and carries `ns` too.
    let reqs = f.requests();
    assert!(
        reqs.iter().any(|r| r.method == "HEAD"
            && r.path == "/v2/someuser/app/manifests/v1"
            && r.status == 200),
        "{}",
        lines(&reqs)
    );
    // HEAD on the tag, GET on the manifest, the config and each layer.
    assert_eq!(
        reqs.len(),
        3 + f.up.mixed.layer_digests.len(),
        "{}",
        lines(&reqs)
    );
    for r in &reqs {
        assert!(r.path.starts_with("/v2/someuser/app/"), "{}", r.line());
        assert_eq!(
            (r.repo.as_str(), r.upstream.as_str()),
            ("someuser/app", "docker.io")
        );
        assert!(r.has_query("ns", "docker.io"), "{}", r.line());
    }
}

/// The exact requests containerd makes for a tag pull: `HEAD` on the tag (answered 200), `GET` on
/// the manifest by digest, `GET` on the config and on each layer; each with `?ns=docker.io`,
/// routed to the docker.io upstream, and answered in full.
#[test]
fn ctr_resolves_with_head_and_every_request_carries_ns() {
    let f = fixture();
    f.pull("docker.io/library/mixed:v1", &[]);
    let reqs = f.requests();
    let all = lines(&reqs);
    for r in &reqs {
        assert!(
            r.has_query("ns", "docker.io"),
            "no ns=docker.io on {}:{all}",
            r.line()
        );
        assert_eq!(r.query, "ns=docker.io", "{}", r.line());
        assert_eq!(r.upstream, "docker.io", "{}", r.line());
        assert_eq!(r.repo, "library/mixed", "{}", r.line());
        assert_eq!(
            (r.status, r.outcome.as_str()),
            (200, "complete"),
            "{}",
            r.line()
        );
    }
    let base = "/v2/library/mixed";
    let heads: Vec<&Logged> = reqs.iter().filter(|r| r.method == "HEAD").collect();
    assert_eq!(heads.len(), 1, "one HEAD, on the tag:{all}");
    assert_eq!(heads[0].path, format!("{base}/manifests/v1"));
    assert_eq!(heads[0].status, 200);
    // The tag was resolved by HEAD alone: no GET on it.
    assert!(
        !reqs
            .iter()
            .any(|r| r.method == "GET" && r.path == format!("{base}/manifests/v1")),
        "{all}"
    );
    let mut gets: Vec<String> = reqs
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path.clone())
        .collect();
    gets.sort_unstable();
    let mut expected = vec![
        format!("{base}/manifests/{}", f.up.mixed.manifest_digest),
        format!("{base}/blobs/{}", f.up.mixed.config_digest),
    ];
    expected.extend(
        f.up.mixed
            .layer_digests
            .iter()
            .map(|d| format!("{base}/blobs/{d}")),
    );
    expected.sort_unstable();
    assert_eq!(gets, expected, "{all}");
    // The HEAD came first: containerd resolves before it fetches.
    assert_eq!(reqs[0].method, "HEAD", "{all}");
}

/// The index is fetched as is; containerd picks the child for the host platform by default and
/// the arm64 one with `--platform linux/arm64`, and fetches only that child's blobs.
#[test]
fn ctr_gets_each_platform_its_child_of_the_index() {
    let f = fixture();
    let reference = "docker.io/library/multi:v1";
    let arches = ["amd64", "arm64"];
    let pulls = [(None, host_arch()), (Some("linux/arm64"), "arm64")];
    for (platform, want) in pulls {
        // A containerd of its own per pull, so the content store shows what this pull fetched.
        let ctrd = Containerd::start();
        let extra: Vec<&str> = platform.iter().flat_map(|p| ["--platform", *p]).collect();
        if let Err(e) = ctrd.pull(f.hosts.path(), reference, &extra) {
            panic!("{e}\nportcullis log:\n{}", f.proxy.log_text());
        }
        let what = format!("pull with --platform {platform:?}");
        assert_eq!(
            ctrd.image_digest(reference).as_deref(),
            Some(f.up.index_digest.as_str()),
            "{what}"
        );
        assert_eq!(
            sha256(&ctrd.content(&f.up.index_digest).unwrap()),
            f.up.index_digest,
            "{what}"
        );
        for (arch, child) in arches.iter().zip(&f.up.children) {
            let got = ctrd.content(&child.manifest_digest);
            let layer = ctrd.content(&child.layer_digests[0]);
            if *arch == want {
                assert_eq!(
                    got.as_deref(),
                    Ok(child.manifest.as_slice()),
                    "{what}: {arch} manifest"
                );
                assert_eq!(
                    layer.as_deref().map(sha256),
                    Ok(child.layer_digests[0].clone()),
                    "{what}: {arch} layer"
                );
                assert_eq!(
                    layer.unwrap(),
                    f.blobs[&child.layer_digests[0]],
                    "{what}: {arch} layer"
                );
                assert_eq!(
                    ctrd.content(&child.config_digest).unwrap(),
                    f.blobs[&child.config_digest],
                    "{what}: {arch} config"
                );
            } else {
                assert!(got.is_err(), "{what}: the {arch} manifest was fetched too");
                assert!(layer.is_err(), "{what}: the {arch} layer was fetched too");
            }
        }
        assert_eq!(
            ctrd.snapshot_files("arch"),
            vec![format!("{want}\n").into_bytes()],
            "{what}: unpacked layer"
        );
    }
    // The proxy served each child's manifest and layer once per pull that wanted that child.
    let reqs = f.requests();
    for (arch, child) in arches.iter().zip(&f.up.children) {
        let wanted = pulls.iter().filter(|(_, want)| want == arch).count();
        for path in [
            format!("manifests/{}", child.manifest_digest),
            format!("blobs/{}", child.layer_digests[0]),
        ] {
            let path = format!("/v2/library/multi/{path}");
            let n = reqs
                .iter()
                .filter(|r| r.method == "GET" && r.path == path)
                .count();
            assert_eq!(
                n,
                wanted,
                "GETs of the {arch} child's {path}:{}",
                lines(&reqs)
            );
        }
    }
    assert!(
        reqs.iter()
            .all(|r| r.has_query("ns", "docker.io") && r.status == 200),
        "{}",
        lines(&reqs)
    );
}

/// The set-up that makes a block stick: portcullis is the `server` and the only `[host]`, so no
/// host leads around it. containerd still appends `?ns=docker.io`, gets the image, and on a miss
/// tries portcullis twice (as the host, then as the server) and never anything else.
#[test]
fn ctr_pulls_with_the_proxy_as_server_and_only_host() {
    let f = fixture();
    let hosts = tempfile::tempdir().unwrap();
    let url = f.proxy.url();
    write_hosts_toml(
        hosts.path(),
        "docker.io",
        &url,
        &[(&url, &["pull", "resolve"])],
    );
    let reference = "docker.io/library/mixed:v1";
    if let Err(e) = f.ctrd.pull(hosts.path(), reference, &[]) {
        panic!("{e}\nportcullis log:\n{}", f.proxy.log_text());
    }
    f.assert_pulled(reference, &f.up.mixed);
    let reqs = f.requests();
    assert!(
        reqs.iter().any(|r| r.method == "HEAD"
            && r.path == "/v2/library/mixed/manifests/v1"
            && r.status == 200),
        "{}",
        lines(&reqs)
    );
    assert!(
        reqs.iter().all(|r| r.query == "ns=docker.io"),
        "{}",
        lines(&reqs)
    );

    let before = reqs.len();
    let err = f
        .ctrd
        .pull(hosts.path(), "docker.io/library/missing:v1", &[])
        .expect_err("no such image upstream");
    // HEAD to the proxy as the `[host]`, 404, "trying next host"; HEAD to the proxy as the
    // `server`, 404; "not found". Nothing else was tried.
    let missing: Vec<Logged> = f.requests().split_off(before);
    let head_404 = |r: &Logged| {
        r.method == "HEAD" && r.path == "/v2/library/missing/manifests/v1" && r.status == 404
    };
    assert!(
        missing.len() == 2 && missing.iter().all(head_404),
        "{}",
        lines(&missing)
    );
    assert!(
        err.contains("trying next host - response was http.StatusNotFound"),
        "{err}"
    );
    assert!(
        err.contains("docker.io/library/missing:v1: not found"),
        "{err}"
    );
    assert!(!err.contains("registry-1.docker.io"), "{err}");
}

/// A pitfall of containerd 1.6, kept as a test so a change shows: a `hosts.toml` with a `server`
/// but no `[host]` table fails to parse ("invalid `host` tree"), and containerd then goes to the
/// registry's default host (Docker Hub) — the proxy named as `server` never sees a request. A
/// containerd that parses it must pull through the proxy.
#[test]
fn server_only_hosts_toml_pitfall_of_containerd_1_6() {
    let f = fixture();
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(hosts.path(), "docker.io", &f.proxy.url(), &[]);
    match f.ctrd.pull(hosts.path(), "docker.io/library/mixed:v1", &[]) {
        Err(e) => {
            assert!(e.contains("invalid `host` tree"), "{e}");
            assert!(e.contains("registry-1.docker.io"), "{e}");
            assert_eq!(f.requests(), vec![], "the proxy was asked after all");
        }
        Ok(_) => {
            f.assert_pulled("docker.io/library/mixed:v1", &f.up.mixed);
            assert!(f.requests().iter().all(|r| r.query == "ns=docker.io"));
        }
    }
}

/// `?ns=` routes: with `ghcr.io/hosts.toml` pointing at portcullis too, `ghcr.io/someorg/app:v1`
/// comes from the ghcr.io upstream and `docker.io/someorg/app:v1` from the docker.io one, though
/// both reach portcullis as `/v2/someorg/app/...`.
#[test]
fn ns_picks_the_upstream_for_the_same_path() {
    let f = fixture();
    let ghcr = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let other = Image::new()
        .layer(Layer::new(Compression::Gzip).file("from", "ghcr.io\n"))
        .write(layout.path(), Some("other"));
    ghcr.push(layout.path(), "other", "someorg/app", "v1");
    f.push_mixed_to_docker_io("someorg/app");
    let proxy = Portcullis::start(&[
        "--upstream",
        &format!("docker.io={}", f.up.upstream.url()),
        "--upstream",
        &format!("ghcr.io={}", ghcr.url()),
    ]);
    let hosts = tempfile::tempdir().unwrap();
    let url = proxy.url();
    for registry in ["docker.io", "ghcr.io"] {
        write_hosts_toml(
            hosts.path(),
            registry,
            &url,
            &[(&url, &["pull", "resolve"])],
        );
    }
    for (reference, ns, want) in [
        ("ghcr.io/someorg/app:v1", "ghcr.io", &other),
        ("docker.io/someorg/app:v1", "docker.io", &f.up.mixed),
    ] {
        let before = proxy.requests().len();
        if let Err(e) = f.ctrd.pull(hosts.path(), reference, &[]) {
            panic!("{e}\nportcullis log:\n{}", proxy.log_text());
        }
        assert_eq!(
            f.ctrd.image_digest(reference).as_deref(),
            Some(want.manifest_digest.as_str()),
            "{reference}"
        );
        let reqs = proxy.requests().split_off(before);
        assert!(!reqs.is_empty());
        for r in &reqs {
            assert!(r.path.starts_with("/v2/someorg/app/"), "{}", r.line());
            assert_eq!(r.query, format!("ns={ns}"), "{}", r.line());
            assert_eq!((r.upstream.as_str(), r.status), (ns, 200), "{}", r.line());
        }
    }
    let from = f.ctrd.content(&other.layer_digests[0]).unwrap();
    assert_eq!(sha256(&from), other.layer_digests[0]);
    assert!(f
        .ctrd
        .snapshot_files("from")
        .contains(&b"ghcr.io\n".to_vec()));
}
