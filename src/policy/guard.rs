//! The guard: the one place where inspectors, stored verdicts, overrides and policy meet on the
//! request path. The proxy asks it about a name before going upstream, about an image once its
//! manifest and config are in, about a blob before streaming it, and gets from it the check that
//! judges a layer while it streams.
//!
//! Store reads and writes are synchronous sled calls of a few microseconds; they are made inline.
//! The one wait is Docker Hub reputation in [`Guard::check_name`], bounded by its timeout and
//! cached per repository.

use super::audit::{AuditLog, AuditRecord};
use super::{Mode, Policy};
use crate::inspect::config::ConfigInspector;
use crate::inspect::layer::{Compression, LayerInspector, LayerReport, LayerRules, Limits};
use crate::inspect::name::NameInspector;
use crate::inspect::reputation::Reputation;
use crate::inspect::rules::RuleSet;
use crate::inspect::{cut, Decision, Finding, Place, Verdict};
use crate::oci::{Digest, QualifiedName, Reference};
use crate::proxy::{BlobCheck, Veto};
use crate::store::{ImageBlobs, OverrideAction, Subject, VerdictStore};
use crate::upstream::Route;
use std::net::SocketAddr;
use std::sync::Arc;

/// Who asked, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct Who {
    pub client: Option<SocketAddr>,
}

/// How every refusal message starts (also how a vetoed stream is recognised as a policy block).
pub const BLOCKED_PREFIX: &str = "blocked by portcullis:";

/// A refusal, as the client will be told.
#[derive(Debug, Clone)]
pub struct Blocked {
    /// One line for people: what was refused and its strongest reasons.
    pub message: String,
    /// A short token naming the main reason, safe in a media type and a status line
    /// (`miner.stratum-url`).
    pub slug: String,
    /// Rule ids and evidence, for the error's `detail`.
    pub detail: serde_json::Value,
}

impl Blocked {
    fn from_verdict(subject: &str, verdict: &Verdict) -> Blocked {
        let mut top: Vec<&Finding> = verdict.findings.iter().collect();
        top.sort_by(|a, b| b.score.total_cmp(&a.score));
        top.dedup_by(|a, b| a.rule == b.rule);
        top.truncate(3);
        let reasons: Vec<String> = top.iter().map(|f| describe(f)).collect();
        let slug = top
            .first()
            .map_or_else(|| "policy".to_string(), |f| slug(&f.rule));
        Blocked {
            message: format!(
                "{BLOCKED_PREFIX} {subject} (score {:.0}): {}",
                verdict.score,
                reasons.join("; ")
            ),
            slug,
            detail: serde_json::json!({
                "decision": verdict.decision,
                "score": verdict.score,
                "findings": top,
                "ruleset": verdict.ruleset_hash,
            }),
        }
    }

    fn by_override(subject: &str, reason: &str, id: u64) -> Blocked {
        Blocked {
            message: format!(
                "blocked by portcullis: {subject}: denied by override {id}: {}",
                cut(reason)
            ),
            slug: "override".into(),
            detail: serde_json::json!({ "override": id, "reason": reason }),
        }
    }
}

/// "stratum URL … (Entrypoint: stratum+tcp://pool…)".
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

/// The rule id of the finding added when a layer cannot be judged to the end.
pub const UNJUDGED_RULE: &str = "inspect.incomplete";

pub struct Guard {
    rules: Arc<RuleSet>,
    layer_rules: Arc<LayerRules>,
    names: NameInspector,
    store: Arc<dyn VerdictStore>,
    pub policy: Policy,
    audit: AuditLog,
    limits: Limits,
    reputation: Option<Reputation>,
}

impl Guard {
    pub fn new(
        rules: Arc<RuleSet>,
        names: NameInspector,
        store: Arc<dyn VerdictStore>,
        policy: Policy,
        audit: AuditLog,
        limits: Limits,
    ) -> Guard {
        Guard {
            layer_rules: Arc::new(LayerRules::new(rules.clone())),
            rules,
            names,
            store,
            policy,
            audit,
            limits,
            reputation: None,
        }
    }

    /// Adds Docker Hub reputation to the judgement of docker.io names.
    pub fn with_reputation(mut self, reputation: Reputation) -> Guard {
        self.reputation = Some(reputation);
        self
    }

    pub fn ruleset_hash(&self) -> &str {
        &self.rules.hash
    }

    /// The stored verdict for `subject` if it was made under the current rules (a stale one, or
    /// a store that cannot be read, counts as none: the subject is judged again).
    fn current(&self, subject: Subject<'_>) -> Option<Verdict> {
        self.store
            .get_verdict(subject, &self.rules.hash)
            .ok()
            .and_then(|l| l.current())
    }

    fn qualified(route: &Route) -> QualifiedName {
        QualifiedName::new(&route.upstream.host, route.repo.clone())
            .expect("configured upstream hosts are valid registry hosts")
    }

    fn now() -> u64 {
        crate::store::now_unix()
    }

    /// Records a decision and says whether it is acted on.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        route: &Route,
        who: &Who,
        subject: &'static str,
        reference: Option<String>,
        digest: Option<String>,
        verdict: &Verdict,
        fresh: bool,
    ) -> Mode {
        let mode = self
            .policy
            .mode_for(&route.upstream.host, route.repo.as_str());
        if fresh || verdict.decision == Decision::Block {
            let mut rules: Vec<&Finding> = verdict.findings.iter().collect();
            rules.sort_by(|a, b| b.score.total_cmp(&a.score));
            self.audit.record(&AuditRecord {
                time: AuditRecord::now_rfc3339(),
                client: who.client.map(|c| c.to_string()),
                upstream: route.upstream.host.clone(),
                repository: route.repo.to_string(),
                reference,
                digest,
                subject,
                decision: verdict.decision,
                mode,
                score: verdict.score,
                rules: rules.iter().map(|f| f.rule.clone()).collect(),
                overridden_by: None,
            });
        }
        if verdict.decision != Decision::Allow && fresh {
            tracing::warn!(repo = %route.repo, subject, decision = ?verdict.decision, score = verdict.score, ?mode, "inspection decision");
        }
        mode
    }

    fn verdict(&self, findings: Vec<Finding>) -> Verdict {
        let (decision, score) = self.policy.decide(&findings);
        Verdict::new(decision, score, findings, &self.rules.hash, Self::now())
    }

    /// An override for this name (and digest) in force now: `Some(Ok)` to serve regardless,
    /// `Some(Err)` to refuse regardless. A store error fails closed.
    fn overridden(
        &self,
        route: &Route,
        digest: Option<&Digest>,
        subject: &str,
    ) -> Option<Result<(), Blocked>> {
        match self
            .store
            .override_for(&Self::qualified(route), digest, Self::now())
        {
            Ok(Some(o)) => Some(match o.action {
                OverrideAction::Allow => Ok(()),
                OverrideAction::Deny => Err(Blocked::by_override(subject, &o.reason, o.id)),
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "override lookup failed: refusing");
                Some(Err(Blocked {
                    message: format!(
                        "blocked by portcullis: {subject}: the override store cannot be read"
                    ),
                    slug: "store-error".into(),
                    detail: serde_json::json!({ "error": e.to_string() }),
                }))
            }
        }
    }

    /// Judges a repository name before anything goes upstream.
    ///
    /// The name's own verdict is stored. Docker Hub reputation, when configured, is added at each
    /// call and never stored: it changes over time and is cached apart (see
    /// [`Reputation`]). It is only looked up for a Hub name that already scores: reputation counts
    /// at most as much as the other evidence, so for a clean name it could change nothing.
    pub async fn check_name(&self, route: &Route, who: &Who) -> Result<(), Blocked> {
        let qn = Self::qualified(route);
        let subject = qn.to_string();
        if let Some(o) = self.overridden(route, None, &subject) {
            return o;
        }
        let (mut verdict, fresh) = match self
            .store
            .get_verdict(Subject::Repo(&qn), &self.rules.hash)
        {
            Ok(lookup) => match lookup.current() {
                Some(v) => (v, false),
                None => {
                    let v = self.verdict(self.names.inspect(&route.upstream.host, &route.repo));
                    if let Err(e) = self.store.put_verdict(Subject::Repo(&qn), &v) {
                        tracing::error!(error = %e, "cannot store a name verdict");
                    }
                    (v, true)
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "verdict store read failed; judging the name afresh");
                (
                    self.verdict(self.names.inspect(&route.upstream.host, &route.repo)),
                    true,
                )
            }
        };
        if let Some(reputation) = &self.reputation {
            if route.upstream.official_prefix && verdict.score > 0.0 {
                let found = reputation.findings(&route.repo).await;
                if !found.is_empty() {
                    let mut findings = verdict.findings;
                    findings.extend(found);
                    verdict = self.verdict(findings);
                }
            }
        }
        let mode = self.decide(route, who, "name", None, None, &verdict, fresh);
        if verdict.decision == Decision::Block && mode == Mode::Enforce {
            return Err(Blocked::from_verdict(&subject, &verdict));
        }
        Ok(())
    }

    /// Judges an image manifest: its config, and what is known of its layers. `entry` lists the
    /// absolute paths the config runs (its Entrypoint/Cmd programs), for findings in those files.
    #[allow(clippy::too_many_arguments)]
    pub fn judge_image(
        &self,
        route: &Route,
        reference: &Reference,
        manifest: &Digest,
        blobs: &ImageBlobs,
        config: &[u8],
        who: &Who,
    ) -> Result<(), Blocked> {
        let subject = format!("{}@{manifest}", Self::qualified(route));
        if let Some(o) = self.overridden(route, Some(manifest), &subject) {
            return o;
        }
        if let Err(e) = self.store.put_image(manifest, blobs) {
            tracing::error!(error = %e, "cannot store an image's layers");
        }
        let cached = self.current(Subject::Manifest(manifest));
        let (verdict, fresh) = match cached {
            Some(v) => (v, false),
            None => {
                let v = self.verdict(self.image_findings(blobs, config));
                if let Err(e) = self.store.put_verdict(Subject::Manifest(manifest), &v) {
                    tracing::error!(error = %e, "cannot store a manifest verdict");
                }
                (v, true)
            }
        };
        let mode = self.decide(
            route,
            who,
            "manifest",
            Some(reference.to_string()),
            Some(manifest.to_string()),
            &verdict,
            fresh,
        );
        if verdict.decision == Decision::Block && mode == Mode::Enforce {
            return Err(Blocked::from_verdict(&subject, &verdict));
        }
        Ok(())
    }

    /// The config's findings plus those of every layer already judged, with findings in the files
    /// the entrypoint runs raised to [`Place::Runs`].
    fn image_findings(&self, blobs: &ImageBlobs, config: &[u8]) -> Vec<Finding> {
        let mut findings = match ConfigInspector::new(&self.rules).inspect(config) {
            Ok(f) => f,
            Err(e) => vec![self.unjudged(&format!("image config: {e}"))],
        };
        let runs = entry_paths(config);
        for layer in &blobs.layers {
            if let Some(v) = self.current(Subject::Blob(layer)) {
                findings.extend(v.findings.into_iter().map(|mut f| {
                    if f.place != Place::Runs
                        && f.evidence
                            .path
                            .as_deref()
                            .is_some_and(|p| runs.iter().any(|r| r == p))
                    {
                        f.score = f.score / f.place.multiplier() * Place::Runs.multiplier();
                        f.place = Place::Runs;
                    }
                    f
                }));
            }
        }
        findings
    }

    /// Whether an image has a verdict under the current rules (its config need not be read again).
    pub fn knows_image(&self, manifest: &Digest) -> bool {
        self.current(Subject::Manifest(manifest)).is_some()
    }

    /// Layers of an image that have no current verdict yet (what strict mode must judge first).
    pub fn unjudged_layers(&self, blobs: &ImageBlobs) -> Vec<Digest> {
        blobs
            .layers
            .iter()
            .filter(|d| self.current(Subject::Blob(d)).is_none())
            .cloned()
            .collect()
    }

    /// Refuses a blob with a block verdict, or one only blocked images use.
    pub fn check_blob(&self, route: &Route, digest: &Digest, who: &Who) -> Result<(), Blocked> {
        let subject = format!("{}@{digest}", Self::qualified(route));
        if let Some(o) = self.overridden(route, Some(digest), &subject) {
            return o;
        }
        let mode = self
            .policy
            .mode_for(&route.upstream.host, route.repo.as_str());
        if mode == Mode::Audit {
            return Ok(());
        }
        if let Some(v) = self.current(Subject::Blob(digest)) {
            if v.decision == Decision::Block {
                return Err(self.refuse_blob(route, who, digest, &subject, &v));
            }
        }
        let images = self.store.images_with_blob(digest).unwrap_or_default();
        let mut blocked_by = None;
        for image in &images {
            match self.current(Subject::Manifest(image)) {
                Some(v) if v.decision == Decision::Block => blocked_by = Some(v),
                // One image that may use it is enough to serve it.
                _ => return Ok(()),
            }
        }
        match blocked_by {
            Some(v) => Err(self.refuse_blob(
                route,
                who,
                digest,
                &format!("{subject} (used only by blocked images)"),
                &v,
            )),
            None => Ok(()),
        }
    }

    /// Whether a blob was judged malicious, itself or as part of every image that uses it, in any
    /// mode: such a blob is never kept in the cache (audit mode serves it, but does not keep it).
    pub fn judged_malicious(&self, digest: &Digest) -> bool {
        if matches!(self.current(Subject::Blob(digest)), Some(v) if v.decision == Decision::Block) {
            return true;
        }
        let images = self.store.images_with_blob(digest).unwrap_or_default();
        !images.is_empty()
            && images.iter().all(|image| {
                matches!(self.current(Subject::Manifest(image)), Some(v) if v.decision == Decision::Block)
            })
    }

    /// Records the refusal of a blob (audit) and builds what the client is told.
    fn refuse_blob(
        &self,
        route: &Route,
        who: &Who,
        digest: &Digest,
        subject: &str,
        v: &Verdict,
    ) -> Blocked {
        self.decide(route, who, "blob", None, Some(digest.to_string()), v, false);
        Blocked::from_verdict(subject, v)
    }

    /// The check that judges a blob while it streams, or `None` when there is nothing to judge
    /// (the image's config blob, which was judged with its manifest).
    pub fn layer_check(
        self: &Arc<Self>,
        route: &Route,
        digest: &Digest,
        who: &Who,
    ) -> Option<Box<dyn BlobCheck>> {
        if self.is_config_blob(digest) {
            return None;
        }
        // A blob judged under the current rules is not judged again: its bytes are still checked
        // against its digest, and `check_blob` has already refused it if its verdict is a block.
        let judged = self.current(Subject::Blob(digest)).is_some();
        if judged {
            return None;
        }
        let mode = self
            .policy
            .mode_for(&route.upstream.host, route.repo.as_str());
        // An allow override serves the layer whatever it holds: it is still judged (and the
        // verdict recorded) but never cut. A deny override was refused by `check_blob` already.
        let allowed = matches!(
            self.overridden(route, Some(digest), &digest.to_string()),
            Some(Ok(()))
        );
        let inspector = LayerInspector::with_layer_rules(
            self.layer_rules.clone(),
            Compression::Auto,
            self.limits,
            Some(digest.to_string()),
        );
        Some(Box::new(GuardedLayer {
            inspector: Some(inspector),
            guard: self.clone(),
            route: route.clone(),
            digest: digest.clone(),
            who: who.clone(),
            enforce: mode == Mode::Enforce && !allowed,
            seen_version: 0,
        }))
    }

    fn is_config_blob(&self, digest: &Digest) -> bool {
        self.store
            .images_with_blob(digest)
            .unwrap_or_default()
            .iter()
            .any(|m| matches!(self.store.image_blobs(m), Ok(Some(b)) if &b.config == digest))
    }

    fn unjudged(&self, why: &str) -> Finding {
        self.policy.unjudged(why)
    }

    /// Stores a layer's verdict and spreads a block to the images that use it. Returns the verdict
    /// (or `None` for a blob that is not a layer).
    fn record_layer(
        &self,
        route: &Route,
        digest: &Digest,
        who: &Who,
        report: LayerReport,
    ) -> Option<LayerOutcome> {
        if report.format == crate::inspect::layer::LayerFormat::NotALayer {
            return None;
        }
        let mut findings = report.findings;
        if !report.errors.is_empty() {
            findings.push(self.unjudged(&report.errors.join("; ")));
        }
        let verdict = self.verdict(findings);
        if let Err(e) = self.store.put_verdict(Subject::Blob(digest), &verdict) {
            tracing::error!(error = %e, "cannot store a layer verdict");
        }
        self.decide(
            route,
            who,
            "blob",
            None,
            Some(digest.to_string()),
            &verdict,
            true,
        );
        // The layer counts together with the rest of each image that uses it (its config and its
        // other layers), so evidence spread over several layers adds up. A layer is refused when it
        // is bad itself, or when every image that uses it is now blocked.
        let layer_id = digest.to_string();
        let images = self.store.images_with_blob(digest).unwrap_or_default();
        let mut every_image_blocked = !images.is_empty();
        let mut image_block = None;
        for image in images {
            let old = self.current(Subject::Manifest(&image));
            let mut findings = verdict.findings.clone();
            if let Some(old) = old {
                findings.extend(
                    old.findings
                        .into_iter()
                        .filter(|f| f.evidence.layer.as_deref() != Some(layer_id.as_str())),
                );
            }
            let mut v = self.verdict(findings);
            if verdict.decision == Decision::Block {
                v.decision = Decision::Block;
            }
            if let Err(e) = self.store.put_verdict(Subject::Manifest(&image), &v) {
                tracing::error!(error = %e, "cannot store a manifest verdict");
            }
            if v.decision == Decision::Block {
                image_block = Some(v);
            } else {
                every_image_blocked = false;
            }
        }
        let refuse = if verdict.decision == Decision::Block {
            Some(verdict)
        } else if every_image_blocked {
            image_block
        } else {
            None
        };
        Some(LayerOutcome { refuse })
    }
}

/// What judging a layer decided: the verdict to refuse it with, if any (its own block, or the
/// block of the images that use it).
struct LayerOutcome {
    refuse: Option<Verdict>,
}

/// The absolute program paths an image config runs: the first word of Entrypoint, else of Cmd,
/// and the script a `sh -c`/`sh <file>` runs when it is a plain path.
pub fn entry_paths(config: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(config) else {
        return Vec::new();
    };
    let c = &v["config"];
    let words: Vec<String> = ["Entrypoint", "Cmd"]
        .iter()
        .flat_map(|k| c[*k].as_array().cloned().unwrap_or_default())
        .filter_map(|w| w.as_str().map(str::to_string))
        .flat_map(|w| w.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let workdir = c["WorkingDir"].as_str().unwrap_or("/");
    words
        .into_iter()
        .filter(|w| w.starts_with('/') || w.starts_with("./"))
        .map(|w| match w.strip_prefix("./") {
            Some(rel) => format!("{}/{rel}", workdir.trim_end_matches('/')),
            None => w,
        })
        .collect()
}

/// Judges one layer while it streams; refuses it (when enforcing) as soon as its score reaches
/// the block threshold, or at the end.
struct GuardedLayer {
    inspector: Option<LayerInspector>,
    guard: Arc<Guard>,
    route: Route,
    digest: Digest,
    who: Who,
    enforce: bool,
    seen_version: u64,
}

impl GuardedLayer {
    fn conclude(&mut self) -> Result<(), Veto> {
        let Some(inspector) = self.inspector.take() else {
            return Ok(());
        };
        let report = inspector.finish();
        let outcome = self
            .guard
            .record_layer(&self.route, &self.digest, &self.who, report);
        match outcome.and_then(|o| o.refuse) {
            Some(v) if self.enforce => {
                let b = Blocked::from_verdict(&format!("layer {}", self.digest), &v);
                Err(Veto(b.message))
            }
            _ => Ok(()),
        }
    }
}

impl BlobCheck for GuardedLayer {
    fn update(&mut self, chunk: &[u8]) -> Result<(), Veto> {
        let Some(inspector) = self.inspector.as_mut() else {
            return Ok(());
        };
        inspector.update(chunk);
        let version = inspector.findings_version();
        if self.enforce && version != self.seen_version {
            self.seen_version = version;
            if inspector.score() >= self.guard.policy.config.block_score {
                return self.conclude();
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Veto> {
        self.conclude()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_follow_entrypoint_cmd_and_workdir() {
        let c = br#"{"config":{"Entrypoint":["/opt/.x/run","-c","conf.json"],"Cmd":["sh","./start.sh"],"WorkingDir":"/app"}}"#;
        assert_eq!(
            entry_paths(c),
            vec!["/opt/.x/run".to_string(), "/app/start.sh".to_string()]
        );
        assert!(entry_paths(b"not json").is_empty());
    }

    #[test]
    fn slugs_are_media_type_safe() {
        assert_eq!(slug("miner.stratum-url"), "miner.stratum-url");
        assert_eq!(slug("Weird rule/id"), "weird-rule-id");
    }
}
