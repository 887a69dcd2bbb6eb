//! The audit trail: one JSON line per decision (who pulled what, what was decided, and why).

use crate::inspect::Decision;
use serde::Serialize;
use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::time::SystemTime;

/// One decision, as written to the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC.
    pub time: String,
    /// The client's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    pub upstream: String,
    pub repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// What was judged: `name`, `manifest`, `blob`.
    pub subject: &'static str,
    pub decision: Decision,
    /// Whether the decision was acted on (`enforce`) or only recorded (`audit`).
    pub mode: super::Mode,
    pub score: f64,
    /// Rule ids of the findings, most weighty first.
    pub rules: Vec<String>,
    /// An override decided instead of the findings (its reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overridden_by: Option<String>,
}

impl AuditRecord {
    pub fn now_rfc3339() -> String {
        humantime::format_rfc3339_millis(SystemTime::now()).to_string()
    }
}

/// Lines waiting for the writer. Past this many, `record` waits for the disk: an audit line is
/// never dropped.
const QUEUE: usize = 4096;

/// Where audit lines go: stdout, a file (appended), or nowhere. Lines are written by a thread of
/// their own, so a request never waits on the audit file's disk (unless [`QUEUE`] lines are
/// already waiting).
pub struct AuditLog {
    tx: Option<SyncSender<Msg>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

enum Msg {
    Line(Vec<u8>),
    /// Answered once every line before it is written.
    Flush(SyncSender<()>),
}

impl AuditLog {
    /// `"-"` is stdout, `""` is off, anything else a file path opened for appending.
    pub fn open(target: &str) -> std::io::Result<AuditLog> {
        let mut sink: Box<dyn Write + Send> = match target {
            "" => return Ok(AuditLog::off()),
            "-" => Box::new(std::io::stdout()),
            path => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel::<Msg>(QUEUE);
        let writer = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                for msg in rx {
                    match msg {
                        Msg::Line(line) => {
                            if let Err(e) = sink.write_all(&line).and_then(|()| sink.flush()) {
                                tracing::error!(error = %e, "cannot write the audit log");
                            }
                        }
                        Msg::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })?;
        Ok(AuditLog {
            tx: Some(tx),
            writer: Some(writer),
        })
    }

    pub fn off() -> AuditLog {
        AuditLog {
            tx: None,
            writer: None,
        }
    }

    fn send(&self, msg: Msg) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(msg).is_ok())
    }

    /// Queues one line. A failing audit sink is logged, never fatal to the request.
    pub fn record(&self, record: &AuditRecord) {
        if self.tx.is_none() {
            return;
        }
        let Ok(mut line) = serde_json::to_vec(record) else {
            return;
        };
        line.push(b'\n');
        self.send(Msg::Line(line));
    }

    /// Waits until every line recorded so far is written.
    pub fn flush(&self) {
        let (done, wait) = sync_channel(1);
        if self.send(Msg::Flush(done)) {
            let _ = wait.recv();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has written every line.
        self.tx = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_json_line_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(path.to_str().unwrap()).unwrap();
        let rec = AuditRecord {
            time: AuditRecord::now_rfc3339(),
            client: Some("127.0.0.1:4000".into()),
            upstream: "docker.io".into(),
            repository: "library/nginx".into(),
            reference: Some("latest".into()),
            digest: None,
            subject: "manifest",
            decision: Decision::Block,
            mode: crate::policy::Mode::Enforce,
            score: 120.0,
            rules: vec!["miner.stratum-url".into()],
            overridden_by: None,
        };
        log.record(&rec);
        log.record(&rec);
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["decision"], "block");
        assert_eq!(v["rules"][0], "miner.stratum-url");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(v.get("digest").is_none());
    }
}
