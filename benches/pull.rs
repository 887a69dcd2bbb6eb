//! Pull benchmark: a ~0.5 GB, 4-layer image pulled by skopeo directly from the upstream registry,
//! through portcullis (no cache: inspection off, cold, verdicts known; and warm, blobs cached), and
//! through CNCF distribution in proxy mode (cold and warm), in alternating rounds. Then 20
//! concurrent cold pulls of a smaller image through a fresh portcullis against 20 concurrent direct
//! pulls. Prints medians, ratios against the direct pull, and portcullis' peak RSS.
//!
//!   cargo bench --bench pull                 # defaults: 512 MB, 5 rounds; 20 × 64 MB, 3 rounds
//!   BENCH_MB=256 BENCH_ROUNDS=3 cargo bench --bench pull
//!   BENCH_CONCURRENT=20 BENCH_CONCURRENT_MB=64 BENCH_CONCURRENT_ROUNDS=3 cargo bench --bench pull
//!
//! Figures are ratios measured in the same run, so a slower machine moves all columns together.

#[path = "../tests/it/common/mod.rs"]
#[allow(unused_imports)] // dead_code: allowed inside common itself
mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Text-like content (compresses about 3:1 with gzip, like real layers), deterministic per seed.
fn texty(size: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "lib", "usr", "share", "config", "return", "static", "void", "int", "struct", "const",
        "if", "else", "for", "while", "0x7f", "ELF",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(size + 16);
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x & 15) as usize].as_bytes());
        out.push(if x & 0x300 == 0 { b'\n' } else { b' ' });
        if x & 0xF000 == 0 {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(size);
    out
}

/// Builds (once, cached under target/) an OCI layout with 4 gzip layers of about `mb` MB in all.
fn fixture(mb: usize, compression: Compression) -> std::path::PathBuf {
    let name = match compression {
        Compression::GzipCommand => format!("pull-{mb}mb-gzip"),
        _ => format!("pull-{mb}mb"),
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-fixtures/{name}"));
    if dir.join("index.json").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("building the {mb} MB fixture image (once)...");
    let per_layer = mb * 1024 * 1024 / 4;
    let mut image = Image::new();
    for i in 0..4u64 {
        // Mostly incompressible data plus text: each compressed layer is about `per_layer` bytes.
        let mut layer = Layer::new(compression).random_file(
            &format!("opt/blob{i}.bin"),
            per_layer * 3 / 4,
            i + 1,
        );
        layer = layer.file(
            &format!("usr/share/text{i}.txt"),
            texty(per_layer / 2, i + 100),
        );
        image = image.layer(layer);
    }
    // Written aside and renamed, so an interrupted build never looks finished.
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    let w = image.write(&partial, Some("v1"));
    std::fs::rename(&partial, &dir).unwrap();
    eprintln!("fixture: {} bytes in blobs", w.size);
    dir
}

fn pull(from: &str) -> Duration {
    pull_repo(from, "library/bench")
}

/// `skopeo copy docker://<from>/<repo>:v1 dir:<tmp>`, timed.
fn pull_repo(from: &str, repo: &str) -> Duration {
    let out_root = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let out = tempfile::tempdir_in(out_root).unwrap();
    let start = Instant::now();
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{from}/{repo}:v1"))
        .arg(format!("dir:{}", out.path().display()))
        .status()
        .unwrap();
    let took = start.elapsed();
    assert!(status.success(), "skopeo pull of {repo} from {from} failed");
    took
}

/// `n` pulls of `repo` from `from` at once; the wall time until the last one ends.
fn pull_concurrently(from: &str, repo: &str, n: usize) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        let pulls: Vec<_> = (0..n).map(|_| s.spawn(|| pull_repo(from, repo))).collect();
        for p in pulls {
            p.join().unwrap();
        }
    });
    start.elapsed()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Peak resident set (VmHWM) of a process, in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`, which may hold spaces: utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    let ticks = 100.0; // USER_HZ on Linux
    f.iter().sum::<f64>() / ticks
}

/// CPU seconds the whole machine has been busy so far (every process and the kernel), from
/// `/proc/stat`: user, nice, system, irq, softirq and steal.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or_default();
    let f: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy / 100.0 // USER_HZ
}

/// A timed pull, the CPU the serving processes (`servers`) spent on it, and the CPU the whole
/// machine spent meanwhile (skopeo included).
fn pull_measured(from: &str, servers: &[u32]) -> (Duration, f64, f64) {
    let before: f64 = servers.iter().map(|p| cpu_seconds(*p)).sum();
    let busy = machine_busy_seconds();
    let t = pull(from);
    let busy = machine_busy_seconds() - busy;
    let after: f64 = servers.iter().map(|p| cpu_seconds(*p)).sum();
    (t, after - before, busy)
}

fn median_f(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// distribution in proxy mode with empty storage (a cold cache), in front of `upstream`.
fn distribution_proxy(upstream: &Registry) -> Registry {
    Registry::start_with(&format!("proxy:\n  remoteurl: {}\n", upstream.url()))
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let mb = env_usize("BENCH_MB", 512);
    let rounds = env_usize("BENCH_ROUNDS", 5).max(1);
    // Layers gzipped as real images are (`gzip -6`, which stores incompressible stretches as the
    // Go encoder of docker and buildkit does); `BENCH_ENCODER=flate2` for flate2's fast level,
    // which Huffman-codes them (the fixture of earlier figures, slower to inflate).
    let encoder = std::env::var("BENCH_ENCODER").unwrap_or_default();
    let compression = if encoder == "flate2" {
        Compression::Gzip
    } else {
        Compression::GzipCommand
    };
    let layout = fixture(mb, compression);
    let upstream = Registry::start();
    upstream.push(&layout, "v1", "library/bench", "v1");
    let upstream_arg = format!("docker.io={}", upstream.url());
    // The no-cache columns stream every layer from the upstream on every pull.
    let inspecting = Portcullis::start(&["--upstream", &upstream_arg, "--no-cache"]);
    // The same proxy with inspection off: what streaming, verifying and tail-hold cost alone.
    let plain_config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        plain_config.path(),
        "[inspect]\nenabled = false\n[upstreams.\"docker.io\"]\nurl = \"https://unused.invalid\"\n",
    )
    .unwrap();
    let plain = Portcullis::start(&[
        "--config",
        plain_config.path().to_str().unwrap(),
        "--upstream",
        &upstream_arg,
        "--no-cache",
    ]);
    // Verdicts known and every blob in its cache after the warm-up pull.
    let warm = Portcullis::for_upstream(&upstream);
    let dist_warm = distribution_proxy(&upstream);
    let direct_addr = upstream.addr.to_string();
    let inspecting_addr = inspecting.addr.to_string();
    let plain_addr = plain.addr.to_string();
    let warm_addr = warm.addr.to_string();
    let dist_warm_addr = dist_warm.addr.to_string();

    // One warm-up pull each so page caches and connection pools are comparable, and the warm
    // proxies' caches are filled.
    for a in [
        &direct_addr,
        &inspecting_addr,
        &plain_addr,
        &warm_addr,
        &dist_warm_addr,
    ] {
        pull(a);
    }

    const COLUMNS: [&str; 7] = [
        "direct from upstream",
        "portcullis, inspection off",
        "portcullis, inspecting (cold)",
        "portcullis, verdicts known",
        "portcullis, warm (blobs cached)",
        "distribution proxy (cold)",
        "distribution proxy (warm)",
    ];
    // `BENCH_COLUMNS=0,2` pulls only those paths (e.g. under `perf record -a`); the others print 0.
    let columns: Vec<usize> = std::env::var("BENCH_COLUMNS").map_or_else(
        |_| (0..COLUMNS.len()).collect(),
        |v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect(),
    );
    let mut times: [Vec<Duration>; 7] = Default::default();
    let mut cpu: [Vec<f64>; 7] = Default::default();
    let mut machine: [Vec<f64>; 7] = Default::default();
    let mut cold_rss: f64 = 0.0;
    let up = upstream.pid();
    for round in 0..rounds {
        // Alternate the order so drift on the machine hits every column alike.
        let mut order: Vec<usize> = (0..COLUMNS.len()).filter(|c| columns.contains(c)).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for which in order {
            // Each column's CPU is that of every server process the pull went through.
            let (t, c, busy) = match which {
                0 => pull_measured(&direct_addr, &[up]),
                1 => pull_measured(&plain_addr, &[up, plain.pid()]),
                2 => {
                    // A fresh proxy with an empty verdict store and cache: every layer is judged.
                    let fresh = Portcullis::for_upstream(&upstream);
                    let m = pull_measured(&fresh.addr.to_string(), &[up, fresh.pid()]);
                    cold_rss = cold_rss.max(peak_rss_mb(fresh.pid()));
                    m
                }
                3 => pull_measured(&inspecting_addr, &[up, inspecting.pid()]),
                4 => pull_measured(&warm_addr, &[up, warm.pid()]),
                5 => {
                    let d = distribution_proxy(&upstream);
                    pull_measured(&d.addr.to_string(), &[up, d.pid()])
                }
                _ => pull_measured(&dist_warm_addr, &[up, dist_warm.pid()]),
            };
            cpu[which].push(c);
            machine[which].push(busy);
            times[which].push(t);
        }
        let line: Vec<String> = (0..COLUMNS.len())
            .filter_map(|i| Some(format!("{} {:?}", COLUMNS[i], times[i].get(round)?)))
            .collect();
        eprintln!("round {}: {}", round + 1, line.join(", "));
    }
    let medians: Vec<Duration> = times.iter_mut().map(|t| median(t)).collect();
    let direct = medians[0].as_secs_f64();
    println!();
    println!(
        "pull benchmark: {mb} MB, 4 gzip layers ({}), {rounds} rounds, skopeo, loopback",
        if encoder == "flate2" {
            "flate2 fast"
        } else {
            "gzip -6"
        }
    );
    println!("{:<34} {:>10} {:>10}", "path", "median s", "× direct");
    for (name, m) in COLUMNS.iter().zip(&medians) {
        println!(
            "{:<34} {:>10.3} {:>10.3}",
            name,
            m.as_secs_f64(),
            m.as_secs_f64() / direct
        );
    }
    let cpu: Vec<f64> = cpu.iter_mut().map(|c| median_f(c)).collect();
    println!();
    println!("CPU of the serving processes per pull (upstream registry + proxy), median:");
    println!("{:<34} {:>10} {:>10}", "path", "cpu s", "× direct");
    for (name, c) in COLUMNS.iter().zip(&cpu) {
        println!("{:<34} {:>10.2} {:>10.3}", name, c, c / cpu[0]);
    }
    // How busy the machine was: a pull whose whole-machine CPU, spread over every core, comes
    // near its wall time is bound by CPU, and can only get faster by spending less of it.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!();
    println!("whole machine during the pull (skopeo, registries, kernel), median:");
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "path", "busy cpu s", "× direct", "busy/wall"
    );
    let machine: Vec<f64> = machine.iter_mut().map(|c| median_f(c)).collect();
    for ((name, c), m) in COLUMNS.iter().zip(&machine).zip(&medians) {
        println!(
            "{:<34} {:>10.2} {:>10.3} {:>9.0}%",
            name,
            c,
            c / machine[0],
            100.0 * c / (cores * m.as_secs_f64())
        );
    }
    println!(
        "portcullis peak RSS: {:.1} MB inspecting, {:.1} MB without, {:.1} MB warm, its filling pull included (4 layers of ~{} MB streamed at once)",
        cold_rss,
        peak_rss_mb(plain.pid()),
        peak_rss_mb(warm.pid()),
        mb / 4
    );
    let dist = medians[5].as_secs_f64();
    println!(
        "vs distribution proxy (cold): inspection off {:.3}×, inspecting {:.3}×",
        medians[1].as_secs_f64() / dist,
        medians[2].as_secs_f64() / dist
    );
    println!(
        "warm: portcullis {:.3}× direct, distribution proxy {:.3}× direct, portcullis {:.3}× distribution",
        medians[4].as_secs_f64() / direct,
        medians[6].as_secs_f64() / direct,
        medians[4].as_secs_f64() / medians[6].as_secs_f64()
    );
    drop((inspecting, plain, warm, dist_warm));

    concurrent(&upstream, compression);
}

/// `BENCH_CONCURRENT` (0: skip) skopeo pulls at once of a `BENCH_CONCURRENT_MB` image, through a fresh
/// portcullis each round (cold: no verdicts, empty cache, one upstream fetch per blob shared by
/// all) and directly from the upstream, alternating which goes first.
fn concurrent(upstream: &Registry, compression: Compression) {
    let n = env_usize("BENCH_CONCURRENT", 20);
    let mb = env_usize("BENCH_CONCURRENT_MB", 64);
    let rounds = env_usize("BENCH_CONCURRENT_ROUNDS", 3).max(1);
    if n == 0 || mb == 0 {
        return;
    }
    let repo = "library/bench-concurrent";
    upstream.push(&fixture(mb, compression), "v1", repo, "v1");
    let direct_addr = upstream.addr.to_string();
    pull_repo(&direct_addr, repo);
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    let mut rss: f64 = 0.0;
    for round in 0..rounds {
        let proxy_first = round % 2 == 1;
        for through_proxy in [proxy_first, !proxy_first] {
            if through_proxy {
                let fresh = Portcullis::for_upstream(upstream);
                proxied.push(pull_concurrently(&fresh.addr.to_string(), repo, n));
                rss = rss.max(peak_rss_mb(fresh.pid()));
            } else {
                direct.push(pull_concurrently(&direct_addr, repo, n));
            }
        }
        eprintln!(
            "concurrent round {}: direct {:?}, portcullis cold {:?}",
            round + 1,
            direct[round],
            proxied[round]
        );
    }
    let (d, p) = (median(&mut direct), median(&mut proxied));
    println!();
    println!(
        "{n} concurrent pulls of a {mb} MB image, {rounds} rounds: direct {:.3} s, portcullis cold {:.3} s = {:.3}× direct (wall time, medians); portcullis peak RSS {:.1} MB",
        d.as_secs_f64(),
        p.as_secs_f64(),
        p.as_secs_f64() / d.as_secs_f64(),
        rss
    );
}
