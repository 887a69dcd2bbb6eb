//! A fake upstream registry, used ONLY to inject faults a real registry will not produce: wrong
//! bytes under a digest, truncated or stalled bodies, 5xx/429 answers, answers that never come,
//! redirects to where no registry should send anyone, endless token answers.
//! Everything else in the suite talks to a real `docker-registry` ([`super::Registry`]).
//!
//! It is a plain HTTP/1.1 server (hyper) on `127.0.0.1:0`, on a background thread with its own
//! runtime; dropping the [`Fake`] stops it and cancels every connection. It counts the TCP
//! connections it accepts and every request it answers, so a test can assert that portcullis
//! never asked it anything.
//!
//! Content is keyed by request path (the query is ignored): [`Fake::manifest`], [`Fake::blob`],
//! [`Fake::blob_as`] (any bytes under any digest), [`Fake::image`] (a whole image from an OCI
//! layout). A [`Fault`] set on a path changes how that path is answered.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Body = UnsyncBoxBody<Bytes, io::Error>;

/// How a path is answered instead of (or on the way to) its content.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer `status` (an OCI error body, `Retry-After` when given) to the first `times` requests
    /// of the path after the fault was set, then serve it normally; `times: None` answers
    /// `status` for ever.
    Status {
        status: u16,
        times: Option<u32>,
        retry_after: Option<String>,
    },
    /// Announce the full `Content-Length`, send only the first `send` bytes, then drop the
    /// connection.
    Truncate { send: usize },
    /// Send the first `after` bytes, go silent for `stall`, then send the rest.
    Stall { after: usize, stall: Duration },
    /// Send the body in `chunk`-byte pieces with `delay` before each piece after the first.
    Pace { chunk: usize, delay: Duration },
    /// Send the body without `Content-Length` (chunked transfer encoding).
    Chunked,
    /// Accept the request and never answer it.
    Hang,
    /// Answer normally, but only after `delay` (a slow first byte).
    Delay(Duration),
    /// Answer `status` (a 3xx) with `Location: location`, for every request.
    Redirect { status: u16, location: String },
    /// Answer 401 with `WWW-Authenticate: Bearer realm="<realm>",service="fake"`.
    Challenge { realm: String },
    /// Answer `status` with a JSON content type and a body of `len` bytes made as it is sent
    /// (chunked, no `Content-Length`), so a huge body costs the fake no memory.
    Endless { status: u16, len: u64 },
}

impl Fault {
    /// `status` for the first `times` requests, then the content.
    pub fn status_times(status: u16, times: u32) -> Fault {
        Fault::Status {
            status,
            times: Some(times),
            retry_after: None,
        }
    }

    /// `status` for every request.
    pub fn status_always(status: u16) -> Fault {
        Fault::Status {
            status,
            times: None,
            retry_after: None,
        }
    }

    /// 503 with `Retry-After: retry_after` for every request (maintenance).
    pub fn unavailable(retry_after: &str) -> Fault {
        Fault::Status {
            status: 503,
            times: None,
            retry_after: Some(retry_after.to_string()),
        }
    }

    /// 429 with `Retry-After: retry_after` for every request.
    pub fn rate_limited(retry_after: &str) -> Fault {
        Fault::Status {
            status: 429,
            times: None,
            retry_after: Some(retry_after.to_string()),
        }
    }
}

#[derive(Clone)]
struct Entry {
    content_type: String,
    bytes: Bytes,
    headers: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    content: Mutex<HashMap<String, Entry>>,
    /// Each fault with the path's request count when it was set.
    faults: Mutex<HashMap<String, (Fault, u32)>>,
    /// Requests per path.
    counts: Mutex<HashMap<String, u32>>,
    /// Every request as `METHOD /path?query`, in order.
    log: Mutex<Vec<String>>,
    connections: AtomicUsize,
}

/// The fake upstream. See the module docs.
pub struct Fake {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fake {
    pub fn start() -> Fake {
        Fake::start_on("127.0.0.1")
    }

    /// A fake on another loopback address (`127.0.0.2`, say), as a host of its own.
    pub fn start_on(ip: &str) -> Fake {
        let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fake-upstream-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                st.connections.fetch_add(1, Ordering::SeqCst);
                                let st = st.clone();
                                tokio::spawn(async move {
                                    let service = hyper::service::service_fn(move |req| {
                                        let st = st.clone();
                                        async move { Ok::<_, Infallible>(handle(&st, req).await) }
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
                // Dropping the runtime cancels every connection still open (stalls, hangs).
            })
            .unwrap();
        Fake {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>`, as a registry host name.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Serves `bytes` at `path` (any path) with `content_type`.
    pub fn put(&self, path: &str, content_type: &str, bytes: impl Into<Bytes>) {
        let entry = Entry {
            content_type: content_type.to_string(),
            bytes: bytes.into(),
            headers: Vec::new(),
        };
        self.state
            .content
            .lock()
            .unwrap()
            .insert(path.to_string(), entry);
    }

    /// Adds (or replaces) a response header of the content at `path`.
    pub fn header(&self, path: &str, name: &str, value: &str) {
        let mut content = self.state.content.lock().unwrap();
        let entry = content
            .get_mut(path)
            .expect("header() on a path with content");
        entry.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        entry.headers.push((name.to_string(), value.to_string()));
    }

    /// Serves a manifest at `/v2/<repo>/manifests/<reference>` with its `Docker-Content-Digest`.
    pub fn manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let path = format!("/v2/{repo}/manifests/{reference}");
        self.put(&path, media_type, bytes.to_vec());
        self.header(&path, "Docker-Content-Digest", &super::sha256(bytes));
    }

    /// Serves `bytes` as a blob of `repo` under their own digest, which is returned.
    pub fn blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = super::sha256(bytes);
        self.blob_as(repo, &digest, bytes);
        digest
    }

    /// Serves `bytes` as the blob `digest` of `repo`, whatever they hash to.
    pub fn blob_as(&self, repo: &str, digest: &str, bytes: &[u8]) {
        let path = format!("/v2/{repo}/blobs/{digest}");
        self.put(&path, "application/octet-stream", bytes.to_vec());
        self.header(&path, "Docker-Content-Digest", digest);
    }

    /// Serves an image written into an OCI layout (by `Image::write`) as `repo:tag` and by digest,
    /// with its config and layers.
    pub fn image(&self, repo: &str, tag: &str, layout: &Path, image: &super::image::Written) {
        let media = "application/vnd.oci.image.manifest.v1+json";
        self.manifest(repo, tag, media, &image.manifest);
        self.manifest(repo, &image.manifest_digest, media, &image.manifest);
        for digest in std::iter::once(&image.config_digest).chain(&image.layer_digests) {
            let bytes = std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
            self.blob_as(repo, digest, &bytes);
        }
    }

    /// Sets how `path` is answered from now on.
    pub fn fault(&self, path: &str, fault: Fault) {
        let base = self.requests(path);
        self.state
            .faults
            .lock()
            .unwrap()
            .insert(path.to_string(), (fault, base));
    }

    /// Answers `path` normally again.
    pub fn clear_fault(&self, path: &str) {
        self.state.faults.lock().unwrap().remove(path);
    }

    /// Requests received for `path`.
    pub fn requests(&self, path: &str) -> u32 {
        self.state
            .counts
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Every request received, as `METHOD /path?query`.
    pub fn request_log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn total_requests(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn oci_error(status: u16, code: &str, retry_after: Option<&str>) -> Response<Body> {
    let body =
        format!(r#"{{"errors":[{{"code":"{code}","message":"fake upstream says {status}"}}]}}"#);
    let mut r = Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header("Content-Length", body.len());
    if let Some(ra) = retry_after {
        r = r.header("Retry-After", ra);
    }
    r.body(full(body)).unwrap()
}

/// A body made of `pieces`, each sent after its delay; `fail` ends it with an error (the
/// connection is dropped) after a pause that lets hyper flush what was sent before.
fn timed_body(pieces: Vec<(Duration, Bytes)>, fail: bool) -> Body {
    let mut items: Vec<(Duration, io::Result<Frame<Bytes>>)> = pieces
        .into_iter()
        .map(|(d, b)| (d, Ok(Frame::data(b))))
        .collect();
    if fail {
        items.push((
            Duration::from_millis(200),
            Err(io::Error::other("fake upstream cut the body")),
        ));
    }
    let stream = futures_util::stream::iter(items).then(|(delay, item)| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        item
    });
    BodyExt::boxed_unsync(StreamBody::new(stream))
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let head = req.method() == Method::HEAD;
    state.log.lock().unwrap().push(format!(
        "{} {}",
        req.method(),
        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("")
    ));
    let n = {
        let mut counts = state.counts.lock().unwrap();
        let c = counts.entry(path.clone()).or_insert(0);
        *c += 1;
        *c
    };
    let (fault, base) = match state.faults.lock().unwrap().get(&path) {
        Some((f, base)) => (Some(f.clone()), *base),
        None => (None, 0),
    };
    if let Some(Fault::Status {
        status,
        times,
        retry_after,
    }) = &fault
    {
        if times.is_none_or(|k| n - base <= k) {
            let code = if *status == 429 {
                "TOOMANYREQUESTS"
            } else {
                "UNAVAILABLE"
            };
            return oci_error(*status, code, retry_after.as_deref());
        }
    }
    match fault {
        Some(Fault::Hang) => std::future::pending::<()>().await,
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Redirect { status, location }) => {
            return Response::builder()
                .status(status)
                .header("Location", location)
                .header("Content-Length", 0)
                .body(full(Bytes::new()))
                .unwrap();
        }
        Some(Fault::Challenge { realm }) => {
            let mut r = oci_error(401, "UNAUTHORIZED", None);
            r.headers_mut().insert(
                "WWW-Authenticate",
                format!("Bearer realm=\"{realm}\",service=\"fake\"")
                    .parse()
                    .unwrap(),
            );
            return r;
        }
        Some(Fault::Endless { status, len }) => {
            static CHUNK: [u8; 64 * 1024] = [b' '; 64 * 1024];
            let chunks = len.div_ceil(CHUNK.len() as u64);
            let stream = futures_util::stream::iter(0..chunks).map(move |i| {
                let n = (len - i * CHUNK.len() as u64).min(CHUNK.len() as u64) as usize;
                Ok::<_, io::Error>(Frame::data(Bytes::from_static(&CHUNK[..n])))
            });
            return Response::builder()
                .status(status)
                .header("Content-Type", "application/json")
                .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
                .unwrap();
        }
        _ => {}
    }
    if path == "/v2/" || path == "/v2" {
        return Response::builder()
            .header("Content-Type", "application/json")
            .body(full("{}"))
            .unwrap();
    }
    let Some(entry) = state.content.lock().unwrap().get(&path).cloned() else {
        let code = if path.contains("/blobs/") {
            "BLOB_UNKNOWN"
        } else {
            "MANIFEST_UNKNOWN"
        };
        return oci_error(404, code, None);
    };
    let len = entry.bytes.len();
    let mut r = Response::builder().header("Content-Type", &entry.content_type);
    for (n, v) in &entry.headers {
        r = r.header(n, v);
    }
    if !matches!(fault, Some(Fault::Chunked)) {
        r = r.header("Content-Length", len);
    }
    if head {
        return r
            .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
            .unwrap();
    }
    let bytes = entry.bytes;
    let body = match fault {
        Some(Fault::Truncate { send }) => {
            timed_body(vec![(Duration::ZERO, bytes.slice(..send.min(len)))], true)
        }
        Some(Fault::Stall { after, stall }) => {
            let at = after.min(len);
            timed_body(
                vec![
                    (Duration::ZERO, bytes.slice(..at)),
                    (stall, bytes.slice(at..)),
                ],
                false,
            )
        }
        Some(Fault::Pace { chunk, delay }) => {
            let pieces = (0..len)
                .step_by(chunk.max(1))
                .map(|i| {
                    (
                        if i == 0 { Duration::ZERO } else { delay },
                        bytes.slice(i..(i + chunk).min(len)),
                    )
                })
                .collect();
            timed_body(pieces, false)
        }
        Some(Fault::Chunked) => {
            let pieces = (0..len)
                .step_by(16 * 1024)
                .map(|i| (Duration::ZERO, bytes.slice(i..(i + 16 * 1024).min(len))))
                .collect();
            timed_body(pieces, false)
        }
        _ => full(bytes),
    };
    r.status(StatusCode::OK).body(body).unwrap()
}

/// How a raw response body ended.
#[derive(Debug)]
pub enum Ended {
    /// All `Content-Length` bytes arrived.
    Complete,
    /// The connection closed before `Content-Length` bytes arrived.
    Eof,
    /// A read failed (reset, timeout) before `Content-Length` bytes arrived.
    Error(io::Error),
}

/// A response read off a raw socket, so that a body cut short is seen as such.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub content_length: Option<usize>,
    pub body: Vec<u8>,
    pub ended: Ended,
    /// From sending the request to the end of the body.
    pub elapsed: Duration,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` over a fresh connection (`Connection: close`), reading the body up to its
/// `Content-Length` or until the connection ends. Reads time out after `timeout`.
pub fn raw_get(addr: SocketAddr, path: &str, timeout: Duration) -> RawResponse {
    raw_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        timeout,
    )
}

/// Sends `request` verbatim and reads the answer as [`raw_get`] does.
pub fn raw_request(addr: SocketAddr, request: &str, timeout: Duration) -> RawResponse {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).expect("reading the response head");
        assert!(
            n > 0,
            "connection closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let content_length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok());
    let mut body = buf[head_end + 4..].to_vec();
    let ended = loop {
        if content_length.is_some_and(|cl| body.len() >= cl) {
            break Ended::Complete;
        }
        match s.read(&mut chunk) {
            Ok(0) if content_length.is_none() => break Ended::Complete,
            Ok(0) => break Ended::Eof,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) => break Ended::Error(e),
        }
    };
    RawResponse {
        status,
        headers,
        content_length,
        body,
        ended,
        elapsed: start.elapsed(),
    }
}
