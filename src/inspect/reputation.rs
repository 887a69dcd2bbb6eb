//! Reputation: Docker Hub's metadata (pull count, age, stars) for repositories on docker.io. A poor
//! reputation raises the score of a name that is already suspicious; it never blocks alone
//! ([`crate::judge::Judge::decide`] counts reputation at most as much as the other evidence).
//!
//! [`ReputationInspector`] is pure: metadata in, findings out. [`Reputation`] is the I/O around it:
//! `GET {api_url}/v2/repositories/{namespace}/{repo}/` under a timeout, remembered per repository in
//! memory. Every failure (unreachable, timeout, 404, 429, an answer that is not the JSON expected)
//! is neutral: no findings and a debug log, never an error on the pull. Official images
//! (`library/*`) are never looked up and never get a finding.
//!
//! Each finding comes from a rule naming its detector (`detector = "low-pulls"` in
//! `config/rules/reputation.toml`), which gives it its id, severity and weight; the thresholds are
//! in the config (`[reputation]`).

use super::rules::{Rule, RuleSet};
use super::{Category, Evidence, Finding, Place};
use crate::config::ConfigError;
pub use crate::config::ReputationConfig;
use crate::oci::RepoName;
use http::header::{ACCEPT, USER_AGENT};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use url::Url;

/// The detector names a rule can give in `detector = "..."`.
pub mod detector {
    /// Fewer pulls than `[reputation] low_pulls` (Qualys's low-pull indicator).
    pub const LOW_PULLS: &str = "low-pulls";
    /// Registered on Docker Hub fewer than `[reputation] young_days` days ago.
    pub const YOUNG_REPO: &str = "young-repo";
    /// No stars at all.
    pub const NO_STARS: &str = "no-stars";
}

/// The longest answer read from the Hub API (a repository answer carries its README, which Hub
/// caps at 25,000 characters).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long a failed lookup is remembered (at most `cache_seconds`): long enough that the blobs of
/// one pull do not each wait for an unreachable Hub, short enough that an outage is soon over.
const FAILURE_TTL: Duration = Duration::from_secs(60);

/// The most repositories remembered; past it the entry closest to expiry makes room.
const MAX_CACHED: usize = 10_000;

const UA: &str = concat!("portcullis/", env!("CARGO_PKG_VERSION"));

/// The fields of Hub's repository answer that reputation reads; the rest is ignored. A field that is
/// missing or `null` gives no finding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RepoMeta {
    #[serde(default)]
    pub pull_count: Option<u64>,
    #[serde(default)]
    pub star_count: Option<u64>,
    /// RFC 3339 in UTC, as Hub writes it (`2024-05-01T10:00:00.123456Z`).
    #[serde(default)]
    pub date_registered: Option<String>,
}

/// Judges a repository's Hub metadata. Pure: the caller passes the time.
#[derive(Debug, Clone)]
pub struct ReputationInspector {
    low_pulls: u64,
    young: Duration,
    low_pulls_rule: Option<Rule>,
    young_rule: Option<Rule>,
    no_stars_rule: Option<Rule>,
}

impl ReputationInspector {
    /// Thresholds from `config`; the detectors that run are those `rules` has a rule for.
    pub fn new(config: &ReputationConfig, rules: &RuleSet) -> ReputationInspector {
        let rule = |d: &str| rules.detector(d).cloned();
        ReputationInspector {
            low_pulls: config.low_pulls,
            young: Duration::from_secs(config.young_days.saturating_mul(86_400)),
            low_pulls_rule: rule(detector::LOW_PULLS),
            young_rule: rule(detector::YOUNG_REPO),
            no_stars_rule: rule(detector::NO_STARS),
        }
    }

    /// The findings for `meta`, the metadata of `repo` (`docker.io/ns/repo`), at `now`. Every
    /// finding is [`Category::Reputation`] whatever its rule says, so that a rule file cannot make
    /// metadata block alone, and [`Place::Metadata`].
    pub fn inspect(&self, repo: &str, meta: &RepoMeta, now: SystemTime) -> Vec<Finding> {
        let mut out = Vec::new();
        if let (Some(rule), Some(pulls)) = (&self.low_pulls_rule, meta.pull_count) {
            if pulls < self.low_pulls {
                let message = format!(
                    "{repo}: pulled {pulls} times from Docker Hub (fewer than {})",
                    self.low_pulls
                );
                out.push(finding(rule, message, "pull_count", &pulls.to_string()));
            }
        }
        if let (Some(rule), Some(registered)) = (&self.young_rule, &meta.date_registered) {
            match humantime::parse_rfc3339_weak(registered) {
                Ok(at) => {
                    // A date in the future (clock skew) counts as brand new.
                    let age = now.duration_since(at).unwrap_or(Duration::ZERO);
                    if age < self.young {
                        let message = format!(
                            "{repo}: registered on Docker Hub {} days ago (fewer than {})",
                            age.as_secs() / 86_400,
                            self.young.as_secs() / 86_400
                        );
                        out.push(finding(rule, message, "date_registered", registered));
                    }
                }
                Err(e) => {
                    tracing::debug!(%repo, date = %super::cut(registered), error = %e, "unreadable date_registered");
                }
            }
        }
        if let (Some(rule), Some(0)) = (&self.no_stars_rule, meta.star_count) {
            let message = format!("{repo}: no stars on Docker Hub");
            out.push(finding(rule, message, "star_count", "0"));
        }
        out
    }
}

fn finding(rule: &Rule, message: String, field: &str, matched: &str) -> Finding {
    Finding {
        rule: rule.id.clone(),
        category: Category::Reputation,
        severity: rule.severity,
        place: Place::Metadata,
        score: rule.weight * Place::Metadata.multiplier(),
        message,
        evidence: Evidence {
            field: Some(field.to_string()),
            ..Evidence::matched(matched)
        },
    }
}

/// Why a lookup gave nothing (logged at debug, never shown to clients).
#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("status {0}")]
    Status(u16),
    #[error("answer over {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("not the JSON expected: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ReputationError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("reputation HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

#[derive(Debug, Clone)]
struct Cached {
    /// `None`: the lookup failed.
    meta: Option<Arc<RepoMeta>>,
    expires: Instant,
}

/// The Docker Hub reputation client: metadata per repository, fetched under a timeout and
/// remembered in memory, judged by a [`ReputationInspector`].
pub struct Reputation {
    http: reqwest::Client,
    api: Url,
    timeout: Duration,
    ttl: Duration,
    failure_ttl: Duration,
    inspector: ReputationInspector,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Reputation {
    pub fn new(config: &ReputationConfig, rules: &RuleSet) -> Result<Reputation, ReputationError> {
        config.validate()?;
        let timeout = config.timeout();
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        let ttl = config.cache_ttl();
        Ok(Reputation {
            http,
            api: config.api()?,
            timeout,
            ttl,
            failure_ttl: ttl.min(FAILURE_TTL),
            inspector: ReputationInspector::new(config, rules),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The findings for `repo`, a Docker Hub repository as routed (`library/` already added).
    /// Official images and names Hub cannot hold (other than `namespace/repo`) get none without a
    /// lookup; so does every failure.
    pub async fn findings(&self, repo: &RepoName) -> Vec<Finding> {
        match self.metadata(repo).await {
            Some(meta) => {
                self.inspector
                    .inspect(&format!("docker.io/{repo}"), &meta, SystemTime::now())
            }
            None => Vec::new(),
        }
    }

    /// Hub's metadata for `repo`, remembered or fetched; `None` when there is none to have (see
    /// [`findings`](Self::findings)). Takes at most the configured timeout.
    pub async fn metadata(&self, repo: &RepoName) -> Option<Arc<RepoMeta>> {
        let (namespace, name) = hub_parts(repo)?;
        if let Some(hit) = self.cached(repo.as_str()) {
            return hit;
        }
        let fetched = tokio::time::timeout(self.timeout, self.fetch(namespace, name))
            .await
            .unwrap_or(Err(LookupError::Timeout(self.timeout)));
        let meta = match fetched {
            Ok(meta) => Some(Arc::new(meta)),
            Err(e) => {
                tracing::debug!(%repo, error = %e, "no Docker Hub reputation: neutral");
                None
            }
        };
        self.remember(repo.as_str(), meta.clone());
        meta
    }

    async fn fetch(&self, namespace: &str, name: &str) -> Result<RepoMeta, LookupError> {
        let mut url = self.api.clone();
        let path = format!(
            "{}/v2/repositories/{namespace}/{name}/",
            url.path().trim_end_matches('/')
        );
        url.set_path(&path);
        let mut response = self
            .http
            .get(url)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, UA)
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(LookupError::Status(response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(LookupError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(LookupError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// `Some(answer)` while a remembered answer (or failure) for `key` holds.
    fn cached(&self, key: &str) -> Option<Option<Arc<RepoMeta>>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(key)
            .filter(|c| c.expires > Instant::now())
            .map(|c| c.meta.clone())
    }

    fn remember(&self, key: &str, meta: Option<Arc<RepoMeta>>) {
        let now = Instant::now();
        let ttl = if meta.is_some() {
            self.ttl
        } else {
            self.failure_ttl
        };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED && !cache.contains_key(key) {
            cache.retain(|_, c| c.expires > now);
            if cache.len() >= MAX_CACHED {
                let first = cache
                    .iter()
                    .min_by_key(|(_, c)| c.expires)
                    .map(|(k, _)| k.clone());
                if let Some(k) = first {
                    cache.remove(&k);
                }
            }
        }
        cache.insert(
            key.to_string(),
            Cached {
                meta,
                expires: now + ttl,
            },
        );
    }
}

/// `(namespace, repo)` for a repository Hub can hold that is not an official image.
fn hub_parts(repo: &RepoName) -> Option<(&str, &str)> {
    let mut parts = repo.components();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ns), Some(name), None) if ns != "library" => Some((ns, name)),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;
    use axum::extract::{Path, State};
    use axum::response::{IntoResponse, Response};
    use http::StatusCode;
    use std::collections::BTreeSet;
    use std::net::SocketAddr;

    const DAY: Duration = Duration::from_secs(86_400);

    /// A fake Docker Hub API on `127.0.0.1:0` that counts requests per repository. By namespace:
    /// `newbie` is 12 pulls, no stars, registered 3 days ago; `bigcorp` is popular and old; `slow`
    /// answers after 10 s; `broken` answers HTML; anything else is 404.
    pub(crate) struct FakeHub {
        addr: SocketAddr,
        hits: Arc<Mutex<HashMap<String, u32>>>,
    }

    impl FakeHub {
        pub(crate) async fn start() -> FakeHub {
            let hits = Arc::new(Mutex::new(HashMap::new()));
            let app = axum::Router::new()
                .route("/v2/repositories/{ns}/{name}/", axum::routing::get(answer))
                .with_state(hits.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            FakeHub { addr, hits }
        }

        pub(crate) fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        pub(crate) fn hits(&self, repo: &str) -> u32 {
            self.hits.lock().unwrap().get(repo).copied().unwrap_or(0)
        }

        pub(crate) fn total(&self) -> u32 {
            self.hits.lock().unwrap().values().sum()
        }

        /// A client of this fake with `timeout_ms`.
        pub(crate) fn client(&self, timeout_ms: u64, rules: &RuleSet) -> Reputation {
            let config = ReputationConfig {
                enabled: true,
                api_url: self.url(),
                timeout_ms,
                ..ReputationConfig::default()
            };
            Reputation::new(&config, rules).unwrap()
        }
    }

    async fn answer(
        State(hits): State<Arc<Mutex<HashMap<String, u32>>>>,
        Path((ns, name)): Path<(String, String)>,
    ) -> Response {
        *hits
            .lock()
            .unwrap()
            .entry(format!("{ns}/{name}"))
            .or_default() += 1;
        let json = |v: serde_json::Value| {
            (
                StatusCode::OK,
                [(http::header::CONTENT_TYPE, "application/json")],
                v.to_string(),
            )
                .into_response()
        };
        let popular = serde_json::json!({
            "name": name, "namespace": ns, "repository_type": "image", "status": 1,
            "status_description": "active", "is_private": false, "star_count": 1234,
            "pull_count": 98_765_432u64, "last_updated": "2026-01-02T03:04:05.678901Z",
            "date_registered": "2015-06-01T10:00:00.000000Z", "full_description": "# big",
        });
        match ns.as_str() {
            "newbie" => {
                let registered = SystemTime::now() - 3 * DAY;
                json(serde_json::json!({
                    "name": name, "namespace": ns, "star_count": 0, "pull_count": 12,
                    "date_registered": humantime::format_rfc3339_micros(registered).to_string(),
                    "last_updated": null,
                }))
            }
            "bigcorp" => json(popular),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                json(popular)
            }
            "broken" => (StatusCode::OK, "<html>rate limited</html>").into_response(),
            _ => (
                StatusCode::NOT_FOUND,
                r#"{"message":"object not found","errinfo":{}}"#,
            )
                .into_response(),
        }
    }

    pub(crate) fn repo(name: &str) -> RepoName {
        name.parse().unwrap()
    }

    fn ids(findings: &[Finding]) -> BTreeSet<&str> {
        findings.iter().map(|f| f.rule.as_str()).collect()
    }

    #[tokio::test]
    async fn low_pull_young_repo_gets_findings_and_the_second_lookup_is_cached() {
        let hub = FakeHub::start().await;
        let rules = RuleSet::builtin().unwrap();
        let rep = hub.client(5000, &rules);
        let f = rep.findings(&repo("newbie/ngnix")).await;
        assert_eq!(
            ids(&f),
            BTreeSet::from([
                "reputation.low-pulls",
                "reputation.young-repo",
                "reputation.no-stars"
            ])
        );
        assert!(f
            .iter()
            .all(|f| f.category == Category::Reputation && f.place == Place::Metadata));
        let low = f.iter().find(|f| f.rule == "reputation.low-pulls").unwrap();
        assert_eq!(low.evidence.matched, "12");
        assert!(
            low.message.contains("docker.io/newbie/ngnix"),
            "{}",
            low.message
        );
        assert_eq!(rep.findings(&repo("newbie/ngnix")).await, f);
        assert_eq!(
            hub.hits("newbie/ngnix"),
            1,
            "the second lookup comes from the cache"
        );
    }

    #[tokio::test]
    async fn popular_old_repo_gets_none() {
        let hub = FakeHub::start().await;
        let rules = RuleSet::builtin().unwrap();
        let rep = hub.client(5000, &rules);
        let meta = rep.metadata(&repo("bigcorp/tool")).await.unwrap();
        assert_eq!(meta.pull_count, Some(98_765_432));
        assert!(rep.findings(&repo("bigcorp/tool")).await.is_empty());
    }

    #[tokio::test]
    async fn official_images_and_deep_names_are_never_looked_up() {
        let hub = FakeHub::start().await;
        let rules = RuleSet::builtin().unwrap();
        let rep = hub.client(5000, &rules);
        assert!(rep.findings(&repo("library/ngnix")).await.is_empty());
        assert!(rep.findings(&repo("newbie/a/b")).await.is_empty());
        assert_eq!(hub.total(), 0);
    }

    #[tokio::test]
    async fn failures_are_neutral_and_remembered() {
        let hub = FakeHub::start().await;
        let rules = RuleSet::builtin().unwrap();
        let rep = hub.client(5000, &rules);
        for name in ["ghost/missing", "broken/json"] {
            assert!(rep.findings(&repo(name)).await.is_empty(), "{name}");
            assert!(rep.findings(&repo(name)).await.is_empty(), "{name}");
            assert_eq!(hub.hits(name), 1, "{name}: the failure is remembered");
        }
    }

    #[tokio::test]
    async fn a_slow_hub_is_cut_at_the_timeout_and_remembered() {
        let hub = FakeHub::start().await;
        let rules = RuleSet::builtin().unwrap();
        let rep = hub.client(300, &rules);
        let t = Instant::now();
        assert!(rep.findings(&repo("slow/repo")).await.is_empty());
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        let t = Instant::now();
        assert!(rep.findings(&repo("slow/repo")).await.is_empty());
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "served from the cache"
        );
        assert_eq!(hub.hits("slow/repo"), 1);
    }

    #[tokio::test]
    async fn an_unreachable_hub_is_neutral() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let config = ReputationConfig {
            enabled: true,
            api_url: format!("http://{addr}"),
            ..ReputationConfig::default()
        };
        let rep = Reputation::new(&config, &RuleSet::builtin().unwrap()).unwrap();
        assert!(rep.findings(&repo("newbie/ngnix")).await.is_empty());
    }

    #[tokio::test]
    async fn answers_expire() {
        let hub = FakeHub::start().await;
        let rules = RuleSet::builtin().unwrap();
        let mut rep = hub.client(5000, &rules);
        rep.ttl = Duration::from_millis(20);
        rep.failure_ttl = Duration::from_millis(20);
        rep.findings(&repo("newbie/app")).await;
        rep.findings(&repo("ghost/app")).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        rep.findings(&repo("newbie/app")).await;
        rep.findings(&repo("ghost/app")).await;
        assert_eq!((hub.hits("newbie/app"), hub.hits("ghost/app")), (2, 2));
    }

    #[test]
    fn the_cache_is_bounded() {
        let rep =
            Reputation::new(&ReputationConfig::default(), &RuleSet::builtin().unwrap()).unwrap();
        for i in 0..MAX_CACHED + 5 {
            rep.remember(&format!("ns/r{i}"), None);
        }
        assert_eq!(rep.cache.lock().unwrap().len(), MAX_CACHED);
        assert!(rep.cached(&format!("ns/r{}", MAX_CACHED + 4)).is_some());
    }

    fn inspector(config: &ReputationConfig) -> ReputationInspector {
        ReputationInspector::new(config, &RuleSet::builtin().unwrap())
    }

    fn meta(pulls: u64, stars: u64, registered: &str) -> RepoMeta {
        RepoMeta {
            pull_count: Some(pulls),
            star_count: Some(stars),
            date_registered: Some(registered.into()),
        }
    }

    #[test]
    fn thresholds_are_strict_and_missing_fields_say_nothing() {
        let now = humantime::parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
        let i = inspector(&ReputationConfig::default());
        let judge = |m: &RepoMeta| {
            let f = i.inspect("docker.io/a/b", m, now);
            ids(&f).into_iter().map(str::to_string).collect::<Vec<_>>()
        };
        assert_eq!(
            judge(&meta(1000, 1, "2026-01-30T00:00:00Z")),
            Vec::<String>::new()
        );
        assert_eq!(
            judge(&meta(999, 1, "2026-01-30T00:00:01.5Z")),
            ["reputation.low-pulls", "reputation.young-repo"]
        );
        assert_eq!(judge(&RepoMeta::default()), Vec::<String>::new());
        assert_eq!(judge(&meta(5000, 3, "yesterday")), Vec::<String>::new());
        // A registration date in the future (clock skew) counts as new.
        assert_eq!(
            judge(&meta(5000, 3, "2027-01-01T00:00:00Z")),
            ["reputation.young-repo"]
        );
        assert_eq!(
            judge(&meta(5000, 0, "2020-01-01T00:00:00Z")),
            ["reputation.no-stars"]
        );
        let off = inspector(&ReputationConfig {
            low_pulls: 0,
            young_days: 0,
            ..ReputationConfig::default()
        });
        assert!(off
            .inspect("x", &meta(0, 1, "2026-03-01T00:00:00Z"), now)
            .is_empty());
    }

    #[test]
    fn findings_are_reputation_whatever_the_rule_says() {
        let mut rule = RuleSet::builtin()
            .unwrap()
            .by_id("reputation.low-pulls")
            .unwrap()
            .clone();
        rule.category = Category::Miner;
        rule.weight = 500.0;
        let rules = RuleSet::from_rules(vec![rule]).unwrap();
        let i = ReputationInspector::new(&ReputationConfig::default(), &rules);
        let f = i.inspect("x", &meta(1, 1, "2020-01-01T00:00:00Z"), SystemTime::now());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].category, Category::Reputation);
        // Priced as reputation, it never decides alone (`judge::tests::reputation_never_blocks_alone`).
    }

    #[test]
    fn config_defaults_match_the_documented_file() {
        assert_eq!(Config::embedded().reputation, ReputationConfig::default());
        assert!(!ReputationConfig::default().enabled);
        let up = "[upstreams.\"docker.io\"]\nurl = \"https://r.example\"\n";
        let c = Config::parse(&format!(
            "[reputation]\nenabled = true\napi_url = \"http://127.0.0.1:9/hub/\"\ntimeout_ms = 200\n{up}"
        ))
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.reputation.timeout(), Duration::from_millis(200));
        assert_eq!(c.reputation.cache_seconds, 3600);
        let err = Config::parse("[reputation]\nenabeld = true\n").unwrap_err();
        assert!(err.to_string().contains("enabeld"), "{err}");
        for (line, field) in [
            ("api_url = \"ftp://hub\"", "reputation.api_url"),
            ("api_url = \"hub.docker.com\"", "reputation.api_url"),
            ("api_url = \"https://hub?x=1\"", "reputation.api_url"),
            ("timeout_ms = 0", "reputation.timeout_ms"),
            ("timeout_ms = 60001", "reputation.timeout_ms"),
            ("cache_seconds = 0", "reputation.cache_seconds"),
        ] {
            let c = Config::parse(&format!("[reputation]\n{line}\n{up}")).unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{line}: {err}");
        }
    }
}
