//! Faults and bad input: what portcullis does when clients send garbage and when upstreams fail,
//! lie, stall or vanish. The upstream here is the fault-injecting fake (`common::fake`).

use crate::common::fake::{raw_get, raw_request, Ended, Fake, Fault, RawResponse};
use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// portcullis started with a config file, which lives as long as it does.
struct Proxy {
    p: Portcullis,
    _cfg: tempfile::TempDir,
}

impl std::ops::Deref for Proxy {
    type Target = Portcullis;
    fn deref(&self) -> &Portcullis {
        &self.p
    }
}

impl std::ops::DerefMut for Proxy {
    fn deref_mut(&mut self) -> &mut Portcullis {
        &mut self.p
    }
}

/// portcullis with `docker.io` (the default upstream) at `fake`, and these lines under
/// `[upstream]` and `[server]` in its config file.
fn proxy(fake: &Fake, upstream: &str, server: &str) -> Proxy {
    let cfg = tempfile::tempdir().unwrap();
    let path = cfg.path().join("portcullis.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\n{server}\n[upstream]\ndefault = \"docker.io\"\n{upstream}\n[upstreams.\"docker.io\"]\nurl = \"{}\"\n",
            fake.url()
        ),
    )
    .unwrap();
    let p = Portcullis::start(&["--config", path.to_str().unwrap()]);
    Proxy { p, _cfg: cfg }
}

/// Fast retries so the tests stay quick: 3 attempts, 50 ms then 100 ms apart.
const FAST: &str = "attempts = 3\nbackoff_ms = 50";

/// Asserts an OCI error answer (status, JSON content type, `errors[0].code`, a message) and
/// returns its headers and body.
fn oci_error(
    r: reqwest::blocking::Response,
    status: u16,
    code: &str,
) -> (reqwest::header::HeaderMap, Value) {
    let what = format!("{} {}", r.status(), r.url().path());
    assert_eq!(r.status().as_u16(), status, "{what}");
    let headers = r.headers().clone();
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "{what}"
    );
    let body: Value = r
        .json()
        .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
    assert_eq!(body["errors"][0]["code"], code, "{what}: {body}");
    assert!(
        !body["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{what}: {body}"
    );
    (headers, body)
}

/// An OCI image manifest of exactly `len` bytes (padded with an annotation).
fn manifest_of_size(len: usize) -> Vec<u8> {
    let config = sha256(b"{}");
    let make = |pad: usize| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [],
            "annotations": {"pad": "x".repeat(pad)},
        }))
        .unwrap()
    };
    let base = make(0).len();
    assert!(len >= base);
    let m = make(len - base);
    assert_eq!(m.len(), len);
    m
}

fn assert_cut_short(r: &RawResponse, what: &str) {
    assert_eq!(
        r.status, 200,
        "{what}: headers go out before the body fails"
    );
    let cl = r
        .content_length
        .unwrap_or_else(|| panic!("{what}: no Content-Length"));
    assert!(
        r.body.len() < cl,
        "{what}: client got {} of {cl} bytes",
        r.body.len()
    );
    assert!(!matches!(r.ended, Ended::Complete), "{what}: {:?}", r.ended);
}

/// The fake does what the tests below rely on (asked directly, without portcullis in between).
#[test]
fn fake_upstream_injects_the_faults_it_promises() {
    let fake = Fake::start();
    let blob = noise(100_000, 9);
    let digest = fake.blob("r", &blob);
    let path = format!("/v2/r/blobs/{digest}");
    let t = Duration::from_secs(10);
    let r = raw_get(fake.addr, &path, t);
    assert!(matches!(r.ended, Ended::Complete) && r.body == blob);
    fake.fault(&path, Fault::Truncate { send: 1000 });
    let r = raw_get(fake.addr, &path, t);
    assert_eq!((r.content_length, r.body.len()), (Some(blob.len()), 1000));
    assert!(
        matches!(r.ended, Ended::Eof | Ended::Error(_)),
        "{:?}",
        r.ended
    );
    fake.fault(
        &path,
        Fault::Stall {
            after: 1000,
            stall: Duration::from_millis(500),
        },
    );
    let r = raw_get(fake.addr, &path, t);
    assert!(r.body == blob && r.elapsed >= Duration::from_millis(500));
    fake.fault(&path, Fault::Chunked);
    let r = raw_get(fake.addr, &path, t);
    assert_eq!(
        (r.content_length, r.header("transfer-encoding")),
        (None, Some("chunked"))
    );
    fake.fault(
        &path,
        Fault::Status {
            status: 429,
            times: Some(2),
            retry_after: Some("3".into()),
        },
    );
    let before = fake.requests(&path);
    let statuses: Vec<u16> = (0..3)
        .map(|_| raw_get(fake.addr, &path, t).status)
        .collect();
    assert_eq!(statuses, [429, 429, 200]);
    assert_eq!(fake.requests(&path), before + 3);
    fake.fault(&path, Fault::Hang);
    let mut s = TcpStream::connect(fake.addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let e = s.read(&mut [0u8; 16]).expect_err("a hanging path answered");
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e}"
    );
    assert_eq!(fake.connections(), 8, "one per raw request");
    assert_eq!(raw_get(fake.addr, "/v2/r/blobs/sha256:00", t).status, 404);
}

// 1. Bad input is refused at the edge, before any upstream is asked.

#[test]
fn invalid_names_digests_and_tags_are_400_and_never_reach_upstream() {
    let fake = Fake::start();
    let p = Portcullis::start(&["--upstream", &format!("docker.io={}", fake.url())]);
    let c = http();
    let good = sha256(b"x");
    let long_name = "a".repeat(300);
    let long_tag = "t".repeat(129);
    let cases: Vec<(String, &str)> = vec![
        ("/v2/Library/Nginx/manifests/latest".into(), "NAME_INVALID"),
        ("/v2/-lead/manifests/latest".into(), "NAME_INVALID"),
        ("/v2/a//b/manifests/latest".into(), "NAME_INVALID"),
        ("/v2/a___b/blobs/".to_string() + &good, "NAME_INVALID"),
        ("/v2/a%2Fb/manifests/latest".into(), "NAME_INVALID"),
        (format!("/v2/{long_name}/manifests/latest"), "NAME_INVALID"),
        ("/v2/docker.io/UP/tags/list".into(), "NAME_INVALID"),
        (
            "/v2/x:y/manifests/latest?ns=docker.io".into(),
            "NAME_INVALID",
        ),
        ("/v2/library/x/blobs/sha256:abc".into(), "DIGEST_INVALID"),
        (
            format!(
                "/v2/library/x/blobs/{}",
                good.to_uppercase().replace("SHA256", "sha256")
            ),
            "DIGEST_INVALID",
        ),
        (
            "/v2/library/x/blobs/md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            "DIGEST_INVALID",
        ),
        ("/v2/library/x/blobs/notadigest".into(), "DIGEST_INVALID"),
        ("/v2/library/x/manifests/sha256:zz".into(), "DIGEST_INVALID"),
        ("/v2/library/x/referrers/sha256:12".into(), "DIGEST_INVALID"),
        ("/v2/library/x/manifests/-bad".into(), "MANIFEST_INVALID"),
        ("/v2/library/x/manifests/.hidden".into(), "MANIFEST_INVALID"),
        (
            format!("/v2/library/x/manifests/{long_tag}"),
            "MANIFEST_INVALID",
        ),
        (
            "/v2/library/x/manifests/bad%20tag".into(),
            "MANIFEST_INVALID",
        ),
    ];
    for (path, code) in &cases {
        oci_error(
            c.get(format!("{}{path}", p.url())).send().unwrap(),
            400,
            code,
        );
        let r = c.head(format!("{}{path}", p.url())).send().unwrap();
        assert_eq!(r.status(), 400, "HEAD {path}");
    }
    // `..` segments never survive a URL library, so this one goes over a raw socket.
    let r = raw_request(
        p.addr,
        "GET /v2/a/../b/manifests/latest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    assert_eq!(r.status, 400);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["errors"][0]["code"], "NAME_INVALID");
    assert_eq!(
        fake.total_requests(),
        0,
        "upstream was asked: {:?}",
        fake.request_log()
    );
    assert_eq!(fake.connections(), 0);
}

// 2. Never an open relay.

#[test]
fn unconfigured_hosts_are_denied_without_any_connection_to_them() {
    let upstream = Fake::start();
    // Stands at the host:port the requests name; portcullis must never connect to it.
    let victim = Fake::start();
    let p = Portcullis::start(&["--upstream", &format!("docker.io={}", upstream.url())]);
    let c = http();
    let d = sha256(b"x");
    let port = victim.addr.port();
    let mut paths = Vec::new();
    for host in [victim.host(), format!("localhost:{port}")] {
        for rest in [
            "manifests/latest".to_string(),
            format!("blobs/{d}"),
            "tags/list".into(),
            format!("referrers/{d}"),
        ] {
            paths.push(format!("/v2/library/x/{rest}?ns={host}"));
            paths.push(format!("/v2/{host}/library/x/{rest}"));
        }
    }
    paths.push("/v2/x/manifests/latest?ns=evil.example".into());
    paths.push("/v2/evil.example/x/manifests/latest".into());
    paths.push("/v2/localhost/x/manifests/latest".into());
    for path in &paths {
        let (_, v) = oci_error(
            c.get(format!("{}{path}", p.url())).send().unwrap(),
            403,
            "DENIED",
        );
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("not configured"),
            "{path}: {v}"
        );
        assert_eq!(
            c.head(format!("{}{path}", p.url()))
                .send()
                .unwrap()
                .status(),
            403,
            "HEAD {path}"
        );
    }
    assert_eq!(
        victim.connections(),
        0,
        "portcullis connected to an unconfigured host: {:?}",
        victim.request_log()
    );
    assert_eq!(upstream.total_requests(), 0, "{:?}", upstream.request_log());
}

// 3. Wrong bytes under a digest: the tail is held back, the client never gets the whole blob.

#[test]
fn wrong_blob_bytes_fail_the_pull_and_never_arrive_whole() {
    let fake = Fake::start();
    let layout = tempfile::tempdir().unwrap();
    let img = Image::new()
        .layer(Layer::new(Compression::Gzip).random_file("opt/big.bin", 1 << 20, 7))
        .write(layout.path(), Some("v1"));
    fake.image("library/good", "v1", layout.path(), &img);
    fake.image("library/bad", "v1", layout.path(), &img);
    let layer = &img.layer_digests[0];
    let real = std::fs::read(layout.path().join("blobs/sha256").join(&layer[7..])).unwrap();
    // Same length, one byte changed near the end.
    let mut wrong = real.clone();
    let at = wrong.len() - 10;
    wrong[at] ^= 0xff;
    fake.blob_as("library/bad", layer, &wrong);
    fake.blob_as("library/badchunked", layer, &wrong);
    fake.fault(
        &format!("/v2/library/badchunked/blobs/{layer}"),
        Fault::Chunked,
    );
    // With the cache, the good pull would keep the layer and the bad ones would be served it:
    // this is about what reaches the client from a lying upstream.
    let p = Portcullis::start(&[
        "--no-cache",
        "--upstream",
        &format!("docker.io={}", fake.url()),
    ]);

    let pull = |repo: &str| {
        let dest = tempfile::tempdir().unwrap();
        let r = skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/{repo}:v1", p.addr),
            &format!("oci:{}:out", dest.path().display()),
        ]);
        (r, dest)
    };
    let (good, _) = pull("good");
    good.expect("the same image with the right bytes pulls");
    let (bad, dest) = pull("bad");
    let err = bad.expect_err("skopeo accepted a blob with the wrong bytes");
    assert!(
        !layout_blobs(dest.path()).contains_key(layer),
        "the bad layer was stored: {err}"
    );

    let r = raw_get(
        p.addr,
        &format!("/v2/bad/blobs/{layer}"),
        Duration::from_secs(30),
    );
    if r.status == 502 {
        // The whole blob arrived and was hashed before the answer started: a plain error.
        assert!(String::from_utf8_lossy(&r.body).contains("hash to"));
    } else {
        assert_eq!(r.content_length, Some(wrong.len()));
        assert_cut_short(&r, "wrong bytes");
        assert!(
            wrong.starts_with(&r.body),
            "what was sent is a prefix of the upstream's bytes"
        );
    }
    // A range inside the blob waits for the whole blob's verdict too: not even the range arrives.
    // The range is one held chunk, so the verdict is in before anything could be sent: the answer
    // is a plain 502 naming the wrong digest rather than a cut-off 206.
    let r = raw_request(
        p.addr,
        &format!("GET /v2/bad/blobs/{layer} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-99\r\nConnection: close\r\n\r\n"),
        Duration::from_secs(30),
    );
    assert_eq!(r.status, 502);
    assert!(
        String::from_utf8_lossy(&r.body).contains("hash to"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // Without a Content-Length from upstream the answer is chunked; it still ends in an error.
    let r = http()
        .get(format!("{}/v2/badchunked/blobs/{layer}", p.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.bytes().is_err(),
        "a chunked blob with the wrong bytes read as complete"
    );
    assert!(p.log_text().contains("blob refused mid-stream"));
}

// 4. Retries on 5xx and 429.

#[test]
fn server_errors_are_retried_then_passed_on_as_502() {
    let fake = Fake::start();
    let manifest = manifest_of_size(600);
    fake.manifest("library/flaky", "v1", OCI_MANIFEST, &manifest);
    let blob = noise(100_000, 1);
    let digest = fake.blob("library/flaky", &blob);
    fake.manifest("library/down", "v1", OCI_MANIFEST, &manifest);
    let mpath = "/v2/library/flaky/manifests/v1";
    let bpath = format!("/v2/library/flaky/blobs/{digest}");
    fake.fault(mpath, Fault::status_times(500, 2));
    fake.fault(&bpath, Fault::status_times(500, 2));
    fake.fault("/v2/library/down/manifests/v1", Fault::status_always(500));
    let p = proxy(&fake, FAST, "");
    let c = http();

    let r = c
        .get(format!("{}/v2/flaky/manifests/v1", p.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), manifest.as_slice());
    assert_eq!(fake.requests(mpath), 3, "two 500s, then the 200");

    let r = c
        .get(format!("{}/v2/flaky/blobs/{digest}", p.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().unwrap()), digest);
    assert_eq!(fake.requests(&bpath), 3);

    let (_, v) = oci_error(
        c.get(format!("{}/v2/down/manifests/v1", p.url()))
            .send()
            .unwrap(),
        502,
        "UNAVAILABLE",
    );
    assert_eq!(v["errors"][0]["detail"]["retryable"], true, "{v}");
    assert_eq!(
        fake.requests("/v2/library/down/manifests/v1"),
        3,
        "attempts = 3"
    );
}

/// An upstream in maintenance (503 with a Retry-After longer than the proxy will wait) is passed
/// on as 503 UNAVAILABLE with its Retry-After; another 5xx is a 502.
#[test]
fn an_unavailable_upstream_is_passed_on_with_its_retry_after() {
    let fake = Fake::start();
    let manifest = manifest_of_size(600);
    fake.manifest("library/maint", "v1", OCI_MANIFEST, &manifest);
    fake.manifest("library/broken", "v1", OCI_MANIFEST, &manifest);
    fake.fault("/v2/library/maint/manifests/v1", Fault::unavailable("120"));
    fake.fault("/v2/library/broken/manifests/v1", Fault::status_always(500));
    let p = proxy(&fake, &format!("{FAST}\nmax_retry_after_seconds = 10"), "");
    let c = http();
    let (h, _) = oci_error(
        c.get(format!("{}/v2/maint/manifests/v1", p.url()))
            .send()
            .unwrap(),
        503,
        "UNAVAILABLE",
    );
    assert_eq!(h["retry-after"].to_str().unwrap(), "120");
    let (h, _) = oci_error(
        c.get(format!("{}/v2/broken/manifests/v1", p.url()))
            .send()
            .unwrap(),
        502,
        "UNAVAILABLE",
    );
    assert!(h.get("retry-after").is_none());
}

#[test]
fn rate_limits_are_honoured_then_passed_on_as_503_with_retry_after() {
    let fake = Fake::start();
    let manifest = manifest_of_size(600);
    fake.manifest("library/busy", "v1", OCI_MANIFEST, &manifest);
    fake.manifest("library/closed", "v1", OCI_MANIFEST, &manifest);
    fake.fault("/v2/library/busy/manifests/v1", Fault::rate_limited("1"));
    // Longer than max_retry_after_seconds: no point waiting, the client is told at once.
    fake.fault(
        "/v2/library/closed/manifests/v1",
        Fault::rate_limited("120"),
    );
    let p = proxy(&fake, &format!("{FAST}\nmax_retry_after_seconds = 10"), "");
    let c = http();

    let start = Instant::now();
    let (h, _) = oci_error(
        c.get(format!("{}/v2/busy/manifests/v1", p.url()))
            .send()
            .unwrap(),
        503,
        "TOOMANYREQUESTS",
    );
    let took = start.elapsed();
    assert_eq!(
        fake.requests("/v2/library/busy/manifests/v1"),
        3,
        "attempts = 3"
    );
    assert!(
        took >= Duration::from_millis(1900),
        "Retry-After: 1 was not waited for between attempts: {took:?}"
    );
    let ra: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(ra >= 1, "Retry-After {ra}");

    let start = Instant::now();
    let (h, _) = oci_error(
        c.get(format!("{}/v2/closed/manifests/v1", p.url()))
            .send()
            .unwrap(),
        503,
        "TOOMANYREQUESTS",
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(fake.requests("/v2/library/closed/manifests/v1"), 1);
    assert_eq!(h["retry-after"], "120");
}

// 5. An upstream that is down or silent.

#[test]
fn upstream_down_is_a_quick_502_and_the_proxy_keeps_serving() {
    let dead = free_port(); // nothing listens there
    let cfg = tempfile::tempdir().unwrap();
    let path = cfg.path().join("portcullis.toml");
    // 3 attempts, 500 ms then 1000 ms apart: long enough to see the proxy answer meanwhile.
    std::fs::write(
        &path,
        format!("[upstream]\nattempts = 3\nbackoff_ms = 500\n[upstreams.\"docker.io\"]\nurl = \"http://127.0.0.1:{dead}\"\n"),
    )
    .unwrap();
    let p = Portcullis::start(&["--config", path.to_str().unwrap()]);
    let c = http();
    let url = p.url();
    let start = Instant::now();
    let pulls: Vec<_> = (0..4)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let path = if i % 2 == 0 {
                    format!("/v2/x{i}/manifests/latest")
                } else {
                    format!("/v2/x{i}/blobs/{}", sha256(b"x"))
                };
                let r = http().get(format!("{url}{path}")).send().unwrap();
                (
                    r.status().as_u16(),
                    r.headers().get("content-type").cloned(),
                    r.json::<Value>().ok(),
                )
            })
        })
        .collect();
    wait_for("a retry", Duration::from_secs(5), || {
        p.log_text()
            .contains("upstream unreachable; retrying")
            .then_some(())
    });
    // While those wait between attempts, the proxy still answers.
    for path in ["/v2/", "/healthz"] {
        let t = Instant::now();
        assert_eq!(
            c.get(format!("{url}{path}")).send().unwrap().status(),
            200,
            "{path}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{path} took {:?}",
            t.elapsed()
        );
    }
    assert!(
        pulls.iter().all(|t| !t.is_finished()),
        "the pulls should still be retrying"
    );
    for t in pulls {
        let (status, ct, body) = t.join().unwrap();
        assert_eq!(status, 502);
        assert_eq!(ct.unwrap(), "application/json");
        assert_eq!(body.unwrap()["errors"][0]["code"], "UNAVAILABLE");
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1400),
        "no backoff between attempts? {took:?}"
    );
    assert!(took < Duration::from_secs(5), "giving up took {took:?}");
    for path in ["/v2/", "/healthz"] {
        assert_eq!(
            c.get(format!("{url}{path}")).send().unwrap().status(),
            200,
            "{path}"
        );
    }
}

#[test]
fn upstream_that_never_answers_times_out_as_504() {
    let fake = Fake::start();
    fake.manifest("library/silent", "v1", OCI_MANIFEST, &manifest_of_size(600));
    fake.fault("/v2/library/silent/manifests/v1", Fault::Hang);
    let p = proxy(
        &fake,
        "attempts = 2\nbackoff_ms = 50\nfirst_byte_timeout_seconds = 1",
        "",
    );
    let start = Instant::now();
    oci_error(
        http()
            .get(format!("{}/v2/silent/manifests/v1", p.url()))
            .send()
            .unwrap(),
        504,
        "UNAVAILABLE",
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert_eq!(fake.requests("/v2/library/silent/manifests/v1"), 2);
}

#[test]
fn slow_first_byte_is_governed_by_first_byte_timeout_not_idle_timeout() {
    let fake = Fake::start();
    let manifest = manifest_of_size(600);
    fake.manifest("library/late", "v1", OCI_MANIFEST, &manifest);
    let blob = noise(64 * 1024, 6);
    let digest = fake.blob("library/late", &blob);
    for path in [
        "/v2/library/late/manifests/v1".to_string(),
        format!("/v2/library/late/blobs/{digest}"),
    ] {
        fake.fault(&path, Fault::Delay(Duration::from_millis(2500)));
    }
    // Headers may take up to 5 s; a body may not stall for 1 s.
    let p = proxy(
        &fake,
        "attempts = 1\nfirst_byte_timeout_seconds = 5\nidle_timeout_seconds = 1",
        "",
    );
    let c = http();
    let r = c
        .get(format!("{}/v2/late/manifests/v1", p.url()))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a manifest answered after 2.5 s (first-byte timeout 5 s)"
    );
    assert_eq!(r.bytes().unwrap().as_ref(), manifest.as_slice());
    let r = c
        .get(format!("{}/v2/late/blobs/{digest}", p.url()))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a blob answered after 2.5 s (first-byte timeout 5 s)"
    );
    assert_eq!(r.bytes().unwrap().as_ref(), blob.as_slice());
}

// 6. Bodies cut short or stalled.

#[test]
fn truncated_upstream_bodies_never_reach_the_client_whole() {
    let fake = Fake::start();
    let blob = noise(256 * 1024, 2);
    let digest = fake.blob("library/cut", &blob);
    fake.fault(
        &format!("/v2/library/cut/blobs/{digest}"),
        Fault::Truncate { send: 100 * 1024 },
    );
    let manifest = manifest_of_size(3000);
    fake.manifest("library/cut", "v1", OCI_MANIFEST, &manifest);
    fake.fault(
        "/v2/library/cut/manifests/v1",
        Fault::Truncate { send: 1000 },
    );
    let p = proxy(&fake, FAST, "");

    let r = raw_get(
        p.addr,
        &format!("/v2/cut/blobs/{digest}"),
        Duration::from_secs(30),
    );
    assert_eq!(r.content_length, Some(blob.len()));
    assert_cut_short(&r, "truncated blob");
    assert!(r.body.len() <= 100 * 1024);
    // reqwest sees the same: an error, not a short success.
    let res = http()
        .get(format!("{}/v2/cut/blobs/{digest}", p.url()))
        .send()
        .unwrap();
    assert!(res.bytes().is_err(), "a truncated body read as complete");

    // A manifest is read whole before answering, so a cut one is a clean 502.
    let c = http();
    let (_, v) = oci_error(
        c.get(format!("{}/v2/cut/manifests/v1", p.url()))
            .send()
            .unwrap(),
        502,
        "UNKNOWN",
    );
    assert!(
        !v.to_string().contains("xxxxxxxxxx"),
        "manifest bytes leaked into the error"
    );
}

#[test]
fn stalled_upstream_bodies_are_abandoned_after_the_idle_timeout() {
    let fake = Fake::start();
    let blob = noise(256 * 1024, 3);
    let digest = fake.blob("library/stuck", &blob);
    fake.fault(
        &format!("/v2/library/stuck/blobs/{digest}"),
        Fault::Stall {
            after: 64 * 1024,
            stall: Duration::from_secs(8),
        },
    );
    let p = proxy(&fake, &format!("{FAST}\nidle_timeout_seconds = 1"), "");
    let r = raw_get(
        p.addr,
        &format!("/v2/stuck/blobs/{digest}"),
        Duration::from_secs(30),
    );
    assert_cut_short(&r, "stalled blob");
    assert!(
        r.elapsed >= Duration::from_millis(900) && r.elapsed < Duration::from_secs(5),
        "the stall was cut after {:?} (idle timeout 1 s, stall 8 s)",
        r.elapsed
    );
}

#[test]
fn slow_but_steady_bodies_are_not_cut_by_the_idle_timeout() {
    let fake = Fake::start();
    let blob = noise(128 * 1024, 4);
    let digest = fake.blob("library/slow", &blob);
    // 8 pieces, 400 ms apart: 2.8 s in all, never 1 s without a byte.
    fake.fault(
        &format!("/v2/library/slow/blobs/{digest}"),
        Fault::Pace {
            chunk: 16 * 1024,
            delay: Duration::from_millis(400),
        },
    );
    let p = proxy(&fake, &format!("{FAST}\nidle_timeout_seconds = 1"), "");
    let r = raw_get(
        p.addr,
        &format!("/v2/slow/blobs/{digest}"),
        Duration::from_secs(30),
    );
    assert!(
        matches!(r.ended, Ended::Complete),
        "{:?} after {} bytes",
        r.ended,
        r.body.len()
    );
    assert_eq!(r.body, blob);
    assert!(r.elapsed >= Duration::from_millis(2500), "{:?}", r.elapsed);
}

// 7. Writes and unknown paths.

#[test]
fn writes_are_405_and_unknown_paths_404() {
    let fake = Fake::start();
    let p = Portcullis::start(&["--upstream", &format!("docker.io={}", fake.url())]);
    let c = http();
    let d = sha256(b"x");
    let paths = [
        "/v2/".to_string(),
        "/v2/library/x/blobs/uploads/".into(),
        "/v2/library/x/blobs/uploads/0c5e9d1a-upload".into(),
        "/v2/library/x/manifests/v1".into(),
        format!("/v2/library/x/manifests/{d}"),
        format!("/v2/library/x/blobs/{d}"),
        "/v2/x/manifests/v1?ns=docker.io".into(),
    ];
    for path in &paths {
        for method in ["PUT", "POST", "PATCH", "DELETE"] {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = c
                .request(m, format!("{}{path}", p.url()))
                .header("Content-Type", OCI_MANIFEST)
                .body(manifest_of_size(600))
                .send()
                .unwrap();
            let (h, _) = oci_error(r, 405, "UNSUPPORTED");
            assert_eq!(h["allow"], "GET, HEAD", "{method} {path}");
        }
    }
    for path in [
        "/v2/_catalog",
        "/v2/library/x/blobs/uploads/",
        "/v2/library/x/manifests/",
        "/v2/library/x/tags/lists",
        "/v2/library/x",
        "/nope",
        "/",
    ] {
        oci_error(
            c.get(format!("{}{path}", p.url())).send().unwrap(),
            404,
            "NOT_FOUND",
        );
    }
    assert_eq!(fake.total_requests(), 0, "{:?}", fake.request_log());
}

// 8. Manifests that do not match their digest, or are too big.

#[test]
fn bad_manifests_are_502_and_never_passed_on() {
    let fake = Fake::start();
    let real = manifest_of_size(1500);
    let real_digest = sha256(&real);
    let other = manifest_of_size(1600);
    // By digest: the upstream answers other bytes.
    fake.manifest("library/lie", &real_digest, OCI_MANIFEST, &other);
    // By tag: the upstream announces a digest its bytes do not hash to.
    fake.manifest("library/lie", "v1", OCI_MANIFEST, &other);
    fake.header(
        "/v2/library/lie/manifests/v1",
        "Docker-Content-Digest",
        &real_digest,
    );
    // Size cap 2048: one under it, one over, one over without Content-Length.
    fake.manifest(
        "library/size",
        "small",
        OCI_MANIFEST,
        &manifest_of_size(2000),
    );
    fake.manifest("library/size", "big", OCI_MANIFEST, &manifest_of_size(4096));
    fake.manifest(
        "library/size",
        "bigchunked",
        OCI_MANIFEST,
        &manifest_of_size(64 * 1024),
    );
    fake.fault("/v2/library/size/manifests/bigchunked", Fault::Chunked);
    let p = proxy(&fake, &format!("{FAST}\nmax_manifest_bytes = 2048"), "");
    let c = http();

    for reference in [real_digest.as_str(), "v1"] {
        let url = format!("{}/v2/lie/manifests/{reference}", p.url());
        let r = c.get(&url).send().unwrap();
        assert!(r.headers().get("docker-content-digest").is_none());
        let (_, v) = oci_error(r, 502, "UNKNOWN");
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("hashes to"),
            "{v}"
        );
        assert!(
            !v.to_string().contains("xxxxxxxxxx"),
            "manifest bytes leaked into the error"
        );
        assert_eq!(c.head(&url).send().unwrap().status(), 502);
    }
    let r = c
        .get(format!("{}/v2/size/manifests/small", p.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "a manifest under the cap passes");
    assert_eq!(r.bytes().unwrap().len(), 2000);
    for tag in ["big", "bigchunked"] {
        let (_, v) = oci_error(
            c.get(format!("{}/v2/size/manifests/{tag}", p.url()))
                .send()
                .unwrap(),
            502,
            "UNKNOWN",
        );
        assert!(
            v["errors"][0]["message"].as_str().unwrap().contains("2048"),
            "{tag}: {v}"
        );
    }
}

// 9. Graceful shutdown.

/// Waits for the process to exit; its status.
fn exit_within(p: &mut Portcullis, timeout: Duration) -> std::process::ExitStatus {
    wait_for("portcullis to exit", timeout, || {
        p.child().try_wait().unwrap()
    })
}

/// A slow blob (512 KiB in 16 pieces, 150 ms apart: about 2.3 s) and portcullis in front of it.
fn slow_blob(grace: u64) -> (Fake, Proxy, Vec<u8>, String) {
    let fake = Fake::start();
    let blob = noise(512 * 1024, 5);
    let digest = fake.blob("library/slow", &blob);
    fake.fault(
        &format!("/v2/library/slow/blobs/{digest}"),
        Fault::Pace {
            chunk: 32 * 1024,
            delay: Duration::from_millis(150),
        },
    );
    let p = proxy(&fake, FAST, &format!("shutdown_grace_seconds = {grace}"));
    (fake, p, blob, digest)
}

#[test]
fn sigterm_lets_transfers_in_flight_finish_and_refuses_new_connections() {
    let (fake, mut p, blob, digest) = slow_blob(10);
    let addr = p.addr;
    let path = format!("/v2/slow/blobs/{digest}");
    let transfer = std::thread::spawn(move || raw_get(addr, &path, Duration::from_secs(30)));
    wait_for("the transfer to start", Duration::from_secs(10), || {
        (fake.requests(&format!("/v2/library/slow/blobs/{digest}")) > 0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let term = Instant::now();
    p.sigterm();
    wait_for("the listener to close", Duration::from_secs(2), || {
        TcpStream::connect(addr).is_err().then_some(())
    });
    assert!(
        !transfer.is_finished(),
        "the transfer ended before the listener closed; the test proves nothing"
    );
    let r = transfer.join().unwrap();
    assert!(
        matches!(r.ended, Ended::Complete),
        "{:?} after {} bytes",
        r.ended,
        r.body.len()
    );
    assert_eq!(
        r.body, blob,
        "the transfer in flight completed, byte for byte"
    );
    let status = exit_within(&mut p, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(
        term.elapsed() < Duration::from_secs(8),
        "exit waited for the whole grace: {:?}",
        term.elapsed()
    );
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn shutdown_grace_expiry_cuts_what_is_still_in_flight() {
    let (fake, mut p, _blob, digest) = slow_blob(1);
    let addr = p.addr;
    let path = format!("/v2/slow/blobs/{digest}");
    let transfer = std::thread::spawn(move || raw_get(addr, &path, Duration::from_secs(30)));
    wait_for("the transfer to start", Duration::from_secs(10), || {
        (fake.requests(&format!("/v2/library/slow/blobs/{digest}")) > 0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(200));
    let term = Instant::now();
    p.sigterm();
    let status = exit_within(&mut p, Duration::from_secs(5));
    let took = term.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "exited {took:?} after SIGTERM (grace 1 s)"
    );
    let r = transfer.join().unwrap();
    assert_cut_short(&r, "transfer past the grace period");
}

// Referrers are passed through (the proxy is not a referrers store of its own).

#[test]
fn referrers_are_passed_through_with_their_filter() {
    let fake = Fake::start();
    let subject = super::common::sha256(b"subject");
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let path = format!("/v2/library/app/referrers/{subject}");
    fake.put(
        &path,
        "application/vnd.oci.image.index.v1+json",
        index.to_vec(),
    );
    fake.header(&path, "OCI-Filters-Applied", "artifactType");
    let p = Portcullis::start(&["--upstream", &format!("docker.io={}", fake.url())]);
    let r = http()
        .get(format!(
            "{}/v2/app/referrers/{subject}?artifactType=application%2Fvnd.example",
            p.url()
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    assert_eq!(r.bytes().unwrap().as_ref(), index.as_slice());
    assert!(
        fake.request_log()
            .iter()
            .any(|l| l == &format!("GET {path}?artifactType=application%2Fvnd.example")),
        "{:?}",
        fake.request_log()
    );
}

/// A lying upstream sends a miner once under a clean layer's digest. The stream is cut (the miner
/// is refused on its evidence) and its digest fails, so no verdict is stored from those bytes:
/// when the upstream sends the right bytes, the clean layer and its image pull normally.
#[test]
fn a_miner_sent_once_under_a_clean_digest_leaves_no_verdict_behind() {
    let fake = Fake::start();
    let layout = tempfile::tempdir().unwrap();
    let clean = Image::new()
        .layer(Layer::new(Compression::Gzip).file("etc/motd", "hello\n"))
        .write(layout.path(), Some("clean"));
    let miner_layout = tempfile::tempdir().unwrap();
    let miner = Image::new()
        .layer(
            Layer::new(Compression::Gzip)
                .exec("usr/local/bin/helper", crate::common::corpus::xmrig_elf(3))
                .file(
                    "usr/local/bin/config.json",
                    crate::common::corpus::xmrig_config(
                        "stratum+tcp://pool.supportxmr.com:3333",
                        &crate::common::corpus::monero_address(18, "once"),
                    ),
                ),
        )
        .write(miner_layout.path(), Some("miner"));
    fake.image("acme/app", "v1", layout.path(), &clean);
    let layer = &clean.layer_digests[0];
    let miner_bytes = std::fs::read(
        miner_layout
            .path()
            .join("blobs/sha256")
            .join(&miner.layer_digests[0][7..]),
    )
    .unwrap();
    fake.blob_as("acme/app", layer, &miner_bytes);
    let p = Portcullis::start(&["--upstream", &format!("docker.io={}", fake.url())]);
    let url = format!("{}/v2/acme/app/blobs/{layer}", p.url());

    let first = reqwest::blocking::get(&url).unwrap();
    let status = first.status();
    let got = first.bytes().map(|b| b.len()).unwrap_or(0);
    assert!(
        status != 200 || got < miner_bytes.len(),
        "the wrong bytes were delivered whole ({status}, {got} bytes)"
    );
    // The fill reads the lie to its end (and finds its digest wrong) before it is forgotten.
    std::thread::sleep(Duration::from_millis(500));

    // The right bytes now.
    let real = std::fs::read(layout.path().join("blobs/sha256").join(&layer[7..])).unwrap();
    fake.blob_as("acme/app", layer, &real);
    let second = reqwest::blocking::get(&url).unwrap();
    assert_eq!(
        second.status(),
        200,
        "{}",
        second.text().unwrap_or_default()
    );
    assert_eq!(second.bytes().unwrap().as_ref(), real.as_slice());
    let dest = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/acme/app:v1", p.addr),
        &format!("oci:{}:out", dest.path().display()),
    ])
    .expect("the clean image pulls once the upstream sends the right bytes");
    assert!(
        !p.log_text().contains("\"decision\":\"Block\""),
        "a block was recorded from bytes that were not the blob"
    );
}
