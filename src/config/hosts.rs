//! `redirect_hosts` patterns: which hosts an upstream may redirect blob downloads to. Parsed and
//! checked with the config; matched by `upstream::egress`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::Host;

/// One `redirect_hosts` entry: an IP address, or a host name whose labels may carry `*` (any run
/// of characters within that one label), with an optional `:port` (without one, any port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: PatternHost,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternHost {
    Ip(IpAddr),
    /// Lowercase labels, left to right.
    Name(Vec<String>),
}

impl std::str::FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let bad = |why: &str| Err(format!("{s:?}: {why}"));
        if s.is_empty() {
            return bad("empty host pattern");
        }
        let port = |p: &str| match p.parse::<u16>() {
            Ok(p) if p > 0 => Ok(Some(p)),
            _ => Err(format!("{s:?}: {p:?} is not a port")),
        };
        // `[v6]`, `[v6]:port`, a bare v6 address, `v4[:port]`, `name[:port]`.
        if let Some(rest) = s.strip_prefix('[') {
            let Some((ip, after)) = rest.split_once(']') else {
                return bad("unclosed [");
            };
            let Ok(ip) = ip.parse::<Ipv6Addr>() else {
                return bad("not an IPv6 address between [ ]");
            };
            let port = match after {
                "" => None,
                _ => port(after.strip_prefix(':').unwrap_or(after))?,
            };
            return Ok(HostPattern {
                host: PatternHost::Ip(IpAddr::V6(ip)),
                port,
            });
        }
        if let Ok(ip) = s.parse::<Ipv6Addr>() {
            return Ok(HostPattern {
                host: PatternHost::Ip(IpAddr::V6(ip)),
                port: None,
            });
        }
        let (name, port) = match s.rsplit_once(':') {
            Some((name, p)) => (name, port(p)?),
            None => (s.as_str(), None),
        };
        if let Ok(ip) = name.parse::<Ipv4Addr>() {
            return Ok(HostPattern {
                host: PatternHost::Ip(IpAddr::V4(ip)),
                port,
            });
        }
        let name = name.strip_suffix('.').unwrap_or(name);
        let labels: Vec<String> = name.split('.').map(str::to_string).collect();
        for label in &labels {
            let valid = label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*');
            if label.is_empty() || label.len() > 63 || !valid {
                return bad("not a host name (letters, digits, '-', '.', and '*' within a label)");
            }
        }
        if let Some(i) = labels.iter().rposition(|l| l.contains('*')) {
            let tail = labels[i + 1..].join(".");
            if tail.is_empty() {
                return bad("the last label cannot hold a wildcard");
            }
            if labels[i] == "*" && psl::suffix_str(&tail) == Some(tail.as_str()) {
                return bad(&format!(
                    "matches every host under the public suffix {tail:?}; name the hosts"
                ));
            }
        }
        Ok(HostPattern {
            host: PatternHost::Name(labels),
            port,
        })
    }
}

impl HostPattern {
    /// The host name of an exact (wildcard-free) name pattern.
    pub fn exact_name(&self) -> Option<String> {
        match &self.host {
            PatternHost::Name(labels) if self.is_exact() => Some(labels.join(".")),
            _ => None,
        }
    }

    /// Whether the pattern names one host, with no wildcard.
    pub fn is_exact(&self) -> bool {
        match &self.host {
            PatternHost::Ip(_) => true,
            PatternHost::Name(labels) => labels.iter().all(|l| !l.contains('*')),
        }
    }

    pub fn matches(&self, host: &Host<&str>, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match (&self.host, host) {
            (PatternHost::Ip(a), Host::Ipv4(b)) => *a == IpAddr::V4(*b),
            (PatternHost::Ip(a), Host::Ipv6(b)) => *a == IpAddr::V6(*b),
            (PatternHost::Name(labels), Host::Domain(d)) => {
                let d = d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase();
                let parts: Vec<&str> = d.split('.').collect();
                parts.len() == labels.len()
                    && labels.iter().zip(parts).all(|(p, l)| label_matches(p, l))
            }
            _ => false,
        }
    }
}

/// `*` matches any run of characters (none included) within the label.
fn label_matches(pattern: &str, label: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == label,
        Some((prefix, rest)) => match label.strip_prefix(prefix) {
            Some(label) => (0..=label.len())
                .filter(|&i| label.is_char_boundary(i))
                .any(|i| label_matches(rest, &label[i..])),
            None => false,
        },
    }
}
