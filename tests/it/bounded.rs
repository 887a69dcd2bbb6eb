//! Per-client resources stay bounded: many slow readers of one cached blob cost portcullis a fixed
//! number of threads (no thread per client: cached blobs are read by a small bounded pool of file
//! readers) and memory bounded per client (a few blocks in flight each), not by the blob's size.
//! The figures are printed; see them with `cargo test --test it bounded -- --nocapture`.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Clients reading the blob at once.
const CLIENTS: usize = 200;
/// The blob: 20 MB of incompressible bytes.
const BLOB: usize = 20 << 20;
/// How long the clients keep reading, slowly.
const READING: Duration = Duration::from_secs(4);

/// `Threads` and `VmHWM` (peak RSS, bytes) of a process.
fn threads_and_peak(pid: u32) -> (usize, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("Threads:") as usize, field("VmHWM:") * 1024)
}

#[test]
fn slow_readers_of_a_cached_blob_cost_no_thread_each_and_bounded_memory() {
    let upstream = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let written = Image::new()
        .layer(Layer::new(Compression::None).random_file("data/blob.bin", BLOB, 7))
        .write(layout.path(), Some("big"));
    upstream.push(layout.path(), "big", "bench/big", "latest");
    let p = Portcullis::for_upstream(&upstream);
    let digest = written.layer_digests[0].clone();
    let path = format!("/v2/bench/big/blobs/{digest}");

    // One whole read fills the cache (and judges the layer).
    let body = reqwest::blocking::get(format!("{}{path}", p.url()))
        .unwrap()
        .bytes()
        .unwrap();
    assert!(body.len() > BLOB);
    let cached = p
        .data
        .join("cache/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    wait_for("the blob to be cached", Duration::from_secs(20), || {
        cached.exists().then_some(())
    });
    // Settle: the blocking pool's threads of the fill are counted in the baseline.
    std::thread::sleep(Duration::from_millis(300));
    let (idle_threads, idle_peak) = threads_and_peak(p.pid());

    let stop = Arc::new(AtomicBool::new(false));
    let read_total = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (addr, path, stop, read_total) =
                (p.addr, path.clone(), stop.clone(), read_total.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                // A small receive window and 16 KiB every 50 ms: about 300 KB/s each.
                let mut buf = [0u8; 16 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read_total.fetch_add(n as u64, Ordering::Relaxed),
                    };
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    let mut max_threads = 0;
    while started.elapsed() < READING {
        max_threads = max_threads.max(threads_and_peak(p.pid()).0);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, peak) = threads_and_peak(p.pid());
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "{CLIENTS} slow readers of a cached {} MB blob: threads {idle_threads} idle, {max_threads} at most while read ({cores} cores); peak RSS {:.1} MB before, {:.1} MB after; {:.1} MB read by the clients in {:.1} s",
        BLOB >> 20,
        idle_peak as f64 / 1e6,
        peak as f64 / 1e6,
        read_total.load(Ordering::Relaxed) as f64 / 1e6,
        READING.as_secs_f64()
    );
    assert!(
        read_total.load(Ordering::Relaxed) > (CLIENTS as u64) * 64 * 1024,
        "the clients were served"
    );
    // The cache's reader threads (4) start with the first cached read; nothing grows per client.
    assert!(
        max_threads <= idle_threads + 4 + 2,
        "{max_threads} threads with {CLIENTS} readers ({idle_threads} idle)"
    );
    assert!(peak <= 256 << 20, "peak RSS {peak} bytes");
}
