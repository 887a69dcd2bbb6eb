//! The detection table: every corpus image (`common::corpus`) is pushed to one upstream registry
//! and pulled through one portcullis with skopeo. Every malicious image must be refused, no benign
//! look-alike may be. The table (image, expected, got, where it was refused, score, top rule,
//! description) is printed; see it with `cargo test --test it corpus -- --nocapture`
//! (`CORPUS_ERRORS=1` also prints skopeo's error for each refusal).
//!
//! portcullis runs as `Portcullis::for_upstream` would (docker.io = the local registry) but from a
//! config file that also sends the audit trail to a file: the audit gives the stage, score and
//! rules of every decision, including warnings on served images and blobs cut at the tail, whose
//! skopeo error (`EOF`) carries no reason (`refused*` in the table).

use crate::common::corpus::{self, Case, Expect};
use crate::common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Parallel skopeo processes (pushes and pulls).
const WORKERS: usize = 4;

/// What a pull through portcullis gave.
#[derive(Debug, Clone)]
struct Outcome {
    refused: bool,
    /// What was judged when it was refused (`name`, `manifest`, `blob`), or the strongest
    /// non-allow decision for a served image (`warn`).
    stage: String,
    score: Option<f64>,
    rule: String,
    error: String,
}

/// One audit line, as far as the table needs it.
#[derive(Debug, Clone, serde::Deserialize)]
#[allow(dead_code)]
struct Audit {
    repository: String,
    subject: String,
    decision: String,
    score: f64,
    rules: Vec<String>,
}

/// Runs `f` over `items` on [`WORKERS`] threads; results in the order of `items`.
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                out.lock().unwrap()[i] = Some(r);
            });
        }
    });
    out.into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// The first rule id in brackets in portcullis' refusal (`… [miner.stratum-url] at …`).
fn rule_in_message(text: &str) -> Option<String> {
    let at = text.find("blocked by portcullis")?;
    let re = regex::Regex::new(r"\[([a-z]+\.[a-z0-9.-]+)\]").unwrap();
    re.captures(&text[at..]).map(|c| c[1].to_string())
}

fn cut(text: &str, n: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    }
}

#[test]
fn wallet_stand_ins_are_valid_monero_addresses() {
    use portcullis::inspect::wallet::validate_monero;
    for (byte, first, len) in [
        (corpus::STANDARD, '4', 95),
        (corpus::SUBADDRESS, '8', 95),
        (corpus::INTEGRATED, '4', 106),
    ] {
        for seed in ["a", "b", "corpus-1"] {
            let a = corpus::monero_address(byte, seed);
            assert!(a.starts_with(first), "{a}");
            assert_eq!(a.len(), len, "{a}");
            assert!(validate_monero(&a), "{a} should validate");
            // One character changed breaks the checksum.
            let mut bad = a.clone().into_bytes();
            bad[50] = if bad[50] == b'z' { b'y' } else { b'z' };
            assert!(!validate_monero(std::str::from_utf8(&bad).unwrap()));
        }
    }
}

#[test]
fn detection_table() {
    let started = Instant::now();
    let cases = corpus::corpus();
    let malicious = cases.iter().filter(|c| c.expect == Expect::Block).count();
    let benign = cases.len() - malicious;
    assert!(
        malicious >= 20 && benign >= 15,
        "{malicious} malicious, {benign} benign"
    );
    let mut repos: Vec<&str> = cases.iter().map(|c| c.repo).collect();
    repos.sort_unstable();
    repos.dedup();
    assert_eq!(repos.len(), cases.len(), "one repository per case");

    // One OCI layout, one tag per case (shared base layers are written once).
    let layout = tempfile::tempdir().unwrap();
    for (i, c) in cases.iter().enumerate() {
        c.image.write(layout.path(), Some(&format!("c{i}")));
    }
    let upstream = Registry::start();
    let indexed: Vec<(usize, &Case)> = cases.iter().enumerate().collect();
    parallel(&indexed, |(i, c)| {
        upstream.push(layout.path(), &format!("c{i}"), c.repo, c.tag)
    });
    let built = started.elapsed();

    // portcullis for docker.io = the local registry, as `Portcullis::for_upstream`, plus an audit
    // file for the scores and rules of what it served.
    let (p, _conf_dir, audit_path) = auditing_proxy(&upstream, "");
    let pulls = parallel(&cases, |c| pull(&p, c).err());
    let pulled = started.elapsed() - built;

    let audit: Vec<Audit> = std::fs::read_to_string(&audit_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut by_repo: HashMap<&str, Vec<&Audit>> = HashMap::new();
    for a in &audit {
        by_repo.entry(a.repository.as_str()).or_default().push(a);
    }

    let outcomes: Vec<Outcome> = cases
        .iter()
        .zip(&pulls)
        .map(|(c, err)| {
            let records = by_repo.get(c.repo).cloned().unwrap_or_default();
            let block = records.iter().find(|a| a.decision == "block");
            let warn = records
                .iter()
                .filter(|a| a.decision == "warn")
                .max_by(|a, b| a.score.total_cmp(&b.score));
            match err {
                Some(e) => Outcome {
                    refused: true,
                    stage: block.map_or("?".into(), |a| a.subject.clone()),
                    score: block.map(|a| a.score),
                    rule: rule_in_message(e)
                        .or_else(|| block.and_then(|a| a.rules.first().cloned()))
                        .unwrap_or_else(|| "?".into()),
                    error: e.clone(),
                },
                None => Outcome {
                    refused: false,
                    stage: warn.map_or(String::new(), |a| format!("warn {}", a.subject)),
                    score: warn.map(|a| a.score),
                    rule: warn
                        .and_then(|a| a.rules.first().cloned())
                        .unwrap_or_default(),
                    error: String::new(),
                },
            }
        })
        .collect();

    println!(
        "\n{:<38} {:<6} {:<8} {:<14} {:>5}  {:<40} description",
        "image", "expect", "got", "at", "score", "top rule"
    );
    let mut wrong = Vec::new();
    for (c, o) in cases.iter().zip(&outcomes) {
        let got = match (o.refused, o.error.contains("blocked by portcullis")) {
            (false, _) => "allowed",
            (true, true) => "refused",
            (true, false) => "refused*",
        };
        let ok = (c.expect == Expect::Block) == o.refused;
        println!(
            "{:<38} {:<6} {:<8} {:<14} {:>5}  {:<40} {}{}",
            c.pull_name(),
            match c.expect {
                Expect::Block => "block",
                Expect::Allow => "allow",
            },
            got,
            o.stage,
            o.score.map_or(String::new(), |s| format!("{s:.0}")),
            o.rule,
            if ok { "" } else { "MISJUDGED: " },
            c.what
        );
        if !ok {
            wrong.push(format!(
                "{} expected {:?}, got {got} ({})",
                c.pull_name(),
                c.expect,
                cut(&o.error, 300)
            ));
        }
    }
    println!("refused*: skopeo's error did not carry portcullis' reason (rule from the audit log)");
    if std::env::var_os("CORPUS_ERRORS").is_some() {
        for (c, o) in cases.iter().zip(&outcomes).filter(|(_, o)| o.refused) {
            println!("{}: {}", c.pull_name(), cut(&o.error, 400));
        }
    }
    println!(
        "\n{malicious} malicious, {benign} benign; build+push {:.1}s, pulls {:.1}s, total {:.1}s",
        built.as_secs_f64(),
        pulled.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // A refused pull must be portcullis' refusal, not some other failure.
    for (c, o) in cases.iter().zip(&outcomes) {
        if o.refused && c.expect == Expect::Block {
            assert!(
                o.rule != "?",
                "{}: refused without a portcullis verdict: {}",
                c.pull_name(),
                cut(&o.error, 400)
            );
        }
    }
    assert!(wrong.is_empty(), "misjudged:\n{}", wrong.join("\n"));

    // Scan and pull decide alike. Every image is scanned from the same upstream under the name it
    // is pulled by, and pulled again through a portcullis in strict mode, which judges every layer
    // before it answers the manifest: that pull's decision covers exactly what the scan reads, so
    // decision and score must be equal. The pulls above (layers judged as they stream) must reach
    // the same decision.
    let scans = parallel(&cases, |c| scan_remote(&upstream.url(), &c.pull_name()));
    let (strict, _strict_dir, strict_audit) =
        auditing_proxy(&upstream, "[policy]\nstrict = true\n");
    let strict_pulls = parallel(&cases, |c| pull(&strict, c).is_err());
    let strict_records = audit_by_repo(&strict_audit);
    println!(
        "\n{:<38} {:<16} {:<16} {:<16}",
        "image", "scan", "strict pull", "pull"
    );
    let mut differ = Vec::new();
    for (((c, scan), refused), o) in cases.iter().zip(&scans).zip(&strict_pulls).zip(&outcomes) {
        let records = strict_records.get(c.repo).cloned().unwrap_or_default();
        let (decision, score) = pull_decision(&records, *refused);
        let streamed = if o.refused {
            "block".to_string()
        } else {
            by_repo
                .get(c.repo)
                .map(|r| pull_decision(r, false).0)
                .unwrap_or_else(|| "allow".into())
        };
        let agree = scan.0 == decision && (scan.1 - score).abs() < 1e-6 && streamed == scan.0;
        println!(
            "{:<38} {:<16} {:<16} {:<16}{}",
            c.pull_name(),
            format!("{} {:.0}", scan.0, scan.1),
            format!("{decision} {score:.0}"),
            streamed,
            if agree { "" } else { "  DIFFERS" }
        );
        if !agree {
            differ.push(format!(
                "{}: scan {} {}, strict pull {decision} {score}, pull {streamed}",
                c.pull_name(),
                scan.0,
                scan.1
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "scan and pull disagree:\n{}",
        differ.join("\n")
    );
}

/// portcullis for docker.io = `upstream` from a config file that also sends the audit trail to a
/// file (the proxy, the config's directory, the audit file), plus the TOML `extra`.
fn auditing_proxy(
    upstream: &Registry,
    extra: &str,
) -> (Portcullis, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let conf = dir.path().join("portcullis.toml");
    std::fs::write(
        &conf,
        format!(
            "[upstreams.\"docker.io\"]\nurl = \"{}\"\naliases = [\"index.docker.io\", \"registry-1.docker.io\"]\n\n[audit]\npath = \"{}\"\n\n{extra}",
            upstream.url(),
            audit.display()
        ),
    )
    .unwrap();
    let p = Portcullis::start(&["--config", conf.to_str().unwrap()]);
    (p, dir, audit)
}

/// skopeo pulls a case through `p`.
fn pull(p: &Portcullis, c: &Case) -> Result<String, String> {
    let dest = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/{}", p.addr, c.pull_name()),
        &format!("oci:{}:x", dest.path().display()),
    ])
}

/// `portcullis scan docker://NAME` against the upstream at `url`: its decision and score.
fn scan_remote(url: &str, name: &str) -> (String, f64) {
    let out = std::process::Command::new(PORTCULLIS)
        .args(["scan", &format!("docker://{name}"), "--format", "json"])
        .args(["--upstream", &format!("docker.io={url}")])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("scan {name}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (
        doc["decision"].as_str().unwrap().to_string(),
        doc["score"].as_f64().unwrap(),
    )
}

/// The audit file's lines by repository.
fn audit_by_repo(path: &std::path::Path) -> HashMap<String, Vec<Audit>> {
    let mut by_repo: HashMap<String, Vec<Audit>> = HashMap::new();
    for a in std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Audit>(l).ok())
    {
        by_repo.entry(a.repository.clone()).or_default().push(a);
    }
    by_repo
}

/// What a pull was decided, from its audit lines: a name refused on its own is the name's
/// decision; otherwise the image's (its last judgement, which counts the most evidence).
fn pull_decision<A: std::borrow::Borrow<Audit>>(records: &[A], refused: bool) -> (String, f64) {
    let records: Vec<&Audit> = records.iter().map(|a| a.borrow()).collect();
    if let Some(name) = records
        .iter()
        .find(|a| a.subject == "name" && a.decision == "block")
    {
        return (name.decision.clone(), name.score);
    }
    let image = records
        .iter()
        .filter(|a| a.subject == "manifest")
        .max_by(|a, b| a.score.total_cmp(&b.score));
    match image {
        Some(a) => (a.decision.clone(), a.score),
        None if refused => ("block".into(), f64::NAN),
        None => ("allow".into(), 0.0),
    }
}
