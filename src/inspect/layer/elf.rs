//! The little of ELF the layer inspector needs: is it one, does it have section headers, and how
//! random does its start look (packed binaries are near 8 bits per byte).

pub(crate) const MAGIC: &[u8; 4] = b"\x7fELF";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ElfInfo {
    pub e_type: u16,
    /// Number of section headers; 0 in packed binaries (UPX and others strip them).
    pub shnum: u16,
}

/// The ELF header fields, or `None` when `head` is not a (complete) ELF header.
pub(crate) fn parse(head: &[u8]) -> Option<ElfInfo> {
    if head.len() < 52 || !head.starts_with(MAGIC) {
        return None;
    }
    let little = match head[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = head.get(at..at + 2)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let shnum_at = match head[4] {
        1 => 48,
        2 => 60,
        _ => return None,
    };
    Some(ElfInfo {
        e_type: u16_at(16)?,
        shnum: u16_at(shnum_at)?,
    })
}

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// A minimal 64-bit little-endian ELF header (for tests: inert, not runnable).
#[cfg(test)]
pub(crate) fn fake_header(e_type: u16, shnum: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(MAGIC);
    h[4] = 2; // 64-bit
    h[5] = 1; // little-endian
    h[6] = 1; // version
    h[16..18].copy_from_slice(&e_type.to_le_bytes());
    h[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    h[60..62].copy_from_slice(&shnum.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_are_read_and_junk_refused() {
        let h = fake_header(2, 27);
        assert_eq!(
            parse(&h),
            Some(ElfInfo {
                e_type: 2,
                shnum: 27
            })
        );
        assert_eq!(parse(&h[..40]), None);
        assert_eq!(parse(b"#!/bin/sh\n"), None);
        let mut bad = h.clone();
        bad[4] = 9;
        assert_eq!(parse(&bad), None);
    }

    #[test]
    fn entropy_separates_text_from_noise() {
        assert!(entropy(&b"aaaa".repeat(100)) < 0.01);
        let noise: Vec<u8> = (0..65536u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        assert!(entropy(&noise) > 7.5, "{}", entropy(&noise));
        assert_eq!(entropy(&[]), 0.0);
    }
}
