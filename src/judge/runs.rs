//! What an image starts: the files its config runs, so that evidence in them counts as
//! [`Place::Runs`](crate::inspect::Place::Runs).
//!
//! A container's process is `Entrypoint` followed by `Cmd` (or `Cmd` alone). Its program runs, and
//! so does the script a shell or an interpreter is handed (`sh /start.sh`, `python3 app.py`, and
//! each command of `sh -c "…"`). An argument that is merely a path (`yara /rules/all.yar`,
//! `nginx -c /etc/nginx.conf`) is data, not something that runs: counting it as running would let
//! the mention of a rule file in a scanner's command line decide the image.

use crate::oci::ImageConfig;

/// The `PATH` a container gets when its config sets none (what docker and containerd use).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Programs that run the first operand they are given as a script.
const INTERPRETERS: [&str; 14] = [
    "sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox", "python", "python2", "python3",
    "node", "perl", "ruby",
];

/// Programs that run the rest of their command line as another command.
const WRAPPERS: [&str; 9] = [
    "exec",
    "nohup",
    "env",
    "tini",
    "dumb-init",
    "setsid",
    "nice",
    "timeout",
    "stdbuf",
];

/// The absolute paths an image config starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runs {
    paths: Vec<String>,
}

impl Runs {
    /// What the image config `config` (JSON) starts; nothing when it cannot be read (it is then
    /// refused before it is judged: see `oci::document`).
    pub fn of_config(config: &[u8]) -> Runs {
        match ImageConfig::parse(config) {
            Ok(c) => Runs::of(&c),
            Err(_) => Runs::default(),
        }
    }

    /// What an image config starts.
    pub fn of(c: &ImageConfig) -> Runs {
        let mut argv: Vec<String> = c.entrypoint().to_vec();
        argv.extend(c.cmd().iter().cloned());
        let path = c
            .env()
            .iter()
            .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        let context = Context {
            workdir: c.working_dir().unwrap_or("/").to_string(),
            path,
        };
        let mut runs = Runs::default();
        runs.command(&context, &argv, 0);
        runs.paths.sort();
        runs.paths.dedup();
        runs
    }

    /// Builds a set from paths as they are (tests, and callers that know them already).
    pub fn from_paths(paths: impl IntoIterator<Item = String>) -> Runs {
        Runs {
            paths: paths.into_iter().collect(),
        }
    }

    pub fn contains(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
    }

    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// One command line: its program runs; a wrapper's or an interpreter's operand runs too.
    fn command(&mut self, cx: &Context, argv: &[String], depth: usize) {
        let Some(program) = argv.first() else {
            return;
        };
        if depth > 4 {
            return;
        }
        self.program(cx, program);
        let name = program.rsplit('/').next().unwrap_or(program);
        let rest = &argv[1..];
        if WRAPPERS.contains(&name) {
            // `env A=b prog`, `tini -- prog`, `timeout 10 prog`: the first word that is neither an
            // option, an assignment nor a number is the command.
            let at = rest.iter().position(|w| {
                !w.starts_with('-') && !w.contains('=') && !w.chars().all(|c| c.is_ascii_digit())
            });
            if let Some(at) = at {
                self.command(cx, &rest[at..], depth + 1);
            }
            return;
        }
        if !INTERPRETERS.contains(&name) {
            return;
        }
        let mut words = rest.iter();
        while let Some(w) = words.next() {
            if w == "-c" {
                if let Some(script) = words.next() {
                    self.shell(cx, script, depth + 1);
                }
                return;
            }
            if name == "busybox" && !w.starts_with('-') {
                // `busybox sh script`: the applet, then its operand.
                self.command(
                    cx,
                    &rest[rest.iter().position(|x| x == w).unwrap_or(0)..],
                    depth + 1,
                );
                return;
            }
            if w.starts_with('-') {
                // `python3 -u app.py`, `bash -e x.sh`; `-m module` names no file.
                if w == "-m" {
                    return;
                }
                continue;
            }
            self.program(cx, w);
            return;
        }
    }

    /// The commands of a shell string: the first word of each simple command.
    fn shell(&mut self, cx: &Context, script: &str, depth: usize) {
        for command in script.split(['\n', ';', '&', '|', '(', ')', '`']) {
            let words: Vec<String> = command
                .split_whitespace()
                .map(|w| w.trim_matches(['"', '\'']).to_string())
                .filter(|w| !w.is_empty())
                .collect();
            let words: Vec<String> = match words.first().map(String::as_str) {
                // `. /env.sh` and `source /env.sh` run the file in the shell itself.
                Some(".") | Some("source") => words[1..].to_vec(),
                _ => words,
            };
            self.command(cx, &words, depth);
        }
    }

    /// A program or script word: an absolute path, a path relative to the working directory, or a
    /// bare name looked up in every `PATH` directory (the image's files decide which one exists).
    fn program(&mut self, cx: &Context, word: &str) {
        if word.is_empty() || word.contains('$') {
            return;
        }
        if word.starts_with('/') {
            self.paths.push(normalise(word));
        } else if word.contains('/') {
            self.paths.push(normalise(&format!(
                "{}/{}",
                cx.workdir.trim_end_matches('/'),
                word.trim_start_matches("./")
            )));
        } else {
            for dir in cx.path.split(':').filter(|d| d.starts_with('/')) {
                self.paths
                    .push(format!("{}/{word}", dir.trim_end_matches('/')));
            }
        }
    }
}

struct Context {
    workdir: String,
    path: String,
}

/// `/a/./b//c/../d` → `/a/b/d`.
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `config` (an image config's JSON, with the parts every config has added) starts.
    fn runs(config: &str) -> Vec<String> {
        let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(config) else {
            return Runs::of_config(config.as_bytes()).paths;
        };
        doc["architecture"] = "amd64".into();
        doc["os"] = "linux".into();
        doc["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": []});
        Runs::of_config(&serde_json::to_vec(&doc).unwrap()).paths
    }

    #[test]
    fn the_program_and_the_script_a_shell_is_handed_run() {
        let c = r#"{"config":{"Entrypoint":["/opt/.x/run","-c","conf.json"],"WorkingDir":"/app"}}"#;
        assert_eq!(runs(c), vec!["/opt/.x/run"]);
        let c = r#"{"config":{"Cmd":["sh","./start.sh"],"WorkingDir":"/app"}}"#;
        let got = runs(c);
        assert!(got.contains(&"/app/start.sh".to_string()), "{got:?}");
        assert!(got.contains(&"/bin/sh".to_string()), "{got:?}");
    }

    #[test]
    fn each_command_of_sh_dash_c_runs() {
        let c = r#"{"config":{"Entrypoint":["/bin/sh","-c","cd /srv && /srv/.cache/kworker -o x; nohup ./helper &"],"WorkingDir":"/srv"}}"#;
        let got = runs(c);
        for want in ["/bin/sh", "/srv/.cache/kworker", "/srv/helper"] {
            assert!(got.contains(&want.to_string()), "{want} in {got:?}");
        }
    }

    #[test]
    fn a_path_passed_as_data_does_not_run() {
        // A scanner handed its rule file: the rule file is read, not run.
        let c = r#"{"config":{"Entrypoint":["/usr/bin/yara"],"Cmd":["-r","/rules/miners.yar","/scan"]}}"#;
        assert_eq!(runs(c), vec!["/usr/bin/yara"]);
        let c = r#"{"config":{"Cmd":["nginx","-c","/etc/nginx/nginx.conf"]}}"#;
        assert!(!runs(c).iter().any(|p| p.ends_with(".conf")));
    }

    #[test]
    fn bare_names_are_looked_up_in_the_images_path() {
        let c = r#"{"config":{"Cmd":["xmrig"],"Env":["PATH=/opt/bin:/usr/bin"]}}"#;
        assert_eq!(runs(c), vec!["/opt/bin/xmrig", "/usr/bin/xmrig"]);
    }

    #[test]
    fn wrappers_and_interpreters_pass_on_to_what_they_start() {
        let c = r#"{"config":{"Entrypoint":["/sbin/tini","--"],"Cmd":["python3","-u","/app/main.py"]}}"#;
        let got = runs(c);
        assert!(got.contains(&"/app/main.py".to_string()), "{got:?}");
        assert!(got.contains(&"/usr/bin/python3".to_string()), "{got:?}");
        assert!(runs("not json").is_empty());
    }
}
