//! The streaming layer inspector: layer bytes are pushed in as they arrive from the upstream
//! (no threads, no async, no I/O), inflated (gzip, zstd or plain tar), parsed as tar, and every
//! regular file's content is checked against the rule pack; findings come out at the end.
//!
//! Pipeline: `update(chunk)` → decoder (flate2/zstd push decoders) → [`tar::TarStream`] (512-byte
//! blocks, GNU long names, PAX) → [`analyze::Analyzer`] (content automaton over every byte of every
//! file, per-file analyzers on a bounded prefix) → [`LayerReport`].
//!
//! Memory is bounded by [`Limits`] whatever the layer holds: one tar block, extension records up
//! to `max_ext`, a per-file prefix up to `prefix` (`max_json` for `*.json` files), the decoders'
//! windows, and at most `max_findings` findings. A decompression bomb (inflating past `max_ratio`×
//! once past `bomb_floor`, or past `max_uncompressed`) stops inspection with a finding.

mod analyze;
pub use analyze::LayerRules;
mod buckets;
mod elf;
mod search;
mod tar;
mod xmrig;

use crate::inspect::rules::RuleSet;
use crate::inspect::{Finding, Place};
use analyze::Analyzer;
use flate2::write::MultiGzDecoder;
use std::io::{self, Write};
use std::sync::Arc;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Sniff the magic bytes: gzip, zstd, tar; anything else is not a layer and is not inspected.
    Auto,
    Gzip,
    Zstd,
    /// A plain tar.
    None,
}

impl Compression {
    /// From a layer media type; [`Compression::Auto`] for anything not clearly one of the three.
    pub fn from_media_type(media_type: &str) -> Compression {
        let mt = media_type.split(';').next().unwrap_or("").trim();
        if mt.ends_with("+gzip") || mt.ends_with(".tar.gzip") {
            Compression::Gzip
        } else if mt.ends_with("+zstd") {
            Compression::Zstd
        } else if mt.ends_with(".tar") {
            Compression::None
        } else {
            Compression::Auto
        }
    }
}

/// What the layer turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerFormat {
    Gzip,
    Zstd,
    Tar,
    /// Not a layer (a config blob, or unknown bytes): nothing was inspected.
    NotALayer,
}

/// Bounds on work and memory per layer. Every field has a default ([`Limits::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Inflated bytes past which the ratio check applies. Default 1 GiB.
    pub bomb_floor: u64,
    /// Largest inflated:compressed ratio allowed past `bomb_floor`. Default 64.
    pub max_ratio: u64,
    /// Inflated bytes that always stop inspection. Default 64 GiB.
    pub max_uncompressed: u64,
    /// Largest declared tar entry; a bigger one stops inspection with an error. Default 64 GiB.
    pub max_entry: u64,
    /// Largest GNU long name or PAX record block. Default 64 KiB.
    pub max_ext: usize,
    /// Bytes kept from the start of each file for the prefix analyzers. Default 64 KiB.
    pub prefix: usize,
    /// `*.json` files up to this size are kept whole to be parsed as XMRig configs. Default 1 MiB.
    pub max_json: usize,
    /// Findings kept per layer (the highest scores win). Default 200.
    pub max_findings: usize,
    /// Executable paths listed per layer. Default 20,000.
    pub max_executables: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            bomb_floor: 1 << 30,
            max_ratio: 64,
            max_uncompressed: 64 << 30,
            max_entry: 64 << 30,
            max_ext: 64 << 10,
            prefix: 64 << 10,
            max_json: 1 << 20,
            max_findings: 200,
            max_executables: 20_000,
        }
    }
}

/// What inspecting one layer found.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerReport {
    pub format: LayerFormat,
    /// At most one per (rule, path), at most `Limits::max_findings`.
    pub findings: Vec<Finding>,
    /// Findings left out by the cap.
    pub dropped_findings: u64,
    /// Regular files seen.
    pub files: u64,
    /// Tar entries seen (files, links, dirs…).
    pub entries: u64,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    /// Absolute paths of executables (ELF, scripts, mode +x, and hard links to them), in archive
    /// order, for the caller that knows the entrypoint: see [`LayerReport::mark_runs`].
    pub executables: Vec<String>,
    /// Why inspection could not finish cleanly (corrupt stream, truncated or malformed tar,
    /// limits hit). Empty when the whole layer was inspected.
    pub errors: Vec<String>,
}

impl LayerReport {
    /// The layer's score: each rule counts once, at its strongest finding, so a string repeated in
    /// many files (rule files, docs) does not add up to a block.
    pub fn score(&self) -> f64 {
        score(&self.findings)
    }

    /// Whether every byte was inspected.
    pub fn complete(&self) -> bool {
        self.errors.is_empty()
    }

    /// Upgrades findings in files that run (entrypoint, cmd, cron, systemd) to [`Place::Runs`],
    /// rescaling their scores. `paths` are absolute, as in [`LayerReport::executables`].
    pub fn mark_runs(&mut self, paths: &[&str]) {
        for f in &mut self.findings {
            if f.place != Place::Runs
                && f.evidence
                    .path
                    .as_deref()
                    .is_some_and(|p| paths.contains(&p))
            {
                f.score = f.score / f.place.multiplier() * Place::Runs.multiplier();
                f.place = Place::Runs;
            }
        }
    }

    /// The `n` highest-scoring findings.
    pub fn top(&self, n: usize) -> Vec<&Finding> {
        let mut all: Vec<&Finding> = self.findings.iter().collect();
        all.sort_by(|a, b| b.score.total_cmp(&a.score));
        all.truncate(n);
        all
    }
}

fn score(findings: &[Finding]) -> f64 {
    super::total_score(findings)
}

/// Where inflated bytes go: the tar parser and the analyzer, with the bomb check in front.
struct Pipeline {
    tar: tar::TarStream,
    analyzer: Analyzer,
    limits: Limits,
    /// Compressed bytes pushed so far (kept here for the ratio check).
    compressed: u64,
    inflated: u64,
    bomb: bool,
}

impl Write for Pipeline {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inflated += buf.len() as u64;
        let l = &self.limits;
        let ratio_hit = self.inflated > l.bomb_floor
            && self.inflated > self.compressed.saturating_mul(l.max_ratio);
        if ratio_hit || self.inflated > l.max_uncompressed {
            self.bomb = true;
            return Err(io::Error::other("decompression limit"));
        }
        if self.tar.wants_more() {
            self.tar.feed(buf, &mut self.analyzer);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Decoder {
    /// Waiting for enough bytes to tell the format.
    Sniff(Vec<u8>, Box<Pipeline>),
    Gzip(Box<MultiGzDecoder<Pipeline>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Pipeline>>),
    Tar(Box<Pipeline>),
    NotALayer(Box<Pipeline>),
}

impl Decoder {
    fn pipeline(&mut self) -> &mut Pipeline {
        match self {
            Decoder::Sniff(_, p) | Decoder::Tar(p) | Decoder::NotALayer(p) => p,
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Zstd(d) => d.get_mut(),
        }
    }

    fn format(&self) -> LayerFormat {
        match self {
            Decoder::Gzip(_) => LayerFormat::Gzip,
            Decoder::Zstd(_) => LayerFormat::Zstd,
            Decoder::Tar(_) => LayerFormat::Tar,
            Decoder::Sniff(..) | Decoder::NotALayer(_) => LayerFormat::NotALayer,
        }
    }

    fn start(
        compression: Compression,
        pipeline: Box<Pipeline>,
    ) -> Result<Decoder, (Box<Pipeline>, String)> {
        Ok(match compression {
            Compression::Gzip => Decoder::Gzip(Box::new(MultiGzDecoder::new(*pipeline))),
            Compression::Zstd => match zstd::stream::raw::Decoder::new() {
                Ok(raw) => Decoder::Zstd(Box::new(zstd::stream::write::Decoder::with_decoder(
                    *pipeline, raw,
                ))),
                Err(e) => return Err((pipeline, format!("zstd: {e}"))),
            },
            Compression::None => Decoder::Tar(pipeline),
            Compression::Auto => Decoder::Sniff(Vec::new(), pipeline),
        })
    }
}

/// Tells the format from the first bytes; `None` while more bytes could still decide it.
fn sniff(head: &[u8], done: bool) -> Option<Compression> {
    const TAR_MAGIC_AT: usize = 257;
    if head.starts_with(b"\x1f\x8b") {
        return Some(Compression::Gzip);
    }
    if head.starts_with(b"\x28\xb5\x2f\xfd") {
        return Some(Compression::Zstd);
    }
    if head.len() >= TAR_MAGIC_AT + 5 && &head[TAR_MAGIC_AT..TAR_MAGIC_AT + 5] == b"ustar" {
        return Some(Compression::None);
    }
    if head.len() >= 512 {
        // An empty tar is all zeros; anything else without a magic is not a layer.
        return Some(if head[..512].iter().all(|&b| b == 0) {
            Compression::None
        } else {
            Compression::Auto
        });
    }
    done.then_some(Compression::Auto)
}

/// The push-based layer inspector. Feed every byte of the blob, in order, to
/// [`LayerInspector::update`], then call [`LayerInspector::finish`]. Never panics on any input.
pub struct LayerInspector {
    decoder: Option<Decoder>,
    /// Set when the decoder failed: later bytes are counted, not inspected.
    stopped: bool,
    errors: Vec<String>,
    compressed: u64,
}

impl LayerInspector {
    /// `layer` is the blob digest, recorded in every finding's evidence.
    pub fn new(
        rules: Arc<RuleSet>,
        compression: Compression,
        limits: Limits,
        layer: Option<String>,
    ) -> LayerInspector {
        LayerInspector::with_layer_rules(
            Arc::new(LayerRules::new(rules)),
            compression,
            limits,
            layer,
        )
    }

    pub fn with_layer_rules(
        rules: Arc<LayerRules>,
        compression: Compression,
        limits: Limits,
        layer: Option<String>,
    ) -> LayerInspector {
        let pipeline = Box::new(Pipeline {
            tar: tar::TarStream::new(limits.max_ext, limits.max_entry),
            analyzer: Analyzer::new(rules, limits, layer),
            limits,
            compressed: 0,
            inflated: 0,
            bomb: false,
        });
        let mut errors = Vec::new();
        let decoder = Decoder::start(compression, pipeline).unwrap_or_else(|(p, e)| {
            errors.push(e);
            Decoder::NotALayer(p)
        });
        LayerInspector {
            decoder: Some(decoder),
            stopped: false,
            errors,
            compressed: 0,
        }
    }

    /// Pushes the next chunk of the blob.
    pub fn update(&mut self, chunk: &[u8]) {
        self.compressed += chunk.len() as u64;
        if self.stopped {
            return;
        }
        let Some(mut decoder) = self.decoder.take() else {
            return;
        };
        decoder.pipeline().compressed += chunk.len() as u64;
        let decided = match &mut decoder {
            Decoder::Sniff(head, _) => {
                head.extend_from_slice(chunk);
                sniff(head, false)
            }
            _ => None,
        };
        if let Some(c) = decided {
            decoder = self.leave_sniff(decoder, c);
        } else {
            let result = match &mut decoder {
                Decoder::Gzip(d) => d.write_all(chunk).map_err(|e| format!("gzip: {e}")),
                Decoder::Zstd(d) => d.write_all(chunk).map_err(|e| format!("zstd: {e}")),
                Decoder::Tar(p) => p.write_all(chunk).map_err(|e| format!("tar: {e}")),
                Decoder::Sniff(..) | Decoder::NotALayer(_) => Ok(()),
            };
            if let Err(e) = result {
                self.fail(&mut decoder, e);
            }
        }
        self.decoder = Some(decoder);
    }

    /// Replaces the sniffing state by the decoder for `c`, feeding it the bytes held so far.
    fn leave_sniff(&mut self, decoder: Decoder, c: Compression) -> Decoder {
        let Decoder::Sniff(head, mut pipeline) = decoder else {
            return decoder;
        };
        // The bytes were counted once already; the decoder's writes count inflated bytes only.
        pipeline.compressed = head.len() as u64;
        if c == Compression::Auto {
            return Decoder::NotALayer(pipeline);
        }
        let mut d = match Decoder::start(c, pipeline) {
            Ok(d) => d,
            Err((p, e)) => {
                self.errors.push(e);
                return Decoder::NotALayer(p);
            }
        };
        let result = match &mut d {
            Decoder::Gzip(g) => g.write_all(&head),
            Decoder::Zstd(z) => z.write_all(&head),
            Decoder::Tar(p) => p.write_all(&head),
            _ => Ok(()),
        };
        if let Err(e) = result {
            let what = format!("{:?}", d.format()).to_lowercase();
            self.fail(&mut d, format!("{what}: {e}"));
        }
        d
    }

    fn fail(&mut self, decoder: &mut Decoder, error: String) {
        self.stopped = true;
        let p = decoder.pipeline();
        if p.bomb {
            let l = p.limits;
            let msg = format!(
                "inflated past {} bytes from {} compressed (limits: ratio {}× past {} bytes, {} bytes total)",
                p.inflated, p.compressed, l.max_ratio, l.bomb_floor, l.max_uncompressed
            );
            if let Some(r) = p.analyzer.bomb_rule() {
                p.analyzer.emit(r, Place::File, None, None, msg.clone());
            }
            self.errors.push(format!("decompression bomb: {msg}"));
        } else {
            self.errors.push(error);
        }
    }

    /// The running score of the findings so far (files still open are not judged yet).
    pub fn score(&mut self) -> f64 {
        self.decoder
            .as_mut()
            .map_or(0.0, |d| d.pipeline().analyzer.score())
    }

    /// The findings so far (files still open are not judged yet).
    pub fn findings_so_far(&mut self) -> Vec<Finding> {
        self.decoder
            .as_mut()
            .map_or_else(Vec::new, |d| d.pipeline().analyzer.findings.clone())
    }

    /// A number that changes whenever the findings so far change.
    pub fn findings_version(&mut self) -> u64 {
        self.decoder
            .as_mut()
            .map_or(0, |d| d.pipeline().analyzer.version)
    }

    /// Ends the stream: flushes the decoder, judges a file left open, and reports.
    pub fn finish(mut self) -> LayerReport {
        let Some(mut decoder) = self.decoder.take() else {
            // Only `update` takes the decoder, and it always puts it back.
            return LayerReport {
                format: LayerFormat::NotALayer,
                findings: Vec::new(),
                dropped_findings: 0,
                files: 0,
                entries: 0,
                compressed_bytes: self.compressed,
                uncompressed_bytes: 0,
                executables: Vec::new(),
                errors: vec!["inspector state lost".into()],
            };
        };
        if let Decoder::Sniff(head, _) = &decoder {
            let c = sniff(head, true).unwrap_or(Compression::Auto);
            decoder = self.leave_sniff(decoder, c);
        }
        if !self.stopped {
            let flushed = match &mut decoder {
                Decoder::Gzip(d) => d.try_finish().map_err(|e| format!("gzip: {e}")),
                Decoder::Zstd(d) => d.do_finish().map_err(|e| format!("zstd: {e}")),
                _ => Ok(()),
            };
            if let Err(e) = flushed {
                self.fail(&mut decoder, e);
            }
        }
        let format = decoder.format();
        let p = decoder.pipeline();
        let mut errors = std::mem::take(&mut self.errors);
        if format != LayerFormat::NotALayer {
            if let Some(e) = p.tar.error.take() {
                errors.push(e);
            } else if !self.stopped && !p.tar.at_boundary() {
                errors.push("tar stream ends inside an entry".into());
            }
        }
        p.analyzer.close();
        let a = &mut p.analyzer;
        LayerReport {
            format,
            findings: std::mem::take(&mut a.findings),
            dropped_findings: a.dropped,
            files: a.files,
            entries: p.tar.entries,
            compressed_bytes: self.compressed,
            uncompressed_bytes: if format == LayerFormat::NotALayer {
                0
            } else {
                p.inflated
            },
            executables: std::mem::take(&mut a.executables),
            errors,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
