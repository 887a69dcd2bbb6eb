//! Per-file analysis: the tar parser's sink. Every regular file's content is searched for the
//! literals of its class ([`super::search`], which finds a literal split between two slices); a
//! bounded prefix of the file is kept for the
//! analyzers that need bytes (ELF header and entropy, shebang, regexes, XMRig JSON). When a file
//! ends, its hits are judged against the rules and turned into findings.

use super::search::{Literals, Stream};
use super::tar::{Entry, Kind, TarSink};
use super::{elf, xmrig, Limits};
use crate::inspect::rules::{Hit, Matcher, Rule, RuleSet, Scope};
use crate::inspect::{cut, wallet, Category, Evidence, Finding, Place};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

/// Bytes of a file looked at before deciding how to treat it (type sniffing).
const HEAD: usize = 512;
/// Zero bytes of a sparse file's hole that are searched (past what the kept prefix needs): more
/// than the longest literal, so a literal that runs into or out of a hole is found; the rest of
/// the hole is zeros that no literal matches, and is skipped.
const HOLE_SCAN: u64 = 1024;
/// Symlinks remembered per layer to place later entries where containerd writes them.
pub(crate) const MAX_LINKS: usize = 100_000;
/// Entropy above which an ELF without section headers counts as packed.
const PACKED_ENTROPY: f64 = 7.2;
/// The least prefix that makes an entropy figure meaningful.
const ENTROPY_MIN_BYTES: usize = 4096;

/// How the layer inspector treats a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Literals/regexes, in any file (`min_distinct` of them).
    Content,
    /// Has `paths`: its literals/regexes count only in files there; with none, any non-empty
    /// regular file there fires it.
    Path,
    /// Literals/regexes that count only in scripts.
    Script,
    /// Literals/regexes that count only in ELF files (binary signatures).
    Elf,
    /// An executable at one of its `paths`.
    Executable,
    Wallet,
    XmrigConfig,
    Upx,
    UpxTampered,
    PackedElf,
    PathTraversal,
    Bomb,
    /// Not a layer rule (other scopes, or a detector another inspector implements).
    Ignored,
}

impl Role {
    fn of(rule: &Rule) -> Role {
        match rule.detector.as_deref() {
            Some("script") => Role::Script,
            Some("elf") => Role::Elf,
            Some("executable") => Role::Executable,
            Some("monero-wallet") if rule.scopes.contains(&Scope::Content) => Role::Wallet,
            Some("xmrig-config") => Role::XmrigConfig,
            Some("upx") => Role::Upx,
            Some("upx-tampered") => Role::UpxTampered,
            Some("packed-elf") => Role::PackedElf,
            Some("path-traversal") => Role::PathTraversal,
            Some("decompression-bomb") => Role::Bomb,
            Some(_) => Role::Ignored,
            None if !rule.paths.is_empty() => Role::Path,
            None if rule.scopes.contains(&Scope::Content) => Role::Content,
            None => Role::Ignored,
        }
    }
}

/// The UPX markers the `upx`/`upx-tampered` rules give as literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpxMark {
    Magic,
    Info,
    Section,
    Stub,
}

impl UpxMark {
    fn of(literal: &str) -> UpxMark {
        if literal.eq_ignore_ascii_case("UPX!") {
            UpxMark::Magic
        } else if literal.starts_with("$Info:") {
            UpxMark::Info
        } else if literal.eq_ignore_ascii_case("UPX0") || literal.eq_ignore_ascii_case("UPX1") {
            UpxMark::Section
        } else {
            UpxMark::Stub
        }
    }
}

/// The rule pack seen from the layer inspector, derived once per rule set.
pub struct LayerRules {
    pub set: Arc<RuleSet>,
    roles: Vec<Role>,
    /// First global pattern number of each rule (its literals, then its regexes).
    base: Vec<usize>,
    patterns: usize,
    /// UPX marker of each global pattern number, for the UPX rules' literals.
    upx: Vec<Option<UpxMark>>,
    /// The rule behind each layer-level detector.
    traversal: Option<usize>,
    pub bomb: Option<usize>,
    xmrig: Option<usize>,
    wallet: Option<usize>,
    upx_rule: Option<usize>,
    upx_tampered: Option<usize>,
    packed: Option<usize>,
    /// Per file [`Class`]: the content literals that class needs, compiled for the streaming
    /// search; `None` when it needs none.
    search: [Option<Literals>; 4],
    /// For each rule, the [`Class`]es (bits) whose files are searched for its literals and
    /// regexes; hits of other rules are not recorded, so which files record which hits never
    /// depends on where chunk boundaries fall.
    scanned_in: Vec<u8>,
}

/// Which literals a file's content is searched for: the rules that apply to every file, plus
/// those for ELF files, for scripts, or (files at a rule's paths, which are few) all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Plain = 0,
    Elf = 1,
    Script = 2,
    PathRule = 3,
}

impl Class {
    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl LayerRules {
    pub fn new(set: Arc<RuleSet>) -> LayerRules {
        let roles: Vec<Role> = set.rules.iter().map(Role::of).collect();
        let mut base = Vec::with_capacity(set.rules.len());
        let mut upx = Vec::new();
        let mut patterns = 0;
        for (rule, role) in set.rules.iter().zip(&roles) {
            base.push(patterns);
            patterns += rule.literals.len() + rule.regexes.len();
            let upx_rule = matches!(role, Role::Upx | Role::UpxTampered);
            upx.extend(
                rule.literals
                    .iter()
                    .map(|l| upx_rule.then(|| UpxMark::of(l))),
            );
            upx.extend(rule.regexes.iter().map(|_| None));
        }
        let find = |want: Role| roles.iter().position(|r| *r == want);
        // Which file classes need each rule's literals: every file, ELF files, scripts, or only
        // files at a rule's paths (those get every literal).
        let class_of = |role: Role| match role {
            Role::Elf | Role::Upx | Role::UpxTampered => Some(Class::Elf),
            Role::Script => Some(Class::Script),
            Role::Path | Role::Executable => Some(Class::PathRule),
            Role::Ignored => None,
            _ => Some(Class::Plain),
        };
        let scanned_in: Vec<u8> = set
            .rules
            .iter()
            .zip(&roles)
            .map(|(r, role)| match class_of(*role) {
                _ if !r.scopes.contains(&Scope::Content) => 0,
                Some(Class::Plain) => 0b1111,
                Some(c) => c.bit() | Class::PathRule.bit(),
                None => 0,
            })
            .collect();
        let search = [Class::Plain, Class::Elf, Class::Script, Class::PathRule].map(|class| {
            let wanted = set.rules.iter().enumerate().zip(&scanned_in);
            Literals::new(
                wanted
                    .filter(|(_, mask)| *mask & class.bit() != 0)
                    .flat_map(|((r, rule), _)| {
                        rule.literals
                            .iter()
                            .enumerate()
                            .map(move |(p, l)| (l.as_str(), r, p))
                    }),
            )
        });
        LayerRules {
            search,
            scanned_in,
            traversal: find(Role::PathTraversal),
            bomb: find(Role::Bomb),
            xmrig: find(Role::XmrigConfig),
            wallet: find(Role::Wallet),
            upx_rule: find(Role::Upx),
            upx_tampered: find(Role::UpxTampered),
            packed: find(Role::PackedElf),
            set,
            roles,
            base,
            patterns,
            upx,
        }
    }

    /// Per file class: (distinct literals, anchors Teddy searches for).
    #[cfg(test)]
    fn search_sizes(&self) -> Vec<(usize, Option<usize>)> {
        self.search
            .iter()
            .flatten()
            .map(|l| (l.len(), l.anchor_count()))
            .collect()
    }

    fn content(&self) -> &Matcher {
        self.set.matcher(Scope::Content)
    }
}

/// One distinct (rule, pattern) seen in the current file, with its first place.
#[derive(Debug, Clone)]
struct FileHit {
    rule: usize,
    pattern: usize,
    offset: u64,
    text: String,
}

/// The distinct (rule, pattern) hits of the current file.
struct Hits {
    seen: Vec<u64>,
    list: Vec<FileHit>,
}

impl Hits {
    fn reset(&mut self) {
        self.list.clear();
        self.seen.fill(0);
    }

    fn record(&mut self, rules: &LayerRules, class: Class, hit: Hit, offset: u64, text: &[u8]) {
        if rules.scanned_in[hit.rule] & class.bit() == 0 {
            return;
        }
        let g = rules.base[hit.rule] + hit.pattern;
        let (word, bit) = (g / 64, 1u64 << (g % 64));
        if self.seen[word] & bit != 0 {
            return;
        }
        self.seen[word] |= bit;
        self.list.push(FileHit {
            rule: hit.rule,
            pattern: hit.pattern,
            offset,
            text: cut(&String::from_utf8_lossy(text)),
        });
    }
}

/// The regular file being read.
struct FileState {
    /// Normalised: no leading `./` or `/`.
    path: String,
    mode: u32,
    size: u64,
    /// Bytes received so far.
    received: u64,
    docs: bool,
    json: bool,
    path_rules: Vec<usize>,
    decided: bool,
    scan: bool,
    keep: usize,
    is_elf: bool,
    is_script: bool,
    class: Class,
}

/// The tar sink that turns files into findings.
pub(crate) struct Analyzer {
    rules: Arc<LayerRules>,
    limits: Limits,
    layer: Option<String>,
    file: Option<FileState>,
    head: Vec<u8>,
    /// The content search through the current file.
    stream: Stream,
    hits: Hits,
    pub findings: Vec<Finding>,
    /// Findings left out because the cap was reached (lowest scores go first).
    pub dropped: u64,
    /// Bumped whenever `findings` changes.
    pub version: u64,
    pub files: u64,
    pub executables: Vec<String>,
    exec_hashes: HashSet<u64>,
    hasher: RandomState,
    /// The layer's symlinks so far, by path (cleaned, no leading `/`) to target: containerd
    /// resolves them in an entry's parent directories (`fs.RootPath`), so `x/job` behind
    /// `x -> /etc/cron.d` is written as `etc/cron.d/job`, and is judged under that path.
    links: BTreeMap<String, String>,
    /// More symlinks than [`MAX_LINKS`]: later paths may not be resolved through all of them.
    pub links_overflow: bool,
    /// When the caller asked for the list of inspected files.
    record: Option<Record>,
}

/// One file whose bytes were inspected, as the layer writes it to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectedFile {
    /// Absolute, cleaned, with the layer's own symlinks resolved in its directories.
    pub path: String,
    /// Bytes inspected (a sparse file's holes included).
    pub size: u64,
    /// SHA-256 of those bytes (for a hard link: of its target's as last inspected).
    pub sha256: [u8; 32],
    /// A hard link to an earlier file, which gets that file's content.
    pub hard_link: bool,
}

/// The inspected-files list, kept only on request (tests, the differential test against Go).
#[derive(Default)]
struct Record {
    hasher: Sha256,
    files: Vec<InspectedFile>,
    /// Last content inspected at each path (for hard links).
    by_path: HashMap<String, ([u8; 32], u64)>,
}

impl Analyzer {
    pub fn new(rules: Arc<LayerRules>, limits: Limits, layer: Option<String>) -> Analyzer {
        let words = rules.patterns.div_ceil(64).max(1);
        Analyzer {
            hits: Hits {
                seen: vec![0; words],
                list: Vec::new(),
            },
            stream: Stream::default(),
            rules,
            limits,
            layer,
            file: None,
            head: Vec::new(),
            findings: Vec::new(),
            dropped: 0,
            version: 0,
            files: 0,
            executables: Vec::new(),
            exec_hashes: HashSet::new(),
            hasher: RandomState::new(),
            links: BTreeMap::new(),
            links_overflow: false,
            record: None,
        }
    }

    /// Keeps the list of inspected files (path, size, SHA-256 of the inspected bytes).
    pub fn record_files(&mut self) {
        self.record = Some(Record::default());
    }

    pub fn take_inspected(&mut self) -> Vec<InspectedFile> {
        self.record
            .as_mut()
            .map(|r| std::mem::take(&mut r.files))
            .unwrap_or_default()
    }

    pub fn bomb_rule(&self) -> Option<usize> {
        self.rules.bomb
    }

    /// Running total, as [`super::LayerReport::score`] computes it.
    pub fn score(&self) -> f64 {
        super::score(&self.findings)
    }

    /// Searches the next slice of the current file (`None`: the head, kept whole so far) for the
    /// literals its class needs.
    fn scan(&mut self, class: Class, at: u64, slice: Option<&[u8]>) {
        let Some(lits) = &self.rules.search[class as usize] else {
            return;
        };
        let (rules, hits) = (&self.rules, &mut self.hits);
        self.stream.scan(
            lits,
            slice.unwrap_or(&self.head),
            at,
            |rule, pattern, offset, text| {
                let hit = Hit {
                    rule,
                    pattern,
                    start: 0,
                    end: text.len(),
                };
                hits.record(rules, class, hit, offset, text);
            },
        );
    }

    /// A file left open when the stream stopped: judge what was seen of it.
    pub fn close(&mut self) {
        if self.file.is_some() {
            self.finish_file();
        }
    }

    /// Adds a finding: one per (rule, path), at most `max_findings`, keeping the highest scores.
    pub fn emit(
        &mut self,
        rule: usize,
        place: Place,
        path: Option<String>,
        offset: Option<u64>,
        matched: String,
    ) {
        let r = &self.rules.set.rules[rule];
        let finding = Finding {
            rule: r.id.clone(),
            category: r.category,
            severity: r.severity,
            place,
            score: r.weight * place.multiplier(),
            message: r.description.clone(),
            evidence: Evidence {
                layer: self.layer.clone(),
                path,
                offset,
                field: None,
                matched: cut(&matched),
            },
        };
        self.push_finding(finding);
    }

    /// Keeps `finding`: one per (rule, path), at most `max_findings`, the highest scores.
    fn push_finding(&mut self, finding: Finding) {
        if let Some(old) = self
            .findings
            .iter_mut()
            .find(|f| f.rule == finding.rule && f.evidence.path == finding.evidence.path)
        {
            if finding.score > old.score {
                *old = finding;
                self.version += 1;
            }
            return;
        }
        if self.findings.len() < self.limits.max_findings {
            self.findings.push(finding);
            self.version += 1;
            return;
        }
        self.dropped += 1;
        let lowest = self
            .findings
            .iter_mut()
            .min_by(|a, b| a.score.total_cmp(&b.score))
            .filter(|f| f.score < finding.score);
        if let Some(slot) = lowest {
            *slot = finding;
            self.version += 1;
        }
    }

    fn add_executable(&mut self, path: &str) {
        if self.executables.len() >= self.limits.max_executables {
            return;
        }
        let path = abs(path);
        if self.exec_hashes.insert(self.hasher.hash_one(&path)) {
            self.executables.push(path);
        }
    }

    /// First look at a file: its type from the head bytes, and how much of it to keep.
    fn decide(&mut self) {
        let Some(f) = self.file.as_mut() else { return };
        f.decided = true;
        let head = &self.head;
        f.is_elf = head.starts_with(elf::MAGIC);
        f.is_script = head.starts_with(b"#!") || has_ext(&f.path, &["sh", "bash", "ksh", "zsh"]);
        f.scan = !compressed(head);
        f.class = if !f.path_rules.is_empty() {
            Class::PathRule
        } else if f.is_elf {
            Class::Elf
        } else if f.is_script {
            Class::Script
        } else {
            Class::Plain
        };
        let class = f.class;
        f.keep = if !f.scan {
            0
        } else if f.json && f.size <= self.limits.max_json as u64 {
            self.limits.max_json
        } else {
            self.limits.prefix
        };
        if f.scan {
            self.scan(class, 0, None);
        }
    }

    fn finish_file(&mut self) {
        if self.file.as_ref().is_some_and(|f| !f.decided) {
            self.decide();
        }
        let Some(f) = self.file.take() else { return };
        self.files += 1;
        if let Some(r) = self.record.as_mut() {
            let sha256: [u8; 32] = std::mem::take(&mut r.hasher).finalize().into();
            let path = abs(&f.path);
            r.by_path.insert(path.clone(), (sha256, f.received));
            r.files.push(InspectedFile {
                path,
                size: f.received,
                sha256,
                hard_link: false,
            });
        }
        let rules = Arc::clone(&self.rules);
        let executable = f.is_elf || f.is_script || f.mode & 0o111 != 0;
        let place = if f.docs && !f.is_elf {
            Place::Docs
        } else if executable {
            Place::Executable
        } else {
            Place::File
        };
        if executable {
            self.add_executable(&f.path);
        }
        let whole = f.received == f.size && self.head.len() as u64 == f.size;

        // Regexes run on the kept prefix of the files they are meant for, never on the stream.
        let matcher = rules.content();
        let miner_hint = self
            .hits
            .list
            .iter()
            .any(|h| rules.set.rules[h.rule].category == Category::Miner);
        if f.scan
            && matcher.has_regexes()
            && (f.is_script || !f.path_rules.is_empty() || miner_hint)
        {
            for h in matcher.regex_hits(&self.head) {
                let text = &self.head[h.start..h.end];
                if rules.roles[h.rule] == Role::Wallet
                    && !std::str::from_utf8(text).is_ok_and(wallet::validate_monero)
                {
                    continue;
                }
                self.hits.record(&rules, f.class, h, h.start as u64, text);
            }
        }

        // Literal and regex rules, by the number of distinct patterns each saw.
        let mut fired: Vec<usize> = self.hits.list.iter().map(|h| h.rule).collect();
        fired.sort_unstable();
        fired.dedup();
        for r in fired {
            let applies = match rules.roles[r] {
                Role::Content | Role::Wallet => true,
                Role::Path => f.path_rules.contains(&r),
                Role::Script => f.is_script,
                Role::Elf => f.is_elf,
                _ => false,
            };
            let mine: Vec<&FileHit> = self.hits.list.iter().filter(|h| h.rule == r).collect();
            if !applies || mine.len() < rules.set.rules[r].min_distinct {
                continue;
            }
            let offset = mine.iter().map(|h| h.offset).min();
            let matched = mine
                .iter()
                .map(|h| h.text.as_str())
                .collect::<Vec<_>>()
                .join(" | ");
            self.emit(r, place, Some(abs(&f.path)), offset, matched);
        }

        // Path rules.
        for &r in &f.path_rules {
            let rule = &rules.set.rules[r];
            let fires = match rules.roles[r] {
                Role::Path => rule.literals.is_empty() && rule.regexes.is_empty() && f.size > 0,
                Role::Executable => executable && f.size > 0,
                _ => false,
            };
            if fires {
                let first_line = self.head.split(|&b| b == b'\n').next().unwrap_or_default();
                self.emit(
                    r,
                    place,
                    Some(abs(&f.path)),
                    None,
                    String::from_utf8_lossy(first_line).into_owned(),
                );
            }
        }

        if f.is_elf {
            self.judge_elf(&f, place);
        }
        if let Some(r) = rules.xmrig {
            let pools = self.hits.list.iter().any(|h| h.rule == r);
            if pools && whole {
                if let Some(config) = xmrig::parse(&self.head) {
                    let matched = format!(
                        "url {} user {}",
                        config.url,
                        config.users.first().map_or("", String::as_str)
                    );
                    self.emit(r, place, Some(abs(&f.path)), None, matched);
                    if let Some(w) = rules.wallet {
                        for user in &config.users {
                            let addr = wallet::strip_worker_suffix(user);
                            if wallet::validate_monero(addr) {
                                self.emit(w, place, Some(abs(&f.path)), None, addr.to_string());
                            }
                        }
                    }
                }
            }
        }
        self.hits.reset();
        self.stream.reset();
        self.head.clear();
    }

    fn judge_elf(&mut self, f: &FileState, place: Place) {
        let rules = Arc::clone(&self.rules);
        let mut marks = [false; 4];
        for h in &self.hits.list {
            if let Some(m) = rules.upx[rules.base[h.rule] + h.pattern] {
                marks[m as usize] = true;
            }
        }
        let [magic, info, section, stub] = marks;
        let info_elf = elf::parse(&self.head);
        if (stub || info) && !magic {
            if let Some(r) = rules.upx_tampered {
                let what = if stub {
                    "UPX stub strings"
                } else {
                    "UPX $Info string"
                };
                self.emit(
                    r,
                    place,
                    Some(abs(&f.path)),
                    None,
                    format!("{what} without the UPX! magic"),
                );
                return;
            }
        }
        if magic && (info || section || stub) {
            if let Some(r) = rules.upx_rule {
                self.emit(
                    r,
                    place,
                    Some(abs(&f.path)),
                    None,
                    "UPX! magic with UPX stub".into(),
                );
            }
            return;
        }
        let sample = &self.head[..self.head.len().min(self.limits.prefix)];
        if let (Some(r), Some(info)) = (rules.packed, info_elf) {
            if info.shnum == 0 && sample.len() >= ENTROPY_MIN_BYTES {
                let e = elf::entropy(sample);
                if e > PACKED_ENTROPY {
                    self.emit(
                        r,
                        place,
                        Some(abs(&f.path)),
                        None,
                        format!("no section headers, entropy {e:.2} bits/byte"),
                    );
                }
            }
        }
    }

    /// An entry path as the archive has it (absolute or with `..`).
    fn traversal(&mut self, path: &str) {
        if let Some(r) = self.rules.traversal {
            self.emit(r, Place::File, Some(cut(path)), None, path.to_string());
        }
    }
}

impl Analyzer {
    /// Where containerd writes an entry: the archive path cleaned as `filepath.Clean("/" +
    /// name)`, its directories resolved through the layer's symlinks so far, and the last
    /// component kept as is (no leading `/`; empty for the root, which containerd skips).
    fn place(&self, path: &str) -> String {
        let clean = normalize(path);
        if self.links.is_empty() {
            return clean;
        }
        let (dir, base) = match clean.rsplit_once('/') {
            Some((d, b)) => (d, b),
            None => ("", clean.as_str()),
        };
        let mut out = self.resolve(dir);
        if !base.is_empty() {
            if !out.is_empty() {
                out.push('/');
            }
            out.push_str(base);
        }
        out
    }

    /// `dir` with every symlink in it followed, inside the layer's root (`..` stops at the root,
    /// absolute targets start from it), at most 255 of them as in containerd.
    fn resolve(&self, dir: &str) -> String {
        let mut todo: Vec<&str> = dir.rsplit('/').collect();
        let mut out = String::with_capacity(dir.len());
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match c {
                "" | "." => continue,
                ".." => {
                    out.truncate(out.rfind('/').unwrap_or(0));
                    continue;
                }
                _ => {}
            }
            let len = out.len();
            if !out.is_empty() {
                out.push('/');
            }
            out.push_str(c);
            let Some(target) = self.links.get(&out) else {
                continue;
            };
            hops += 1;
            if hops > 255 {
                // containerd fails the layer here: nothing is written.
                return normalize(dir);
            }
            out.truncate(if target.starts_with('/') { 0 } else { len });
            todo.extend(target.rsplit('/'));
        }
        out
    }

    /// containerd removes what is at `path` (and below it) before writing an entry there,
    /// unless a directory meets a directory.
    fn replace(&mut self, path: &str, dir: bool) {
        if self.links.is_empty() || (dir && !self.links.contains_key(path)) {
            return;
        }
        self.links.remove(path);
        let below = format!("{path}/");
        let gone: Vec<String> = self
            .links
            .range(below.clone()..)
            .take_while(|(k, _)| k.starts_with(&below))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.links.remove(&k);
        }
    }

    /// A hard link gets its target's content: the target's findings are the link's too, and
    /// an executable target makes the link one.
    fn hard_link(&mut self, path: &str, target: &str) {
        let placed = self.place(target);
        // A hard link to a symlink is that symlink (link(2) does not follow it).
        if let Some(t) = self.links.get(&placed).cloned() {
            if self.links.len() < MAX_LINKS {
                self.links.insert(path.to_string(), t);
            }
        }
        let target = abs(&placed);
        let link = abs(path);
        if self.exec_hashes.contains(&self.hasher.hash_one(&target)) {
            self.add_executable(path);
        }
        let copies: Vec<Finding> = self
            .findings
            .iter()
            .filter(|f| f.evidence.path.as_deref() == Some(target.as_str()))
            .cloned()
            .collect();
        for mut f in copies {
            f.evidence.path = Some(link.clone());
            f.evidence.matched = cut(&format!("hard link to {target}: {}", f.evidence.matched));
            self.push_finding(f);
        }
        if let Some(r) = self.record.as_mut() {
            if let Some(&(sha256, size)) = r.by_path.get(&target) {
                r.by_path.insert(link.clone(), (sha256, size));
                r.files.push(InspectedFile {
                    path: link,
                    size,
                    sha256,
                    hard_link: true,
                });
            }
        }
    }
}

impl TarSink for Analyzer {
    fn entry(&mut self, e: &Entry<'_>) {
        if traverses(e.path) || (e.kind == Kind::HardLink && e.link.is_some_and(traverses)) {
            self.traversal(e.path);
        }
        let path = self.place(e.path);
        let base = path.rsplit('/').next().unwrap_or_default();
        // Whiteouts (`.wh.NAME`, `.wh..wh..opq`) remove files of lower layers and are never
        // written themselves: their content is not inspected.
        if let Some(name) = base.strip_prefix(".wh.") {
            if name != ".wh..opq" {
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                let gone = if dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir}/{name}")
                };
                self.replace(&gone, false);
                if let Some(r) = self.record.as_mut() {
                    r.by_path.remove(&abs(&gone));
                }
            }
            return;
        }
        self.replace(&path, e.kind == Kind::Dir);
        match e.kind {
            Kind::File => {
                let lower = path.to_ascii_lowercase();
                self.file = Some(FileState {
                    docs: is_docs(&lower),
                    json: lower.ends_with(".json"),
                    path_rules: self.rules.set.path_rules(&path),
                    path,
                    mode: e.mode,
                    size: e.size,
                    received: 0,
                    decided: false,
                    scan: true,
                    keep: HEAD,
                    is_elf: false,
                    is_script: false,
                    class: Class::PathRule,
                });
                self.head.clear();
            }
            Kind::HardLink => self.hard_link(&path, e.link.unwrap_or_default()),
            Kind::Symlink => {
                if self.links.len() < MAX_LINKS {
                    self.links
                        .insert(path, e.link.unwrap_or_default().to_string());
                } else {
                    self.links_overflow = true;
                }
            }
            Kind::Dir | Kind::Other => {}
        }
    }

    fn data(&mut self, mut chunk: &[u8]) {
        let Some(f) = self.file.as_mut() else { return };
        if let Some(r) = self.record.as_mut() {
            r.hasher.update(chunk);
        }
        f.received += chunk.len() as u64;
        if !f.decided {
            let take = (HEAD - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.head.len() < HEAD {
                return;
            }
            self.decide();
        }
        let Some(f) = self.file.as_ref() else { return };
        let at = f.received - chunk.len() as u64;
        if self.head.len() < f.keep {
            let take = (f.keep - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        if f.scan {
            let class = f.class;
            self.scan(class, at, Some(chunk));
        }
    }

    fn hole(&mut self, mut len: u64) {
        static ZEROS: [u8; 4096] = [0; 4096];
        // Zeros are searched like data while the kept prefix still wants them, and for
        // `HOLE_SCAN` bytes; the rest is skipped (counted, and hashed when recording).
        let mut scanned = 0;
        while len > 0 {
            let Some(f) = self.file.as_ref() else { return };
            let wants = self.head.len() < f.keep || scanned < HOLE_SCAN;
            if !wants {
                break;
            }
            let n = len.min(ZEROS.len() as u64);
            self.data(&ZEROS[..n as usize]);
            scanned += n;
            len -= n;
        }
        let Some(f) = self.file.as_mut() else { return };
        f.received += len;
        if let Some(r) = self.record.as_mut() {
            while len > 0 {
                let n = len.min(ZEROS.len() as u64);
                r.hasher.update(&ZEROS[..n as usize]);
                len -= n;
            }
        }
    }

    fn end_file(&mut self) {
        self.finish_file();
    }
}

fn abs(path: &str) -> String {
    format!("/{path}")
}

/// Layer paths as rules see them, and as containerd writes them: Go's `filepath.Clean("/" +
/// path)` without the leading `/` (`..` stops at the root, `.` and repeated `/` go).
fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => out.truncate(out.rfind('/').unwrap_or(0)),
            _ => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(c);
            }
        }
    }
    out
}

/// An absolute path or a `..` component.
fn traverses(path: &str) -> bool {
    path.starts_with('/') || path.split('/').any(|c| c == "..")
}

fn has_ext(path: &str, exts: &[&str]) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && exts.iter().any(|e| ext.eq_ignore_ascii_case(e))
    })
}

/// Documentation, rule files, tests and signature databases (`path` lowercased, normalised).
fn is_docs(path: &str) -> bool {
    if has_ext(
        path,
        &[
            "md", "markdown", "rst", "html", "htm", "yar", "yara", "rules", "cvd", "cld", "cud",
        ],
    ) {
        return true;
    }
    if ["usr/share/doc/", "usr/share/man/", "usr/local/share/doc/"]
        .iter()
        .any(|d| path.starts_with(d))
    {
        return true;
    }
    // The directories, without the file name (every file is asked: no allocation).
    let dirs = || path.rsplit_once('/').map_or("", |(d, _)| d).split('/');
    if dirs().any(|d| d == "tests" || d == "test") {
        return true;
    }
    has_ext(path, &["yml", "yaml"])
        && dirs().any(|d| matches!(d, "rules" | "sigma" | "falco" | "yara" | "signatures"))
}

/// Already-compressed formats: literal rules cannot match inside them, so they are not scanned.
fn compressed(head: &[u8]) -> bool {
    const MAGICS: &[&[u8]] = &[
        b"\x1f\x8b",           // gzip
        b"\xfd7zXZ\x00",       // xz
        b"\x28\xb5\x2f\xfd",   // zstd
        b"\x89PNG\r\n\x1a\n",  // png
        b"\xff\xd8\xff",       // jpeg
        b"GIF87a",             // gif
        b"GIF89a",             // gif
        b"wOF2",               // woff2
        b"wOFF",               // woff
        b"7z\xbc\xaf\x27\x1c", // 7z
        b"\x04\x22\x4d\x18",   // lz4
    ];
    MAGICS.iter().any(|m| head.starts_with(m))
        || (head.len() >= 4 && head.starts_with(b"BZh") && head[3].is_ascii_digit())
        || (head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_class_searches_for_far_fewer_anchors_than_literals() {
        let rules = LayerRules::new(Arc::new(RuleSet::builtin().unwrap()));
        let sizes = rules.search_sizes();
        assert_eq!(sizes.len(), 4, "every class has literals: {sizes:?}");
        // Plain files, ELF files and scripts, which are nearly every byte of a layer. (Files at
        // a path rule's paths are searched for every literal, with Teddy too.)
        for &(literals, anchors) in &sizes[..3] {
            let anchors = anchors.expect("Teddy on x86_64");
            // Fat Teddy has sixteen buckets: at most four anchors in each.
            assert!(
                anchors <= 64 && anchors * 3 < literals * 2,
                "{anchors} anchors for {literals} literals"
            );
        }
        assert!(sizes[3].1.is_some(), "{sizes:?}");
    }

    /// Text like a layer's: source-code words and lines, and machine-code-like bytes.
    fn layer_like_text(len: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "static",
            "return",
            "if (",
            "else",
            "for",
            "int",
            "char *",
            "const",
            "struct",
            "void",
            "NULL",
            "size_t",
            "self.",
            "def ",
            "import ",
            "function",
            "var ",
            "let ",
            "error",
            "buffer",
            "length",
            "index",
            "count",
            "value",
            "result",
            "string",
            "path",
            "name",
            "open",
            "read",
            "write",
            "close",
            "alloc",
            "free",
            "lock",
            "queue",
            "node",
            "0x",
            "printf(\"%s\\n\", ",
            "/* ",
            " */",
            "// ",
            "# ",
            "\n    ",
            "();",
            " = ",
            ", ",
            "_",
        ];
        const OPS: &[u8] = &[
            0x48, 0x89, 0x8b, 0xe8, 0xff, 0x0f, 0x85, 0xc3, 0x41, 0x83, 0x45,
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = Vec::with_capacity(len + 64);
        while out.len() < len {
            if next() % 2 == 0 {
                for _ in 0..200 {
                    out.extend_from_slice(WORDS[(next() % WORDS.len() as u64) as usize].as_bytes());
                }
            } else {
                for _ in 0..1000 {
                    out.push(match next() % 10 {
                        0..=3 => 0,
                        4..=8 => OPS[(next() % OPS.len() as u64) as usize],
                        _ => next() as u8,
                    });
                }
            }
        }
        out
    }

    #[test]
    fn anchors_are_spread_over_teddy_buckets_so_that_few_places_are_candidates() {
        use super::super::buckets::{arrange, candidates, mask_len, teddy_buckets, Model};
        use super::super::search::fold;
        let rules = LayerRules::new(Arc::new(RuleSet::builtin().unwrap()));
        let text: Vec<u8> = layer_like_text(1 << 20).iter().map(|&b| fold(b)).collect();
        let model = Model::new(fold);
        for lits in rules.search.iter().flatten() {
            // The order before arranging: by length, then bytes.
            let mut plain = lits.anchors().expect("Teddy on x86_64").to_vec();
            plain.sort_by(|a, b| a.len().cmp(&b.len()).then(a.cmp(b)));
            let mask = mask_len(&plain);
            for buckets in [8, 16] {
                let arranged = arrange(plain.clone(), buckets, fold);
                let mut same = arranged.clone();
                same.sort_by(|a, b| a.len().cmp(&b.len()).then(a.cmp(b)));
                assert_eq!(same, plain, "the same anchors");
                assert_eq!(
                    arranged,
                    arrange(plain.clone(), buckets, fold),
                    "deterministic"
                );
                let expected = |order: &[Vec<u8>]| -> f64 {
                    teddy_buckets(order, buckets)
                        .iter()
                        .map(|g| model.cost(g.iter().map(|&a| order[a].as_slice()), mask))
                        .sum()
                };
                let (before, after) = (expected(&plain), expected(&arranged));
                let (places, compared) = candidates(&plain, buckets, &text);
                let (places_now, compared_now) = candidates(&arranged, buckets, &text);
                eprintln!(
                    "{} anchors, {buckets} buckets: model {before:.2e} -> {after:.2e}; \
                     per MB of sample text {places} -> {places_now} candidate places, \
                     {compared} -> {compared_now} comparisons",
                    plain.len()
                );
                assert!(after * 3.0 < before, "{before} -> {after}");
                assert!(compared_now * 2 < compared, "{compared} -> {compared_now}");
            }
        }
    }

    #[test]
    fn a_hole_is_searched_further_than_the_longest_literal() {
        let rules = LayerRules::new(Arc::new(RuleSet::builtin().unwrap()));
        for lits in rules.search.iter().flatten() {
            assert!((lits.overlap() as u64) < HOLE_SCAN, "{}", lits.overlap());
        }
    }

    #[test]
    fn paths_resolve_through_the_layers_symlinks_inside_its_root() {
        let rules = Arc::new(LayerRules::new(Arc::new(RuleSet::builtin().unwrap())));
        let mut a = Analyzer::new(rules, Limits::default(), None);
        for (path, target) in [
            ("opt/jobs", "/etc/cron.d"),
            ("opt/rel", "../../../srv"),
            ("a/loop", "b/loop"),
            ("a/b", "."),
        ] {
            a.links.insert(path.into(), target.into());
        }
        assert_eq!(a.place("./opt/jobs/x"), "etc/cron.d/x");
        assert_eq!(a.place("opt/rel/y/z"), "srv/y/z");
        assert_eq!(
            a.place("opt/jobs"),
            "opt/jobs",
            "the last component is not followed"
        );
        assert_eq!(a.place("../../opt//jobs/./x"), "etc/cron.d/x");
        // A loop: containerd fails the layer after 255 links; the path stays lexical.
        assert_eq!(a.place("a/loop/x"), "a/loop/x");
        a.replace("opt", false);
        assert_eq!(
            a.place("opt/jobs/x"),
            "opt/jobs/x",
            "replaced with the directory above it"
        );
    }

    #[test]
    fn docs_places_follow_the_research_list() {
        for p in [
            "usr/share/doc/xmrig/readme.txt",
            "app/readme.md",
            "opt/rules/malw_xmrig_miner.yar",
            "opt/sigma/rules/linux/proc_creation_lnx_crypto_mining.yml",
            "usr/lib/python3/site-packages/pkg/tests/test_detect.py",
            "var/lib/clamav/daily.cvd",
            "srv/site/index.html",
        ] {
            assert!(is_docs(p), "{p}");
        }
        for p in [
            "usr/bin/xmrig",
            "etc/xmrig.yml",
            "app/config.json",
            "tests",
            "opt/tests.sh",
        ] {
            assert!(!is_docs(p), "{p}");
        }
    }

    #[test]
    fn paths_are_normalised_and_traversal_spotted() {
        assert_eq!(normalize("./etc/passwd"), "etc/passwd");
        assert_eq!(normalize("/.//./usr/bin"), "usr/bin");
        assert!(traverses("../../etc/cron.d/x"));
        assert!(traverses("/etc/passwd"));
        assert!(traverses("a/../../b"));
        assert!(!traverses("./a/..b/c"));
    }

    #[test]
    fn compressed_formats_are_known_by_magic() {
        assert!(compressed(b"\x1f\x8b\x08\x00"));
        assert!(compressed(b"\x89PNG\r\n\x1a\n...."));
        assert!(compressed(b"BZh91AY"));
        assert!(!compressed(b"BZhx"));
        assert!(!compressed(b"\x7fELF"));
        assert!(!compressed(b"PK\x03\x04"));
    }
}
