//! How a block is told: the one-line reason every client shows, led by the strongest finding, and
//! the rule token docker's synthetic media type and containerd's status line carry.

use crate::inspect::{cut, Finding, Verdict};
use crate::stream::Refusal;

/// How every refusal message starts.
const BLOCKED: &str = "blocked by portcullis:";

/// The refusal of `subject` (`docker.io/x/y@sha256:…`, `layer sha256:…`) for `verdict`: its
/// score and its three strongest rules with their evidence.
pub fn refusal(subject: &str, verdict: &Verdict) -> Refusal {
    let mut top: Vec<&Finding> = verdict.findings.iter().collect();
    top.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| (a.rule == super::UNJUDGED_RULE).cmp(&(b.rule == super::UNJUDGED_RULE)))
    });
    let mut seen = std::collections::HashSet::new();
    top.retain(|f| seen.insert(f.rule.as_str()));
    top.truncate(3);
    let reasons: Vec<String> = top.iter().map(|f| describe(f)).collect();
    let rule = top
        .first()
        .map_or_else(|| "policy".to_string(), |f| slug(&f.rule));
    Refusal {
        message: format!(
            "{BLOCKED} {subject} (score {:.0}): {}",
            verdict.score,
            reasons.join("; ")
        ),
        rule,
        detail: serde_json::json!({
            "decision": verdict.decision,
            "score": verdict.score,
            "findings": top,
            "ruleset": verdict.ruleset_hash,
        }),
    }
}

/// The refusal of `subject` by a deny override.
pub fn refusal_by_override(subject: &str, reason: &str, id: u64) -> Refusal {
    Refusal {
        message: format!(
            "{BLOCKED} {subject}: denied by override {id}: {}",
            cut(reason)
        ),
        rule: "override".into(),
        detail: serde_json::json!({ "override": id, "reason": reason }),
    }
}

/// The refusal when the override store cannot be read (failing closed).
pub fn refusal_store_down(subject: &str, error: &str) -> Refusal {
    Refusal {
        message: format!("{BLOCKED} {subject}: the override store cannot be read"),
        rule: "store-error".into(),
        detail: serde_json::json!({ "error": error }),
    }
}

/// "stratum URL … [miner.stratum-url] at Entrypoint: stratum+tcp://pool…".
fn describe(f: &Finding) -> String {
    let at = f
        .evidence
        .path
        .clone()
        .or_else(|| f.evidence.field.clone())
        .unwrap_or_default();
    let matched = if f.evidence.matched.is_empty() {
        String::new()
    } else {
        format!(": {}", cut(&f.evidence.matched))
    };
    if at.is_empty() {
        format!("{} [{}]{matched}", f.message, f.rule)
    } else {
        format!("{} [{}] at {at}{matched}", f.message, f.rule)
    }
}

/// A rule id as a token of `[a-z0-9.-]`.
fn slug(rule: &str) -> String {
    rule.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{Category, Decision, Evidence, Place, Severity};

    #[test]
    fn slugs_are_media_type_safe() {
        assert_eq!(slug("miner.stratum-url"), "miner.stratum-url");
        assert_eq!(slug("Weird rule/id"), "weird-rule-id");
    }

    #[test]
    fn the_message_leads_with_the_evidence_not_with_the_cut() {
        let f = |rule: &str, score| Finding {
            rule: String::from(rule),
            category: Category::Miner,
            severity: Severity::High,
            place: Place::File,
            score,
            message: "m".into(),
            evidence: Evidence::matched("x"),
        };
        let v = Verdict::new(
            Decision::Block,
            200.0,
            vec![
                f(super::super::UNJUDGED_RULE, 100.0),
                f("miner.xmrig", 100.0),
            ],
            "h",
            0,
        );
        let r = refusal("layer sha256:1", &v);
        assert_eq!(r.rule, "miner.xmrig");
        assert!(
            r.message
                .starts_with("blocked by portcullis: layer sha256:1 (score 200): m [miner.xmrig]"),
            "{}",
            r.message
        );
    }
}
