//! Configuration: a strict serde struct, loaded from TOML (or the embedded default), then validated.
//!
//! `config/portcullis.toml` documents every field; it is also the embedded default.

mod hosts;
mod policy;
mod reputation;

pub use hosts::HostPattern;
pub use policy::{ClientConfig, FailMode, Mode, PolicyConfig, ScopeRule};
pub use reputation::ReputationConfig;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// The documented example config, compiled in: what `portcullis serve` runs without `--config`.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/portcullis.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub upstream: UpstreamSettings,
    /// Upstream registries keyed by the host name clients use for them.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub inspect: InspectConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub reputation: ReputationConfig,
}

/// `[inspect]`: what the inspectors look for, beyond the built-in rule pack and name list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectConfig {
    /// false turns inspection off: portcullis is then a plain verifying pull-through proxy (names,
    /// configs and layers are not judged, stored verdicts and overrides are not consulted).
    /// Default true.
    pub enabled: bool,
    /// Rule files (TOML, the format of `config/rules/*.toml`) added to the built-in pack. A rule may
    /// not reuse a built-in id. Default none.
    pub rule_files: Vec<PathBuf>,
    /// Popular-name files (the format of `config/popular.toml`) added to the bundled list that
    /// typosquats are measured against. Default none.
    pub popular_files: Vec<PathBuf>,
    /// Inspector threads: layers are inflated and searched on a fixed pool of this many threads,
    /// however many are pulled at once (each waits its turn; the blob keeps streaming meanwhile).
    /// 0 means one per core. Default 0.
    pub workers: usize,
}

impl Default for InspectConfig {
    fn default() -> Self {
        InspectConfig {
            enabled: true,
            rule_files: Vec::new(),
            popular_files: Vec::new(),
            workers: 0,
        }
    }
}

impl InspectConfig {
    /// The inspector pool's size: `workers`, or one per core.
    pub fn workers(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}

/// `[audit]`: the audit trail, one JSON line per decision.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `"-"` for stdout, `""` for none, or a file to append to. Default `"-"`.
    pub path: String,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { path: "-".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub shutdown_grace_seconds: u64,
    /// Seconds a client has to send a request's headers, and the longest a kept-alive connection
    /// may sit idle waiting for the next request. Default 15; at least 1.
    pub header_timeout_seconds: u64,
    /// Client connections open at once; past it, new connections wait in the listen backlog.
    /// Default 4096; at least 1.
    pub max_connections: usize,
    /// Requests being answered at once (up to their response head; bodies stream on); past it
    /// requests wait their turn. Default 1024; at least 1.
    pub max_requests: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:5000".into(),
            data_dir: PathBuf::from("./portcullis-data"),
            log_format: LogFormat::Pretty,
            shutdown_grace_seconds: 30,
            header_timeout_seconds: 15,
            max_connections: 4096,
            max_requests: 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The verdict store (see `crate::store`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory of the sled database. Empty (the default): `<server.data_dir>/verdicts`.
    pub path: PathBuf,
    /// Bytes of sled's page cache (memory, not disk). Default 64 MiB; at least 1 MiB.
    pub cache_capacity_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::new(),
            cache_capacity_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `[cache]`: verified blobs and manifests kept on disk (see `crate::cache`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// false: nothing is kept; every pull goes upstream. Default true.
    pub enabled: bool,
    /// Directory. Empty (the default): `<server.data_dir>/cache`.
    pub path: PathBuf,
    /// Most bytes of blobs kept; the least recently used go first. Default "20GiB".
    pub max_size: ByteSize,
    /// How long a tag's digest is served without asking the upstream. Default "5m".
    pub tag_ttl: HumanDuration,
    /// Longest an upstream blob fetch may run, whether clients still read it or not. Default "1h".
    pub fill_timeout: HumanDuration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            path: PathBuf::new(),
            max_size: ByteSize(20 << 30),
            tag_ttl: HumanDuration(Duration::from_secs(300)),
            fill_timeout: HumanDuration(Duration::from_secs(3600)),
        }
    }
}

/// A size written for people: `"20GiB"`, `"512MB"`, `"3145728"` (bytes), or a TOML integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (number, unit) = (s[..split].trim(), s[split..].trim());
        let factor: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "t" | "tb" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => {
                return Err(format!(
                    "{s:?}: unknown unit {unit:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
                ))
            }
        };
        let n: f64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a size like \"20GiB\""))?;
        Ok(ByteSize((n * factor as f64) as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [
            (1u64 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (size, unit) in units {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written for people: `"5m"`, `"1h 30m"`, `"0s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s)
            .map(HumanDuration)
            .map_err(|e| format!("{s:?} is not a duration like \"5m\": {e}"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Settings shared by every upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSettings {
    pub default: String,
    pub connect_timeout_seconds: u64,
    pub first_byte_timeout_seconds: u64,
    pub idle_timeout_seconds: u64,
    pub attempts: u32,
    pub backoff_ms: u64,
    pub max_retry_after_seconds: u64,
    pub max_manifest_bytes: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            default: "docker.io".into(),
            connect_timeout_seconds: 10,
            first_byte_timeout_seconds: 60,
            idle_timeout_seconds: 60,
            attempts: 3,
            backoff_ms: 200,
            max_retry_after_seconds: 10,
            max_manifest_bytes: 4 * 1024 * 1024,
        }
    }
}

impl UpstreamSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_seconds)
    }
    pub fn first_byte_timeout(&self) -> Duration {
        Duration::from_secs(self.first_byte_timeout_seconds)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub url: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub auth_hosts: Vec<String>,
    /// Hosts a redirect may lead to beyond the upstream's own origin (scheme, host and port):
    /// `host`, `host:port`, IP addresses, or globs whose `*` stays within one label
    /// (`cdn*.quay.io`). A host resolving to a loopback, private or link-local address is reached
    /// only when listed exactly (no `*`). Default none: same-origin redirects only.
    #[serde(default)]
    pub redirect_hosts: Vec<String>,
    /// Follow redirects of every read (manifests, tag lists, referrers), not only of blob
    /// downloads; the same hosts rules apply. Token requests are never redirected. Default false.
    #[serde(default)]
    pub redirect_all_requests: bool,
}

impl UpstreamConfig {
    pub fn anonymous(url: &str) -> Self {
        UpstreamConfig {
            url: url.to_string(),
            aliases: vec![],
            username: None,
            password_env: None,
            password_file: None,
            auth_hosts: vec![],
            redirect_hosts: vec![],
            redirect_all_requests: false,
        }
    }

    /// `redirect_hosts`, parsed.
    pub fn redirect_patterns(&self) -> Result<Vec<HostPattern>, ConfigError> {
        self.redirect_hosts
            .iter()
            .map(|p| {
                p.parse()
                    .map_err(|m| ConfigError::field("redirect_hosts", m))
            })
            .collect()
    }

    /// Reads the secret from its env var or file. Called at start-up, so a missing secret is a
    /// configuration error rather than a failed pull later.
    pub fn credentials(&self) -> Result<Option<Credentials>, ConfigError> {
        let Some(username) = &self.username else {
            return Ok(None);
        };
        let password = match (&self.password_env, &self.password_file) {
            (Some(var), None) => std::env::var(var).map_err(|_| {
                ConfigError::field(
                    "password_env",
                    format!("environment variable {var} is not set"),
                )
            })?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    ConfigError::field("password_file", format!("{}: {e}", path.display()))
                })?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            (None, None) => String::new(),
            (Some(_), Some(_)) => unreachable!("validate() rejects both"),
        };
        Ok(Some(Credentials {
            username: username.clone(),
            password: Secret(password),
        }))
    }
}

/// A user name and a secret for an upstream.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// A secret string: its `Debug` and `Display` print `***`, so it never reaches a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A configuration error naming the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl ConfigError {
    pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Config {
        Config::parse(DEFAULT_CONFIG).expect("the embedded config is valid")
    }

    /// Parses TOML (without validating).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Reads and parses a file, without validating: command-line flags may still complete it
    /// (`--upstream`), so it is validated once they are applied.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let config = Config::read(path)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: addresses, URLs, references between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.reputation.validate()?;
        let server = &self.server;
        for (name, value) in [
            (
                "server.header_timeout_seconds",
                server.header_timeout_seconds,
            ),
            ("server.max_connections", server.max_connections as u64),
            ("server.max_requests", server.max_requests as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::field(name, "must be at least 1"));
            }
        }
        if self.cache.fill_timeout.0.is_zero() {
            return Err(ConfigError::field(
                "cache.fill_timeout",
                "must be more than 0s",
            ));
        }
        let u = &self.upstream;
        if u.attempts == 0 {
            return Err(ConfigError::field(
                "upstream.attempts",
                "must be at least 1",
            ));
        }
        for (name, secs) in [
            (
                "upstream.connect_timeout_seconds",
                u.connect_timeout_seconds,
            ),
            (
                "upstream.first_byte_timeout_seconds",
                u.first_byte_timeout_seconds,
            ),
            ("upstream.idle_timeout_seconds", u.idle_timeout_seconds),
        ] {
            if secs == 0 {
                return Err(ConfigError::field(name, "must be at least 1 second"));
            }
        }
        if u.max_manifest_bytes < 1024 {
            return Err(ConfigError::field(
                "upstream.max_manifest_bytes",
                "must be at least 1024",
            ));
        }
        if self.store.cache_capacity_bytes < 1024 * 1024 {
            return Err(ConfigError::field(
                "store.cache_capacity_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if self.upstreams.is_empty() {
            return Err(ConfigError::field(
                "upstreams",
                "at least one upstream is needed",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (host, up) in &self.upstreams {
            let field = |f: &str| format!("upstreams.\"{host}\".{f}");
            validate_host(host)
                .map_err(|m| ConfigError::field(format!("upstreams.\"{host}\""), m))?;
            let url =
                Url::parse(&up.url).map_err(|e| ConfigError::field(field("url"), e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::field(
                    field("url"),
                    "must be an http:// or https:// URL with a host",
                ));
            }
            if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
                return Err(ConfigError::field(
                    field("url"),
                    "must carry no path, query or user info (credentials go in username/password_*)",
                ));
            }
            for alias in std::iter::once(host).chain(&up.aliases) {
                validate_host(alias).map_err(|m| ConfigError::field(field("aliases"), m))?;
                if !seen.insert(alias.to_ascii_lowercase()) {
                    return Err(ConfigError::field(
                        field("aliases"),
                        format!("{alias} names two upstreams"),
                    ));
                }
            }
            if up.password_env.is_some() && up.password_file.is_some() {
                return Err(ConfigError::field(
                    field("password_env"),
                    "give password_env or password_file, not both",
                ));
            }
            up.redirect_patterns().map_err(|e| match e {
                ConfigError::Invalid { message, .. } => {
                    ConfigError::field(field("redirect_hosts"), message)
                }
                other => other,
            })?;
            if up.username.is_none() && (up.password_env.is_some() || up.password_file.is_some()) {
                return Err(ConfigError::field(
                    field("username"),
                    "a password needs a username",
                ));
            }
        }
        if !self
            .upstreams
            .keys()
            .any(|h| h.eq_ignore_ascii_case(&self.upstream.default))
        {
            return Err(ConfigError::field(
                "upstream.default",
                format!(
                    "{} is not one of the configured upstreams",
                    self.upstream.default
                ),
            ));
        }
        Ok(())
    }

    /// Reads every upstream's secret once, so a missing env var or file is reported by
    /// `config check` rather than at the first pull.
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        for (host, up) in &self.upstreams {
            up.credentials().map_err(|e| match e {
                ConfigError::Invalid { field, message } => ConfigError::Invalid {
                    field: format!("upstreams.\"{host}\".{field}"),
                    message,
                },
                other => other,
            })?;
        }
        Ok(())
    }

    /// Where the verdict store lives: `store.path`, or `<server.data_dir>/verdicts` when it is empty.
    pub fn store_path(&self) -> PathBuf {
        if self.store.path.as_os_str().is_empty() {
            self.server.data_dir.join("verdicts")
        } else {
            self.store.path.clone()
        }
    }

    /// Where the cache lives: `cache.path`, or `<server.data_dir>/cache` when it is empty.
    pub fn cache_path(&self) -> PathBuf {
        if self.cache.path.as_os_str().is_empty() {
            self.server.data_dir.join("cache")
        } else {
            self.cache.path.clone()
        }
    }

    /// One line saying what the cache will do, for `config check` and the start-up log.
    pub fn cache_summary(&self) -> String {
        let c = &self.cache;
        if !c.enabled {
            return "cache: off (every pull goes upstream)".into();
        }
        format!(
            "cache: {}, max_size {}, tag_ttl {}, fill_timeout {}",
            self.cache_path().display(),
            c.max_size,
            c.tag_ttl,
            c.fill_timeout
        )
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|e| {
            ConfigError::field("server.listen", format!("{:?}: {e}", self.server.listen))
        })
    }
}

/// A registry host as clients write it: `name[.name...][:port]`, lowercase letters, digits, `-`.
fn validate_host(host: &str) -> Result<(), String> {
    if crate::oci::name::is_registry_host(host) {
        Ok(())
    } else {
        Err(format!("{host:?} is not a registry host name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded();
        c.validate().unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:5000");
        assert_eq!(c.upstream.default, "docker.io");
        for host in [
            "docker.io",
            "ghcr.io",
            "quay.io",
            "registry.k8s.io",
            "gcr.io",
        ] {
            assert!(c.upstreams.contains_key(host), "{host}");
        }
    }

    #[test]
    fn cache_sizes_and_durations_read_as_people_write_them() {
        let c = Config::parse(
            "[cache]\nmax_size = \"3MiB\"\ntag_ttl = \"1h 30m\"\nfill_timeout = \"10s\"\n",
        )
        .unwrap();
        assert_eq!(c.cache.max_size, ByteSize(3 << 20));
        assert_eq!(c.cache.tag_ttl.0, Duration::from_secs(5400));
        let c = Config::parse("[cache]\nmax_size = 1000\n").unwrap();
        assert_eq!(c.cache.max_size, ByteSize(1000));
        assert_eq!(
            "1.5GB".parse::<ByteSize>().unwrap(),
            ByteSize(1_500_000_000)
        );
        assert_eq!(ByteSize(20 << 30).to_string(), "20GiB");
        let err = Config::parse("[cache]\nmax_size = \"3 parsecs\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown unit"), "{err}");
        let err = Config::parse("[cache]\ntag_ttl = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("tag_ttl"), "{err}");
        let mut c = Config::embedded();
        c.server.data_dir = PathBuf::from("/srv/p");
        assert_eq!(c.cache_path(), PathBuf::from("/srv/p/cache"));
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    fn invalid(text: &str) -> String {
        let c = Config::parse(text).unwrap();
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn bad_values_name_their_field() {
        let up = "[upstreams.\"docker.io\"]\nurl = \"https://r.example\"\n";
        assert!(invalid(&format!("[server]\nlisten = \"nope\"\n{up}")).starts_with("server.listen"));
        assert!(invalid(&format!("[upstream]\ndefault = \"ghcr.io\"\n{up}"))
            .starts_with("upstream.default"));
        assert!(invalid("[upstreams.\"docker.io\"]\nurl = \"ftp://x\"\n").contains("url"));
        assert!(invalid("[upstreams.\"docker.io\"]\nurl = \"https://x/path\"\n").contains("url"));
        assert!(
            invalid("[upstreams.\"docker.io\"]\nurl = \"https://x\"\npassword_env = \"X\"\n")
                .contains("username")
        );
        assert!(
            invalid(&format!("[upstream]\nattempts = 0\n{up}")).starts_with("upstream.attempts")
        );
        assert!(invalid(
            "[upstreams.\"bad host\"]\nurl = \"https://x\"\n[upstream]\ndefault = \"bad host\"\n"
        )
        .contains("not a registry host"));
    }

    #[test]
    fn redirect_hosts_are_checked_and_the_defaults_cover_the_cdns() {
        let err = invalid(
            "[upstreams.\"docker.io\"]\nurl = \"https://x\"\nredirect_hosts = [\"cdn.example\", \"*.com\"]\n",
        );
        assert!(
            err.starts_with("upstreams.\"docker.io\".redirect_hosts: \"*.com\""),
            "{err}"
        );
        let err = invalid(
            "[upstreams.\"docker.io\"]\nurl = \"https://x\"\nredirect_hosts = [\"https://cdn.example/x\"]\n",
        );
        assert!(err.contains("redirect_hosts"), "{err}");
        let c = Config::embedded();
        let hosts = |h: &str| c.upstreams[h].redirect_hosts.clone();
        assert!(hosts("docker.io").contains(&"production.cloudflare.docker.com".to_string()));
        assert!(hosts("ghcr.io").contains(&"pkg-containers.githubusercontent.com".to_string()));
        for h in ["quay.io", "registry.k8s.io", "gcr.io"] {
            assert!(!hosts(h).is_empty(), "{h}");
        }
        assert!(c.upstreams["registry.k8s.io"].redirect_all_requests);
        assert!(!c.upstreams["docker.io"].redirect_all_requests);
        // A user-added upstream: same-origin redirects only.
        assert!(UpstreamConfig::anonymous("https://r.example")
            .redirect_hosts
            .is_empty());
    }

    #[test]
    fn store_defaults_under_the_data_dir_and_checks_its_cache() {
        let mut c = Config::embedded();
        assert_eq!(c.store_path(), PathBuf::from("./portcullis-data/verdicts"));
        c.server.data_dir = PathBuf::from("/var/lib/portcullis");
        assert_eq!(
            c.store_path(),
            PathBuf::from("/var/lib/portcullis/verdicts")
        );
        let up = "[upstreams.\"docker.io\"]\nurl = \"https://r.example\"\n";
        let c = Config::parse(&format!("[store]\npath = \"/srv/v\"\n{up}")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.store_path(), PathBuf::from("/srv/v"));
        assert_eq!(c.store.cache_capacity_bytes, 64 * 1024 * 1024);
        assert!(
            invalid(&format!("[store]\ncache_capacity_bytes = 1000\n{up}"))
                .starts_with("store.cache_capacity_bytes")
        );
        let err = Config::parse("[store]\npaht = \"/x\"\n").unwrap_err();
        assert!(err.to_string().contains("paht"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        let c = Credentials {
            username: "u".into(),
            password: s,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn password_file_is_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("portcullis-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        let mut up = UpstreamConfig::anonymous("https://x");
        up.username = Some("me".into());
        up.password_file = Some(f);
        assert_eq!(
            up.credentials().unwrap().unwrap().password.expose(),
            "s3cret"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
