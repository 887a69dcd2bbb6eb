//! The readers on small archives and layouts built here (tar + gzip written by the test), and the
//! judging of what they hold. The "malicious" content is inert text: a miner's command line.

use super::archive::TarBlobs;
use super::layout::{self, Blobs, DirBlobs};
use super::*;
use crate::inspect::Decision;
use crate::inspect::Place;
use serde_json::json;
use std::io::Write;

const MINER_CMD: &str = "xmrig -o stratum+tcp://pool.supportxmr.com:3333 --donate-level=0";

fn scanner() -> Scanner {
    crate::scanner(&Config::embedded()).unwrap()
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::sha256_of(bytes)
}

/// A layer tar of `(path, content, mode)`.
fn layer_tar(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, content, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(*mode);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *content).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn config(entrypoint: &[&str], diff_ids: &[Digest]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [],
    }))
    .unwrap()
}

/// One entry of an archive written by a test.
enum Item<'a> {
    File(&'a str, Vec<u8>),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn archive(dir: &Path, items: Vec<Item>) -> PathBuf {
    let path = dir.join("image.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
    for item in items {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        match item {
            Item::File(name, content) => {
                h.set_size(content.len() as u64);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, name, content.as_slice()).unwrap();
            }
            Item::Symlink(name, target) => {
                h.set_size(0);
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, name, target).unwrap();
            }
            Item::Hardlink(name, target) => {
                h.set_size(0);
                h.set_entry_type(tar::EntryType::Link);
                b.append_link(&mut h, name, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap().flush().unwrap();
    path
}

fn rules_of(report: &ScanReport) -> Vec<&str> {
    report
        .findings
        .iter()
        .map(|f| f.finding.rule.as_str())
        .collect()
}

fn scan(target: Target, options: &ScanOptions) -> Result<ScanReport> {
    run(&scanner(), &Config::embedded(), &target, options)
}

/// A legacy `docker save`: layers as `<id>/layer.tar` (one a symlink to another, one gzip),
/// config as `<id>.json`, and `manifest.json` last, as docker writes it.
#[test]
fn legacy_docker_save_is_read_through_links_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let base = layer_tar(&[("etc/os-release", b"ID=test\n", 0o644)]);
    let app = layer_tar(&[(
        "opt/app/run.sh",
        format!("#!/bin/sh\nexec {MINER_CMD}\n").as_bytes(),
        0o755,
    )]);
    let cfg = config(
        &["/opt/app/run.sh"],
        &[sha256(&base), sha256(&base), sha256(&app)],
    );
    let cfg_name = format!("{}.json", sha256(&cfg).hex());
    let path = archive(
        dir.path(),
        vec![
            Item::File("aaa/layer.tar", base.clone()),
            Item::Symlink("bbb/layer.tar", "../aaa/layer.tar"),
            Item::File("ccc/layer.tar", gzip(&app)),
            Item::File(&cfg_name, cfg.clone()),
            Item::File(
                "manifest.json",
                serde_json::to_vec(&json!([{
                    "Config": cfg_name,
                    "RepoTags": ["acme/app:1"],
                    "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"],
                }]))
                .unwrap(),
            ),
        ],
    );
    let tar = TarBlobs::open(&path).unwrap();
    let images = archive::images(&tar, None, &Platforms::Default).unwrap();
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image.config.as_deref(), Some(cfg.as_slice()));
    assert_eq!(image.config_digest, Some(sha256(&cfg)));
    assert_eq!(image.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(image.layers.len(), 3);
    // The symlinked layer reads as its target.
    let mut linked = Vec::new();
    tar.open("bbb/layer.tar")
        .unwrap()
        .read_to_end(&mut linked)
        .unwrap();
    assert_eq!(linked, base);

    let report = scan(
        Target::Archive {
            file: path.clone(),
            reference: Some("acme/app:1".into()),
        },
        &ScanOptions::default(),
    )
    .unwrap();
    assert_eq!(report.decision, Decision::Block, "{}", report.table());
    assert_eq!(report.images[0].layers, 3);
    // The script the entrypoint runs is where the stratum URL is: that finding counts as Runs.
    let in_script: Vec<&ReportFinding> = report
        .findings
        .iter()
        .filter(|f| f.finding.evidence.path.as_deref() == Some("/opt/app/run.sh"))
        .collect();
    assert!(!in_script.is_empty(), "{}", report.table());
    assert!(in_script.iter().all(|f| f.finding.place == Place::Runs));
    // A legacy layer has no digest of its own: findings name it by its sha256.
    let gz = Digest::sha256_of(&gzip(&app));
    assert!(in_script
        .iter()
        .all(|f| f.finding.evidence.layer.as_deref() == Some(gz.to_string().as_str())));

    let err = scan(
        Target::Archive {
            file: path,
            reference: Some("acme/other:1".into()),
        },
        &ScanOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("acme/app:1"), "{err}");
}

/// Docker 25+ writes an OCI layout and a `manifest.json` naming its blobs; `oci-archive:`
/// writes the layout alone. Both are read, digests checked.
#[test]
fn oci_layout_in_a_tar_is_read_as_a_layout() {
    let dir = tempfile::tempdir().unwrap();
    let clean = gzip(&layer_tar(&[(
        "usr/bin/hello",
        b"#!/bin/sh\necho hello\n",
        0o755,
    )]));
    let cfg = config(&["/usr/bin/hello"], &[]);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::media::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&cfg), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&clean), "size": clean.len()}],
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": crate::oci::media::OCI_MANIFEST, "digest": sha256(&manifest), "size": manifest.len(),
                       "annotations": {layout::REF_NAME: "1.0", layout::CONTAINERD_NAME: "docker.io/acme/hello:1.0"}}],
    }))
    .unwrap();
    let blob = |b: &[u8]| format!("blobs/sha256/{}", sha256(b).hex());
    let path = archive(
        dir.path(),
        vec![
            Item::File("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            Item::File(&blob(&clean), clean.clone()),
            Item::File(&blob(&cfg), cfg.clone()),
            Item::File(&blob(&manifest), manifest.clone()),
            Item::File("index.json", index),
        ],
    );
    let tar = TarBlobs::open(&path).unwrap();
    for reference in [None, Some("1.0"), Some("docker.io/acme/hello:1.0")] {
        let images = archive::images(&tar, reference, &Platforms::Default).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].manifest, Some(sha256(&manifest)));
        assert_eq!(images[0].layers[0].digest, Some(sha256(&clean)));
    }
    let err = archive::images(&tar, Some("2.0"), &Platforms::Default).unwrap_err();
    assert!(err.to_string().contains("tags: 1.0"), "{err}");

    let report = scan(
        Target::Archive {
            file: path,
            reference: None,
        },
        &ScanOptions::default(),
    )
    .unwrap();
    assert_eq!(report.decision, Decision::Allow, "{}", report.table());
    assert!(report.findings.is_empty(), "{}", report.table());
    assert_eq!(report.exit_code(), EXIT_ALLOW);
    assert!(report.table().contains("no findings"));
}

/// Writes a layout in `dir`: one image per `(tag, platform, entrypoint, layer)`; with `index`,
/// the images go under one tagged index instead.
fn write_layout(dir: &Path, images: &[(&str, &str, &[&str], Vec<u8>)], index: Option<&str>) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |b: &[u8]| {
        let d = sha256(b);
        std::fs::write(dir.join("blobs/sha256").join(d.hex()), b).unwrap();
        d
    };
    let mut entries = Vec::new();
    for (tag, platform, entrypoint, layer) in images {
        let (os, arch) = platform.split_once('/').unwrap();
        let mut cfg: serde_json::Value = serde_json::from_slice(&config(entrypoint, &[])).unwrap();
        cfg["os"] = json!(os);
        cfg["architecture"] = json!(arch);
        let cfg = serde_json::to_vec(&cfg).unwrap();
        let layer_d = put(layer);
        let cfg_d = put(&cfg);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer.len()}],
        }))
        .unwrap();
        let d = put(&manifest);
        entries.push(json!({"mediaType": crate::oci::media::OCI_MANIFEST, "digest": d, "size": manifest.len(),
                            "platform": {"os": os, "architecture": arch},
                            "annotations": {layout::REF_NAME: tag}}));
    }
    if let Some(tag) = index {
        for e in &mut entries {
            e.as_object_mut().unwrap().remove("annotations");
        }
        let idx = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": crate::oci::media::OCI_INDEX, "manifests": entries})).unwrap();
        let d = put(&idx);
        entries = vec![
            json!({"mediaType": crate::oci::media::OCI_INDEX, "digest": d, "size": idx.len(),
                              "annotations": {layout::REF_NAME: tag}}),
        ];
    }
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": entries})).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_layout_picks_images_by_tag_and_platform() {
    let dir = tempfile::tempdir().unwrap();
    let clean = layer_tar(&[("bin/true", b"#!/bin/sh\n", 0o755)]);
    write_layout(
        dir.path(),
        &[
            ("", "linux/amd64", &["/bin/true"], clean.clone()),
            ("", "linux/arm64", &[MINER_CMD], clean.clone()),
        ],
        Some("multi"),
    );
    let blobs = DirBlobs::new(dir.path());
    let one = |p: &Platforms| layout::images(&blobs, Some("multi"), p);
    assert_eq!(
        one(&Platforms::Default).unwrap()[0].platform.as_deref(),
        Some("linux/amd64")
    );
    let arm = Platforms::One("linux/arm64".parse().unwrap());
    assert_eq!(
        one(&arm).unwrap()[0].platform.as_deref(),
        Some("linux/arm64")
    );
    assert_eq!(one(&Platforms::All).unwrap().len(), 2);
    let err = one(&Platforms::One("linux/s390x".parse().unwrap())).unwrap_err();
    assert!(
        err.to_string().contains("linux/amd64, linux/arm64"),
        "{err}"
    );

    let target = Target::parse(&format!("oci:{}:multi", dir.path().display())).unwrap();
    let default = scan(target.clone(), &ScanOptions::default()).unwrap();
    assert_eq!(default.decision, Decision::Allow, "{}", default.table());
    let all = ScanOptions {
        platforms: Platforms::All,
        ..ScanOptions::default()
    };
    let report = scan(target, &all).unwrap();
    // The worst platform decides; its findings say which platform they were made in.
    assert_eq!(report.decision, Decision::Block, "{}", report.table());
    assert_eq!(report.images.len(), 2);
    assert!(report
        .findings
        .iter()
        .all(|f| f.platform.as_deref() == Some("linux/arm64")));
    assert!(report.table().contains("PLATFORM"));
}

#[test]
fn a_layout_with_several_images_needs_a_tag() {
    let dir = tempfile::tempdir().unwrap();
    let clean = layer_tar(&[("bin/true", b"#!/bin/sh\n", 0o755)]);
    write_layout(
        dir.path(),
        &[
            ("a", "linux/amd64", &["/bin/true"], clean.clone()),
            ("b", "linux/amd64", &["/bin/true"], clean),
        ],
        None,
    );
    let err = layout::images(&DirBlobs::new(dir.path()), None, &Platforms::Default).unwrap_err();
    assert!(matches!(err, ScanError::Usage(_)), "{err}");
    assert!(err.to_string().contains("tags: a, b"), "{err}");
    assert_eq!(
        layout::images(&DirBlobs::new(dir.path()), Some("b"), &Platforms::Default)
            .unwrap()
            .len(),
        1
    );
}

/// Regression: a layer whose bytes do not match its digest is an error, not a clean verdict.
#[test]
fn a_tampered_blob_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let layer = layer_tar(&[("bin/true", b"#!/bin/sh\n", 0o755)]);
    write_layout(
        dir.path(),
        &[("t", "linux/amd64", &["/bin/true"], layer.clone())],
        None,
    );
    let path = dir.path().join("blobs/sha256").join(sha256(&layer).hex());
    let mut tampered = layer.clone();
    tampered[600] ^= 1;
    std::fs::write(&path, &tampered).unwrap();
    let err = scan(
        Target::Layout {
            dir: dir.path().to_path_buf(),
            tag: None,
        },
        &ScanOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ScanError::Digest { .. }), "{err}");
    assert_eq!(err.exit_code(), EXIT_ERROR);
}

/// A layer that cannot be inspected to the end blocks, as the guard fails closed.
#[test]
fn a_truncated_layer_is_judged_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let gz = gzip(&layer_tar(&[("etc/motd", &[b'x'; 4096], 0o644)]));
    let cut = gz[..gz.len() / 2].to_vec();
    let cfg = config(&["/bin/sh"], &[]);
    let path = archive(
        dir.path(),
        vec![
            Item::File("l/layer.tar", cut),
            Item::File("c.json", cfg),
            Item::File(
                "manifest.json",
                serde_json::to_vec(
                    &json!([{"Config": "c.json", "RepoTags": null, "Layers": ["l/layer.tar"]}]),
                )
                .unwrap(),
            ),
        ],
    );
    let report = scan(
        Target::Archive {
            file: path,
            reference: None,
        },
        &ScanOptions::default(),
    )
    .unwrap();
    assert_eq!(report.decision, Decision::Block, "{}", report.table());
    assert!(rules_of(&report).contains(&crate::judge::UNJUDGED_RULE));
}

#[test]
fn archives_that_cannot_be_read_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("image.tar.gz");
    std::fs::write(&gz, gzip(b"whatever")).unwrap();
    let err = TarBlobs::open(&gz).err().unwrap();
    assert!(err.to_string().contains("decompress it first"), "{err}");

    let looped = archive(
        dir.path(),
        vec![
            Item::Symlink("a/layer.tar", "../b/layer.tar"),
            Item::Hardlink("b/layer.tar", "a/layer.tar"),
            Item::Symlink("escape", "../../etc/passwd"),
        ],
    );
    let tar = TarBlobs::open(&looped).unwrap();
    assert!(tar
        .open("a/layer.tar")
        .err()
        .unwrap()
        .to_string()
        .contains("too many links"));
    assert!(tar.open("escape").is_err());
    assert!(!tar.exists("manifest.json"));
    let err = archive::images(&tar, None, &Platforms::Default).unwrap_err();
    assert!(err.to_string().contains("no manifest.json"), "{err}");
}

#[test]
fn targets_parse_like_skopeo_transports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("index.json"), "{}").unwrap();
    assert_eq!(
        Target::parse(&format!("oci:{d}:v1")).unwrap(),
        Target::Layout {
            dir: dir.path().into(),
            tag: Some("v1".into())
        }
    );
    assert_eq!(
        Target::parse(&d).unwrap(),
        Target::Layout {
            dir: dir.path().into(),
            tag: None
        }
    );
    let f = dir.path().join("x.tar");
    std::fs::write(&f, b"").unwrap();
    assert_eq!(
        Target::parse(&format!("docker-archive:{}:acme/app:1", f.display())).unwrap(),
        Target::Archive {
            file: f.clone(),
            reference: Some("acme/app:1".into())
        }
    );
    assert_eq!(
        Target::parse(&f.display().to_string()).unwrap(),
        Target::Archive {
            file: f,
            reference: None
        }
    );
    let remote = |s: &str| match Target::parse(s).unwrap() {
        Target::Remote { name, reference } => (name, reference.to_string()),
        t => panic!("{t:?}"),
    };
    assert_eq!(remote("docker://nginx"), ("nginx".into(), "latest".into()));
    assert_eq!(
        remote("docker://localhost:5000/a/b:1.2"),
        ("localhost:5000/a/b".into(), "1.2".into())
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    assert_eq!(
        remote(&format!("docker://ghcr.io/o/i@{digest}")),
        ("ghcr.io/o/i".into(), digest)
    );
    for bad in ["docker://", "docker://x:bad tag", "docker://x@sha256:1"] {
        assert!(
            matches!(Target::parse(bad), Err(ScanError::Usage(_))),
            "{bad}"
        );
    }
    // A path that is not there is unreadable input, not a malformed command line.
    let missing = Target::parse("/surely/not/here").unwrap_err();
    assert_eq!(missing.exit_code(), EXIT_ERROR, "{missing}");
    assert!("linux".parse::<PlatformSpec>().is_err());
    assert_eq!(
        "linux/arm/v7".parse::<PlatformSpec>().unwrap().to_string(),
        "linux/arm/v7"
    );
}

#[test]
fn a_given_name_is_judged_with_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let clean = layer_tar(&[("bin/true", b"#!/bin/sh\n", 0o755)]);
    write_layout(
        dir.path(),
        &[("t", "linux/amd64", &["/bin/true"], clean)],
        None,
    );
    let target = Target::Layout {
        dir: dir.path().to_path_buf(),
        tag: None,
    };
    let named = |n: &str| {
        scan(
            target.clone(),
            &ScanOptions {
                name: Some(n.into()),
                ..ScanOptions::default()
            },
        )
        .unwrap()
    };
    assert!(named("library/nginx").findings.is_empty());
    let squat = named("ngimx");
    assert!(
        squat
            .findings
            .iter()
            .any(|f| f.finding.place == Place::Name && f.platform.is_none()),
        "{}",
        squat.table()
    );
}
