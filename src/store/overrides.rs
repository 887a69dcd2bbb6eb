//! Overrides: an operator's allow or deny for a repository (exact name or glob) or for a digest,
//! with reason, author and optional expiry. An override in force beats any verdict.

use crate::oci::{Digest, QualifiedName};
use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What an override does to what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverrideAction {
    /// Serve it whatever the verdict says.
    Allow,
    /// Refuse it whatever the verdict says.
    Deny,
}

impl fmt::Display for OverrideAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OverrideAction::Allow => "allow",
            OverrideAction::Deny => "deny",
        })
    }
}

/// The repositories a repository override covers, written `host/name`:
/// - an exact qualified name, `docker.io/library/nginx`;
/// - a glob, `docker.io/myorg/*`: `*` matches any run of characters **including `/`** (so it covers
///   nested names, `docker.io/myorg/team/app` too), `?` one character, `[abc]` and `{a,b}` as usual.
///
/// Patterns are lowercase, like the names they match, and must hold a `/` (the host comes first).
#[derive(Clone)]
pub struct RepoPattern {
    text: String,
    kind: PatternKind,
}

#[derive(Clone)]
enum PatternKind {
    Exact(QualifiedName),
    Glob(GlobMatcher),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("repository pattern {pattern:?}: {message}")]
pub struct PatternError {
    pub pattern: String,
    pub message: String,
}

const GLOB_CHARS: &[char] = &['*', '?', '[', ']', '{', '}'];

impl RepoPattern {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is a glob rather than one exact name.
    pub fn is_glob(&self) -> bool {
        matches!(self.kind, PatternKind::Glob(_))
    }

    /// The registry host the pattern names, unless the host part is itself a glob.
    pub fn host(&self) -> Option<&str> {
        let host = self.text.split('/').next().unwrap_or_default();
        (!host.contains(GLOB_CHARS)).then_some(host)
    }

    pub fn matches(&self, name: &QualifiedName) -> bool {
        match &self.kind {
            PatternKind::Exact(exact) => exact == name,
            PatternKind::Glob(glob) => glob.is_match(name.to_string()),
        }
    }
}

impl FromStr for RepoPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |message: &str| PatternError {
            pattern: s.to_string(),
            message: message.to_string(),
        };
        if !s.contains('/') || s.starts_with('/') {
            return Err(err(
                "write host/name, e.g. docker.io/library/nginx or docker.io/myorg/*",
            ));
        }
        if s.bytes()
            .any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(err("repository names are lowercase and hold no spaces"));
        }
        let kind = if s.contains(GLOB_CHARS) {
            let glob = GlobBuilder::new(s)
                .literal_separator(false)
                .build()
                .map_err(|e| err(&e.kind().to_string()))?;
            PatternKind::Glob(glob.compile_matcher())
        } else {
            PatternKind::Exact(s.parse().map_err(|_| err("not a valid host/name"))?)
        };
        Ok(RepoPattern {
            text: s.to_string(),
            kind,
        })
    }
}

impl PartialEq for RepoPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for RepoPattern {}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for RepoPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for RepoPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What an override applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverrideTarget {
    /// Every manifest and blob requested under a matching repository.
    Repo(RepoPattern),
    /// One manifest or blob, under whatever repository it is requested.
    Digest(Digest),
}

impl OverrideTarget {
    /// How specific the target is: a digest beats an exact name, which beats a glob.
    fn specificity(&self) -> u8 {
        match self {
            OverrideTarget::Digest(_) => 3,
            OverrideTarget::Repo(p) if !p.is_glob() => 2,
            OverrideTarget::Repo(_) => 1,
        }
    }
}

impl fmt::Display for OverrideTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverrideTarget::Repo(p) => write!(f, "repo {p}"),
            OverrideTarget::Digest(d) => write!(f, "digest {d}"),
        }
    }
}

/// An override as an operator asks for it; the store gives it its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOverride {
    pub target: OverrideTarget,
    pub action: OverrideAction,
    /// Why, for the people who read the list later. Required.
    pub reason: String,
    /// Who asked. Required.
    pub author: String,
    pub created_unix: u64,
    /// From this second on the override is ignored (and may be pruned). `None`: never expires.
    pub expires_unix: Option<u64>,
}

impl NewOverride {
    /// Reason and author are not blank; an expiry lies after the creation time.
    pub fn validate(&self) -> Result<(), String> {
        if self.reason.trim().is_empty() {
            return Err("a reason is required".into());
        }
        if self.author.trim().is_empty() {
            return Err("an author is required".into());
        }
        if self.expires_unix.is_some_and(|e| e <= self.created_unix) {
            return Err("the expiry must lie after the creation time".into());
        }
        Ok(())
    }
}

/// A stored override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Unique in its store, growing, never reused.
    pub id: u64,
    pub target: OverrideTarget,
    pub action: OverrideAction,
    pub reason: String,
    pub author: String,
    pub created_unix: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix: Option<u64>,
}

impl Override {
    pub(super) fn new(id: u64, new: NewOverride) -> Override {
        Override {
            id,
            target: new.target,
            action: new.action,
            reason: new.reason,
            author: new.author,
            created_unix: new.created_unix,
            expires_unix: new.expires_unix,
        }
    }

    /// Whether the override is past its expiry at `now_unix` (and so ignored).
    pub fn is_expired(&self, now_unix: u64) -> bool {
        self.expires_unix.is_some_and(|e| now_unix >= e)
    }

    fn applies(&self, repo: &QualifiedName, digest: Option<&Digest>) -> bool {
        match &self.target {
            OverrideTarget::Repo(p) => p.matches(repo),
            OverrideTarget::Digest(d) => Some(d) == digest,
        }
    }
}

/// Every stored override, in id order, with its patterns compiled. Matching scans them all, which
/// suits the tens of overrides an operator keeps.
#[derive(Debug, Default)]
pub struct OverrideSet {
    entries: Vec<Override>,
}

impl OverrideSet {
    pub fn new(mut entries: Vec<Override>) -> OverrideSet {
        entries.sort_by_key(|o| o.id);
        OverrideSet { entries }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Override> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The override in force at `now_unix` for `repo`, or for `digest` requested under `repo`.
    /// Expired overrides are ignored. The most specific wins (a digest over an exact name over a
    /// glob); between equally specific ones, deny beats allow, then the newest wins.
    pub fn decide(
        &self,
        repo: &QualifiedName,
        digest: Option<&Digest>,
        now_unix: u64,
    ) -> Option<&Override> {
        self.entries
            .iter()
            .filter(|o| !o.is_expired(now_unix) && o.applies(repo, digest))
            .max_by_key(|o| {
                (
                    o.target.specificity(),
                    o.action == OverrideAction::Deny,
                    o.id,
                )
            })
    }

    /// The overrides expired at `now_unix`.
    pub fn expired(&self, now_unix: u64) -> impl Iterator<Item = &Override> {
        self.entries.iter().filter(move |o| o.is_expired(now_unix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> QualifiedName {
        s.parse().unwrap()
    }

    #[test]
    fn exact_patterns_match_one_name() {
        let p: RepoPattern = "docker.io/library/nginx".parse().unwrap();
        assert!(!p.is_glob());
        assert_eq!(p.host(), Some("docker.io"));
        assert!(p.matches(&name("docker.io/library/nginx")));
        assert!(!p.matches(&name("docker.io/library/nginx2")));
        assert!(!p.matches(&name("ghcr.io/library/nginx")));
    }

    #[test]
    fn globs_cover_nested_names_but_not_other_hosts() {
        let p: RepoPattern = "docker.io/myorg/*".parse().unwrap();
        assert!(p.is_glob());
        assert!(p.matches(&name("docker.io/myorg/app")));
        assert!(p.matches(&name("docker.io/myorg/team/app")));
        assert!(!p.matches(&name("docker.io/myorgx/app")));
        assert!(!p.matches(&name("ghcr.io/myorg/app")));
        let any_host: RepoPattern = "*/library/nginx".parse().unwrap();
        assert_eq!(any_host.host(), None);
        assert!(any_host.matches(&name("quay.io/library/nginx")));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "nginx",
            "*",
            "/x/y",
            "docker.io/Nginx",
            "docker.io/a b",
            "docker.io/[a",
            "docker.io/",
        ] {
            assert!(bad.parse::<RepoPattern>().is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_travel_as_strings() {
        let t = OverrideTarget::Repo("docker.io/myorg/*".parse().unwrap());
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"repo":"docker.io/myorg/*"}"#);
        assert_eq!(serde_json::from_str::<OverrideTarget>(&json).unwrap(), t);
        assert!(serde_json::from_str::<OverrideTarget>(r#"{"repo":"Nope"}"#).is_err());
    }
}
