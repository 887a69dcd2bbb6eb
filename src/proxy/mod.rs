//! The pull-through request path: manifests, blobs, tags and referrers fetched from the routed
//! upstream, verified, and streamed on with tail-hold.

pub mod error;
pub mod offload;
pub mod range;
pub mod tags;
pub mod tailhold;

pub use error::{Error, Result};
pub use range::ByteRange;
pub use tags::Page;
pub use tailhold::{BlobCheck, DigestCheck, TailHold, Veto, Window};

use crate::oci::media::ManifestDoc;
use crate::oci::{media, Digest, ErrorCode, ErrorEnvelope, Reference};
use crate::policy::guard::{Guard, Who};
use crate::store::ImageBlobs;
use crate::upstream::client::idle_body;
use crate::upstream::{Route, UpstreamClient};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LINK};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A blob body as it reaches the server: bytes, or an error that must abort the response.
pub type BlobBody = Pin<Box<dyn Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send>>;

/// Upstream headers worth passing on to clients (Docker Hub's rate-limit figures).
const PASSTHROUGH_HEADERS: [&str; 3] = [
    "ratelimit-limit",
    "ratelimit-remaining",
    "docker-ratelimit-source",
];

#[derive(Debug, Clone)]
pub struct ManifestRequest {
    pub route: Route,
    pub reference: Reference,
    /// The client's `Accept` types, as a set (dockerd sends them in random order).
    pub accept: Vec<String>,
    pub who: Who,
}

pub struct ManifestReply {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
    pub headers: HeaderMap,
}

#[derive(Debug, Clone)]
pub struct BlobRequest {
    pub route: Route,
    pub digest: Digest,
    pub range: Option<ByteRange>,
    /// HEAD: only the size and digest are wanted.
    pub head: bool,
    pub who: Who,
}

pub struct BlobReply {
    pub digest: Digest,
    /// Size of the whole blob, when known.
    pub size: Option<u64>,
    /// The part being sent, when a range was asked for and can be served.
    pub window: Option<(u64, u64)>,
    /// `None` for HEAD.
    pub body: Option<BlobBody>,
    pub headers: HeaderMap,
}

/// A JSON document passed through from the upstream (tag lists, referrers).
pub struct JsonReply {
    pub content_type: String,
    pub bytes: Bytes,
    pub headers: HeaderMap,
}

/// The read side of a registry. The pull-through proxy implements it; a local store would too, so
/// handlers cannot tell where content comes from.
pub trait Registry: Send + Sync + 'static {
    /// A manifest or index, byte-exact, with its digest. HEAD and GET share this.
    fn manifest(&self, req: ManifestRequest) -> impl Future<Output = Result<ManifestReply>> + Send;
    /// A blob; its body, if any, never completes unless its bytes match `req.digest`.
    fn blob(&self, req: BlobRequest) -> impl Future<Output = Result<BlobReply>> + Send;
    /// `tags/list`, with `n`/`last` passed on; `link_base` is the client-facing path for `Link`.
    fn tags(
        &self,
        route: Route,
        page: Page,
        link_base: String,
    ) -> impl Future<Output = Result<JsonReply>> + Send;
    /// `referrers/<digest>`, with `artifactType` passed on.
    fn referrers(
        &self,
        route: Route,
        digest: Digest,
        query: Option<String>,
    ) -> impl Future<Output = Result<JsonReply>> + Send;
}

/// Builds the extra checks a blob's bytes pass besides its digest (inspection plugs in here).
pub trait CheckFactory: Send + Sync {
    fn checks(&self, req: &BlobRequest) -> Vec<Box<dyn BlobCheck>>;
}

/// The pull-through registry: every request goes to the routed upstream.
pub struct PullThrough {
    client: Arc<UpstreamClient>,
    extra_checks: Vec<Arc<dyn CheckFactory>>,
    guard: Option<Arc<Guard>>,
}

/// Children of an index judged when the index is asked for (platform images, not attestations).
const MAX_INDEX_CHILDREN: usize = 32;
/// The largest image config fetched to be judged.
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;
const IMAGE_CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

impl PullThrough {
    pub fn new(client: Arc<UpstreamClient>) -> Self {
        PullThrough {
            client,
            extra_checks: Vec::new(),
            guard: None,
        }
    }

    /// Judges names, images and layers on the way through (without it, nothing is inspected).
    pub fn with_guard(mut self, guard: Arc<Guard>) -> Self {
        self.guard = Some(guard);
        self
    }

    pub fn with_checks(mut self, factory: Arc<dyn CheckFactory>) -> Self {
        self.extra_checks.push(factory);
        self
    }

    /// Fetches a manifest, byte-exact, and checks it against its digest.
    async fn fetch_manifest(
        &self,
        route: &Route,
        reference: &Reference,
        accept: &[String],
    ) -> Result<ManifestReply> {
        let host = &route.upstream.host;
        let bad = |reason: String| Error::BadUpstream {
            host: host.clone(),
            reason,
        };
        let mut headers = HeaderMap::new();
        let accept: Vec<&str> = if accept.is_empty() {
            media::DEFAULT_ACCEPT.to_vec()
        } else {
            accept.iter().map(String::as_str).collect()
        };
        if let Ok(v) = HeaderValue::from_str(&accept.join(", ")) {
            headers.insert(ACCEPT, v);
        }
        let rest = format!("manifests/{reference}");
        let response = self.get(route, Method::GET, &rest, None, headers).await?;
        let cap = self.client.settings().max_manifest_bytes;
        if response.content_length().is_some_and(|l| l > cap as u64) {
            return Err(bad(format!("manifest larger than {cap} bytes")));
        }
        let passthrough = passthrough_headers(response.headers());
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let announced: Option<Digest> = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = read_capped(response, cap, self.client.settings().idle_timeout())
            .await
            .map_err(|e| bad(format!("manifest body: {e}")))?;
        let media_type = media::manifest_media_type(content_type.as_deref(), &bytes)
            .ok_or_else(|| bad("manifest has no media type".into()))?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let got = Digest::compute(expected.algorithm(), &bytes);
                if &got != expected {
                    return Err(bad(format!("manifest {expected} hashes to {got}")));
                }
                got
            }
            Reference::Tag(_) => {
                if let Some(announced) = announced {
                    let got = Digest::compute(announced.algorithm(), &bytes);
                    if got != announced {
                        return Err(bad(format!(
                            "manifest announced as {announced} hashes to {got}"
                        )));
                    }
                }
                Digest::sha256_of(&bytes)
            }
        };
        Ok(ManifestReply {
            digest,
            media_type,
            bytes,
            headers: passthrough,
        })
    }

    /// Judges what a manifest names: an image (its config and known layers), or each platform
    /// image of an index (the index is refused when one of them is).
    async fn judge(
        &self,
        guard: &Arc<Guard>,
        req: &ManifestRequest,
        reply: &ManifestReply,
    ) -> Result<()> {
        let Some(doc) = ManifestDoc::parse(&reply.bytes) else {
            return Ok(());
        };
        if !doc.is_index() {
            return self.judge_image(guard, req, &reply.digest, &doc).await;
        }
        let children = doc
            .manifests
            .iter()
            .filter(|m| m.platform.as_ref().is_none_or(|p| p.os != "unknown"))
            .take(MAX_INDEX_CHILDREN);
        for child in children {
            let digest: Digest = child.digest.parse().map_err(|e| Error::BadUpstream {
                host: req.route.upstream.host.clone(),
                reason: format!("index lists a bad digest: {e}"),
            })?;
            let accept = vec![child.media_type.clone()];
            let reference = Reference::Digest(digest.clone());
            let child_reply = self.fetch_manifest(&req.route, &reference, &accept).await?;
            if let Some(child_doc) =
                ManifestDoc::parse(&child_reply.bytes).filter(|d| !d.is_index())
            {
                self.judge_image(guard, req, &digest, &child_doc).await?;
            }
        }
        Ok(())
    }

    async fn judge_image(
        &self,
        guard: &Arc<Guard>,
        req: &ManifestRequest,
        digest: &Digest,
        doc: &ManifestDoc,
    ) -> Result<()> {
        let Some(config) = &doc.config else {
            return Ok(());
        };
        let bad = |reason: String| Error::BadUpstream {
            host: req.route.upstream.host.clone(),
            reason,
        };
        let parse = |d: &str| {
            d.parse::<Digest>()
                .map_err(|e| bad(format!("manifest lists a bad digest: {e}")))
        };
        let blobs = ImageBlobs {
            config: parse(&config.digest)?,
            layers: doc
                .layers
                .iter()
                .map(|l| parse(&l.digest))
                .collect::<Result<_>>()?,
        };
        // Artifacts (Helm charts, signatures) have other config types: only their layers count.
        let config_bytes = if IMAGE_CONFIG_TYPES.contains(&config.media_type.as_str()) {
            match self
                .fetch_small_blob(&req.route, &blobs.config, MAX_CONFIG_BYTES)
                .await
            {
                Ok(b) => b,
                // No client can pull an image whose config is missing; nothing to judge.
                Err(Error::Upstream { status: 404, .. }) => {
                    tracing::warn!(config = %blobs.config, "image config not found upstream: manifest passed on unjudged");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        } else {
            Bytes::from_static(b"{}")
        };
        if guard.policy.config.strict {
            for layer in guard.unjudged_layers(&blobs) {
                self.judge_layer_now(guard, &req.route, &layer, &req.who)
                    .await?;
            }
        }
        guard.judge_image(
            &req.route,
            &req.reference,
            digest,
            &blobs,
            &config_bytes,
            &req.who,
        )?;
        Ok(())
    }

    /// `GET blobs/<digest>` from the route's upstream, a success or the error it means.
    async fn get_blob(&self, route: &Route, digest: &Digest) -> Result<reqwest::Response> {
        self.get(
            route,
            Method::GET,
            &format!("blobs/{digest}"),
            None,
            HeaderMap::new(),
        )
        .await
    }

    /// A small blob (an image config), whole and verified.
    async fn fetch_small_blob(&self, route: &Route, digest: &Digest, cap: usize) -> Result<Bytes> {
        let response = self.get_blob(route, digest).await?;
        let bytes = read_capped(response, cap, self.client.settings().idle_timeout())
            .await
            .map_err(|e| Error::BadUpstream {
                host: route.upstream.host.clone(),
                reason: format!("blob {digest}: {e}"),
            })?;
        let got = Digest::compute(digest.algorithm(), &bytes);
        if &got != digest {
            return Err(Error::BadUpstream {
                host: route.upstream.host.clone(),
                reason: format!("blob {digest} hashes to {got}"),
            });
        }
        Ok(bytes)
    }

    /// Strict mode: reads a whole layer from the upstream through its checks, sending nothing, so
    /// its verdict is known before the manifest is answered.
    async fn judge_layer_now(
        &self,
        guard: &Arc<Guard>,
        route: &Route,
        digest: &Digest,
        who: &Who,
    ) -> Result<()> {
        let response = self.get_blob(route, digest).await?;
        let size = content_length(response.headers());
        let mut checks: Vec<Box<dyn BlobCheck>> =
            vec![Box::new(DigestCheck::new(digest.clone(), size))];
        checks.extend(guard.layer_check(route, digest, who));
        let body = idle_body(response, self.client.settings().idle_timeout());
        let mut stream = TailHold::new(body, checks, Window::ALL);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                // A refused layer has its verdict stored by now; judge_image will report it.
                tracing::info!(%digest, reason = %e, "strict mode: layer refused before the manifest was answered");
                break;
            }
        }
        Ok(())
    }

    async fn get(
        &self,
        route: &Route,
        method: Method,
        rest: &str,
        query: Option<&str>,
        headers: HeaderMap,
    ) -> Result<reqwest::Response> {
        let response = self
            .client
            .send(route, method, rest, query, headers)
            .await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.status_error(route, response, rest).await)
        }
    }

    /// Turns an upstream's non-success answer into the error the client should see.
    async fn status_error(&self, route: &Route, response: reqwest::Response, rest: &str) -> Error {
        let host = route.upstream.host.clone();
        let status = response.status();
        let retry_after = crate::upstream::client::retry_after(response.headers());
        let attempts = self.client.settings().attempts;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Error::RateLimited { host, retry_after };
        }
        if status.is_server_error() {
            return Error::UpstreamFailed {
                host,
                status: status.as_u16(),
                attempts,
            };
        }
        let idle = self.client.settings().idle_timeout();
        let body = read_capped(response, 64 * 1024, idle)
            .await
            .unwrap_or_default();
        let upstream_err = ErrorEnvelope::parse(&body).and_then(|e| e.errors.into_iter().next());
        let default_code = if rest.starts_with("blobs/") {
            ErrorCode::BlobUnknown
        } else if rest.starts_with("manifests/") {
            ErrorCode::ManifestUnknown
        } else {
            ErrorCode::NameUnknown
        };
        match status {
            StatusCode::NOT_FOUND => {
                let (code, message) = match upstream_err {
                    Some(e)
                        if matches!(
                            e.code,
                            ErrorCode::NameUnknown
                                | ErrorCode::ManifestUnknown
                                | ErrorCode::BlobUnknown
                        ) =>
                    {
                        (e.code, e.message)
                    }
                    _ => (default_code, String::new()),
                };
                let message = if message.is_empty() {
                    format!("{} not found on {host}", route.repo)
                } else {
                    format!("{message} ({} on {host})", route.repo)
                };
                Error::Upstream {
                    status: 404,
                    code,
                    message,
                }
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let why = upstream_err
                    .map(|e| e.message)
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| status.to_string());
                Error::Upstream {
                    status: 403,
                    code: ErrorCode::Denied,
                    message: format!("upstream {host} refused access to {}: {why}", route.repo),
                }
            }
            s if s.is_client_error() && s != StatusCode::METHOD_NOT_ALLOWED => {
                let (code, message) = upstream_err
                    .map(|e| (e.code, e.message))
                    .unwrap_or((ErrorCode::Unknown, s.to_string()));
                Error::Upstream {
                    status: s.as_u16(),
                    code,
                    message: format!("upstream {host}: {message}"),
                }
            }
            s => Error::BadUpstream {
                host,
                reason: format!("unexpected status {s}"),
            },
        }
    }
}

impl Registry for PullThrough {
    async fn manifest(&self, req: ManifestRequest) -> Result<ManifestReply> {
        if let Some(g) = &self.guard {
            g.check_name(&req.route, &req.who).await?;
        }
        let reply = self
            .fetch_manifest(&req.route, &req.reference, &req.accept)
            .await?;
        if let Some(g) = &self.guard {
            self.judge(g, &req, &reply).await?;
        }
        Ok(reply)
    }

    async fn blob(&self, req: BlobRequest) -> Result<BlobReply> {
        if let Some(g) = &self.guard {
            g.check_name(&req.route, &req.who).await?;
            g.check_blob(&req.route, &req.digest, &req.who)?;
        }
        let rest = format!("blobs/{}", req.digest);
        if req.head {
            let response = self
                .get(&req.route, Method::HEAD, &rest, None, HeaderMap::new())
                .await?;
            return Ok(BlobReply {
                digest: req.digest,
                size: content_length(response.headers()),
                window: None,
                body: None,
                headers: passthrough_headers(response.headers()),
            });
        }
        // The whole blob is always fetched: its digest can only be checked over all of it, so a
        // range is cut out of the verified stream rather than asked of the upstream.
        let response = self.get_blob(&req.route, &req.digest).await?;
        let headers = passthrough_headers(response.headers());
        let size = content_length(response.headers());
        let window = match (req.range, size) {
            (Some(range), Some(size)) => {
                Some(range.resolve(size).ok_or(Error::RangeInvalid { size })?)
            }
            _ => None,
        };
        let mut checks: Vec<Box<dyn BlobCheck>> =
            vec![Box::new(DigestCheck::new(req.digest.clone(), size))];
        for f in &self.extra_checks {
            checks.extend(f.checks(&req));
        }
        if let Some(g) = &self.guard {
            if let Some(check) = g.layer_check(&req.route, &req.digest, &req.who) {
                checks.push(offloaded(&req.digest, check)?);
            }
        }
        let w = window.map_or(Window::ALL, |(start, end)| Window {
            start,
            end: end + 1,
        });
        let digest = req.digest.clone();
        let host = req.route.upstream.host.clone();
        let upstream_body = idle_body(response, self.client.settings().idle_timeout());
        let host_for_log = host.clone();
        let mut body = TailHold::new(upstream_body, checks, w).on_end(Box::new(move |outcome| {
            if let Err(veto) = outcome {
                tracing::warn!(%digest, upstream = %host_for_log, reason = %veto, "blob refused mid-stream: tail withheld, response aborted");
            }
        }));
        // Nothing is answered until the first chunk may go out. A blob refused before that (a small
        // layer judged whole, wrong bytes in the first chunks) gets a proper error with its reason
        // instead of a cut-off 200.
        let first = match body.next().await {
            Some(Ok(chunk)) => Some(chunk),
            None => None,
            Some(Err(e)) => return Err(refusal(&host, e)),
        };
        let body = futures_util::stream::iter(first.map(Ok)).chain(body);
        Ok(BlobReply {
            digest: req.digest,
            size,
            window,
            body: Some(Box::pin(body)),
            headers,
        })
    }

    async fn tags(&self, route: Route, page: Page, link_base: String) -> Result<JsonReply> {
        if let Some(g) = &self.guard {
            g.check_name(&route, &Who::default()).await?;
        }
        let query = page.query();
        let response = self
            .get(
                &route,
                Method::GET,
                "tags/list",
                query.as_deref(),
                HeaderMap::new(),
            )
            .await?;
        let mut headers = passthrough_headers(response.headers());
        // The upstream's Link names its own path; the client must be sent back to ours.
        let upstream_next = response
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link_query);
        let idle = self.client.settings().idle_timeout();
        let mut reply =
            json_reply(&route, response, HeaderMap::new(), "application/json", idle).await?;
        // Some upstreams (distribution 2.8) ignore `n` and `last`; the spec says at most `n`
        // tags after `last`, in lexical order, so the page is cut here when they did.
        let mut next = upstream_next;
        if let Some(cut) = page.apply(&reply.bytes) {
            reply.bytes = cut.body;
            next = next.or(cut.next);
        }
        if let Some(next) = next {
            if let Ok(v) = HeaderValue::from_str(&format!("<{link_base}?{next}>; rel=\"next\"")) {
                headers.insert(LINK, v);
            }
        }
        reply.headers = headers;
        Ok(reply)
    }

    async fn referrers(
        &self,
        route: Route,
        digest: Digest,
        query: Option<String>,
    ) -> Result<JsonReply> {
        if let Some(g) = &self.guard {
            g.check_name(&route, &Who::default()).await?;
        }
        let rest = format!("referrers/{digest}");
        let response = self
            .get(
                &route,
                Method::GET,
                &rest,
                query.as_deref(),
                HeaderMap::new(),
            )
            .await?;
        let mut headers = passthrough_headers(response.headers());
        if let Some(v) = response.headers().get("oci-filters-applied") {
            headers.insert(HeaderName::from_static("oci-filters-applied"), v.clone());
        }
        let idle = self.client.settings().idle_timeout();
        json_reply(&route, response, headers, media::OCI_INDEX, idle).await
    }
}

/// The error for a blob refused before its first byte went out: a policy block (403, with the
/// reason), or the upstream's fault (wrong bytes, cut body: 502).
fn refusal(host: &str, e: std::io::Error) -> Error {
    let reason = e.to_string();
    if reason.starts_with(crate::policy::guard::BLOCKED_PREFIX) {
        Error::from(crate::policy::guard::Blocked {
            message: reason,
            slug: "layer".into(),
            detail: serde_json::json!({}),
        })
    } else {
        Error::BadUpstream {
            host: host.to_string(),
            reason,
        }
    }
}

/// Runs a layer's inspection on its own thread, so the blob streams while it is judged.
fn offloaded(digest: &Digest, check: Box<dyn BlobCheck>) -> Result<Box<dyn BlobCheck>> {
    let name = format!("inspect-{}", &digest.hex()[..12.min(digest.hex().len())]);
    offload::Offloaded::new(name, check, offload::DEFAULT_CAPACITY)
        .map(|o| Box::new(o) as Box<dyn BlobCheck>)
        .map_err(|e| Error::Internal(format!("cannot start an inspector thread: {e}")))
}

/// The largest tag list or referrers index passed through.
const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;

async fn json_reply(
    route: &Route,
    response: reqwest::Response,
    headers: HeaderMap,
    default_type: &str,
    idle: Duration,
) -> Result<JsonReply> {
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(default_type)
        .to_string();
    let bytes = read_capped(response, MAX_JSON_BYTES, idle)
        .await
        .map_err(|e| Error::BadUpstream {
            host: route.upstream.host.clone(),
            reason: e,
        })?;
    Ok(JsonReply {
        content_type,
        bytes,
        headers,
    })
}

/// The query of a `Link: </v2/x/tags/list?n=2&last=b>; rel="next"` header.
fn next_link_query(link: &str) -> Option<String> {
    let target = link
        .split(';')
        .next()?
        .trim()
        .strip_prefix('<')?
        .strip_suffix('>')?;
    let query = target.split_once('?')?.1;
    // Only the pagination parameters go back to the client; nothing else of the upstream's URL.
    let kept: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "n" || k == "last")
        .map(|(k, v)| {
            format!(
                "{k}={}",
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The `Content-Length` header itself: reqwest's `content_length()` is the body's size hint, which
/// is 0 for any HEAD answer.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn passthrough_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in PASSTHROUGH_HEADERS {
        if let Some(v) = upstream.get(name) {
            out.insert(HeaderName::from_static(name), v.clone());
        }
    }
    out
}

/// Reads a whole body, refusing one longer than `cap` without buffering past it, or one that
/// stalls for `idle`.
async fn read_capped(
    response: reqwest::Response,
    cap: usize,
    idle: Duration,
) -> std::result::Result<Bytes, String> {
    let mut buf = BytesMut::new();
    let mut stream = idle_body(response, idle);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > cap {
            return Err(format!("body larger than {cap} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_queries_keep_only_pagination() {
        assert_eq!(
            next_link_query(r#"</v2/library/x/tags/list?last=b&n=2&evil=1>; rel="next""#)
                .as_deref(),
            Some("last=b&n=2")
        );
        assert_eq!(next_link_query("garbage"), None);
    }
}
