//! The judge: one pure function from the findings of a name, an image config and an image's layers
//! to a decision, a score and the findings ranked. The proxy's guard and `portcullis scan` both call
//! it, so a pull and a scan of the same image under the same name decide alike.
//!
//! How the evidence combines (decided once, here):
//! - An image is judged as a whole: the repository name's findings (Docker Hub reputation
//!   included, when the proxy looked it up), the config's findings and every layer's findings are
//!   priced together by [`Judge::decide`]. Evidence spread over the name, the config and several
//!   layers adds up.
//! - Findings in a file the config starts ([`Runs`]: its program, and the script a shell or an
//!   interpreter is handed) count as [`Place::Runs`], whichever layer holds the file.
//! - Each rule counts once, at its strongest finding; documentation and rule files count at most
//!   [`crate::inspect::DOCS_SCORE_CAP`] in all; reputation counts at most as much as the rest, so it
//!   never decides alone ([`Judge::decide`]).
//! - A layer or config that could not be inspected to the end adds `inspect.incomplete`, weighted
//!   to block under `fail = "closed"` and to warn under `"open"`. A blob that is not a layer at all
//!   (a signature, a chart) adds nothing.
//! - The name is also judged on its own, before anything is fetched: a name whose own findings
//!   block is refused at once. Since scores only ever add up, a name that blocks alone blocks every
//!   image under it, and a layer that blocks alone blocks every image that holds it.

mod refusal;
mod runs;

pub use refusal::{refusal, refusal_by_override, refusal_store_down};
pub use runs::Runs;

use crate::config::{FailMode, PolicyConfig};
use crate::inspect::layer::{LayerFormat, LayerReport, NotALayer};
use crate::inspect::{total_score, Category, Decision, Evidence, Finding, Place, Severity};

/// The rule id of the finding added when a layer or config cannot be judged to the end.
pub const UNJUDGED_RULE: &str = "inspect.incomplete";

/// The thresholds and the failure weighting of `[policy]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judge {
    pub warn_score: f64,
    pub block_score: f64,
    pub fail: FailMode,
}

/// What the judge decided about one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub decision: Decision,
    pub score: f64,
    /// Every finding that counted, strongest first.
    pub findings: Vec<Finding>,
}

/// The evidence about one image, as the judge takes it.
#[derive(Debug, Clone, Copy)]
pub struct ImageEvidence<'a> {
    /// The repository name's findings (reputation included).
    pub name: &'a [Finding],
    /// The image config's findings ([`Judge::config_findings`]); empty for an artifact.
    pub config: &'a [Finding],
    /// What the config starts.
    pub runs: &'a Runs,
    /// Each layer's own findings ([`Judge::layer_findings`]), as judged alone.
    pub layers: &'a [&'a [Finding]],
}

impl Judge {
    pub fn new(policy: &PolicyConfig) -> Judge {
        Judge {
            warn_score: policy.warn_score,
            block_score: policy.block_score,
            fail: policy.fail,
        }
    }

    /// The decision and score for a set of findings: scores summed (each rule once, at its
    /// strongest), reputation counted at most as much as the rest.
    pub fn decide(&self, findings: &[Finding]) -> (Decision, f64) {
        let (reputation, other): (Vec<Finding>, Vec<Finding>) = findings
            .iter()
            .cloned()
            .partition(|f| f.category == Category::Reputation);
        let other_score = total_score(&other);
        let score = other_score + total_score(&reputation).min(other_score);
        let decision = if score >= self.block_score {
            Decision::Block
        } else if score >= self.warn_score {
            Decision::Warn
        } else {
            Decision::Allow
        };
        (decision, score)
    }

    /// Judges a set of findings as they are (a name, a layer alone).
    pub fn findings(&self, mut findings: Vec<Finding>) -> Judgement {
        let (decision, score) = self.decide(&findings);
        rank(&mut findings);
        Judgement {
            decision,
            score,
            findings,
        }
    }

    /// Judges an image: every piece of its evidence together, findings in what it starts raised
    /// to [`Place::Runs`].
    pub fn image(&self, image: ImageEvidence<'_>) -> Judgement {
        let mut findings: Vec<Finding> = image.name.to_vec();
        findings.extend(image.config.iter().cloned());
        for layer in image.layers {
            findings.extend(layer.iter().map(|f| runs_here(f, image.runs)));
        }
        self.findings(findings)
    }

    /// A layer's findings as the judge counts them: its report's findings, plus
    /// `inspect.incomplete` when it could not be read to the end; `None` for a blob that is not a
    /// layer (nothing to judge).
    ///
    /// `rootfs`: the image lists the blob as a file-system layer. Then bytes that are no tar stream
    /// (nor a compressed one) are a layer that cannot be judged: `inspect.incomplete`, which
    /// blocks under `fail = "closed"`. Elsewhere (a signature's JSON) they are simply not a layer.
    pub fn layer_findings(
        &self,
        report: LayerReport,
        digest: &str,
        rootfs: bool,
    ) -> Option<Vec<Finding>> {
        if report.format == LayerFormat::NotALayer {
            if rootfs && report.not_a_layer == Some(NotALayer::NotTar) {
                let mut f = self.unjudged("a file-system layer whose bytes are no tar stream");
                f.evidence.layer = Some(digest.to_string());
                return Some(vec![f]);
            }
            return None;
        }
        let mut findings = report.findings;
        if !report.errors.is_empty() {
            let mut f = self.unjudged(&report.errors.join("; "));
            f.evidence.layer = Some(digest.to_string());
            findings.push(f);
        }
        Some(findings)
    }

    /// An image config's findings, or `inspect.incomplete` when it cannot be judged.
    pub fn config_findings(
        &self,
        inspector: &crate::inspect::config::ConfigInspector<'_>,
        config: &[u8],
    ) -> Vec<Finding> {
        match inspector.inspect(config) {
            Ok(f) => f,
            Err(e) => vec![self.unjudged(&format!("image config: {e}"))],
        }
    }

    /// The finding for a layer or config that could not be inspected to the end: it weighs a
    /// block when failing closed, a warning when failing open.
    pub fn unjudged(&self, why: &str) -> Finding {
        let score = match self.fail {
            FailMode::Closed => self.block_score,
            FailMode::Open => self.warn_score,
        };
        Finding {
            rule: UNJUDGED_RULE.into(),
            category: Category::Evasion,
            severity: Severity::High,
            place: Place::File,
            score,
            message: "could not be inspected to the end".into(),
            evidence: Evidence::matched(why),
        }
    }
}

/// `f`, raised to [`Place::Runs`] when it sits in a file the image starts.
fn runs_here(f: &Finding, runs: &Runs) -> Finding {
    let mut f = f.clone();
    if f.place != Place::Runs && f.evidence.path.as_deref().is_some_and(|p| runs.contains(p)) {
        f.score = f.score / f.place.multiplier() * Place::Runs.multiplier();
        f.place = Place::Runs;
    }
    f
}

/// Strongest first; the consequence of a cut (`inspect.incomplete`) after the evidence that caused
/// it at equal scores; then by rule and place, so the order never depends on arrival.
fn rank(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| (a.rule == UNJUDGED_RULE).cmp(&(b.rule == UNJUDGED_RULE)))
            .then_with(|| a.rule.cmp(&b.rule))
            .then_with(|| a.evidence.path.cmp(&b.evidence.path))
            .then_with(|| a.evidence.field.cmp(&b.evidence.field))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rule: &str, category: Category, place: Place, score: f64) -> Finding {
        Finding {
            rule: rule.into(),
            category,
            severity: Severity::High,
            place,
            score,
            message: "m".into(),
            evidence: Evidence::default(),
        }
    }

    fn judge() -> Judge {
        Judge::new(&PolicyConfig::default())
    }

    #[test]
    fn scores_sum_against_thresholds() {
        let j = judge();
        assert_eq!(j.decide(&[]).0, Decision::Allow);
        let warn = finding("a", Category::Miner, Place::File, 25.0);
        assert_eq!(j.decide(&[warn]).0, Decision::Warn);
        let (d, s) = j.decide(&[
            finding("a", Category::Miner, Place::File, 60.0),
            finding("b", Category::Evasion, Place::File, 40.0),
        ]);
        assert_eq!((d, s), (Decision::Block, 100.0));
    }

    #[test]
    fn reputation_never_blocks_alone() {
        let j = judge();
        let rep = finding("r", Category::Reputation, Place::Metadata, 500.0);
        assert_eq!(j.decide(std::slice::from_ref(&rep)), (Decision::Allow, 0.0));
        let (d, s) = j.decide(&[
            finding("n", Category::Name, Place::Name, 50.0),
            finding("r", Category::Reputation, Place::Metadata, 80.0),
        ]);
        assert_eq!((d, s), (Decision::Block, 100.0));
    }

    #[test]
    fn name_config_and_layers_add_up_and_what_runs_counts_double() {
        let j = judge();
        let name = [finding("name.typosquat", Category::Name, Place::Name, 40.0)];
        let config = [finding("config.x", Category::Miner, Place::Config, 20.0)];
        let mut in_file = finding("miner.y", Category::Miner, Place::Executable, 30.0);
        in_file.evidence.path = Some("/opt/run".into());
        let layer: &[Finding] = std::slice::from_ref(&in_file);
        let none = Runs::default();
        let alone = j.image(ImageEvidence {
            name: &name,
            config: &config,
            runs: &none,
            layers: &[layer],
        });
        assert_eq!((alone.decision, alone.score), (Decision::Warn, 90.0));
        let runs = Runs::from_paths(["/opt/run".to_string()]);
        let started = j.image(ImageEvidence {
            name: &name,
            config: &config,
            runs: &runs,
            layers: &[layer],
        });
        assert_eq!((started.decision, started.score), (Decision::Block, 120.0));
        assert_eq!(started.findings[0].place, Place::Runs);
        assert_eq!(started.findings[0].score, 60.0);
    }

    #[test]
    fn the_evidence_leads_and_the_cut_follows() {
        let j = judge();
        let mut cut = j.unjudged("stopped");
        cut.score = 100.0;
        let miner = finding("miner.xmrig", Category::Miner, Place::Executable, 100.0);
        let judged = j.findings(vec![cut, miner]);
        assert_eq!(judged.findings[0].rule, "miner.xmrig");
    }

    #[test]
    fn failing_open_weighs_a_warning() {
        let open = Judge {
            fail: FailMode::Open,
            ..judge()
        };
        assert_eq!(open.unjudged("x").score, open.warn_score);
        assert_eq!(judge().unjudged("x").score, judge().block_score);
    }
}
