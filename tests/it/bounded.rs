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

/// A portcullis whose cache holds a 20 MB blob of random bytes (`seed`), fetched and judged once:
/// the upstream, the proxy and the blob's digest.
fn with_a_cached_blob(seed: u64) -> (Registry, Portcullis, String) {
    let upstream = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let written = Image::new()
        .layer(Layer::new(Compression::None).random_file("data/blob.bin", BLOB, seed))
        .write(layout.path(), Some("big"));
    upstream.push(layout.path(), "big", "bench/big", "latest");
    let p = Portcullis::for_upstream(&upstream);
    let digest = written.layer_digests[0].clone();
    let body = reqwest::blocking::get(format!("{}/v2/bench/big/blobs/{digest}", p.url()))
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&body)), digest);
    let cached = p
        .data
        .join("cache/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    wait_for("the blob to be cached", Duration::from_secs(20), || {
        cached.exists().then_some(())
    });
    (upstream, p, digest)
}

#[test]
fn slow_readers_of_a_cached_blob_cost_no_thread_each_and_bounded_memory() {
    let (_upstream, p, digest) = with_a_cached_blob(7);
    let path = format!("/v2/bench/big/blobs/{digest}");
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

#[test]
fn concurrent_downloads_of_a_cached_blob_all_verify_within_bounded_memory() {
    let (_upstream, p, digest) = with_a_cached_blob(8);
    let url = format!("{}/v2/bench/big/blobs/{digest}", p.url());
    let (_, idle_peak) = threads_and_peak(p.pid());
    let started = Instant::now();
    let verified: Vec<bool> = (0..CLIENTS)
        .map(|_| {
            let url = url.clone();
            let digest = digest.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(300))
                    .build()
                    .unwrap();
                let body = client.get(&url).send().unwrap().bytes().unwrap();
                format!("sha256:{}", sha256_hex(&body)) == digest
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let (threads, peak) = threads_and_peak(p.pid());
    println!(
        "{CLIENTS} concurrent downloads of a cached {} MB blob in {:.1} s: {} verified; peak RSS {:.1} MB (before: {:.1} MB); {threads} threads",
        BLOB >> 20,
        started.elapsed().as_secs_f64(),
        verified.iter().filter(|v| **v).count(),
        peak as f64 / 1e6,
        idle_peak as f64 / 1e6,
    );
    assert!(verified.iter().all(|v| *v), "every download verifies");
    assert!(peak <= 256 << 20, "peak RSS {peak} bytes");
}

/// Lower-case hex sha256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Slowloris: 200 connections that send header lines slowly and never finish a request, plus an
/// idle kept-alive connection. With the default limits each is closed within the header timeout
/// (15 s; the bound is 60 s) while normal requests keep being answered.
#[test]
fn slow_header_senders_and_idle_connections_are_closed_while_pulls_go_on() {
    const SLOW: usize = 200;
    let upstream = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let written = Image::new()
        .layer(Layer::new(Compression::Gzip).file("etc/motd", "hello\n"))
        .write(layout.path(), Some("v1"));
    upstream.push(layout.path(), "v1", "acme/app", "v1");
    let p = Portcullis::for_upstream(&upstream);
    let started = Instant::now();
    let closed_after: Vec<_> = (0..SLOW)
        .map(|i| {
            let addr = p.addr;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let _ = s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n");
                let mut buf = [0u8; 256];
                loop {
                    // A header line every 2 s, for ever (70 s at most here).
                    if started.elapsed() > Duration::from_secs(70) {
                        return None;
                    }
                    if s.write_all(format!("X-Slow-{i}: yes\r\n").as_bytes())
                        .is_err()
                    {
                        return Some(started.elapsed());
                    }
                    match s.read(&mut buf) {
                        Ok(0) => return Some(started.elapsed()),
                        // The server answered (a timeout's 408) and closes next.
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => return Some(started.elapsed()),
                    }
                    std::thread::sleep(Duration::from_millis(1500));
                }
            })
        })
        .collect();
    // An idle kept-alive connection, after one whole request.
    let idle = {
        let addr = p.addr;
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            assert!(std::str::from_utf8(&buf[..n])
                .unwrap()
                .starts_with("HTTP/1.1 200"));
            let at = Instant::now();
            s.set_read_timeout(Some(Duration::from_secs(70))).unwrap();
            let r = s.read(&mut buf);
            (r.map(|n| n == 0).unwrap_or(true), at.elapsed())
        })
    };
    // Pulls go on meanwhile.
    let blob = format!("{}/v2/acme/app/blobs/{}", p.url(), written.layer_digests[0]);
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(10) {
        let r = reqwest::blocking::Client::new()
            .get(&blob)
            .timeout(Duration::from_secs(5))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().unwrap();
        answered += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let closed: Vec<Duration> = closed_after
        .into_iter()
        .map(|t| {
            t.join()
                .unwrap()
                .expect("a slow connection was never closed")
        })
        .collect();
    let slowest = closed.iter().max().unwrap();
    let (idle_closed, idle_after) = idle.join().unwrap();
    println!(
        "{SLOW} slowloris connections all closed within {:.1} s; an idle kept-alive connection closed after {:.1} s; {answered} blob requests answered meanwhile",
        slowest.as_secs_f64(),
        idle_after.as_secs_f64()
    );
    assert!(*slowest < Duration::from_secs(60), "slowest {slowest:?}");
    assert!(
        idle_closed && idle_after < Duration::from_secs(60),
        "{idle_after:?}"
    );
    assert!(answered >= 10, "{answered} requests answered");
}
