//! Docker Hub reputation on the wire: portcullis with `[reputation]` on, a fake Hub API (the fake
//! server serving canned repository JSON) and a fake upstream that must not be asked about a
//! refused name. The scoring itself is unit-tested in `src/inspect/reputation.rs`.

use crate::common::fake::Fake;
use crate::common::*;
use serde_json::Value;

/// portcullis with `docker.io` at `upstream` and reputation looked up at `hub`.
fn proxy(upstream: &Fake, hub: &Fake) -> (Portcullis, tempfile::TempDir) {
    let cfg = tempfile::tempdir().unwrap();
    let path = cfg.path().join("portcullis.toml");
    std::fs::write(
        &path,
        format!(
            "[upstreams.\"docker.io\"]\nurl = \"{}\"\n[reputation]\nenabled = true\napi_url = \"{}\"\ntimeout_ms = 5000\n[audit]\npath = \"\"\n",
            upstream.url(),
            hub.url()
        ),
    )
    .unwrap();
    (
        Portcullis::start(&["--config", path.to_str().unwrap()]),
        cfg,
    )
}

fn hub_repo(hub: &Fake, repo: &str, pulls: u64, stars: u64, registered: &str) {
    let body = serde_json::json!({
        "name": repo.split('/').nth(1), "namespace": repo.split('/').next(),
        "pull_count": pulls, "star_count": stars, "date_registered": registered,
    });
    hub.put(
        &format!("/v2/repositories/{repo}/"),
        "application/json",
        body.to_string(),
    );
}

#[test]
fn a_combosquat_with_a_poor_hub_reputation_is_refused_before_going_upstream() {
    let upstream = Fake::start();
    let hub = Fake::start();
    let now = std::time::SystemTime::now();
    let young = humantime::format_rfc3339(now - std::time::Duration::from_secs(2 * 86_400));
    hub_repo(&hub, "newbie/nginx-utils", 7, 0, &young.to_string());
    hub_repo(
        &hub,
        "bigcorp/nginx-utils",
        50_000_000,
        900,
        "2015-01-01T00:00:00Z",
    );
    let (p, _cfg) = proxy(&upstream, &hub);
    let get = |repo: &str| {
        http()
            .get(format!("{}/v2/{repo}/manifests/latest", p.url()))
            .send()
            .unwrap()
    };

    let r = get("newbie/nginx-utils");
    assert_eq!(r.status(), 403);
    let body: Value = r.json().unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("reputation.low-pulls"), "{message}");
    assert_eq!(
        upstream.total_requests(),
        0,
        "a refused name never goes upstream"
    );
    assert_eq!(hub.requests("/v2/repositories/newbie/nginx-utils/"), 1);

    // The same near miss, popular and old: only a warning, so the request goes upstream (which
    // has nothing, hence 404). Hub unaware of the name: neutral, the same.
    for repo in ["bigcorp/nginx-utils", "ghost/nginx-utils"] {
        let r = get(repo);
        assert_eq!(r.status(), 404, "{repo}");
    }
    assert_eq!(upstream.total_requests(), 2);
    // A plain name is never looked up.
    assert_eq!(get("bigcorp/billing").status(), 404);
    assert_eq!(hub.requests("/v2/repositories/bigcorp/billing/"), 0);
}
