//! The integration harness: a real upstream registry (Debian's `docker-registry`), portcullis
//! itself (the binary cargo built once for all tests), and helpers to push fixture images.
//!
//! Everything listens on `127.0.0.1:0` or a temp socket and is killed when its guard drops.

#![allow(dead_code)]

pub mod access_log;
pub mod containerd;
pub mod corpus;
pub mod dockerd;
pub mod fake;
pub mod image;
pub mod metrics;
pub mod upstream_log;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use image::{Compression, Image, Layer};

/// The portcullis binary under test.
pub const PORTCULLIS: &str = env!("CARGO_BIN_EXE_portcullis");

/// A child process killed (and reaped) on drop.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago. Only for programs that cannot report the port they picked
/// (docker-registry); the tiny race is accepted for those.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A blocking HTTP client for assertions.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Debian's `docker-registry` (CNCF distribution 2.8) on a free port, with its own storage.
pub struct Registry {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    _proc: Proc,
}

impl Registry {
    /// A plain registry.
    pub fn start() -> Registry {
        Registry::start_with("")
    }

    /// A registry whose config gets `extra` YAML appended (an `auth:` or `proxy:` section).
    pub fn start_with(extra: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("docker-registry is installed (.ci/run installs it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let proc_ = Proc {
            child,
            name: "docker-registry",
        };
        wait_for("docker-registry to listen", Duration::from_secs(20), || {
            http().get(format!("http://{addr}/v2/")).send().ok()
        });
        Registry {
            addr,
            dir,
            log,
            _proc: proc_,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self._proc.child.id()
    }

    /// The registry's log so far (its access log lines included).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Pushes an OCI layout's tag into this registry as `repo:tag`, digests preserved.
    pub fn push(&self, layout: &Path, layout_tag: &str, repo: &str, tag: &str) {
        skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:{layout_tag}", layout.display()),
            &format!("docker://{}/{repo}:{tag}", self.addr),
        ])
        .expect("skopeo push into the upstream registry");
    }
}

/// Runs skopeo; `Ok(stdout)` on success, `Err(stderr)` otherwise.
pub fn skopeo(args: &[&str]) -> Result<String, String> {
    let out = Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("skopeo is installed (.ci/run installs it)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// portcullis itself, on a port it picks, logging JSON to a file.
pub struct Portcullis {
    pub addr: SocketAddr,
    /// Holds the log (and, unless given one, the data dir as `data/`).
    pub dir: tempfile::TempDir,
    /// The `--data-dir` it serves from.
    pub data: PathBuf,
    pub log: PathBuf,
    proc_: Proc,
}

impl Portcullis {
    /// Starts `portcullis serve --listen 127.0.0.1:0 --data-dir <tmp> --log-format json <args>`.
    pub fn start(args: &[&str]) -> Portcullis {
        Portcullis::start_env(args, &[])
    }

    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Portcullis {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Portcullis::spawn(dir, data, args, env)
    }

    /// Starts portcullis with `docker.io` at `upstream` and `[inspect] enabled = false` (a config
    /// file: there is no flag for it), plus `args`.
    pub fn inspection_off(upstream: &Registry, args: &[&str]) -> Portcullis {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("inspection-off.toml");
        std::fs::write(
            &config,
            format!(
                "[inspect]\nenabled = false\n[upstreams.\"docker.io\"]\nurl = \"{}\"\n",
                upstream.url()
            ),
        )
        .unwrap();
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        let data = dir.path().join("data");
        Portcullis::spawn(dir, data, &all, &[])
    }

    /// Starts portcullis on the data dir `data`, which outlives it: a second `start_in` on the
    /// same dir is a restart (verdict store, cache and all). Its log is a fresh file of its own.
    pub fn start_in(data: &Path, args: &[&str]) -> Portcullis {
        Portcullis::spawn(tempfile::tempdir().unwrap(), data.to_path_buf(), args, &[])
    }

    fn spawn(
        dir: tempfile::TempDir,
        data: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Portcullis {
        let log = dir.path().join("portcullis.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(PORTCULLIS)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--data-dir",
            ])
            .arg(&data)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut proc_ = Proc {
            child,
            name: "portcullis",
        };
        let addr = wait_for("portcullis to listen", Duration::from_secs(20), || {
            if let Some(status) = proc_.child.try_wait().unwrap() {
                panic!(
                    "portcullis exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let f = std::fs::File::open(&log).ok()?;
            BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .find_map(|line| {
                    let v: serde_json::Value = serde_json::from_str(&line).ok()?;
                    (v["message"] == "portcullis listening")
                        .then(|| v["addr"].as_str()?.parse().ok())?
                })
        });
        Portcullis {
            addr,
            dir,
            data,
            log,
            proc_,
        }
    }

    /// Starts portcullis with `docker.io` (the default) pointing at `upstream`.
    pub fn for_upstream(upstream: &Registry) -> Portcullis {
        Portcullis::start(&["--upstream", &format!("docker.io={}", upstream.url())])
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.proc_.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.proc_.child.try_wait().unwrap().is_none()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.proc_.child
    }

    /// Sends SIGTERM (the graceful path).
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {}", self.pid());
    }

    /// SIGTERM, and the process must exit cleanly (releasing the verdict store) within 20 s.
    pub fn stop(mut self) {
        self.sigterm();
        let status = wait_for("portcullis to exit", Duration::from_secs(20), || {
            self.child().try_wait().unwrap()
        });
        assert!(
            status.success(),
            "portcullis exited with {status}\n{}",
            self.log_text()
        );
    }
}

/// Runs `f` on `n` threads at once and waits for all of them (a panic in one fails the test).
pub fn concurrently(n: usize, f: impl Fn() + Sync) {
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..n).map(|_| s.spawn(&f)).collect();
        for t in threads {
            t.join().unwrap();
        }
    });
}

/// Deterministic incompressible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// sha256 of a file, as `sha256:<hex>`.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(path).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    format!("sha256:{}", hex::encode(h.finalize()))
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Every file under an OCI layout's `blobs/` (relative path → bytes), for byte-for-byte comparison.
pub fn layout_blobs(layout: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let blobs = layout.join("blobs");
    for alg in std::fs::read_dir(&blobs).unwrap() {
        let alg = alg.unwrap();
        for f in std::fs::read_dir(alg.path()).unwrap() {
            let f = f.unwrap();
            out.insert(
                format!(
                    "{}:{}",
                    alg.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                ),
                std::fs::read(f.path()).unwrap(),
            );
        }
    }
    out
}
