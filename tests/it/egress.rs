//! Upstream egress: where a lying upstream can send portcullis. Blob redirects lead only to the
//! upstream's own origin or its `redirect_hosts`, never to an internal address unless that exact
//! host is listed; a redirect of a manifest is refused and never cached; a token service cannot
//! make portcullis buffer an endless answer; no error shown to a client carries a redirect's
//! signed query. The upstream is the fault-injecting fake (`common::fake`); a second fake stands in
//! for an internal service and must never be asked anything.

use crate::common::fake::{raw_get, Ended, Fake, Fault};
use crate::common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const REPO: &str = "team/app";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// What a signed CDN URL carries in its query: a secret, never shown to a client or logged.
const GRANT: &str = "X-Amz-Signature=s3cr3t-grant-9f1c";

/// An OCI image manifest with an empty config and no layers (`annotations` when not null).
fn empty_manifest(annotations: serde_json::Value) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(b"{}"), "size": 2},
        "layers": [],
    });
    if !annotations.is_null() {
        m["annotations"] = annotations;
    }
    serde_json::to_vec(&m).unwrap()
}

/// `fake` answers `path` with `307` to `location`.
fn redirect(fake: &Fake, path: &str, location: String) {
    fake.fault(
        path,
        Fault::Redirect {
            status: 307,
            location,
        },
    );
}

/// portcullis with `docker.io` (the default upstream) at `fake`, fast retries, and `extra` lines in
/// its `[upstreams."docker.io"]` section. The second value holds the config while it runs.
fn proxy(fake: &Fake, extra: &str) -> (Portcullis, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[upstream]\ndefault = \"docker.io\"\nattempts = 2\nbackoff_ms = 50\n\n[upstreams.\"docker.io\"]\nurl = \"{}\"\n{extra}\n",
            fake.url()
        ),
    )
    .unwrap();
    let p = Portcullis::start(&["--config", config.to_str().unwrap()]);
    (p, dir)
}

/// A GET through portcullis: status, and the body as text.
fn get(p: &Portcullis, path: &str) -> (u16, String) {
    let r = http().get(format!("{}{path}", p.url())).send().unwrap();
    let status = r.status().as_u16();
    (status, r.text().unwrap_or_default())
}

/// The OCI error message of a body.
fn message(body: &str) -> String {
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not an OCI error ({e}): {body}"));
    v["errors"][0]["message"].as_str().unwrap_or("").to_string()
}

/// The internal service: a body no client may ever see, at `/secret`.
fn internal_service(ip: &str) -> (Fake, Vec<u8>) {
    let internal = Fake::start_on(ip);
    let body = b"INTERNAL-SERVICE-BODY root:aws-credentials ".repeat(2000);
    internal.put("/secret", "application/octet-stream", body.clone());
    (internal, body)
}

/// Nothing of `secret` (its first 64 bytes, anywhere) and no grant in `text`.
fn assert_clean(text: &str, secret: &[u8], what: &str) {
    let marker = String::from_utf8_lossy(&secret[..64]);
    assert!(!text.contains(&*marker), "{what} carries the internal body");
    assert!(!text.contains("INTERNAL-SERVICE-BODY"), "{what}: {text}");
    assert!(
        !text.contains("s3cr3t"),
        "{what} shows the signed query: {text}"
    );
}

#[test]
fn a_blob_redirect_to_another_port_on_the_machine_is_refused_and_nothing_reaches_it() {
    let fake = Fake::start();
    let (internal, secret) = internal_service("127.0.0.1");
    let digest = fake.blob(REPO, &noise(50_000, 1));
    let path = format!("/v2/{REPO}/blobs/{digest}");
    // Another port on 127.0.0.1: another origin, although the same machine as the upstream.
    redirect(
        &fake,
        &path,
        format!("http://{}/secret?{GRANT}", internal.addr),
    );
    let (p, _cfg) = proxy(&fake, "");
    let r = raw_get(p.addr, &path, Duration::from_secs(30));
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 502, "{body}");
    assert!(matches!(r.ended, Ended::Complete));
    let msg = message(&body);
    assert!(msg.contains("not allowed"), "{msg}");
    assert!(!msg.contains(&internal.addr.port().to_string()), "{msg}");
    assert_clean(&body, &secret, "the answer");
    // HEAD takes the same road.
    let r = http().head(format!("{}{path}", p.url())).send().unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!((internal.connections(), internal.total_requests()), (0, 0));
    let log = p.log_text();
    assert!(log.contains("refused a redirect"), "{log}");
    assert!(
        !log.contains("s3cr3t"),
        "the signed query in the log:\n{log}"
    );
}

#[test]
fn a_blob_redirect_to_the_metadata_address_is_refused_before_any_connection() {
    let fake = Fake::start();
    let digest = fake.blob(REPO, &noise(50_000, 2));
    let path = format!("/v2/{REPO}/blobs/{digest}");
    fake.fault(
        &path,
        Fault::Redirect {
            status: 302,
            location: format!(
                "http://169.254.169.254/latest/meta-data/iam/security-credentials/?{GRANT}"
            ),
        },
    );
    // Even a glob that would cover a name there does not open an IP address.
    let (p, _cfg) = proxy(&fake, "redirect_hosts = [\"*.cdn.example\"]");
    let start = Instant::now();
    let (status, body) = get(&p, &path);
    // No connection was tried: a connect attempt would take up to connect_timeout (10 s).
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(status, 502, "{body}");
    let msg = message(&body);
    assert!(msg.contains("not allowed"), "{msg}");
    assert!(
        !msg.contains("169.254") && !msg.contains("meta-data"),
        "{msg}"
    );
    assert_clean(&body, &[b'-'; 64], "the answer");
    let log = p.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("refused a redirect") && l.contains("169.254.169.254")),
        "{log}"
    );
    assert!(
        !log.contains("s3cr3t") && !log.contains("meta-data"),
        "{log}"
    );
}

#[test]
fn a_redirect_to_the_upstreams_own_origin_is_followed() {
    let fake = Fake::start();
    let blob = noise(300_000, 3);
    let digest = sha256(&blob);
    let path = format!("/v2/{REPO}/blobs/{digest}");
    let storage = format!("/storage/{}", &digest[7..]);
    fake.put(&storage, "application/octet-stream", blob.clone());
    // Relative, as Artifact Registry and gcr.io send theirs.
    redirect(&fake, &path, format!("{storage}?sig=grant"));
    let (p, _cfg) = proxy(&fake, "");
    let r = http().head(format!("{}{path}", p.url())).send().unwrap();
    assert_eq!(r.status(), 200, "{}", p.log_text());
    let r = http().get(format!("{}{path}", p.url())).send().unwrap();
    assert_eq!(r.status(), 200, "{}", p.log_text());
    assert_eq!(sha256(&r.bytes().unwrap()), digest);
    assert_eq!(fake.requests(&storage), 2, "{:?}", fake.request_log());
}

#[test]
fn a_redirect_to_an_exactly_listed_host_is_followed_and_the_blob_verified() {
    let fake = Fake::start();
    let cdn = Fake::start_on("127.0.0.2");
    let good = noise(400_000, 4);
    let good_digest = fake.blob(REPO, &good);
    cdn.put("/data/good", "application/octet-stream", good.clone());
    // The CDN's copy of the second blob is not what its digest says.
    let bad = noise(400_000, 5);
    let bad_digest = fake.blob(REPO, &bad);
    cdn.put("/data/bad", "application/octet-stream", noise(400_000, 6));
    for (digest, name) in [(&good_digest, "good"), (&bad_digest, "bad")] {
        redirect(
            &fake,
            &format!("/v2/{REPO}/blobs/{digest}"),
            format!("http://{}/data/{name}?{GRANT}", cdn.addr),
        );
    }
    let (p, _cfg) = proxy(&fake, "redirect_hosts = [\"127.0.0.2\"]");
    let r = http()
        .get(format!("{}/v2/{REPO}/blobs/{good_digest}", p.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", p.log_text());
    assert_eq!(sha256(&r.bytes().unwrap()), good_digest);
    assert_eq!(cdn.requests("/data/good"), 1);
    let r = raw_get(
        p.addr,
        &format!("/v2/{REPO}/blobs/{bad_digest}"),
        Duration::from_secs(30),
    );
    assert!(
        !(r.status == 200 && matches!(r.ended, Ended::Complete) && r.body.len() == 400_000),
        "wrong bytes from the CDN went through whole"
    );
    assert!(!p.log_text().contains("s3cr3t"));
}

#[test]
fn a_manifest_answered_with_a_redirect_is_refused_and_never_cached() {
    let fake = Fake::start();
    let internal = Fake::start();
    // What the internal service answers looks like a manifest, to tempt a cache.
    let decoy =
        empty_manifest(serde_json::json!({"internal": "INTERNAL-SERVICE-BODY decoy manifest"}));
    internal.put("/m", OCI_MANIFEST, decoy.clone());
    let real = empty_manifest(serde_json::Value::Null);
    fake.manifest(REPO, "v1", OCI_MANIFEST, &real);
    let path = format!("/v2/{REPO}/manifests/v1");
    redirect(&fake, &path, format!("http://{}/m?{GRANT}", internal.addr));
    // Even with the internal host listed: manifests are not redirected.
    let (p, _cfg) = proxy(&fake, "redirect_hosts = [\"127.0.0.1\"]");
    let manifest = || {
        http()
            .get(format!("{}{path}", p.url()))
            .header("Accept", OCI_MANIFEST)
            .send()
            .unwrap()
    };
    let r = manifest();
    let status = r.status().as_u16();
    let body = r.text().unwrap();
    assert_eq!(status, 502, "{body}");
    let msg = message(&body);
    assert!(
        msg.contains("manifest") && msg.contains("redirect"),
        "{msg}"
    );
    assert_clean(&body, &decoy, "the answer");
    assert_eq!(internal.total_requests(), 0);
    // The upstream mends its ways: the real manifest, not anything from before.
    fake.clear_fault(&path);
    let r = manifest();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), &real[..]);
    let mut files = vec![p.data.clone()];
    let mut seen = 0;
    while let Some(f) = files.pop() {
        if f.is_dir() {
            files.extend(std::fs::read_dir(&f).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&f) {
            seen += 1;
            assert!(
                !bytes.windows(21).any(|w| w == b"INTERNAL-SERVICE-BODY"),
                "{} holds the internal answer",
                f.display()
            );
        }
    }
    assert!(seen > 0, "the data dir holds nothing at all");
    assert_eq!(internal.total_requests(), 0);
}

/// `VmHWM` (peak resident memory) of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_token_service_answering_an_endless_body_fails_fast_in_little_memory() {
    const ENDLESS: u64 = 100 << 20;
    let fake = Fake::start();
    for repo in ["team/one", "team/two"] {
        fake.fault(
            &format!("/v2/{repo}/manifests/v1"),
            Fault::Challenge {
                realm: format!("{}/token", fake.url()),
            },
        );
    }
    fake.fault(
        "/token",
        Fault::Endless {
            status: 200,
            len: ENDLESS,
        },
    );
    let (p, _cfg) = proxy(&fake, "");
    let start = Instant::now();
    let (status, body) = get(&p, "/v2/team/one/manifests/v1");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(status, 502, "{body}");
    let msg = message(&body);
    assert!(
        msg.contains("token") && msg.contains("larger than"),
        "{msg}"
    );
    // A refusal with an endless reason.
    fake.fault(
        "/token",
        Fault::Endless {
            status: 401,
            len: ENDLESS,
        },
    );
    let start = Instant::now();
    let (status, body) = get(&p, "/v2/team/two/manifests/v1");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("token"), "{body}");
    assert!(fake.requests("/token") >= 2);
    let peak = peak_rss(p.pid());
    assert!(peak < 150 << 20, "peak RSS {} MB", peak >> 20);
}

#[test]
fn errors_never_show_a_redirects_signed_query() {
    let fake = Fake::start();
    // An allowed CDN host that is down: the request fails after it was sent on its way.
    let closed = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let digest = fake.blob(REPO, &noise(10_000, 7));
    let path = format!("/v2/{REPO}/blobs/{digest}");
    redirect(
        &fake,
        &path,
        format!("http://127.0.0.2:{port}/data/blob-path?{GRANT}"),
    );
    let (p, _cfg) = proxy(&fake, "redirect_hosts = [\"127.0.0.2\"]");
    let (status, body) = get(&p, &path);
    assert_eq!(status, 502, "{body}");
    let msg = message(&body);
    assert!(msg.contains("cannot reach upstream docker.io"), "{msg}");
    assert!(
        !body.contains("s3cr3t") && !body.contains("blob-path"),
        "{body}"
    );
    assert!(!body.contains(&fake.addr.port().to_string()), "{body}");
    let log = p.log_text();
    assert!(
        !log.contains("s3cr3t") && !log.contains("blob-path"),
        "{log}"
    );
}

#[test]
fn an_upstream_that_redirects_everything_is_followed_to_its_listed_hosts_only() {
    // registry.k8s.io's shape: manifests too are redirected, to another registry host.
    let fake = Fake::start();
    let mirror = Fake::start_on("127.0.0.2");
    let (internal, secret) = internal_service("127.0.0.1");
    let manifest = empty_manifest(serde_json::Value::Null);
    mirror.manifest(REPO, "v1", OCI_MANIFEST, &manifest);
    let path = format!("/v2/{REPO}/manifests/v1");
    redirect(&fake, &path, format!("http://{}{path}", mirror.addr));
    redirect(
        &fake,
        &format!("/v2/{REPO}/manifests/v2"),
        format!("http://{}/secret", internal.addr),
    );
    let (p, _cfg) = proxy(
        &fake,
        "redirect_all_requests = true\nredirect_hosts = [\"127.0.0.2\"]",
    );
    let r = http()
        .get(format!("{}{path}", p.url()))
        .header("Accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", p.log_text());
    assert_eq!(r.bytes().unwrap().as_ref(), &manifest[..]);
    assert_eq!(mirror.requests(&path), 1);
    let (status, body) = get(&p, &format!("/v2/{REPO}/manifests/v2"));
    assert_eq!(status, 502, "{body}");
    assert_clean(&body, &secret, "the answer");
    assert_eq!(internal.total_requests(), 0);
}
