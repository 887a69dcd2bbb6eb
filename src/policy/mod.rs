//! Policy: turns findings into a decision (weights summed against thresholds), says whether a
//! decision is enforced or only audited for a repository, and how a block is shown to clients.

pub mod audit;
pub mod guard;

use crate::inspect::{Category, Decision, Finding};
use serde::Deserialize;

/// `[policy]` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Score at or above which an image is reported as suspicious (allowed, logged). Default 20.
    pub warn_score: f64,
    /// Score at or above which an image is refused. Default 100.
    pub block_score: f64,
    /// `enforce` (refuse what is blocked) or `audit` (log the decision, serve anyway). Default enforce.
    pub mode: Mode,
    /// When a layer cannot be judged (corrupt, over the limits, upstream cut it): `closed` refuses
    /// it, `open` lets it through with a warning. Default closed.
    pub fail: FailMode,
    /// Judge every layer before answering the manifest (first pull waits; blocks never reach the
    /// client at all), instead of judging layers as they stream. Default false.
    pub strict: bool,
    /// Per-upstream or per-namespace modes: the first matching pattern wins. Default none.
    pub scopes: Vec<ScopeRule>,
    /// How a block is shown to each kind of client.
    pub clients: ClientConfig,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            warn_score: 20.0,
            block_score: 100.0,
            mode: Mode::Enforce,
            fail: FailMode::Closed,
            strict: false,
            scopes: Vec::new(),
            clients: ClientConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Closed,
    Open,
}

/// A mode for the repositories matching `pattern`, a glob over `<registry host>/<repository>`
/// (`docker.io/library/*`, `ghcr.io/myorg/**`, `quay.io/**`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeRule {
    pub pattern: String,
    pub mode: Mode,
}

/// `[policy.clients]`: the client-specific ways of getting a block's reason across.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Answer a docker (`User-Agent: docker/…`) *tag* pull of a blocked image with a small
    /// synthetic manifest whose config media type names the reason: classic dockerd then stops
    /// without falling back to Docker Hub and prints it. Default true.
    pub docker_synthetic_manifest: bool,
    /// Answer HEAD on a blocked manifest with 405, so containerd retries with GET and shows the
    /// JSON reason (a HEAD answer has no body). Default true.
    pub head_405_when_blocked: bool,
    /// Put the reason in the HTTP/1.1 status line (`403 Blocked by portcullis: …`), which is
    /// what containerd prints. Default true.
    pub reason_phrase: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            docker_synthetic_manifest: true,
            head_405_when_blocked: true,
            reason_phrase: true,
        }
    }
}

/// The policy, compiled.
pub struct Policy {
    pub config: PolicyConfig,
    scopes: Vec<(globset::GlobMatcher, Mode)>,
}

#[derive(Debug, thiserror::Error)]
#[error("policy.scopes: pattern {pattern:?}: {message}")]
pub struct PolicyError {
    pub pattern: String,
    pub message: String,
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Result<Policy, PolicyError> {
        let scopes = config
            .scopes
            .iter()
            .map(|s| {
                globset::GlobBuilder::new(&s.pattern)
                    .literal_separator(true)
                    .build()
                    .map(|g| (g.compile_matcher(), s.mode))
                    .map_err(|e| PolicyError {
                        pattern: s.pattern.clone(),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy { config, scopes })
    }

    /// The decision and score for a set of findings ([`crate::inspect::total_score`]). Reputation
    /// findings raise scrutiny but never block alone: they count at most as much as the rest.
    pub fn decide(&self, findings: &[Finding]) -> (Decision, f64) {
        let (reputation, other): (Vec<&Finding>, Vec<&Finding>) = findings
            .iter()
            .partition(|f| f.category == Category::Reputation);
        let other: Vec<Finding> = other.into_iter().cloned().collect();
        let reputation: Vec<Finding> = reputation.into_iter().cloned().collect();
        let other_score = crate::inspect::total_score(&other);
        let reputation_score = crate::inspect::total_score(&reputation);
        let score = other_score + reputation_score.min(other_score);
        let decision = if score >= self.config.block_score {
            Decision::Block
        } else if score >= self.config.warn_score {
            Decision::Warn
        } else {
            Decision::Allow
        };
        (decision, score)
    }

    /// The finding for a layer or config that could not be inspected to the end: it weighs a
    /// block when failing closed, a warning when failing open.
    pub fn unjudged(&self, why: &str) -> Finding {
        let score = match self.config.fail {
            FailMode::Closed => self.config.block_score,
            FailMode::Open => self.config.warn_score,
        };
        Finding {
            rule: guard::UNJUDGED_RULE.into(),
            category: Category::Evasion,
            severity: crate::inspect::Severity::High,
            place: crate::inspect::Place::File,
            score,
            message: "could not be inspected to the end".into(),
            evidence: crate::inspect::Evidence::matched(why),
        }
    }

    /// Whether decisions for `<host>/<repo>` are enforced or only audited.
    pub fn mode_for(&self, host: &str, repo: &str) -> Mode {
        let key = format!("{host}/{repo}");
        self.scopes
            .iter()
            .find(|(g, _)| g.is_match(&key))
            .map_or(self.config.mode, |(_, m)| *m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{Evidence, Place, Severity};

    fn finding(category: Category, score: f64) -> Finding {
        Finding {
            rule: format!("{category:?}"),
            category,
            severity: Severity::High,
            place: Place::File,
            score,
            message: "m".into(),
            evidence: Evidence::default(),
        }
    }

    fn policy(scopes: &[(&str, Mode)]) -> Policy {
        let c = PolicyConfig {
            scopes: scopes
                .iter()
                .map(|(p, m)| ScopeRule {
                    pattern: p.to_string(),
                    mode: *m,
                })
                .collect(),
            ..PolicyConfig::default()
        };
        Policy::new(c).unwrap()
    }

    #[test]
    fn scores_sum_against_thresholds() {
        let p = policy(&[]);
        assert_eq!(p.decide(&[]).0, Decision::Allow);
        assert_eq!(
            p.decide(&[finding(Category::Miner, 25.0)]).0,
            Decision::Warn
        );
        let (d, s) = p.decide(&[
            finding(Category::Miner, 60.0),
            finding(Category::Evasion, 40.0),
        ]);
        assert_eq!((d, s), (Decision::Block, 100.0));
    }

    #[test]
    fn reputation_never_blocks_alone() {
        let p = policy(&[]);
        assert_eq!(
            p.decide(&[finding(Category::Reputation, 500.0)]),
            (Decision::Allow, 0.0)
        );
        // It can double other evidence at most.
        let (d, s) = p.decide(&[
            finding(Category::Name, 50.0),
            finding(Category::Reputation, 80.0),
        ]);
        assert_eq!((d, s), (Decision::Block, 100.0));
    }

    #[test]
    fn first_matching_scope_sets_the_mode() {
        let p = policy(&[
            ("docker.io/myorg/*", Mode::Audit),
            ("ghcr.io/**", Mode::Audit),
            ("docker.io/**", Mode::Enforce),
        ]);
        assert_eq!(p.mode_for("docker.io", "myorg/app"), Mode::Audit);
        assert_eq!(p.mode_for("docker.io", "myorg/a/b"), Mode::Enforce);
        assert_eq!(p.mode_for("ghcr.io", "o/deep/name"), Mode::Audit);
        assert_eq!(p.mode_for("quay.io", "x/y"), Mode::Enforce);
        let bad = PolicyConfig {
            scopes: vec![ScopeRule {
                pattern: "[".into(),
                mode: Mode::Audit,
            }],
            ..PolicyConfig::default()
        };
        assert!(Policy::new(bad).is_err());
    }
}
