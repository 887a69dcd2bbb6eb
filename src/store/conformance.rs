//! The one conformance suite every [`VerdictStore`] back-end passes. A back-end's test module
//! runs it with `crate::store::conformance::suite!(make)`, where `make()` returns
//! `(guard, store)`: the guard (a temp dir, or `()`) lives as long as the store.

use super::{
    ImageBlobs, Lookup, NewOverride, OverrideAction, OverrideTarget, StoreError, Subject,
    VerdictStore,
};
use crate::inspect::{Category, Decision, Evidence, Finding, Place, Severity, Verdict};
use crate::oci::{Digest, QualifiedName};

/// One `#[test]` per case below, run against the back-end `make()` returns.
macro_rules! suite {
    ($make:ident) => {
        $crate::store::conformance::suite!(@cases $make;
            verdicts_write_read_overwrite,
            subjects_keep_separate_namespaces,
            a_verdict_from_other_rules_is_stale,
            image_blob_relation_both_ways,
            recording_an_image_again_replaces_it,
            overrides_by_repo_glob_and_digest,
            the_most_specific_override_wins,
            expired_overrides_are_ignored_and_pruned,
            overrides_are_removed_by_id,
            invalid_overrides_are_refused,
        );
    };
    (@cases $make:ident; $($case:ident),* $(,)?) => {
        mod conformance {
            $(
                #[test]
                fn $case() {
                    let (_guard, store) = super::$make();
                    $crate::store::conformance::$case(&store);
                }
            )*
        }
    };
}
pub(crate) use suite;

fn digest(s: &str) -> Digest {
    Digest::sha256_of(s.as_bytes())
}

fn name(s: &str) -> QualifiedName {
    s.parse().unwrap()
}

fn verdict(decision: Decision, ruleset_hash: &str) -> Verdict {
    let finding = Finding {
        rule: "miner.stratum-url".into(),
        category: Category::Miner,
        severity: Severity::High,
        place: Place::Runs,
        score: 8.0,
        message: "stratum URL in the entrypoint".into(),
        evidence: Evidence {
            field: Some("Entrypoint".into()),
            ..Evidence::matched("stratum+tcp://pool.example:3333")
        },
    };
    Verdict::new(decision, 8.0, vec![finding], ruleset_hash, 1_700_000_000)
}

fn new_override(target: OverrideTarget, action: OverrideAction) -> NewOverride {
    NewOverride {
        target,
        action,
        reason: "reviewed by hand".into(),
        author: "alice".into(),
        created_unix: 1_000,
        expires_unix: None,
    }
}

fn repo(pattern: &str) -> OverrideTarget {
    OverrideTarget::Repo(pattern.parse().unwrap())
}

pub(crate) fn verdicts_write_read_overwrite(store: &dyn VerdictStore) {
    let (b, m, r) = (
        digest("blob"),
        digest("manifest"),
        name("docker.io/library/nginx"),
    );
    for subject in [Subject::Blob(&b), Subject::Manifest(&m), Subject::Repo(&r)] {
        assert_eq!(
            store.get_verdict(subject, "h").unwrap(),
            Lookup::Missing,
            "{subject}"
        );
        let first = verdict(Decision::Warn, "h");
        store.put_verdict(subject, &first).unwrap();
        assert_eq!(
            store.get_verdict(subject, "h").unwrap(),
            Lookup::Current(first),
            "{subject}"
        );
        let second = verdict(Decision::Block, "h");
        store.put_verdict(subject, &second).unwrap();
        assert_eq!(
            store.get_verdict(subject, "h").unwrap().current(),
            Some(second),
            "{subject}"
        );
    }
}

pub(crate) fn subjects_keep_separate_namespaces(store: &dyn VerdictStore) {
    let d = digest("same");
    store
        .put_verdict(Subject::Blob(&d), &verdict(Decision::Block, "h"))
        .unwrap();
    assert_eq!(
        store.get_verdict(Subject::Manifest(&d), "h").unwrap(),
        Lookup::Missing
    );
    let hub = name("docker.io/library/nginx");
    store
        .put_verdict(Subject::Repo(&hub), &verdict(Decision::Block, "h"))
        .unwrap();
    assert_eq!(
        store
            .get_verdict(Subject::Repo(&name("ghcr.io/library/nginx")), "h")
            .unwrap(),
        Lookup::Missing
    );
    assert_eq!(
        store
            .get_verdict(Subject::Repo(&name("docker.io/library/nginx2")), "h")
            .unwrap(),
        Lookup::Missing
    );
}

pub(crate) fn a_verdict_from_other_rules_is_stale(store: &dyn VerdictStore) {
    let d = digest("blob");
    let old = verdict(Decision::Allow, "rules-v1");
    store.put_verdict(Subject::Blob(&d), &old).unwrap();
    // The rule set changed: the verdict is returned for reference, marked stale, never current.
    let got = store.get_verdict(Subject::Blob(&d), "rules-v2").unwrap();
    assert_eq!(got, Lookup::Stale(old.clone()));
    assert_eq!(got.current(), None);
    // An older engine with the same rules is stale too.
    let older_engine = Verdict {
        engine_version: "portcullis-0.0.1".into(),
        ..old.clone()
    };
    store.put_verdict(Subject::Blob(&d), &older_engine).unwrap();
    assert_eq!(
        store.get_verdict(Subject::Blob(&d), "rules-v1").unwrap(),
        Lookup::Stale(older_engine)
    );
    // Judged again under the new rules, it is current again.
    let new = verdict(Decision::Block, "rules-v2");
    store.put_verdict(Subject::Blob(&d), &new).unwrap();
    assert_eq!(
        store.get_verdict(Subject::Blob(&d), "rules-v2").unwrap(),
        Lookup::Current(new)
    );
}

fn sorted(mut v: Vec<Digest>) -> Vec<Digest> {
    v.sort_by_key(|d| d.to_string());
    v
}

pub(crate) fn image_blob_relation_both_ways(store: &dyn VerdictStore) {
    let (m1, m2) = (digest("m1"), digest("m2"));
    let one = ImageBlobs {
        config: digest("c1"),
        layers: vec![digest("base"), digest("app")],
        runs: Vec::new(),
        rootfs: Vec::new(),
    };
    let two = ImageBlobs {
        config: digest("c2"),
        layers: vec![digest("base"), digest("miner")],
        runs: Vec::new(),
        rootfs: Vec::new(),
    };
    assert_eq!(store.image_blobs(&m1).unwrap(), None);
    assert_eq!(store.images_with_blob(&digest("base")).unwrap(), vec![]);
    store.put_image(&m1, &one).unwrap();
    store.put_image(&m2, &two).unwrap();
    assert_eq!(store.image_blobs(&m1).unwrap(), Some(one.clone()));
    assert_eq!(store.image_blobs(&m2).unwrap(), Some(two));
    let both = store.images_with_blob(&digest("base")).unwrap();
    assert_eq!(
        both,
        sorted(vec![m1.clone(), m2.clone()]),
        "in digest order"
    );
    assert_eq!(
        store.images_with_blob(&digest("miner")).unwrap(),
        vec![m2.clone()]
    );
    assert_eq!(
        store.images_with_blob(&digest("c1")).unwrap(),
        vec![m1.clone()],
        "the config counts"
    );
    assert_eq!(store.images_with_blob(&digest("unknown")).unwrap(), vec![]);
    // Recording the same image again changes nothing.
    store.put_image(&m1, &one).unwrap();
    assert_eq!(store.images_with_blob(&digest("base")).unwrap(), both);
}

pub(crate) fn recording_an_image_again_replaces_it(store: &dyn VerdictStore) {
    let m = digest("m");
    let before = ImageBlobs {
        config: digest("c"),
        layers: vec![digest("old")],
        runs: Vec::new(),
        rootfs: Vec::new(),
    };
    let after = ImageBlobs {
        config: digest("c"),
        layers: vec![digest("new")],
        runs: Vec::new(),
        rootfs: Vec::new(),
    };
    store.put_image(&m, &before).unwrap();
    store.put_image(&m, &after).unwrap();
    assert_eq!(store.image_blobs(&m).unwrap(), Some(after));
    assert_eq!(store.images_with_blob(&digest("old")).unwrap(), vec![]);
    assert_eq!(
        store.images_with_blob(&digest("new")).unwrap(),
        vec![m.clone()]
    );
    assert_eq!(store.images_with_blob(&digest("c")).unwrap(), vec![m]);
}

pub(crate) fn overrides_by_repo_glob_and_digest(store: &dyn VerdictStore) {
    let now = 2_000;
    assert!(store.overrides().unwrap().is_empty());
    let exact = store
        .add_override(new_override(
            repo("docker.io/library/nginx"),
            OverrideAction::Allow,
        ))
        .unwrap();
    let glob = store
        .add_override(new_override(repo("docker.io/evil/*"), OverrideAction::Deny))
        .unwrap();
    let bad = digest("bad layer");
    let by_digest = store
        .add_override(new_override(
            OverrideTarget::Digest(bad.clone()),
            OverrideAction::Deny,
        ))
        .unwrap();
    assert_eq!(
        store.list_overrides().unwrap(),
        vec![exact.clone(), glob.clone(), by_digest.clone()]
    );
    assert_eq!(
        (exact.reason.as_str(), exact.author.as_str()),
        ("reviewed by hand", "alice")
    );

    let decide =
        |r: &str, d: Option<&Digest>| store.override_for(&name(r), d, now).unwrap().map(|o| o.id);
    assert_eq!(decide("docker.io/library/nginx", None), Some(exact.id));
    assert_eq!(decide("docker.io/library/nginx2", None), None);
    assert_eq!(decide("docker.io/evil/miner", None), Some(glob.id));
    assert_eq!(
        decide("docker.io/evil/team/miner", None),
        Some(glob.id),
        "a glob covers nested names"
    );
    assert_eq!(
        decide("ghcr.io/evil/miner", None),
        None,
        "a glob does not cross hosts"
    );
    assert_eq!(
        decide("quay.io/any/thing", Some(&bad)),
        Some(by_digest.id),
        "a digest, under any repository"
    );
    assert_eq!(decide("quay.io/any/thing", Some(&digest("other"))), None);
}

pub(crate) fn the_most_specific_override_wins(store: &dyn VerdictStore) {
    let now = 2_000;
    let d = digest("pinned");
    let org_deny = store
        .add_override(new_override(
            repo("docker.io/myorg/*"),
            OverrideAction::Deny,
        ))
        .unwrap();
    let org_allow = store
        .add_override(new_override(
            repo("docker.io/myorg/*"),
            OverrideAction::Allow,
        ))
        .unwrap();
    let app_allow = store
        .add_override(new_override(
            repo("docker.io/myorg/app"),
            OverrideAction::Allow,
        ))
        .unwrap();
    let pinned = store
        .add_override(new_override(
            OverrideTarget::Digest(d.clone()),
            OverrideAction::Allow,
        ))
        .unwrap();
    let decide =
        |r: &str, d: Option<&Digest>| store.override_for(&name(r), d, now).unwrap().map(|o| o.id);
    // Between two globs, deny beats allow whatever their order.
    assert_eq!(decide("docker.io/myorg/other", None), Some(org_deny.id));
    assert_ne!(org_deny.id, org_allow.id);
    // An exact name beats a glob; a digest beats both.
    assert_eq!(decide("docker.io/myorg/app", None), Some(app_allow.id));
    assert_eq!(decide("docker.io/myorg/other", Some(&d)), Some(pinned.id));
    // The winner is what `OverrideSet::decide` says on a snapshot, too.
    let set = store.overrides().unwrap();
    assert_eq!(
        set.decide(&name("docker.io/myorg/app"), None, now)
            .map(|o| o.id),
        Some(app_allow.id)
    );
}

pub(crate) fn expired_overrides_are_ignored_and_pruned(store: &dyn VerdictStore) {
    let nginx = name("docker.io/library/nginx");
    let lasting = store
        .add_override(new_override(
            repo("docker.io/library/*"),
            OverrideAction::Allow,
        ))
        .unwrap();
    let temporary = store
        .add_override(NewOverride {
            expires_unix: Some(5_000),
            ..new_override(repo("docker.io/library/nginx"), OverrideAction::Deny)
        })
        .unwrap();
    assert_eq!(
        store
            .override_for(&nginx, None, 4_999)
            .unwrap()
            .map(|o| o.id),
        Some(temporary.id)
    );
    // From the expiry second on, it is ignored and the next one applies.
    assert_eq!(
        store
            .override_for(&nginx, None, 5_000)
            .unwrap()
            .map(|o| o.id),
        Some(lasting.id)
    );
    assert_eq!(
        store.list_overrides().unwrap().len(),
        2,
        "listed until pruned"
    );
    assert_eq!(store.prune_overrides(4_999).unwrap(), vec![]);
    assert_eq!(store.prune_overrides(5_000).unwrap(), vec![temporary]);
    assert_eq!(store.list_overrides().unwrap(), vec![lasting]);
}

pub(crate) fn overrides_are_removed_by_id(store: &dyn VerdictStore) {
    let target = repo("docker.io/library/nginx");
    let first = store
        .add_override(new_override(target.clone(), OverrideAction::Deny))
        .unwrap();
    let second = store
        .add_override(new_override(target.clone(), OverrideAction::Deny))
        .unwrap();
    assert!(second.id > first.id);
    assert_eq!(store.remove_override(second.id).unwrap(), second);
    assert!(
        matches!(store.remove_override(second.id), Err(StoreError::NoSuchOverride(id)) if id == second.id)
    );
    assert_eq!(store.list_overrides().unwrap(), vec![first.clone()]);
    // A removed id is never given out again.
    let third = store
        .add_override(new_override(target, OverrideAction::Allow))
        .unwrap();
    assert!(third.id > second.id);
    store.remove_override(first.id).unwrap();
    store.remove_override(third.id).unwrap();
    assert_eq!(
        store
            .override_for(&name("docker.io/library/nginx"), None, 2_000)
            .unwrap(),
        None
    );
    store.flush().unwrap();
}

pub(crate) fn invalid_overrides_are_refused(store: &dyn VerdictStore) {
    let target = repo("docker.io/library/nginx");
    let cases = [
        NewOverride {
            reason: " ".into(),
            ..new_override(target.clone(), OverrideAction::Deny)
        },
        NewOverride {
            author: String::new(),
            ..new_override(target.clone(), OverrideAction::Deny)
        },
        NewOverride {
            expires_unix: Some(1_000),
            ..new_override(target, OverrideAction::Deny)
        },
    ];
    for case in cases {
        assert!(matches!(
            store.add_override(case),
            Err(StoreError::InvalidOverride(_))
        ));
    }
    assert!(store.list_overrides().unwrap().is_empty());
}
