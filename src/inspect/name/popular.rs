//! The popular-names list: parsing, checking and merging `config/popular.toml` and user files.

use crate::oci::RepoName;
use serde::Deserialize;
use std::path::Path;

/// The bundled popular-names list, compiled in.
pub const BUILTIN_POPULAR: &str = include_str!("../../../config/popular.toml");

/// The popular names portcullis protects: parsed from `config/popular.toml` or a user file in
/// the same format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopularNames {
    #[serde(default)]
    pub official: OfficialNames,
    #[serde(default, rename = "publisher")]
    pub publishers: Vec<Publisher>,
    #[serde(default)]
    pub squat: SquatWords,
    #[serde(default)]
    pub allow: AllowList,
}

/// Docker Hub's official images (`library/<name>` on docker.io).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficialNames {
    /// Current official images.
    #[serde(default)]
    pub current: Vec<String>,
    /// Removed or deprecated official names, protected like current ones.
    #[serde(default)]
    pub removed: Vec<String>,
}

/// A well-known publisher namespace: everything under it is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publisher {
    pub namespace: String,
    /// Repositories it publishes, used to suggest the real name for a look-alike namespace.
    #[serde(default)]
    pub repos: Vec<String>,
}

/// Words that turn a popular name into a combosquat or a look-alike namespace. Lowercase
/// `[a-z0-9]` only: they are matched against names with their delimiters removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SquatWords {
    /// Added after a popular name (`nginx-utils`).
    #[serde(default)]
    pub suffixes: Vec<String>,
    /// Added before one (`latest-nginx`).
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Claims of officialness (`nginx-official`): a stronger finding than a combosquat.
    #[serde(default)]
    pub claims: Vec<String>,
    /// Words that make a namespace imitate an official one (`docker-library`, `bitnami-official`).
    #[serde(default)]
    pub namespace_words: Vec<String>,
}

/// Names never flagged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowList {
    /// `namespace/repo` exactly, or `namespace/*` for a whole namespace.
    #[serde(default)]
    pub names: Vec<String>,
    /// Repository names (the last path component) that are never a typo or a random name under
    /// any namespace: common names close to an official one (`centos7`, `alpine3`).
    #[serde(default)]
    pub repos: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("popular-names file {file}: {message}")]
pub struct PopularError {
    pub file: String,
    pub message: String,
}

impl PopularNames {
    /// The bundled list (`config/popular.toml`).
    pub fn builtin() -> Result<PopularNames, PopularError> {
        PopularNames::parse("config/popular.toml (built in)", BUILTIN_POPULAR)
    }

    /// A list from a user file; it replaces the bundled one unless [`extend`](Self::extend)ed into it.
    pub fn load(path: &Path) -> Result<PopularNames, PopularError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PopularError {
            file: file.clone(),
            message: e.to_string(),
        })?;
        PopularNames::parse(&file, &text)
    }

    /// Parses and validates a list; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<PopularNames, PopularError> {
        let bad = |message: String| PopularError {
            file: file.to_string(),
            message,
        };
        let names: PopularNames = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        names.validate().map_err(bad)?;
        Ok(names)
    }

    /// Adds another list's names to this one (a publisher named in both gets both repo lists).
    pub fn extend(&mut self, other: PopularNames) {
        self.official.current.extend(other.official.current);
        self.official.removed.extend(other.official.removed);
        for p in other.publishers {
            match self
                .publishers
                .iter_mut()
                .find(|q| q.namespace == p.namespace)
            {
                Some(q) => q.repos.extend(p.repos),
                None => self.publishers.push(p),
            }
        }
        self.squat.suffixes.extend(other.squat.suffixes);
        self.squat.prefixes.extend(other.squat.prefixes);
        self.squat.claims.extend(other.squat.claims);
        self.squat
            .namespace_words
            .extend(other.squat.namespace_words);
        self.allow.names.extend(other.allow.names);
        self.allow.repos.extend(other.allow.repos);
    }

    fn validate(&self) -> Result<(), String> {
        let components = self
            .official
            .current
            .iter()
            .chain(&self.official.removed)
            .chain(self.publishers.iter().map(|p| &p.namespace))
            .chain(self.publishers.iter().flat_map(|p| &p.repos))
            .chain(&self.allow.repos);
        for name in components {
            if !is_component(name) {
                return Err(format!("{name:?} is not a repository-name component"));
            }
        }
        let squat = &self.squat;
        let words = squat
            .suffixes
            .iter()
            .chain(&squat.prefixes)
            .chain(&squat.claims)
            .chain(&squat.namespace_words);
        for word in words {
            if word.is_empty()
                || !word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(format!(
                    "squat word {word:?} must be lowercase letters and digits"
                ));
            }
        }
        for name in &self.allow.names {
            let ok = match name.strip_suffix("/*") {
                Some(ns) => is_component(ns),
                None => name.contains('/') && name.parse::<RepoName>().is_ok(),
            };
            if !ok {
                return Err(format!(
                    "allow entry {name:?} must be `namespace/repo` or `namespace/*`"
                ));
            }
        }
        Ok(())
    }
}

/// One path component of a repository name: `[a-z0-9]` runs joined by `.`, `_`, `__` or `-+`.
fn is_component(s: &str) -> bool {
    !s.contains('/') && s.parse::<RepoName>().is_ok()
}
