//! How the inspector reads a repository name: its host as shown, namespace, last component and
//! whether it is in Docker Hub's official `library/`.

use crate::oci::RepoName;

/// Docker Hub's host names, and its mirror: on these official images live under `library/`.
const HUB_HOSTS: [&str; 6] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
    "hub.docker.com",
    "mirror.gcr.io",
];

/// Amazon's public gallery mirrors official images as `docker/library/<name>`.
const ECR_PUBLIC: &str = "public.ecr.aws";

/// How the inspector reads a repository name.
pub(super) struct Parsed<'a> {
    /// `host/repo` as shown in messages (`docker.io` for every Docker Hub alias).
    pub(super) display: String,
    /// The host suggestions name (`docker.io` for Docker Hub).
    pub(super) host: &'a str,
    /// The name is in Docker Hub's `library/` (or a mirror of it).
    pub(super) official_scope: bool,
    pub(super) namespace: Option<&'a str>,
    /// The last path component.
    pub(super) repo: &'a str,
}

pub(super) fn parse<'a>(registry_host: &'a str, repo: &'a RepoName) -> Parsed<'a> {
    let host = registry_host.trim();
    let hub = HUB_HOSTS.iter().any(|h| h.eq_ignore_ascii_case(host));
    let shown = if hub { "docker.io" } else { host };
    let parts: Vec<&str> = repo.components().collect();
    let last = parts[parts.len() - 1];
    let (official_scope, namespace) = match parts.as_slice() {
        [_] if hub => (true, Some("library")),
        [_] => (false, None),
        ["docker", "library", _] if host.eq_ignore_ascii_case(ECR_PUBLIC) => {
            (true, Some("library"))
        }
        [ns, _] => (hub && *ns == "library", Some(*ns)),
        [ns, ..] => (false, Some(*ns)),
        [] => (false, None),
    };
    let display = match parts.as_slice() {
        [one] if hub => format!("docker.io/library/{one}"),
        _ => format!("{shown}/{repo}"),
    };
    Parsed {
        display,
        host: shown,
        official_scope,
        namespace,
        repo: last,
    }
}
