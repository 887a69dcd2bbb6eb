//! `portcullis scan`: the built binary on an OCI layout, on a docker-archive written by skopeo, and
//! on a remote image in a real `docker-registry` upstream; exit codes, the JSON document, the
//! table. The "malicious" image is an inert stand-in: a miner's command line and a script that
//! names a mining pool, no miner.

use crate::common::image::Written;
use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// A miner started beside the script the image runs: `sh -c` runs both commands, so the script
/// counts as running (a path that is only an argument would not).
const MINER_ENTRYPOINT: [&str; 3] = [
    "/bin/sh",
    "-c",
    "xmrig -o stratum+tcp://pool.supportxmr.com:3333 --donate-level=0 & exec /opt/app/start.sh",
];

fn clean_image() -> Image {
    Image::new()
        .layer(
            Layer::new(Compression::Gzip)
                .exec("usr/local/bin/hello", "#!/bin/sh\necho hello\n")
                .file("etc/hello.conf", "greeting = hello\n"),
        )
        .entrypoint(&["/usr/local/bin/hello"])
}

fn miner_image() -> Image {
    Image::new()
        .layer(Layer::new(Compression::Gzip).file("etc/os-release", "ID=fixture\n"))
        .layer(Layer::new(Compression::None).exec(
            "opt/app/start.sh",
            "#!/bin/sh\n# inert stand-in\necho stratum+tcp://pool.supportxmr.com:3333\n",
        ))
        .entrypoint(&MINER_ENTRYPOINT)
}

/// Both images in one layout, tagged `clean` and `miner`.
fn layout(dir: &Path) -> (Written, Written) {
    let layout = dir.join("layout");
    (
        clean_image().write(&layout, Some("clean")),
        miner_image().write(&layout, Some("miner")),
    )
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }

    fn rules(&self) -> Vec<String> {
        self.json()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule"].as_str().unwrap().to_string())
            .collect()
    }
}

fn scan(args: &[&str]) -> Run {
    let out = Command::new(PORTCULLIS)
        .arg("scan")
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The JSON document's fixed fields, whatever the image.
fn assert_document(doc: &Value, image: &str, decision: &str) {
    assert_eq!(doc["schema_version"], 1, "{doc}");
    assert_eq!(doc["image"], image, "{doc}");
    assert_eq!(doc["decision"], decision, "{doc}");
    assert!(doc["score"].is_number(), "{doc}");
    assert!(doc["findings"].is_array(), "{doc}");
    assert!(
        doc["ruleset_hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("sha256:")),
        "{doc}"
    );
    assert_eq!(
        doc["engine_version"],
        format!("portcullis-{}", env!("CARGO_PKG_VERSION")),
        "{doc}"
    );
}

#[test]
fn scan_judges_an_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, miner) = layout(dir.path());
    let layout = dir.path().join("layout");
    let at = |tag: &str| format!("oci:{}:{tag}", layout.display());

    let run = scan(&[&at("clean"), "--format", "json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let doc = run.json();
    assert_document(&doc, &at("clean"), "allow");
    assert_eq!(doc["findings"], Value::Array(vec![]), "{doc}");
    assert_eq!(doc["images"][0]["manifest"], clean.manifest_digest);
    assert_eq!(doc["images"][0]["config"], clean.config_digest);
    assert_eq!(doc["images"][0]["platform"], "linux/amd64");
    assert_eq!(doc["images"][0]["layers"], 1);

    let run = scan(&[&at("miner"), "--format", "json"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let doc = run.json();
    assert_document(&doc, &at("miner"), "block");
    assert!(doc["score"].as_f64().unwrap() >= 100.0, "{doc}");
    assert_eq!(doc["images"][0]["manifest"], miner.manifest_digest);
    let rules = run.rules();
    assert!(rules.iter().any(|r| r == "miner.stratum-url"), "{rules:?}");
    // The script the entrypoint runs is raised to `runs`, as the proxy's judge does.
    let script: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["evidence"]["path"] == "/opt/app/start.sh")
        .collect();
    assert!(!script.is_empty(), "{doc}");
    assert!(script.iter().all(|f| f["place"] == "runs"), "{doc}");
    assert!(script
        .iter()
        .all(|f| f["evidence"]["layer"] == miner.layer_digests[1].as_str()));

    // The default output is the table, naming the rule; a plain directory is read as a layout.
    let run = scan(&[&at("miner")]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.contains("decision  block"), "{}", run.stdout);
    assert!(run.stdout.contains("miner.stratum-url"), "{}", run.stdout);
    assert!(run.stdout.contains("/opt/app/start.sh"), "{}", run.stdout);
    let run = scan(&[layout.to_str().unwrap()]);
    assert_eq!(run.code, 64, "two tags, none named: {}", run.stderr);
    assert!(run.stderr.contains("clean, miner"), "{}", run.stderr);
}

#[test]
fn scan_reads_a_docker_archive_written_by_skopeo() {
    let dir = tempfile::tempdir().unwrap();
    layout(dir.path());
    let layout = dir.path().join("layout");
    for (tag, code, decision) in [("clean", 0, "allow"), ("miner", 2, "block")] {
        let file = dir.path().join(format!("{tag}.tar"));
        skopeo(&[
            "copy",
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker-archive:{}:acme/{tag}:1", file.display()),
        ])
        .expect("skopeo writes a docker-archive");
        let target = format!("docker-archive:{}", file.display());
        let run = scan(&[&target, "--format", "json"]);
        assert_eq!(run.code, code, "{}{}", run.stdout, run.stderr);
        let doc = run.json();
        assert_document(&doc, &target, decision);
        assert_eq!(doc["images"][0]["platform"], "linux/amd64", "{doc}");
        // A plain .tar path is a docker-archive too, and RepoTags pick the image.
        let run = scan(&[&format!("{}:acme/{tag}:1", target), "--format", "json"]);
        assert_eq!(run.code, code, "{}", run.stderr);
        let run = scan(&[file.to_str().unwrap()]);
        assert_eq!(run.code, code, "{}", run.stderr);
        if tag == "miner" {
            assert!(run.stdout.contains("miner.stratum-url"), "{}", run.stdout);
            assert!(
                run.stdout.contains("/opt/app/start.sh"),
                "the layer script is found in the archive's layer: {}",
                run.stdout
            );
        }
    }
}

#[test]
fn scan_fetches_a_remote_image_through_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    layout(dir.path());
    let layout = dir.path().join("layout");
    let upstream = Registry::start();
    upstream.push(&layout, "clean", "acme/hello", "1");
    upstream.push(&layout, "miner", "acme/hello", "2");
    let multi = dir.path().join("multi");
    let (index, children) = image::write_index(
        &multi,
        "multi",
        &[clean_image(), miner_image().platform("linux", "arm64")],
    );
    upstream.push(&multi, "multi", "acme/hello", "multi");
    let up = format!("docker.io={}", upstream.url());
    let remote = |reference: &str, extra: &[&str]| {
        let mut args = vec![reference, "--upstream", &up, "--format", "json"];
        args.extend_from_slice(extra);
        scan(&args)
    };

    let run = remote("docker://acme/hello:1", &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_document(&run.json(), "docker.io/acme/hello:1", "allow");

    let run = remote("docker://docker.io/acme/hello:2", &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let doc = run.json();
    assert_document(&doc, "docker.io/acme/hello:2", "block");
    assert!(run.rules().iter().any(|r| r == "miner.stratum-url"));
    let run = scan(&["docker://acme/hello:2", "--upstream", &up]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.contains("miner.stratum-url"), "{}", run.stdout);

    // An index: linux/amd64 by default, or the platform asked for, or all of them.
    let run = remote("docker://acme/hello:multi", &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.json()["images"][0]["manifest"],
        children[0].manifest_digest
    );
    let run = remote("docker://acme/hello:multi", &["--platform", "linux/arm64"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.json()["images"][0]["manifest"],
        children[1].manifest_digest
    );
    let run = remote("docker://acme/hello:multi", &["--all-platforms"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let doc = run.json();
    assert_eq!(doc["images"].as_array().unwrap().len(), 2, "{doc}");
    assert!(doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["platform"] == "linux/arm64"));
    let by_digest = format!("docker://acme/hello@{index}");
    assert_eq!(remote(&by_digest, &["--all-platforms"]).code, 2);

    // What cannot be scanned is an error, told apart from a block.
    let run = remote("docker://acme/hello:nope", &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("manifest unknown"), "{}", run.stderr);
    let run = remote("docker://elsewhere.example/acme/hello:1", &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("not a configured upstream"),
        "{}",
        run.stderr
    );
}

#[test]
fn scan_exit_codes_tell_errors_from_verdicts() {
    let run = scan(&[]);
    assert_eq!(run.code, 64, "a usage error: {}", run.stderr);
    let run = scan(&["--bogus", "x"]);
    assert_eq!(run.code, 64, "{}", run.stderr);
    let run = scan(&["--help"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("Exit status"), "{}", run.stdout);
    let run = scan(&["/surely/not/here.tar"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar at all").unwrap();
    let run = scan(&[junk.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{}", run.stderr);
}

/// Regression: a remote layer whose bytes do not hash to its digest ends the scan in an error,
/// never in a verdict on bytes the image does not name.
#[test]
fn scan_refuses_a_remote_layer_with_the_wrong_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, _) = layout(dir.path());
    let fake = fake::Fake::start();
    fake.image("acme/hello", "1", &dir.path().join("layout"), &clean);
    let (_, other) = Layer::new(Compression::Gzip)
        .file("etc/other.conf", "something else\n")
        .blob();
    fake.blob_as("acme/hello", &clean.layer_digests[0], &other);
    let run = scan(&[
        "docker://acme/hello:1",
        "--upstream",
        &format!("docker.io={}", fake.url()),
    ]);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.contains(&clean.layer_digests[0]),
        "{}",
        run.stderr
    );
}
