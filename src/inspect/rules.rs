//! The rule pack as data: rules live in TOML files (`config/rules/*.toml` are built in; users add
//! their own through the config). Each verdict records the engine version and the rule-set hash,
//! so a verdict made under other rules is judged again.
//!
//! A rule names a category, severity and weight, and says what it matches: case-insensitive
//! `literals`, `regexes`, file `paths` (globs), or a built-in `detector` it parameterises
//! (wallet validation, typosquats, UPX checks…), and in which `scopes`.

use super::{Category, Severity};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::Regex;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::collections::BTreeSet;
use std::path::Path;

/// The inspection engine's version; part of every verdict.
pub const ENGINE_VERSION: &str = concat!("portcullis-", env!("CARGO_PKG_VERSION"));

/// The built-in rule files, compiled in.
pub const BUILTIN: &[(&str, &str)] = &[
    ("miner.toml", include_str!("../../config/rules/miner.toml")),
    (
        "persistence.toml",
        include_str!("../../config/rules/persistence.toml"),
    ),
    (
        "evasion.toml",
        include_str!("../../config/rules/evasion.toml"),
    ),
    (
        "obfuscation.toml",
        include_str!("../../config/rules/obfuscation.toml"),
    ),
    ("name.toml", include_str!("../../config/rules/name.toml")),
    (
        "reputation.toml",
        include_str!("../../config/rules/reputation.toml"),
    ),
];

/// Where a rule's literals and regexes are looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The content of files in layers.
    Content,
    /// Entrypoint and Cmd of the image config.
    Entrypoint,
    /// Env values (and names).
    Env,
    /// Label keys and values.
    Labels,
    /// `history[].created_by` and `comment`.
    History,
    /// File paths in layers.
    Path,
    /// The repository name.
    Name,
}

/// One rule as written in a rule file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique id, `category.what` (`miner.stratum-url`).
    pub id: String,
    pub category: Category,
    pub severity: Severity,
    /// Score added per finding, before the place multiplier. Non-negative.
    pub weight: f64,
    /// What the rule means, for people.
    pub description: String,
    /// Case-insensitive literal strings (ASCII case folding).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub literals: Vec<String>,
    /// Regular expressions (Rust `regex` syntax, over bytes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regexes: Vec<String>,
    /// Path globs: the rule fires when a layer holds a non-empty regular file at a matching path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Where literals and regexes apply. Default: content.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<Scope>,
    /// A built-in detector this rule gives its id, category, severity and weight to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    /// How many distinct literals/regexes must match in one file or field (2-of rules). Default 1.
    #[serde(default = "one")]
    pub min_distinct: usize,
}

fn default_scopes() -> Vec<Scope> {
    vec![Scope::Content]
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default, rename = "rule")]
    rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule file {file}: {message}")]
    File { file: String, message: String },
    #[error("rule {id}: {message}")]
    Rule { id: String, message: String },
}

/// A literal or regex hit: which rule, which of its patterns, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub rule: usize,
    /// Index among the rule's literals, then its regexes (literals first).
    pub pattern: usize,
    pub start: usize,
    pub end: usize,
}

/// The literals and regexes of every rule that applies in one scope, compiled once.
pub struct Matcher {
    automaton: Option<AhoCorasick>,
    /// For each automaton pattern: (rule index, pattern index within the rule).
    literal_owner: Vec<(usize, usize)>,
    regexes: Vec<(usize, usize, Regex)>,
    /// The longest literal, in bytes: how much overlap a streaming caller must keep.
    pub max_literal_len: usize,
}

impl Matcher {
    fn build(rules: &[Rule], scope: Scope) -> Result<Matcher, RuleError> {
        let mut literals = Vec::new();
        let mut literal_owner = Vec::new();
        let mut regexes = Vec::new();
        for (ri, rule) in rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.scopes.contains(&scope))
        {
            for (pi, lit) in rule.literals.iter().enumerate() {
                literals.push(lit.as_bytes().to_vec());
                literal_owner.push((ri, pi));
            }
            for (xi, re) in rule.regexes.iter().enumerate() {
                let compiled = Regex::new(re).map_err(|e| RuleError::Rule {
                    id: rule.id.clone(),
                    message: format!("regex {re:?}: {e}"),
                })?;
                regexes.push((ri, rule.literals.len() + xi, compiled));
            }
        }
        let max_literal_len = literals.iter().map(Vec::len).max().unwrap_or(0);
        let automaton = if literals.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&literals)
                    .map_err(|e| RuleError::Rule {
                        id: "(automaton)".into(),
                        message: e.to_string(),
                    })?,
            )
        };
        Ok(Matcher {
            automaton,
            literal_owner,
            regexes,
            max_literal_len,
        })
    }

    /// Every literal hit (overlapping) and regex hit in `text`.
    pub fn hits(&self, text: &[u8]) -> Vec<Hit> {
        let mut out = Vec::new();
        self.literal_hits(text, |h| out.push(h));
        for (rule, pattern, re) in &self.regexes {
            for m in re.find_iter(text) {
                out.push(Hit {
                    rule: *rule,
                    pattern: *pattern,
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
        out
    }

    /// Literal hits only, streamed to `f` (for the layer hot path).
    pub fn literal_hits(&self, text: &[u8], mut f: impl FnMut(Hit)) {
        if let Some(ac) = &self.automaton {
            for m in ac.find_overlapping_iter(text) {
                let (rule, pattern) = self.literal_owner[m.pattern().as_usize()];
                f(Hit {
                    rule,
                    pattern,
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
    }

    /// Whether this matcher has regexes (which cannot run on a stream chunk by chunk).
    pub fn has_regexes(&self) -> bool {
        !self.regexes.is_empty()
    }

    /// Regex hits only.
    pub fn regex_hits(&self, text: &[u8]) -> Vec<Hit> {
        let mut out = Vec::new();
        for (rule, pattern, re) in &self.regexes {
            for m in re.find_iter(text) {
                out.push(Hit {
                    rule: *rule,
                    pattern: *pattern,
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
        out
    }
}

/// A loaded, validated rule set with its matchers compiled per scope.
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// sha256 over the engine version and the canonical form of every rule, sorted by id.
    pub hash: String,
    matchers: Vec<(Scope, Matcher)>,
    paths: globset::GlobSet,
    /// For each glob in `paths`: the rule it belongs to.
    path_owner: Vec<usize>,
}

impl RuleSet {
    /// The built-in rules only.
    pub fn builtin() -> Result<RuleSet, RuleError> {
        RuleSet::load(&[])
    }

    /// The built-in rules plus the given files (a rule in a user file may not reuse a built-in id).
    pub fn load(extra: &[&Path]) -> Result<RuleSet, RuleError> {
        let mut rules = Vec::new();
        for (name, text) in BUILTIN {
            rules.extend(parse_file(name, text)?);
        }
        for path in extra {
            let text = std::fs::read_to_string(path).map_err(|e| RuleError::File {
                file: path.display().to_string(),
                message: e.to_string(),
            })?;
            rules.extend(parse_file(&path.display().to_string(), &text)?);
        }
        RuleSet::from_rules(rules)
    }

    pub fn from_rules(rules: Vec<Rule>) -> Result<RuleSet, RuleError> {
        let mut ids = BTreeSet::new();
        for r in &rules {
            let bad = |message: &str| RuleError::Rule {
                id: r.id.clone(),
                message: message.into(),
            };
            if !ids.insert(r.id.clone()) {
                return Err(bad("id used twice"));
            }
            if !(r.weight.is_finite() && r.weight >= 0.0) {
                return Err(bad("weight must be a non-negative number"));
            }
            if r.literals.is_empty()
                && r.regexes.is_empty()
                && r.paths.is_empty()
                && r.detector.is_none()
            {
                return Err(bad("needs literals, regexes, paths or a detector"));
            }
            if r.literals.iter().any(String::is_empty) {
                return Err(bad("empty literal"));
            }
            let patterns = r.literals.len()
                + r.regexes.len()
                + r.paths.len()
                + usize::from(r.detector.is_some());
            if r.min_distinct == 0 || r.min_distinct > patterns {
                return Err(bad(
                    "min_distinct must be between 1 and the number of patterns",
                ));
            }
        }
        let mut matchers = Vec::new();
        for scope in [
            Scope::Content,
            Scope::Entrypoint,
            Scope::Env,
            Scope::Labels,
            Scope::History,
            Scope::Path,
            Scope::Name,
        ] {
            matchers.push((scope, Matcher::build(&rules, scope)?));
        }
        let mut globs = globset::GlobSetBuilder::new();
        let mut path_owner = Vec::new();
        for (ri, r) in rules.iter().enumerate() {
            for p in &r.paths {
                let glob = globset::GlobBuilder::new(p.trim_start_matches('/'))
                    .literal_separator(true)
                    .build()
                    .map_err(|e| RuleError::Rule {
                        id: r.id.clone(),
                        message: format!("path {p:?}: {e}"),
                    })?;
                globs.add(glob);
                path_owner.push(ri);
            }
        }
        let paths = globs.build().map_err(|e| RuleError::Rule {
            id: "(paths)".into(),
            message: e.to_string(),
        })?;
        let hash = rule_hash(&rules);
        Ok(RuleSet {
            rules,
            hash,
            matchers,
            paths,
            path_owner,
        })
    }

    pub fn matcher(&self, scope: Scope) -> &Matcher {
        &self
            .matchers
            .iter()
            .find(|(s, _)| *s == scope)
            .expect("a matcher is built for every scope")
            .1
    }

    /// Rules whose `paths` match a layer path (leading `/` and `./` ignored).
    pub fn path_rules(&self, path: &str) -> Vec<usize> {
        let p = path.trim_start_matches("./").trim_start_matches('/');
        let mut owners: Vec<usize> = self
            .paths
            .matches(p)
            .into_iter()
            .map(|i| self.path_owner[i])
            .collect();
        owners.dedup();
        owners
    }

    /// The rule that parameterises a built-in detector, if the pack has one.
    pub fn detector(&self, name: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.detector.as_deref() == Some(name))
    }

    pub fn by_id(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

fn parse_file(name: &str, text: &str) -> Result<Vec<Rule>, RuleError> {
    toml::from_str::<RuleFile>(text)
        .map(|f| f.rules)
        .map_err(|e| RuleError::File {
            file: name.to_string(),
            message: e.to_string(),
        })
}

fn rule_hash(rules: &[Rule]) -> String {
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut h = sha2::Sha256::new();
    h.update(ENGINE_VERSION.as_bytes());
    // How documents are read is part of the rules: a verdict made from a config read another way
    // is judged again.
    h.update(crate::oci::document::READER_VERSION.as_bytes());
    for r in sorted {
        h.update(serde_json::to_vec(r).unwrap_or_default());
        h.update(b"\n");
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pack_loads_with_a_stable_hash() {
        let a = RuleSet::builtin().unwrap();
        let b = RuleSet::builtin().unwrap();
        assert!(!a.rules.is_empty());
        assert_eq!(a.hash, b.hash);
        assert!(a.hash.starts_with("sha256:"));
    }

    fn rule(id: &str) -> Rule {
        Rule {
            id: id.into(),
            category: Category::Miner,
            severity: Severity::High,
            weight: 10.0,
            description: "test".into(),
            literals: vec!["Stratum+TCP://".into()],
            regexes: vec![],
            paths: vec![],
            scopes: vec![Scope::Content],
            detector: None,
            min_distinct: 1,
        }
    }

    #[test]
    fn hash_changes_with_any_rule() {
        let a = RuleSet::from_rules(vec![rule("a")]).unwrap();
        let mut r = rule("a");
        r.weight = 11.0;
        let b = RuleSet::from_rules(vec![r]).unwrap();
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn literals_match_case_insensitively_with_their_owner() {
        let mut r2 = rule("b");
        r2.literals = vec!["xmrig".into(), "donate-level".into()];
        let set = RuleSet::from_rules(vec![rule("a"), r2]).unwrap();
        let hits = set
            .matcher(Scope::Content)
            .hits(b"run XMRig -o stratum+tcp://pool --donate-level=0");
        let rules: BTreeSet<usize> = hits.iter().map(|h| h.rule).collect();
        assert_eq!(rules, BTreeSet::from([0, 1]));
        assert!(set.matcher(Scope::Env).hits(b"xmrig").is_empty());
    }

    #[test]
    fn bad_rules_are_refused_with_their_id() {
        let mut r = rule("x");
        r.regexes = vec!["(".into()];
        let err = RuleSet::from_rules(vec![r]).err().unwrap().to_string();
        assert!(err.contains("rule x"), "{err}");
        assert!(RuleSet::from_rules(vec![rule("d"), rule("d")]).is_err());
        let mut r = rule("w");
        r.weight = -1.0;
        assert!(RuleSet::from_rules(vec![r]).is_err());
        let mut r = rule("m");
        r.min_distinct = 2;
        assert!(RuleSet::from_rules(vec![r]).is_err());
        assert!(toml::from_str::<RuleFile>("[[rule]]\nid='a'\nbogus=1\n").is_err());
    }

    #[test]
    fn path_globs_match_layer_paths() {
        let mut r = rule("p");
        r.literals.clear();
        r.paths = vec!["etc/ld.so.preload".into(), "etc/cron.d/*".into()];
        let set = RuleSet::from_rules(vec![r]).unwrap();
        assert_eq!(set.path_rules("./etc/ld.so.preload"), vec![0]);
        assert_eq!(set.path_rules("/etc/cron.d/evil"), vec![0]);
        assert!(set.path_rules("etc/cron.d/sub/dir").is_empty());
        assert!(set.path_rules("usr/etc/ld.so.preload").is_empty());
    }

    #[test]
    fn shared_objects_under_etc_are_not_the_linker_config() {
        let set = RuleSet::load(&[]).unwrap();
        let fires = |path: &str| {
            set.path_rules(path)
                .iter()
                .any(|&i| set.rules[i].id == "persistence.so-under-etc")
        };
        assert!(fires("etc/libsystem.so"));
        assert!(fires("etc/x/libhide.so.1.2"));
        for stock in ["etc/ld.so.conf", "etc/ld.so.cache", "etc/ld.so.preload"] {
            assert!(!fires(stock), "{stock}");
        }
    }
}
