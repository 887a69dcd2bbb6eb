//! portcullis's `GET /metrics` (Prometheus text format), parsed into samples.

/// One sample line: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    /// `(label, value)` pairs as written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A scrape of `/metrics`, raw text kept for assertion messages.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// The sum of every sample named `name` that carries all of `labels` (so with no labels,
    /// the total over all label values); `None` when no such sample exists.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for s in &self.samples {
            let matches = s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v));
            if matches {
                *found.get_or_insert(0.0) += s.value;
            }
        }
        found
    }

    /// Like [`Metrics::get`], panicking (with the scrape) when the sample is missing.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in /metrics:\n{}", self.text))
    }
}

/// Parses the Prometheus text exposition format (comments and blank lines skipped).
pub fn parse(text: &str) -> Metrics {
    let samples = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_sample)
        .collect();
    Metrics {
        text: text.to_string(),
        samples,
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = match line.find('}') {
        Some(end) => (&line[..=end], line[end + 1..].trim()),
        None => line.split_once(char::is_whitespace)?,
    };
    // A timestamp may follow the value.
    let value = value.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
        None => (series, Vec::new()),
    };
    Some(Sample {
        name: name.trim().to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"` → pairs, escapes undone.
fn parse_labels(mut s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if s.is_empty() {
            return Some(out);
        }
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim().to_string(), value));
        s = &rest[end + 1..];
    }
}

impl super::Portcullis {
    /// Scrapes `GET /metrics`, which must answer 200.
    pub fn metrics(&self) -> Metrics {
        let r = super::http()
            .get(format!("{}/metrics", self.url()))
            .send()
            .expect("GET /metrics");
        assert_eq!(r.status(), 200, "GET /metrics");
        parse(&r.text().unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_gauges_and_labels() {
        let m = parse(
            "# HELP portcullis_cache_hits_total Cache hits.\n\
             # TYPE portcullis_cache_hits_total counter\n\
             portcullis_cache_hits_total{kind=\"blob\"} 7\n\
             portcullis_cache_hits_total{kind=\"manifest\",x=\"a\\\"b\"} 2\n\
             portcullis_cache_bytes 3145728 1700000000000\n",
        );
        assert_eq!(
            m.get("portcullis_cache_hits_total", &[("kind", "blob")]),
            Some(7.0)
        );
        assert_eq!(m.get("portcullis_cache_hits_total", &[]), Some(9.0));
        assert_eq!(
            m.get("portcullis_cache_hits_total", &[("x", "a\"b")]),
            Some(2.0)
        );
        assert_eq!(m.get("portcullis_cache_bytes", &[]), Some(3145728.0));
        assert_eq!(m.get("portcullis_cache_misses_total", &[]), None);
    }
}
