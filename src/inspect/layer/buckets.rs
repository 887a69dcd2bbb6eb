//! How the content search's anchors are spread over Teddy's buckets.
//!
//! Teddy (aho-corasick's SIMD searcher) sorts its patterns into buckets: 8 in its slim form,
//! which reads 32 bytes a step, or 16 in its fat form, which reads 16. For each bucket and each of
//! the first four bytes of a pattern, it keeps the set of low nibbles and the set of high nibbles
//! that the bucket's patterns have there. A byte passes if both its nibbles are in the sets, and a
//! place in the text is a candidate for the bucket when four bytes in a row pass; then every
//! pattern of the bucket is compared there. Anchors with alike bytes at each position make a
//! bucket that lets little through; unlike ones make a bucket that lets much through.
//!
//! aho-corasick (1.1, `packed/teddy/generic.rs`) fills the buckets in the order it is given the
//! patterns, round-robin from the last bucket down (pattern `i` into bucket `n - 1 - i % n`),
//! except that a pattern whose first bytes have the same low nibbles as an earlier one's joins
//! that one's bucket. So the order in which the anchors are handed over decides the buckets, and
//! [`arrange`] chooses that order. The order never changes what is found, only how fast.
//!
//! Measured with the built-in rules, candidate places per MB, anchors in byte order → arranged:
//! over the 42 MB of `/usr` that [`FREQ`] comes from, slim Teddy 8,000–130,000 → 1,700–2,100 and
//! fat Teddy 1,200–3,600 → 400–800; over the layer bench's synthetic layers (other data), fat
//! Teddy 500–3,800 → 30–1,300.

use std::collections::BTreeMap;

/// Bytes of each anchor that Teddy fingerprints.
const MASK: usize = 4;
/// Passes of pairwise swaps at most (it settles in a handful).
const PASSES: usize = 20;

/// How often each byte value occurs, per million bytes, over 42 MB of Debian's `/usr`: 6 MB each
/// of shared libraries, executables, `/usr/share/doc`, Perl modules, Python modules, man pages
/// and C headers. Only the relative sizes matter: they tell rare bytes from common ones.
#[rustfmt::skip]
const FREQ: [u32; 256] = [
    131991, 7488, 4308, 3248, 3799, 3287, 2328, 2262, 5135, 3921, 13184, 1866, 2146, 2282, 3461, 6893,
    3658, 2058, 2659, 1609, 1829, 1755, 1519, 1465, 2492, 1423, 1354, 1387, 1508, 1319, 1288, 2890,
    79718, 1556, 2970, 3361, 7393, 2109, 1526, 2695, 5379, 4897, 4379, 1654, 4733, 3440, 4853, 3387,
    3981, 4156, 2564, 2183, 2049, 1937, 1831, 1510, 2394, 2116, 3306, 3615, 2212, 3397, 2892, 1344,
    2892, 7116, 3073, 4307, 5290, 6153, 2844, 3830, 11733, 5641, 1410, 1732, 6738, 2968, 4109, 3356,
    4147, 1365, 4390, 4512, 5100, 2914, 1942, 1797, 2882, 1913, 1879, 1948, 2292, 2107, 1457, 10322,
    1762, 15509, 4901, 9354, 10909, 29057, 9963, 5386, 7333, 17530, 1771, 2747, 11106, 7113, 16472, 14932,
    7987, 1727, 16837, 15622, 22017, 8461, 3690, 3284, 3829, 4749, 1933, 2311, 2287, 2386, 1341, 1236,
    2404, 1370, 1293, 3169, 2790, 3039, 1359, 1253, 1649, 6591, 1198, 5001, 1443, 3204, 1308, 1225,
    1839, 1160, 1220, 1184, 1329, 1248, 1192, 1244, 1396, 1150, 1137, 1155, 1228, 1195, 1139, 1113,
    1719, 1110, 1170, 1237, 1220, 1164, 1446, 1141, 1348, 1184, 1146, 1444, 1208, 1179, 1144, 1186,
    1441, 1128, 1165, 1147, 1228, 1180, 1446, 1264, 1467, 1282, 1404, 1238, 1272, 1248, 1402, 1380,
    3082, 1800, 1503, 1960, 1608, 1377, 1520, 1828, 1434, 1448, 1234, 1217, 1460, 1202, 1220, 1188,
    2138, 1529, 1512, 1282, 1504, 1189, 1188, 1272, 1651, 1226, 1621, 1417, 1168, 1303, 1260, 1492,
    1722, 1278, 1300, 1235, 1247, 1241, 1244, 1340, 3692, 2304, 1215, 1586, 1452, 1324, 1296, 1598,
    2365, 1316, 1347, 1636, 1247, 1220, 1517, 1385, 1652, 1273, 1340, 1366, 1580, 1625, 2207, 11995,
];

/// The chance that Teddy's fingerprint of a bucket lets a place through, for text whose bytes
/// are independent with the frequencies of [`FREQ`], as Teddy sees them (after `fold`).
pub(super) struct Model {
    /// weight[lo][hi]: the share of bytes whose folded form has these nibbles.
    weight: [[f64; 16]; 16],
}

impl Model {
    pub fn new(fold: fn(u8) -> u8) -> Model {
        let mut weight = [[0f64; 16]; 16];
        for x in 0..=255u8 {
            let y = fold(x);
            weight[usize::from(y & 15)][usize::from(y >> 4)] +=
                f64::from(FREQ[usize::from(x)]) / 1e6;
        }
        Model { weight }
    }

    /// Expected comparisons per byte of text for a bucket of these anchors (`mask` bytes
    /// fingerprinted): the chance that a place passes the fingerprint, times one for the
    /// candidate plus one per anchor compared.
    #[cfg(test)]
    pub fn cost<'a>(&self, bucket: impl IntoIterator<Item = &'a [u8]>, mask: usize) -> f64 {
        let mut f = Fingerprint::default();
        for a in bucket {
            f.add(&Fingerprint::of(a, mask));
        }
        self.cost_of(&f, mask)
    }

    fn cost_of(&self, f: &Fingerprint, mask: usize) -> f64 {
        let pass = |j: usize| -> f64 {
            let mut p = 0.0;
            for l in bits(f.lo[j]) {
                for h in bits(f.hi[j]) {
                    p += self.weight[l][h];
                }
            }
            p
        };
        (0..mask).map(pass).product::<f64>() * (1 + f.size) as f64
    }
}

/// The positions of the set bits.
fn bits(mut set: u16) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (set != 0).then(|| {
            let i = set.trailing_zeros() as usize;
            set &= set - 1;
            i
        })
    })
}

/// The nibble sets of some anchors at each fingerprinted position, and how many anchors.
#[derive(Default, Clone, Copy)]
struct Fingerprint {
    lo: [u16; MASK],
    hi: [u16; MASK],
    size: usize,
}

impl Fingerprint {
    fn of(anchor: &[u8], mask: usize) -> Fingerprint {
        let mut f = Fingerprint {
            size: 1,
            ..Fingerprint::default()
        };
        for (j, b) in anchor.iter().take(mask).enumerate() {
            f.lo[j] = 1 << (b & 15);
            f.hi[j] = 1 << (b >> 4);
        }
        f
    }

    fn add(&mut self, other: &Fingerprint) {
        for j in 0..MASK {
            self.lo[j] |= other.lo[j];
            self.hi[j] |= other.hi[j];
        }
        self.size += other.size;
    }
}

/// How many of each anchor's first bytes Teddy fingerprints.
pub(super) fn mask_len(anchors: &[Vec<u8>]) -> usize {
    anchors.iter().map(Vec::len).min().unwrap_or(0).min(MASK)
}

/// What aho-corasick groups anchors by: the low nibbles of their first `mask` bytes (anchors
/// that share them always land in one bucket).
fn low_nibbles(anchor: &[u8], mask: usize) -> Vec<u8> {
    anchor[..mask].iter().map(|b| b & 15).collect()
}

/// Orders `anchors` (as Teddy will read them, after `fold`) for a Teddy of `buckets` buckets so
/// that few places in ordinary files are candidates: a local search that swaps anchors between
/// buckets while the [`Model`]'s expected comparisons per byte go down. Deterministic.
pub(super) fn arrange(anchors: Vec<Vec<u8>>, buckets: usize, fold: fn(u8) -> u8) -> Vec<Vec<u8>> {
    let mask = mask_len(&anchors);
    if mask == 0 || anchors.len() <= buckets {
        return anchors;
    }
    let model = Model::new(fold);
    // Anchors that share the low nibbles of their first bytes land in one bucket whatever the
    // order: they move together, as a unit, led by the first of them.
    let mut units: Vec<Vec<usize>> = Vec::new();
    let mut unit_of_key: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for (i, a) in anchors.iter().enumerate() {
        let key = low_nibbles(a, mask);
        match unit_of_key.get(&key) {
            Some(&u) => units[u].push(i),
            None => {
                unit_of_key.insert(key, units.len());
                units.push(vec![i]);
            }
        }
    }
    let prints: Vec<Fingerprint> = units
        .iter()
        .map(|m| {
            let mut f = Fingerprint::default();
            for &a in m {
                f.add(&Fingerprint::of(&anchors[a], mask));
            }
            f
        })
        .collect();
    // The leaders are handed over first, so the k-th goes to bucket `n - 1 - k % n`: each
    // bucket holds a fixed number of units, and swapping two units keeps it so.
    let mut bucket_of: Vec<usize> = (0..units.len())
        .map(|k| buckets - 1 - k % buckets)
        .collect();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); buckets];
    for (u, &b) in bucket_of.iter().enumerate() {
        members[b].push(u);
    }
    // The cost of bucket `b` with unit `out` replaced by unit `into`.
    let cost = |members: &[Vec<usize>], b: usize, out: usize, into: usize| {
        let mut f = Fingerprint::default();
        for &u in &members[b] {
            f.add(&prints[if u == out { into } else { u }]);
        }
        model.cost_of(&f, mask)
    };
    let mut costs: Vec<f64> = (0..buckets).map(|b| cost(&members, b, 0, 0)).collect();
    for _ in 0..PASSES {
        let mut improved = false;
        for u in 0..units.len() {
            for v in u + 1..units.len() {
                let (bu, bv) = (bucket_of[u], bucket_of[v]);
                if bu == bv {
                    continue;
                }
                let (cu, cv) = (cost(&members, bu, u, v), cost(&members, bv, v, u));
                // A real gain, not rounding: otherwise the search could cycle.
                if cu + cv < (costs[bu] + costs[bv]) * (1.0 - 1e-9) {
                    for (b, out, into) in [(bu, u, v), (bv, v, u)] {
                        for m in members[b].iter_mut().filter(|m| **m == out) {
                            *m = into;
                        }
                    }
                    (costs[bu], costs[bv]) = (cu, cv);
                    bucket_of.swap(u, v);
                    improved = true;
                }
            }
        }
        if !improved {
            break;
        }
    }
    // Hand the leaders over so that each lands in its bucket, then the rest of each unit.
    let mut in_bucket: Vec<Vec<usize>> = vec![Vec::new(); buckets];
    for (u, &b) in bucket_of.iter().enumerate().rev() {
        in_bucket[b].push(u);
    }
    let mut order: Vec<usize> = (0..units.len())
        .filter_map(|k| in_bucket[buckets - 1 - k % buckets].pop())
        .collect();
    for k in 0..order.len() {
        let u = order[k];
        order.extend(units[u][1..].iter().map(|_| u));
    }
    let mut next = vec![0; units.len()];
    let mut anchors: Vec<Option<Vec<u8>>> = anchors.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|u| {
            let a = units[u][next[u]];
            next[u] += 1;
            anchors[a].take()
        })
        .collect()
}

/// What aho-corasick does with anchors given in this order: the anchors of each bucket.
#[cfg(test)]
pub(super) fn teddy_buckets(anchors: &[Vec<u8>], buckets: usize) -> Vec<Vec<usize>> {
    let mask = mask_len(anchors);
    let mut first: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut out = vec![Vec::new(); buckets];
    for (i, a) in anchors.iter().enumerate() {
        let key = low_nibbles(a, mask);
        let b = *first.entry(key).or_insert(buckets - 1 - i % buckets);
        out[b].push(i);
    }
    out
}

/// The places in `text` (folded) that Teddy's fingerprints let through, and the anchor
/// comparisons they cost.
#[cfg(test)]
pub(super) fn candidates(anchors: &[Vec<u8>], buckets: usize, text: &[u8]) -> (usize, usize) {
    let mask = mask_len(anchors);
    let groups = teddy_buckets(anchors, buckets);
    let mut lo = [[0u16; 16]; MASK];
    let mut hi = [[0u16; 16]; MASK];
    for (b, g) in groups.iter().enumerate() {
        for &a in g {
            for j in 0..mask {
                lo[j][usize::from(anchors[a][j] & 15)] |= 1 << b;
                hi[j][usize::from(anchors[a][j] >> 4)] |= 1 << b;
            }
        }
    }
    let (mut places, mut compared) = (0, 0);
    for w in text.windows(mask) {
        let mut m = u16::MAX;
        for (j, &x) in w.iter().enumerate() {
            m &= lo[j][usize::from(x & 15)] & hi[j][usize::from(x >> 4)];
        }
        if m != 0 {
            places += 1;
            compared += (0..buckets)
                .filter(|b| m & (1 << b) != 0)
                .map(|b| groups[b].len())
                .sum::<usize>();
        }
    }
    (places, compared)
}
