//! Hard-to-read names: hex-like components and a character-bigram readability model.

use super::similarity::{flatten, is_vowel};
use super::NameInspector;
use std::fmt;

/// Why a name component reads as random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Randomness {
    /// Eight or more hex digits with digits among them (`c43602f9cc95`, `700888880a0`).
    Hex,
    /// Unlike English and popular names: unlikely letter pairs, digits mixed into letters, long
    /// consonant runs, few repeated characters.
    Unreadable,
}

impl fmt::Display for Randomness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Randomness::Hex => "hex, random-looking",
            Randomness::Unreadable => "hard-to-read, random-looking",
        })
    }
}

/// Tokens shorter than this are not judged: acronyms (`lts`, `ssh`, `k8s`) are short.
const MIN_RANDOM_LEN: usize = 6;
/// [`Bigrams::unreadability`] at or above this reads as random.
const RANDOM_THRESHOLD: f32 = 4.25;

/// `^[0-9a-f]{8,}$` (delimiters allowed) with at least two digits, so words spelt in hex letters
/// (`deadbeef`, `facade`) are not taken for it.
pub(super) fn is_hex_like(component: &str) -> bool {
    let flat = flatten(component);
    flat.len() >= 8
        && flat.bytes().all(|b| b.is_ascii_hexdigit())
        && flat.bytes().filter(u8::is_ascii_digit).count() >= 2
}

/// Symbols of the character model: 0 is a word boundary, 1–26 the letters, 27 any digit.
const SYMBOLS: usize = 28;

fn symbol(b: u8) -> usize {
    match b {
        b'a'..=b'z' => usize::from(b - b'a') + 1,
        b'0'..=b'9' => 27,
        _ => 0,
    }
}

/// A character-bigram model of English words and popular image names: log P(next | previous).
#[derive(Debug)]
pub(super) struct Bigrams {
    log_p: Vec<f32>,
}

impl Bigrams {
    pub(super) fn train<'a>(words: impl Iterator<Item = &'a str>) -> Bigrams {
        let mut counts = vec![0u32; SYMBOLS * SYMBOLS];
        for word in words {
            for token in word.split(['.', '_', '-']) {
                let mut prev = 0;
                for b in token.bytes().chain(std::iter::once(b' ')) {
                    let s = symbol(b);
                    counts[prev * SYMBOLS + s] += 1;
                    prev = s;
                }
            }
        }
        // Add-k smoothing keeps unseen pairs possible but unlikely.
        const K: f32 = 0.1;
        let mut log_p = vec![0f32; SYMBOLS * SYMBOLS];
        for a in 0..SYMBOLS {
            let row = &counts[a * SYMBOLS..(a + 1) * SYMBOLS];
            let total: u32 = row.iter().sum();
            for (b, &c) in row.iter().enumerate() {
                log_p[a * SYMBOLS + b] =
                    ((c as f32 + K) / (total as f32 + K * SYMBOLS as f32)).ln();
            }
        }
        Bigrams { log_p }
    }

    /// The mean negative log-likelihood of the token's letter pairs, word boundaries included;
    /// digits count as boundaries (their alternation with letters is scored apart).
    fn surprise(&self, token: &str) -> f32 {
        let mut prev = 0;
        let mut sum = 0.0;
        let mut n = 0;
        for b in token.bytes().chain(std::iter::once(b' ')) {
            let s = if b.is_ascii_lowercase() { symbol(b) } else { 0 };
            if s == 0 && prev == 0 {
                continue;
            }
            sum -= self.log_p[prev * SYMBOLS + s];
            prev = s;
            n += 1;
        }
        if n == 0 {
            0.0
        } else {
            sum / n as f32
        }
    }

    /// How random a token reads: the bigram surprise, raised by letter/digit alternation, long
    /// consonant runs, a lack of vowels and near-maximal entropy. Not entropy alone: syllable
    /// generators beat it, and real words can have it.
    fn unreadability(&self, token: &str) -> f32 {
        let bytes = token.as_bytes();
        let letters = bytes.iter().filter(|b| b.is_ascii_lowercase()).count();
        let vowels = bytes.iter().filter(|&&b| is_vowel(b) || b == b'y').count();
        let digits = bytes.len() - letters;
        let alternations = bytes
            .windows(2)
            .filter(|w| w[0].is_ascii_digit() != w[1].is_ascii_digit())
            .count();
        let mut run = 0usize;
        let mut longest_run = 0usize;
        for &b in bytes {
            if b.is_ascii_lowercase() && !is_vowel(b) && b != b'y' {
                run += 1;
                longest_run = longest_run.max(run);
            } else {
                run = 0;
            }
        }
        let mut score = self.surprise(token);
        score += 0.3 * alternations.saturating_sub(1) as f32;
        score += 0.4 * longest_run.saturating_sub(4) as f32;
        if letters >= 4 && vowels == 0 {
            score += 0.8;
        }
        if digits > 0 && letters > 0 && digits * 4 >= bytes.len() {
            score += 0.3;
        }
        if bytes.len() >= 8 && entropy(bytes) >= 0.95 * (bytes.len() as f32).log2() {
            score += 0.3;
        }
        score
    }
}

/// Shannon entropy in bits per character.
fn entropy(bytes: &[u8]) -> f32 {
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}

impl NameInspector {
    /// Whether a name component is hex-like or hard to read (not pronounceable as words).
    pub(super) fn randomness(&self, component: &str) -> Option<Randomness> {
        if is_hex_like(component) {
            return Some(Randomness::Hex);
        }
        component
            .split(['.', '_', '-'])
            .filter(|t| t.len() >= MIN_RANDOM_LEN && !self.words.contains(t))
            .any(|t| self.model.unreadability(t) >= RANDOM_THRESHOLD)
            .then_some(Randomness::Unreadable)
    }
}
