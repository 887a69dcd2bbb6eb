//! A private containerd daemon (Debian's containerd 1.6) for tests: own config, root, state and
//! socket under a temp dir, killed on drop, and a `ctr` wrapper that talks to it.

use super::{wait_for, Proc};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The namespace every `ctr` call of the tests uses.
pub const NAMESPACE: &str = "test";

/// The snapshotter pulls unpack into: `native` only copies files, so it works on any file system
/// and needs no overlay mounts.
pub const SNAPSHOTTER: &str = "native";

/// A containerd of its own, listening on a unix socket in a temp dir.
pub struct Containerd {
    // Declared before `dir` so the daemon is killed before its files go away.
    _proc: Proc,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Containerd {
    /// Starts `containerd --config <tmp>/config.toml`; the CRI plugin (which wants CNI, a network
    /// and a sandbox image) is disabled. Waits until the gRPC socket answers.
    pub fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        let p = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
temp = "{tmp}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
                root = p("root"),
                state = p("state"),
                tmp = p("tmp"),
                opt = p("opt"),
                sock = socket.display(),
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let log = dir.path().join("containerd.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .arg("--log-level")
            .arg("info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("containerd is installed (.ci/run installs it)");
        let mut proc_ = Proc {
            child,
            name: "containerd",
        };
        wait_for(
            "containerd to listen on its socket",
            Duration::from_secs(30),
            || {
                if let Some(status) = proc_.child.try_wait().unwrap() {
                    panic!(
                        "containerd exited with {status}:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                UnixStream::connect(&socket).ok()
            },
        );
        let c = Containerd {
            _proc: proc_,
            dir,
            socket,
            log,
        };
        // The socket accepts before every service is registered: wait for a real answer.
        wait_for("containerd to answer ctr", Duration::from_secs(30), || {
            c.ctr(&["version"]).ok()
        });
        c
    }

    /// Runs `ctr --address <sock> --namespace test <args>`; `Ok(stdout)` on success, `Err` with
    /// stdout and stderr otherwise.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        self.ctr_bytes(args)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Like [`Containerd::ctr`], with stdout as raw bytes (for `ctr content get`).
    pub fn ctr_bytes(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr is installed with containerd");
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "ctr {args:?} failed with {}:\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `ctr images pull --hosts-dir <hosts_dir> --snapshotter native <extra> <reference>`: fetches
    /// through whatever `hosts.toml` says and unpacks (which checks each layer's diff ID).
    pub fn pull(
        &self,
        hosts_dir: &Path,
        reference: &str,
        extra: &[&str],
    ) -> Result<String, String> {
        let hosts = hosts_dir.display().to_string();
        let mut args = vec![
            "images",
            "pull",
            "--hosts-dir",
            &hosts,
            "--snapshotter",
            SNAPSHOTTER,
        ];
        args.extend_from_slice(extra);
        args.push(reference);
        self.ctr(&args)
    }

    /// The target digest `ctr images ls` shows for `reference`, if the image is known.
    pub fn image_digest(&self, reference: &str) -> Option<String> {
        let ls = self.ctr(&["images", "ls"]).unwrap();
        ls.lines().find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.first() == Some(&reference)).then(|| cols.get(2).map(|d| d.to_string()))?
        })
    }

    /// Whether `ctr images check -q` lists `reference` as ready: every blob present and unpacked.
    pub fn image_ready(&self, reference: &str) -> bool {
        let out = self
            .ctr(&["images", "check", "-q", "--snapshotter", SNAPSHOTTER])
            .unwrap();
        out.lines().any(|l| l.trim() == reference)
    }

    /// The contents of `path` in every snapshot of the native snapshotter that has it.
    pub fn snapshot_files(&self, path: &str) -> Vec<Vec<u8>> {
        let snapshots = self
            .dir
            .path()
            .join("root/io.containerd.snapshotter.v1.native/snapshots");
        let Ok(dirs) = std::fs::read_dir(snapshots) else {
            return Vec::new();
        };
        dirs.filter_map(|d| std::fs::read(d.ok()?.path().join(path)).ok())
            .collect()
    }

    /// The bytes of a blob in containerd's content store (`ctr content get <digest>`).
    pub fn content(&self, digest: &str) -> Result<Vec<u8>, String> {
        self.ctr_bytes(&["content", "get", digest])
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Writes `<dir>/<registry>/hosts.toml` (the layout `ctr --hosts-dir` and the CRI `config_path`
/// read) with `server` as the fallback and `hosts` (URL, capabilities) tried first, in order.
pub fn write_hosts_toml(
    dir: &Path,
    registry: &str,
    server: &str,
    hosts: &[(&str, &[&str])],
) -> PathBuf {
    let mut toml = format!("server = \"{server}\"\n");
    for (url, caps) in hosts {
        let caps: Vec<String> = caps.iter().map(|c| format!("\"{c}\"")).collect();
        toml.push_str(&format!(
            "\n[host.\"{url}\"]\n  capabilities = [{}]\n",
            caps.join(", ")
        ));
    }
    let d = dir.join(registry);
    std::fs::create_dir_all(&d).unwrap();
    let path = d.join("hosts.toml");
    std::fs::write(&path, toml).unwrap();
    path
}
