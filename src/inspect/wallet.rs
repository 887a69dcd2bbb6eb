//! Monero address validation: a regex hit only counts once its base58 decoding and Keccak-256
//! checksum hold, which removes nearly every false positive from random base58 text.
//!
//! Monero base58 encodes 8-byte blocks as 11 characters (a short last block uses the table in
//! [`ENCODED_BLOCK_SIZES`]); the decoded bytes are a varint network tag, the payload, and the first
//! four bytes of Keccak-256 over everything before them.

use tiny_keccak::{Hasher, Keccak};

const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// Encoded length of a block of `i` bytes.
const ENCODED_BLOCK_SIZES: [usize; 9] = [0, 2, 3, 5, 6, 7, 9, 10, 11];
const FULL_BLOCK: usize = 8;
const FULL_ENCODED_BLOCK: usize = 11;

/// Which Monero network an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Mainnet,
    Testnet,
    Stagenet,
}

/// The address kinds, by network tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    Standard,
    Subaddress,
    Integrated,
}

/// Network and kind of a valid address, `None` for anything else.
pub fn monero_address(text: &str) -> Option<(Network, AddressKind)> {
    let bytes = decode(text.as_bytes())?;
    let (network, kind) = match bytes.first()? {
        18 => (Network::Mainnet, AddressKind::Standard),
        42 => (Network::Mainnet, AddressKind::Subaddress),
        19 => (Network::Mainnet, AddressKind::Integrated),
        53 => (Network::Testnet, AddressKind::Standard),
        63 => (Network::Testnet, AddressKind::Subaddress),
        54 => (Network::Testnet, AddressKind::Integrated),
        24 => (Network::Stagenet, AddressKind::Standard),
        36 => (Network::Stagenet, AddressKind::Subaddress),
        25 => (Network::Stagenet, AddressKind::Integrated),
        _ => return None,
    };
    // Tag (1) + spend key (32) + view key (32) [+ payment id (8)] + checksum (4).
    let expected = if kind == AddressKind::Integrated {
        77
    } else {
        69
    };
    if bytes.len() != expected {
        return None;
    }
    let (body, checksum) = bytes.split_at(bytes.len() - 4);
    (keccak256(body)[..4] == *checksum).then_some((network, kind))
}

/// Whether `text` is a valid Monero address (any network, any kind).
pub fn validate_monero(text: &str) -> bool {
    monero_address(text).is_some()
}

/// A pool `user` field without its worker, difficulty or password suffix (`ADDR.worker`,
/// `ADDR+diff`, `ADDR:pass`).
pub fn strip_worker_suffix(user: &str) -> &str {
    user.split(['.', '+', ':']).next().unwrap_or(user).trim()
}

pub(crate) fn keccak256(data: &[u8]) -> [u8; 32] {
    let mut k = Keccak::v256();
    k.update(data);
    let mut out = [0u8; 32];
    k.finalize(&mut out);
    out
}

fn digit(c: u8) -> Option<u64> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u64)
}

/// Monero base58 decoding; `None` on a bad character, a bad block length or a block overflow.
fn decode(text: &[u8]) -> Option<Vec<u8>> {
    // Addresses are at most 106 characters; refuse anything much longer before allocating.
    if text.is_empty() || text.len() > 256 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / FULL_ENCODED_BLOCK * FULL_BLOCK + FULL_BLOCK);
    for block in text.chunks(FULL_ENCODED_BLOCK) {
        let size = ENCODED_BLOCK_SIZES.iter().position(|&n| n == block.len())?;
        let mut num: u128 = 0;
        for &c in block {
            num = num * 58 + u128::from(digit(c)?);
        }
        if num >> (8 * size) != 0 {
            return None;
        }
        out.extend_from_slice(&num.to_be_bytes()[16 - size..]);
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Monero base58 encoding, for building test addresses.
    pub(crate) fn encode(data: &[u8]) -> String {
        let mut out = String::new();
        for block in data.chunks(FULL_BLOCK) {
            let mut num = block.iter().fold(0u128, |n, &b| (n << 8) | u128::from(b));
            let len = ENCODED_BLOCK_SIZES[block.len()];
            let mut chars = vec![b'1'; len];
            for slot in chars.iter_mut().rev() {
                *slot = ALPHABET[(num % 58) as usize];
                num /= 58;
            }
            out.push_str(std::str::from_utf8(&chars).unwrap());
        }
        out
    }

    /// A checksum-valid, made-up address with the given network tag and payload length.
    pub(crate) fn made_up_address(tag: u8, seed: u8, payload: usize) -> String {
        let mut data = vec![tag];
        data.extend((0..payload).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
        let sum = keccak256(&data);
        data.extend_from_slice(&sum[..4]);
        encode(&data)
    }

    #[test]
    fn a_published_address_validates() {
        // The Monero General Fund donation address, as published by the Monero project.
        let fund = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";
        assert_eq!(fund.len(), 95);
        assert_eq!(
            monero_address(fund),
            Some((Network::Mainnet, AddressKind::Standard))
        );
    }

    #[test]
    fn made_up_addresses_round_trip_and_checksums_bite() {
        let std = made_up_address(18, 7, 64);
        assert_eq!(std.len(), 95);
        assert!(std.starts_with('4'));
        assert!(validate_monero(&std));
        let sub = made_up_address(42, 9, 64);
        assert!(sub.starts_with('8'));
        assert_eq!(
            monero_address(&sub),
            Some((Network::Mainnet, AddressKind::Subaddress))
        );
        let integrated = made_up_address(19, 3, 72);
        assert_eq!(integrated.len(), 106);
        assert_eq!(
            monero_address(&integrated),
            Some((Network::Mainnet, AddressKind::Integrated))
        );

        // One changed character breaks the checksum (or the block).
        let mut broken = std.clone().into_bytes();
        broken[50] = if broken[50] == b'A' { b'B' } else { b'A' };
        assert!(!validate_monero(std::str::from_utf8(&broken).unwrap()));
        // Wrong tag or wrong length.
        assert!(!validate_monero(&made_up_address(99, 7, 64)));
        assert!(!validate_monero(&made_up_address(18, 7, 60)));
    }

    #[test]
    fn junk_is_refused_without_panicking() {
        for s in [
            "",
            "0OIl",
            "4",
            &"z".repeat(95),
            &"4".repeat(300),
            "YOUR_WALLET_ADDRESS",
        ] {
            assert!(!validate_monero(s), "{s}");
        }
    }

    #[test]
    fn worker_suffixes_are_stripped() {
        assert_eq!(strip_worker_suffix("4abc.rig1"), "4abc");
        assert_eq!(strip_worker_suffix("4abc+50000"), "4abc");
        assert_eq!(strip_worker_suffix("4abc:x"), "4abc");
        assert_eq!(strip_worker_suffix("4abc"), "4abc");
    }
}
