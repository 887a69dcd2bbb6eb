//! Documents portcullis refuses to read (`oci::document`): a manifest, index or image config that
//! the clients (Go's `encoding/json`) could read otherwise than portcullis, that does not parse,
//! or that is served as something other than a manifest, is answered `400 MANIFEST_INVALID` (with
//! `detail.source` `upstream`) and never cached, whether inspection is on or off. The upstream is the fake (`common::fake`): a
//! real registry would not store most of these.

use crate::common::fake::Fake;
use crate::common::image::Written;
use crate::common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn good_image() -> Image {
    Image::new()
        .layer(Layer::new(Compression::Gzip).exec("app/run", "#!/bin/sh\necho hello\n"))
        .entrypoint(&["/app/run"])
}

/// Its config starts XMRig-style flags against a pool: blocked on the config alone.
fn miner_image() -> Image {
    Image::new()
        .layer(Layer::new(Compression::Gzip).file("etc/os-release", "ID=fixture\n"))
        .entrypoint(&[
            "/bin/sh",
            "-c",
            "xmrig -o stratum+tcp://pool.supportxmr.com:3333 --donate-level=0 & exec /app/run",
        ])
}

/// The fake upstream, with a clean and a miner image written to a layout (blobs not served yet).
struct Up {
    fake: Fake,
    layout: tempfile::TempDir,
    good: Written,
    miner: Written,
}

impl Up {
    fn new() -> Up {
        let layout = tempfile::tempdir().unwrap();
        let good = good_image().write(layout.path(), Some("good"));
        let miner = miner_image().write(layout.path(), Some("miner"));
        Up {
            fake: Fake::start(),
            layout,
            good,
            miner,
        }
    }

    fn blob(&self, digest: &str) -> Vec<u8> {
        std::fs::read(self.layout.path().join("blobs/sha256").join(&digest[7..])).unwrap()
    }

    /// Serves the configs and layers of both images under `repo`.
    fn serve_blobs(&self, repo: &str) {
        for w in [&self.good, &self.miner] {
            for d in std::iter::once(&w.config_digest).chain(&w.layer_digests) {
                self.fake.blob_as(repo, d, &self.blob(d));
            }
        }
    }

    fn config_desc(&self, w: &Written) -> String {
        let size = self.blob(&w.config_digest).len();
        format!(
            r#"{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":{size}}}"#,
            w.config_digest
        )
    }

    fn layer_descs(&self, w: &Written) -> String {
        let descs: Vec<String> = w
            .layer_digests
            .iter()
            .map(|d| {
                format!(
                    r#"{{"mediaType":"{GZIP_LAYER}","digest":"{d}","size":{}}}"#,
                    self.blob(d).len()
                )
            })
            .collect();
        descs.join(",")
    }

    /// Serves `bytes` as `repo:tag` and by digest, with `content_type`; returns the digest.
    fn manifest(&self, repo: &str, tag: &str, content_type: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        self.fake.manifest(repo, tag, content_type, bytes);
        self.fake.manifest(repo, &digest, content_type, bytes);
        digest
    }
}

/// portcullis in front of the fake as `docker.io`, with `extra` TOML before the upstream table.
fn proxy(fake: &Fake, extra: &str) -> (Portcullis, tempfile::TempDir) {
    let cfg = tempfile::tempdir().unwrap();
    let path = cfg.path().join("portcullis.toml");
    std::fs::write(
        &path,
        format!(
            "{extra}\n[upstream]\nattempts = 1\n[upstreams.\"docker.io\"]\nurl = \"{}\"\n",
            fake.url()
        ),
    )
    .unwrap();
    (
        Portcullis::start(&["--config", path.to_str().unwrap()]),
        cfg,
    )
}

/// The answer to `GET <path>` must be a 400 MANIFEST_INVALID blaming the upstream; its message.
fn refused(p: &Portcullis, path: &str) -> String {
    let r = http().get(format!("{}{path}", p.url())).send().unwrap();
    let status = r.status().as_u16();
    assert!(r.headers().get("docker-content-digest").is_none(), "{path}");
    let body: Value = r.json().unwrap();
    assert_eq!(status, 400, "{path}: {body}");
    assert_eq!(
        body["errors"][0]["code"], "MANIFEST_INVALID",
        "{path}: {body}"
    );
    assert_eq!(body["errors"][0]["detail"]["source"], "upstream", "{body}");
    assert_eq!(body["errors"][0]["detail"]["retryable"], false, "{body}");
    body["errors"][0]["message"].as_str().unwrap().to_string()
}

fn cached_manifest(p: &Portcullis, digest: &str) -> PathBuf {
    p.data.join("cache/manifests/sha256").join(&digest[7..])
}

fn cached_blob(p: &Portcullis, digest: &str) -> PathBuf {
    p.data.join("cache/blobs/sha256").join(&digest[7..])
}

/// The attack the Go-compatibility check is for: `"Config"`/`"Layers"` keys, which Go clients
/// read as `config`/`layers` (skopeo pulls the miner from such a manifest straight from the
/// registry) and a strict parse would not see at all.
#[test]
fn case_variant_keys_are_refused_though_the_clients_read_them() {
    let up = Up::new();
    let repo = "library/trick";
    up.serve_blobs(repo);
    let trick = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","Config":{},"Layers":[{}]}}"#,
        up.config_desc(&up.miner),
        up.layer_descs(&up.miner)
    );
    let digest = up.manifest(repo, "v1", OCI_MANIFEST, trick.as_bytes());

    // skopeo, straight from the upstream: it reads "Config" and pulls the miner's config.
    let direct = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/{repo}:v1", up.fake.host()),
        &format!("dir:{}", direct.path().display()),
    ])
    .expect("skopeo reads a manifest with Config/Layers keys");
    assert!(
        direct.path().join(&up.miner.config_digest[7..]).exists(),
        "skopeo fetched the config named by \"Config\""
    );

    let (p, _cfg) = proxy(&up.fake, "");
    let config_path = format!("/v2/{repo}/blobs/{}", up.miner.config_digest);
    let before = up.fake.requests(&config_path);
    let message = refused(&p, "/v2/trick/manifests/v1");
    assert!(message.contains("\"Config\""), "{message}");
    refused(&p, &format!("/v2/trick/manifests/{digest}"));
    assert_eq!(
        up.fake.requests(&config_path),
        before,
        "refused before anything it names was fetched"
    );
    let err = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/{repo}:v1", p.addr),
        &format!("dir:{}", tempfile::tempdir().unwrap().path().display()),
    ])
    .expect_err("skopeo pulled through portcullis a manifest it refuses");
    eprintln!("skopeo through portcullis: {err}");
    assert!(
        err.contains("manifest invalid") || err.contains("502"),
        "{err}"
    );
    assert!(!cached_manifest(&p, &digest).exists());
}

#[test]
fn a_key_given_twice_is_refused_and_not_cached() {
    let up = Up::new();
    let repo = "library/twice";
    up.serve_blobs(repo);
    // Go keeps the last `config`: the miner's.
    let twice = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}],"config":{}}}"#,
        up.config_desc(&up.good),
        up.layer_descs(&up.good),
        up.config_desc(&up.miner)
    );
    let digest = up.manifest(repo, "v1", OCI_MANIFEST, twice.as_bytes());
    // One level down: the digest inside the config descriptor.
    let inner = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":1,"digest":"{}"}},"layers":[]}}"#,
        up.good.config_digest, up.miner.config_digest
    );
    let inner_digest = up.manifest(repo, "inner", OCI_MANIFEST, inner.as_bytes());
    let (p, _cfg) = proxy(&up.fake, "");

    let message = refused(&p, "/v2/twice/manifests/v1");
    assert!(message.contains("appears twice"), "{message}");
    let head = http()
        .head(format!("{}/v2/twice/manifests/v1", p.url()))
        .send()
        .unwrap();
    assert_eq!(head.status(), 400);
    let message = refused(&p, "/v2/twice/manifests/inner");
    assert!(message.contains("/config/"), "{message}");
    for d in [&digest, &inner_digest] {
        assert!(!cached_manifest(&p, d).exists(), "{d} was cached");
    }
}

#[test]
fn unreadable_manifests_are_refused_never_cached_and_the_next_good_one_is_served() {
    let up = Up::new();
    let repo = "library/flip";
    up.fake.image(repo, "good", up.layout.path(), &up.good);
    let (p, _cfg) = proxy(&up.fake, "");
    let junk: [&[u8]; 4] = [
        b"not json at all",
        &[0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x00],
        b"{\"schemaVersion\":2,\"config\":",
        b"null",
    ];
    for bytes in junk {
        let digest = up.manifest(repo, "v1", OCI_MANIFEST, bytes);
        refused(&p, "/v2/flip/manifests/v1");
        refused(&p, &format!("/v2/flip/manifests/{digest}"));
        assert!(!cached_manifest(&p, &digest).exists());
    }
    assert!(
        !p.data
            .join("cache/tags/docker.io/library/flip/@v1")
            .exists(),
        "a refused manifest's tag was recorded"
    );
    // The upstream now serves a good manifest under the tag: it is served, so nothing of the
    // refused ones was kept.
    up.fake
        .manifest(repo, "v1", OCI_MANIFEST, &up.good.manifest);
    let r = http()
        .get(format!("{}/v2/flip/manifests/v1", p.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), up.good.manifest.as_slice());
    assert!(cached_manifest(&p, &up.good.manifest_digest).exists());
    // (Where a config that was read is kept: see the image config test below.)
    wait_for(
        "the good config in the cache",
        std::time::Duration::from_secs(10),
        || {
            cached_blob(&p, &up.good.config_digest)
                .exists()
                .then_some(())
        },
    );
}

#[test]
fn manifests_served_as_anything_but_a_manifest_type_are_refused() {
    let up = Up::new();
    let repo = "library/typed";
    up.serve_blobs(repo);
    let (p, _cfg) = proxy(&up.fake, "");
    let bytes = up.good.manifest.clone();
    for (tag, content_type) in [
        ("json", "application/json"),
        ("text", "text/plain"),
        ("octet", "application/octet-stream"),
        (
            "schema1",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
        ("config", OCI_CONFIG),
        // The body says it is an OCI manifest.
        ("docker", DOCKER_MANIFEST),
        // An index type for a manifest: a client would read it as an index.
        ("index", OCI_INDEX),
    ] {
        up.fake.manifest(repo, tag, content_type, &bytes);
        let message = refused(&p, &format!("/v2/typed/manifests/{tag}"));
        eprintln!("{content_type}: {message}");
    }
    assert!(!cached_manifest(&p, &up.good.manifest_digest).exists());
    // The same bytes served as what they are pass.
    up.fake.manifest(repo, "right", OCI_MANIFEST, &bytes);
    let r = http()
        .get(format!("{}/v2/typed/manifests/right", p.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// An image config with `Cmd` twice (Go runs the last) refuses its manifest; the config is not
/// kept either.
#[test]
fn image_configs_the_clients_read_otherwise_refuse_their_image() {
    let up = Up::new();
    let repo = "library/cfg";
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Cmd":["/app/run"],"Cmd":["/tmp/.x/xmrig","-o","stratum+tcp://pool.supportxmr.com:3333"]}}"#;
    let config_digest = up.fake.blob(repo, config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let digest = up.manifest(repo, "v1", OCI_MANIFEST, manifest.as_bytes());
    let (p, _cfg) = proxy(&up.fake, "");
    let message = refused(&p, "/v2/cfg/manifests/v1");
    assert!(
        message.contains("image config") && message.contains("appears twice"),
        "{message}"
    );
    assert!(!cached_manifest(&p, &digest).exists());
    wait_for(
        "the refused config to leave the cache",
        std::time::Duration::from_secs(10),
        || (!cached_blob(&p, &config_digest).exists()).then_some(()),
    );
}

/// With `[inspect] enabled = false` nothing is judged, but a document the clients could read
/// otherwise than portcullis is still refused: the cache must never hold one.
#[test]
fn inspection_off_still_refuses_what_the_clients_read_otherwise() {
    let up = Up::new();
    let repo = "library/off";
    up.serve_blobs(repo);
    let trick = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[],"LAYERS":[{}]}}"#,
        up.config_desc(&up.good),
        up.layer_descs(&up.miner)
    );
    up.manifest(repo, "trick", OCI_MANIFEST, trick.as_bytes());
    up.fake.image(repo, "miner", up.layout.path(), &up.miner);
    let (p, _cfg) = proxy(&up.fake, "[inspect]\nenabled = false");
    refused(&p, "/v2/off/manifests/trick");
    // Not judged: the miner passes when inspection is off.
    let r = http()
        .get(format!("{}/v2/off/manifests/miner", p.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// An index is judged down to every image it reaches, through nested indexes; deeper nesting
/// than portcullis follows is refused, and so is a child served as another kind than listed.
#[test]
fn nested_indexes_are_judged_down_to_every_image() {
    let up = Up::new();
    let repo = "library/nest";
    up.fake.image(repo, "good", up.layout.path(), &up.good);
    up.fake.image(repo, "miner", up.layout.path(), &up.miner);
    let entry = |media_type: &str, digest: &str, size: usize, platform: bool| {
        let platform = if platform {
            r#","platform":{"architecture":"amd64","os":"linux"}"#
        } else {
            ""
        };
        format!(r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size}{platform}}}"#)
    };
    let index = |entries: &[String]| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            entries.join(",")
        )
    };
    // top → (good, mid), mid → miner.
    let mid = index(&[entry(
        OCI_MANIFEST,
        &up.miner.manifest_digest,
        up.miner.manifest.len(),
        true,
    )]);
    let mid_digest = up.manifest(repo, "mid", OCI_INDEX, mid.as_bytes());
    let top = index(&[
        entry(
            OCI_MANIFEST,
            &up.good.manifest_digest,
            up.good.manifest.len(),
            true,
        ),
        entry(OCI_INDEX, &mid_digest, mid.len(), false),
    ]);
    up.manifest(repo, "top", OCI_INDEX, top.as_bytes());
    // The same shape over the good image only.
    let clean_mid = index(&[entry(
        OCI_MANIFEST,
        &up.good.manifest_digest,
        up.good.manifest.len(),
        true,
    )]);
    let clean_mid_digest = up.manifest(repo, "cleanmid", OCI_INDEX, clean_mid.as_bytes());
    let clean_top = index(&[entry(OCI_INDEX, &clean_mid_digest, clean_mid.len(), false)]);
    up.manifest(repo, "cleantop", OCI_INDEX, clean_top.as_bytes());
    // Five indexes deep.
    let mut deep = (clean_mid.clone(), clean_mid_digest.clone());
    for i in 0..4 {
        let outer = index(&[entry(OCI_INDEX, &deep.1, deep.0.len(), false)]);
        let d = up.manifest(repo, &format!("deep{i}"), OCI_INDEX, outer.as_bytes());
        deep = (outer, d);
    }
    // An index that lists the good image as a Docker manifest (it is served as OCI).
    let liar = index(&[entry(
        DOCKER_MANIFEST,
        &up.good.manifest_digest,
        up.good.manifest.len(),
        true,
    )]);
    up.manifest(repo, "liar", OCI_INDEX, liar.as_bytes());
    let (p, _cfg) = proxy(&up.fake, "");
    let get = |tag: &str| {
        http()
            .get(format!("{}/v2/nest/manifests/{tag}", p.url()))
            .send()
            .unwrap()
    };

    let r = get("top");
    assert_eq!(r.status(), 403, "the miner two indexes down blocks the top");
    let body: Value = r.json().unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    assert_eq!(get("cleantop").status(), 200);
    // deep2 is the fourth index over the image: followed. deep3 is the fifth: refused.
    assert_eq!(get("deep2").status(), 200);
    let message = refused(&p, "/v2/nest/manifests/deep3");
    assert!(message.contains("nests"), "{message}");
    let message = refused(&p, "/v2/nest/manifests/liar");
    assert!(message.contains("served as"), "{message}");
}

/// `portcullis scan` refuses the same documents, as errors (exit 3) that say why.
#[test]
fn scan_refuses_the_same_documents() {
    let up = Up::new();
    let repo = "library/scanned";
    up.serve_blobs(repo);
    let trick = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","Config":{},"Layers":[{}]}}"#,
        up.config_desc(&up.miner),
        up.layer_descs(&up.miner)
    );
    up.manifest(repo, "trick", OCI_MANIFEST, trick.as_bytes());
    up.manifest(repo, "junk", OCI_MANIFEST, b"\x00\x01garbage");
    up.fake
        .manifest(repo, "json", "application/json", &up.good.manifest);
    let upstream = format!("docker.io={}", up.fake.url());
    for (tag, why) in [
        ("trick", "\"Config\""),
        ("junk", "not valid JSON"),
        ("json", "application/json"),
    ] {
        let out = Command::new(PORTCULLIS)
            .args([
                "scan",
                &format!("docker://scanned:{tag}"),
                "--upstream",
                &upstream,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{tag}: {stderr}");
        assert!(stderr.contains(why), "{tag}: {stderr}");
    }
}
