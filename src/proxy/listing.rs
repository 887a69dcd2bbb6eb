//! Tag lists and referrers, passed through from the upstream: paginated as the spec says (cut
//! here when the upstream ignores `n`/`last`), with `Link` pointing back at this proxy.

use super::{Error, JsonReply, Page, PullThrough, Result};
use crate::oci::{media, Digest};
use crate::upstream::status::{passthrough_headers, read_capped};
use crate::upstream::Route;
use http::header::{CONTENT_TYPE, LINK};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::time::Duration;

impl PullThrough {
    /// `tags/list`, with `n`/`last` passed on and applied when the upstream ignores them.
    pub(super) async fn list_tags(
        &self,
        route: Route,
        page: Page,
        link_base: String,
    ) -> Result<JsonReply> {
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

    /// `referrers/<digest>`, with `artifactType` passed on.
    pub(super) async fn list_referrers(
        &self,
        route: Route,
        digest: Digest,
        query: Option<String>,
    ) -> Result<JsonReply> {
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
