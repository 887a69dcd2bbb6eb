//! `[reputation]`: Docker Hub metadata lookups for suspicious docker.io names.

use super::ConfigError;
use serde::Deserialize;
use std::time::Duration;
use url::Url;

/// `[reputation]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationConfig {
    /// Look up Docker Hub metadata for suspicious docker.io names. Default false.
    pub enabled: bool,
    /// The Hub API: scheme, host, optional port and path prefix. Default `https://hub.docker.com`.
    pub api_url: String,
    /// The longest a lookup may take, answer included, in milliseconds (1 to 60000). Default 1500.
    pub timeout_ms: u64,
    /// How long an answer is remembered, in seconds (1 to 604800); failures are remembered for a
    /// minute at most. Default 3600.
    pub cache_seconds: u64,
    /// Fewer pulls than this is a finding; 0 turns it off. Default 1000.
    pub low_pulls: u64,
    /// Registered fewer than this many days ago is a finding; 0 turns it off. Default 30.
    pub young_days: u64,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig {
            enabled: false,
            api_url: "https://hub.docker.com".into(),
            timeout_ms: 1500,
            cache_seconds: 3600,
            low_pulls: 1000,
            young_days: 30,
        }
    }
}

impl ReputationConfig {
    /// Checks what serde cannot; every field is checked, even when `enabled` is false.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.api()?;
        if !(1..=60_000).contains(&self.timeout_ms) {
            return Err(ConfigError::field(
                "reputation.timeout_ms",
                "must be between 1 and 60000",
            ));
        }
        if !(1..=604_800).contains(&self.cache_seconds) {
            return Err(ConfigError::field(
                "reputation.cache_seconds",
                "must be between 1 and 604800 (a week)",
            ));
        }
        Ok(())
    }

    /// `api_url`, parsed and checked.
    pub fn api(&self) -> Result<Url, ConfigError> {
        let bad = |m: String| ConfigError::field("reputation.api_url", m);
        let url = Url::parse(&self.api_url).map_err(|e| bad(format!("{:?}: {e}", self.api_url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad("must be an http:// or https:// URL with a host".into()));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(bad("must carry no query, fragment or user info".into()));
        }
        Ok(url)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_seconds)
    }
}
