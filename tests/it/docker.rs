//! The real Docker daemon (Debian's dockerd 20.10, classic graphdriver store) pulling through
//! portcullis as its `registry-mirrors` entry, the way a Docker Hub mirror is used in the field.
//!
//! What dockerd 20.10.24 does here, and these tests hold it to:
//! - an `http://127.0.0.1:PORT` mirror needs no `insecure-registries` entry (127.0.0.0/8 is);
//! - it asks `GET /v2/`, then `HEAD /v2/library/<name>/manifests/<tag>`, then
//!   `GET .../manifests/<digest>` with the digest the HEAD gave, then the config blob and the
//!   layer blobs; official images get `library/`, and no query (`ns`) is ever sent;
//! - an OCI manifest and an OCI index are accepted; `RepoDigests` names the pushed manifest (or
//!   index) digest and the image ID is the config digest;
//! - it accepts the zstd layer media type but cannot unpack it (`ApplyLayer ... unexpected EOF`),
//!   so the images pulled here use gzip and uncompressed layers only;
//! - whatever the mirror refuses (portcullis' own 403 DENIED, an upstream 404, a blob cut short by
//!   tail-hold, a layer it cannot unpack), it then tries Docker Hub and shows Docker Hub's error;
//!   pulled by portcullis' own name instead, a refusal is final and its reason is shown (both as
//!   the README says).

use crate::common::access_log::Logged;
use crate::common::dockerd::Dockerd;
use crate::common::image::{write_index, Written};
use crate::common::*;
use serde_json::Value;

/// An image docker 20.10 can unpack: gzip layers, an uncompressed one and an empty one.
fn official_image() -> Image {
    Image::new()
        .layer(
            Layer::new(Compression::Gzip)
                .file("etc/os-release", "ID=fixture\n")
                .exec("bin/tool", "#!/bin/sh\necho tool\n"),
        )
        .layer(Layer::new(Compression::Gzip).random_file("opt/data.bin", 300_000, 7))
        .layer(Layer::new(Compression::None).file("srv/plain.txt", "uncompressed layer\n"))
        .layer(Layer::new(Compression::Gzip))
}

/// Another image that shares no layer with the first, so its pull downloads everything too.
fn user_image() -> Image {
    Image::new()
        .layer(Layer::new(Compression::Gzip).exec("app/run", "#!/bin/sh\necho app\n"))
        .layer(Layer::new(Compression::None).random_file("app/data.bin", 100_000, 8))
        .entrypoint(&["/app/run"])
}

/// The uncompressed-tar digests (`rootfs.diff_ids`) of an image's layers.
fn diff_ids(image: &Image) -> Vec<String> {
    image.layers.iter().map(|l| sha256(&l.tar())).collect()
}

/// This host's architecture as docker names it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no fixture for {other}"),
    }
}

/// The requests under `/v2/<repo>/` as `"METHOD rest -> status"`, in the order they ended.
fn requests_for(p: &Portcullis, repo: &str) -> Vec<String> {
    let prefix = format!("/v2/{repo}/");
    p.requests()
        .into_iter()
        .filter_map(|r| {
            let rest = r.path.strip_prefix(&prefix)?;
            Some(format!("{} {rest} -> {}", r.method, r.status))
        })
        .collect()
}

fn assert_no_fallback(d: &Dockerd) {
    assert!(
        !d.log_text().contains("Attempting next endpoint"),
        "dockerd left the mirror:\n{}",
        d.log_tail(20)
    );
}

/// `docker pull`, which must succeed; its output.
fn pull(d: &Dockerd, name: &str) -> String {
    d.docker(&["pull", name])
        .unwrap_or_else(|e| panic!("docker pull {name}: {e}\n{}", d.log_tail(20)))
}

/// `docker image inspect` shows exactly the image that was pushed.
fn assert_same_image(d: &Dockerd, name: &str, repo_digest: &str, image: &Image, written: &Written) {
    let info = d.inspect_image(name);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("{name}: {v} is no array"))
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let repo_digests = strings(&info["RepoDigests"]);
    assert!(
        repo_digests.iter().any(|d| d == repo_digest),
        "{name}: RepoDigests {repo_digests:?}, want {repo_digest}"
    );
    // The classic store's image ID is the config digest.
    assert_eq!(info["Id"], written.config_digest.as_str(), "{name}: Id");
    assert_eq!(
        strings(&info["RootFS"]["Layers"]),
        diff_ids(image),
        "{name}: RootFS.Layers"
    );
    assert_eq!(info["Architecture"], image.platform.arch.as_str(), "{name}");
    assert_eq!(info["Os"], "linux", "{name}");
}

/// The whole sequence of a tag pull when docker holds none of the image's layers yet: HEAD on
/// the tag, GET of each manifest by digest (an index, then its child), then the config and every
/// layer of `image` (downloaded in parallel, so compared sorted).
fn assert_pull_sequence(p: &Portcullis, repo: &str, manifests: &[&str], image: &Written) {
    let mut got = requests_for(p, repo);
    let mut want = vec!["HEAD manifests/v1 -> 200".to_string()];
    want.extend(
        manifests
            .iter()
            .map(|d| format!("GET manifests/{d} -> 200")),
    );
    let n = want.len();
    let mut blobs: Vec<String> = std::iter::once(&image.config_digest)
        .chain(&image.layer_digests)
        .map(|d| format!("GET blobs/{d} -> 200"))
        .collect();
    blobs.sort();
    want.extend(blobs);
    if got.len() > n {
        got[n..].sort();
    }
    assert_eq!(got, want, "{repo}");
}

#[test]
fn docker_pulls_official_and_user_images_through_the_mirror() {
    let upstream = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let (official, user) = (official_image(), user_image());
    let official_written = official.write(layout.path(), Some("official"));
    let user_written = user.write(layout.path(), Some("user"));
    upstream.push(layout.path(), "official", "library/mixed", "v1");
    upstream.push(layout.path(), "user", "someuser/app", "v1");
    let p = Portcullis::for_upstream(&upstream);
    // A plain-http mirror on 127.0.0.1, and no `insecure-registries`.
    let d = Dockerd::with_mirror(&p.url());

    let out = pull(&d, "mixed:v1");
    assert!(
        out.contains(&format!("Digest: {}", official_written.manifest_digest)),
        "{out}"
    );
    assert!(out.contains("docker.io/library/mixed:v1"), "{out}");
    assert_same_image(
        &d,
        "mixed:v1",
        &format!("mixed@{}", official_written.manifest_digest),
        &official,
        &official_written,
    );

    let out = pull(&d, "someuser/app:v1");
    assert!(
        out.contains(&format!("Digest: {}", user_written.manifest_digest)),
        "{out}"
    );
    assert_same_image(
        &d,
        "someuser/app:v1",
        &format!("someuser/app@{}", user_written.manifest_digest),
        &user,
        &user_written,
    );
    assert_no_fallback(&d);

    // What reached the proxy: the version check, then per image HEAD on the tag (with `library/`
    // for the official one), GET by digest, the blobs; no query, nothing else.
    let all = p.requests();
    assert_eq!(all[0].line(), "GET /v2/ -> 200", "{all:#?}");
    assert!(
        all.iter().all(|r| r.query.is_empty()),
        "dockerd sent a query: {all:#?}"
    );
    let official_digest = official_written.manifest_digest.as_str();
    assert_pull_sequence(&p, "library/mixed", &[official_digest], &official_written);
    let user_digest = user_written.manifest_digest.as_str();
    assert_pull_sequence(&p, "someuser/app", &[user_digest], &user_written);
    let other: Vec<&Logged> = all
        .iter()
        .filter(|r| {
            r.path != "/v2/"
                && !r.path.starts_with("/v2/library/mixed/")
                && !r.path.starts_with("/v2/someuser/app/")
        })
        .collect();
    assert!(other.is_empty(), "{other:#?}");

    // Pulling the same tag again: one HEAD, the digest is known, nothing is downloaded.
    let before = requests_for(&p, "library/mixed").len();
    let out = pull(&d, "mixed:v1");
    assert!(out.contains("Image is up to date for mixed:v1"), "{out}");
    assert_eq!(
        requests_for(&p, "library/mixed")[before..],
        ["HEAD manifests/v1 -> 200"]
    );
}

#[test]
fn docker_pulls_the_host_platform_from_a_multi_arch_index() {
    let upstream = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let images = [
        Image::new().layer(Layer::new(Compression::Gzip).file("arch", "amd64\n")),
        Image::new()
            .platform("linux", "arm64")
            .layer(Layer::new(Compression::Gzip).file("arch", "arm64\n")),
    ];
    let (index_digest, children) = write_index(layout.path(), "multi", &images);
    upstream.push(layout.path(), "multi", "library/multi", "v1");
    let p = Portcullis::for_upstream(&upstream);
    let d = Dockerd::with_mirror(&p.url());

    let out = pull(&d, "multi:v1");
    assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
    assert_no_fallback(&d);
    let mine = if host_arch() == "amd64" { 0 } else { 1 };
    let repo_digest = format!("multi@{index_digest}");
    assert_same_image(&d, "multi:v1", &repo_digest, &images[mine], &children[mine]);

    // HEAD on the tag, the index by digest, then this platform's manifest and blobs: exactly
    // these, so the other platform's are never asked for.
    let child = &children[mine];
    assert_pull_sequence(
        &p,
        "library/multi",
        &[&index_digest, &child.manifest_digest],
        child,
    );
}

/// Guards the README's statement that docker's `registry-mirrors` cannot make a refusal stick:
/// whatever the mirror refuses, dockerd logs the mirror's error only as "Attempting next
/// endpoint", moves on to registry-1.docker.io (unreachable here), and the user sees Docker Hub's
/// error, never the mirror's.
#[test]
fn docker_falls_back_to_docker_hub_whenever_the_mirror_refuses() {
    let upstream = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    Image::new()
        .layer(Layer::new(Compression::Zstd).file("etc/zstd", "zstd layer\n"))
        .write(layout.path(), Some("zstd"));
    upstream.push(layout.path(), "zstd", "library/zstd", "v1");
    let broken = Image::new()
        .layer(Layer::new(Compression::Gzip).file("etc/broken", "broken\n"))
        .write(layout.path(), Some("broken"));
    upstream.push(layout.path(), "broken", "library/broken", "v1");
    // The upstream now serves the layer with one byte changed (same size): its digest fails.
    // (A broken config is caught earlier: portcullis fetches it to judge the manifest, and
    // answers the manifest 502.)
    let hex = &broken.layer_digests[0][7..];
    let stored = upstream.dir.path().join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&stored, bytes).unwrap();
    let p = Portcullis::for_upstream(&upstream);
    // `debug` makes dockerd log each endpoint it tries.
    let d = Dockerd::start(serde_json::json!({"registry-mirrors": [p.url()], "debug": true}));
    let next = "Attempting next endpoint for pull after error:";
    let tried = |name: &str, endpoint: &str| {
        d.log_text()
            .contains(&format!("Trying to pull {name} from {endpoint} v2"))
    };
    let mirror = format!("{}/", p.url());
    let hub = "https://registry-1.docker.io";

    // 1. portcullis' own refusal, 403 DENIED: Docker Hub's `evil.example/app` reaches the mirror
    //    as `/v2/evil.example/app/...`, a registry host portcullis is not configured for. The CLI
    //    cannot ask for that name (it shortens `docker.io/evil.example/app` to `evil.example/app`,
    //    which names the host evil.example), so the Engine API is called as an API client would.
    let (status, body) = d.api(
        "POST",
        "/images/create?fromImage=docker.io/evil.example/app&tag=v1",
    );
    assert_ne!(status, 200, "{body}");
    assert_hub_error(&body);
    assert!(
        !body.contains("not configured"),
        "the mirror's reason reached the client: {body}"
    );
    let refused: Vec<Logged> = p
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v2/evil.example/"))
        .collect();
    // Answered in full: a HEAD sends no body, and is not a client that went away.
    assert!(
        refused.iter().all(|r| r.outcome == "complete"),
        "{refused:#?}"
    );
    let refused: Vec<String> = refused.iter().map(Logged::line).collect();
    // dockerd retries a failed HEAD as GET, to read the error body.
    assert_eq!(
        refused,
        [
            "HEAD /v2/evil.example/app/manifests/v1 -> 403",
            "GET /v2/evil.example/app/manifests/v1 -> 403"
        ]
    );
    let log = d.log_text();
    assert!(
        log.contains(&format!(
            r#"{next} denied: registry \"evil.example\" is not configured on this proxy""#
        )),
        "{}",
        d.log_tail(20)
    );

    // 2. A name the upstream does not have: its 404 MANIFEST_UNKNOWN passes through, and the
    //    docker CLI shows Docker Hub's error, not that one.
    let err = d.docker(&["pull", "nothere:v1"]).unwrap_err();
    assert!(err.starts_with("Error response from daemon: "), "{err}");
    assert_hub_error(&err);
    assert!(
        !err.contains("manifest unknown"),
        "the mirror's error reached the CLI: {err}"
    );
    let missing: Vec<String> = p
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v2/library/nothere/"))
        .map(Logged::line)
        .collect();
    assert_eq!(
        missing,
        [
            "HEAD /v2/library/nothere/manifests/v1 -> 404",
            "GET /v2/library/nothere/manifests/v1 -> 404"
        ]
    );
    assert!(
        d.log_text().contains(&format!("{next} manifest unknown")),
        "{}",
        d.log_tail(20)
    );

    // 3. A pull that fails after the mirror served everything (a zstd layer dockerd 20.10 cannot
    //    unpack) falls back the same way.
    let err = d.docker(&["pull", "zstd:v1"]).unwrap_err();
    assert_hub_error(&err);
    assert!(
        d.log_text()
            .contains(&format!("{next} failed to register layer")),
        "{}",
        d.log_tail(20)
    );

    // 4. A broken blob: portcullis withholds the tail of a blob whose bytes do not match its
    //    digest and aborts the answer, so dockerd never holds it whole; it falls back all the same.
    //    (dockerd retries the layer download a few times first.)
    let err = d.docker(&["pull", "broken:v1"]).unwrap_err();
    assert_hub_error(&err);
    let config = format!("/v2/library/broken/blobs/{}", broken.layer_digests[0]);
    let cut: Vec<Logged> = p
        .requests()
        .into_iter()
        .filter(|r| r.path == config)
        .collect();
    assert!(cut.len() >= 2, "dockerd did not retry: {cut:#?}");
    // A small layer is verified whole before its first byte could go out, so it is answered 502
    // (wrong digest); a larger one would be a 200 cut short. Either way dockerd never has it.
    assert!(
        cut.iter()
            .all(|r| r.status == 502 || (r.status == 200 && r.outcome == "aborted")),
        "{cut:#?}"
    );
    assert!(
        d.log_text()
            .lines()
            .any(|l| l.contains(next) && l.contains("broken")
                || l.contains(next) && l.contains("EOF")),
        "{}",
        d.log_tail(20)
    );

    // 5. The upstream is gone: portcullis answers 502, dockerd moves on.
    drop(upstream);
    let err = d.docker(&["pull", "gone:v1"]).unwrap_err();
    assert_hub_error(&err);
    let gone: Vec<String> = p
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v2/library/gone/"))
        .map(Logged::line)
        .collect();
    assert_eq!(
        gone,
        [
            "HEAD /v2/library/gone/manifests/v1 -> 502",
            "GET /v2/library/gone/manifests/v1 -> 502"
        ]
    );
    assert!(
        d.log_text().contains(&format!(
            "{next} received unexpected HTTP status: 502 Bad Gateway"
        )),
        "{}",
        d.log_tail(20)
    );

    // Each tried the mirror first, then went on to Docker Hub.
    for name in ["evil.example/app", "nothere", "zstd", "broken", "gone"] {
        assert!(tried(name, &mirror), "{name}:\n{}", d.log_tail(30));
        assert!(tried(name, hub), "{name}:\n{}", d.log_tail(30));
    }
}

/// The error of the last endpoint, Docker Hub: here, where it cannot be reached, a failed look-up
/// of its name; on a machine with network, its `pull access denied` for a repository it lacks.
fn assert_hub_error(err: &str) {
    assert!(
        err.contains("registry-1.docker.io") || err.contains("pull access denied"),
        "not Docker Hub's error: {err}"
    );
}

/// The README's way to make a refusal stick with docker: pull by portcullis' own name. There is
/// no other endpoint to try, so the refusal is final and its reason reaches the user.
#[test]
fn docker_pulling_by_the_proxy_name_shows_the_refusal() {
    let upstream = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let image = Image::new().layer(Layer::new(Compression::Gzip).file("etc/hello", "hello\n"));
    let written = image.write(layout.path(), Some("hello"));
    upstream.push(layout.path(), "hello", "library/hello", "v1");
    let p = Portcullis::for_upstream(&upstream);
    // No mirror at all; 127.0.0.1:PORT is an insecure registry by default, so plain http works.
    let d = Dockerd::start(serde_json::json!({ "debug": true }));
    let own = p.addr.to_string();

    let name = format!("{own}/library/hello:v1");
    let out = pull(&d, &name);
    assert!(
        out.contains(&format!("Digest: {}", written.manifest_digest)),
        "{out}"
    );
    assert_same_image(
        &d,
        &name,
        &format!("{own}/library/hello@{}", written.manifest_digest),
        &image,
        &written,
    );

    let err = d
        .docker(&["pull", &format!("{own}/evil.example/app:v1")])
        .unwrap_err();
    assert_eq!(
        err.trim(),
        format!(
            "Error response from daemon: pull access denied for {own}/evil.example/app, repository \
             does not exist or may require 'docker login': denied: registry \"evil.example\" is \
             not configured on this proxy"
        ),
    );
    // dockerd tries https first (and moves on to http, as for any insecure registry), but the
    // refusal stops it.
    assert!(
        d.log_text().contains(
            r#"Not continuing with pull after error: denied: registry \"evil.example\" is not configured"#
        ),
        "{}",
        d.log_tail(20)
    );
    assert!(
        !d.log_text().contains("registry-1.docker.io"),
        "{}",
        d.log_tail(20)
    );
}
