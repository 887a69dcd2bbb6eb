//! Name inspection: judges a repository name before anything is pulled. It finds look-alikes of
//! popular names (typosquats, look-alike namespaces, combosquats, official names under random
//! namespaces) and hard-to-read random names. Pure and synchronous: [`NameInspector::new`]
//! precomputes everything, so [`NameInspector::inspect`] takes microseconds.
//!
//! Each detector runs only if a rule in the pack names it (`detector = "typosquat"` in
//! `config/rules/name.toml`); the rule gives its findings their id, category, severity and weight.
//! The popular names it compares against live in `config/popular.toml` (format at its top).

mod namespace;
mod parse;
mod popular;
mod random;
mod similarity;
mod squat;
mod targets;
#[cfg(test)]
mod tests;
mod words;

use super::rules::{Rule, RuleSet};
use super::{Category, Evidence, Finding, Place, Severity};
use crate::oci::RepoName;
use parse::{parse, Parsed};
use random::Bigrams;
use similarity::flatten;
use std::collections::{HashMap, HashSet};
use targets::{TargetKind, Targets};
use words::{near_word_list, word_list};

pub use popular::{
    AllowList, OfficialNames, PopularError, PopularNames, Publisher, SquatWords, BUILTIN_POPULAR,
};

/// The detector names a rule can give in `detector = "..."`.
pub mod detector {
    /// A near miss of an official image name (`ngnix`, `alpine2`, `a1pine`, `node_red`).
    pub const TYPOSQUAT: &str = "typosquat";
    /// A namespace imitating `library`, a publisher or an official name (`libary/`, `bitnarni/`,
    /// `docker-library/`, `ubuntuu/`).
    pub const LOOKALIKE_NAMESPACE: &str = "lookalike-namespace";
    /// An official name with a word that claims officialness (`nginx-official`).
    pub const OFFICIAL_CLAIM: &str = "official-claim";
    /// An official name with a descriptive word added (`nginx-utils`, `redis-server`).
    pub const COMBOSQUAT: &str = "combosquat";
    /// An official name under a random or hex namespace (`c43602f9cc95/openjdk`).
    pub const OFFICIAL_NAME_RANDOM_NAMESPACE: &str = "official-name-random-namespace";
    /// An official name under an ordinary user namespace (`someuser/ubuntu`): common, mostly benign.
    pub const OFFICIAL_NAME_USER_NAMESPACE: &str = "official-name-user-namespace";
    /// A hard-to-read, random-looking repository name (`jx8qz0k3`).
    pub const RANDOM_NAME: &str = "random-name";
    /// A hard-to-read, random-looking or hex namespace (`x7kq9zvw2p`). A rule of its own, so a
    /// name random in both parts counts twice where each rule counts once.
    pub const RANDOM_NAMESPACE: &str = "random-namespace";
}

/// What a detector's findings carry, from the rule that names it.
#[derive(Debug, Clone)]
struct RuleRef {
    id: String,
    category: Category,
    severity: Severity,
    weight: f64,
}

impl RuleRef {
    fn of(rules: &RuleSet, detector: &str) -> Option<RuleRef> {
        rules.detector(detector).map(|r: &Rule| RuleRef {
            id: r.id.clone(),
            category: r.category,
            severity: r.severity,
            weight: r.weight,
        })
    }
}

/// The detectors that have a rule; a `None` one does not run.
#[derive(Debug, Default)]
struct Detectors {
    typosquat: Option<RuleRef>,
    lookalike_namespace: Option<RuleRef>,
    official_claim: Option<RuleRef>,
    combosquat: Option<RuleRef>,
    official_random_ns: Option<RuleRef>,
    official_user_ns: Option<RuleRef>,
    random: Option<RuleRef>,
    random_namespace: Option<RuleRef>,
}

/// Judges repository names against the popular names. Build once, share freely (`Send + Sync`).
#[derive(Debug)]
pub struct NameInspector {
    rules: Detectors,
    /// Current and removed official names.
    official: HashSet<String>,
    /// Official names without delimiters → the name (`rocketchat` → `rocket.chat`).
    official_flat: HashMap<String, String>,
    /// Publisher namespace → the repositories it lists.
    publishers: HashMap<String, HashSet<String>>,
    /// Publisher namespaces without delimiters → the namespace (`azurefunctions`).
    publisher_flat: HashMap<String, String>,
    /// Every repository some publisher lists, and the allow list's repository names: a known
    /// name is never a typo.
    known_repos: HashSet<String>,
    /// Official names, the targets of repository typosquats.
    repo_targets: Targets,
    /// Publishers' repositories with a delimiter, matched by delimiter and look-alike changes only.
    publisher_repo_targets: Targets,
    /// `library`, publisher namespaces and official names: the targets of look-alike namespaces.
    namespace_targets: Targets,
    claims: HashSet<String>,
    /// What may follow or precede an official name in a claim (claims and suffixes, claims and
    /// prefixes) and in a combosquat (suffixes and claims, prefixes and claims).
    claim_after: HashSet<String>,
    claim_before: HashSet<String>,
    combo_after: HashSet<String>,
    combo_before: HashSet<String>,
    namespace_words: HashSet<String>,
    allow_exact: HashSet<String>,
    allow_namespace: HashSet<String>,
    /// English and software words: a real word is not a typo.
    words: HashSet<&'static str>,
    model: Bigrams,
}

impl NameInspector {
    /// Builds the inspector: indexes the popular names and trains the readability model. The
    /// detectors that run are those `rules` has a rule for.
    pub fn new(popular: &PopularNames, rules: &RuleSet) -> NameInspector {
        let detectors = Detectors {
            typosquat: RuleRef::of(rules, detector::TYPOSQUAT),
            lookalike_namespace: RuleRef::of(rules, detector::LOOKALIKE_NAMESPACE),
            official_claim: RuleRef::of(rules, detector::OFFICIAL_CLAIM),
            combosquat: RuleRef::of(rules, detector::COMBOSQUAT),
            official_random_ns: RuleRef::of(rules, detector::OFFICIAL_NAME_RANDOM_NAMESPACE),
            official_user_ns: RuleRef::of(rules, detector::OFFICIAL_NAME_USER_NAMESPACE),
            random: RuleRef::of(rules, detector::RANDOM_NAME),
            random_namespace: RuleRef::of(rules, detector::RANDOM_NAMESPACE),
        };
        let current = &popular.official.current;
        let removed = &popular.official.removed;
        let official: HashSet<String> = current.iter().chain(removed).cloned().collect();
        let official_flat = official.iter().map(|n| (flatten(n), n.clone())).collect();
        let mut publishers: HashMap<String, HashSet<String>> = HashMap::new();
        for p in &popular.publishers {
            publishers
                .entry(p.namespace.clone())
                .or_default()
                .extend(p.repos.iter().cloned());
        }
        let publisher_flat = publishers.keys().map(|n| (flatten(n), n.clone())).collect();
        let known_repos = publishers
            .values()
            .flatten()
            .chain(&popular.allow.repos)
            .cloned()
            .collect();

        let repo_targets = Targets::new(
            current
                .iter()
                .map(|n| (n.clone(), TargetKind::Official, None))
                .chain(
                    removed
                        .iter()
                        .map(|n| (n.clone(), TargetKind::Removed, None)),
                ),
        );
        let publisher_repo_targets = Targets::new(popular.publishers.iter().flat_map(|p| {
            p.repos
                .iter()
                .filter(|r| r.contains(['-', '_', '.']) && flatten(r).len() >= 6)
                .map(|r| (r.clone(), TargetKind::Publisher, Some(p.namespace.clone())))
        }));
        let namespace_targets = Targets::new(
            std::iter::once(("library".to_string(), TargetKind::Library, None))
                .chain(
                    publishers
                        .keys()
                        .map(|n| (n.clone(), TargetKind::Publisher, None)),
                )
                .chain(
                    current
                        .iter()
                        .map(|n| (n.clone(), TargetKind::Official, None))
                        .chain(
                            removed
                                .iter()
                                .map(|n| (n.clone(), TargetKind::Removed, None)),
                        )
                        .filter(|(n, _, _)| flatten(n).len() >= 5),
                ),
        );

        let set = |v: &[String]| v.iter().cloned().collect::<HashSet<String>>();
        let union =
            |a: &[String], b: &[String]| a.iter().chain(b).cloned().collect::<HashSet<String>>();
        let squat = &popular.squat;
        let mut allow_exact = HashSet::new();
        let mut allow_namespace = HashSet::new();
        for a in &popular.allow.names {
            match a.strip_suffix("/*") {
                Some(ns) => allow_namespace.insert(ns.to_string()),
                None => allow_exact.insert(a.clone()),
            };
        }
        let words: HashSet<&'static str> = word_list().chain(near_word_list()).collect();
        let model = Bigrams::train(
            word_list()
                .chain(official.iter().map(String::as_str))
                .chain(publishers.keys().map(String::as_str))
                .chain(publishers.values().flatten().map(String::as_str)),
        );
        NameInspector {
            rules: detectors,
            official,
            official_flat,
            publishers,
            publisher_flat,
            known_repos,
            repo_targets,
            publisher_repo_targets,
            namespace_targets,
            claims: set(&squat.claims),
            claim_after: union(&squat.claims, &squat.suffixes),
            claim_before: union(&squat.claims, &squat.prefixes),
            combo_after: union(&squat.suffixes, &squat.claims),
            combo_before: union(&squat.prefixes, &squat.claims),
            namespace_words: set(&squat.namespace_words),
            allow_exact,
            allow_namespace,
            words,
            model,
        }
    }

    /// Findings for `repo` as pulled from `registry_host` (`docker.io`, `ghcr.io`, …). On Docker
    /// Hub a one-component name is read as `library/<name>`. Every finding has `Place::Name`;
    /// its message says what the name imitates and, where there is one, "did you mean <real name>?",
    /// and its `evidence.matched` is the popular name it imitates (or the random component).
    pub fn inspect(&self, registry_host: &str, repo: &RepoName) -> Vec<Finding> {
        let name = parse(registry_host, repo);
        let mut out = Vec::new();
        if self.allowed(&name, repo) {
            return out;
        }
        if name.official_scope {
            if !self.official.contains(name.repo) {
                if let Some(s) = self.repo_squat(&name) {
                    out.push(s.finding(&name.display, "repository"));
                } else {
                    self.random_finding(&name, name.repo, "repository", &mut out);
                }
            }
            return out;
        }
        if name
            .namespace
            .is_some_and(|ns| self.publishers.contains_key(ns))
        {
            return out;
        }

        let repo_official = self.official.contains(name.repo);
        let squat = if repo_official || self.known_repos.contains(name.repo) {
            None
        } else {
            self.repo_squat(&name)
        };
        let mut namespace_done = false;
        if let Some(ns) = name.namespace {
            let related = repo_official || squat.is_some();
            if let Some(rule) = &self.rules.lookalike_namespace {
                if let Some(m) = self.lookalike_namespace(ns, related) {
                    let suggestion = self.namespace_suggestion(&name, &m, squat.as_ref());
                    let message = format!(
                        "{}: namespace `{ns}` {}{}",
                        name.display,
                        m.how,
                        did_you_mean(suggestion.as_deref())
                    );
                    out.push(finding(rule, message, "namespace", &m.target));
                    namespace_done = true;
                }
            }
            let random = if namespace_done {
                None
            } else {
                self.randomness(ns)
            };
            // `library/<official>` on another registry is a mirror (Harbor's default project).
            // A project under its own name (`odoo/odoo`, `phpmyadmin/phpmyadmin`) is its vendor.
            let own_name = flatten(ns) == flatten(name.repo);
            if repo_official && !namespace_done && ns != "library" && !own_name {
                let rule = match random {
                    Some(_) => &self.rules.official_random_ns,
                    None => &self.rules.official_user_ns,
                };
                if let Some(rule) = rule {
                    let what = match random {
                        Some(r) => format!("a {r} namespace `{ns}`"),
                        None => format!("the user namespace `{ns}`"),
                    };
                    let message = format!(
                        "{}: the official image name `{}` under {what}{}",
                        name.display,
                        name.repo,
                        did_you_mean(Some(&format!("docker.io/library/{}", name.repo)))
                    );
                    out.push(finding(rule, message, "repository", name.repo));
                    namespace_done = random.is_some();
                }
            }
            if let (Some(r), false) = (random, namespace_done) {
                if let Some(rule) = &self.rules.random_namespace {
                    let message = format!("{}: namespace `{ns}` is a {r} name", name.display);
                    out.push(finding(rule, message, "namespace", ns));
                }
            }
        }
        if let Some(s) = squat {
            out.push(s.finding(&name.display, "repository"));
        } else if !repo_official && !self.known_repos.contains(name.repo) {
            self.random_finding(&name, name.repo, "repository", &mut out);
        }
        out
    }

    fn allowed(&self, name: &Parsed<'_>, repo: &RepoName) -> bool {
        self.allow_exact.contains(repo.as_str())
            || name
                .namespace
                .is_some_and(|ns| self.allow_namespace.contains(ns))
    }

    fn random_finding(
        &self,
        name: &Parsed<'_>,
        component: &str,
        field: &str,
        out: &mut Vec<Finding>,
    ) {
        if let Some(rule) = &self.rules.random {
            if let Some(r) = self.randomness(component) {
                let message = format!("{}: {field} `{component}` is a {r} name", name.display);
                out.push(finding(rule, message, field, component));
            }
        }
    }
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion
        .map(|s| format!("; did you mean {s}?"))
        .unwrap_or_default()
}

fn finding(rule: &RuleRef, message: String, field: &str, matched: &str) -> Finding {
    Finding {
        rule: rule.id.clone(),
        category: rule.category,
        severity: rule.severity,
        place: Place::Name,
        score: rule.weight * Place::Name.multiplier(),
        message,
        evidence: Evidence {
            field: Some(field.to_string()),
            ..Evidence::matched(matched)
        },
    }
}
