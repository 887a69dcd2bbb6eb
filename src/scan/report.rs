//! What a scan reports: one JSON document (its shape is a contract: fields are only ever added)
//! and a table for people.

use super::ImageVerdict;
use crate::inspect::rules::ENGINE_VERSION;
use crate::inspect::{Decision, Finding};
use crate::oci::Digest;
use serde::Serialize;

/// The version of the JSON document's shape; raised only if a field changes meaning or goes.
pub const SCHEMA_VERSION: u32 = 1;

/// The outcome of scanning one target (one image, or several platforms of one).
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub schema_version: u32,
    /// What was scanned: `oci:DIR[:TAG]`, `docker-archive:FILE[:REF]`, or `HOST/REPO:TAG`
    /// (`@DIGEST`) for a remote image, with the name as routed (`docker.io/library/x:1`).
    pub image: String,
    /// The worst decision over the platform images.
    pub decision: Decision,
    /// The score of the image that decided (the highest).
    pub score: f64,
    /// Every finding, highest score first: the name's (no `platform`), then each image's config
    /// and layer findings (with `platform` when the image says).
    pub findings: Vec<ReportFinding>,
    /// Each platform image scanned.
    pub images: Vec<ImageSummary>,
    /// `RuleSet::hash` of the rules judged with.
    pub ruleset_hash: String,
    /// The engine that judged (`portcullis-<version>`).
    pub engine_version: String,
}

/// One finding, and which platform image it was made in.
#[derive(Debug, Clone, Serialize)]
pub struct ReportFinding {
    #[serde(flatten)]
    pub finding: Finding,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// One image's decision.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    /// `os/arch[/variant]` from its config (or its index entry).
    pub platform: Option<String>,
    /// The manifest digest; `None` in a legacy `docker save` archive, which keeps no manifest.
    pub manifest: Option<Digest>,
    /// The config digest.
    pub config: Option<Digest>,
    /// Layers inspected.
    pub layers: usize,
    pub decision: Decision,
    /// Name, config and layer findings together, as [`crate::judge::Judge::decide`] prices them.
    pub score: f64,
}

impl ScanReport {
    pub fn new(
        image: String,
        name: Vec<Finding>,
        images: Vec<ImageVerdict>,
        ruleset_hash: &str,
    ) -> ScanReport {
        let worst = images.iter().map(|i| &i.summary).max_by(|a, b| {
            a.decision
                .cmp(&b.decision)
                .then(a.score.total_cmp(&b.score))
        });
        let (decision, score) = worst.map_or((Decision::Allow, 0.0), |s| (s.decision, s.score));
        let mut findings: Vec<ReportFinding> = name
            .into_iter()
            .map(|finding| ReportFinding {
                finding,
                platform: None,
            })
            .collect();
        let mut summaries = Vec::new();
        for image in images {
            findings.extend(image.findings.into_iter().map(|finding| ReportFinding {
                finding,
                platform: image.summary.platform.clone(),
            }));
            summaries.push(image.summary);
        }
        findings.sort_by(|a, b| {
            b.finding
                .score
                .total_cmp(&a.finding.score)
                .then_with(|| a.finding.rule.cmp(&b.finding.rule))
                .then_with(|| a.platform.cmp(&b.platform))
                .then_with(|| where_(&a.finding).cmp(&where_(&b.finding)))
        });
        ScanReport {
            schema_version: SCHEMA_VERSION,
            image,
            decision,
            score,
            findings,
            images: summaries,
            ruleset_hash: ruleset_hash.to_string(),
            engine_version: ENGINE_VERSION.to_string(),
        }
    }

    /// The exit status of `portcullis scan` for this report.
    pub fn exit_code(&self) -> i32 {
        super::exit_code(self.decision)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    /// The report for people: a header, one line per platform image, one row per finding.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let decision = lower(&self.decision);
        out.push_str(&format!("image     {}\n", self.image));
        out.push_str(&format!("decision  {decision}\n"));
        out.push_str(&format!("score     {:.0}\n", self.score));
        for i in &self.images {
            let mut line = format!(
                "platform  {}  {}  score {:.0}  {} layer{}",
                i.platform.as_deref().unwrap_or("unknown"),
                lower(&i.decision),
                i.score,
                i.layers,
                if i.layers == 1 { "" } else { "s" }
            );
            if let Some(m) = &i.manifest {
                line.push_str(&format!("  {m}"));
            }
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str(&format!(
            "rules     {} ({})\n\n",
            short_hash(&self.ruleset_hash),
            self.engine_version
        ));
        if self.findings.is_empty() {
            out.push_str("no findings\n");
            return out;
        }
        let several = self.images.len() > 1;
        let mut header = vec!["RULE", "CATEGORY", "SEVERITY", "PLACE", "SCORE"];
        if several {
            header.push("PLATFORM");
        }
        header.extend(["PATH/FIELD", "MATCHED", "MESSAGE"]);
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        for f in &self.findings {
            let x = &f.finding;
            let mut row = vec![
                x.rule.clone(),
                lower(&x.category),
                lower(&x.severity),
                lower(&x.place),
                format!("{:.0}", x.score),
            ];
            if several {
                row.push(f.platform.clone().unwrap_or_else(|| "-".into()));
            }
            row.push(shorten_left(&where_(x), 48));
            row.push(shorten(&x.evidence.matched, 40));
            row.push(x.message.clone());
            rows.push(row);
        }
        let columns = rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for row in rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == columns {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A serde enum's lowercase name (`block`, `miner`, `runs`).
fn lower<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Where a finding was made: its file, else its config field, else `-`.
fn where_(f: &Finding) -> String {
    f.evidence
        .path
        .clone()
        .or_else(|| f.evidence.field.clone())
        .unwrap_or_else(|| "-".into())
}

/// `sha256:` and the first 12 hex digits.
fn short_hash(h: &str) -> String {
    let hex_at = h.find(':').map_or(0, |i| i + 1);
    h.chars().take(hex_at + 12).collect()
}

/// `s` cut to `max` characters, the end replaced by `…`.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return if s.is_empty() {
            "-".into()
        } else {
            s.to_string()
        };
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// `s` cut to `max` characters from the left (a path keeps its file name).
fn shorten_left(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let mut out = String::from("…");
    out.extend(s.chars().skip(n - (max - 1)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_cut_on_the_side_that_matters() {
        assert_eq!(shorten("stratum+tcp://pool.example:3333", 10), "stratum+t…");
        assert_eq!(shorten("", 10), "-");
        assert_eq!(shorten_left("/usr/local/lib/deep/xmrig", 10), "…eep/xmrig");
        assert_eq!(shorten_left("/bin/x", 10), "/bin/x");
    }
}
