//! Policy: whether a decision is enforced or only audited for a repository (scopes), the
//! thresholds the judge applies, the guard that applies them on the request path, and the audit
//! trail.

pub mod audit;
pub mod guard;
#[cfg(test)]
mod reputation_tests;

pub use crate::config::{ClientConfig, FailMode, Mode, PolicyConfig, ScopeRule};

/// The policy, compiled.
pub struct Policy {
    pub config: PolicyConfig,
    /// The thresholds, as the judge applies them.
    pub judge: crate::judge::Judge,
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
        Ok(Policy {
            judge: crate::judge::Judge::new(&config),
            config,
            scopes,
        })
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
