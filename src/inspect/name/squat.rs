//! Near misses of a popular name in the repository component: claims of officialness, typos and
//! combosquats.

use super::parse::Parsed;
use super::similarity::{flatten, Edit};
use super::targets::{Candidate, Target};
use super::words::segment;
use super::{did_you_mean, finding, Finding, NameInspector, RuleRef};
use std::collections::HashSet;

/// A near miss of a popular name in the repository component.
pub(super) struct Squat {
    rule: RuleRef,
    /// What it imitates, as the finding's `matched`.
    pub(super) target: String,
    /// The real name, fully qualified.
    pub(super) suggestion: String,
    how: String,
}

impl NameInspector {
    /// A near miss of an official name (or a publisher's repository) in the repository component:
    /// a claim of officialness first, then a typo, then a combosquat.
    pub(super) fn repo_squat(&self, name: &Parsed<'_>) -> Option<Squat> {
        let repo = name.repo;
        let flat = flatten(repo);
        let library = |target: &str| format!("docker.io/library/{target}");
        if let Some(rule) = &self.rules.official_claim {
            let found = self.affixed(&flat, 3, &self.claim_before, &self.claim_after);
            if let Some((target, added)) =
                found.filter(|(_, w)| w.iter().any(|w| self.claims.contains(*w)))
            {
                return Some(Squat {
                    rule: rule.clone(),
                    suggestion: library(&target),
                    how: format!(
                        "claims to be the official image `{target}` (adds `{}`)",
                        added.join("-")
                    ),
                    target,
                });
            }
        }
        if let Some(rule) = &self.rules.typosquat {
            let cand = Candidate::new(repo, &self.words);
            if let Some((t, edit)) = self.repo_targets.nearest(&cand, |_, _| true) {
                return Some(Squat {
                    rule: rule.clone(),
                    suggestion: library(&t.name),
                    how: format!("looks like the official image `{}` ({edit})", t.name),
                    target: t.name.clone(),
                });
            }
            let high_confidence = |_: &Target, e: &Edit| e.is_look_alike();
            if let Some((t, edit)) = self.publisher_repo_targets.nearest(&cand, high_confidence) {
                let owner = t.owner.as_deref().unwrap_or("library");
                let host = if name.official_scope {
                    "docker.io"
                } else {
                    name.host
                };
                return Some(Squat {
                    rule: rule.clone(),
                    suggestion: format!("{host}/{owner}/{}", t.name),
                    how: format!("looks like `{owner}/{}` ({edit})", t.name),
                    target: format!("{owner}/{}", t.name),
                });
            }
        }
        if let Some(rule) = &self.rules.combosquat {
            if let Some((target, added)) =
                self.affixed(&flat, 4, &self.combo_before, &self.combo_after)
            {
                return Some(Squat {
                    rule: rule.clone(),
                    suggestion: library(&target),
                    how: format!(
                        "is the official image `{target}` with `{}` added",
                        added.join("-")
                    ),
                    target,
                });
            }
        }
        None
    }

    /// `flat` as an official name (at least `min_len` long, delimiters dropped) with words glued
    /// before or after it: the official name and the words.
    fn affixed<'s>(
        &self,
        flat: &'s str,
        min_len: usize,
        before: &HashSet<String>,
        after: &HashSet<String>,
    ) -> Option<(String, Vec<&'s str>)> {
        let official = |s: &str| {
            (s.len() >= min_len)
                .then(|| self.official_flat.get(s))
                .flatten()
                .cloned()
        };
        // Most names end and start with none of the words: skip the splitting then.
        let ends = after
            .iter()
            .any(|w| flat.len() > w.len() && flat.ends_with(w.as_str()));
        let starts = before
            .iter()
            .any(|w| flat.len() > w.len() && flat.starts_with(w.as_str()));
        // The longest official name first: `ubuntu-upstart-data` is `ubuntu-upstart` + `data`.
        for k in (1..flat.len()).rev().filter(|_| ends) {
            let (head, tail) = flat.split_at(k);
            if let Some(target) = official(head) {
                if let Some(words) = segment(tail, after) {
                    return Some((target, words));
                }
            }
        }
        for k in (1..flat.len()).filter(|_| starts) {
            let (head, tail) = flat.split_at(k);
            if let Some(target) = official(tail) {
                if let Some(words) = segment(head, before) {
                    return Some((target, words));
                }
            }
        }
        None
    }
}

impl Squat {
    pub(super) fn finding(self, display: &str, field: &str) -> Finding {
        let message = format!(
            "{display}: {}{}",
            self.how,
            did_you_mean(Some(&self.suggestion))
        );
        finding(&self.rule, message, field, &self.target)
    }
}
