//! A private Docker daemon (Debian's dockerd 20.10, classic graphdriver store) for one test.
//!
//! Everything it owns lives under one short temp dir (unix socket paths are limited to ~108
//! bytes): data root, exec root, pidfile, API socket, its log and the CLI's config dir. dockerd
//! starts its own containerd with config, socket and state under that exec root, so it never
//! meets a system containerd or another test's daemon. On drop both are stopped (SIGTERM, then
//! SIGKILL) and the dir is removed.

use super::wait_for;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dockerd {
    /// `/tmp/pcd??????`: everything of this daemon.
    pub dir: tempfile::TempDir,
    /// The API socket, for `docker -H unix://<sock>`.
    pub sock: PathBuf,
    /// dockerd's (and its containerd's) stderr.
    pub log: PathBuf,
    child: Child,
}

impl Dockerd {
    /// A daemon whose only registry mirror is `mirror` (e.g. `http://127.0.0.1:PORT`).
    pub fn with_mirror(mirror: &str) -> Dockerd {
        Dockerd::start(serde_json::json!({ "registry-mirrors": [mirror] }))
    }

    /// A daemon with `config` as its `daemon.json`.
    pub fn start(config: Value) -> Dockerd {
        let dir = tempfile::Builder::new()
            .prefix("pcd")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let sock = d.join("d.sock");
        let log = d.join("dockerd.log");
        let config_file = d.join("daemon.json");
        std::fs::write(&config_file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("dockerd")
            .args([
                "--storage-driver",
                "vfs",
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
            ])
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--config-file")
            .arg(&config_file)
            // No proxy from the test's environment may sit between dockerd and the mirror.
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("NO_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("no_proxy")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            // Left in the test's process group: a ^C that kills the tests before the guard can
            // drop reaches dockerd too, and it stops its containerd on the way out.
            .spawn()
            .expect("dockerd is installed (.ci/run installs docker.io)");
        let mut daemon = Dockerd {
            dir,
            sock,
            log,
            child,
        };
        let started = Instant::now();
        wait_for(
            "dockerd to answer `docker info`",
            Duration::from_secs(90),
            || {
                if let Ok(Some(status)) = daemon.child.try_wait() {
                    panic!(
                        "dockerd exited with {status} while starting:\n{}",
                        daemon.log_tail(40)
                    );
                }
                if !daemon.sock.exists() {
                    return None;
                }
                daemon
                    .docker(&["info", "--format", "{{.ServerVersion}}"])
                    .ok()
            },
        );
        eprintln!(
            "dockerd up in {:?} at {}",
            started.elapsed(),
            daemon.sock.display()
        );
        daemon
    }

    /// Runs the docker CLI against this daemon: `Ok(stdout)` on success, `Err(stderr)` otherwise.
    pub fn docker(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            // The CLI's own config (and anything it writes) stays in the temp dir.
            .env("DOCKER_CONFIG", self.dir.path().join("cli"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null())
            .output()
            .expect("the docker CLI is installed");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// One request to the Engine API over the socket, for what the CLI cannot express:
    /// `(status, body)`. HTTP/1.0, so the answer is never chunked and ends when the daemon closes.
    pub fn api(&self, method: &str, path_and_query: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&self.sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        write!(
            s,
            "{method} {path_and_query} HTTP/1.0\r\nHost: docker\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, body.to_string())
    }

    /// `docker image inspect <image>`, the one object.
    pub fn inspect_image(&self, image: &str) -> Value {
        let out = self
            .docker(&["image", "inspect", image])
            .unwrap_or_else(|e| panic!("inspect {image}: {e}"));
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// containerd's pid, as its pidfile under the exec root says.
    fn containerd_pid(&self) -> Option<u32> {
        let pidfile = self.dir.path().join("exec/containerd/containerd.pid");
        std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
    }
}

/// Whether `pid` is (still) a process whose command line mentions `name`.
fn alive_as(pid: u32, name: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(name))
        .unwrap_or(false)
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Lazily unmounts anything still mounted under `dir` (deepest first), so removing the dir can
/// never reach into a mounted file system.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount")
            .args(["-l", p])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let containerd = self.containerd_pid();
        // A graceful stop lets dockerd stop its containerd too.
        signal(self.child.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = containerd {
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive_as(pid, "containerd") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive_as(pid, "containerd") {
                signal(pid, "-KILL");
            }
        }
        unmount_under(self.dir.path());
        // The TempDir removes the rest (vfs layer dirs included; errors are ignored).
    }
}
