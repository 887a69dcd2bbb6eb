//! Layer inspection against plain inflate of the same gzip layers (the performance budget in
//! ../shared/DESIGN.md: inspection keeps up with decompression, one core per layer).
//!
//! Builds ~220 MB (uncompressed) of realistic layer content — ELF-like binaries with string
//! tables, source and config text, already-compressed media, small JSON — as ten gzip layers of
//! ~22 MB, then, for each run and each layer, times in 64 KiB chunks as the network delivers them:
//!   (a) plain inflate: flate2's push decoder into a sink;
//!   (b) the full LayerInspector (inflate + tar + content search + per-file analyzers).
//! The two of a layer run back to back, in alternating order. Prints MB/s (uncompressed bytes
//! per second) and the ratio inspect/inflate: the median over all (layer, run) pairs, the best
//! run, and the medians of the runs' totals.
//!
//! `cargo bench --bench layer` (`LAYER_MB=50` for less content, `LAYER_SPLIT=50` for larger
//! layers, `LAYER_RUNS=3` for fewer runs, `LAYER_ONLY=inspect` or `inflate` to time one side
//! alone, e.g. under `perf record`; `LAYER_SAVE=path` writes the first layer).

use flate2::write::MultiGzDecoder;
use portcullis::inspect::layer::{Compression, LayerInspector, LayerRules, Limits};
use portcullis::inspect::rules::RuleSet;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHUNK: usize = 64 << 10;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Roughly log-uniform between `lo` and `hi`.
    fn size(&mut self, lo: u64, hi: u64) -> usize {
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        let u = self.below(1 << 20) as f64 / (1u64 << 20) as f64;
        (l + (h - l) * u).exp() as usize
    }
}

const WORDS: &[&str] = &[
    "fn",
    "let",
    "mut",
    "return",
    "if",
    "else",
    "for",
    "while",
    "match",
    "self",
    "struct",
    "impl",
    "pub",
    "use",
    "const",
    "static",
    "def",
    "class",
    "import",
    "from",
    "function",
    "var",
    "int",
    "char",
    "void",
    "unsigned",
    "size_t",
    "NULL",
    "true",
    "false",
    "None",
    "value",
    "result",
    "error",
    "buffer",
    "length",
    "index",
    "count",
    "data",
    "config",
    "path",
    "name",
    "string",
    "file",
    "open",
    "read",
    "write",
    "close",
    "init",
    "alloc",
    "free",
    "handle",
    "request",
    "response",
    "server",
    "client",
    "socket",
    "thread",
    "mutex",
    "lock",
    "queue",
    "map",
    "list",
    "vector",
    "array",
    "object",
    "node",
    "tree",
    "parent",
    "child",
    "offset",
    "flags",
    "mode",
    "status",
    "state",
    "context",
    "options",
    "params",
    "args",
    "=",
    "==",
    "!=",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ";",
    ",",
    ".",
    "->",
    "::",
    "+",
    "-",
    "*",
    "/",
    "&&",
    "||",
    "0",
    "1",
    "2",
    "16",
    "32",
    "64",
    "0x0",
    "0xff",
    "\"%s\"",
    "\"%d\\n\"",
    "// TODO",
    "# comment",
    "/* note */",
    "assert",
    "debug",
    "info",
    "warn",
    "log",
    "format",
    "print",
    "printf",
    "malloc",
    "memcpy",
    "strlen",
    "sizeof",
    "typedef",
];

fn text(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 64);
    let mut col = 0;
    while out.len() < size {
        // Zipf-ish: low indexes far more often.
        let r = rng.below(1 << 16) as f64 / 65536.0;
        let w = WORDS[((r * r * r) * WORDS.len() as f64) as usize];
        if rng.below(9) == 0 {
            out.extend_from_slice(format!("{w}_{}", rng.below(500)).as_bytes());
        } else {
            out.extend_from_slice(w.as_bytes());
        }
        col += w.len() + 1;
        if col > 60 + rng.below(30) as usize {
            out.push(b'\n');
            out.extend(std::iter::repeat_n(b' ', 4 * rng.below(4) as usize));
            col = 0;
        } else {
            out.push(b' ');
        }
    }
    out.truncate(size);
    out
}

/// Machine-code-like bytes (skewed opcode and operand distribution) with string tables; gzip
/// takes it to about 40% of its size, as with real binaries.
fn binary(rng: &mut Rng, size: usize) -> Vec<u8> {
    const OPS: &[u8] = &[
        0x48, 0x89, 0x8b, 0xe8, 0xff, 0x0f, 0x85, 0x84, 0xc3, 0x41, 0x4c, 0x83, 0xc7, 0x45, 0x24,
        0x74, 0xeb,
    ];
    let mut out = Vec::with_capacity(size + 4096);
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0\x3e\0\x01\0\0\0");
    out.resize(64, 0);
    out[60] = 29; // section headers
    while out.len() < size {
        if rng.below(12) == 0 {
            // A string table stretch.
            let len = 200 + rng.below(1500) as usize;
            let t = text(rng, len);
            for line in t.split(|&b| b == b'\n') {
                out.extend_from_slice(line);
                out.push(0);
            }
            continue;
        }
        for _ in 0..256 {
            let r = rng.below(100);
            let b = if r < 35 {
                0
            } else if r < 88 {
                OPS[rng.below(OPS.len() as u64) as usize]
            } else {
                rng.next() as u8
            };
            out.push(b);
        }
    }
    out.truncate(size);
    out
}

fn noise(rng: &mut Rng, size: usize, magic: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    while out.len() < size {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(size);
    out
}

/// The layer's tar, and how its bytes split by kind.
fn build_tar(seed: u64, target: usize) -> (Vec<u8>, String) {
    let mut rng = Rng(seed);
    let mut b = tar::Builder::new(Vec::with_capacity(target + (8 << 20)));
    let mut total = 0usize;
    let mut by_kind = [0usize; 4];
    let mut n = 0;
    // Byte shares by kind: ELF-like binaries, text, compressed media, JSON.
    const SHARE: [f64; 4] = [0.45, 0.40, 0.08, 0.07];
    while total < target {
        // The kind furthest below its share goes next.
        let kind = (0..4)
            .max_by(|&a, &b| {
                let lag = |k: usize| SHARE[k] - by_kind[k] as f64 / (total.max(1)) as f64;
                lag(a).total_cmp(&lag(b))
            })
            .unwrap();
        let (path, mode, data) = match kind {
            0 => {
                let size = rng.size(20 << 10, 4 << 20);
                (
                    format!("usr/lib/x86_64-linux-gnu/lib{n}.so.1"),
                    0o755,
                    binary(&mut rng, size),
                )
            }
            1 => {
                let size = rng.size(300, 80 << 10);
                let ext = ["py", "c", "h", "js", "rb", "go", "txt", "conf"][rng.below(8) as usize];
                (
                    format!("usr/share/app/src/m{}/f{n}.{ext}", n % 97),
                    0o644,
                    text(&mut rng, size),
                )
            }
            2 => {
                let size = rng.size(2 << 10, 400 << 10);
                let magic: &[u8] = if rng.below(2) == 0 {
                    b"\x89PNG\r\n\x1a\n"
                } else {
                    b"\x1f\x8b\x08\0"
                };
                (
                    format!("usr/share/app/static/a{n}.bin"),
                    0o644,
                    noise(&mut rng, size, magic),
                )
            }
            _ => {
                let size = rng.size(200, 20 << 10);
                let body = text(&mut rng, size);
                let json = format!(
                    "{{\"name\": \"pkg{n}\", \"description\": {:?}}}",
                    String::from_utf8_lossy(&body)
                );
                (
                    format!("usr/lib/node_modules/pkg{n}/package.json"),
                    0o644,
                    json.into_bytes(),
                )
            }
        };
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, &path, data.as_slice()).unwrap();
        total += data.len();
        by_kind[kind] += data.len();
        n += 1;
    }
    let mix = format!(
        "{n} files: {:.0}% ELF-like, {:.0}% text, {:.0}% compressed media, {:.0}% JSON",
        100.0 * by_kind[0] as f64 / total as f64,
        100.0 * by_kind[1] as f64 / total as f64,
        100.0 * by_kind[2] as f64 / total as f64,
        100.0 * by_kind[3] as f64 / total as f64
    );
    (b.into_inner().unwrap(), mix)
}

/// CPU time this thread has run, from the kernel's scheduler statistics (nanoseconds), so that
/// other processes competing for the cores do not count; `None` where unavailable.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
}

/// Runs `f`, returning (wall time, thread CPU time).
fn timed(f: impl FnOnce()) -> (Duration, Option<Duration>) {
    let (c0, t) = (thread_cpu(), Instant::now());
    f();
    let wall = t.elapsed();
    (wall, thread_cpu().zip(c0).map(|(b, a)| b - a))
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (mb, runs, split) = (
        env("LAYER_MB", 200),
        env("LAYER_RUNS", 5),
        env("LAYER_SPLIT", 20),
    );
    // Several layers rather than one: each inflate is paired with the inspection of the same
    // layer right before or after it, a fraction of a second apart, so both meet about the same
    // machine (its speed drifts by 10-15% over seconds here).
    let layers: Vec<(usize, Vec<u8>, String)> = (0..mb.div_ceil(split).max(1))
        .map(|k| {
            let (tar, mix) = build_tar(0x00c0_ffee + k as u64, split.min(mb) << 20);
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&tar).unwrap();
            (tar.len(), e.finish().unwrap(), mix)
        })
        .collect();
    let tar_bytes: usize = layers.iter().map(|l| l.0).sum();
    let gz_bytes: usize = layers.iter().map(|l| l.1.len()).sum();
    if let Ok(path) = std::env::var("LAYER_SAVE") {
        // For profiling the inspector alone (`perf record` on a program that reads it).
        std::fs::write(path, &layers[0].1).unwrap();
    }
    // Compiled once per rule set, as the proxy does; each layer then starts from it.
    let rules = Arc::new(LayerRules::new(Arc::new(RuleSet::builtin().unwrap())));
    println!(
        "{} layers: {:.1} MB tar, {:.1} MB gzip ({:.2}:1); first layer: {}",
        layers.len(),
        tar_bytes as f64 / 1e6,
        gz_bytes as f64 / 1e6,
        tar_bytes as f64 / gz_bytes as f64,
        layers[0].2
    );

    let inflate_once = |gz: &[u8]| {
        timed(|| {
            let mut d = MultiGzDecoder::new(std::io::sink());
            for c in gz.chunks(CHUNK) {
                d.write_all(c).unwrap();
            }
            d.try_finish().unwrap();
        })
    };
    let mut findings = 0;
    let mut inspect_once = |gz: &[u8], tar_len: usize| {
        let mut report = None;
        let t = timed(|| {
            let mut i = LayerInspector::with_layer_rules(
                Arc::clone(&rules),
                Compression::Auto,
                Limits::default(),
                None,
            );
            for c in gz.chunks(CHUNK) {
                i.update(c);
            }
            report = Some(i.finish());
        });
        let report = report.unwrap();
        assert!(report.complete(), "{:?}", report.errors);
        assert_eq!(report.uncompressed_bytes, tar_len as u64);
        findings += report.findings.len();
        t
    };
    let mbps = |d: Duration| tar_bytes as f64 / 1e6 / d.as_secs_f64();
    // For `perf record` on one side alone: `LAYER_ONLY=inspect` (or `inflate`) times only it.
    if let Ok(only) = std::env::var("LAYER_ONLY") {
        for _ in 0..runs {
            let wall: Duration = layers
                .iter()
                .map(|(len, gz, _)| {
                    if only == "inflate" {
                        inflate_once(gz).0
                    } else {
                        inspect_once(gz, *len).0
                    }
                })
                .sum();
            println!("{only}: {:.1} MB/s", mbps(wall));
        }
        return;
    }
    // Per run, the totals over all layers; per layer and run, the (inflate, inspect) pair.
    type Timed = (Duration, Option<Duration>);
    let add = |s: Timed, t: Timed| (s.0 + t.0, s.1.zip(t.1).map(|(a, b)| a + b));
    let (mut a, mut b, mut pairs) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let (mut ta, mut tb) = (
            (Duration::ZERO, Some(Duration::ZERO)),
            (Duration::ZERO, Some(Duration::ZERO)),
        );
        for (k, (len, gz, _)) in layers.iter().enumerate() {
            // Which goes first alternates, so that neither always finds the other's leftovers in
            // the caches.
            let (x, y) = if (run + k) % 2 == 0 {
                let x = inflate_once(gz);
                (x, inspect_once(gz, *len))
            } else {
                let y = inspect_once(gz, *len);
                (inflate_once(gz), y)
            };
            let cpu = |r: (Duration, Option<Duration>)| r.1.unwrap_or(r.0).as_secs_f64();
            pairs.push(cpu(x) / cpu(y));
            ta = add(ta, x);
            tb = add(tb, y);
        }
        a.push(ta);
        b.push(tb);
    }
    findings /= runs.max(1);
    let wall = |v: &[(Duration, Option<Duration>)]| median(v.iter().map(|x| x.0).collect());
    let cpu = |v: &[(Duration, Option<Duration>)]| {
        v.iter()
            .map(|x| x.1)
            .collect::<Option<Vec<_>>>()
            .map(median)
    };
    let show = |what: &str, inflate: Duration, inspect: Duration| {
        println!("{what}, median of {runs} runs:");
        println!(
            "  (a) plain inflate : {:8.1} MB/s  ({:.3} s)",
            mbps(inflate),
            inflate.as_secs_f64()
        );
        println!(
            "  (b) LayerInspector: {:8.1} MB/s  ({:.3} s)",
            mbps(inspect),
            inspect.as_secs_f64()
        );
        println!(
            "  ratio inspect/inflate: {:.3} (budget: >= 0.85)",
            inflate.as_secs_f64() / inspect.as_secs_f64()
        );
    };
    println!("findings in the benchmark layers: {findings}");
    pairs.sort_by(f64::total_cmp);
    println!(
        "median of {} paired layer runs (CPU time): ratio {:.3} (budget: >= 0.85); quartiles {:.3} and {:.3}",
        pairs.len(),
        pairs[pairs.len() / 2],
        pairs[pairs.len() / 4],
        pairs[pairs.len() * 3 / 4]
    );
    // Other load on this machine only ever adds time, so each side's fastest run is its least
    // disturbed one.
    let best = |v: &[(Duration, Option<Duration>)]| {
        v.iter()
            .map(|x| x.1.unwrap_or(x.0))
            .min()
            .unwrap_or_default()
    };
    let (best_a, best_b) = (best(&a), best(&b));
    println!(
        "best of {runs} runs (CPU time): inflate {:.1} MB/s, inspect {:.1} MB/s, ratio {:.3} (budget: >= 0.85)",
        mbps(best_a),
        mbps(best_b),
        best_a.as_secs_f64() / best_b.as_secs_f64()
    );
    show("wall clock", wall(&a), wall(&b));
    if let (Some(inflate), Some(inspect)) = (cpu(&a), cpu(&b)) {
        show(
            "thread CPU time (other load on the machine does not count)",
            inflate,
            inspect,
        );
    }
}
