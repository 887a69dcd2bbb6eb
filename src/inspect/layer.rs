//! The streaming layer inspector: layer bytes are pushed in as they arrive from the upstream
//! (no threads, no async, no I/O), decompressed (gzip, zstd, xz, bzip2, or a plain tar: every
//! format dockerd or containerd unpacks), parsed as tar the way Go's `archive/tar` parses it, and
//! every regular file's content is checked against the rule pack; findings come out at the end.
//!
//! Pipeline: `update(chunk)` → format sniffed from the magic bytes as the clients sniff it →
//! decoder (flate2/zstd/liblzma/bzip2 push decoders) → [`tar::TarStream`] (512-byte blocks, GNU
//! long names, PAX, sparse files) → [`analyze::Analyzer`] (content automaton over every byte of
//! every file, per-file analyzers on a bounded prefix) → [`LayerReport`].
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
pub use analyze::InspectedFile;
use flate2::write::MultiGzDecoder;
use std::io::{self, Write};
use std::sync::Arc;

/// How a layer blob is compressed, as its media type declares it. The clients do not trust the
/// declaration: dockerd and containerd sniff the magic bytes, and so does the inspector. A
/// declared compression only names the decoder whose error is reported for bytes with no magic
/// that are not a tar either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Sniff the magic bytes: gzip, zstd, xz, bzip2, tar; bytes that are none of them (and no
    /// tar header) are not a layer and are not inspected (see [`NotALayer`]).
    Auto,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
    /// A plain tar.
    None,
}

impl Compression {
    /// From a layer media type; [`Compression::Auto`] for anything not clearly one of them.
    /// OCI defines `+gzip` and `+zstd`; `+xz`/`+bzip2` are not in the spec (docker-era images
    /// carry xz or bzip2 bytes under the plain `tar` media types, and dockerd sniffs them).
    pub fn from_media_type(media_type: &str) -> Compression {
        let mt = media_type.split(';').next().unwrap_or("").trim();
        if mt.ends_with("+gzip") || mt.ends_with(".tar.gzip") {
            Compression::Gzip
        } else if mt.ends_with("+zstd") {
            Compression::Zstd
        } else if mt.ends_with("+xz") || mt.ends_with(".tar.xz") {
            Compression::Xz
        } else if mt.ends_with("+bzip2") || mt.ends_with("+bz2") || mt.ends_with(".tar.bzip2") {
            Compression::Bzip2
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
    Xz,
    Bzip2,
    Tar,
    /// Not a layer (a config blob, or unknown bytes): nothing was inspected.
    /// [`LayerReport::not_a_layer`] says why.
    NotALayer,
}

/// Why a blob is [`LayerFormat::NotALayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotALayer {
    /// No bytes at all. Go's tar reader reads an empty stream as an empty layer: nothing is
    /// written, so there is nothing to judge.
    Empty,
    /// No compression magic a client knows (gzip `1f 8b 08`, zstd frame or skippable frame, xz
    /// `fd 37 7a 58 5a 00`, bzip2 `BZh`), and the first 512 bytes are no tar header Go's
    /// `archive/tar` accepts (bad checksum, or too short): a JSON config, an attestation, random
    /// bytes. dockerd and containerd hand such bytes to the tar reader, which fails at the first
    /// header, so a pull that applies it as a layer fails and writes nothing. A client that is
    /// not Go (or a future compression) might still read something in it: nothing was inspected.
    NotTar,
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
    /// Largest GNU long name, PAX record block or sparse map. Default 1 MiB, Go's own limit
    /// (`maxSpecialFileSize`), so that every archive Go reads is read to the end here.
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
            max_ext: 1 << 20,
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
    /// Set exactly when `format` is [`LayerFormat::NotALayer`].
    pub not_a_layer: Option<NotALayer>,
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
    /// Every file whose content was inspected, in archive order, with the SHA-256 of the bytes
    /// inspected: only when [`LayerInspector::record_files`] asked for it (tests, and the
    /// differential test against Go's `archive/tar`), empty otherwise.
    pub inspected: Vec<InspectedFile>,
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

/// The xz decoder's memory limit: xz -9 needs 65 MiB; a header asking for a bigger dictionary
/// (up to 1.5 GiB) fails the layer instead of taking the memory.
const XZ_MEMLIMIT: u64 = 256 << 20;

/// A push decoder for bzip2 that reads concatenated streams, as Go's `compress/bzip2` does.
struct MultiBz {
    d: bzip2::Decompress,
    out: Vec<u8>,
    inner: Pipeline,
    /// The current stream ended: more bytes must start another.
    ended: bool,
}

impl MultiBz {
    fn new(inner: Pipeline) -> MultiBz {
        MultiBz {
            d: bzip2::Decompress::new(false),
            out: vec![0; 64 << 10],
            inner,
            ended: false,
        }
    }

    /// Decodes `input`; empty `input` drains what the decoder still holds.
    fn step(&mut self, mut input: &[u8]) -> io::Result<bool> {
        let mut progress = false;
        loop {
            if self.ended {
                if input.is_empty() {
                    return Ok(progress);
                }
                self.d = bzip2::Decompress::new(false);
                self.ended = false;
            }
            let (in0, out0) = (self.d.total_in(), self.d.total_out());
            let status = self
                .d
                .decompress(input, &mut self.out)
                .map_err(io::Error::other)?;
            let used = (self.d.total_in() - in0) as usize;
            let made = (self.d.total_out() - out0) as usize;
            input = &input[used..];
            self.inner.write_all(&self.out[..made])?;
            progress |= used > 0 || made > 0;
            if status == bzip2::Status::StreamEnd {
                self.ended = true;
            } else if used == 0 && made == 0 {
                return Ok(progress);
            }
        }
    }

    fn write_all(&mut self, input: &[u8]) -> io::Result<()> {
        self.step(input).map(|_| ())
    }

    fn finish(&mut self) -> io::Result<()> {
        while !self.ended {
            if !self.step(&[])? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "bzip2 stream is truncated",
                ));
            }
        }
        Ok(())
    }
}

enum Decoder {
    /// Waiting for enough bytes to tell the format; the declared compression.
    Sniff(Vec<u8>, Box<Pipeline>, Compression),
    Gzip(Box<MultiGzDecoder<Pipeline>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Pipeline>>),
    Xz(Box<liblzma::write::XzDecoder<Pipeline>>),
    Bzip2(Box<MultiBz>),
    Tar(Box<Pipeline>),
    NotALayer(Box<Pipeline>, NotALayer),
}

impl Decoder {
    fn pipeline(&mut self) -> &mut Pipeline {
        match self {
            Decoder::Sniff(_, p, _) | Decoder::Tar(p) | Decoder::NotALayer(p, _) => p,
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Zstd(d) => d.get_mut(),
            Decoder::Xz(d) => d.get_mut(),
            Decoder::Bzip2(d) => &mut d.inner,
        }
    }

    fn format(&self) -> LayerFormat {
        match self {
            Decoder::Gzip(_) => LayerFormat::Gzip,
            Decoder::Zstd(_) => LayerFormat::Zstd,
            Decoder::Xz(_) => LayerFormat::Xz,
            Decoder::Bzip2(_) => LayerFormat::Bzip2,
            Decoder::Tar(_) => LayerFormat::Tar,
            Decoder::Sniff(..) | Decoder::NotALayer(..) => LayerFormat::NotALayer,
        }
    }

    fn write_all(&mut self, chunk: &[u8]) -> Result<(), String> {
        let format = self.format();
        match self {
            Decoder::Gzip(d) => d.write_all(chunk),
            Decoder::Zstd(d) => d.write_all(chunk),
            Decoder::Xz(d) => d.write_all(chunk),
            Decoder::Bzip2(d) => d.write_all(chunk),
            Decoder::Tar(p) => p.write_all(chunk),
            Decoder::Sniff(..) | Decoder::NotALayer(..) => Ok(()),
        }
        .map_err(|e| format!("{}: {e}", format!("{format:?}").to_lowercase()))
    }

    /// A decoder for a known compression (never `Auto`, which sniffs first).
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
            Compression::Xz => {
                match liblzma::stream::Stream::new_stream_decoder(
                    XZ_MEMLIMIT,
                    liblzma::stream::CONCATENATED,
                ) {
                    Ok(raw) => Decoder::Xz(Box::new(liblzma::write::XzDecoder::new_stream(
                        *pipeline, raw,
                    ))),
                    Err(e) => return Err((pipeline, format!("xz: {e}"))),
                }
            }
            Compression::Bzip2 => Decoder::Bzip2(Box::new(MultiBz::new(*pipeline))),
            Compression::None => Decoder::Tar(pipeline),
            Compression::Auto => Decoder::Sniff(Vec::new(), pipeline, Compression::Auto),
        })
    }
}

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    /// More bytes could still decide it.
    More,
    Is(Compression),
    Not(NotALayer),
}

/// Tells the format from the first bytes, as dockerd's and containerd's `DetectCompression` do
/// (then Go's tar reader for bytes with no magic).
fn sniff(head: &[u8], done: bool) -> Sniffed {
    const MAGICS: [(&[u8], Compression); 4] = [
        (b"\x1f\x8b\x08", Compression::Gzip),
        (b"\x28\xb5\x2f\xfd", Compression::Zstd),
        (b"\xfd7zXZ\x00", Compression::Xz),
        (b"BZh", Compression::Bzip2),
    ];
    for (magic, c) in MAGICS {
        if head.starts_with(magic) {
            return Sniffed::Is(c);
        }
    }
    // A zstd stream may open with a skippable frame (magic 0x184D2A50..=0x184D2A5F).
    if head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18] {
        return Sniffed::Is(Compression::Zstd);
    }
    if head.len() >= 512 {
        // Go's reader: two zero blocks (or one, then the end) are an empty archive.
        return if head[..512].iter().all(|&b| b == 0) || tar::is_header(head) {
            Sniffed::Is(Compression::None)
        } else {
            Sniffed::Not(NotALayer::NotTar)
        };
    }
    if !done {
        return Sniffed::More;
    }
    Sniffed::Not(if head.is_empty() {
        NotALayer::Empty
    } else {
        NotALayer::NotTar
    })
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
        LayerInspector {
            decoder: Some(Decoder::Sniff(Vec::new(), pipeline, compression)),
            stopped: false,
            errors: Vec::new(),
            compressed: 0,
        }
    }

    /// Keeps the list of inspected files with the SHA-256 of their inspected bytes, in
    /// [`LayerReport::inspected`] (costs a hash of every byte: tests and diagnostics only).
    pub fn record_files(&mut self) {
        if let Some(d) = self.decoder.as_mut() {
            d.pipeline().analyzer.record_files();
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
        if let Decoder::Sniff(head, ..) = &mut decoder {
            head.extend_from_slice(chunk);
            match sniff(head, false) {
                Sniffed::More => {}
                s => decoder = self.leave_sniff(decoder, s),
            }
        } else if let Err(e) = decoder.write_all(chunk) {
            self.fail(&mut decoder, e);
        }
        self.decoder = Some(decoder);
    }

    /// Replaces the sniffing state by the decoder for what was sniffed, feeding it the bytes
    /// held so far.
    fn leave_sniff(&mut self, decoder: Decoder, sniffed: Sniffed) -> Decoder {
        let Decoder::Sniff(head, mut pipeline, declared) = decoder else {
            return decoder;
        };
        // The bytes were counted once already; the decoder's writes count inflated bytes only.
        pipeline.compressed = head.len() as u64;
        let c = match sniffed {
            Sniffed::Is(c) => c,
            // No magic and no tar header: a declared compression's decoder says what is wrong
            // with the bytes (the layer is then judged incomplete); undeclared, not a layer.
            Sniffed::Not(why) if declared == Compression::Auto || why == NotALayer::Empty => {
                return Decoder::NotALayer(pipeline, why);
            }
            Sniffed::Not(_) | Sniffed::More => declared,
        };
        let mut d = match Decoder::start(c, pipeline) {
            Ok(d) => d,
            Err((p, e)) => {
                self.errors.push(e);
                return Decoder::NotALayer(p, NotALayer::NotTar);
            }
        };
        if let Err(e) = d.write_all(&head) {
            self.fail(&mut d, e);
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
                not_a_layer: Some(NotALayer::NotTar),
                findings: Vec::new(),
                dropped_findings: 0,
                files: 0,
                entries: 0,
                compressed_bytes: self.compressed,
                uncompressed_bytes: 0,
                executables: Vec::new(),
                errors: vec!["inspector state lost".into()],
                inspected: Vec::new(),
            };
        };
        if let Decoder::Sniff(head, ..) = &decoder {
            let s = sniff(head, true);
            decoder = self.leave_sniff(decoder, s);
        }
        if !self.stopped {
            let flushed = match &mut decoder {
                Decoder::Gzip(d) => d.try_finish().map_err(|e| format!("gzip: {e}")),
                Decoder::Zstd(d) => d.do_finish().map_err(|e| format!("zstd: {e}")),
                Decoder::Xz(d) => d.try_finish().map_err(|e| format!("xz: {e}")),
                Decoder::Bzip2(d) => d.finish().map_err(|e| format!("bzip2: {e}")),
                _ => Ok(()),
            };
            if let Err(e) = flushed {
                self.fail(&mut decoder, e);
            }
        }
        let format = decoder.format();
        let not_a_layer = match &decoder {
            Decoder::NotALayer(_, why) => Some(*why),
            Decoder::Sniff(..) => Some(NotALayer::NotTar),
            _ => None,
        };
        let p = decoder.pipeline();
        let mut errors = std::mem::take(&mut self.errors);
        if format != LayerFormat::NotALayer {
            if let Some(e) = p.tar.error.take() {
                errors.push(e);
            } else if !self.stopped && !p.tar.at_boundary() {
                errors.push("tar stream ends inside an entry".into());
            }
            if p.analyzer.links_overflow {
                errors.push(format!(
                    "more symlinks than {} (paths behind later ones may not be resolved)",
                    analyze::MAX_LINKS
                ));
            }
        }
        p.analyzer.close();
        let a = &mut p.analyzer;
        LayerReport {
            format,
            not_a_layer,
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
            inspected: a.take_inspected(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
