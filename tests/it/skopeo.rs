//! skopeo pulls fixture images through portcullis and gets them byte for byte.

use crate::common::image::mixed_upstream as fixture;
use crate::common::*;

fn pull(src: &str, extra: &[&str]) -> Result<tempfile::TempDir, String> {
    let dest = tempfile::tempdir().unwrap();
    let mut args = vec!["copy", "--src-tls-verify=false", "--preserve-digests"];
    args.extend_from_slice(extra);
    let d = format!("oci:{}:out", dest.path().display());
    args.push(src);
    args.push(&d);
    skopeo(&args).map(|_| dest)
}

/// Every blob skopeo wrote is the very file pushed upstream.
fn assert_same_blobs(source: &std::path::Path, pulled: &std::path::Path, expect_at_least: usize) {
    let src = layout_blobs(source);
    let got = layout_blobs(pulled);
    assert!(got.len() >= expect_at_least, "pulled {} blobs", got.len());
    for (name, bytes) in &got {
        assert_eq!(
            src.get(name),
            Some(bytes),
            "blob {name} differs from the pushed one"
        );
    }
}

#[test]
fn skopeo_pulls_official_and_user_images_by_path_byte_for_byte() {
    let f = fixture();
    let p = Portcullis::for_upstream(&f.upstream);
    for src in [
        format!("docker://{}/mixed:v1", p.addr),
        format!("docker://{}/someuser/app:v1", p.addr),
    ] {
        let out = pull(&src, &[]).unwrap_or_else(|e| panic!("{src}: {e}"));
        // manifest + config + 5 layers
        assert_same_blobs(f.layout.path(), out.path(), 7);
        assert!(layout_blobs(out.path()).contains_key(&f.mixed.manifest_digest));
    }
}

#[test]
fn skopeo_pulls_by_host_prefix_and_by_digest() {
    let f = fixture();
    let p = Portcullis::for_upstream(&f.upstream);
    let out = pull(
        &format!("docker://{}/docker.io/library/mixed:v1", p.addr),
        &[],
    )
    .unwrap();
    assert_same_blobs(f.layout.path(), out.path(), 7);
    let out = pull(
        &format!("docker://{}/mixed@{}", p.addr, f.mixed.manifest_digest),
        &[],
    )
    .unwrap();
    assert_same_blobs(f.layout.path(), out.path(), 7);
}

#[test]
fn multi_arch_index_gives_each_platform_its_manifest() {
    let f = fixture();
    let p = Portcullis::for_upstream(&f.upstream);
    for (arch, child) in [("amd64", &f.children[0]), ("arm64", &f.children[1])] {
        let out = pull(
            &format!("docker://{}/multi:v1", p.addr),
            &["--override-arch", arch, "--override-os", "linux"],
        )
        .unwrap();
        let blobs = layout_blobs(out.path());
        assert!(
            blobs.contains_key(&child.manifest_digest),
            "{arch}: got {:?}",
            blobs.keys()
        );
        assert!(blobs.contains_key(&child.layer_digests[0]));
    }
    // --all copies the index itself, unchanged.
    let out = pull(&format!("docker://{}/multi:v1", p.addr), &["--all"]).unwrap();
    assert!(layout_blobs(out.path()).contains_key(&f.index_digest));
}

#[test]
fn manifests_and_blobs_carry_exact_headers_on_head_and_get() {
    let f = fixture();
    let p = Portcullis::for_upstream(&f.upstream);
    let c = http();
    let url = format!("{}/v2/mixed/manifests/v1", p.url());
    for head in [true, false] {
        let req = if head { c.head(&url) } else { c.get(&url) };
        let r = req
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let h = r.headers().clone();
        assert_eq!(
            h["content-type"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(h["docker-content-digest"], f.mixed.manifest_digest.as_str());
        assert_eq!(
            h["content-length"],
            f.mixed.manifest.len().to_string().as_str()
        );
        assert_eq!(h["docker-distribution-api-version"], "registry/2.0");
        let body = r.bytes().unwrap();
        if head {
            assert!(body.is_empty());
        } else {
            assert_eq!(body.as_ref(), f.mixed.manifest.as_slice());
        }
    }
    let layer = &f.mixed.layer_digests[1];
    let size = layout_blobs(f.layout.path())[layer].len();
    let url = format!("{}/v2/mixed/blobs/{layer}", p.url());
    let r = c.head(&url).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    assert_eq!(r.headers()["docker-content-digest"], layer.as_str());
    let r = c.get(&url).send().unwrap();
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    assert_eq!(sha256(&r.bytes().unwrap()), *layer);
}

#[test]
fn blob_ranges_are_served_from_the_verified_stream() {
    let f = fixture();
    let p = Portcullis::for_upstream(&f.upstream);
    let layer = &f.mixed.layer_digests[1];
    let whole = layout_blobs(f.layout.path())[layer].clone();
    let url = format!("{}/v2/mixed/blobs/{layer}", p.url());
    let c = http();
    let r = c
        .get(&url)
        .header("Range", "bytes=100-1099")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 100-1099/{}", whole.len()).as_str()
    );
    assert_eq!(r.bytes().unwrap().as_ref(), &whole[100..1100]);
    let r = c.get(&url).header("Range", "bytes=-10").send().unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().unwrap().as_ref(), &whole[whole.len() - 10..]);
    // Several ranges: the whole blob, 200.
    let r = c.get(&url).header("Range", "bytes=0-1,5-6").send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().len(), whole.len());
    let r = c
        .get(&url)
        .header("Range", format!("bytes={}-", whole.len() + 5))
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", whole.len()).as_str()
    );
}

#[test]
fn tag_lists_paginate_with_links_back_to_the_proxy() {
    let f = fixture();
    for t in ["v2", "v3"] {
        f.upstream
            .push(f.layout.path(), "mixed", "library/mixed", t);
    }
    let p = Portcullis::for_upstream(&f.upstream);
    let c = http();
    let r = c
        .get(format!("{}/v2/mixed/tags/list", p.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v1", "v2", "v3"]));
    let r = c
        .get(format!("{}/v2/docker.io/mixed/tags/list?n=2", p.url()))
        .send()
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_string();
    assert_eq!(
        link,
        "</v2/docker.io/mixed/tags/list?n=2&last=v2>; rel=\"next\""
    );
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v1", "v2"]));
    let r = c
        .get(format!("{}/v2/mixed/tags/list?n=2&last=v2", p.url()))
        .send()
        .unwrap();
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v3"]));
}
