//! Inspection: judging image names, configs and layers. Inspectors are pure and synchronous: they
//! take names, JSON or byte chunks and return [`Finding`]s; scoring turns findings into a verdict.
//! The one piece of I/O, Docker Hub metadata, is kept apart in [`reputation`].

pub mod config;
pub mod layer;
pub mod name;
pub mod reputation;
pub mod rules;
pub mod verdict;
pub mod wallet;

pub use verdict::Verdict;

use serde::{Deserialize, Serialize};

/// What kind of harm a finding points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Miner,
    Persistence,
    Evasion,
    Obfuscation,
    Name,
    Reputation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// Where the evidence sits, which decides how much it counts: what runs counts most, documentation
/// and rule files least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// The image's Entrypoint/Cmd, or a file they (or cron/systemd/rc.local/profile) run.
    Runs,
    /// An executable file or a script.
    Executable,
    /// Config fields other than Entrypoint/Cmd: Env, Labels, history.
    Config,
    /// A plain file.
    File,
    /// Documentation, rule files (`*.yar`, Sigma, Falco), tests, signature databases.
    Docs,
    /// The repository name itself.
    Name,
    /// Registry metadata (pull counts, age).
    Metadata,
}

impl Place {
    /// The multiplier applied to a rule's weight for evidence found here.
    pub fn multiplier(self) -> f64 {
        match self {
            Place::Runs => 2.0,
            Place::Executable => 1.0,
            Place::Config => 1.0,
            Place::File => 0.6,
            Place::Docs => 0.1,
            Place::Name => 1.0,
            Place::Metadata => 1.0,
        }
    }
}

/// The longest matched text kept in evidence.
pub const MAX_MATCH_CHARS: usize = 96;

/// Where exactly a finding was made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The layer blob, for findings in layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// The file path in the layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The byte offset in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The config field (`Entrypoint`, `Env[2]`, `history[4].created_by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The matched text, cut to [`MAX_MATCH_CHARS`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub matched: String,
}

impl Evidence {
    /// Evidence with `matched` cut short (on a char boundary) and made printable.
    pub fn matched(text: &str) -> Evidence {
        Evidence {
            matched: cut(text),
            ..Evidence::default()
        }
    }
}

/// `text` cut to [`MAX_MATCH_CHARS`] characters with control characters replaced, for logs and
/// error messages.
pub fn cut(text: &str) -> String {
    let mut s: String = text
        .chars()
        .take(MAX_MATCH_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX_MATCH_CHARS {
        s.push('…');
    }
    s
}

/// One thing an inspector found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule's id, e.g. `miner.stratum-url`.
    pub rule: String,
    pub category: Category,
    pub severity: Severity,
    pub place: Place,
    /// The rule's weight times the place's multiplier: what this adds to the score.
    pub score: f64,
    /// One human sentence ("stratum URL in the entrypoint").
    pub message: String,
    pub evidence: Evidence,
}

/// The most that evidence in documentation, rule files and tests adds up to: such files mention
/// miners by design (YARA/Sigma/Falco rules, READMEs), so many of them must not make a warning.
pub const DOCS_SCORE_CAP: f64 = 10.0;

/// The score of a set of findings: each rule counts once, at its strongest finding (a string
/// repeated in many files does not add up), and documentation counts at most [`DOCS_SCORE_CAP`].
pub fn total_score(findings: &[Finding]) -> f64 {
    let mut best: std::collections::BTreeMap<(&str, bool), f64> = std::collections::BTreeMap::new();
    for f in findings {
        let e = best
            .entry((f.rule.as_str(), f.place == Place::Docs))
            .or_insert(0.0);
        *e = e.max(f.score);
    }
    let (mut docs, mut other) = (0.0, 0.0);
    for ((rule, in_docs), s) in &best {
        // A rule also found outside docs already counts there.
        if *in_docs {
            if !best.contains_key(&(*rule, false)) {
                docs += s;
            }
        } else {
            other += s;
        }
    }
    other + f64::min(docs, DOCS_SCORE_CAP)
}

/// The outcome for an image, a blob or a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Warn,
    Block,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_is_cut_short_and_printable() {
        let long = "a\u{7}".repeat(100);
        let e = Evidence::matched(&long);
        assert_eq!(e.matched.chars().count(), MAX_MATCH_CHARS + 1);
        assert!(e.matched.ends_with('…'));
        assert!(!e.matched.contains('\u{7}'));
        assert_eq!(cut("short"), "short");
    }

    fn finding(rule: &str, place: Place, score: f64) -> Finding {
        Finding {
            rule: rule.into(),
            category: Category::Miner,
            severity: Severity::High,
            place,
            score,
            message: String::new(),
            evidence: Evidence::default(),
        }
    }

    #[test]
    fn each_rule_counts_once_and_docs_are_capped() {
        let f = [
            finding("a", Place::File, 24.0),
            finding("a", Place::Executable, 40.0),
            finding("b", Place::Runs, 10.0),
        ];
        assert_eq!(total_score(&f), 50.0);
        let docs: Vec<Finding> = (0..30)
            .map(|i| finding(&format!("r{i}"), Place::Docs, 4.0))
            .collect();
        assert_eq!(total_score(&docs), DOCS_SCORE_CAP);
        // A rule found in docs and in a binary counts once, at the binary.
        let both = [
            finding("x", Place::Docs, 4.0),
            finding("x", Place::Executable, 40.0),
        ];
        assert_eq!(total_score(&both), 40.0);
    }

    #[test]
    fn what_runs_counts_more_than_docs() {
        assert!(Place::Runs.multiplier() > Place::Executable.multiplier());
        assert!(Place::Executable.multiplier() > Place::File.multiplier());
        assert!(Place::File.multiplier() > Place::Docs.multiplier());
    }
}
