//! Namespaces that imitate `library`, a publisher or an official name, and the real name they
//! stand in for.

use super::parse::Parsed;
use super::similarity::{flatten, Edit, EditKind};
use super::squat::Squat;
use super::targets::{Candidate, Target, TargetKind};
use super::words::segment;
use super::NameInspector;

impl NameInspector {
    /// Whether a namespace imitates `library`, a publisher or an official name. Near misses of
    /// official names count only when the repository is (near) an official name too, or the
    /// change is a high-confidence one: many people's user names are a letter away from one.
    pub(super) fn lookalike_namespace(&self, ns: &str, related: bool) -> Option<NamespaceMatch> {
        if ns == "library" || self.official.contains(ns) {
            return None;
        }
        let flat = flatten(ns);
        let words = &self.namespace_words;
        // Alone, a word must claim authority (`official`, `libraries`); glued to others, one of
        // them must at least name Docker or a library (`docker-images`, but not `team-io`).
        let authority =
            |w: &str| self.claims.contains(w) || matches!(w, "library" | "libraries" | "dockerhub");
        let dockerish = |w: &str| authority(w) || matches!(w, "docker" | "lib");
        if let Some(parts) = segment(&flat, words) {
            let imitates = match parts.as_slice() {
                [one] => authority(one),
                many => many.iter().any(|w| dockerish(w)),
            };
            if imitates {
                return Some(NamespaceMatch {
                    target: "library".into(),
                    kind: TargetKind::Library,
                    how: "imitates Docker's official `library` namespace".into(),
                });
            }
        }
        // A publisher (or `library`) with namespace words glued on, or an official name with a
        // claim of officialness (`bitnami-official`, `nginx-official`).
        let glued = words.iter().chain(&self.claims).any(|w| {
            flat.len() > w.len() && (flat.starts_with(w.as_str()) || flat.ends_with(w.as_str()))
        });
        for k in (1..flat.len()).filter(|_| glued) {
            for (name, rest, before) in [
                (&flat[..k], &flat[k..], false),
                (&flat[k..], &flat[..k], true),
            ] {
                let kind = if name == "library" {
                    TargetKind::Library
                } else if self.publisher_flat.contains_key(name) {
                    TargetKind::Publisher
                } else if name.len() >= 4 && self.official_flat.contains_key(name) {
                    TargetKind::Official
                } else {
                    continue;
                };
                let vocab = if kind == TargetKind::Official {
                    &self.claims
                } else {
                    words
                };
                if let Some(added) = segment(rest, vocab) {
                    let target = match kind {
                        TargetKind::Official => self.official_flat[name].clone(),
                        TargetKind::Publisher => self.publisher_flat[name].clone(),
                        _ => name.to_string(),
                    };
                    let added = added.join("-");
                    let how = match before {
                        false => format!("is `{target}` with `{added}` added"),
                        true => format!("is `{target}` with `{added}` put before it"),
                    };
                    return Some(NamespaceMatch { target, kind, how });
                }
            }
        }
        let cand = Candidate::new(ns, &self.words);
        // Docker Hub namespaces cannot hold delimiters, so there a project with one in its name
        // writes it without (`rocketchat` for `rocket.chat`): only adding delimiters imitates.
        let accept = |t: &Target, e: &Edit| {
            if e.first == EditKind::Delimiter && e.second.is_none() && cand.raw == cand.flat {
                return false;
            }
            match t.kind {
                TargetKind::Official | TargetKind::Removed => related || e.is_high_confidence(),
                TargetKind::Library | TargetKind::Publisher => true,
            }
        };
        let (t, edit) = self.namespace_targets.nearest(&cand, accept)?;
        let what = match t.kind {
            TargetKind::Library => "Docker's official `library` namespace".to_string(),
            TargetKind::Publisher => format!("the publisher `{}`", t.name),
            TargetKind::Official | TargetKind::Removed => {
                format!("the official image `{}`", t.name)
            }
        };
        Some(NamespaceMatch {
            target: t.name.clone(),
            kind: t.kind,
            how: format!("looks like {what} ({edit})"),
        })
    }

    /// The real name a look-alike namespace stands in for.
    pub(super) fn namespace_suggestion(
        &self,
        name: &Parsed<'_>,
        m: &NamespaceMatch,
        squat: Option<&Squat>,
    ) -> Option<String> {
        let official_repo = if self.official.contains(name.repo) {
            Some(name.repo.to_string())
        } else {
            squat
                .filter(|s| s.suggestion.starts_with("docker.io/library/"))
                .map(|s| s.target.clone())
        };
        match m.kind {
            TargetKind::Publisher => {
                let lists_it = self
                    .publishers
                    .get(&m.target)
                    .is_some_and(|r| r.contains(name.repo));
                match (&official_repo, lists_it) {
                    (Some(o), false) => Some(format!("docker.io/library/{o}")),
                    _ => Some(format!("{}/{}/{}", name.host, m.target, name.repo)),
                }
            }
            TargetKind::Library => official_repo.map(|o| format!("docker.io/library/{o}")),
            TargetKind::Official | TargetKind::Removed => Some(format!(
                "docker.io/library/{}",
                official_repo.unwrap_or_else(|| m.target.clone())
            )),
        }
    }
}

pub(super) struct NamespaceMatch {
    /// The namespace or official name imitated.
    pub(super) target: String,
    kind: TargetKind,
    pub(super) how: String,
}
