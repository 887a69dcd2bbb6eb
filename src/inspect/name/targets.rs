//! The popular names indexed for near-miss lookups: by length, skeleton and delimiter-free form.

use super::similarity::{
    classify, flatten, histogram, histogram_distance, osa_within, presence, skeleton, Edit,
    EditKind, Histogram,
};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TargetKind {
    Library,
    Publisher,
    Official,
    Removed,
}

#[derive(Debug)]
pub(super) struct Target {
    pub(super) name: String,
    flat: String,
    histogram: Histogram,
    presence: u64,
    pub(super) kind: TargetKind,
    /// For a publisher's repository: the publisher.
    pub(super) owner: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct Targets {
    all: Vec<Target>,
    /// Indexes into `all` by `flat.len()`.
    by_len: Vec<Vec<usize>>,
    by_flat: HashMap<String, usize>,
    by_skeleton: HashMap<String, usize>,
}

/// A name being judged, prepared once for every comparison.
pub(super) struct Candidate<'a> {
    pub(super) raw: &'a str,
    pub(super) flat: String,
    skeleton: String,
    histogram: Histogram,
    presence: u64,
    /// A dictionary word: not taken for a typo of something else.
    word: bool,
}

impl<'a> Candidate<'a> {
    pub(super) fn new(raw: &'a str, words: &HashSet<&'static str>) -> Candidate<'a> {
        let flat = flatten(raw);
        let histogram = histogram(&flat);
        Candidate {
            raw,
            skeleton: skeleton(&flat),
            presence: presence(&histogram),
            histogram,
            word: words.contains(flat.as_str()) || words.contains(raw),
            flat,
        }
    }
}

impl Targets {
    /// Indexes the names; a name given twice keeps its first kind.
    pub(super) fn new(
        items: impl Iterator<Item = (String, TargetKind, Option<String>)>,
    ) -> Targets {
        let mut t = Targets::default();
        let mut seen = HashSet::new();
        for (name, kind, owner) in items {
            if !seen.insert(name.clone()) {
                continue;
            }
            let flat = flatten(&name);
            let i = t.all.len();
            if t.by_len.len() <= flat.len() {
                t.by_len.resize(flat.len() + 1, Vec::new());
            }
            t.by_len[flat.len()].push(i);
            t.by_flat.entry(flat.clone()).or_insert(i);
            t.by_skeleton.entry(skeleton(&flat)).or_insert(i);
            let histogram = histogram(&flat);
            t.all.push(Target {
                presence: presence(&histogram),
                histogram,
                flat,
                name,
                kind,
                owner,
            });
        }
        t
    }

    /// The closest target the candidate imitates, by the length thresholds of typomind (no edit
    /// distance under 4 characters, distance 2 only when both have 5 or more) and the kinds of
    /// edit squatters make; `accept` may refuse a match. Delimiter and look-alike-character
    /// changes come first, then distance 1, then 2; ties go to the more important kind.
    pub(super) fn nearest(
        &self,
        cand: &Candidate<'_>,
        accept: impl Fn(&Target, &Edit) -> bool,
    ) -> Option<(&Target, Edit)> {
        if let Some(&i) = self.by_flat.get(&cand.flat) {
            let t = &self.all[i];
            if t.name == cand.raw {
                return None;
            }
            let edit = Edit::one(EditKind::Delimiter);
            if t.flat.len() >= 4 && accept(t, &edit) {
                return Some((t, edit));
            }
        }
        if cand.word {
            return None;
        }
        if let Some(&i) = self.by_skeleton.get(&cand.skeleton) {
            let t = &self.all[i];
            let edit = Edit::one(EditKind::LookAlike);
            if t.flat != cand.flat && t.flat.len() >= 3 && accept(t, &edit) {
                return Some((t, edit));
            }
        }
        let n = cand.flat.len();
        if n < 4 {
            return None;
        }
        let mut best: Option<(usize, TargetKind, usize, Edit)> = None;
        for len in n.saturating_sub(2).max(4)..=n + 2 {
            for &i in self.by_len.get(len).map(Vec::as_slice).unwrap_or_default() {
                let t = &self.all[i];
                let max = if n >= 5 && len >= 5 { 2 } else { 1 };
                // Each edit changes at most two character counts (a transposition none).
                if len.abs_diff(n) > max
                    || (cand.presence ^ t.presence).count_ones() as usize > 2 * max
                    || histogram_distance(&cand.histogram, &t.histogram, 2 * max) > 2 * max
                {
                    continue;
                }
                if !osa_within(cand.flat.as_bytes(), t.flat.as_bytes(), max) {
                    continue;
                }
                let d = strsim::damerau_levenshtein(&cand.flat, &t.flat);
                if d == 0 || d > max {
                    continue;
                }
                let Some(edit) = classify(&cand.flat, &t.flat) else {
                    continue;
                };
                if !accept(t, &edit) {
                    continue;
                }
                let key = (d, t.kind, i);
                if best.as_ref().is_none_or(|b| key < (b.0, b.1, b.2)) {
                    best = Some((d, t.kind, i, edit));
                }
            }
        }
        best.map(|(_, _, i, edit)| (&self.all[i], edit))
    }
}
