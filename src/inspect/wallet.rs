//! Monero wallet addresses: finding them in text and proving they are real.
//!
//! A validated wallet is the single best miner indicator (indicators.md §4.3, §6): it almost never
//! appears in a legitimate application image, and it links images of one campaign. A regex alone is
//! not enough, because any 95-character run of base58 (keys, hashes, minified JS) looks like an
//! address. So every candidate is decoded with Monero's base58 variant, its network byte is checked
//! against the address type its length implies, and its 4-byte checksum (original Keccak-256, not
//! SHA3) must match: a random string passes with odds of about 2⁻³².
//!
//! Layout: `network byte ‖ public spend key (32) ‖ public view key (32) [‖ payment id (8)] ‖
//! checksum (4)`: 69 bytes (95 characters) for standard addresses and subaddresses, 77 bytes
//! (106 characters) for integrated addresses. Pool `user` fields append `.worker`, `+diff` or
//! `:password`; those separators are not base58, so a candidate ends there by itself.

use regex::bytes::Regex;
use std::sync::LazyLock;
use tiny_keccak::{Hasher, Keccak};

/// Monero's base58 alphabet (Bitcoin's: no `0`, `O`, `I`, `l`).
pub const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Bytes per full block and the characters it encodes to.
const FULL_BLOCK: usize = 8;
const FULL_ENCODED: usize = 11;
/// Characters used to encode a block of `n` bytes, for `n` in `0..=8`.
const ENCODED_SIZES: [usize; FULL_BLOCK + 1] = [0, 2, 3, 5, 6, 7, 9, 10, 11];

/// Characters in a standard address or subaddress (69 bytes).
pub const STANDARD_LEN: usize = 95;
/// Characters in an integrated address (77 bytes).
pub const INTEGRATED_LEN: usize = 106;
const CHECKSUM_LEN: usize = 4;

/// Which Monero network an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    Mainnet,
    Testnet,
    Stagenet,
}

/// What the address is, by its network byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressType {
    /// Network byte 18 on mainnet (leading `4`).
    Standard,
    /// Network byte 19 on mainnet (leading `4`, 106 characters): carries a payment id.
    Integrated,
    /// Network byte 42 on mainnet (leading `8`).
    Subaddress,
}

/// The network and type of a validated address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WalletKind {
    pub network: Network,
    pub address: AddressType,
}

impl WalletKind {
    /// Whether the address can hold real money. Testnet and stagenet addresses are "test
    /// wallets": worth a low-severity note, not a miner verdict.
    pub fn is_mainnet(self) -> bool {
        self.network == Network::Mainnet
    }

    /// The network byte (a one-byte varint for every known network).
    pub fn network_byte(self) -> u8 {
        use AddressType::*;
        use Network::*;
        match (self.network, self.address) {
            (Mainnet, Standard) => 18,
            (Mainnet, Integrated) => 19,
            (Mainnet, Subaddress) => 42,
            (Testnet, Standard) => 53,
            (Testnet, Integrated) => 54,
            (Testnet, Subaddress) => 63,
            (Stagenet, Standard) => 24,
            (Stagenet, Integrated) => 25,
            (Stagenet, Subaddress) => 36,
        }
    }

    fn from_network_byte(byte: u8) -> Option<WalletKind> {
        use AddressType::*;
        use Network::*;
        let (network, address) = match byte {
            18 => (Mainnet, Standard),
            19 => (Mainnet, Integrated),
            42 => (Mainnet, Subaddress),
            53 => (Testnet, Standard),
            54 => (Testnet, Integrated),
            63 => (Testnet, Subaddress),
            24 => (Stagenet, Standard),
            25 => (Stagenet, Integrated),
            36 => (Stagenet, Subaddress),
            _ => return None,
        };
        Some(WalletKind { network, address })
    }

    /// The decoded length in bytes an address of this type has.
    fn byte_len(self) -> usize {
        match self.address {
            AddressType::Integrated => 77,
            AddressType::Standard | AddressType::Subaddress => 69,
        }
    }
}

/// A validated wallet address at `text[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletHit {
    pub start: usize,
    pub end: usize,
    pub kind: WalletKind,
}

/// Maximal runs of base58 characters long enough to be an address. A run longer than an
/// integrated address is some other blob, and the length filter below drops it.
static CANDIDATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("[1-9A-HJ-NP-Za-km-z]{95,}").expect("candidate regex compiles"));

/// Every Monero address in `text` whose checksum validates, mainnet and test networks alike.
/// A candidate must be a whole base58 run of exactly 95 or 106 characters; anything glued to
/// base58 characters on either side is not an address.
pub fn find_wallets(text: &[u8]) -> Vec<WalletHit> {
    CANDIDATE
        .find_iter(text)
        .filter(|m| matches!(m.len(), STANDARD_LEN | INTEGRATED_LEN))
        .filter_map(|m| {
            parse_address(m.as_bytes()).map(|kind| WalletHit {
                start: m.start(),
                end: m.end(),
                kind,
            })
        })
        .collect()
}

/// The kind of a Monero address, if `address` is one: base58 decodes, the network byte is known
/// and fits the length, and the Keccak-256 checksum matches.
pub fn parse_address(address: &[u8]) -> Option<WalletKind> {
    if !matches!(address.len(), STANDARD_LEN | INTEGRATED_LEN) {
        return None;
    }
    let bytes = decode_base58(address)?;
    let kind = WalletKind::from_network_byte(*bytes.first()?)?;
    if bytes.len() != kind.byte_len() {
        return None;
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    (keccak256(body)[..CHECKSUM_LEN] == *checksum).then_some(kind)
}

/// Original Keccak-256 (the pre-SHA3 padding Monero uses).
/// Whether `text` is exactly one valid Monero address (any network).
pub fn validate_monero(text: &str) -> bool {
    parse_address(text.trim().as_bytes()).is_some()
}

/// A pool `user` field without its worker, difficulty or password suffix (`.w1`, `+5000`, `:x`).
pub fn strip_worker_suffix(user: &str) -> &str {
    user.split(['.', '+', ':']).next().unwrap_or(user).trim()
}

pub fn keccak256(data: &[u8]) -> [u8; 32] {
    let mut hasher = Keccak::v256();
    hasher.update(data);
    let mut out = [0u8; 32];
    hasher.finalize(&mut out);
    out
}

/// Decodes Monero base58: 11-character blocks to 8 bytes each, the last partial block per
/// [`ENCODED_SIZES`]. `None` for characters outside the alphabet, impossible partial-block
/// lengths and blocks whose value overflows their byte size.
pub fn decode_base58(text: &[u8]) -> Option<Vec<u8>> {
    let full_blocks = text.len() / FULL_ENCODED;
    let rest = text.len() % FULL_ENCODED;
    let last_size = ENCODED_SIZES.iter().position(|&n| n == rest)?;
    let mut out = Vec::with_capacity(full_blocks * FULL_BLOCK + last_size);
    for block in text.chunks(FULL_ENCODED) {
        let size = if block.len() == FULL_ENCODED {
            FULL_BLOCK
        } else {
            last_size
        };
        decode_block(block, size, &mut out)?;
    }
    Some(out)
}

fn decode_block(block: &[u8], size: usize, out: &mut Vec<u8>) -> Option<()> {
    // 58^11 < 2^65, so a u128 cannot overflow while reading one block.
    let mut value: u128 = 0;
    for &c in block {
        let digit = ALPHABET.iter().position(|&a| a == c)?;
        value = value * 58 + digit as u128;
    }
    if value >> (8 * size) != 0 {
        return None;
    }
    out.extend_from_slice(&value.to_be_bytes()[16 - size..]);
    Some(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sha2::Digest as _;

    /// Monero base58 encoding, the inverse of `decode_base58`.
    fn encode_base58(data: &[u8]) -> String {
        let mut out = String::new();
        for block in data.chunks(FULL_BLOCK) {
            let mut value: u128 = 0;
            for &b in block {
                value = (value << 8) | u128::from(b);
            }
            let mut digits = vec![ALPHABET[0]; ENCODED_SIZES[block.len()]];
            for d in digits.iter_mut().rev() {
                *d = ALPHABET[(value % 58) as usize];
                value /= 58;
            }
            out.push_str(std::str::from_utf8(&digits).unwrap());
        }
        out
    }

    /// Deterministic "random" bytes: sha256 of a seed, repeated as needed.
    fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut counter = 0u64;
        while out.len() < len {
            let mut h = sha2::Sha256::new();
            h.update(seed.to_le_bytes());
            h.update(counter.to_le_bytes());
            out.extend_from_slice(&h.finalize());
            counter += 1;
        }
        out.truncate(len);
        out
    }

    /// An address with network byte `tag` and `payload` bytes of keys (64, or 72 with a payment
    /// id), made from `seed`, with a correct checksum.
    pub(crate) fn made_up_address(tag: u8, seed: u8, payload: usize) -> String {
        let mut data = vec![tag];
        data.extend((0..payload).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
        let sum = keccak256(&data);
        data.extend_from_slice(&sum[..CHECKSUM_LEN]);
        encode_base58(&data)
    }

    /// An address of `kind` with random keys (and payment id) and a correct checksum.
    pub(crate) fn make_address(kind: WalletKind, seed: u64) -> String {
        let mut bytes = vec![kind.network_byte()];
        bytes.extend(pseudo_random(seed, kind.byte_len() - 1 - CHECKSUM_LEN));
        let checksum = keccak256(&bytes);
        bytes.extend_from_slice(&checksum[..CHECKSUM_LEN]);
        encode_base58(&bytes)
    }

    const MAINNET_STANDARD: WalletKind = WalletKind {
        network: Network::Mainnet,
        address: AddressType::Standard,
    };

    fn all_kinds() -> Vec<WalletKind> {
        let mut kinds = Vec::new();
        for network in [Network::Mainnet, Network::Testnet, Network::Stagenet] {
            for address in [
                AddressType::Standard,
                AddressType::Integrated,
                AddressType::Subaddress,
            ] {
                kinds.push(WalletKind { network, address });
            }
        }
        kinds
    }

    #[test]
    fn keccak_is_the_original_not_sha3() {
        // Keccak-256("") differs from SHA3-256("") (a7ffc6f8…).
        assert_eq!(
            hex::encode(keccak256(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn base58_round_trips_every_partial_block_size() {
        for len in 0..=40 {
            let data = pseudo_random(len as u64, len);
            let text = encode_base58(&data);
            assert_eq!(
                decode_base58(text.as_bytes()).as_deref(),
                Some(&data[..]),
                "len {len}"
            );
        }
        // All-zero and all-0xff blocks sit at the edges of the value range.
        for data in [vec![0u8; 13], vec![0xffu8; 13]] {
            assert_eq!(decode_base58(encode_base58(&data).as_bytes()), Some(data));
        }
    }

    #[test]
    fn base58_refuses_overflow_bad_lengths_and_bad_characters() {
        // 11 × 'z' is 58^11 − 1 > 2^64.
        assert_eq!(decode_base58(b"zzzzzzzzzzz"), None);
        // 2 characters hold at most one byte: "zz" = 3363 > 255.
        assert_eq!(decode_base58(b"zz"), None);
        // 1, 4 and 8 leftover characters encode no block size.
        for bad in ["1", "1111", "11111111"] {
            assert_eq!(decode_base58(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(decode_base58(b"0O"), None);
    }

    #[test]
    fn generated_addresses_of_every_kind_validate() {
        for kind in all_kinds() {
            for seed in 0..20 {
                let address = make_address(kind, seed);
                let expected_len = if kind.address == AddressType::Integrated {
                    INTEGRATED_LEN
                } else {
                    STANDARD_LEN
                };
                assert_eq!(address.len(), expected_len, "{kind:?}");
                assert_eq!(parse_address(address.as_bytes()), Some(kind), "{address}");
            }
        }
    }

    #[test]
    fn mainnet_prefixes_match_the_documented_leading_characters() {
        for seed in 0..20 {
            assert!(make_address(MAINNET_STANDARD, seed).starts_with('4'));
            let sub = WalletKind {
                network: Network::Mainnet,
                address: AddressType::Subaddress,
            };
            assert!(make_address(sub, seed).starts_with('8'));
        }
    }

    #[test]
    fn published_donation_addresses_validate() {
        // The Monero general fund's old (standard) and current (subaddress) donation addresses,
        // as published on getmonero.org: real-world addresses, not made by our encoder.
        let standard = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";
        let sub = "888tNkZrPN6JsEgekjMnABU4TBzc2Dt29EPAvkRxbANsAnjyPbb3iQ1YBRk1UXcdRsiKc9dhwMVgN5S9cQUiyoogDavup3H";
        assert_eq!(parse_address(standard.as_bytes()), Some(MAINNET_STANDARD));
        assert_eq!(
            parse_address(sub.as_bytes()).map(|k| k.address),
            Some(AddressType::Subaddress)
        );
    }

    #[test]
    fn a_bad_checksum_is_refused() {
        let good = make_address(MAINNET_STANDARD, 7);
        // Change one character in the middle: it stays base58 and 95 long.
        let mut bad = good.clone().into_bytes();
        bad[50] = if bad[50] == b'2' { b'3' } else { b'2' };
        assert_eq!(parse_address(&bad), None);
        assert!(find_wallets(&bad).is_empty());
        // A random 95-character base58 string (leading 4 like a real one) is refused.
        let random: String = std::iter::once('4')
            .chain(
                pseudo_random(99, 94)
                    .iter()
                    .map(|b| ALPHABET[*b as usize % 58] as char),
            )
            .collect();
        assert_eq!(random.len(), 95);
        assert_eq!(parse_address(random.as_bytes()), None);
        assert!(find_wallets(random.as_bytes()).is_empty());
    }

    #[test]
    fn wrong_length_or_alphabet_is_refused() {
        let good = make_address(MAINNET_STANDARD, 3);
        assert!(find_wallets(&good.as_bytes()[..94]).is_empty());
        assert!(find_wallets(format!("{good}z").as_bytes()).is_empty());
        assert!(find_wallets(format!("z{good}").as_bytes()).is_empty());
        // A character outside the alphabet splits the run.
        for c in ['0', 'O', 'I', 'l'] {
            let mut s = good.clone();
            s.replace_range(40..41, &c.to_string());
            assert!(find_wallets(s.as_bytes()).is_empty(), "{c}");
        }
        // A standard payload under an integrated network byte fails the length check.
        let mut bytes = vec![19u8];
        bytes.extend(pseudo_random(5, 64));
        let sum = keccak256(&bytes);
        bytes.extend_from_slice(&sum[..4]);
        assert_eq!(parse_address(encode_base58(&bytes).as_bytes()), None);
        // An unknown network byte fails even with a good checksum.
        let mut bytes = vec![17u8];
        bytes.extend(pseudo_random(5, 64));
        let sum = keccak256(&bytes);
        bytes.extend_from_slice(&sum[..4]);
        assert_eq!(parse_address(encode_base58(&bytes).as_bytes()), None);
    }

    #[test]
    fn finds_wallets_in_pool_user_fields_with_suffixes() {
        let w = make_address(MAINNET_STANDARD, 11);
        for suffix in [".worker1", "+50000", ":x", ".rig.x+1000:pass", ""] {
            let text = format!("xmrig -o pool:3333 -u {w}{suffix} -p x");
            let hits = find_wallets(text.as_bytes());
            assert_eq!(hits.len(), 1, "{suffix}");
            assert_eq!(&text[hits[0].start..hits[0].end], w);
            assert!(hits[0].kind.is_mainnet());
        }
        let text = format!("WALLET={w}");
        assert_eq!(find_wallets(text.as_bytes())[0].start, 7);
    }

    #[test]
    fn finds_several_and_tells_test_wallets_apart() {
        let main = make_address(MAINNET_STANDARD, 1);
        let integrated = make_address(
            WalletKind {
                network: Network::Mainnet,
                address: AddressType::Integrated,
            },
            2,
        );
        let test = make_address(
            WalletKind {
                network: Network::Testnet,
                address: AddressType::Standard,
            },
            3,
        );
        let text = format!("{main}\n\"{integrated}\", {test}");
        let hits = find_wallets(text.as_bytes());
        let kinds: Vec<_> = hits
            .iter()
            .map(|h| (h.kind.address, h.kind.is_mainnet()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (AddressType::Standard, true),
                (AddressType::Integrated, true),
                (AddressType::Standard, false)
            ]
        );
    }
}
