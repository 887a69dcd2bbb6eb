//! Thin handlers: parse the request into typed parts, call the registry, shape the answer.

use super::blocked::{self, ClientKind};
use super::error::ApiError;
use super::path::{self, ApiPath};
use super::AppState;
use crate::oci::{Digest, Reference};
use crate::policy::guard::Who;
use crate::proxy::{
    BlobReply, BlobRequest, ByteRange, Error, JsonReply, ManifestReply, ManifestRequest, Page,
    Registry,
};
use crate::upstream::Route;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

type Result<T> = std::result::Result<T, ApiError>;

/// `GET /v2/`: the API version check.
pub async fn version(method: Method) -> Result<Response> {
    if method != Method::GET && method != Method::HEAD {
        return Err(Error::Unsupported {
            method: method.to_string(),
        }
        .into());
    }
    Ok(([(CONTENT_TYPE, "application/json")], "{}").into_response())
}

/// Every `/v2/<name>/...` request.
pub async fn api<R: Registry>(
    State(state): State<Arc<AppState<R>>>,
    request: axum::extract::Request,
) -> Result<Response> {
    let (parts, _) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    // Present when served by `portcullis serve`; absent in router tests.
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if method != Method::GET && method != Method::HEAD {
        return Err(Error::Unsupported {
            method: method.to_string(),
        }
        .into());
    }
    let head = method == Method::HEAD;
    let rest = uri.path().strip_prefix("/v2/").unwrap_or("");
    let api_path = path::parse(rest).ok_or_else(|| Error::NotFound(uri.path().to_string()))?;
    let query = Query::parse(uri.query());
    let name = match &api_path {
        ApiPath::Manifest { name, .. }
        | ApiPath::Blob { name, .. }
        | ApiPath::Tags { name }
        | ApiPath::Referrers { name, .. } => *name,
    };
    let route = state
        .upstreams
        .route(name, query.ns.as_deref())
        .map_err(Error::from)?;
    let span = tracing::Span::current();
    span.record("upstream", route.upstream.host.as_str());
    span.record("repo", route.repo.as_str());
    let who = Who { client };
    let mut response = match api_path {
        ApiPath::Manifest { reference, .. } => {
            manifest(&state, route, reference, &headers, head, who).await?
        }
        ApiPath::Blob { digest, .. } => blob(&state, route, digest, &headers, head, who).await?,
        ApiPath::Tags { name } => {
            let link_base = format!("/v2/{name}/tags/list");
            json(
                state.registry.tags(route, query.page, link_base).await?,
                head,
            )
        }
        ApiPath::Referrers { digest, .. } => {
            let digest = parse_digest(digest)?;
            json(
                state
                    .registry
                    .referrers(route, digest, query.artifact_type)
                    .await?,
                head,
            )
        }
    };
    if let Some(ns) = query.ns.and_then(|ns| HeaderValue::from_str(&ns).ok()) {
        response.headers_mut().insert("oci-namespace", ns);
    }
    Ok(response)
}

async fn manifest<R: Registry>(
    state: &AppState<R>,
    route: Route,
    reference: &str,
    headers: &HeaderMap,
    head: bool,
    who: Who,
) -> Result<Response> {
    let reference: Reference =
        reference
            .parse()
            .map_err(|e: crate::oci::ReferenceError| match e {
                crate::oci::ReferenceError::Digest(d) => Error::DigestInvalid(d.to_string()),
                crate::oci::ReferenceError::Tag(t) => Error::ReferenceInvalid(t.to_string()),
            })?;
    tracing::Span::current().record("reference", tracing::field::display(&reference));
    // dockerd fetches by digest the synthetic "blocked" manifest its HEAD was given.
    if let Reference::Digest(d) = &reference {
        if let Some(bytes) = state.synthetic.get(d) {
            return Ok(blocked::synthetic_response(d, bytes, head));
        }
    }
    let accept = accept_set(headers);
    let request = ManifestRequest {
        route,
        reference: reference.clone(),
        accept,
        who,
    };
    match state.registry.manifest(request).await {
        Ok(reply) => Ok(manifest_response(reply, head)),
        Err(Error::Blocked(b)) => Ok(blocked::manifest_refusal(
            b,
            &reference,
            head,
            ClientKind::of(headers),
            &state.clients,
            &state.synthetic,
        )),
        Err(e) => Err(e.into()),
    }
}

fn manifest_response(reply: ManifestReply, head: bool) -> Response {
    let mut headers = reply.headers;
    headers.insert(CONTENT_TYPE, header_value(&reply.media_type));
    headers.insert(
        "docker-content-digest",
        header_value(&reply.digest.to_string()),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(reply.bytes.len()));
    let body = if head {
        Body::empty()
    } else {
        Body::from(reply.bytes)
    };
    (headers, body).into_response()
}

async fn blob<R: Registry>(
    state: &AppState<R>,
    route: Route,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
    who: Who,
) -> Result<Response> {
    let digest = parse_digest(digest)?;
    tracing::Span::current().record("digest", tracing::field::display(&digest));
    let range = headers
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(ByteRange::parse);
    let request = BlobRequest {
        route,
        digest,
        range,
        head,
        who,
    };
    match state.registry.blob(request).await {
        Ok(reply) => Ok(blob_response(reply)),
        Err(Error::Blocked(b)) => Ok(blocked::refusal(b, &state.clients)),
        Err(e) => Err(e.into()),
    }
}

fn blob_response(reply: BlobReply) -> Response {
    let mut headers = reply.headers;
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        "docker-content-digest",
        header_value(&reply.digest.to_string()),
    );
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let mut status = StatusCode::OK;
    match (reply.window, reply.size) {
        (Some((first, last)), Some(size)) => {
            status = StatusCode::PARTIAL_CONTENT;
            headers.insert(
                CONTENT_RANGE,
                header_value(&format!("bytes {first}-{last}/{size}")),
            );
            headers.insert(CONTENT_LENGTH, HeaderValue::from(last - first + 1));
        }
        (_, Some(size)) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        }
        _ => {}
    }
    let body = reply.body.map_or_else(Body::empty, Body::from_stream);
    (status, headers, body).into_response()
}

fn json(reply: JsonReply, head: bool) -> Response {
    let mut headers = reply.headers;
    headers.insert(CONTENT_TYPE, header_value(&reply.content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(reply.bytes.len()));
    let body = if head {
        Body::empty()
    } else {
        Body::from(reply.bytes)
    };
    (headers, body).into_response()
}

fn parse_digest(s: &str) -> std::result::Result<Digest, Error> {
    s.parse()
        .map_err(|e: crate::oci::DigestError| Error::DigestInvalid(e.to_string()))
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// Every type in every `Accept` header, without parameters, each once (order does not matter).
fn accept_set(headers: &HeaderMap) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for t in v.split(',') {
            let t = t.split(';').next().unwrap_or("").trim();
            if !t.is_empty() && !out.iter().any(|o| o == t) {
                out.push(t.to_string());
            }
        }
    }
    out
}

/// The query parameters the API uses.
#[derive(Default)]
struct Query {
    ns: Option<String>,
    /// `n` and `last`, for tag lists.
    page: Page,
    /// `artifactType`, re-encoded, for referrers.
    artifact_type: Option<String>,
}

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let mut q = Query::default();
        let mut art = url::form_urlencoded::Serializer::new(String::new());
        let mut has_art = false;
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "ns" if !v.is_empty() => q.ns = Some(v.into_owned()),
                "n" => q.page.n = v.parse().ok(),
                "last" => q.page.last = Some(v.into_owned()),
                "artifactType" => {
                    art.append_pair(&k, &v);
                    has_art = true;
                }
                _ => {}
            }
        }
        q.artifact_type = has_art.then(|| art.finish());
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_is_a_set_of_bare_types() {
        let mut h = HeaderMap::new();
        h.append(
            ACCEPT,
            HeaderValue::from_static("application/a, application/b;q=0.5"),
        );
        h.append(ACCEPT, HeaderValue::from_static("application/a"));
        h.append(ACCEPT, HeaderValue::from_static("*/*"));
        assert_eq!(
            accept_set(&h),
            vec!["application/a", "application/b", "*/*"]
        );
    }

    #[test]
    fn query_keeps_only_api_parameters() {
        let q = Query::parse(Some(
            "ns=docker.io&n=10&last=v1&evil=1&artifactType=application%2Fx",
        ));
        assert_eq!(q.ns.as_deref(), Some("docker.io"));
        assert_eq!(
            q.page,
            Page {
                n: Some(10),
                last: Some("v1".into())
            }
        );
        assert_eq!(
            q.artifact_type.as_deref(),
            Some("artifactType=application%2Fx")
        );
        assert!(Query::parse(None).ns.is_none());
    }
}
