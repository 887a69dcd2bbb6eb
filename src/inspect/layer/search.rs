//! The content search: every literal of the rule pack, ASCII case-insensitively, over every byte
//! of every file, as the file streams through in slices of any size.
//!
//! This is the hot loop of layer inspection (its budget is a fraction of inflate's cost), so the
//! literals are not searched for directly. Teddy (aho-corasick's SIMD searcher) slows down with
//! the number of patterns it carries, and stops at every false candidate. So each literal is
//! represented by one **anchor**: a 4-byte window of it, chosen so that few anchors cover all
//! literals (`pool` stands for a dozen pool host names, `atum` for every stratum scheme) and so
//! that no anchor sits inside a word found everywhere (`read`, `file`). Teddy finds anchors; each
//! anchor hit is checked against the literals that anchor stands for. The built-in pack's ~100
//! literals per file class come down to about 50 anchors; layer inspection went from 0.78× to
//! about 0.85× of plain inflate (`cargo bench --bench layer`), and to about 0.88× once the
//! anchors were spread over Teddy's buckets by [`arrange`].
//!
//! Teddy reads a [`fold`]ed copy of each piece, and each file keeps the last `longest literal - 1`
//! bytes of what it has seen, so a literal split between two slices is found, and found once.

use super::buckets::arrange;
use aho_corasick::{packed, AhoCorasick, AhoCorasickBuilder, MatchKind, Span};
use std::collections::BTreeMap;

/// Anchor length: Teddy's longest fingerprint. Shorter literals are their own anchors.
const ANCHOR: usize = 4;
/// Bytes folded at a time (bounds the scratch buffer whatever the caller's slice size).
const PIECE: usize = 16 << 10;

/// Teddy's view of a byte: bit 5 set (which lowercases ASCII letters, and also merges a few
/// other pairs, such as NUL with space), then the low nibble XORed into the high one. Lowercase
/// letters all have high nibble 6 or 7, which would blind Teddy's nibble fingerprints on text;
/// after the XOR the high nibbles spread over all sixteen values. Where folded bytes match, the
/// file's own bytes are then compared with the literal, ignoring ASCII case only. Three vector
/// operations per 16 bytes: the fold runs once over every byte of every file.
pub(super) fn fold(b: u8) -> u8 {
    let l = b | 0x20;
    l ^ (l << 4)
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::is_x86_feature_detected!("avx2")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2() -> bool {
    false
}

/// One distinct literal, and the rule patterns that gave it.
#[derive(Debug)]
struct Literal {
    /// ASCII-lowercased.
    lower: Vec<u8>,
    folded: Vec<u8>,
    /// (rule index, pattern index within the rule).
    owners: Vec<(usize, usize)>,
}

enum Finder {
    /// Teddy over the anchors; `covers[a]` lists the literals that anchor `a` stands for, with
    /// where in them it sits.
    Anchors {
        teddy: packed::Searcher,
        covers: Vec<Vec<(usize, usize)>>,
        #[cfg(test)]
        anchors: Vec<Vec<u8>>,
    },
    /// Where Teddy is unavailable (no SIMD, or too many anchors): an automaton over the folded
    /// literals.
    Automaton(AhoCorasick),
}

/// A set of literals compiled for the streaming search.
pub(crate) struct Literals {
    literals: Vec<Literal>,
    finder: Finder,
    /// Bytes carried across slices: the longest literal less one.
    overlap: usize,
}

impl Literals {
    /// From (literal, rule, pattern) triples; `None` when there are none (or none is
    /// searchable: empty literals match nothing).
    pub fn new<'a>(given: impl IntoIterator<Item = (&'a str, usize, usize)>) -> Option<Literals> {
        Literals::build(given, true)
    }

    /// `teddy == false` makes the automaton search, as where Teddy is unavailable.
    fn build<'a>(
        given: impl IntoIterator<Item = (&'a str, usize, usize)>,
        teddy: bool,
    ) -> Option<Literals> {
        let mut by_text: BTreeMap<Vec<u8>, Vec<(usize, usize)>> = BTreeMap::new();
        for (text, rule, pattern) in given {
            if !text.is_empty() {
                let lower = text.to_ascii_lowercase().into_bytes();
                by_text.entry(lower).or_default().push((rule, pattern));
            }
        }
        if by_text.is_empty() {
            return None;
        }
        let lower: Vec<Vec<u8>> = by_text.keys().cloned().collect();
        let literals: Vec<Literal> = by_text
            .into_iter()
            .map(|(lower, owners)| Literal {
                folded: lower.iter().map(|&b| fold(b)).collect(),
                lower,
                owners,
            })
            .collect();
        let overlap = literals.iter().map(|l| l.folded.len()).max().unwrap_or(1) - 1;
        let folded_anchors = prefix_free(
            anchors(&lower)
                .into_iter()
                .map(|a| a.into_iter().map(fold).collect())
                .collect(),
        );
        // Teddy takes its fat form (16 buckets) for more than 32 patterns where AVX2 is there, as
        // aho-corasick decides; its slim form (8) otherwise.
        let buckets = if folded_anchors.len() > 32 && avx2() {
            16
        } else {
            8
        };
        let folded_anchors = arrange(folded_anchors, buckets, fold);
        let teddy = teddy
            .then(|| {
                let mut config = packed::Config::new();
                config
                    .match_kind(packed::MatchKind::LeftmostFirst)
                    .heuristic_pattern_limits(false);
                config.builder().extend(&folded_anchors).build()
            })
            .flatten();
        let finder = match teddy {
            Some(teddy) => Finder::Anchors {
                teddy,
                covers: assign(&folded_anchors, &literals),
                #[cfg(test)]
                anchors: folded_anchors.clone(),
            },
            // The rule set's own matcher compiled as many literals of the same lengths already,
            // so this build does not fail in practice.
            None => Finder::Automaton(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build(literals.iter().map(|l| &l.folded))
                    .ok()?,
            ),
        };
        Some(Literals {
            literals,
            finder,
            overlap,
        })
    }

    /// The number of distinct literals.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.literals.len()
    }

    /// Bytes carried across slices (the longest literal less one).
    #[cfg(test)]
    pub fn overlap(&self) -> usize {
        self.overlap
    }

    /// The number of anchors Teddy searches for (`None`: the automaton searches instead).
    #[cfg(test)]
    pub fn anchor_count(&self) -> Option<usize> {
        match &self.finder {
            Finder::Anchors { covers, .. } => Some(covers.len()),
            Finder::Automaton(_) => None,
        }
    }

    /// The folded anchors, in the order Teddy was given them.
    #[cfg(test)]
    pub fn anchors(&self) -> Option<&[Vec<u8>]> {
        match &self.finder {
            Finder::Anchors { anchors, .. } => Some(anchors),
            Finder::Automaton(_) => None,
        }
    }
}

/// Few anchors that cover every literal (each literal contains at least one), chosen greedily:
/// the window shared by the most literals not yet covered (a window inside a [`COMMON_WORDS`]
/// word counts for an eighth), then the one with fewer of the bytes that are everywhere in text
/// and binaries, then the first in byte order, so that the choice depends on the literals alone.
fn anchors(lower: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let words = lower.len().div_ceil(64);
    // Every window, with the set of literals that contain it (bits).
    let mut holders: BTreeMap<&[u8], Vec<u64>> = BTreeMap::new();
    for (i, l) in lower.iter().enumerate() {
        for w in l.windows(ANCHOR.min(l.len())) {
            holders.entry(w).or_insert_with(|| vec![0; words])[i / 64] |= 1 << (i % 64);
        }
    }
    let candidates: Vec<(&[u8], Vec<u64>, f64, usize)> = holders
        .into_iter()
        .map(|(w, set)| {
            let in_word = COMMON_WORDS
                .iter()
                .any(|c| c.as_bytes().windows(w.len()).any(|x| x == w));
            let common = w.iter().filter(|b| b" \0\netaoinsrhl".contains(b)).count();
            (w, set, if in_word { 1.0 / 8.0 } else { 1.0 }, common)
        })
        .collect();
    let mut left: Vec<u64> = (0..words)
        .map(|i| match lower.len() - i * 64 {
            n if n >= 64 => u64::MAX,
            n => (1 << n) - 1,
        })
        .collect();
    let mut chosen = Vec::new();
    while left.iter().any(|&w| w != 0) {
        let covers = |set: &[u64]| -> u32 {
            set.iter()
                .zip(&left)
                .map(|(s, l)| (s & l).count_ones())
                .sum()
        };
        let Some((w, set, ..)) = candidates.iter().max_by(|a, b| {
            let (ka, kb) = (f64::from(covers(&a.1)) * a.2, f64::from(covers(&b.1)) * b.2);
            ka.total_cmp(&kb).then(b.3.cmp(&a.3)).then(b.0.cmp(a.0))
        }) else {
            break;
        };
        for (l, s) in left.iter_mut().zip(set) {
            *l &= !s;
        }
        chosen.push(w.to_vec());
    }
    chosen
}

/// Words found all over text, code and binaries: an anchor inside one of them would stop the
/// search every few hundred bytes. Measured over 150 MB of /usr on Debian: `able` 254 times per
/// MB, `file` 250, `read` 143; the anchors of the built-in pack stop it about 1,000 times per MB
/// chosen without this list and about 200 times with it.
const COMMON_WORDS: &[&str] = &[
    "table",
    "enable",
    "disable",
    "file",
    "thread",
    "crypto",
    " hash",
    "has ",
    "_process_",
    "support",
    "write",
    "pages",
    "data",
    "string",
    "return",
    "error",
    "print",
    "config",
    "version",
    "without",
    "padding",
    "address",
    "history",
    "message",
    "_file",
    "_write",
    "offset ",
    "reset ",
];

/// Folded anchors with no duplicates and none a prefix of another, so that at most one matches
/// at any position, which is all Teddy reports there. What a dropped anchor covered, the shorter
/// one covers too, at the same offsets.
fn prefix_free(mut folded: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    folded.sort_by(|a, b| a.len().cmp(&b.len()).then(a.cmp(b)));
    folded.dedup();
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for a in folded {
        if !kept.iter().any(|k| a.starts_with(k)) {
            kept.push(a);
        }
    }
    kept
}

/// For each anchor, the (literal, offset) pairs it stands for: each literal goes to the first
/// anchor it contains, at its first place there. That anchor matches wherever the literal
/// does, so the literal is checked once per occurrence, and reported once.
fn assign(anchors: &[Vec<u8>], literals: &[Literal]) -> Vec<Vec<(usize, usize)>> {
    let mut covers = vec![Vec::new(); anchors.len()];
    for (i, l) in literals.iter().enumerate() {
        let first = anchors.iter().enumerate().find_map(|(a, anchor)| {
            let k = l.folded.windows(anchor.len()).position(|w| w == anchor)?;
            Some((a, k))
        });
        // Every literal contains an anchor: they were chosen so.
        if let Some((a, k)) = first {
            covers[a].push((i, k));
        }
    }
    covers
}

/// One file's search state: the folded bytes of the current piece, after the carried tail.
#[derive(Default)]
pub(crate) struct Stream {
    /// Folded: the tail (`tail` bytes carried from before), then the piece being searched.
    buf: Vec<u8>,
    tail: usize,
    /// The tail as it was in the file, for the evidence of a literal that starts in it.
    raw_tail: Vec<u8>,
}

impl Stream {
    /// Forgets the file.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.tail = 0;
        self.raw_tail.clear();
    }

    /// Searches the next `slice` of the file, which starts at file offset `at`. `hit(rule,
    /// pattern, offset, text)` is called for each literal occurrence that ends in this slice
    /// (text as it appears in the file).
    pub fn scan(
        &mut self,
        lits: &Literals,
        slice: &[u8],
        at: u64,
        mut hit: impl FnMut(usize, usize, u64, &[u8]),
    ) {
        for (i, piece) in slice.chunks(PIECE).enumerate() {
            self.scan_piece(lits, piece, at + (i * PIECE) as u64, &mut hit);
        }
    }

    fn scan_piece(
        &mut self,
        lits: &Literals,
        piece: &[u8],
        at: u64,
        hit: &mut impl FnMut(usize, usize, u64, &[u8]),
    ) {
        self.buf.truncate(self.tail);
        // An exact-size iterator over a slice: one reservation, and the fold is vectorised.
        self.buf.extend(piece.iter().map(|&b| fold(b)));
        let (buf, tail) = (&self.buf, self.tail);
        let start_at = at - tail as u64;
        // Where folded bytes match literal `lit` at [s, e) of the buffer: reported if the file's
        // bytes are the literal (ignoring ASCII case), unless it lies wholly in the tail (the
        // previous piece reported it).
        let mut found = |lit: usize, s: usize, e: usize| {
            if e <= tail {
                return;
            }
            let lower = &lits.literals[lit].lower;
            let joined;
            let text = if s >= tail {
                &piece[s - tail..e - tail]
            } else {
                joined = [&self.raw_tail[s..], &piece[..e - tail]].concat();
                &joined[..]
            };
            if !text.eq_ignore_ascii_case(lower) {
                return;
            }
            for &(rule, pattern) in &lits.literals[lit].owners {
                hit(rule, pattern, start_at + s as u64, text);
            }
        };
        match &lits.finder {
            Finder::Anchors { teddy, covers, .. } => {
                let mut pos = 0;
                while let Some(m) = teddy.find_in(buf, Span::from(pos..buf.len())) {
                    let s = m.start();
                    for &(lit, k) in &covers[m.pattern().as_usize()] {
                        let Some(start) = s.checked_sub(k) else {
                            continue;
                        };
                        let folded = &lits.literals[lit].folded;
                        let end = start + folded.len();
                        // Most candidates differ in their last byte: look there before comparing
                        // the whole literal.
                        if buf.get(end - 1) == folded.last() && buf[start..end] == folded[..] {
                            found(lit, start, end);
                        }
                    }
                    // Anchors can overlap each other: look again one byte on.
                    pos = s + 1;
                }
            }
            Finder::Automaton(ac) => {
                for m in ac.find_overlapping_iter(buf.as_slice()) {
                    found(m.pattern().as_usize(), m.start(), m.end());
                }
            }
        }
        // Carry the last `overlap` bytes, folded and raw.
        let keep = lits.overlap.min(self.buf.len());
        let raw_keep = keep.saturating_sub(piece.len());
        let from = self.raw_tail.len() - raw_keep;
        self.raw_tail.drain(..from);
        self.raw_tail
            .extend_from_slice(&piece[piece.len() - (keep - raw_keep)..]);
        let cut = self.buf.len() - keep;
        self.buf.copy_within(cut.., 0);
        self.buf.truncate(keep);
        self.tail = keep;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (rule, pattern, offset) a plain search of the whole text finds.
    fn reference(given: &[(&str, usize, usize)], text: &[u8]) -> Vec<(usize, usize, u64)> {
        let lower = text.to_ascii_lowercase();
        let mut out = Vec::new();
        for &(lit, rule, pattern) in given {
            let l = lit.to_ascii_lowercase().into_bytes();
            for (i, w) in lower.windows(l.len()).enumerate() {
                if w == l.as_slice() {
                    out.push((rule, pattern, i as u64));
                }
            }
        }
        out.sort_unstable();
        out
    }

    fn streamed(lits: &Literals, text: &[u8], cuts: &[usize]) -> Vec<(usize, usize, u64)> {
        let mut stream = Stream::default();
        let mut out = Vec::new();
        let mut at = 0;
        for &len in cuts.iter().cycle() {
            if at >= text.len() {
                break;
            }
            let end = (at + len).min(text.len());
            stream.scan(lits, &text[at..end], at as u64, |r, p, o, t| {
                assert!(
                    text[o as usize..].starts_with(t),
                    "evidence is the file's text"
                );
                out.push((r, p, o));
            });
            at = end;
        }
        // Sorted, not deduplicated: each occurrence is reported once.
        out.sort_unstable();
        out
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    const GIVEN: &[(&str, usize, usize)] = &[
        ("stratum+tcp://", 0, 0),
        ("stratum+ssl://", 0, 1),
        ("stratum://", 0, 2),
        ("xmrig", 1, 0),
        ("XMRig/%s libuv/%s%s", 1, 1),
        ("pool.supportxmr.com", 2, 0),
        ("supportxmr", 2, 1),
        ("moneroocean", 2, 2),
        ("monero", 3, 0),
        ("aaaa", 4, 0),
        ("aaaab", 4, 1),
        ("UPX!", 5, 0),
        ("ab", 6, 0),
        ("--donate-level", 7, 0),
        ("xmrig", 8, 0),
        ("a b@", 9, 0),
        ("a`b", 9, 1),
    ];

    #[test]
    fn anchors_cover_every_literal_and_share_windows() {
        let lower: Vec<Vec<u8>> = GIVEN
            .iter()
            .map(|(l, ..)| l.to_ascii_lowercase().into_bytes())
            .collect();
        let anchors = anchors(&lower);
        for l in &lower {
            assert!(
                anchors.iter().any(|a| l.windows(a.len()).any(|w| w == a)),
                "{:?} has no anchor in {anchors:?}",
                String::from_utf8_lossy(l)
            );
        }
        for a in &anchors {
            assert!(!anchors.iter().any(|b| b != a && a.starts_with(b)));
        }
        // Seventeen literals, far fewer anchors: the stratum schemes share one, and so on.
        assert!(anchors.len() <= 10, "{anchors:?}");
        assert_eq!(anchors, super::anchors(&lower), "deterministic");
    }

    #[test]
    fn streaming_finds_exactly_what_a_whole_text_search_finds() {
        let mut rng = Rng(0x5eed);
        for round in 0..60 {
            // Text over a small alphabet so literals and near-misses are frequent, with
            // literals planted (in mixed case) at random places.
            let len = 2_000 + (rng.next() % 150_000) as usize;
            let mut text: Vec<u8> = (0..len)
                .map(|_| b"aAbx:/ +mo\0@`A"[(rng.next() % 14) as usize])
                .collect();
            for _ in 0..40 {
                let (lit, ..) = GIVEN[(rng.next() % GIVEN.len() as u64) as usize];
                let at = (rng.next() % (len - lit.len()) as u64) as usize;
                for (i, b) in lit.bytes().enumerate() {
                    text[at + i] = if rng.next() % 2 == 0 {
                        b.to_ascii_uppercase()
                    } else {
                        b
                    };
                }
            }
            let want = reference(GIVEN, &text);
            let cuts: Vec<usize> = (0..5).map(|_| 1 + (rng.next() % 70_000) as usize).collect();
            for teddy in [true, false] {
                let lits = Literals::build(GIVEN.iter().copied(), teddy).unwrap();
                for cuts in [&cuts[..], &[1, 2, 3][..], &[PIECE + 7][..], &[len][..]] {
                    assert_eq!(
                        streamed(&lits, &text, cuts),
                        want,
                        "round {round}, teddy {teddy}, cuts {cuts:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_literal_split_across_slices_reports_its_text_as_in_the_file() {
        let lits = Literals::new([("Stratum+TCP://", 0, 0)]).unwrap();
        let mut stream = Stream::default();
        let mut seen = Vec::new();
        for (at, part) in [(0u64, &b"url: STRAT"[..]), (10, b"UM+tcp://pool")] {
            stream.scan(&lits, part, at, |r, p, o, t| {
                seen.push((r, p, o, String::from_utf8_lossy(t).into_owned()))
            });
        }
        assert_eq!(seen, vec![(0, 0, 5, "STRATUM+tcp://".to_string())]);
    }
}
