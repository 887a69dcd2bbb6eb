//! `Range: bytes=…` for blobs (RFC 9110 §14). One range is served as 206; several, or a header
//! that cannot be parsed, are ignored and the whole blob is served (clients accept a 200).

/// One byte range as the client wrote it, before the blob's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `a-b` (inclusive) or `a-` (to the end).
    From { start: u64, end: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses a single-range header; `None` means "serve the whole blob".
    pub fn parse(header: &str) -> Option<ByteRange> {
        let spec = header.trim().strip_prefix("bytes=")?;
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.trim().split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() {
            return b.parse().ok().map(ByteRange::Suffix);
        }
        let start = a.parse().ok()?;
        let end = if b.is_empty() {
            None
        } else {
            Some(b.parse().ok()?)
        };
        if end.is_some_and(|e| e < start) {
            return None;
        }
        Some(ByteRange::From { start, end })
    }

    /// The inclusive `(first, last)` byte positions for a blob of `size` bytes, or `None` when the
    /// range cannot be satisfied (416).
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        if size == 0 {
            return None;
        }
        match self {
            ByteRange::From { start, end } => {
                (start < size).then(|| (start, end.map_or(size - 1, |e| e.min(size - 1))))
            }
            ByteRange::Suffix(0) => None,
            ByteRange::Suffix(n) => Some((size.saturating_sub(n), size - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_ranges() {
        assert_eq!(
            ByteRange::parse("bytes=0-99"),
            Some(ByteRange::From {
                start: 0,
                end: Some(99)
            })
        );
        assert_eq!(
            ByteRange::parse("bytes=100-"),
            Some(ByteRange::From {
                start: 100,
                end: None
            })
        );
        assert_eq!(ByteRange::parse("bytes=-5"), Some(ByteRange::Suffix(5)));
        assert_eq!(
            ByteRange::parse("bytes=0-1,4-5"),
            None,
            "multi-range is served whole"
        );
        assert_eq!(ByteRange::parse("bytes=9-3"), None);
        assert_eq!(ByteRange::parse("items=0-1"), None);
        assert_eq!(ByteRange::parse("bytes=x-1"), None);
    }

    #[test]
    fn resolves_against_the_size() {
        assert_eq!(
            ByteRange::parse("bytes=0-99").unwrap().resolve(50),
            Some((0, 49))
        );
        assert_eq!(
            ByteRange::parse("bytes=10-").unwrap().resolve(50),
            Some((10, 49))
        );
        assert_eq!(
            ByteRange::parse("bytes=-5").unwrap().resolve(50),
            Some((45, 49))
        );
        assert_eq!(
            ByteRange::parse("bytes=-500").unwrap().resolve(50),
            Some((0, 49))
        );
        assert_eq!(ByteRange::parse("bytes=50-").unwrap().resolve(50), None);
        assert_eq!(ByteRange::parse("bytes=-0").unwrap().resolve(50), None);
    }
}
