//! Routing a request to one of the configured upstreams — and only to those.

use crate::config::HostPattern;
use crate::config::{Config, ConfigError, Credentials};
use crate::oci::{NameError, RepoName};
use std::collections::HashMap;
use std::sync::Arc;
use url::Host;
use url::Url;

/// Docker Hub's names. One-component repositories on it live under `library/`.
const DOCKER_HUB_NAMES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// One configured upstream registry.
#[derive(Debug)]
pub struct Upstream {
    /// The host name clients use for it (`docker.io`), as configured.
    pub host: String,
    /// Where it is reached (`https://registry-1.docker.io`), without a trailing slash.
    pub base: Url,
    pub credentials: Option<Credentials>,
    /// Token-service hosts beyond its own host and domain that may receive the credentials.
    pub auth_hosts: Vec<String>,
    /// Docker Hub: a one-component name gets `library/`.
    pub official_prefix: bool,
    /// Which of its redirects are followed, and to which hosts.
    pub redirects: Redirects,
}

impl Upstream {
    /// The upstream URL for `/v2/<repo>/<rest>`.
    pub fn url(&self, repo: &RepoName, rest: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(&format!("/v2/{repo}/{rest}"));
        u
    }
}

/// A request routed to an upstream, with the repository name as that upstream knows it.
#[derive(Debug, Clone)]
pub struct Route {
    pub upstream: Arc<Upstream>,
    pub repo: RepoName,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A registry host that is not configured: refused without any connection to it.
    #[error("registry {0:?} is not configured on this proxy")]
    NotConfigured(String),
    #[error(transparent)]
    Name(#[from] NameError),
}

/// The configured upstreams, looked up by host name or alias (case-insensitively, port kept).
#[derive(Debug)]
pub struct Upstreams {
    by_host: HashMap<String, Arc<Upstream>>,
    default: Arc<Upstream>,
}

impl Upstreams {
    pub fn from_config(config: &Config) -> Result<Upstreams, ConfigError> {
        let mut by_host = HashMap::new();
        for (host, up) in &config.upstreams {
            let mut base = Url::parse(&up.url).map_err(|e| ConfigError::Invalid {
                field: format!("upstreams.\"{host}\".url"),
                message: e.to_string(),
            })?;
            base.set_path("");
            let names: Vec<String> = std::iter::once(host)
                .chain(&up.aliases)
                .map(|h| h.to_ascii_lowercase())
                .collect();
            let upstream = Arc::new(Upstream {
                host: host.clone(),
                base,
                credentials: up.credentials()?,
                auth_hosts: up
                    .auth_hosts
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                official_prefix: names.iter().any(|n| DOCKER_HUB_NAMES.contains(&n.as_str())),
                redirects: Redirects {
                    hosts: up.redirect_patterns().map_err(|e| match e {
                        ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                            field: format!("upstreams.\"{host}\".redirect_hosts"),
                            message,
                        },
                        other => other,
                    })?,
                    all_requests: up.redirect_all_requests,
                },
            });
            for name in names {
                by_host.insert(name, upstream.clone());
            }
        }
        let default = by_host
            .get(&config.upstream.default.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| ConfigError::Invalid {
                field: "upstream.default".into(),
                message: "not a configured upstream".into(),
            })?;
        Ok(Upstreams { by_host, default })
    }

    pub fn get(&self, host: &str) -> Option<&Arc<Upstream>> {
        self.by_host.get(&host.to_ascii_lowercase())
    }

    /// Routes a raw repository path (`library/nginx`, `ghcr.io/owner/img`) with an optional
    /// containerd `ns` parameter:
    /// 1. `ns` names the upstream (it must be configured);
    /// 2. else a first component that is a configured host names it, and is stripped;
    ///    a first component that looks like a host but is not configured is refused;
    /// 3. else the default upstream.
    pub fn route(&self, raw: &str, ns: Option<&str>) -> Result<Route, RouteError> {
        let (upstream, name) = match ns {
            Some(ns) => {
                let up = self
                    .get(ns)
                    .ok_or_else(|| RouteError::NotConfigured(ns.to_string()))?;
                (up.clone(), raw)
            }
            None => match raw.split_once('/') {
                Some((first, rest)) if looks_like_host(first) => {
                    let up = self
                        .get(first)
                        .ok_or_else(|| RouteError::NotConfigured(first.to_string()))?;
                    (up.clone(), rest)
                }
                _ => (self.default.clone(), raw),
            },
        };
        let mut repo: RepoName = name.parse()?;
        if upstream.official_prefix && !name.contains('/') {
            repo = repo.with_prefix("library")?;
        }
        Ok(Route { upstream, repo })
    }
}

/// The Docker reference rule: a first component with a `.` or `:`, or `localhost`, is a host.
fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// Which of an upstream's answers are followed when they redirect, and where to.
#[derive(Debug, Clone, Default)]
pub struct Redirects {
    /// Hosts beyond the upstream's own origin that a redirect may lead to.
    pub hosts: Vec<HostPattern>,
    /// Follow redirects of every read (manifests, tag lists, referrers), not only of blobs.
    pub all_requests: bool,
}

impl Redirects {
    /// Whether a redirect answered to `method <rest>` may be followed at all (to an allowed host).
    pub fn followed(&self, method: &http::Method, rest: &str) -> bool {
        let read = *method == http::Method::GET || *method == http::Method::HEAD;
        read && (self.all_requests || rest.starts_with("blobs/"))
    }

    /// Whether `host` (and `port`) is listed exactly, not only matched by a wildcard.
    pub(super) fn lists_exactly(&self, host: &Host<&str>, port: u16) -> bool {
        self.hosts
            .iter()
            .any(|p| p.is_exact() && p.matches(host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams() -> Upstreams {
        let c = Config::parse(
            r#"
            [upstreams."docker.io"]
            url = "https://registry-1.docker.io"
            aliases = ["index.docker.io", "registry-1.docker.io"]
            [upstreams."ghcr.io"]
            url = "https://ghcr.io"
            [upstreams."localhost:5001"]
            url = "http://127.0.0.1:5001"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        Upstreams::from_config(&c).unwrap()
    }

    fn route(raw: &str, ns: Option<&str>) -> (String, String) {
        let r = upstreams().route(raw, ns).unwrap();
        (r.upstream.host.clone(), r.repo.to_string())
    }

    #[test]
    fn default_upstream_gets_library_prefix() {
        assert_eq!(
            route("nginx", None),
            ("docker.io".into(), "library/nginx".into())
        );
        assert_eq!(
            route("user/repo", None),
            ("docker.io".into(), "user/repo".into())
        );
    }

    #[test]
    fn host_prefix_routes_and_is_stripped() {
        assert_eq!(
            route("ghcr.io/owner/img", None),
            ("ghcr.io".into(), "owner/img".into())
        );
        assert_eq!(
            route("docker.io/nginx", None),
            ("docker.io".into(), "library/nginx".into())
        );
        assert_eq!(
            route("localhost:5001/a/b", None),
            ("localhost:5001".into(), "a/b".into())
        );
    }

    #[test]
    fn ns_parameter_routes_case_insensitively() {
        assert_eq!(
            route("owner/img", Some("GHCR.io")),
            ("ghcr.io".into(), "owner/img".into())
        );
        assert_eq!(
            route("library/nginx", Some("docker.io")),
            ("docker.io".into(), "library/nginx".into())
        );
        assert_eq!(
            route("alpine", Some("index.docker.io")),
            ("docker.io".into(), "library/alpine".into())
        );
    }

    #[test]
    fn unconfigured_hosts_are_refused() {
        let u = upstreams();
        assert!(
            matches!(u.route("a/b", Some("evil.example")), Err(RouteError::NotConfigured(h)) if h == "evil.example")
        );
        assert!(matches!(
            u.route("evil.example/a/b", None),
            Err(RouteError::NotConfigured(_))
        ));
        assert!(matches!(
            u.route("localhost/a", None),
            Err(RouteError::NotConfigured(_))
        ));
        assert!(matches!(
            u.route("127.0.0.1:9/a", None),
            Err(RouteError::NotConfigured(_))
        ));
    }

    #[test]
    fn invalid_names_are_errors() {
        assert!(matches!(
            upstreams().route("Bad/Name", None),
            Err(RouteError::Name(_))
        ));
        assert!(matches!(
            upstreams().route("ghcr.io/UP", None),
            Err(RouteError::Name(_))
        ));
    }

    #[test]
    fn urls_join_the_v2_path() {
        let r = upstreams().route("nginx", None).unwrap();
        assert_eq!(
            r.upstream.url(&r.repo, "manifests/latest").as_str(),
            "https://registry-1.docker.io/v2/library/nginx/manifests/latest"
        );
    }
}
