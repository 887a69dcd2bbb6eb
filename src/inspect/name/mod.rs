//! Name inspection: judges a repository name before anything is pulled. It finds look-alikes of
//! popular names (typosquats, look-alike namespaces, combosquats, official names under random
//! namespaces) and hard-to-read random names. Pure and synchronous: [`NameInspector::new`]
//! precomputes everything, so [`NameInspector::inspect`] takes microseconds.
//!
//! Each detector runs only if a rule in the pack names it (`detector = "typosquat"` in
//! `config/rules/name.toml`); the rule gives its findings their id, category, severity and weight.
//! The popular names it compares against live in `config/popular.toml` (format at its top).

use super::rules::{Rule, RuleSet};
use super::{Category, Evidence, Finding, Place, Severity};
use crate::oci::RepoName;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

/// The bundled popular-names list, compiled in.
pub const BUILTIN_POPULAR: &str = include_str!("../../../config/popular.toml");

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

/// Docker Hub's host names, and its mirror: on these official images live under `library/`.
const HUB_HOSTS: [&str; 6] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
    "hub.docker.com",
    "mirror.gcr.io",
];

/// Amazon's public gallery mirrors official images as `docker/library/<name>`.
const ECR_PUBLIC: &str = "public.ecr.aws";

// ---------------------------------------------------------------------------------------------
// The popular-names list

/// The popular names portcullis protects: parsed from `config/popular.toml` or a user file in
/// the same format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopularNames {
    #[serde(default)]
    pub official: OfficialNames,
    #[serde(default, rename = "publisher")]
    pub publishers: Vec<Publisher>,
    #[serde(default)]
    pub squat: SquatWords,
    #[serde(default)]
    pub allow: AllowList,
}

/// Docker Hub's official images (`library/<name>` on docker.io).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficialNames {
    /// Current official images.
    #[serde(default)]
    pub current: Vec<String>,
    /// Removed or deprecated official names, protected like current ones.
    #[serde(default)]
    pub removed: Vec<String>,
}

/// A well-known publisher namespace: everything under it is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publisher {
    pub namespace: String,
    /// Repositories it publishes, used to suggest the real name for a look-alike namespace.
    #[serde(default)]
    pub repos: Vec<String>,
}

/// Words that turn a popular name into a combosquat or a look-alike namespace. Lowercase
/// `[a-z0-9]` only: they are matched against names with their delimiters removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SquatWords {
    /// Added after a popular name (`nginx-utils`).
    #[serde(default)]
    pub suffixes: Vec<String>,
    /// Added before one (`latest-nginx`).
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Claims of officialness (`nginx-official`): a stronger finding than a combosquat.
    #[serde(default)]
    pub claims: Vec<String>,
    /// Words that make a namespace imitate an official one (`docker-library`, `bitnami-official`).
    #[serde(default)]
    pub namespace_words: Vec<String>,
}

/// Names never flagged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowList {
    /// `namespace/repo` exactly, or `namespace/*` for a whole namespace.
    #[serde(default)]
    pub names: Vec<String>,
    /// Repository names (the last path component) that are never a typo or a random name under
    /// any namespace: common names close to an official one (`centos7`, `alpine3`).
    #[serde(default)]
    pub repos: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("popular-names file {file}: {message}")]
pub struct PopularError {
    pub file: String,
    pub message: String,
}

impl PopularNames {
    /// The bundled list (`config/popular.toml`).
    pub fn builtin() -> Result<PopularNames, PopularError> {
        PopularNames::parse("config/popular.toml (built in)", BUILTIN_POPULAR)
    }

    /// A list from a user file; it replaces the bundled one unless [`extend`](Self::extend)ed into it.
    pub fn load(path: &Path) -> Result<PopularNames, PopularError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PopularError {
            file: file.clone(),
            message: e.to_string(),
        })?;
        PopularNames::parse(&file, &text)
    }

    /// Parses and validates a list; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<PopularNames, PopularError> {
        let bad = |message: String| PopularError {
            file: file.to_string(),
            message,
        };
        let names: PopularNames = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        names.validate().map_err(bad)?;
        Ok(names)
    }

    /// Adds another list's names to this one (a publisher named in both gets both repo lists).
    pub fn extend(&mut self, other: PopularNames) {
        self.official.current.extend(other.official.current);
        self.official.removed.extend(other.official.removed);
        for p in other.publishers {
            match self
                .publishers
                .iter_mut()
                .find(|q| q.namespace == p.namespace)
            {
                Some(q) => q.repos.extend(p.repos),
                None => self.publishers.push(p),
            }
        }
        self.squat.suffixes.extend(other.squat.suffixes);
        self.squat.prefixes.extend(other.squat.prefixes);
        self.squat.claims.extend(other.squat.claims);
        self.squat
            .namespace_words
            .extend(other.squat.namespace_words);
        self.allow.names.extend(other.allow.names);
        self.allow.repos.extend(other.allow.repos);
    }

    fn validate(&self) -> Result<(), String> {
        let components = self
            .official
            .current
            .iter()
            .chain(&self.official.removed)
            .chain(self.publishers.iter().map(|p| &p.namespace))
            .chain(self.publishers.iter().flat_map(|p| &p.repos))
            .chain(&self.allow.repos);
        for name in components {
            if !is_component(name) {
                return Err(format!("{name:?} is not a repository-name component"));
            }
        }
        let squat = &self.squat;
        let words = squat
            .suffixes
            .iter()
            .chain(&squat.prefixes)
            .chain(&squat.claims)
            .chain(&squat.namespace_words);
        for word in words {
            if word.is_empty()
                || !word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(format!(
                    "squat word {word:?} must be lowercase letters and digits"
                ));
            }
        }
        for name in &self.allow.names {
            let ok = match name.strip_suffix("/*") {
                Some(ns) => is_component(ns),
                None => name.contains('/') && name.parse::<RepoName>().is_ok(),
            };
            if !ok {
                return Err(format!(
                    "allow entry {name:?} must be `namespace/repo` or `namespace/*`"
                ));
            }
        }
        Ok(())
    }
}

/// One path component of a repository name: `[a-z0-9]` runs joined by `.`, `_`, `__` or `-+`.
fn is_component(s: &str) -> bool {
    !s.contains('/') && s.parse::<RepoName>().is_ok()
}

// ---------------------------------------------------------------------------------------------
// The inspector

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

/// How the inspector reads a repository name.
struct Parsed<'a> {
    /// `host/repo` as shown in messages (`docker.io` for every Docker Hub alias).
    display: String,
    /// The host suggestions name (`docker.io` for Docker Hub).
    host: &'a str,
    /// The name is in Docker Hub's `library/` (or a mirror of it).
    official_scope: bool,
    namespace: Option<&'a str>,
    /// The last path component.
    repo: &'a str,
}

/// A near miss of a popular name in the repository component.
struct Squat {
    rule: RuleRef,
    /// What it imitates, as the finding's `matched`.
    target: String,
    /// The real name, fully qualified.
    suggestion: String,
    how: String,
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
        let words: HashSet<&'static str> = WORDS
            .split_whitespace()
            .chain(NEAR_WORDS.split_whitespace())
            .collect();
        let model = Bigrams::train(
            WORDS
                .split_whitespace()
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

    /// A near miss of an official name (or a publisher's repository) in the repository component:
    /// a claim of officialness first, then a typo, then a combosquat.
    fn repo_squat(&self, name: &Parsed<'_>) -> Option<Squat> {
        let repo = name.repo;
        let flat = flatten(repo);
        let library = |target: &str| format!("docker.io/library/{target}");
        if let Some(rule) = &self.rules.official_claim {
            let found = self.affixed(&flat, 3, &self.claim_before, &self.claim_after);
            if let Some((target, added)) =
                found.filter(|(_, w)| w.iter().any(|w| self.claims.contains(*w)))
            {
                return Some(Squat {
                    rule: rule.clone(),
                    suggestion: library(&target),
                    how: format!(
                        "claims to be the official image `{target}` (adds `{}`)",
                        added.join("-")
                    ),
                    target,
                });
            }
        }
        if let Some(rule) = &self.rules.typosquat {
            let cand = Candidate::new(repo, &self.words);
            if let Some((t, edit)) = self.repo_targets.nearest(&cand, |_, _| true) {
                return Some(Squat {
                    rule: rule.clone(),
                    suggestion: library(&t.name),
                    how: format!("looks like the official image `{}` ({edit})", t.name),
                    target: t.name.clone(),
                });
            }
            let high_confidence = |_: &Target, e: &Edit| e.is_look_alike();
            if let Some((t, edit)) = self.publisher_repo_targets.nearest(&cand, high_confidence) {
                let owner = t.owner.as_deref().unwrap_or("library");
                let host = if name.official_scope {
                    "docker.io"
                } else {
                    name.host
                };
                return Some(Squat {
                    rule: rule.clone(),
                    suggestion: format!("{host}/{owner}/{}", t.name),
                    how: format!("looks like `{owner}/{}` ({edit})", t.name),
                    target: format!("{owner}/{}", t.name),
                });
            }
        }
        if let Some(rule) = &self.rules.combosquat {
            if let Some((target, added)) =
                self.affixed(&flat, 4, &self.combo_before, &self.combo_after)
            {
                return Some(Squat {
                    rule: rule.clone(),
                    suggestion: library(&target),
                    how: format!(
                        "is the official image `{target}` with `{}` added",
                        added.join("-")
                    ),
                    target,
                });
            }
        }
        None
    }

    /// `flat` as an official name (at least `min_len` long, delimiters dropped) with words glued
    /// before or after it: the official name and the words.
    fn affixed<'s>(
        &self,
        flat: &'s str,
        min_len: usize,
        before: &HashSet<String>,
        after: &HashSet<String>,
    ) -> Option<(String, Vec<&'s str>)> {
        let official = |s: &str| {
            (s.len() >= min_len)
                .then(|| self.official_flat.get(s))
                .flatten()
                .cloned()
        };
        // Most names end and start with none of the words: skip the splitting then.
        let ends = after
            .iter()
            .any(|w| flat.len() > w.len() && flat.ends_with(w.as_str()));
        let starts = before
            .iter()
            .any(|w| flat.len() > w.len() && flat.starts_with(w.as_str()));
        // The longest official name first: `ubuntu-upstart-data` is `ubuntu-upstart` + `data`.
        for k in (1..flat.len()).rev().filter(|_| ends) {
            let (head, tail) = flat.split_at(k);
            if let Some(target) = official(head) {
                if let Some(words) = segment(tail, after) {
                    return Some((target, words));
                }
            }
        }
        for k in (1..flat.len()).filter(|_| starts) {
            let (head, tail) = flat.split_at(k);
            if let Some(target) = official(tail) {
                if let Some(words) = segment(head, before) {
                    return Some((target, words));
                }
            }
        }
        None
    }

    /// Whether a namespace imitates `library`, a publisher or an official name. Near misses of
    /// official names count only when the repository is (near) an official name too, or the
    /// change is a high-confidence one: many people's user names are a letter away from one.
    fn lookalike_namespace(&self, ns: &str, related: bool) -> Option<NamespaceMatch> {
        if ns == "library" || self.official.contains(ns) {
            return None;
        }
        let flat = flatten(ns);
        let words = &self.namespace_words;
        // Alone, a word must claim authority (`official`, `libraries`); glued to others, one of
        // them must at least name Docker or a library (`docker-images`, but not `team-io`).
        let authority =
            |w: &str| self.claims.contains(w) || matches!(w, "library" | "libraries" | "dockerhub");
        let dockerish = |w: &str| authority(w) || matches!(w, "docker" | "lib");
        if let Some(parts) = segment(&flat, words) {
            let imitates = match parts.as_slice() {
                [one] => authority(one),
                many => many.iter().any(|w| dockerish(w)),
            };
            if imitates {
                return Some(NamespaceMatch {
                    target: "library".into(),
                    kind: TargetKind::Library,
                    how: "imitates Docker's official `library` namespace".into(),
                });
            }
        }
        // A publisher (or `library`) with namespace words glued on, or an official name with a
        // claim of officialness (`bitnami-official`, `nginx-official`).
        let glued = words.iter().chain(&self.claims).any(|w| {
            flat.len() > w.len() && (flat.starts_with(w.as_str()) || flat.ends_with(w.as_str()))
        });
        for k in (1..flat.len()).filter(|_| glued) {
            for (name, rest, before) in [
                (&flat[..k], &flat[k..], false),
                (&flat[k..], &flat[..k], true),
            ] {
                let kind = if name == "library" {
                    TargetKind::Library
                } else if self.publisher_flat.contains_key(name) {
                    TargetKind::Publisher
                } else if name.len() >= 4 && self.official_flat.contains_key(name) {
                    TargetKind::Official
                } else {
                    continue;
                };
                let vocab = if kind == TargetKind::Official {
                    &self.claims
                } else {
                    words
                };
                if let Some(added) = segment(rest, vocab) {
                    let target = match kind {
                        TargetKind::Official => self.official_flat[name].clone(),
                        TargetKind::Publisher => self.publisher_flat[name].clone(),
                        _ => name.to_string(),
                    };
                    let added = added.join("-");
                    let how = match before {
                        false => format!("is `{target}` with `{added}` added"),
                        true => format!("is `{target}` with `{added}` put before it"),
                    };
                    return Some(NamespaceMatch { target, kind, how });
                }
            }
        }
        let cand = Candidate::new(ns, &self.words);
        // Docker Hub namespaces cannot hold delimiters, so there a project with one in its name
        // writes it without (`rocketchat` for `rocket.chat`): only adding delimiters imitates.
        let accept = |t: &Target, e: &Edit| {
            if e.first == EditKind::Delimiter && e.second.is_none() && cand.raw == cand.flat {
                return false;
            }
            match t.kind {
                TargetKind::Official | TargetKind::Removed => related || e.is_high_confidence(),
                TargetKind::Library | TargetKind::Publisher => true,
            }
        };
        let (t, edit) = self.namespace_targets.nearest(&cand, accept)?;
        let what = match t.kind {
            TargetKind::Library => "Docker's official `library` namespace".to_string(),
            TargetKind::Publisher => format!("the publisher `{}`", t.name),
            TargetKind::Official | TargetKind::Removed => {
                format!("the official image `{}`", t.name)
            }
        };
        Some(NamespaceMatch {
            target: t.name.clone(),
            kind: t.kind,
            how: format!("looks like {what} ({edit})"),
        })
    }

    /// The real name a look-alike namespace stands in for.
    fn namespace_suggestion(
        &self,
        name: &Parsed<'_>,
        m: &NamespaceMatch,
        squat: Option<&Squat>,
    ) -> Option<String> {
        let official_repo = if self.official.contains(name.repo) {
            Some(name.repo.to_string())
        } else {
            squat
                .filter(|s| s.suggestion.starts_with("docker.io/library/"))
                .map(|s| s.target.clone())
        };
        match m.kind {
            TargetKind::Publisher => {
                let lists_it = self
                    .publishers
                    .get(&m.target)
                    .is_some_and(|r| r.contains(name.repo));
                match (&official_repo, lists_it) {
                    (Some(o), false) => Some(format!("docker.io/library/{o}")),
                    _ => Some(format!("{}/{}/{}", name.host, m.target, name.repo)),
                }
            }
            TargetKind::Library => official_repo.map(|o| format!("docker.io/library/{o}")),
            TargetKind::Official | TargetKind::Removed => Some(format!(
                "docker.io/library/{}",
                official_repo.unwrap_or_else(|| m.target.clone())
            )),
        }
    }

    /// Whether a name component is hex-like or hard to read (not pronounceable as words).
    fn randomness(&self, component: &str) -> Option<Randomness> {
        if is_hex_like(component) {
            return Some(Randomness::Hex);
        }
        component
            .split(['.', '_', '-'])
            .filter(|t| t.len() >= MIN_RANDOM_LEN && !self.words.contains(t))
            .any(|t| self.model.unreadability(t) >= RANDOM_THRESHOLD)
            .then_some(Randomness::Unreadable)
    }
}

impl Squat {
    fn finding(self, display: &str, field: &str) -> Finding {
        let message = format!(
            "{display}: {}{}",
            self.how,
            did_you_mean(Some(&self.suggestion))
        );
        finding(&self.rule, message, field, &self.target)
    }
}

struct NamespaceMatch {
    /// The namespace or official name imitated.
    target: String,
    kind: TargetKind,
    how: String,
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

fn parse<'a>(registry_host: &'a str, repo: &'a RepoName) -> Parsed<'a> {
    let host = registry_host.trim();
    let hub = HUB_HOSTS.iter().any(|h| h.eq_ignore_ascii_case(host));
    let shown = if hub { "docker.io" } else { host };
    let parts: Vec<&str> = repo.components().collect();
    let last = parts[parts.len() - 1];
    let (official_scope, namespace) = match parts.as_slice() {
        [_] if hub => (true, Some("library")),
        [_] => (false, None),
        ["docker", "library", _] if host.eq_ignore_ascii_case(ECR_PUBLIC) => {
            (true, Some("library"))
        }
        [ns, _] => (hub && *ns == "library", Some(*ns)),
        [ns, ..] => (false, Some(*ns)),
        [] => (false, None),
    };
    let display = match parts.as_slice() {
        [one] if hub => format!("docker.io/library/{one}"),
        _ => format!("{shown}/{repo}"),
    };
    Parsed {
        display,
        host: shown,
        official_scope,
        namespace,
        repo: last,
    }
}

// ---------------------------------------------------------------------------------------------
// Near misses: targets indexed by length, skeleton and delimiter-free form

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TargetKind {
    Library,
    Publisher,
    Official,
    Removed,
}

/// Letters and digits counted, for a cheap lower bound on the edit distance.
type Histogram = [u8; 36];

/// Which letters and digits occur: a cheaper, looser bound, tried first.
fn presence(h: &Histogram) -> u64 {
    h.iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .fold(0, |m, (i, _)| m | 1 << i)
}

#[derive(Debug)]
struct Target {
    name: String,
    flat: String,
    histogram: Histogram,
    presence: u64,
    kind: TargetKind,
    /// For a publisher's repository: the publisher.
    owner: Option<String>,
}

#[derive(Debug, Default)]
struct Targets {
    all: Vec<Target>,
    /// Indexes into `all` by `flat.len()`.
    by_len: Vec<Vec<usize>>,
    by_flat: HashMap<String, usize>,
    by_skeleton: HashMap<String, usize>,
}

/// A name being judged, prepared once for every comparison.
struct Candidate<'a> {
    raw: &'a str,
    flat: String,
    skeleton: String,
    histogram: Histogram,
    presence: u64,
    /// A dictionary word: not taken for a typo of something else.
    word: bool,
}

impl<'a> Candidate<'a> {
    fn new(raw: &'a str, words: &HashSet<&'static str>) -> Candidate<'a> {
        let flat = flatten(raw);
        let histogram = histogram(&flat);
        Candidate {
            raw,
            skeleton: skeleton(&flat),
            presence: presence(&histogram),
            histogram,
            word: words.contains(flat.as_str()) || words.contains(raw),
            flat,
        }
    }
}

impl Targets {
    /// Indexes the names; a name given twice keeps its first kind.
    fn new(items: impl Iterator<Item = (String, TargetKind, Option<String>)>) -> Targets {
        let mut t = Targets::default();
        let mut seen = HashSet::new();
        for (name, kind, owner) in items {
            if !seen.insert(name.clone()) {
                continue;
            }
            let flat = flatten(&name);
            let i = t.all.len();
            if t.by_len.len() <= flat.len() {
                t.by_len.resize(flat.len() + 1, Vec::new());
            }
            t.by_len[flat.len()].push(i);
            t.by_flat.entry(flat.clone()).or_insert(i);
            t.by_skeleton.entry(skeleton(&flat)).or_insert(i);
            let histogram = histogram(&flat);
            t.all.push(Target {
                presence: presence(&histogram),
                histogram,
                flat,
                name,
                kind,
                owner,
            });
        }
        t
    }

    /// The closest target the candidate imitates, by the length thresholds of typomind (no edit
    /// distance under 4 characters, distance 2 only when both have 5 or more) and the kinds of
    /// edit squatters make; `accept` may refuse a match. Delimiter and look-alike-character
    /// changes come first, then distance 1, then 2; ties go to the more important kind.
    fn nearest(
        &self,
        cand: &Candidate<'_>,
        accept: impl Fn(&Target, &Edit) -> bool,
    ) -> Option<(&Target, Edit)> {
        if let Some(&i) = self.by_flat.get(&cand.flat) {
            let t = &self.all[i];
            if t.name == cand.raw {
                return None;
            }
            let edit = Edit::one(EditKind::Delimiter);
            if t.flat.len() >= 4 && accept(t, &edit) {
                return Some((t, edit));
            }
        }
        if cand.word {
            return None;
        }
        if let Some(&i) = self.by_skeleton.get(&cand.skeleton) {
            let t = &self.all[i];
            let edit = Edit::one(EditKind::LookAlike);
            if t.flat != cand.flat && t.flat.len() >= 3 && accept(t, &edit) {
                return Some((t, edit));
            }
        }
        let n = cand.flat.len();
        if n < 4 {
            return None;
        }
        let mut best: Option<(usize, TargetKind, usize, Edit)> = None;
        for len in n.saturating_sub(2).max(4)..=n + 2 {
            for &i in self.by_len.get(len).map(Vec::as_slice).unwrap_or_default() {
                let t = &self.all[i];
                let max = if n >= 5 && len >= 5 { 2 } else { 1 };
                // Each edit changes at most two character counts (a transposition none).
                if len.abs_diff(n) > max
                    || (cand.presence ^ t.presence).count_ones() as usize > 2 * max
                    || histogram_distance(&cand.histogram, &t.histogram, 2 * max) > 2 * max
                {
                    continue;
                }
                if !osa_within(cand.flat.as_bytes(), t.flat.as_bytes(), max) {
                    continue;
                }
                let d = strsim::damerau_levenshtein(&cand.flat, &t.flat);
                if d == 0 || d > max {
                    continue;
                }
                let Some(edit) = classify(&cand.flat, &t.flat) else {
                    continue;
                };
                if !accept(t, &edit) {
                    continue;
                }
                let key = (d, t.kind, i);
                if best.as_ref().is_none_or(|b| key < (b.0, b.1, b.2)) {
                    best = Some((d, t.kind, i, edit));
                }
            }
        }
        best.map(|(_, _, i, edit)| (&self.all[i], edit))
    }
}

/// One change a squatter makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EditKind {
    /// ASCII look-alikes: `0/o`, `1/l/i`, `5/s`, `3/e`, `4/a`, `7/t`, `8/b`, `9/g`, `2/z`, `rn/m`,
    /// `vv/w`, `cl/d`.
    LookAlike,
    /// `node-red` / `nodered` / `node_red`.
    Delimiter,
    Transposition,
    /// A letter doubled (`ubuntuu`, `postgress`).
    Repetition,
    /// A letter left out (`ubunt`).
    Omission,
    /// A letter added (`xnginx`).
    Addition,
    /// A digit added (`alpine2`).
    DigitAddition,
    /// A letter replaced by its neighbour on the keyboard (`nginz`).
    NeighbourKey,
    /// A vowel replaced by another (`ubantu`).
    VowelSwap,
    /// Any other replaced letter.
    Replacement,
}

impl EditKind {
    fn describe(self) -> &'static str {
        match self {
            EditKind::LookAlike => "look-alike characters",
            EditKind::Delimiter => "changed delimiters",
            EditKind::Transposition => "swapped letters",
            EditKind::Repetition => "a repeated letter",
            EditKind::Omission => "a missing letter",
            EditKind::Addition => "an added letter",
            EditKind::DigitAddition => "an added digit",
            EditKind::NeighbourKey => "a neighbouring key",
            EditKind::VowelSwap => "a swapped vowel",
            EditKind::Replacement => "a replaced letter",
        }
    }

    /// The edits that stay likely on short names (andrew/typosquatting keeps only these under 5
    /// characters).
    fn high_confidence(self) -> bool {
        matches!(
            self,
            EditKind::LookAlike
                | EditKind::Delimiter
                | EditKind::Transposition
                | EditKind::Repetition
        )
    }

    /// The edits allowed as one of two: not an arbitrary added or replaced letter, which at
    /// distance 2 turns one ordinary word into another (`redis` → `redux`).
    fn squat_like(self) -> bool {
        !matches!(self, EditKind::Addition | EditKind::Replacement)
    }
}

/// One or two edits from a popular name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Edit {
    first: EditKind,
    second: Option<EditKind>,
}

impl Edit {
    fn one(kind: EditKind) -> Edit {
        Edit {
            first: kind,
            second: None,
        }
    }

    fn is_high_confidence(&self) -> bool {
        self.second.is_none() && self.first.high_confidence()
    }

    /// Changes that keep the name the same to the eye.
    fn is_look_alike(&self) -> bool {
        self.second.is_none() && matches!(self.first, EditKind::LookAlike | EditKind::Delimiter)
    }
}

impl fmt::Display for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.second {
            None => f.write_str(self.first.describe()),
            Some(second) => write!(f, "{} and {}", self.first.describe(), second.describe()),
        }
    }
}

/// One aligned difference between a target and a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Target letter, candidate letter.
    Replace(u8, u8),
    /// A candidate letter not in the target, whether it repeats a neighbour, and whether it is
    /// the first letter.
    Insert(u8, bool, bool),
    Delete,
    Transpose,
}

/// Classifies the edits from `target` to `cand` (both delimiter-free, distance 1 or 2) and
/// applies the length gates, tighter than typomind's because ordinary words crowd short names:
/// - on 4-character names only high-confidence edits (look-alike, transposition, repetition);
/// - at 5, also a neighbouring key, a swapped vowel, an added digit or a letter added in front
///   (`xnginx`), but not a dropped, appended or replaced letter (`spark` → `spar`, `sparks`,
///   `flink` → `blink`);
/// - any single edit from 6;
/// - two edits only with both names at 5 or more and the target at 6, the same first letter, and
///   squat-like edits (no added or arbitrarily replaced letter, no added digit — `postgres12` is a
///   version — and not two letters dropped).
fn classify(cand: &str, target: &str) -> Option<Edit> {
    let ops = alignment(cand.as_bytes(), target.as_bytes());
    let kinds: Vec<EditKind> = ops.iter().map(|op| op_kind(*op)).collect();
    let shortest = cand.len().min(target.len());
    match kinds.as_slice() {
        [k] if k.high_confidence() => (shortest >= 4).then(|| Edit::one(*k)),
        [k @ (EditKind::NeighbourKey | EditKind::VowelSwap | EditKind::DigitAddition)] => {
            (shortest >= 5).then(|| Edit::one(*k))
        }
        [EditKind::Addition] if matches!(ops[0], Op::Insert(_, _, true)) => {
            (target.len() >= 5).then(|| Edit::one(EditKind::Addition))
        }
        [k] => (target.len() >= 6 && cand.len() >= 5).then(|| Edit::one(*k)),
        [a, b] => {
            let both_dropped = *a == EditKind::Omission && *b == EditKind::Omission;
            let digits = *a == EditKind::DigitAddition || *b == EditKind::DigitAddition;
            (shortest >= 5
                && target.len() >= 6
                && cand.as_bytes()[0] == target.as_bytes()[0]
                && a.squat_like()
                && b.squat_like()
                && !both_dropped
                && !digits)
                .then_some(Edit {
                    first: *a,
                    second: Some(*b),
                })
        }
        _ => None,
    }
}

fn op_kind(op: Op) -> EditKind {
    match op {
        Op::Transpose => EditKind::Transposition,
        Op::Delete => EditKind::Omission,
        Op::Insert(c, _, _) if c.is_ascii_digit() => EditKind::DigitAddition,
        Op::Insert(_, true, _) => EditKind::Repetition,
        Op::Insert(..) => EditKind::Addition,
        Op::Replace(a, b) if look_alike(a) == look_alike(b) => EditKind::LookAlike,
        Op::Replace(a, b) if neighbours(a, b) => EditKind::NeighbourKey,
        Op::Replace(a, b) if is_vowel(a) && is_vowel(b) => EditKind::VowelSwap,
        Op::Replace(..) => EditKind::Replacement,
    }
}

/// The optimal-string-alignment edits turning `target` into `cand` (names are short: at most a
/// few dozen bytes, and this runs only for the rare pair within distance 2).
fn alignment(cand: &[u8], target: &[u8]) -> Vec<Op> {
    let (m, n) = (target.len(), cand.len());
    let w = n + 1;
    let mut d = vec![0usize; (m + 1) * w];
    for i in 0..=m {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(n + 1) {
        *cell = j;
    }
    for i in 1..=m {
        for j in 1..=n {
            let cost = usize::from(target[i - 1] != cand[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && target[i - 1] == cand[j - 2] && target[i - 2] == cand[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (m, n);
    while i > 0 || j > 0 {
        let here = d[i * w + j];
        if i > 0 && j > 0 && target[i - 1] == cand[j - 1] && here == d[(i - 1) * w + j - 1] {
            i -= 1;
            j -= 1;
        } else if i > 1
            && j > 1
            && target[i - 1] == cand[j - 2]
            && target[i - 2] == cand[j - 1]
            && here == d[(i - 2) * w + j - 2] + 1
        {
            ops.push(Op::Transpose);
            i -= 2;
            j -= 2;
        } else if i > 0 && j > 0 && here == d[(i - 1) * w + j - 1] + 1 {
            ops.push(Op::Replace(target[i - 1], cand[j - 1]));
            i -= 1;
            j -= 1;
        } else if i > 0 && here == d[(i - 1) * w + j] + 1 {
            ops.push(Op::Delete);
            i -= 1;
        } else {
            let c = cand[j - 1];
            let repeats = (j >= 2 && cand[j - 2] == c) || (j < n && cand[j] == c);
            ops.push(Op::Insert(c, repeats, j == 1));
            j -= 1;
        }
    }
    ops.reverse();
    ops
}

/// Whether the optimal-string-alignment distance is at most `max`: a banded, allocation-free
/// check that stops once a whole row exceeds `max`, run before the exact distance. (OSA is never
/// below Damerau-Levenshtein, and pairs only DL reaches cannot be classified anyway.)
fn osa_within(a: &[u8], b: &[u8], max: usize) -> bool {
    const CAP: usize = 64;
    if a.len() >= CAP || b.len() >= CAP || a.len().abs_diff(b.len()) > max {
        return false;
    }
    let inf = u8::MAX;
    let mut before = [inf; CAP];
    let mut prev = [inf; CAP];
    let mut row = [inf; CAP];
    for (j, cell) in prev.iter_mut().enumerate().take(b.len() + 1) {
        *cell = j as u8;
    }
    for i in 1..=a.len() {
        row.fill(inf);
        row[0] = i as u8;
        let lo = i.saturating_sub(max).max(1);
        let hi = (i + max).min(b.len());
        let mut best = row[0];
        for j in lo..=hi {
            let cost = u8::from(a[i - 1] != b[j - 1]);
            let mut v = prev[j]
                .saturating_add(1)
                .min(row[j - 1].saturating_add(1))
                .min(prev[j - 1].saturating_add(cost));
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(before[j - 2].saturating_add(1));
            }
            row[j] = v;
            best = best.min(v);
        }
        if usize::from(best) > max {
            return false;
        }
        before = prev;
        prev = row;
    }
    usize::from(prev[b.len()]) <= max
}

/// A name without its delimiters (`node-red` → `nodered`).
fn flatten(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// The class of look-alike characters a character belongs to.
fn look_alike(c: u8) -> u8 {
    match c {
        b'0' => b'o',
        b'1' | b'i' => b'l',
        b'5' => b's',
        b'3' => b'e',
        b'4' => b'a',
        b'7' => b't',
        b'8' => b'b',
        b'9' => b'g',
        b'2' => b'z',
        c => c,
    }
}

/// What a name looks like: look-alike characters folded (`a1pine` and `alpine` → `alplne`,
/// `bitnarni` and `bitnami` → `bltnaml`).
fn skeleton(flat: &str) -> String {
    let folded: String = flat.bytes().map(|b| char::from(look_alike(b))).collect();
    folded
        .replace("rn", "m")
        .replace("vv", "w")
        .replace("cl", "d")
}

fn histogram(flat: &str) -> Histogram {
    let mut h = [0u8; 36];
    for b in flat.bytes() {
        let i = match b {
            b'a'..=b'z' => usize::from(b - b'a'),
            b'0'..=b'9' => 26 + usize::from(b - b'0'),
            _ => continue,
        };
        h[i] = h[i].saturating_add(1);
    }
    h
}

/// The characters in one histogram and not the other, counted both ways, stopping past `limit`:
/// at most twice the edit distance.
fn histogram_distance(a: &Histogram, b: &Histogram, limit: usize) -> usize {
    let mut sum = 0;
    for (x, y) in a.iter().zip(b) {
        sum += usize::from(x.abs_diff(*y));
        if sum > limit {
            break;
        }
    }
    sum
}

fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u')
}

/// Keys next to each other on a QWERTY keyboard (rows staggered right as they go down).
fn neighbours(a: u8, b: u8) -> bool {
    const ROWS: [&[u8]; 4] = [b"1234567890", b"qwertyuiop", b"asdfghjkl", b"zxcvbnm"];
    let pos = |c: u8| {
        ROWS.iter()
            .enumerate()
            .find_map(|(r, row)| row.iter().position(|&k| k == c).map(|col| (r, col)))
    };
    let (Some((ra, ca)), Some((rb, cb))) = (pos(a), pos(b)) else {
        return false;
    };
    if ra == rb {
        return ca.abs_diff(cb) == 1;
    }
    // The row below sits half a key to the right: key c touches c-1 and c below it.
    let (upper, lower) = if ra < rb {
        ((ra, ca), (rb, cb))
    } else {
        ((rb, cb), (ra, ca))
    };
    lower.0 == upper.0 + 1 && (lower.1 == upper.1 || lower.1 + 1 == upper.1)
}

/// `s` cut into words of `vocab`, if it can be.
fn segment<'s>(s: &'s str, vocab: &HashSet<String>) -> Option<Vec<&'s str>> {
    if s.is_empty() {
        return None;
    }
    // back[i]: where the last word of a segmentation of s[..i] starts.
    let mut back: Vec<Option<usize>> = vec![None; s.len() + 1];
    for end in 1..=s.len() {
        back[end] = (0..end)
            .find(|&start| (start == 0 || back[start].is_some()) && vocab.contains(&s[start..end]));
    }
    back[s.len()]?;
    let mut words = Vec::new();
    let mut end = s.len();
    while end > 0 {
        let start = back[end]?;
        words.push(&s[start..end]);
        end = start;
    }
    words.reverse();
    Some(words)
}

// ---------------------------------------------------------------------------------------------
// Hard-to-read names

/// Why a name component reads as random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Randomness {
    /// Eight or more hex digits with digits among them (`c43602f9cc95`, `700888880a0`).
    Hex,
    /// Unlike English and popular names: unlikely letter pairs, digits mixed into letters, long
    /// consonant runs, few repeated characters.
    Unreadable,
}

impl fmt::Display for Randomness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Randomness::Hex => "hex, random-looking",
            Randomness::Unreadable => "hard-to-read, random-looking",
        })
    }
}

/// Tokens shorter than this are not judged: acronyms (`lts`, `ssh`, `k8s`) are short.
const MIN_RANDOM_LEN: usize = 6;
/// [`Bigrams::unreadability`] at or above this reads as random.
const RANDOM_THRESHOLD: f32 = 4.25;

/// `^[0-9a-f]{8,}$` (delimiters allowed) with at least two digits, so words spelt in hex letters
/// (`deadbeef`, `facade`) are not taken for it.
fn is_hex_like(component: &str) -> bool {
    let flat = flatten(component);
    flat.len() >= 8
        && flat.bytes().all(|b| b.is_ascii_hexdigit())
        && flat.bytes().filter(u8::is_ascii_digit).count() >= 2
}

/// Symbols of the character model: 0 is a word boundary, 1–26 the letters, 27 any digit.
const SYMBOLS: usize = 28;

fn symbol(b: u8) -> usize {
    match b {
        b'a'..=b'z' => usize::from(b - b'a') + 1,
        b'0'..=b'9' => 27,
        _ => 0,
    }
}

/// A character-bigram model of English words and popular image names: log P(next | previous).
#[derive(Debug)]
struct Bigrams {
    log_p: Vec<f32>,
}

impl Bigrams {
    fn train<'a>(words: impl Iterator<Item = &'a str>) -> Bigrams {
        let mut counts = vec![0u32; SYMBOLS * SYMBOLS];
        for word in words {
            for token in word.split(['.', '_', '-']) {
                let mut prev = 0;
                for b in token.bytes().chain(std::iter::once(b' ')) {
                    let s = symbol(b);
                    counts[prev * SYMBOLS + s] += 1;
                    prev = s;
                }
            }
        }
        // Add-k smoothing keeps unseen pairs possible but unlikely.
        const K: f32 = 0.1;
        let mut log_p = vec![0f32; SYMBOLS * SYMBOLS];
        for a in 0..SYMBOLS {
            let row = &counts[a * SYMBOLS..(a + 1) * SYMBOLS];
            let total: u32 = row.iter().sum();
            for (b, &c) in row.iter().enumerate() {
                log_p[a * SYMBOLS + b] =
                    ((c as f32 + K) / (total as f32 + K * SYMBOLS as f32)).ln();
            }
        }
        Bigrams { log_p }
    }

    /// The mean negative log-likelihood of the token's letter pairs, word boundaries included;
    /// digits count as boundaries (their alternation with letters is scored apart).
    fn surprise(&self, token: &str) -> f32 {
        let mut prev = 0;
        let mut sum = 0.0;
        let mut n = 0;
        for b in token.bytes().chain(std::iter::once(b' ')) {
            let s = if b.is_ascii_lowercase() { symbol(b) } else { 0 };
            if s == 0 && prev == 0 {
                continue;
            }
            sum -= self.log_p[prev * SYMBOLS + s];
            prev = s;
            n += 1;
        }
        if n == 0 {
            0.0
        } else {
            sum / n as f32
        }
    }

    /// How random a token reads: the bigram surprise, raised by letter/digit alternation, long
    /// consonant runs, a lack of vowels and near-maximal entropy. Not entropy alone: syllable
    /// generators beat it, and real words can have it.
    fn unreadability(&self, token: &str) -> f32 {
        let bytes = token.as_bytes();
        let letters = bytes.iter().filter(|b| b.is_ascii_lowercase()).count();
        let vowels = bytes.iter().filter(|&&b| is_vowel(b) || b == b'y').count();
        let digits = bytes.len() - letters;
        let alternations = bytes
            .windows(2)
            .filter(|w| w[0].is_ascii_digit() != w[1].is_ascii_digit())
            .count();
        let mut run = 0usize;
        let mut longest_run = 0usize;
        for &b in bytes {
            if b.is_ascii_lowercase() && !is_vowel(b) && b != b'y' {
                run += 1;
                longest_run = longest_run.max(run);
            } else {
                run = 0;
            }
        }
        let mut score = self.surprise(token);
        score += 0.3 * alternations.saturating_sub(1) as f32;
        score += 0.4 * longest_run.saturating_sub(4) as f32;
        if letters >= 4 && vowels == 0 {
            score += 0.8;
        }
        if digits > 0 && letters > 0 && digits * 4 >= bytes.len() {
            score += 0.3;
        }
        if bytes.len() >= 8 && entropy(bytes) >= 0.95 * (bytes.len() as f32).log2() {
            score += 0.3;
        }
        score
    }
}

/// Shannon entropy in bits per character.
fn entropy(bytes: &[u8]) -> f32 {
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}

/// English and software words: a name that is one of these is not a typo of a popular name, and
/// with the popular names they train the readability model. Lowercase, space-separated.
const WORDS: &str = "
a able about above access account act action active activity actor adapter add address admin
admins advanced after again against age agent agents air alarm alert alerts algorithm all allow
alone along alpha already also alter always amber among amount analysis analytics analyzer anchor
and android angle animal annotate another answer any anything apache apart api apis app apple
apply apps april arbiter arch archive area argument arm army around array arrow art article artifact
artifacts artist ask asset assets assistant async atlas atom attach audio audit august auth author
auto automation autoscaler available avatar average away awesome axis baby back backend backup
backups bad badge bag bake baker balance balancer ball band bank bar barrier base based basic
basket batch battle beacon beam bear beat beautiful because become bed been beer before begin
behind being bell below belt bench benchmark best beta better between beyond big bill billing bin
binary bind bird birth bit bits black blade blank blast blob block blocks blog blood bloom blue
board boat body bold bolt bone book books boost boot border both bottle bottom bounce bound box
boxes brain branch brand bread break breeze brick bridge brief bright bring broad broker brown
browser bucket budget buffer bug bugs build builder builds bulk bundle burn burst bus business
busy but button buy cable cache caching cake calendar call calm camera camp campaign can canary
candle candy canvas cap capital capture car carbon card care cargo carry cart case cash cast
castle cat catalog catch cause cell cellar center central certain chain chair challenge champion
change channel chaos chapter charge chart chat cheap check checker checkout cheese chef chess child
chip choice chrome chunk circle citizen city claim class classic clean cleaner clear clerk click
client cliff climate clock clone close cloud club cluster coach coast code coder codes coffee
coin cold collect collector color column combine come comfort command comment commerce commit
common community company compare compiler complete compose compute computer concept config
connect connector console consumer contact container content context contract control controller
convert converter cook cookie cool copy core corner cost cotton could count counter country couple
course court cover craft crane crash crate crater crawler cream create creator credit crew
crisis cross crowd crown crypto crystal cube culture cup curl current cursor curve custom customer
cut cyber cycle daemon daily damage dance danger dark dash dashboard data database date day dead
deal dealer dear debate debug debugger decide deck deep default defense degree delay delta demand
demo deploy deployer depth design desk desktop detail detect detector dev devel develop developer
device devices diary diff digital dinner direct director dirt disk dispatch display distance diver
dns doc dock docker docs document dog doing dollar domain done door dot double down download draft
dragon drain draw dream dress drift drill drink drive driver drop drum dry duck dust duty dynamic
each eagle early earth east easy echo edge edit editor effect egg eight either elastic element
else email ember emerald empty emulator end endpoint energy engine enter entry environment epic
equal error escape estate event events every evidence exact example exchange exec exit expert
explorer export exporter express extension extra extract extractor eye fabric face fact factory
fail fair faith fall false family fan far farm fast father fault feature fee feed feedback feel
fence fetch fetcher few field fight figure file files fill film filter final finance find fine
finger finish fire firewall first fish fit five fix fixed flag flame flash fleet flight float flood
floor flow flower fly focus fog fold folder follow food foot for force forest forge fork form
format forms fortune forum forward found fox frame free fresh friend from front frontend frost
fruit fuel full fun function fund future galaxy game garden gas gate gateway gather gear general
generator gentle ghost giant gift girl give glad glass global glow goal gold golden good govern
grab grace grade grain grand grant graph grass gray great green grid ground group grow guard guess
guest guide gun habit hair half hall hammer hand handle handler hang happy harbor hard harvest hash
have hawk head health heap hear heart heat heavy hello help helper hero hidden high hill hint
history hit hold hole holiday home hook hooks hope horizon horse host hosting hot hotel hour house
how http https hub huge human hunter ice icon idea identity image images impact import importer
inbox income index indexer infra ingress init input insight inspect inspector install installer
instance instant insure internal into invoice iron island issue item its jacket java jet job jobs
join journal joy judge juice jump jungle junior just keen keep kernel key keys kid kind king
kitchen kite knife know known knows label labs lake lambda lamp land lane language large laser
last late later launch launcher law lawn layer lead leader leaf league learn least leave ledger
left legacy legal lemon length lens lesson letter level library life light like limit line link
linter lion liquid list listen listener little live load loader local lock locker log logger logic
login logs long look loop lord lost lot loud love low lucky lunar lunch machine magic mail mailer
main maker mall man manage manager mango manual map mapper marble march margin market mask master
match math matrix matter max maximum may maybe meal mean measure media medium meet member memory
mention menu merge mesh message metal meter method metrics middle middleware might mind mine mini
minimal minor mint minute mirror miss mission mix mobile mock mode model models modern module
moment money monitor month moon more morning most mother motion motor mountain mouse mouth move
movie much music must name native nature near neat need nerve nest net network never new news
next nice night nine noble node nodes noise none north nose not note notebook notes nothing notice
notifier novel now number nurse oak object ocean offer office often oil old omega once one online
only open opera operator option orange orbit order origin other outer output outside oven over
owner oxygen pace pack package packer packet page pages paint pair palace panel paper parcel parent
park parser part party pass past patch path patrol pattern pause pay peace peak pearl pen people
pepper perfect period person pet phase phone photo photos piano pick picture piece pilot pin pine
pipe pipeline pitch pixel pizza place plan planet plant plate platform play player please plot
plugin plugins plus pocket poem point poke polar police policy poll poller pond pool poor pop port
portal position post potato pound power practice press pretty price pride prime print printer
private prize probe problem process processor produce producer product profile profiler program
project promise prompt proof proper property protect proto proxy public publisher pull pulse pump
punch pure purple push pusher put puzzle quality quantum quarter queen query quest question queue
quick quiet quote rabbit race radar radio rail rails rain random range rapid rate raven raw reach
read reader ready real reason receiver record recorder red redirect redux reds reef region registry
relay release remote render renderer rent repair repeat replica reply repo report reporter request
rescue reset resolver resource response rest result retro return review reward rich ride right
ring rise risk river road robot rock rocket role roll roof room root rope rose round route router
row royal rule ruler run runner runtime rush rust rusty safe sail salt same sample sand sandbox
save say scale scan scanner scene schedule scheduler schema school science scope score scout
scraper screen script scripts sea search season seat second secret secrets section secure security
seed seek select self sell send senior sense sensor sentry server service services session set
setup seven shadow shake shape share shark sharp shed sheep sheet shelf shell shield shift shine
ship shop short shot should show side sidecar sign signal signer silent silver simple single sink
sister site six size skill skin sky sleep slice slide slim slow small smart smile smoke snake snap
snow social socket soft solar soldier solid solo solution some song sort sound source south space
spare spark speak special speed spell spend spider spin spirit split splitter sport spot spring
square stable stack staff stage stand star stark start state static station status stay steam
steel step stick still stock stone stop storage store stores storm story stream streamer street
strike string strong studio study style subject submit success such sugar suite summer sun super
supply support sure surface swap sweet switch symbol sync syncer system table tail tails take talk
tank target task tasks taste tax tea teach team tech template ten tender term terminal test tester
tests text than thank that the theme then theory there these thing think third this thread three
thrift thrifty through throw thunder ticket tide tiger time timer tiny tip title toast today token
tool toolbox toolkit tools top topic total touch tour tower town toy trace tracer tracing track
tracker trade traffic trail train transfer translate translator trap travel tree trend trial
tribe trick trigger trip true trust try tune tunnel turbo turn twin two type ultra under union unit
units universe unix until update updater upload uploader upper urban usage use user users util
utils valid validator valley value vapor vault vector vendor venture version very video view viewer
village virtual vision visit visual voice void volume vote voyage wait walk wall wallet war warm
warn watch watcher water wave way weather web webapp webhook webhooks website week weight welcome
well west what wheel when where which while white whole why wide widget wild will win wind window
wine wing winter wire wise wish with wizard wolf woman wonder wood word work worker workers
workflow world worth would wrapper write writer yard year yellow yes yet yield young zero zone zoom
abc acme ansible apm argocd awscli azure bazel bitbucket buildkit caddyfile certbot chromium
cloudflare cockroach conda coredns cuda dapr deno devops distroless django dotnet dynamodb envoy
etcd eureka fastapi filebeat flask flutter fluentbit gitea github gitlab gradle grafana graphql
grpc gunicorn hadoop helm hugo jaeger jenkins jira jupyter kafka kaniko keycloak kibana kotlin
kube kubectl kubernetes laravel linkerd linux loki minio mongod mongodb mssql mysqld nagios netdata
nextjs nodejs numpy oauth openapi openldap openssl openvpn pandas pgadmin phoenix podman postgresql
powershell prometheus pytest pytorch qemu rclone react reactjs redash selenium sentinel sonar spring
sqlite squid supervisor svelte swagger symfony tensorflow terraform thanos typescript ubuntu unbound
uvicorn valkey vitess vuejs webpack wireguard wordpress xcode yarn zabbix zipkin zsh alpine debian
centos fedora nginx redis mongo mariadb postgres python golang ruby rust node perl php java
";

/// English words a letter or two from a popular name, or that look random (`rhythms`): they are
/// real words, not typos or random names. Generated once from a dictionary (wamerican) by running
/// the detectors over it; plurals of popular names are left out, as they are squats.
const NEAR_WORDS: &str = "
admire admirer alien aline ants apace backstop bonito botnet breadths canto cantos cants
capacitor careens cares cents chutzpah circled cirrus citrus clefs clefts clerks clink closure
cloture colic composed composes compost consult corals cored cores corks corps cotes cradle
crone cures curios daddy decked demijohn demijohns dicier dicker dingo docked docket donut
ducked eclipsed eighths elapse elicit ellipse ersatz fails femora flank flaunt flint fluent
flung flunk fount garnish gentry goggle going goofy googled gouge grads grape gravy groove
growths gulag hairsbreadths hatch howdahs hurrahs hutch hutzpa hutzpah hying hyping jabbed
jabber jailer jerkins jibbed jiujitsu jobbed jogger kibbutz kibitz kilohertz kinder klutzier
klutzy kohlrabi kohlrabies lengths lengthways maharajahs mania maniac manic manics maria matzohs
mavin mocker mosquito mukluk mukluks mynahs notify nymphs persona pertained pharaohs pinhole
piped piton plane plastic posters postures proton quartz rajahs ranched ranches rancor ranger
redid redone remind rhythm rhythms robber rocker roils rotary ruts salsa sates schmaltz
schmaltzy schmalz schmalzy shrift sipped sloped sniped soaped soiled souped spiced spied spies
spiked spilled spited stork swill swiped sylphs tangelo tarnish telegram theft thousandths
thumbscrew tomes triumphs twelfths vanish votary widths wilder yours yukked trails nodded
";

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    /// The bundled names and rule pack, built once for all tests.
    static INSPECTOR: LazyLock<NameInspector> = LazyLock::new(|| {
        NameInspector::new(
            &PopularNames::builtin().unwrap(),
            &RuleSet::builtin().unwrap(),
        )
    });

    fn check(host: &str, name: &str) -> Vec<Finding> {
        INSPECTOR.inspect(host, &name.parse().unwrap())
    }

    fn hub(name: &str) -> Vec<Finding> {
        check("docker.io", name)
    }

    /// Scored as the policy scores them: each rule once, at its strongest finding.
    fn total(findings: &[Finding]) -> f64 {
        let mut best: HashMap<&str, f64> = HashMap::new();
        for f in findings {
            let s = best.entry(f.rule.as_str()).or_insert(0.0);
            *s = s.max(f.score);
        }
        best.values().sum()
    }

    fn rules(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.rule.as_str()).collect()
    }

    /// The score at which the brief's malicious names must land: enough to block on the name alone.
    const BLOCKING: f64 = 100.0;
    /// Below the warn band of the scoring design (§6: 20–49 warns).
    const QUIET: f64 = 20.0;

    #[test]
    fn bundled_list_has_every_official_image_and_the_named_publishers() {
        let p = PopularNames::builtin().unwrap();
        assert_eq!(p.official.current.len(), 144);
        assert_eq!(p.official.removed.len(), 42);
        for name in [
            "alpine",
            "eclipse-temurin",
            "rocket.chat",
            "znc",
            "r-base",
            "ibm-semeru-runtimes",
        ] {
            assert!(p.official.current.iter().any(|n| n == name), "{name}");
        }
        for name in ["centos", "jenkins", "vault", "consul", "java", "sl"] {
            assert!(p.official.removed.iter().any(|n| n == name), "{name}");
        }
        let namespaces: HashSet<&str> = p.publishers.iter().map(|p| p.namespace.as_str()).collect();
        for ns in [
            "bitnami",
            "grafana",
            "prom",
            "hashicorp",
            "nginxinc",
            "redis",
            "jenkins",
            "circleci",
            "rediscommander",
            "eclipse",
            "gitlab",
            "portainer",
            "rancher",
            "linuxserver",
            "datadog",
            "elastic",
            "confluentinc",
            "microsoft",
            "dotnet",
            "mssql",
        ] {
            assert!(namespaces.contains(ns), "{ns}");
        }
        assert!(p.squat.claims.contains(&"official".to_string()));
    }

    #[test]
    fn a_user_list_loads_from_a_file_and_extends_the_bundled_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("popular.toml");
        std::fs::write(
            &path,
            "[[publisher]]\nnamespace = \"acmecorp\"\nrepos = [\"billing-api\"]\n\n\
             [[publisher]]\nnamespace = \"bitnami\"\nrepos = [\"acme-chart\"]\n\n\
             [allow]\nnames = [\"partner/*\", \"team/ngnix-fork\"]\n",
        )
        .unwrap();
        let user = PopularNames::load(&path).unwrap();
        assert!(
            user.official.current.is_empty(),
            "a user file alone replaces the bundled list"
        );
        let mut merged = PopularNames::builtin().unwrap();
        merged.extend(user);
        let bitnami = merged
            .publishers
            .iter()
            .find(|p| p.namespace == "bitnami")
            .unwrap();
        assert!(
            bitnami.repos.contains(&"redis".to_string())
                && bitnami.repos.contains(&"acme-chart".to_string())
        );
        let i = NameInspector::new(&merged, &RuleSet::builtin().unwrap());
        let find = |n: &str| i.inspect("docker.io", &n.parse().unwrap());
        // The new publisher is trusted, and its namespace is now protected.
        assert!(find("acmecorp/anything").is_empty());
        assert_eq!(
            rules(&find("acmec0rp/billing-api")),
            ["name.lookalike-namespace"]
        );
        assert!(find("acmec0rp/billing-api")[0]
            .message
            .ends_with("did you mean docker.io/acmecorp/billing-api?"));
        // Allowed names stay quiet; others with the same shape do not.
        assert!(find("partner/ngnix").is_empty());
        assert!(find("team/ngnix-fork").is_empty());
        assert!(!find("team/ngnix").is_empty());
    }

    #[test]
    fn bad_lists_are_refused_with_the_file_named() {
        let cases = [
            "[official]\ncurrent = [\"Nginx\"]\n",
            "[official]\ncurrent = [\"a/b\"]\n",
            "[[publisher]]\nnamespace = \"-bad\"\n",
            "[squat]\nsuffixes = [\"with-dash\"]\n",
            "[allow]\nnames = [\"justaname\"]\n",
            "[allow]\nrepos = [\"UPPER\"]\n",
            "[official]\nbogus = []\n",
        ];
        for text in cases {
            let err = PopularNames::parse("user.toml", text)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("popular-names file user.toml:"),
                "{text}: {err}"
            );
        }
        assert!(PopularNames::load(Path::new("/nonexistent/popular.toml")).is_err());
    }

    #[test]
    fn every_detector_has_a_rule_in_the_bundled_pack() {
        let pack = RuleSet::builtin().unwrap();
        let expected = [
            (detector::TYPOSQUAT, "name.typosquat", 100.0),
            (
                detector::LOOKALIKE_NAMESPACE,
                "name.lookalike-namespace",
                100.0,
            ),
            (detector::OFFICIAL_CLAIM, "name.official-claim", 100.0),
            (
                detector::OFFICIAL_NAME_RANDOM_NAMESPACE,
                "name.official-name-under-random-namespace",
                100.0,
            ),
            (detector::COMBOSQUAT, "name.combosquat", 50.0),
            (detector::RANDOM_NAME, "name.random", 50.0),
            (detector::RANDOM_NAMESPACE, "name.random-namespace", 50.0),
            (
                detector::OFFICIAL_NAME_USER_NAMESPACE,
                "name.official-name-under-user-namespace",
                10.0,
            ),
        ];
        for (d, id, weight) in expected {
            let rule = pack
                .detector(d)
                .unwrap_or_else(|| panic!("no rule for {d}"));
            assert_eq!(
                (rule.id.as_str(), rule.weight, rule.category),
                (id, weight, Category::Name)
            );
        }
    }

    /// The brief's malicious names: each blocks on its name alone (≥ 60 with the bundled weights,
    /// each rule counted once), through the named rule, and says what it imitates.
    #[test]
    fn malicious_names_score_enough_to_block() {
        let cases: &[(&str, &[&str], &str)] = &[
            (
                "libary/nginx",
                &["name.lookalike-namespace"],
                "did you mean docker.io/library/nginx?",
            ),
            (
                "ubuntuu/ubuntu",
                &["name.lookalike-namespace"],
                "did you mean docker.io/library/ubuntu?",
            ),
            (
                "someuser/alpine2",
                &["name.typosquat"],
                "did you mean docker.io/library/alpine?",
            ),
            (
                "someuser/ngnix",
                &["name.typosquat"],
                "did you mean docker.io/library/nginx?",
            ),
            (
                "a1pine",
                &["name.typosquat"],
                "did you mean docker.io/library/alpine?",
            ),
            (
                "ubunt",
                &["name.typosquat"],
                "did you mean docker.io/library/ubuntu?",
            ),
            (
                "postgress",
                &["name.typosquat"],
                "did you mean docker.io/library/postgres?",
            ),
            (
                "nginx-official",
                &["name.official-claim"],
                "did you mean docker.io/library/nginx?",
            ),
            (
                "bitnarni/redis",
                &["name.lookalike-namespace"],
                "did you mean docker.io/bitnami/redis?",
            ),
            (
                "c43602f9cc95/openjdk",
                &["name.official-name-under-random-namespace"],
                "did you mean docker.io/library/openjdk?",
            ),
            (
                "700888880a0/golang",
                &["name.official-name-under-random-namespace"],
                "did you mean docker.io/library/golang?",
            ),
            (
                "x7kq9zvw2p/jx8qz0k3",
                &["name.random-namespace", "name.random"],
                "random-looking",
            ),
            (
                "docker-library/python",
                &["name.lookalike-namespace"],
                "did you mean docker.io/library/python?",
            ),
        ];
        for (name, expected, says) in cases {
            let f = hub(name);
            assert_eq!(rules(&f), *expected, "{name}: {f:#?}");
            assert!(total(&f) >= BLOCKING, "{name} scores {}", total(&f));
            assert!(f.iter().all(|f| f.message.contains(says)), "{name}: {f:#?}");
            assert!(f
                .iter()
                .all(|f| f.place == Place::Name && f.category == Category::Name));
        }
        // One-component names are read as official ones, and shown that way.
        assert!(hub("a1pine")[0]
            .message
            .starts_with("docker.io/library/a1pine: "));
    }

    /// Legitimate publishers and names: no finding at all.
    #[test]
    fn legitimate_names_stay_quiet() {
        for name in [
            "library/ubuntu",
            "library/nginx",
            "bitnami/redis",
            "redis/redis-stack",
            "nginxinc/nginx-unprivileged",
            "circleci/node",
            "rediscommander/redis-commander",
            "jenkins/jenkins",
            "hashicorp/vault",
            "library/eclipse-temurin",
            "eclipse-temurin",
            "openjdk",
            "jenkins",
            "nats",
            "bash",
            "php",
            "r-base",
            "nim",
            "swift",
            "unit",
            "node",
            "rust",
            "golang",
            "mongo",
            "redis",
            "someuser/myapp",
            "acme/billing-api",
            "grafana/loki",
            "prom/prometheus",
            "coolapp/webhelper",
            "devtools/nodejs-lts",
            "ops/ssh-bastion",
            "tiny/loader",
            "someuser/python3",
            "someuser/centos7",
            "someuser/postgres12",
            "someuser/mongodb",
            "someuser/postgresql",
            "someuser/docker-compose",
            "someuser/nginx-proxy",
            "someuser/redis-stack",
            "julian/myapp",
            "someuser/store",
            "someuser/ghosts-of-mars",
            "ubuntu/squid",
            "alpine/git",
            "mysql/mysql-server",
            // Real-world names that tripped earlier versions.
            "someuser/openjdk11",
            "influxdata/influxdb2",
            "rocketchat/rocket.chat",
            "odoo/odoo",
            "phpmyadmin/phpmyadmin",
            "kennethreitz/httpbin",
            "koenkk/zigbee2mqtt",
            "sameersbn/gitlab",
        ] {
            let f = hub(name);
            assert!(f.is_empty(), "{name}: {f:#?}");
        }
        for (host, name) in [
            ("mcr.microsoft.com", "dotnet/sdk"),
            ("mcr.microsoft.com", "mssql/server"),
            ("gcr.io", "distroless/static"),
            ("quay.io", "prometheus/node-exporter"),
            ("index.docker.io", "library/nginx"),
            ("registry-1.docker.io", "library/ubuntu"),
            ("public.ecr.aws", "docker/library/nginx"),
            ("harbor.example.com", "library/ubuntu"),
            ("harbor.example.com", "library/myapp"),
            ("ghcr.io", "someuser/myapp"),
            ("ghcr.io", "home-assistant/home-assistant"),
        ] {
            let f = check(host, name);
            assert!(f.is_empty(), "{host}/{name}: {f:#?}");
        }
    }

    #[test]
    fn an_official_name_under_a_user_namespace_is_low_and_under_a_random_one_high() {
        let f = hub("someuser/ubuntu");
        assert_eq!(rules(&f), ["name.official-name-under-user-namespace"]);
        assert_eq!(f[0].severity, Severity::Low);
        assert!(total(&f) < QUIET, "common and mostly benign");
        assert!(f[0]
            .message
            .contains("did you mean docker.io/library/ubuntu?"));
        assert_eq!(f[0].evidence.matched, "ubuntu");
        // Sysdig's vibersastra/ubuntu reads as an ordinary user: low here; content decides.
        assert!(total(&hub("vibersastra/ubuntu")) < QUIET);
        assert!(
            total(&hub("sameersbn/redmine")) < QUIET,
            "an odd user name is not random"
        );

        let f = hub("x7kq9zvw2p/redis");
        assert_eq!(rules(&f), ["name.official-name-under-random-namespace"]);
        assert!(f[0]
            .message
            .contains("hard-to-read, random-looking namespace `x7kq9zvw2p`"));
        assert!(total(&f) >= BLOCKING);
        let f = hub("deadbeef42/ubuntu");
        assert!(
            f[0].message.contains("hex, random-looking namespace"),
            "{f:#?}"
        );
    }

    #[test]
    fn typosquats_of_every_kind_are_named() {
        let cases = [
            ("someuser/ubunt", "ubuntu", "a missing letter"),
            ("someuser/ubuntuu", "ubuntu", "a repeated letter"),
            ("someuser/rediss", "redis", "a repeated letter"),
            ("someuser/nignx", "nginx", "swapped letters"),
            ("someuser/alpine2", "alpine", "an added digit"),
            ("someuser/xnginx", "nginx", "an added letter"),
            ("someuser/pythonx", "python", "an added letter"),
            ("someuser/ubantu", "ubuntu", "a swapped vowel"),
            ("someuser/nginz", "nginx", "a neighbouring key"),
            ("someuser/debiam", "debian", "a neighbouring key"),
            ("someuser/tomkat", "tomcat", "a replaced letter"),
            ("someuser/a1pine", "alpine", "look-alike characters"),
            ("someuser/rnongo", "mongo", "look-alike characters"),
            ("someuser/n9inx", "nginx", "look-alike characters"),
            ("someuser/hello_world", "hello-world", "changed delimiters"),
            ("someuser/rocky-linux", "rockylinux", "changed delimiters"),
            (
                "someuser/mongoexpress",
                "mongo-express",
                "changed delimiters",
            ),
            (
                "someuser/pstgress",
                "postgres",
                "a missing letter and a repeated letter",
            ),
            ("someuser/rsut", "rust", "swapped letters"),
        ];
        for (name, target, how) in cases {
            let f = hub(name);
            assert_eq!(rules(&f), ["name.typosquat"], "{name}: {f:#?}");
            assert_eq!(f[0].evidence.matched, target, "{name}");
            assert_eq!(f[0].evidence.field.as_deref(), Some("repository"));
            assert!(
                f[0].message.contains(&format!("({how})")),
                "{name}: {}",
                f[0].message
            );
            assert!(
                f[0].message
                    .ends_with(&format!("did you mean docker.io/library/{target}?")),
                "{name}"
            );
            assert_eq!(f[0].score, 100.0);
        }
        // A publisher's repository is matched by delimiter and look-alike changes only.
        let f = hub("someuser/node_red");
        assert_eq!(f[0].evidence.matched, "nodered/node-red");
        assert!(f[0]
            .message
            .ends_with("did you mean docker.io/nodered/node-red?"));
        assert!(hub("someuser/redis-commandr").is_empty());
        let f = check("ghcr.io", "someuser/redis_commander");
        assert!(f[0]
            .message
            .ends_with("did you mean ghcr.io/rediscommander/redis-commander?"));
        // Official images mirrored on Amazon's gallery are judged like library/.
        let f = check("public.ecr.aws", "docker/library/ngnix");
        assert_eq!(rules(&f), ["name.typosquat"]);
    }

    #[test]
    fn typosquat_length_thresholds_hold() {
        // No edit distance under 4 characters (only look-alike characters there).
        for name in [
            "someuser/phpp",
            "someuser/gcc2",
            "someuser/bsh",
            "someuser/nat",
        ] {
            assert!(hub(name).is_empty(), "{name}");
        }
        assert_eq!(
            rules(&hub("someuser/ph9")),
            Vec::<&str>::new(),
            "`9` is not `p`"
        );
        // 4 characters: transposition and repetition only.
        assert!(hub("someuser/rusk").is_empty());
        assert!(hub("someuser/nodes").is_empty());
        assert_eq!(rules(&hub("someuser/nodde")), ["name.typosquat"]);
        // 5: no dropped, appended or arbitrarily replaced letter.
        assert!(hub("someuser/spar").is_empty());
        assert!(hub("someuser/flinx").is_empty());
        // Distance 2 only when both have 5 or more (and the target 6).
        assert!(hub("someuser/ndoee").is_empty());
        assert_eq!(
            classify("pstgress", "postgres").map(|e| e.second.is_some()),
            Some(true)
        );
        assert_eq!(classify("redux", "redis"), None, "two replaced letters");
        assert_eq!(
            classify("postgres12", "postgres"),
            None,
            "a version, not a typo"
        );
        assert_eq!(
            classify("bpstgres", "postgres"),
            None,
            "another first letter"
        );
        // A real word is not a typo (`store`/`storm`, `crate`/`create`).
        for word in [
            "store",
            "create",
            "trust",
            "clone",
            "photo",
            "alien",
            "ghosts-of-mars",
        ] {
            assert!(hub(&format!("someuser/{word}")).is_empty(), "{word}");
        }
    }

    #[test]
    fn edits_are_classified_from_the_alignment() {
        let one = |c: &str, t: &str| classify(c, t).map(|e| (e.first, e.second));
        assert_eq!(one("ngnix", "nginx"), Some((EditKind::Transposition, None)));
        assert_eq!(one("ubunt", "ubuntu"), Some((EditKind::Omission, None)));
        assert_eq!(
            one("postgress", "postgres"),
            Some((EditKind::Repetition, None))
        );
        assert_eq!(
            one("alpine2", "alpine"),
            Some((EditKind::DigitAddition, None))
        );
        assert_eq!(one("nginz", "nginx"), Some((EditKind::NeighbourKey, None)));
        assert_eq!(one("ubantu", "ubuntu"), Some((EditKind::VowelSwap, None)));
        assert_eq!(one("alp1ne", "alpine"), Some((EditKind::LookAlike, None)));
        assert!(neighbours(b'e', b's') && neighbours(b'q', b'1') && !neighbours(b'b', b'f'));
        assert_eq!(skeleton("bitnarni"), skeleton("bitnami"));
        assert_eq!(skeleton("1ibrary"), skeleton("library"));
        assert_eq!(skeleton("c1oud"), skeleton("doud"));
        assert_eq!(skeleton("vvordpress"), skeleton("wordpress"));
        assert!(osa_within(b"ngnix", b"nginx", 1) && !osa_within(b"someuser", b"euleros", 2));
        assert_eq!(strsim::damerau_levenshtein("ngnix", "nginx"), 1);
    }

    #[test]
    fn lookalike_namespaces_are_named_with_the_real_name() {
        let cases = [
            ("libary/nginx", "library", "docker.io/library/nginx"),
            ("librray/redis", "library", "docker.io/library/redis"),
            ("1ibrary/alpine", "library", "docker.io/library/alpine"),
            (
                "library-official/nginx",
                "library",
                "docker.io/library/nginx",
            ),
            ("official/nginx", "library", "docker.io/library/nginx"),
            ("dockerofficial/redis", "library", "docker.io/library/redis"),
            ("dockerhub/ubuntu", "library", "docker.io/library/ubuntu"),
            (
                "docker-library/python",
                "library",
                "docker.io/library/python",
            ),
            ("ubuntuu/ubuntu", "ubuntu", "docker.io/library/ubuntu"),
            ("debain/debian", "debian", "docker.io/library/debian"),
            ("bitnarni/redis", "bitnami", "docker.io/bitnami/redis"),
            (
                "bitnami-official/redis",
                "bitnami",
                "docker.io/bitnami/redis",
            ),
            ("hashicrop/vault", "hashicorp", "docker.io/hashicorp/vault"),
            ("grafanna/loki", "grafana", "docker.io/grafana/loki"),
            (
                "linux-server/plex",
                "linuxserver",
                "docker.io/linuxserver/plex",
            ),
            ("nginx-official/nginx", "nginx", "docker.io/library/nginx"),
        ];
        for (name, target, suggestion) in cases {
            let f = hub(name);
            assert_eq!(rules(&f), ["name.lookalike-namespace"], "{name}: {f:#?}");
            assert_eq!(f[0].evidence.matched, target, "{name}");
            assert_eq!(f[0].evidence.field.as_deref(), Some("namespace"));
            assert!(
                f[0].message
                    .ends_with(&format!("did you mean {suggestion}?")),
                "{name}: {}",
                f[0].message
            );
            assert_eq!(f[0].severity, Severity::High);
        }
        assert_eq!(
            rules(&hub("docker-images/nginx")),
            ["name.lookalike-namespace"]
        );
        assert_eq!(
            rules(&hub("azure-functions-official/node")),
            ["name.lookalike-namespace"]
        );
        assert!(hub("team-io/myapp").is_empty());
        assert!(hub("images/myapp").is_empty());
        // A look-alike namespace with a repository that is not official: no guess at the repo.
        let f = hub("official/webapp");
        assert_eq!(rules(&f), ["name.lookalike-namespace"]);
        assert!(!f[0].message.contains("did you mean"));
        // Off Docker Hub the namespace is still a look-alike; publisher suggestions keep the host.
        let f = check("ghcr.io", "bitnarni/redis");
        assert!(
            f[0].message
                .ends_with("did you mean ghcr.io/bitnami/redis?"),
            "{}",
            f[0].message
        );
        // Near misses of official names as namespaces need a related repository or a
        // high-confidence change: many user names are a letter from one (`julian` / `julia`).
        assert!(hub("julian/myapp").is_empty());
        assert!(hub("fedara/myapp").is_empty());
        assert_eq!(rules(&hub("fedara/fedora")), ["name.lookalike-namespace"]);
        assert_eq!(rules(&hub("alpiine/myapp")), ["name.lookalike-namespace"]);
    }

    #[test]
    fn claims_of_officialness_and_combosquats() {
        let cases = [
            ("someuser/nginx-official", "name.official-claim", "nginx"),
            ("someuser/official-nginx", "name.official-claim", "nginx"),
            ("someuser/verified_redis", "name.official-claim", "redis"),
            ("someuser/php-official", "name.official-claim", "php"),
            ("someuser/nginx-utils", "name.combosquat", "nginx"),
            ("web/redis-server", "name.combosquat", "redis"),
            ("someuser/ubuntu-data", "name.combosquat", "ubuntu"),
            ("someuser/alpine-utils", "name.combosquat", "alpine"),
            ("someuser/latest-nginx", "name.combosquat", "nginx"),
            (
                "someuser/postgres-docker-image",
                "name.combosquat",
                "postgres",
            ),
            (
                "someuser/ubuntu-upstart-data",
                "name.combosquat",
                "ubuntu-upstart",
            ),
        ];
        for (name, rule, target) in cases {
            let f = hub(name);
            assert_eq!(rules(&f), [rule], "{name}: {f:#?}");
            assert_eq!(f[0].evidence.matched, target, "{name}");
            assert!(f[0]
                .message
                .ends_with(&format!("did you mean docker.io/library/{target}?")));
        }
        let combo = hub("someuser/nginx-utils");
        assert_eq!(
            (combo[0].severity, combo[0].score),
            (Severity::Medium, 50.0)
        );
        assert!(combo[0].message.contains("with `utils` added"));
        // Short official names make combosquats only with a claim.
        assert!(hub("someuser/php-server").is_empty());
        // Words outside the lists are ordinary naming.
        assert!(hub("someuser/nginx-proxy").is_empty());
        assert!(hub("someuser/python-app").is_empty());
    }

    #[test]
    fn random_names_are_found_and_readable_ones_left_alone() {
        let f = hub("x7kq9zvw2p/jx8qz0k3");
        assert_eq!(f[0].evidence.field.as_deref(), Some("namespace"));
        assert_eq!(f[0].evidence.matched, "x7kq9zvw2p");
        assert_eq!(f[1].evidence.field.as_deref(), Some("repository"));
        assert_eq!(f[1].evidence.matched, "jx8qz0k3");
        for name in [
            "qwxzkvbn",
            "a8f3k2j9",
            "mxkzqprt",
            "c43602f9cc95",
            "700888880a0",
        ] {
            assert!(INSPECTOR.randomness(name).is_some(), "{name}");
        }
        assert_eq!(INSPECTOR.randomness("c43602f9cc95"), Some(Randomness::Hex));
        assert!(is_hex_like("700888880a0") && !is_hex_like("deadbeef") && !is_hex_like("cafe42"));
        // Syllable-like, readable names, including the §8 scenarios and real publishers.
        for name in [
            "webhelper",
            "nodejs-lts",
            "ssh-bastion",
            "someuser",
            "redis-commander",
            "rediscommander",
            "confluentinc",
            "linuxserver",
            "eclipse-temurin",
            "nginx-unprivileged",
            "billing-api",
            "vibersastra",
            "thanhtudo",
            "bkimminich",
            "wurstmeister",
            "jupyterhub",
            "hoppscotch",
            "containrrr",
            "kasmweb",
            "appwrite",
            "growthbook",
            "mattermost",
            "karpenter",
            "freebooks2024",
            "ebook-download",
            "rhythms",
        ] {
            assert_eq!(INSPECTOR.randomness(name), None, "{name}");
        }
    }

    /// Readability is judged by letter pairs, digits mixed into letters, consonant runs and
    /// entropy together; on uniformly random strings it finds most, and on pairs of English words
    /// almost none.
    #[test]
    fn randomness_separates_random_strings_from_words() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut found = 0;
        for _ in 0..300 {
            let len = 10 + next() % 7;
            let s: String = (0..len)
                .map(|_| char::from(alphabet[(next() % 36) as usize]))
                .collect();
            found += usize::from(INSPECTOR.randomness(&s).is_some());
        }
        assert!(found >= 270, "{found}/300 random strings found");
        let words: Vec<&str> = WORDS.split_whitespace().filter(|w| w.len() >= 3).collect();
        let mut flagged = Vec::new();
        for _ in 0..1000 {
            let a = words[(next() % words.len() as u64) as usize];
            let b = words[(next() % words.len() as u64) as usize];
            let name = format!("{a}{b}");
            if INSPECTOR.randomness(&name).is_some() {
                flagged.push(name);
            }
        }
        assert!(flagged.len() <= 5, "{flagged:?}");
    }

    #[test]
    fn findings_carry_the_rules_weight_and_the_name_place() {
        let f = hub("libary/nginx");
        assert_eq!(f[0].place, Place::Name);
        assert_eq!(f[0].score, 100.0 * Place::Name.multiplier());
        assert_eq!(f[0].evidence.matched, "library");
        assert!(f[0]
            .message
            .starts_with("docker.io/libary/nginx: namespace `libary` looks like"));
        // Every Docker Hub alias is shown as docker.io.
        let f = check("registry-1.docker.io", "library/ngnix");
        assert!(
            f[0].message.starts_with("docker.io/library/ngnix: "),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn a_detector_without_a_rule_does_not_run() {
        let pack = RuleSet::builtin().unwrap();
        let only_typos: Vec<Rule> = pack
            .rules
            .iter()
            .filter(|r| r.id == "name.typosquat")
            .cloned()
            .collect();
        let i = NameInspector::new(
            &PopularNames::builtin().unwrap(),
            &RuleSet::from_rules(only_typos).unwrap(),
        );
        let find = |n: &str| i.inspect("docker.io", &n.parse().unwrap());
        assert!(find("libary/nginx").is_empty());
        assert!(find("c43602f9cc95/openjdk").is_empty());
        assert!(find("x7kq9zvw2p/jx8qz0k3").is_empty());
        assert!(find("someuser/nginx-official").is_empty());
        assert_eq!(rules(&find("someuser/ngnix")), ["name.typosquat"]);
    }

    #[test]
    fn inspection_is_fast() {
        fn shareable<T: Send + Sync>(_: &T) {}
        shareable(&*INSPECTOR);
        let names: Vec<RepoName> = [
            "someuser/alpine2",
            "libary/nginx",
            "x7kq9zvw2p/jx8qz0k3",
            "acme/billing-api",
        ]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
        let start = std::time::Instant::now();
        for _ in 0..250 {
            for n in &names {
                std::hint::black_box(INSPECTOR.inspect("docker.io", n));
            }
        }
        // Microseconds in release; this generous bound (unoptimised, on a shared machine) only
        // guards against an accidental scan of every name against every variant.
        let each = start.elapsed() / 1000;
        assert!(
            each < std::time::Duration::from_millis(2),
            "{each:?} per name"
        );
    }
}
