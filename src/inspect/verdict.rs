//! The outcome of judging a blob, a manifest or a name, stamped with the engine and rule set that
//! made it so a verdict made under other rules is judged again rather than trusted.

use super::rules::ENGINE_VERSION;
use super::{Decision, Finding};
use serde::{Deserialize, Serialize};

/// What inspection decided about one subject, and under which rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub decision: Decision,
    /// The sum of the findings' scores (after place multipliers).
    pub score: f64,
    pub findings: Vec<Finding>,
    /// [`ENGINE_VERSION`] of the engine that judged.
    pub engine_version: String,
    /// `RuleSet::hash` of the rules it judged with.
    pub ruleset_hash: String,
    /// When it was judged, in seconds since the Unix epoch.
    pub judged_at_unix: u64,
}

impl Verdict {
    /// A verdict made now by this engine under the rule set with `ruleset_hash`.
    pub fn new(
        decision: Decision,
        score: f64,
        findings: Vec<Finding>,
        ruleset_hash: &str,
        judged_at_unix: u64,
    ) -> Verdict {
        Verdict {
            decision,
            score,
            findings,
            engine_version: ENGINE_VERSION.to_string(),
            ruleset_hash: ruleset_hash.to_string(),
            judged_at_unix,
        }
    }

    /// Whether this verdict was made by this engine version under the rule set with `ruleset_hash`;
    /// if not, it must be judged again, not trusted.
    pub fn is_current(&self, ruleset_hash: &str) -> bool {
        self.engine_version == ENGINE_VERSION && self.ruleset_hash == ruleset_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_needs_the_same_engine_and_rules() {
        let v = Verdict::new(Decision::Allow, 0.0, vec![], "h1", 7);
        assert!(v.is_current("h1"));
        assert!(!v.is_current("h2"));
        let older = Verdict {
            engine_version: "portcullis-0.0.0".into(),
            ..v.clone()
        };
        assert!(!older.is_current("h1"));
    }
}
