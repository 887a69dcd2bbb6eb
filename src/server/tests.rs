//! Router tests: the whole service (`crate::app`: routing, guard, cache, fills, tail-hold) driven
//! in-process with `tower::ServiceExt::oneshot`, against an in-process fake upstream on
//! `127.0.0.1:0`. No root, no daemons, no Debian packages; the real-client tests live in `tests/`.

use crate::config::Config;
use crate::inspect::layer::tests::{gzip, malicious_layer};
use crate::oci::Digest;
use crate::store::VerdictStore;
use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// What the fake upstream serves: manifests by repository and reference, blobs by digest, and
/// blobs it lies about (the bytes it sends under a digest that is not theirs).
#[derive(Default)]
struct Upstream {
    manifests: HashMap<(String, String), (String, Bytes)>,
    blobs: HashMap<String, Bytes>,
    lies: HashMap<String, Bytes>,
    /// Requests seen, as `METHOD path`.
    seen: Vec<String>,
}

type Shared = Arc<Mutex<Upstream>>;

/// A registry on a free loopback port, answering from `state`.
async fn fake_upstream(state: Shared) -> String {
    let app = axum::Router::new()
        .fallback(
            |axum::extract::State(state): axum::extract::State<Shared>,
             req: axum::extract::Request| async move {
                let path = req.uri().path().to_string();
                let head = req.method() == http::Method::HEAD;
                let mut s = state.lock().unwrap();
                s.seen.push(format!("{} {path}", req.method()));
                if path == "/v2/" {
                    return http::Response::new(Body::from("{}"));
                }
                let rest = path.trim_start_matches("/v2/");
                let not_found = || {
                    http::Response::builder()
                        .status(404)
                        .body(Body::from(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#))
                        .unwrap()
                };
                if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
                    let Some((media_type, bytes)) =
                        s.manifests.get(&(repo.to_string(), reference.to_string())).cloned()
                    else {
                        return not_found();
                    };
                    let digest = Digest::sha256_of(&bytes).to_string();
                    let body = if head { Body::empty() } else { Body::from(bytes.clone()) };
                    return http::Response::builder()
                        .header("content-type", media_type)
                        .header("docker-content-digest", digest)
                        .header("content-length", bytes.len())
                        .body(body)
                        .unwrap();
                }
                if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
                    let bytes = s.lies.get(digest).or(s.blobs.get(digest)).cloned();
                    let Some(bytes) = bytes else {
                        return not_found();
                    };
                    let len = bytes.len();
                    // Sent in 4 KiB pieces, as a network would.
                    let pieces: Vec<Result<Bytes, std::io::Error>> = (0..len)
                        .step_by(4096)
                        .map(|i| Ok(bytes.slice(i..(i + 4096).min(len))))
                        .collect();
                    let body = if head {
                        Body::empty()
                    } else {
                        Body::from_stream(futures_util::stream::iter(pieces))
                    };
                    return http::Response::builder()
                        .header("content-length", len)
                        .body(body)
                        .unwrap();
                }
                not_found()
            },
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A gzipped tar layer holding `files`.
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = ::tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = ::tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, path, *data).unwrap();
    }
    gzip(&b.into_inner().unwrap())
}

impl Upstream {
    /// Adds an image `repo:tag` with `config` (its `config` section) and `layers`; returns the
    /// manifest's digest and the layers' digests.
    fn image(
        &mut self,
        repo: &str,
        tag: &str,
        config: Value,
        layers: Vec<Vec<u8>>,
    ) -> (String, Vec<String>) {
        let typed = layers
            .into_iter()
            .map(|l| ("application/vnd.oci.image.layer.v1.tar+gzip", l))
            .collect();
        self.image_typed(repo, tag, config, typed)
    }

    /// The same, each layer with its own media type.
    fn image_typed(
        &mut self,
        repo: &str,
        tag: &str,
        config: Value,
        layers: Vec<(&str, Vec<u8>)>,
    ) -> (String, Vec<String>) {
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap();
        let config_digest = Digest::sha256_of(&config).to_string();
        let mut descriptors = Vec::new();
        let mut digests = Vec::new();
        for (media_type, l) in layers {
            let d = Digest::sha256_of(&l).to_string();
            descriptors.push(json!({
                "mediaType": media_type,
                "digest": d, "size": l.len(),
            }));
            digests.push(d.clone());
            self.blobs.insert(d, Bytes::from(l));
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": descriptors,
        }))
        .unwrap();
        self.blobs.insert(config_digest, Bytes::from(config));
        let digest = Digest::sha256_of(&manifest).to_string();
        let entry = (
            "application/vnd.oci.image.manifest.v1+json".to_string(),
            Bytes::from(manifest),
        );
        self.manifests
            .insert((repo.into(), tag.into()), entry.clone());
        self.manifests.insert((repo.into(), digest.clone()), entry);
        (digest, digests)
    }
}

/// The service, for docker.io at `upstream`, with its data (cache) under `dir`.
fn service(upstream: &str, dir: &std::path::Path) -> axum::Router {
    service_with(upstream, dir, Arc::new(crate::store::MemoryStore::new()))
}

fn service_with(
    upstream: &str,
    dir: &std::path::Path,
    store: Arc<crate::store::MemoryStore>,
) -> axum::Router {
    let config = Config::parse(&format!(
        "[server]\ndata_dir = \"{}\"\n[audit]\npath = \"\"\n[upstreams.\"docker.io\"]\nurl = \"{upstream}\"\n",
        dir.display()
    ))
    .unwrap();
    config.validate().unwrap();
    crate::app(&config, store).unwrap()
}

/// Sends one request; the status, headers and the body as far as it went (and whether it ended
/// in an error: an aborted response).
async fn send(app: &axum::Router, method: &str, uri: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let mut stream = body.into_data_stream();
    let (mut bytes, mut aborted) = (Vec::new(), false);
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => bytes.extend_from_slice(&c),
            Err(_) => {
                aborted = true;
                break;
            }
        }
    }
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: bytes,
        aborted,
    }
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
    aborted: bool,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The message of a `403 DENIED`, asserting that this is one.
    fn denied(&self) -> String {
        assert_eq!(
            (self.status, self.code()),
            (StatusCode::FORBIDDEN, "DENIED".into())
        );
        self.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// The `403 DENIED` message for `path` once the blob's verdict is stored: the fill that judges a
/// layer reads it to its end (and checks its digest) after cutting its clients.
async fn denied_once_judged(app: &axum::Router, path: &str) -> String {
    let mut r = send(app, "GET", path, &[]).await;
    for _ in 0..100 {
        if r.status == StatusCode::FORBIDDEN {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        r = send(app, "GET", path, &[]).await;
    }
    r.denied()
}

async fn setup() -> (Shared, axum::Router, tempfile::TempDir) {
    let state: Shared = Arc::default();
    let url = fake_upstream(state.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = service(&url, dir.path());
    (state, app, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_methods_and_the_error_envelope() {
    let (up, app, _dir) = setup().await;
    let (digest, _) = up.lock().unwrap().image(
        "library/nginx",
        "latest",
        json!({"Cmd": ["nginx"]}),
        vec![layer(&[("etc/nginx/nginx.conf", b"worker_processes 1;\n")])],
    );
    let r = send(&app, "GET", "/v2/", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["docker-distribution-api-version"], "registry/2.0");

    // A one-component name is an official image; the manifest comes back byte-exact.
    let r = send(&app, "GET", "/v2/nginx/manifests/latest", &[]).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers["docker-content-digest"], digest.as_str());
    assert_eq!(Digest::sha256_of(&r.body).to_string(), digest);
    let r = send(&app, "HEAD", "/v2/library/nginx/manifests/latest", &[]).await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 0));

    // Unknown tag: the upstream's 404 as MANIFEST_UNKNOWN in the OCI envelope.
    let r = send(&app, "GET", "/v2/library/nginx/manifests/nope", &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );

    // Writes are refused; an unconfigured registry is never contacted.
    let r = send(&app, "PUT", "/v2/library/nginx/manifests/latest", &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED".into())
    );
    let before = up.lock().unwrap().seen.len();
    let r = send(&app, "GET", "/v2/x/y/manifests/latest?ns=evil.example", &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "DENIED".into())
    );
    assert_eq!(
        up.lock().unwrap().seen.len(),
        before,
        "nothing went upstream"
    );
    let r = send(&app, "GET", "/nowhere", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&app, "GET", "/v2/library/nginx/blobs/sha256:zz", &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bytes_never_arrive_whole_and_ranges_come_from_the_verified_blob() {
    let (up, app, _dir) = setup().await;
    // Incompressible, so the layer blob is about as large.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let content: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let (_, layers) = up.lock().unwrap().image(
        "acme/app",
        "1",
        json!({"Cmd": ["/app"]}),
        vec![layer(&[("app/data.bin", &content)])],
    );
    let digest = &layers[0];
    let good = up.lock().unwrap().blobs[digest].clone();
    let path = format!("/v2/acme/app/blobs/{digest}");

    // A range: 206 with exactly the window, cut out of the verified stream.
    let r = send(&app, "GET", &path, &[("range", "bytes=100-4195")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, &good[100..4196]);
    assert_eq!(
        r.headers["content-range"],
        format!("bytes 100-4195/{}", good.len()).as_str()
    );

    // Another blob, served with one byte wrong: the tail is withheld and the response aborted.
    let (_, other) = up.lock().unwrap().image(
        "acme/app",
        "2",
        json!({"Cmd": ["/app"]}),
        vec![layer(&[("app/other.bin", &content[..150_000])])],
    );
    let mut wrong = up.lock().unwrap().blobs[&other[0]].to_vec();
    let last = wrong.len() - 1;
    wrong[last] ^= 1;
    up.lock()
        .unwrap()
        .lies
        .insert(other[0].clone(), Bytes::from(wrong.clone()));
    let r = send(
        &app,
        "GET",
        &format!("/v2/acme/app/blobs/{}", other[0]),
        &[],
    )
    .await;
    assert!(
        r.aborted || r.status != StatusCode::OK,
        "{} with {} of {} bytes",
        r.status,
        r.body.len(),
        wrong.len()
    );
    assert!(
        r.body.len() < wrong.len(),
        "the client never holds the whole blob"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_config_is_refused_at_the_manifest_and_a_miner_layer_at_its_blob() {
    let (up, app, _dir) = setup().await;
    up.lock().unwrap().image(
        "acme/sysmon",
        "latest",
        json!({"Entrypoint": ["xmrig", "-o", "stratum+tcp://pool.supportxmr.com:3333", "--donate-level=0"]}),
        vec![layer(&[("etc/hostname", b"box\n")])],
    );
    let r = send(&app, "GET", "/v2/acme/sysmon/manifests/latest", &[]).await;
    let message = r.denied();
    assert!(message.starts_with("blocked by portcullis:"), "{message}");
    assert!(message.contains("[miner."), "{message}");

    // A clean config over a miner layer: the manifest passes (nothing known yet), the layer is
    // judged as it streams and never delivered whole, then refused at once with its reason.
    let (_, layers) = up.lock().unwrap().image(
        "acme/tools",
        "latest",
        json!({"Cmd": ["/bin/sh"]}),
        vec![gzip(&malicious_layer())],
    );
    let r = send(&app, "GET", "/v2/acme/tools/manifests/latest", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let path = format!("/v2/acme/tools/blobs/{}", layers[0]);
    let size = up.lock().unwrap().blobs[&layers[0]].len();
    let r = send(&app, "GET", &path, &[]).await;
    assert!(
        r.body.len() < size,
        "a malicious layer is never delivered whole"
    );
    // The verdict is stored once the fill has read the whole layer and its digest checked out;
    // from then on the blob is refused before a byte is sent.
    let message = denied_once_judged(&app, &path).await;
    assert!(
        message.contains("[miner."),
        "the strongest evidence leads: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_names_leave_nothing_in_the_verdict_store() {
    let state: Shared = Arc::default();
    let url = fake_upstream(state.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::store::MemoryStore::new());
    let app = service_with(&url, dir.path(), store.clone());
    let names: Vec<String> = (0..2000)
        .map(|i| format!("nobody{i}/made-up-{i}"))
        .collect();
    for name in &names {
        let r = send(&app, "GET", &format!("/v2/{name}/manifests/latest"), &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    for name in names.iter().step_by(97) {
        let qn = crate::oci::QualifiedName::new("docker.io", name.parse().unwrap()).unwrap();
        let stored = store
            .get_verdict(crate::store::Subject::Repo(&qn), "any")
            .unwrap();
        assert_eq!(stored, crate::store::Lookup::Missing, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_system_layer_that_is_no_tar_is_refused_and_a_signature_layer_is_not() {
    let (up, app, _dir) = setup().await;
    // Not gzip, zstd, xz, bzip2 nor tar: nothing the inspector can read, under a layer type.
    let junk: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (_, layers) = up.lock().unwrap().image_typed(
        "acme/opaque",
        "latest",
        json!({"Cmd": ["/app"]}),
        vec![("application/vnd.oci.image.layer.v1.tar+gzip", junk.clone())],
    );
    let r = send(&app, "GET", "/v2/acme/opaque/manifests/latest", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let path = format!("/v2/acme/opaque/blobs/{}", layers[0]);
    let r = send(&app, "GET", &path, &[]).await;
    assert!(
        r.body.len() < junk.len(),
        "an unjudgeable layer is never delivered whole"
    );
    let message = denied_once_judged(&app, &path).await;
    assert!(message.contains("[inspect.incomplete]"), "{message}");

    // A cosign signature's layer is JSON under its own type: not a file system, served.
    let signature = br#"{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":"sha256:00"},"type":"cosign container image signature"},"optional":null}"#.to_vec();
    let (_, layers) = up.lock().unwrap().image_typed(
        "acme/opaque",
        "sha256-00.sig",
        json!({}),
        vec![(
            "application/vnd.dev.cosign.simplesigning.v1+json",
            signature.clone(),
        )],
    );
    let r = send(&app, "GET", "/v2/acme/opaque/manifests/sha256-00.sig", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(
        &app,
        "GET",
        &format!("/v2/acme/opaque/blobs/{}", layers[0]),
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::OK, signature.as_slice())
    );
}
