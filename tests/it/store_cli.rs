//! `portcullis override ...` on the verdict store in `--data-dir`: add, list, remove, prune, the
//! errors that name what is wrong, and the refusal while `portcullis serve` holds the store.

use crate::common::*;
use std::path::Path;
use std::process::Command;

const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Runs `portcullis override <args> --data-dir <data>`: (success, stdout, stderr).
fn cli(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(PORTCULLIS)
        .arg("override")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(data: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = cli(data, args);
    assert!(success, "override {args:?} failed: {stderr}");
    stdout
}

fn fails(data: &Path, args: &[&str], needle: &str) {
    let (success, stdout, stderr) = cli(data, args);
    assert!(!success, "override {args:?} succeeded: {stdout}");
    assert!(
        stderr.contains(needle),
        "override {args:?}: {needle:?} not in: {stderr}"
    );
}

fn list_json(data: &Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&ok(data, &["list", "--json"])).unwrap()
}

#[test]
fn overrides_are_added_listed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let added = ok(
        &data,
        &[
            "add",
            "--repo",
            "docker.io/myorg/*",
            "--allow",
            "--reason",
            "our own images",
            "--author",
            "me",
            "--expires",
            "30d",
        ],
    );
    assert!(
        added.starts_with("added override 1: allow repo docker.io/myorg/*"),
        "{added}"
    );
    let added = ok(
        &data,
        &[
            "add",
            "--digest",
            DIGEST,
            "--deny",
            "--reason",
            "xmrig in layer 3",
            "--author",
            "sec",
        ],
    );
    assert!(
        added.starts_with("added override 2: deny digest sha256:"),
        "{added}"
    );
    assert!(
        data.join("verdicts").is_dir(),
        "the store is <data-dir>/verdicts"
    );

    let list = list_json(&data);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], 1);
    assert_eq!(list[0]["action"], "allow");
    assert_eq!(list[0]["target"]["repo"], "docker.io/myorg/*");
    assert_eq!(
        (list[0]["reason"].as_str(), list[0]["author"].as_str()),
        (Some("our own images"), Some("me"))
    );
    let (created, expires) = (
        list[0]["created_unix"].as_u64().unwrap(),
        list[0]["expires_unix"].as_u64().unwrap(),
    );
    assert_eq!(expires - created, 30 * 86_400);
    assert_eq!(list[1]["target"]["digest"], DIGEST);
    assert!(
        list[1].get("expires_unix").is_none(),
        "no --expires: never expires"
    );

    let table = ok(&data, &["list"]);
    assert!(table.starts_with("ID\tACTION\tTARGET"), "{table}");
    assert!(
        table.contains("1\tallow\trepo docker.io/myorg/*\tme\t"),
        "{table}"
    );
    assert!(table.contains("\tnever\txmrig in layer 3"), "{table}");

    assert!(
        ok(&data, &["remove", "1"]).starts_with("removed override 1: allow repo docker.io/myorg/*")
    );
    fails(&data, &["remove", "1"], "no override with id 1");
    let list = list_json(&data);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], 2);
    // Nothing has expired, so prune removes nothing.
    assert_eq!(ok(&data, &["prune"]), "");
    assert_eq!(list_json(&data).len(), 1);
}

#[test]
fn bad_overrides_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fn add<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["add", "--reason", "r", "--author", "a"];
        args.extend_from_slice(extra);
        args
    }
    fails(
        &data,
        &add(&["--repo", "myorg/app", "--deny"]),
        "myorg is not a configured upstream",
    );
    fails(
        &data,
        &add(&["--repo", "index.docker.io/myorg/app", "--deny"]),
        "another name of docker.io",
    );
    fails(
        &data,
        &add(&["--repo", "docker.io/MyOrg/*", "--deny"]),
        "lowercase",
    );
    fails(
        &data,
        &add(&["--digest", "sha256:abcd", "--deny"]),
        "64 lowercase hex",
    );
    fails(
        &data,
        &add(&["--repo", "docker.io/a/b", "--allow", "--deny"]),
        "cannot be used with",
    );
    fails(&data, &add(&["--repo", "docker.io/a/b"]), "--allow");
    fails(&data, &add(&["--deny"]), "--repo");
    fails(
        &data,
        &add(&["--repo", "docker.io/a/b", "--deny", "--expires", "30"]),
        "a number and a unit",
    );
    fails(
        &data,
        &["add", "--repo", "docker.io/a/b", "--deny", "--author", "a"],
        "--reason",
    );
    fails(
        &data,
        &[
            "add",
            "--repo",
            "docker.io/a/b",
            "--deny",
            "--author",
            "a",
            "--reason",
            " ",
        ],
        "a reason is required",
    );
    // Nothing was written, and a list names a missing store rather than creating one.
    fails(&data, &["list"], "there is no verdict store");
    assert!(!data.join("verdicts").exists());
    // A glob host is not checked against the upstreams.
    ok(&data, &add(&["--repo", "*/library/nginx", "--deny"]));
}

#[test]
fn the_cli_refuses_a_store_that_serve_holds() {
    let p = Portcullis::start(&[]);
    let data = p.dir.path().join("data");
    assert!(
        p.log_text().contains("verdict store open"),
        "{}",
        p.log_text()
    );
    fails(
        &data,
        &[
            "add",
            "--repo",
            "docker.io/a/b",
            "--deny",
            "--reason",
            "r",
            "--author",
            "a",
        ],
        "locked by another process: stop `portcullis serve`",
    );
    fails(&data, &["list"], "locked by another process");

    // Stopped (SIGTERM, the graceful path), the proxy lets go of the store.
    p.stop();
    ok(
        &data,
        &[
            "add",
            "--repo",
            "docker.io/a/b",
            "--deny",
            "--reason",
            "r",
            "--author",
            "a",
        ],
    );
    assert_eq!(list_json(&data).len(), 1);
}
