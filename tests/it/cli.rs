//! The command line: `config check` names the bad field; `serve` runs on the embedded default.

use crate::common::*;
use std::process::Command;

fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.toml");
    std::fs::write(&f, text).unwrap();
    let out = Command::new(PORTCULLIS)
        .args(["config", "check"])
        .arg(&f)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn config_check_accepts_the_documented_example() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/portcullis.toml"
    ))
    .unwrap();
    let (ok, out) = check(&example);
    assert!(ok, "{out}");
    assert!(out.contains(": ok"), "{out}");
    // The effective cache settings are shown.
    assert!(
        out.contains("cache: ./portcullis-data/cache, max_size 20GiB, tag_ttl 5m, fill_timeout 1h"),
        "{out}"
    );
    let (ok, out) = check(
        "[upstreams.\"docker.io\"]\nurl = \"https://r.example\"\n[cache]\npath = \"/srv/c\"\nmax_size = \"512MiB\"\ntag_ttl = \"30s\"\n",
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("cache: /srv/c, max_size 512MiB, tag_ttl 30s"),
        "{out}"
    );
    let (_, out) =
        check("[upstreams.\"docker.io\"]\nurl = \"https://r.example\"\n[cache]\nenabled = false\n");
    assert!(out.contains("cache: off"), "{out}");
    // The embedded default is that very file.
    let out = Command::new(PORTCULLIS)
        .args(["config", "default"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), example);
}

#[test]
fn config_check_names_the_bad_field() {
    let cases = [
        ("[server]\nlisten = \"not an address\"\n", "server.listen"),
        ("[server]\nlistne = \"127.0.0.1:1\"\n", "listne"),
        ("[upstream]\ndefault = \"nowhere.example\"\n[upstreams.\"docker.io\"]\nurl = \"https://r.example\"\n", "upstream.default"),
        ("[upstreams.\"docker.io\"]\nurl = \"https://r.example/some/path\"\n", "upstreams.\"docker.io\".url"),
        ("[upstreams.\"docker.io\"]\nurl = \"https://r.example\"\nusername = \"u\"\npassword_env = \"A\"\npassword_file = \"/x\"\n", "password_env"),
        ("[upstream]\nidle_timeout_seconds = 0\n[upstreams.\"docker.io\"]\nurl = \"https://r.example\"\n", "upstream.idle_timeout_seconds"),
        ("[upstreams.\"docker.io\"]\nurl = \"https://r.example\"\nusername = \"u\"\npassword_env = \"PORTCULLIS_TEST_SURELY_UNSET\"\n", "password_env"),
        ("[cache]\nmax_size = \"lots\"\n[upstreams.\"docker.io\"]\nurl = \"https://r.example\"\n", "max_size"),
        ("[cache]\nfill_timeout = \"0s\"\n[upstreams.\"docker.io\"]\nurl = \"https://r.example\"\n", "cache.fill_timeout"),
    ];
    for (text, field) in cases {
        let (ok, out) = check(text);
        assert!(!ok, "accepted:\n{text}");
        assert!(out.contains(field), "{field} not named in: {out}");
    }
}

#[test]
fn serve_runs_on_the_embedded_default_and_creates_its_data_dir() {
    // No --config: the harness starts portcullis with only --listen and --data-dir.
    let p = Portcullis::start(&[]);
    assert!(p.dir.path().join("data").is_dir());
    let r = http().get(format!("{}/v2/", p.url())).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(
        http()
            .get(format!("{}/healthz", p.url()))
            .send()
            .unwrap()
            .status(),
        200
    );
    let log = p.log_text();
    for host in [
        "docker.io",
        "ghcr.io",
        "quay.io",
        "registry.k8s.io",
        "gcr.io",
    ] {
        assert!(
            log.contains(host),
            "{host} missing from start-up log: {log}"
        );
    }
}

#[test]
fn bad_flags_fail_fast_with_the_reason() {
    let out = Command::new(PORTCULLIS)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--default-upstream",
            "nowhere.example",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("upstream.default"));
    let out = Command::new(PORTCULLIS)
        .args(["serve", "--upstream", "no-equals-sign"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST=URL"));
}

#[test]
fn inspection_can_be_switched_off() {
    // A look-alike namespace is refused before going upstream when inspecting (403), and passed
    // to the upstream, which does not have it (404), when `[inspect] enabled = false`.
    let upstream = Registry::start();
    let url = |p: &Portcullis| format!("{}/v2/libary/nginx/manifests/v1", p.url());
    let on = Portcullis::for_upstream(&upstream);
    assert_eq!(http().get(url(&on)).send().unwrap().status(), 403);
    let off = Portcullis::inspection_off(&upstream, &[]);
    assert_eq!(http().get(url(&off)).send().unwrap().status(), 404);
    assert!(off.log_text().contains("inspection is off"));
}

/// A config file may leave the upstream to `--upstream`: it is validated once the flags are
/// applied (and `config check` alone still refuses it).
#[test]
fn a_config_file_may_leave_the_upstream_to_the_command_line() {
    let upstream = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, "[cache]\nenabled = false\n").unwrap();
    let p = Portcullis::start(&[
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        &format!("docker.io={}", upstream.url()),
    ]);
    let r = http()
        .get(format!("{}/v2/library/nothing/tags/list", p.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "the request reached the upstream");
    let (ok, out) = check("[cache]\nenabled = false\n");
    assert!(!ok && out.contains("upstream"), "{out}");
}

/// `portcullis health` (the image's HEALTHCHECK): 0 only for a 200 from the URL, in time.
#[test]
fn health_exits_zero_only_when_the_proxy_answers_200() {
    let health = |url: &str| {
        let started = std::time::Instant::now();
        let out = Command::new(PORTCULLIS)
            .args(["health", "--timeout", "1s", "--url", url])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text, started.elapsed())
    };
    let p = Portcullis::start(&[]);
    let (code, out, _) = health(&format!("{}/healthz", p.url()));
    assert_eq!(code, Some(0), "{out}");
    // Not 200: a path the proxy does not serve.
    let (code, out, _) = health(&format!("{}/nothing-here", p.url()));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("404"), "{out}");
    drop(p);
    // Nothing listening.
    let port = free_port();
    let (code, out, _) = health(&format!("http://127.0.0.1:{port}/healthz"));
    assert_eq!(code, Some(1), "{out}");
    // Listening but never answering: the timeout ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (code, out, took) = health(&format!("http://{}/healthz", silent.local_addr().unwrap()));
    assert_eq!(code, Some(1), "{out}");
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    // A URL that cannot be requested at all is unhealthy too, with the reason.
    let (code, out, _) = health("not a url");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not a url"), "{out}");
}
