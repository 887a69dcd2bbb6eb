//! The guard with Docker Hub reputation: reputation joins the name's own findings, never decides
//! alone, and is only looked up for Hub names (against the fake Hub of `inspect::reputation`).

use super::audit::AuditLog;
use super::guard::{Guard, Who};
use super::{Policy, PolicyConfig};
use crate::inspect::layer::Limits;
use crate::inspect::name::{NameInspector, PopularNames};
use crate::inspect::reputation::tests::{repo, FakeHub};
use crate::inspect::rules::RuleSet;
use crate::inspect::Decision;
use crate::store::MemoryStore;
use crate::upstream::{Route, Upstream};
use std::sync::Arc;
use url::Url;

fn guard(hub: &FakeHub) -> Guard {
    let rules = Arc::new(RuleSet::builtin().unwrap());
    let names = NameInspector::new(&PopularNames::builtin().unwrap(), &rules);
    let rep = hub.client(5000, &rules);
    Guard::new(
        rules,
        names,
        Arc::new(MemoryStore::new()),
        Policy::new(PolicyConfig::default()).unwrap(),
        AuditLog::open("").unwrap(),
        Limits::default(),
    )
    .with_reputation(rep)
}

fn route(host: &str, hub: bool, name: &str) -> Route {
    Route {
        upstream: Arc::new(Upstream {
            host: host.into(),
            base: Url::parse(&format!("https://{host}")).unwrap(),
            credentials: None,
            auth_hosts: vec![],
            official_prefix: hub,
            redirects: Default::default(),
        }),
        repo: repo(name),
    }
}

#[tokio::test]
async fn a_combosquat_with_a_poor_reputation_is_blocked_and_a_popular_one_is_not() {
    let hub = FakeHub::start().await;
    let g = guard(&hub);
    let who = Who::default();
    let blocked = g
        .check_name(&route("docker.io", true, "newbie/nginx-utils"), &who)
        .await
        .unwrap_err();
    assert!(
        blocked.message.contains("name.combosquat"),
        "{}",
        blocked.message
    );
    assert!(
        blocked.message.contains("reputation."),
        "{}",
        blocked.message
    );
    // The stored name verdict is reused and Hub's answer comes from the cache.
    g.check_name(&route("docker.io", true, "newbie/nginx-utils"), &who)
        .await
        .unwrap_err();
    assert_eq!(hub.hits("newbie/nginx-utils"), 1);
    // The same name, pulled millions of times: a warning, not a block. (A clear typosquat such
    // as `ngnix` weighs the block threshold on its own; a combosquat needs the reputation.)
    g.check_name(&route("docker.io", true, "bigcorp/nginx-utils"), &who)
        .await
        .unwrap();
    // Hub down for this name: the name alone decides (a warning).
    g.check_name(&route("docker.io", true, "ghost/nginx-utils"), &who)
        .await
        .unwrap();
}

#[tokio::test]
async fn reputation_alone_never_blocks() {
    let hub = FakeHub::start().await;
    let g = guard(&hub);
    let who = Who::default();
    // A plain name from the poorest repository: nothing to raise, so Hub is not even asked.
    g.check_name(&route("docker.io", true, "newbie/myapp"), &who)
        .await
        .unwrap();
    assert_eq!(hub.hits("newbie/myapp"), 0);
    // Its findings alone score nothing.
    let rules = RuleSet::builtin().unwrap();
    let f = hub
        .client(5000, &rules)
        .findings(&repo("newbie/myapp"))
        .await;
    assert_eq!(f.len(), 3);
    assert_eq!(g.policy.judge.decide(&f), (Decision::Allow, 0.0));
    // Weak name evidence (an official name under a user namespace) is raised to a warning at
    // most, never to a block.
    g.check_name(&route("docker.io", true, "newbie/ubuntu"), &who)
        .await
        .unwrap();
    assert_eq!(hub.hits("newbie/ubuntu"), 1);
}

#[tokio::test]
async fn other_registries_are_never_looked_up() {
    let hub = FakeHub::start().await;
    let g = guard(&hub);
    let _ = g
        .check_name(&route("ghcr.io", false, "newbie/ngnix"), &Who::default())
        .await;
    assert_eq!(hub.total(), 0);
}
