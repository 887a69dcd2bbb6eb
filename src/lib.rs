//! portcullis: a pull-through proxy for container registries that refuses malicious images at
//! pull time. See `docs/DESIGN.md` for the request path and tail-hold.

#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
pub mod gates;
pub mod inspect;
pub mod judge;
pub mod metrics;
pub mod oci;
pub mod policy;
pub mod proxy;
pub mod scan;
pub mod server;
pub mod store;
pub mod stream;
pub mod upstream;

#[cfg(test)]
mod architecture;

use std::sync::Arc;

/// The inspection engine the config describes: the rule set (built-in plus `rule_files`), the
/// name inspector (bundled popular names plus `popular_files`) and the policy. The guard and
/// `portcullis scan` are built from this one place, so they judge alike.
fn engine(
    config: &config::Config,
) -> anyhow::Result<(
    Arc<inspect::rules::RuleSet>,
    inspect::name::NameInspector,
    policy::Policy,
)> {
    let extra: Vec<&std::path::Path> = config
        .inspect
        .rule_files
        .iter()
        .map(|p| p.as_path())
        .collect();
    let rules = Arc::new(inspect::rules::RuleSet::load(&extra)?);
    let mut popular = inspect::name::PopularNames::builtin()?;
    for f in &config.inspect.popular_files {
        popular.extend(inspect::name::PopularNames::load(f)?);
    }
    let names = inspect::name::NameInspector::new(&popular, &rules);
    let policy = policy::Policy::new(config.policy.clone())?;
    Ok((rules, names, policy))
}

/// Builds the inspection side from the config: rules, names, policy, audit, Docker Hub reputation
/// (when enabled), over `store`.
pub fn guard(
    config: &config::Config,
    store: Arc<dyn store::VerdictStore>,
) -> anyhow::Result<policy::guard::Guard> {
    let (rules, names, policy) = engine(config)?;
    let audit = policy::audit::AuditLog::open(&config.audit.path)
        .map_err(|e| anyhow::anyhow!("audit.path {:?}: {e}", config.audit.path))?;
    let guard = policy::guard::Guard::new(
        rules.clone(),
        names,
        store,
        policy,
        audit,
        inspect::layer::Limits::default(),
    );
    if !config.reputation.enabled {
        return Ok(guard);
    }
    let reputation = inspect::reputation::Reputation::new(&config.reputation, &rules)?;
    tracing::info!(api = %config.reputation.api_url, "Docker Hub reputation lookups on");
    Ok(guard.with_reputation(reputation))
}

/// Builds the offline scanner from the config: the guard's engine without store or audit.
pub fn scanner(config: &config::Config) -> anyhow::Result<scan::Scanner> {
    let (rules, names, policy) = engine(config)?;
    Ok(scan::Scanner::new(
        rules,
        names,
        policy,
        inspect::layer::Limits::default(),
    ))
}

/// Builds the whole service from a validated config: upstream client, guard, registry, router.
pub fn app(
    config: &config::Config,
    store: Arc<dyn store::VerdictStore>,
) -> anyhow::Result<axum::Router> {
    let upstreams = upstream::Upstreams::from_config(config)?;
    let client = Arc::new(upstream::UpstreamClient::new(config.upstream.clone())?);
    let mut registry =
        proxy::PullThrough::new(client).with_fill_timeout(config.cache.fill_timeout.0);
    if config.cache.enabled {
        let dir = config.cache_path();
        match cache::Cache::open(&config.cache, dir.clone()) {
            Ok(cache) => registry = registry.with_cache(cache),
            // A cache that cannot be written must not stop the proxy: it serves uncached.
            Err(e) => {
                metrics::CACHE_WRITE_ERRORS.inc();
                tracing::error!(dir = %dir.display(), error = %e, "cache write failed: serving uncached");
            }
        }
    } else {
        tracing::info!("cache off ([cache] enabled = false): every pull goes upstream");
    }
    if config.inspect.enabled {
        let guard = Arc::new(guard(config, store)?);
        tracing::info!(
            ruleset = guard.ruleset_hash(),
            engine = inspect::rules::ENGINE_VERSION,
            "inspection rules loaded"
        );
        let inspectors = stream::offload::Pool::new(config.inspect.workers())
            .map_err(|e| anyhow::anyhow!("cannot start the inspector threads: {e}"))?;
        registry = registry.with_guard(guard, inspectors);
    } else {
        tracing::warn!(
            "inspection is off ([inspect] enabled = false): images are passed on unjudged"
        );
    }
    let state = Arc::new(server::AppState {
        registry,
        upstreams,
        clients: config.policy.clients.clone(),
        synthetic: server::blocked::Synthetic::default(),
    });
    Ok(server::router(state))
}
