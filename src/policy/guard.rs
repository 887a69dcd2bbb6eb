//! The guard: where inspectors, stored verdicts, overrides and policy meet on the request path. The
//! proxy asks it about a name before going upstream, about an image once its manifest and config are
//! in, about a blob before streaming it, and gets from it the check that judges a layer while it
//! streams. Every decision is the judge's ([`crate::judge`]); the guard finds the evidence, persists
//! verdicts, applies overrides and modes, and audits.
//!
//! What is stored (the store persists verdicts between requests):
//! - per repository, the name's own verdict;
//! - per blob, a layer's own verdict, and an image config's findings (under the config's digest);
//! - per manifest, the image's *content* verdict: config and layers judged together
//!   ([`crate::judge::Judge::image`]), without the name, since one image can be pulled under
//!   several names. A request's decision adds the name it was asked under.
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
use crate::inspect::{Decision, Finding, Verdict};
use crate::judge::{self, ImageEvidence, Judge, Judgement, Runs};
use crate::oci::{Digest, QualifiedName, Reference};
use crate::store::{ImageBlobs, OverrideAction, Subject, VerdictStore};
use crate::stream::{BlobCheck, Refusal, Veto};
use crate::upstream::Route;
use std::net::SocketAddr;
use std::sync::Arc;

/// Who asked, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct Who {
    pub client: Option<SocketAddr>,
}

/// A repository name as judged for one request: its findings (Docker Hub reputation included),
/// which the judgement of every image pulled under it counts.
#[derive(Debug, Clone, Default)]
pub struct NameVerdict {
    pub findings: Vec<Finding>,
}

/// What the guard was asked about, for the audit trail.
struct Asked<'a> {
    route: &'a Route,
    who: &'a Who,
    subject: &'static str,
    reference: Option<String>,
    digest: Option<String>,
}

pub struct Guard {
    rules: Arc<RuleSet>,
    layer_rules: Arc<LayerRules>,
    names: NameInspector,
    store: Arc<dyn VerdictStore>,
    pub policy: Policy,
    audit: AuditLog,
    limits: Limits,
    reputation: Option<Reputation>,
    /// Name verdicts, in memory only, the most recently asked first out last.
    names_seen: std::sync::Mutex<lru::LruCache<QualifiedName, Verdict>>,
}

/// Names whose verdicts are remembered.
const NAMES_REMEMBERED: usize = 10_000;

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
            names_seen: std::sync::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(NAMES_REMEMBERED).expect("not zero"),
            )),
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

    fn judge(&self) -> &Judge {
        &self.policy.judge
    }

    /// The stored verdict for `subject` if it was made under the current rules (a stale one, or
    /// a store that cannot be read, counts as none: the subject is judged again).
    fn current(&self, subject: Subject<'_>) -> Option<Verdict> {
        self.store
            .get_verdict(subject, &self.rules.hash)
            .ok()
            .and_then(|l| l.current())
    }

    fn put(&self, subject: Subject<'_>, verdict: &Verdict) {
        if let Err(e) = self.store.put_verdict(subject, verdict) {
            tracing::error!(error = %e, %subject, "cannot store a verdict");
        }
    }

    fn qualified(route: &Route) -> QualifiedName {
        QualifiedName::new(&route.upstream.host, route.repo.clone())
            .expect("configured upstream hosts are valid registry hosts")
    }

    /// A judgement stamped with the engine, the rule set and the time.
    fn stamp(&self, j: Judgement) -> Verdict {
        Verdict::new(
            j.decision,
            j.score,
            j.findings,
            &self.rules.hash,
            crate::store::now_unix(),
        )
    }

    /// Records a decision (a new one, or any block) and says whether it is acted on.
    fn record(&self, asked: Asked<'_>, verdict: &Verdict, fresh: bool) -> Mode {
        let route = asked.route;
        let mode = self
            .policy
            .mode_for(&route.upstream.host, route.repo.as_str());
        if fresh || verdict.decision == Decision::Block {
            self.audit.record(&AuditRecord {
                time: AuditRecord::now_rfc3339(),
                client: asked.who.client.map(|c| c.to_string()),
                upstream: route.upstream.host.clone(),
                repository: route.repo.to_string(),
                reference: asked.reference,
                digest: asked.digest,
                subject: asked.subject,
                decision: verdict.decision,
                mode,
                score: verdict.score,
                rules: verdict.findings.iter().map(|f| f.rule.clone()).collect(),
                overridden_by: None,
            });
        }
        if verdict.decision != Decision::Allow && fresh {
            tracing::warn!(repo = %route.repo, subject = asked.subject, decision = ?verdict.decision, score = verdict.score, ?mode, "inspection decision");
        }
        mode
    }

    /// An override for this name (and digest) in force now: `Some(Ok)` to serve regardless,
    /// `Some(Err)` to refuse regardless. A store error fails closed.
    fn overridden(
        &self,
        route: &Route,
        digest: Option<&Digest>,
        subject: &str,
    ) -> Option<Result<(), Refusal>> {
        match self
            .store
            .override_for(&Self::qualified(route), digest, crate::store::now_unix())
        {
            Ok(Some(o)) => Some(match o.action {
                OverrideAction::Allow => Ok(()),
                OverrideAction::Deny => Err(judge::refusal_by_override(subject, &o.reason, o.id)),
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "override lookup failed: refusing");
                Some(Err(judge::refusal_store_down(subject, &e.to_string())))
            }
        }
    }

    /// Makes every verdict stored so far durable (an fsync, on the blocking pool): called before
    /// a refusal is answered, so the verdict behind it survives a crash right after.
    pub async fn persist(&self) {
        let store = self.store.clone();
        let flushed = tokio::task::spawn_blocking(move || store.flush()).await;
        if let Ok(Err(e)) = flushed {
            tracing::error!(error = %e, "cannot flush the verdict store");
        }
    }

    /// Judges a repository name before anything goes upstream, and hands back its findings for the
    /// judgements of what is pulled under it.
    ///
    /// The name's own verdict is stored. Docker Hub reputation, when configured, is added at each
    /// call and never stored: it changes over time and is cached apart (see [`Reputation`]). It is
    /// only looked up for a Hub name that already scores: reputation counts at most as much as the
    /// other evidence, so for a clean name it could change nothing.
    pub async fn check_name(&self, route: &Route, who: &Who) -> Result<NameVerdict, Refusal> {
        let qn = Self::qualified(route);
        let subject = qn.to_string();
        if let Some(o) = self.overridden(route, None, &subject) {
            // An allowed name counts for nothing; a denied one is refused.
            return o.map(|()| NameVerdict::default());
        }
        // Names are judged in memory (cheap, and deterministic under the rules in force) and never
        // stored: a stream of made-up names must not grow the store.
        let known = self
            .names_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&qn)
            .cloned();
        let (mut verdict, fresh) = match known {
            Some(v) => (v, false),
            None => {
                let found = self.names.inspect(&route.upstream.host, &route.repo);
                let v = self.stamp(self.judge().findings(found));
                self.names_seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .put(qn.clone(), v.clone());
                (v, true)
            }
        };
        if let Some(reputation) = &self.reputation {
            if route.upstream.official_prefix && verdict.score > 0.0 {
                let found = reputation.findings(&route.repo).await;
                if !found.is_empty() {
                    let mut findings = verdict.findings;
                    findings.extend(found);
                    verdict = self.stamp(self.judge().findings(findings));
                }
            }
        }
        let asked = Asked {
            route,
            who,
            subject: "name",
            reference: None,
            digest: None,
        };
        let mode = self.record(asked, &verdict, fresh);
        if verdict.decision == Decision::Block && mode == Mode::Enforce {
            return Err(judge::refusal(&subject, &verdict));
        }
        Ok(NameVerdict {
            findings: verdict.findings,
        })
    }

    /// Judges an image manifest under the name it was asked by: its config (`config`, the bytes
    /// to judge; `None` when [`Guard::knows_image`] said it was judged before) and what is known of
    /// its layers.
    #[allow(clippy::too_many_arguments)]
    pub fn judge_image(
        &self,
        route: &Route,
        reference: &Reference,
        manifest: &Digest,
        blobs: &ImageBlobs,
        config: Option<&[u8]>,
        name: &NameVerdict,
        who: &Who,
    ) -> Result<(), Refusal> {
        let subject = format!("{}@{manifest}", Self::qualified(route));
        if let Some(o) = self.overridden(route, Some(manifest), &subject) {
            return o;
        }
        if let Some(config) = config {
            let found = self
                .judge()
                .config_findings(&ConfigInspector::new(&self.rules), config);
            let v = self.stamp(self.judge().findings(found));
            self.put(Subject::Blob(&blobs.config), &v);
        }
        let mut blobs = blobs.clone();
        blobs.runs = match config {
            Some(config) => Runs::of_config(config).paths().to_vec(),
            None => match self.store.image_blobs(manifest) {
                Ok(Some(known)) => known.runs,
                _ => Vec::new(),
            },
        };
        if let Err(e) = self.store.put_image(manifest, &blobs) {
            tracing::error!(error = %e, "cannot store an image's layers");
        }
        let (content, fresh) = match self.current(Subject::Manifest(manifest)) {
            Some(v) if config.is_none() => (v, false),
            _ => {
                let v = self.stamp(self.content(&blobs));
                self.put(Subject::Manifest(manifest), &v);
                (v, true)
            }
        };
        let verdict = self.under_name(name, &content);
        let asked = Asked {
            route,
            who,
            subject: "manifest",
            reference: Some(reference.to_string()),
            digest: Some(manifest.to_string()),
        };
        let mode = self.record(asked, &verdict, fresh);
        if verdict.decision == Decision::Block && mode == Mode::Enforce {
            return Err(judge::refusal(&subject, &verdict));
        }
        Ok(())
    }

    /// An image's content judged from what is stored: its config's findings and every layer
    /// judged so far.
    fn content(&self, blobs: &ImageBlobs) -> Judgement {
        let config = self
            .current(Subject::Blob(&blobs.config))
            .map(|v| v.findings)
            .unwrap_or_default();
        let layers: Vec<Vec<Finding>> = blobs
            .layers
            .iter()
            .filter_map(|d| self.current(Subject::Blob(d)).map(|v| v.findings))
            .collect();
        let layers: Vec<&[Finding]> = layers.iter().map(Vec::as_slice).collect();
        let runs = Runs::from_paths(blobs.runs.iter().cloned());
        self.judge().image(ImageEvidence {
            name: &[],
            config: &config,
            runs: &runs,
            layers: &layers,
        })
    }

    /// An image's content verdict as judged under a name.
    fn under_name(&self, name: &NameVerdict, content: &Verdict) -> Verdict {
        if name.findings.is_empty() {
            return content.clone();
        }
        let mut findings = name.findings.clone();
        findings.extend(content.findings.iter().cloned());
        self.stamp(self.judge().findings(findings))
    }

    /// Whether an image and its config have verdicts under the current rules (its config need
    /// not be read again).
    pub fn knows_image(&self, manifest: &Digest) -> bool {
        self.current(Subject::Manifest(manifest)).is_some()
            && matches!(self.store.image_blobs(manifest), Ok(Some(b)) if self.current(Subject::Blob(&b.config)).is_some())
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

    /// Plans one blob request before a byte is fetched: refused now (a block verdict, a deny
    /// override, or every image using it blocked under this name), or served with the checks the
    /// plan carries. The layer's judgement, when this request makes it, reaches every client of
    /// the blob through the plan's slot, not through the store.
    pub fn plan_blob(
        self: &Arc<Self>,
        route: &Route,
        digest: &Digest,
        name: &NameVerdict,
        who: &Who,
    ) -> Result<BlobPlan, Refusal> {
        let subject = format!("{}@{digest}", Self::qualified(route));
        let mode = self
            .policy
            .mode_for(&route.upstream.host, route.repo.as_str());
        let terms = Terms {
            guard: self.clone(),
            route: route.clone(),
            digest: digest.clone(),
            name: name.clone(),
            who: who.clone(),
            enforce: mode == Mode::Enforce,
        };
        let override_ = self.overridden(route, Some(digest), &subject);
        let terms = match override_ {
            Some(Err(refusal)) => return Err(refusal),
            // An allow override serves the blob whatever it holds: it is still judged (and the
            // verdict recorded) but never cut.
            Some(Ok(())) => Terms {
                enforce: false,
                ..terms
            },
            None => terms,
        };
        let own = self.current(Subject::Blob(digest));
        let images = self.store.images_with_blob(digest).unwrap_or_default();
        if terms.enforce {
            if let Some(v) = own.as_ref().filter(|v| v.decision == Decision::Block) {
                return Err(self.refuse_blob(route, who, digest, &subject, v));
            }
            if let Some(v) = self.blocked_images(&images, name) {
                let subject = format!("{subject} (used only by blocked images)");
                return Err(self.refuse_blob(route, who, digest, &subject, &v));
            }
        }
        // A blob judged under the current rules is not judged again (its bytes are still checked
        // against its digest); an image's config was judged with its manifest.
        let is_config = images
            .iter()
            .any(|m| matches!(self.store.image_blobs(m), Ok(Some(b)) if &b.config == digest));
        if own.is_some() || is_config {
            return Ok(BlobPlan {
                inspect: None,
                slot: None,
                terms,
            });
        }
        let slot = Arc::new(LayerSlot::default());
        let inspector = LayerInspector::with_layer_rules(
            self.layer_rules.clone(),
            Compression::Auto,
            self.limits,
            Some(digest.to_string()),
        );
        Ok(BlobPlan {
            inspect: Some(Box::new(GuardedLayer {
                inspector: Some(inspector),
                terms: terms.clone(),
                slot: slot.clone(),
                seen_version: 0,
                cut: false,
            })),
            slot: Some(slot),
            terms,
        })
    }

    /// Refuses a blob with a block verdict, or one that only images blocked under this name use
    /// (from the store: for a client whose blob was judged by nobody it could hear from).
    pub fn check_blob(
        &self,
        route: &Route,
        digest: &Digest,
        name: &NameVerdict,
        who: &Who,
    ) -> Result<(), Refusal> {
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
        match self.blocked_images(&images, name) {
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

    /// When every image in `images` is blocked under `name`: the verdict of one of them.
    fn blocked_images(&self, images: &[Digest], name: &NameVerdict) -> Option<Verdict> {
        let contents: Vec<Option<Verdict>> = images
            .iter()
            .map(|image| self.current(Subject::Manifest(image)))
            .collect();
        // An image not judged yet may well be served: it keeps the blob servable.
        if contents.iter().any(Option::is_none) {
            return None;
        }
        self.all_blocked(contents.iter().flatten(), name)
    }

    /// When every content verdict is blocked under `name` (and there is one): one of them.
    fn all_blocked<'a>(
        &self,
        contents: impl Iterator<Item = &'a Verdict>,
        name: &NameVerdict,
    ) -> Option<Verdict> {
        let mut blocked_by = None;
        for content in contents {
            let v = self.under_name(name, content);
            if v.decision != Decision::Block {
                return None;
            }
            blocked_by = Some(v);
        }
        blocked_by
    }

    /// Whether a blob was judged malicious, itself or as the content of every image that uses
    /// it, in any mode: such a blob is never kept in the cache (audit mode serves it, but does not
    /// keep it).
    pub fn judged_malicious(&self, digest: &Digest) -> bool {
        if matches!(self.current(Subject::Blob(digest)), Some(v) if v.decision == Decision::Block) {
            return true;
        }
        let images = self.store.images_with_blob(digest).unwrap_or_default();
        self.blocked_images(&images, &NameVerdict::default())
            .is_some()
    }

    /// Records the refusal of a blob (audit) and builds what the client is told.
    fn refuse_blob(
        &self,
        route: &Route,
        who: &Who,
        digest: &Digest,
        subject: &str,
        v: &Verdict,
    ) -> Refusal {
        let asked = Asked {
            route,
            who,
            subject: "blob",
            reference: None,
            digest: Some(digest.to_string()),
        };
        self.record(asked, v, false);
        judge::refusal(subject, v)
    }

    /// Stores a layer's verdict and judges again every image that uses it. Called only for a
    /// layer read to its end whose bytes hashed to its digest. `None` for a blob that is not a
    /// layer.
    fn record_layer(&self, terms: &Terms, report: LayerReport) -> LayerOutcome {
        let digest = &terms.digest;
        let using = self.store.images_with_blob(digest).unwrap_or_default();
        let rootfs = using
            .iter()
            .any(|m| matches!(self.store.image_blobs(m), Ok(Some(b)) if b.rootfs.contains(digest)));
        let Some(found) = self
            .judge()
            .layer_findings(report, &digest.to_string(), rootfs)
        else {
            return LayerOutcome::default();
        };
        let verdict = self.stamp(self.judge().findings(found));
        self.put(Subject::Blob(digest), &verdict);
        let asked = |subject, digest: &Digest| Asked {
            route: &terms.route,
            who: &terms.who,
            subject,
            reference: None,
            digest: Some(digest.to_string()),
        };
        self.record(asked("blob", digest), &verdict, true);
        // The layer counts together with the rest of each image that uses it (its config and its
        // other layers), so evidence spread over several layers adds up.
        let mut images = Vec::new();
        let mut unknown = false;
        for image in using {
            let Ok(Some(blobs)) = self.store.image_blobs(&image) else {
                unknown = true;
                continue;
            };
            let content = self.stamp(self.content(&blobs));
            self.put(Subject::Manifest(&image), &content);
            let v = self.under_name(&terms.name, &content);
            self.record(asked("manifest", &image), &v, true);
            images.push(content);
        }
        LayerOutcome {
            layer: Some(verdict),
            images,
            unknown,
        }
    }

    /// The verdict to refuse a judged layer with under `name`: its own block, or the block of
    /// every image using it.
    fn refusing(&self, outcome: &LayerOutcome, name: &NameVerdict) -> Option<Verdict> {
        let layer = outcome.layer.as_ref()?;
        if layer.decision == Decision::Block {
            return Some(layer.clone());
        }
        if outcome.unknown {
            return None;
        }
        self.all_blocked(outcome.images.iter(), name)
    }
}

/// What judging a layer found: its own verdict (none for a blob that is not a layer) and the
/// content verdicts of the images using it, judged again with it.
#[derive(Debug, Clone, Default)]
pub struct LayerOutcome {
    layer: Option<Verdict>,
    images: Vec<Verdict>,
    /// An image using it whose record could not be read: it keeps the blob servable.
    unknown: bool,
}

/// Where a layer's judgement arrives, once, for every client reading the blob: set by the check
/// that judged it (before the fill's outcome is published), read by each client's tail check and
/// by the fill's decision to keep the blob.
#[derive(Debug, Default)]
pub struct LayerSlot(std::sync::OnceLock<LayerOutcome>);

impl LayerSlot {
    pub fn get(&self) -> Option<&LayerOutcome> {
        self.0.get()
    }
}

/// One client's terms: the name it asked by, whether its blocks are enforced (its mode, no
/// allow override), and who it is.
#[derive(Clone)]
struct Terms {
    guard: Arc<Guard>,
    route: Route,
    digest: Digest,
    name: NameVerdict,
    who: Who,
    enforce: bool,
}

/// What the guard decided for one blob request.
pub struct BlobPlan {
    /// Judges the layer as it streams (run it on the inspector pool); `None` when there is
    /// nothing to judge: an image config (judged with its manifest), a blob judged before.
    pub inspect: Option<Box<dyn BlobCheck>>,
    slot: Option<Arc<LayerSlot>>,
    terms: Terms,
}

impl BlobPlan {
    /// Where this plan's inspection hands its judgement (`None` without an inspection).
    pub fn slot(&self) -> Option<Arc<LayerSlot>> {
        self.slot.clone()
    }

    /// The check at this client's tail, for a blob whose judgement arrives in `slot` (this plan's,
    /// or that of the fetch the client joined). Without a slot, the judgement was known when the
    /// request was planned (or is read from the store, for a fetch judged by nobody it can hear).
    pub fn tail_check(&self, slot: Option<Arc<LayerSlot>>) -> Box<dyn BlobCheck> {
        Box::new(TailCheck {
            terms: self.terms.clone(),
            slot,
        })
    }

    /// Asked at the end of a fill this plan leads: whether the blob may be kept in the cache (not
    /// judged malicious, in any mode).
    pub fn keep(&self) -> Box<dyn FnOnce() -> bool + Send> {
        let guard = self.terms.guard.clone();
        let digest = self.terms.digest.clone();
        match self.slot.clone() {
            Some(slot) => Box::new(move || match slot.get() {
                Some(outcome) => guard.refusing(outcome, &NameVerdict::default()).is_none(),
                None => !guard.judged_malicious(&digest),
            }),
            None => Box::new(move || !guard.judged_malicious(&digest)),
        }
    }
}

/// Refuses the tail of a blob whose judgement blocks it under this client's name.
struct TailCheck {
    terms: Terms,
    slot: Option<Arc<LayerSlot>>,
}

impl BlobCheck for TailCheck {
    fn update(&mut self, _: &[u8]) -> Result<(), Veto> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Veto> {
        let t = &self.terms;
        match self.slot.as_ref().and_then(|s| s.get()) {
            Some(outcome) => match t.guard.refusing(outcome, &t.name) {
                Some(v) if t.enforce => {
                    let subject = format!("{}@{}", Guard::qualified(&t.route), t.digest);
                    Err(Veto::blocked(
                        t.guard
                            .refuse_blob(&t.route, &t.who, &t.digest, &subject, &v),
                    ))
                }
                _ => Ok(()),
            },
            // Judged before this request, or by a fetch that left no slot: the store knows.
            None => t
                .guard
                .check_blob(&t.route, &t.digest, &t.name, &t.who)
                .map_err(Veto::blocked),
        }
    }
}

/// Judges one layer while it streams. When enforcing, it cuts the clients as soon as the layer's
/// own score reaches the block threshold, but reads on: the verdict is made from the whole layer,
/// and stored only once its bytes hashed to its digest (its `finish` runs after the digest check).
struct GuardedLayer {
    inspector: Option<LayerInspector>,
    terms: Terms,
    slot: Arc<LayerSlot>,
    seen_version: u64,
    /// The clients were told to stop: nothing more to say until the end.
    cut: bool,
}

impl BlobCheck for GuardedLayer {
    fn update(&mut self, chunk: &[u8]) -> Result<(), Veto> {
        let Some(inspector) = self.inspector.as_mut() else {
            return Ok(());
        };
        inspector.update(chunk);
        if !self.terms.enforce || self.cut {
            return Ok(());
        }
        let version = inspector.findings_version();
        if version == self.seen_version {
            return Ok(());
        }
        self.seen_version = version;
        let guard = &self.terms.guard;
        if inspector.score() < guard.judge().block_score {
            return Ok(());
        }
        self.cut = true;
        let so_far = guard.stamp(guard.judge().findings(inspector.findings_so_far()));
        let subject = format!("layer {}", self.terms.digest);
        Err(Veto::blocked(judge::refusal(&subject, &so_far)))
    }

    fn finish(&mut self) -> Result<(), Veto> {
        let Some(inspector) = self.inspector.take() else {
            return Ok(());
        };
        let guard = self.terms.guard.clone();
        let outcome = guard.record_layer(&self.terms, inspector.finish());
        let refuse = guard.refusing(&outcome, &self.terms.name);
        // Every client reading this blob learns the judgement from here, not from the store.
        let _ = self.slot.0.set(outcome);
        if refuse.is_some() {
            // Durable before the held tail is withheld for good (this runs on an inspector
            // thread, never on an async worker).
            if let Err(e) = guard.store.flush() {
                tracing::error!(error = %e, "cannot flush the verdict store");
            }
        }
        match refuse {
            Some(v) if self.terms.enforce => Err(Veto::blocked(judge::refusal(
                &format!("layer {}", self.terms.digest),
                &v,
            ))),
            _ => Ok(()),
        }
    }
}
