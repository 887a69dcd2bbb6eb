//! How alike two names are: edit distance bounds, the alignment and kinds of edits, look-alike
//! characters and skeletons.

use std::fmt;

/// One change a squatter makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EditKind {
    /// ASCII look-alikes: `0/o`, `1/l/i`, `5/s`, `3/e`, `4/a`, `7/t`, `8/b`, `9/g`, `2/z`, `rn/m`,
    /// `vv/w`, `cl/d`.
    LookAlike,
    /// `node-red` / `nodered` / `node_red`.
    Delimiter,
    Transposition,
    /// A letter doubled (`ubuntuu`, `postgress`).
    Repetition,
    /// A letter left out (`ubunt`).
    Omission,
    /// A letter added (`xnginx`).
    Addition,
    /// A digit added (`alpine2`).
    DigitAddition,
    /// A letter replaced by its neighbour on the keyboard (`nginz`).
    NeighbourKey,
    /// A vowel replaced by another (`ubantu`).
    VowelSwap,
    /// Any other replaced letter.
    Replacement,
}

impl EditKind {
    fn describe(self) -> &'static str {
        match self {
            EditKind::LookAlike => "look-alike characters",
            EditKind::Delimiter => "changed delimiters",
            EditKind::Transposition => "swapped letters",
            EditKind::Repetition => "a repeated letter",
            EditKind::Omission => "a missing letter",
            EditKind::Addition => "an added letter",
            EditKind::DigitAddition => "an added digit",
            EditKind::NeighbourKey => "a neighbouring key",
            EditKind::VowelSwap => "a swapped vowel",
            EditKind::Replacement => "a replaced letter",
        }
    }

    /// The edits that stay likely on short names (andrew/typosquatting keeps only these under 5
    /// characters).
    fn high_confidence(self) -> bool {
        matches!(
            self,
            EditKind::LookAlike
                | EditKind::Delimiter
                | EditKind::Transposition
                | EditKind::Repetition
        )
    }

    /// The edits allowed as one of two: not an arbitrary added or replaced letter, which at
    /// distance 2 turns one ordinary word into another (`redis` → `redux`).
    fn squat_like(self) -> bool {
        !matches!(self, EditKind::Addition | EditKind::Replacement)
    }
}

/// One or two edits from a popular name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Edit {
    pub(super) first: EditKind,
    pub(super) second: Option<EditKind>,
}

impl Edit {
    pub(super) fn one(kind: EditKind) -> Edit {
        Edit {
            first: kind,
            second: None,
        }
    }

    pub(super) fn is_high_confidence(&self) -> bool {
        self.second.is_none() && self.first.high_confidence()
    }

    /// Changes that keep the name the same to the eye.
    pub(super) fn is_look_alike(&self) -> bool {
        self.second.is_none() && matches!(self.first, EditKind::LookAlike | EditKind::Delimiter)
    }
}

impl fmt::Display for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.second {
            None => f.write_str(self.first.describe()),
            Some(second) => write!(f, "{} and {}", self.first.describe(), second.describe()),
        }
    }
}

/// One aligned difference between a target and a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Target letter, candidate letter.
    Replace(u8, u8),
    /// A candidate letter not in the target, whether it repeats a neighbour, and whether it is
    /// the first letter.
    Insert(u8, bool, bool),
    Delete,
    Transpose,
}

/// Classifies the edits from `target` to `cand` (both delimiter-free, distance 1 or 2) and
/// applies the length gates, tighter than typomind's because ordinary words crowd short names:
/// - on 4-character names only high-confidence edits (look-alike, transposition, repetition);
/// - at 5, also a neighbouring key, a swapped vowel, an added digit or a letter added in front
///   (`xnginx`), but not a dropped, appended or replaced letter (`spark` → `spar`, `sparks`,
///   `flink` → `blink`);
/// - any single edit from 6;
/// - two edits only with both names at 5 or more and the target at 6, the same first letter, and
///   squat-like edits (no added or arbitrarily replaced letter, no added digit — `postgres12` is a
///   version — and not two letters dropped).
pub(super) fn classify(cand: &str, target: &str) -> Option<Edit> {
    let ops = alignment(cand.as_bytes(), target.as_bytes());
    let kinds: Vec<EditKind> = ops.iter().map(|op| op_kind(*op)).collect();
    let shortest = cand.len().min(target.len());
    match kinds.as_slice() {
        [k] if k.high_confidence() => (shortest >= 4).then(|| Edit::one(*k)),
        [k @ (EditKind::NeighbourKey | EditKind::VowelSwap | EditKind::DigitAddition)] => {
            (shortest >= 5).then(|| Edit::one(*k))
        }
        [EditKind::Addition] if matches!(ops[0], Op::Insert(_, _, true)) => {
            (target.len() >= 5).then(|| Edit::one(EditKind::Addition))
        }
        [k] => (target.len() >= 6 && cand.len() >= 5).then(|| Edit::one(*k)),
        [a, b] => {
            let both_dropped = *a == EditKind::Omission && *b == EditKind::Omission;
            let digits = *a == EditKind::DigitAddition || *b == EditKind::DigitAddition;
            (shortest >= 5
                && target.len() >= 6
                && cand.as_bytes()[0] == target.as_bytes()[0]
                && a.squat_like()
                && b.squat_like()
                && !both_dropped
                && !digits)
                .then_some(Edit {
                    first: *a,
                    second: Some(*b),
                })
        }
        _ => None,
    }
}

fn op_kind(op: Op) -> EditKind {
    match op {
        Op::Transpose => EditKind::Transposition,
        Op::Delete => EditKind::Omission,
        Op::Insert(c, _, _) if c.is_ascii_digit() => EditKind::DigitAddition,
        Op::Insert(_, true, _) => EditKind::Repetition,
        Op::Insert(..) => EditKind::Addition,
        Op::Replace(a, b) if look_alike(a) == look_alike(b) => EditKind::LookAlike,
        Op::Replace(a, b) if neighbours(a, b) => EditKind::NeighbourKey,
        Op::Replace(a, b) if is_vowel(a) && is_vowel(b) => EditKind::VowelSwap,
        Op::Replace(..) => EditKind::Replacement,
    }
}

/// The optimal-string-alignment edits turning `target` into `cand` (names are short: at most a
/// few dozen bytes, and this runs only for the rare pair within distance 2).
fn alignment(cand: &[u8], target: &[u8]) -> Vec<Op> {
    let (m, n) = (target.len(), cand.len());
    let w = n + 1;
    let mut d = vec![0usize; (m + 1) * w];
    for i in 0..=m {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(n + 1) {
        *cell = j;
    }
    for i in 1..=m {
        for j in 1..=n {
            let cost = usize::from(target[i - 1] != cand[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && target[i - 1] == cand[j - 2] && target[i - 2] == cand[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (m, n);
    while i > 0 || j > 0 {
        let here = d[i * w + j];
        if i > 0 && j > 0 && target[i - 1] == cand[j - 1] && here == d[(i - 1) * w + j - 1] {
            i -= 1;
            j -= 1;
        } else if i > 1
            && j > 1
            && target[i - 1] == cand[j - 2]
            && target[i - 2] == cand[j - 1]
            && here == d[(i - 2) * w + j - 2] + 1
        {
            ops.push(Op::Transpose);
            i -= 2;
            j -= 2;
        } else if i > 0 && j > 0 && here == d[(i - 1) * w + j - 1] + 1 {
            ops.push(Op::Replace(target[i - 1], cand[j - 1]));
            i -= 1;
            j -= 1;
        } else if i > 0 && here == d[(i - 1) * w + j] + 1 {
            ops.push(Op::Delete);
            i -= 1;
        } else {
            let c = cand[j - 1];
            let repeats = (j >= 2 && cand[j - 2] == c) || (j < n && cand[j] == c);
            ops.push(Op::Insert(c, repeats, j == 1));
            j -= 1;
        }
    }
    ops.reverse();
    ops
}

/// Whether the optimal-string-alignment distance is at most `max`: a banded, allocation-free
/// check that stops once a whole row exceeds `max`, run before the exact distance. (OSA is never
/// below Damerau-Levenshtein, and pairs only DL reaches cannot be classified anyway.)
pub(super) fn osa_within(a: &[u8], b: &[u8], max: usize) -> bool {
    const CAP: usize = 64;
    if a.len() >= CAP || b.len() >= CAP || a.len().abs_diff(b.len()) > max {
        return false;
    }
    let inf = u8::MAX;
    let mut before = [inf; CAP];
    let mut prev = [inf; CAP];
    let mut row = [inf; CAP];
    for (j, cell) in prev.iter_mut().enumerate().take(b.len() + 1) {
        *cell = j as u8;
    }
    for i in 1..=a.len() {
        row.fill(inf);
        row[0] = i as u8;
        let lo = i.saturating_sub(max).max(1);
        let hi = (i + max).min(b.len());
        let mut best = row[0];
        for j in lo..=hi {
            let cost = u8::from(a[i - 1] != b[j - 1]);
            let mut v = prev[j]
                .saturating_add(1)
                .min(row[j - 1].saturating_add(1))
                .min(prev[j - 1].saturating_add(cost));
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(before[j - 2].saturating_add(1));
            }
            row[j] = v;
            best = best.min(v);
        }
        if usize::from(best) > max {
            return false;
        }
        before = prev;
        prev = row;
    }
    usize::from(prev[b.len()]) <= max
}

/// A name without its delimiters (`node-red` → `nodered`).
pub(super) fn flatten(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// The class of look-alike characters a character belongs to.
fn look_alike(c: u8) -> u8 {
    match c {
        b'0' => b'o',
        b'1' | b'i' => b'l',
        b'5' => b's',
        b'3' => b'e',
        b'4' => b'a',
        b'7' => b't',
        b'8' => b'b',
        b'9' => b'g',
        b'2' => b'z',
        c => c,
    }
}

/// What a name looks like: look-alike characters folded (`a1pine` and `alpine` → `alplne`,
/// `bitnarni` and `bitnami` → `bltnaml`).
pub(super) fn skeleton(flat: &str) -> String {
    let folded: String = flat.bytes().map(|b| char::from(look_alike(b))).collect();
    folded
        .replace("rn", "m")
        .replace("vv", "w")
        .replace("cl", "d")
}

/// Letters and digits counted, for a cheap lower bound on the edit distance.
pub(super) type Histogram = [u8; 36];

/// Which letters and digits occur: a cheaper, looser bound, tried first.
pub(super) fn presence(h: &Histogram) -> u64 {
    h.iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .fold(0, |m, (i, _)| m | 1 << i)
}

pub(super) fn histogram(flat: &str) -> Histogram {
    let mut h = [0u8; 36];
    for b in flat.bytes() {
        let i = match b {
            b'a'..=b'z' => usize::from(b - b'a'),
            b'0'..=b'9' => 26 + usize::from(b - b'0'),
            _ => continue,
        };
        h[i] = h[i].saturating_add(1);
    }
    h
}

/// The characters in one histogram and not the other, counted both ways, stopping past `limit`:
/// at most twice the edit distance.
pub(super) fn histogram_distance(a: &Histogram, b: &Histogram, limit: usize) -> usize {
    let mut sum = 0;
    for (x, y) in a.iter().zip(b) {
        sum += usize::from(x.abs_diff(*y));
        if sum > limit {
            break;
        }
    }
    sum
}

pub(super) fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u')
}

/// Keys next to each other on a QWERTY keyboard (rows staggered right as they go down).
pub(super) fn neighbours(a: u8, b: u8) -> bool {
    const ROWS: [&[u8]; 4] = [b"1234567890", b"qwertyuiop", b"asdfghjkl", b"zxcvbnm"];
    let pos = |c: u8| {
        ROWS.iter()
            .enumerate()
            .find_map(|(r, row)| row.iter().position(|&k| k == c).map(|col| (r, col)))
    };
    let (Some((ra, ca)), Some((rb, cb))) = (pos(a), pos(b)) else {
        return false;
    };
    if ra == rb {
        return ca.abs_diff(cb) == 1;
    }
    // The row below sits half a key to the right: key c touches c-1 and c below it.
    let (upper, lower) = if ra < rb {
        ((ra, ca), (rb, cb))
    } else {
        ((rb, cb), (ra, ca))
    };
    lower.0 == upper.0 + 1 && (lower.1 == upper.1 || lower.1 + 1 == upper.1)
}
