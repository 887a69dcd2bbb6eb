//! Process-wide counters, served as Prometheus text at `GET /metrics`.
//!
//! A handful of atomics is all the proxy needs: no labels beyond a fixed `kind`, no histograms.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Counter {
    name: &'static str,
    help: &'static str,
    /// `kind="blob"` and the like; empty for none.
    label: &'static str,
    value: AtomicU64,
}

impl Counter {
    const fn new(name: &'static str, label: &'static str, help: &'static str) -> Counter {
        Counter {
            name,
            help,
            label,
            value: AtomicU64::new(0),
        }
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// For gauges: the current value replaces the old one.
    pub fn set(&self, n: u64) {
        self.value.store(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

pub static BLOB_HITS: Counter = Counter::new(
    "portcullis_cache_hits_total",
    "kind=\"blob\"",
    "Requests answered from the disk cache.",
);
pub static MANIFEST_HITS: Counter = Counter::new(
    "portcullis_cache_hits_total",
    "kind=\"manifest\"",
    "Requests answered from the disk cache.",
);
pub static BLOB_MISSES: Counter = Counter::new(
    "portcullis_cache_misses_total",
    "kind=\"blob\"",
    "Requests the disk cache could not answer.",
);
pub static MANIFEST_MISSES: Counter = Counter::new(
    "portcullis_cache_misses_total",
    "kind=\"manifest\"",
    "Requests the disk cache could not answer.",
);
pub static UPSTREAM_BLOB_FETCHES: Counter = Counter::new(
    "portcullis_upstream_blob_fetches_total",
    "",
    "Blob bodies fetched from an upstream.",
);
pub static SINGLEFLIGHT_JOINS: Counter = Counter::new(
    "portcullis_singleflight_joins_total",
    "",
    "Blob requests that joined a fetch already under way instead of starting their own.",
);
pub static STALE_TAGS: Counter = Counter::new(
    "portcullis_stale_tags_served_total",
    "",
    "Tags answered with the last known digest because the upstream could not be asked.",
);
pub static CACHE_WRITE_ERRORS: Counter = Counter::new(
    "portcullis_cache_write_errors_total",
    "",
    "Cache writes that failed (disk full, permissions): the content was served uncached.",
);
pub static EVICTIONS: Counter = Counter::new(
    "portcullis_cache_evictions_total",
    "",
    "Blobs removed from the cache to keep it within its size limit.",
);
pub static CACHE_BYTES: Counter = Counter::new(
    "portcullis_cache_bytes",
    "",
    "Bytes of blobs in the disk cache.",
);

static ALL: [&Counter; 10] = [
    &BLOB_HITS,
    &MANIFEST_HITS,
    &BLOB_MISSES,
    &MANIFEST_MISSES,
    &UPSTREAM_BLOB_FETCHES,
    &SINGLEFLIGHT_JOINS,
    &STALE_TAGS,
    &CACHE_WRITE_ERRORS,
    &EVICTIONS,
    &CACHE_BYTES,
];

/// The Prometheus text exposition of every counter.
pub fn render() -> String {
    let mut out = String::new();
    let mut last = "";
    for c in ALL {
        if c.name != last {
            let kind = if c.name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} {kind}",
                c.name, c.help, c.name
            );
            last = c.name;
        }
        if c.label.is_empty() {
            let _ = writeln!(out, "{} {}", c.name, c.get());
        } else {
            let _ = writeln!(out, "{}{{{}}} {}", c.name, c.label, c.get());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_family_once_with_its_labels() {
        STALE_TAGS.inc();
        let text = render();
        assert_eq!(
            text.matches("# TYPE portcullis_cache_hits_total counter")
                .count(),
            1
        );
        assert!(text.contains("portcullis_cache_hits_total{kind=\"blob\"} "));
        assert!(text.contains("# TYPE portcullis_cache_bytes gauge"));
        let stale: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("portcullis_stale_tags_served_total "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(stale >= 1);
    }
}
