//! Pull benchmark: a ~0.5 GB, 4-layer image pulled by skopeo directly from the upstream registry,
//! through portcullis, and through CNCF distribution in proxy mode, in alternating rounds.
//! Prints medians, ratios against the direct pull, and portcullis' peak RSS.
//!
//!   cargo bench --bench pull                 # defaults: 512 MB, 5 rounds
//!   BENCH_MB=256 BENCH_ROUNDS=3 cargo bench --bench pull
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
fn fixture(mb: usize) -> std::path::PathBuf {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-fixtures/pull-{mb}mb"));
    if dir.join("index.json").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("building the {mb} MB fixture image (once)...");
    let per_layer = mb * 1024 * 1024 / 4;
    let mut image = Image::new();
    for i in 0..4u64 {
        // Mostly incompressible data plus text: each compressed layer is about `per_layer` bytes.
        let mut layer = Layer::new(Compression::Gzip).random_file(
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
    let out_root = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let out = tempfile::tempdir_in(out_root).unwrap();
    let start = Instant::now();
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{from}/library/bench:v1"))
        .arg(format!("dir:{}", out.path().display()))
        .status()
        .unwrap();
    let took = start.elapsed();
    assert!(status.success(), "skopeo pull from {from} failed");
    took
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
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

/// distribution in proxy mode with empty storage (a cold cache), in front of `upstream`.
fn distribution_proxy(upstream: &Registry) -> Registry {
    Registry::start_with(&format!("proxy:\n  remoteurl: {}\n", upstream.url()))
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let mb = env_usize("BENCH_MB", 512);
    let rounds = env_usize("BENCH_ROUNDS", 5).max(1);
    let layout = fixture(mb);
    let upstream = Registry::start();
    upstream.push(&layout, "v1", "library/bench", "v1");
    let inspecting = Portcullis::for_upstream(&upstream);
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
        &format!("docker.io={}", upstream.url()),
    ]);
    let direct_addr = upstream.addr.to_string();
    let inspecting_addr = inspecting.addr.to_string();
    let plain_addr = plain.addr.to_string();

    // One warm-up pull each so page caches and connection pools are comparable. (Inspection
    // verdicts are kept, but with no blob cache every pull still fetches and streams every layer.)
    for a in [&direct_addr, &inspecting_addr, &plain_addr] {
        pull(a);
    }

    const COLUMNS: [&str; 5] = [
        "direct from upstream",
        "portcullis, inspection off",
        "portcullis, inspecting (cold)",
        "portcullis, verdicts known",
        "distribution proxy (cold)",
    ];
    let mut times: [Vec<Duration>; 5] = Default::default();
    let mut cold_rss: f64 = 0.0;
    for round in 0..rounds {
        // Alternate the order so drift on the machine hits every column alike.
        let order: [usize; 5] = if round % 2 == 0 {
            [0, 1, 2, 3, 4]
        } else {
            [4, 3, 2, 1, 0]
        };
        for which in order {
            let t = match which {
                0 => pull(&direct_addr),
                1 => pull(&plain_addr),
                2 => {
                    // A fresh proxy with an empty verdict store: every layer is judged.
                    let fresh = Portcullis::for_upstream(&upstream);
                    let t = pull(&fresh.addr.to_string());
                    cold_rss = cold_rss.max(peak_rss_mb(fresh.pid()));
                    t
                }
                3 => pull(&inspecting_addr),
                _ => {
                    let d = distribution_proxy(&upstream);
                    pull(&d.addr.to_string())
                }
            };
            times[which].push(t);
        }
        let line: Vec<String> = (0..COLUMNS.len())
            .map(|i| format!("{} {:?}", COLUMNS[i], times[i][round]))
            .collect();
        eprintln!("round {}: {}", round + 1, line.join(", "));
    }
    let medians: Vec<Duration> = times.iter_mut().map(|t| median(t)).collect();
    let direct = medians[0].as_secs_f64();
    println!();
    println!("pull benchmark: {mb} MB, 4 gzip layers, {rounds} rounds, skopeo, loopback");
    println!("{:<34} {:>10} {:>10}", "path", "median s", "× direct");
    for (name, m) in COLUMNS.iter().zip(&medians) {
        println!(
            "{:<34} {:>10.3} {:>10.3}",
            name,
            m.as_secs_f64(),
            m.as_secs_f64() / direct
        );
    }
    println!(
        "portcullis peak RSS: {:.1} MB inspecting, {:.1} MB without (4 layers of ~{} MB streamed at once)",
        cold_rss,
        peak_rss_mb(plain.pid()),
        mb / 4
    );
    let dist = medians[4].as_secs_f64();
    println!(
        "vs distribution proxy: inspection off {:.3}×, inspecting {:.3}×",
        medians[1].as_secs_f64() / dist,
        medians[2].as_secs_f64() / dist
    );
}
