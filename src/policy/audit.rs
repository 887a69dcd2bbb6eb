//! The audit trail: one JSON line per decision (who pulled what, what was decided, and why).

use crate::inspect::Decision;
use serde::Serialize;
use std::io::Write;
use std::sync::Mutex;
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

/// Where audit lines go: stdout, a file (appended), or nowhere.
pub struct AuditLog {
    sink: Option<Mutex<Box<dyn Write + Send>>>,
}

impl AuditLog {
    /// `"-"` is stdout, `""` is off, anything else a file path opened for appending.
    pub fn open(target: &str) -> std::io::Result<AuditLog> {
        let sink: Option<Box<dyn Write + Send>> = match target {
            "" => None,
            "-" => Some(Box::new(std::io::stdout())),
            path => Some(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
        };
        Ok(AuditLog {
            sink: sink.map(Mutex::new),
        })
    }

    pub fn off() -> AuditLog {
        AuditLog { sink: None }
    }

    /// Writes one line. A failing audit sink is logged, never fatal to the request.
    pub fn record(&self, record: &AuditRecord) {
        let Some(sink) = &self.sink else { return };
        let Ok(mut line) = serde_json::to_vec(record) else {
            return;
        };
        line.push(b'\n');
        let mut w = sink.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = w.write_all(&line).and_then(|()| w.flush()) {
            tracing::error!(error = %e, "cannot write the audit log");
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
