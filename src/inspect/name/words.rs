//! Words: the dictionary that tells real words from typos, and cutting a name into words.

use std::collections::HashSet;

/// English and software words (`config/names/words.txt`): a name that is one of these is not a
/// typo of a popular name, and with the popular names they train the readability model.
const WORDS: &str = include_str!("../../../config/names/words.txt");

/// English words a letter or two from a popular name, or that look random
/// (`config/names/near-words.txt`): real words, not typos or random names.
const NEAR_WORDS: &str = include_str!("../../../config/names/near-words.txt");

/// The words of `config/names/words.txt`, in file order, repeats included. (Generic in `'a`, as a
/// `&'static str` string was, so they chain with shorter-lived names.)
pub(super) fn word_list<'a>() -> impl Iterator<Item = &'a str> {
    entries(WORDS)
}

/// The words of `config/names/near-words.txt`, in file order.
pub(super) fn near_word_list<'a>() -> impl Iterator<Item = &'a str> {
    entries(NEAR_WORDS)
}

/// A list's words: `#` lines are comments, and the rest is split on whitespace as the lists were
/// when they were strings in the code, so a line holding two words still gives both.
fn entries(list: &str) -> impl Iterator<Item = &str> {
    list.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
}

/// `s` cut into words of `vocab`, if it can be.
pub(super) fn segment<'s>(s: &'s str, vocab: &HashSet<String>) -> Option<Vec<&'s str>> {
    if s.is_empty() {
        return None;
    }
    // back[i]: where the last word of a segmentation of s[..i] starts.
    let mut back: Vec<Option<usize>> = vec![None; s.len() + 1];
    for end in 1..=s.len() {
        back[end] = (0..end)
            .find(|&start| (start == 0 || back[start].is_some()) && vocab.contains(&s[start..end]));
    }
    back[s.len()]?;
    let mut words = Vec::new();
    let mut end = s.len();
    while end > 0 {
        let start = back[end]?;
        words.push(&s[start..end]);
        end = start;
    }
    words.reverse();
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lists hold what they held as strings in the code: a comment line that lost its `#`, or
    /// a cut file, shows here rather than as a quiet change in what gets flagged.
    #[test]
    fn word_lists_parse_to_every_word() {
        let words: Vec<&str> = word_list().collect();
        let near: Vec<&str> = near_word_list().collect();
        assert_eq!((words.len(), near.len()), (1762, 190));
        // `java`, `node`, `rust` and `spring` are listed twice; the readability model counts both.
        assert_eq!(words.iter().collect::<HashSet<_>>().len(), 1758);
        assert_eq!(near.iter().collect::<HashSet<_>>().len(), 190);
        assert_eq!((words[0], words[words.len() - 1]), ("a", "java"));
        assert_eq!((near[0], near[near.len() - 1]), ("admire", "nodded"));
        assert!(words.iter().chain(&near).all(|w| w
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())));
    }
}
