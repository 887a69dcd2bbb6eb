//! Where an upstream may send portcullis: redirects only to the upstream's own origin or to the
//! hosts its `redirect_hosts` name, token realms only to public addresses (or hosts the operator
//! named), and never, unless an operator listed that exact host, to a loopback, private, link-local
//! or otherwise non-global address: a lying upstream cannot make portcullis read an internal
//! service, not even one on the upstream's own machine.
//!
//! Two checks, one rule. Before a request to a host the upstream named, [`check_redirect`] and
//! [`check_realm`] resolve it and look at every address. Then the connection itself resolves the
//! name again through [`EgressResolver`], which applies the same rule to the addresses it connects
//! to, so a name that changes its answer in between (DNS rebinding) gains nothing.

pub use super::route::Redirects;
use super::route::Upstream;
pub use crate::config::HostPattern;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use url::{Host, Url};

/// How many redirects one request may follow.
pub const MAX_REDIRECTS: usize = 5;

/// Whether an address is on the public internet: not loopback, private (RFC 1918, ULA), link-local,
/// unspecified, shared (CGNAT), multicast, documentation, benchmarking or reserved; IPv4 inside an
/// IPv6 address (mapped, NAT64, 6to4) is judged as the IPv4 address.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_global(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_global(v4);
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                return v4_global(embedded(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return v4_global(embedded(s[1], s[2]));
            }
            !(s[0] == 0 // ::/16: unspecified, loopback, IPv4-compatible
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // ULA fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments, Teredo
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])) // discard-only 100::/64
        }
    }
}

fn v4_global(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

/// Why a host an upstream named was not contacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Refused by rule. The text is for the client: it names no URL.
    Forbidden(String),
    /// The name could not be resolved; retrying may help.
    Unresolved(String),
}

/// What a redirect that may be followed leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// The upstream's own origin: its `Authorization` may go along.
    pub same_origin: bool,
}

/// Whether a redirect from the upstream (already found followable) to `target` may be followed:
/// http(s) only, never from https down to http, to the upstream's own origin, or to a host its
/// `redirect_hosts` match and whose addresses are all global (any address when the host is
/// listed exactly).
pub async fn check_redirect(up: &Upstream, from: &Url, target: &Url) -> Result<Hop, Refusal> {
    let forbidden = |why: &str| Err(Refusal::Forbidden(why.to_string()));
    if !matches!(target.scheme(), "http" | "https") {
        return forbidden("redirected to a URL that is not http or https");
    }
    if from.scheme() == "https" && target.scheme() == "http" {
        return forbidden("redirected from https to plain http");
    }
    if target.origin() == up.base.origin() {
        return Ok(Hop { same_origin: true });
    }
    let (Some(host), Some(port)) = (target.host(), target.port_or_known_default()) else {
        return forbidden("redirected to a URL without a host");
    };
    let rules = &up.redirects;
    if !rules.hosts.iter().any(|p| p.matches(&host, port)) {
        return forbidden("redirected to a host that is not allowed (not in its redirect_hosts)");
    }
    if !rules.lists_exactly(&host, port) {
        check_addresses(&host, port).await?;
    }
    Ok(Hop { same_origin: false })
}

/// Whether a token request may go to `realm`: http(s), and its host is the upstream's own host
/// (any port), one of its `auth_hosts`, or has only global addresses.
pub async fn check_realm(up: &Upstream, realm: &Url) -> Result<(), Refusal> {
    if !matches!(realm.scheme(), "http" | "https") {
        return Err(Refusal::Forbidden(
            "named a token realm that is not an http or https URL".into(),
        ));
    }
    let (Some(host), Some(port)) = (realm.host(), realm.port_or_known_default()) else {
        return Err(Refusal::Forbidden(
            "named a token realm without a host".into(),
        ));
    };
    let named = realm.host() == up.base.host()
        || realm
            .host_str()
            .is_some_and(|h| up.auth_hosts.iter().any(|a| a.eq_ignore_ascii_case(h)));
    if named {
        return Ok(());
    }
    check_addresses(&host, port).await.map_err(|e| match e {
        Refusal::Forbidden(_) => Refusal::Forbidden(
            "named a token realm on a loopback, private or link-local address (list its host in auth_hosts to allow it)".into(),
        ),
        other => other,
    })
}

/// Every address of `host` must be global.
async fn check_addresses(host: &Host<&str>, port: u16) -> Result<(), Refusal> {
    let internal = || {
        Refusal::Forbidden(
            "redirected to a loopback, private or link-local address (list that exact host in redirect_hosts to allow it)"
                .into(),
        )
    };
    match host {
        Host::Ipv4(ip) if !is_global(IpAddr::V4(*ip)) => Err(internal()),
        Host::Ipv6(ip) if !is_global(IpAddr::V6(*ip)) => Err(internal()),
        Host::Ipv4(_) | Host::Ipv6(_) => Ok(()),
        Host::Domain(name) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((*name, port))
                .await
                .map_err(|e| Refusal::Unresolved(format!("cannot resolve {name}: {e}")))?
                .collect();
            if addrs.is_empty() {
                return Err(Refusal::Unresolved(format!(
                    "{name} resolves to no address"
                )));
            }
            if addrs.iter().all(|a| is_global(a.ip())) {
                Ok(())
            } else {
                Err(internal())
            }
        }
    }
}

/// The DNS resolver of the upstream client: a name resolving to any non-global address fails to
/// resolve, unless an operator named it (an upstream's own host, an exact `redirect_hosts` entry,
/// an `auth_hosts` entry). The checks above resolve before a request; this one decides what the
/// connection actually uses, so a name cannot answer "public" to the check and "internal" to
/// the connection.
#[derive(Clone, Default)]
pub struct EgressResolver {
    named: Arc<RwLock<HashSet<String>>>,
    admitted: Arc<RwLock<HashSet<String>>>,
}

/// The error a refused name resolves to; found again in a failed request's causes.
#[derive(Debug, thiserror::Error)]
#[error("a host resolving to a loopback, private or link-local address is not contacted")]
pub struct InternalAddress;

impl EgressResolver {
    /// Records the host names `up` names, once per upstream (done before each of its requests).
    pub fn admit(&self, up: &Upstream) {
        if self.admitted.read().unwrap().contains(&up.host) {
            return;
        }
        let mut named = self.named.write().unwrap();
        if let Some(Host::Domain(h)) = up.base.host() {
            named.insert(h.to_ascii_lowercase());
        }
        named.extend(up.auth_hosts.iter().map(|h| h.to_ascii_lowercase()));
        named.extend(
            up.redirects
                .hosts
                .iter()
                .filter_map(HostPattern::exact_name),
        );
        self.admitted.write().unwrap().insert(up.host.clone());
    }

    fn is_named(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        self.named.read().unwrap().contains(&name)
    }
}

impl reqwest::dns::Resolve for EgressResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let named = self.is_named(name.as_str());
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !named && addrs.iter().any(|a| !is_global(a.ip())) {
                tracing::warn!(host = %host, "refused to connect: the name resolves to a non-global address");
                return Err(Box::new(InternalAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether a failed request was refused by [`EgressResolver`].
pub fn refused_by_resolver(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<InternalAddress>() {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> HostPattern {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn host(url: &str) -> (Host<String>, u16) {
        let u = Url::parse(url).unwrap();
        (
            u.host().unwrap().to_owned(),
            u.port_or_known_default().unwrap(),
        )
    }

    fn matches(p: &str, url: &str) -> bool {
        let (h, port) = host(url);
        let h = match &h {
            Host::Domain(d) => Host::Domain(d.as_str()),
            Host::Ipv4(a) => Host::Ipv4(*a),
            Host::Ipv6(a) => Host::Ipv6(*a),
        };
        pattern(p).matches(&h, port)
    }

    #[test]
    fn wildcards_stay_within_one_label() {
        assert!(matches("cdn*.quay.io", "https://cdn.quay.io/x"));
        assert!(matches("cdn*.quay.io", "https://cdn03.quay.io/x"));
        assert!(!matches("cdn*.quay.io", "https://quay.io/x"));
        assert!(!matches(
            "cdn*.quay.io",
            "https://cdn.evil.quay.io.example/x"
        ));
        assert!(matches(
            "*-docker.pkg.dev",
            "https://us-central1-docker.pkg.dev/a"
        ));
        assert!(!matches("*-docker.pkg.dev", "https://a.b-docker.pkg.dev/a"));
        assert!(!matches("*-docker.pkg.dev", "https://docker.pkg.dev/a"));
        assert!(matches(
            "prod-registry-k8s-io-*.s3.dualstack.*.amazonaws.com",
            "https://prod-registry-k8s-io-us-east-1.s3.dualstack.us-east-1.amazonaws.com/c"
        ));
        assert!(!matches(
            "prod-registry-k8s-io-*.s3.dualstack.*.amazonaws.com",
            "https://evil.s3.dualstack.us-east-1.amazonaws.com/c"
        ));
        assert!(matches(
            "Production.Cloudflare.Docker.com",
            "https://production.cloudflare.docker.com./r"
        ));
    }

    #[test]
    fn ports_and_addresses_match_exactly() {
        assert!(matches("127.0.0.2", "http://127.0.0.2:9999/x"));
        assert!(matches("127.0.0.2:9999", "http://127.0.0.2:9999/x"));
        assert!(!matches("127.0.0.2:9999", "http://127.0.0.2:9998/x"));
        assert!(!matches("127.0.0.2", "http://127.0.0.3/x"));
        assert!(matches("cdn.example:443", "https://cdn.example/x"));
        assert!(!matches("cdn.example:443", "http://cdn.example/x"));
        assert!(matches("[::1]:8080", "http://[::1]:8080/x"));
        assert!(matches("::1", "http://[::1]:8080/x"));
        assert!(matches("fd00::5", "http://[fd00::5]/x"));
        // WHATWG URL parsing turns other spellings of an IPv4 address into the address.
        assert!(matches("127.0.0.1", "http://2130706433/x"));
        assert!(!matches("localhost", "http://127.0.0.1/x"));
        assert!(pattern("127.0.0.2").is_exact());
        assert!(pattern("a.example").is_exact());
        assert!(!pattern("*.a.example").is_exact());
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "",
            "*",
            "*.com",
            "*.co.uk",
            "*.s3.amazonaws.com",
            "cdn.*",
            "a..b",
            "a b.example",
            "host:0",
            "host:http",
            "[::1",
            "[nope]",
            "https://cdn.example",
            "cdn.example/path",
        ] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?} was accepted");
        }
        let err = "*.co.uk".parse::<HostPattern>().unwrap_err();
        assert!(err.contains("public suffix"), "{err}");
        pattern("*.cdn.example.co.uk");
        pattern("*.amazonaws.com");
    }

    #[test]
    fn only_public_addresses_are_global() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "192.0.0.170",
            "198.18.0.1",
            "192.0.2.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "::127.0.0.1",
        ] {
            assert!(!is_global(ip.parse().unwrap()), "{ip} counted as global");
        }
        for ip in [
            "1.1.1.1",
            "104.16.0.1",
            "8.8.8.8",
            "2606:4700::1",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_global(ip.parse().unwrap()), "{ip} counted as internal");
        }
    }

    fn upstream(base: &str, redirect_hosts: &[&str], auth_hosts: &[&str]) -> Upstream {
        Upstream {
            host: "up.example".into(),
            base: Url::parse(base).unwrap(),
            credentials: None,
            auth_hosts: auth_hosts.iter().map(|s| s.to_string()).collect(),
            official_prefix: false,
            redirects: Redirects {
                hosts: redirect_hosts.iter().map(|p| pattern(p)).collect(),
                all_requests: false,
            },
        }
    }

    async fn redirect(up: &Upstream, to: &str) -> Result<Hop, Refusal> {
        let from = up.base.join("/v2/a/blobs/sha256:00").unwrap();
        check_redirect(up, &from, &Url::parse(to).unwrap()).await
    }

    fn forbidden(r: Result<Hop, Refusal>) -> bool {
        matches!(r, Err(Refusal::Forbidden(_)))
    }

    #[tokio::test]
    async fn redirects_go_to_the_origin_or_listed_hosts_only() {
        let up = upstream("http://127.0.0.1:5000", &["127.0.0.2"], &[]);
        // The upstream's own origin, even on a loopback address.
        assert_eq!(
            redirect(&up, "http://127.0.0.1:5000/other/path?x=1").await,
            Ok(Hop { same_origin: true })
        );
        // Another port on the same machine is another origin.
        assert!(forbidden(redirect(&up, "http://127.0.0.1:6379/").await));
        assert!(forbidden(redirect(&up, "https://127.0.0.1:5000/").await));
        // Listed exactly: followed, without the upstream's credentials.
        assert_eq!(
            redirect(&up, "http://127.0.0.2:9000/blob").await,
            Ok(Hop { same_origin: false })
        );
        assert!(forbidden(
            redirect(&up, "http://169.254.169.254/latest/").await
        ));
        assert!(forbidden(redirect(&up, "file:///etc/passwd").await));
        assert!(forbidden(redirect(&up, "ftp://127.0.0.2/x").await));
    }

    #[tokio::test]
    async fn a_glob_does_not_open_internal_addresses() {
        let up = upstream("https://registry.example", &["*.internal.example"], &[]);
        // Matched by a glob, but an IP literal (or a name of an internal address) must be listed
        // exactly; `localhost` resolves to loopback everywhere.
        assert!(forbidden(redirect(&up, "https://10.0.0.1/x").await));
        // A name is judged by every address it resolves to.
        assert!(matches!(
            check_addresses(&Host::Domain("localhost"), 443).await,
            Err(Refusal::Forbidden(_))
        ));
        assert!(
            check_addresses(&Host::Ipv4("1.1.1.1".parse().unwrap()), 443)
                .await
                .is_ok()
        );
        // https to http is a downgrade.
        let up3 = upstream("https://registry.example", &["cdn.example"], &[]);
        assert!(forbidden(redirect(&up3, "http://cdn.example/x").await));
        let listed = upstream("https://registry.example", &["localhost"], &[]);
        assert_eq!(
            redirect(&listed, "https://localhost:8443/x").await,
            Ok(Hop { same_origin: false })
        );
    }

    #[tokio::test]
    async fn realms_on_internal_addresses_need_naming() {
        let up = upstream("http://127.0.0.1:5000", &[], &["127.0.0.3"]);
        let realm = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            check_realm(&up, &realm("http://127.0.0.1:5001/token")).await,
            Ok(())
        );
        assert_eq!(
            check_realm(&up, &realm("http://127.0.0.3:80/token")).await,
            Ok(())
        );
        let refused = check_realm(&up, &realm("http://169.254.169.254/latest")).await;
        assert!(matches!(refused, Err(Refusal::Forbidden(m)) if m.contains("auth_hosts")));
        assert!(check_realm(&up, &realm("http://127.0.0.2/token"))
            .await
            .is_err());
        assert!(check_realm(&up, &realm("file:///token")).await.is_err());
    }

    #[tokio::test]
    async fn the_resolver_refuses_internal_names_unless_named() {
        use reqwest::dns::Resolve as _;
        let r = EgressResolver::default();
        let refused = r.resolve("localhost".parse().unwrap()).await;
        assert!(refused.is_err());
        let e = refused.err().unwrap();
        assert!(refused_by_resolver(e.as_ref()));
        r.admit(&upstream("http://localhost:5000", &[], &[]));
        assert!(r.resolve("localhost".parse().unwrap()).await.is_ok());
    }
}
