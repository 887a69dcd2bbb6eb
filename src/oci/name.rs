//! Repository names, tags and references, validated against the distribution spec's grammar.

use super::digest::{Digest, DigestError};
use regex::Regex;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

static NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$").unwrap()
});
static TAG_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").unwrap());

/// Clients limit `host[:port]/name` to 255 characters; a bare name can be no longer.
const MAX_NAME_LEN: usize = 255;

/// A repository name as the upstream knows it (`library/nginx`, `owner/img`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("repository name {0:?} does not match the distribution spec's grammar")]
pub struct NameError(pub String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path components (`library`, `nginx`).
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// This name with `prefix/` in front (`library/` for official Docker Hub images).
    pub fn with_prefix(&self, prefix: &str) -> Result<RepoName, NameError> {
        format!("{prefix}/{}", self.0).parse()
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_NAME_LEN || !NAME_RE.is_match(s) {
            return Err(NameError(s.to_string()));
        }
        Ok(RepoName(s.to_string()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag (`latest`, `16-alpine`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tag(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("tag {0:?} does not match the distribution spec's grammar")]
pub struct TagError(pub String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = TagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !TAG_RE.is_match(s) {
            return Err(TagError(s.to_string()));
        }
        Ok(Tag(s.to_string()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest request names: a tag, which resolves upstream, or an immutable digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error(transparent)]
    Tag(#[from] TagError),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

impl FromStr for Reference {
    type Err = ReferenceError;

    /// A reference with a `:` is a digest (tags cannot hold one); anything else is a tag.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Whether `host` is a registry host as clients write it: `name[.name...][:port]` of ASCII letters,
/// digits and `-` (a label never starts with `-`).
pub fn is_registry_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        });
    name_ok && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

/// A repository name qualified by the registry it comes from, as it reads across registries:
/// `docker.io/library/nginx`. The host is the upstream's configured host name (never an alias),
/// lowercased; the name is as that upstream knows it (`library/` already added on Docker Hub).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualifiedName {
    host: String,
    repo: RepoName,
}

impl QualifiedName {
    /// `host` must pass [`is_registry_host`]; it is lowercased.
    pub fn new(host: &str, repo: RepoName) -> Result<QualifiedName, NameError> {
        if !is_registry_host(host) {
            return Err(NameError(format!("{host}/{repo}")));
        }
        Ok(QualifiedName {
            host: host.to_ascii_lowercase(),
            repo,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn repo(&self) -> &RepoName {
        &self.repo
    }
}

impl FromStr for QualifiedName {
    type Err = NameError;

    /// `host/name`: the first component is always the host.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, repo) = s.split_once('/').ok_or_else(|| NameError(s.to_string()))?;
        QualifiedName::new(host, repo.parse().map_err(|_| NameError(s.to_string()))?)
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.repo)
    }
}

impl fmt::Debug for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        for ok in [
            "nginx",
            "library/nginx",
            "a/b/c",
            "my-org/my__img",
            "a.b/c_d",
            "x--y",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok}");
        }
        for bad in [
            "", "Nginx", "a//b", "/a", "a/", "-a", "a-", "a___b", "a:b", "a b", "a/../b",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad}");
        }
        let long = "a".repeat(256);
        assert!(long.parse::<RepoName>().is_err());
    }

    #[test]
    fn tags_follow_the_grammar() {
        assert!("latest".parse::<Tag>().is_ok());
        assert!("16-Alpine_3.19".parse::<Tag>().is_ok());
        assert!(".hidden".parse::<Tag>().is_err());
        assert!("-x".parse::<Tag>().is_err());
        assert!("a".repeat(129).parse::<Tag>().is_err());
        assert!("a".repeat(128).parse::<Tag>().is_ok());
    }

    #[test]
    fn references_split_on_colon() {
        assert!(matches!(
            "latest".parse::<Reference>(),
            Ok(Reference::Tag(_))
        ));
        assert!(matches!(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse::<Reference>(),
            Ok(Reference::Digest(_))
        ));
        assert!(matches!(
            "sha256:zz".parse::<Reference>(),
            Err(ReferenceError::Digest(_))
        ));
        assert!(matches!(
            "bad/tag".parse::<Reference>(),
            Err(ReferenceError::Tag(_))
        ));
    }

    #[test]
    fn qualified_names_carry_their_host() {
        let q: QualifiedName = "docker.io/library/nginx".parse().unwrap();
        assert_eq!(
            (q.host(), q.repo().as_str()),
            ("docker.io", "library/nginx")
        );
        assert_eq!(q.to_string(), "docker.io/library/nginx");
        let q = QualifiedName::new("Localhost:5000", "a/b".parse().unwrap()).unwrap();
        assert_eq!(q.to_string(), "localhost:5000/a/b");
        for bad in [
            "nginx",
            "docker.io/",
            "/nginx",
            "docker.io/Nginx",
            "bad host/x",
            "h:99999/x",
            "-h/x",
        ] {
            assert!(bad.parse::<QualifiedName>().is_err(), "{bad}");
        }
    }
}
