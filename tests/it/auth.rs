//! Upstream authentication end to end. A token issuer written here signs ES256 JWTs (with an `x5c`
//! header) that the real docker-registry accepts with its `auth: token:` config; portcullis pulls
//! through it anonymously and with configured credentials, caches tokens per scope, keeps secrets
//! out of its log, drops `Authorization` when a blob redirect leaves the upstream, and asks no
//! token realm on an unrelated internal host unless it is listed.

use crate::common::image::Written;
use crate::common::*;
use axum::extract::{RawQuery, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The registry's `service` (the tokens' audience) and the issuer it trusts.
const SERVICE: &str = "registry.test";
const ISSUER: &str = "portcullis-it-issuer";
/// The name portcullis knows the upstream by (its default upstream in these tests).
const UPSTREAM: &str = "upstream.test";
/// May pull everything.
const READER: &str = "reader";
const READER_PASSWORD: &str = "rd-pw-4f2c9e81-must-not-be-logged";
/// May push everything; only the fixture setup uses it.
const PUSHER: &str = "pusher";
const PUSHER_PASSWORD: &str = "push-pw-77aa1d";
/// Anyone may pull `public/*`; `private/*` needs a user.
const PUBLIC: &str = "public/app";
const PUBLIC_OTHER: &str = "public/other";
const PRIVATE: &str = "private/app";
const PASSWORD_ENV: &str = "PORTCULLIS_IT_UPSTREAM_PASSWORD";

fn scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&body).unwrap(),
    )
        .into_response()
}

/// An axum app on `ip:0`, served by a background thread with its own runtime, stopped on drop.
struct BgServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BgServer {
    fn start(ip: &str, app: Router) -> BgServer {
        let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serve = std::future::IntoFuture::into_future(axum::serve(listener, app));
                tokio::select! {
                    r = serve => r.unwrap(),
                    _ = stopped => {}
                }
            });
            // Dropping the runtime here ends the connection tasks still open.
        });
        BgServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for BgServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The token issuer

/// One request the token issuer received.
#[derive(Clone, Debug)]
struct TokenRequest {
    authorization: Option<String>,
    service: Option<String>,
    scopes: Vec<String>,
}

struct IssuerState {
    key: ring::signature::EcdsaKeyPair,
    cert_der: Vec<u8>,
    requests: Mutex<Vec<TokenRequest>>,
    issued: Mutex<Vec<String>>,
    jti: AtomicU64,
}

/// A token service in the style of Docker Hub's: anonymous requests get a token whatever they ask,
/// holding only the access they may have (pull of `public/*`); Basic with a known user gets that
/// user's access; Basic with anything else is refused with 401.
struct TokenIssuer {
    state: Arc<IssuerState>,
    cert: PathBuf,
    _dir: tempfile::TempDir,
    server: BgServer,
}

impl TokenIssuer {
    fn start(ip: &str) -> TokenIssuer {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap(); // ECDSA P-256, SHA-256
        let mut params =
            rcgen::CertificateParams::new(vec!["token-issuer.test".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portcullis test token issuer");
        let cert = params.self_signed(&key).unwrap();
        let cert_path = dir.path().join("issuer.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        let signing = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let state = Arc::new(IssuerState {
            key: signing,
            cert_der: cert.der().to_vec(),
            requests: Mutex::default(),
            issued: Mutex::default(),
            jti: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/token", axum::routing::get(issue))
            .with_state(state.clone());
        let server = BgServer::start(ip, app);
        TokenIssuer {
            state,
            cert: cert_path,
            _dir: dir,
            server,
        }
    }

    fn realm(&self) -> String {
        format!("http://{}/token", self.server.addr)
    }

    /// The `auth:` section that makes a docker-registry demand this issuer's tokens.
    fn registry_yaml(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm(),
            self.cert.display()
        )
    }

    fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    /// Every token handed out so far.
    fn issued(&self) -> Vec<String> {
        self.state.issued.lock().unwrap().clone()
    }
}

impl IssuerState {
    /// A JWT as distribution 2.8 verifies it: ES256 over `header.claims`, the signing cert in `x5c`
    /// (checked against `rootcertbundle`), `iss`/`aud` matching its config, and `access`.
    fn sign(&self, subject: &str, access: Vec<Value>) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header =
            json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(&self.cert_der)]});
        let claims = json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("it-{}", self.jti.fetch_add(1, Ordering::Relaxed)),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        );
        let sig = self
            .key
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// The user a Basic `Authorization` names, if its password is right.
fn basic_user(authorization: &str) -> Option<&'static str> {
    let decoded = STANDARD
        .decode(authorization.strip_prefix("Basic ")?)
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    [(READER, READER_PASSWORD), (PUSHER, PUSHER_PASSWORD)]
        .into_iter()
        .find(|(u, p)| *u == user && *p == password)
        .map(|(u, _)| u)
}

/// The access `user` gets for one requested scope (`repository:<name>:<actions>`).
fn grant(user: Option<&str>, scope: &str) -> Option<Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if kind != "repository" {
        return None;
    }
    let allowed = |action: &str| match user {
        Some(PUSHER) => true,
        Some(READER) => action == "pull",
        _ => action == "pull" && name.starts_with("public/"),
    };
    let actions: Vec<&str> = actions.split(',').filter(|a| allowed(a)).collect();
    Some(json!({"type": "repository", "name": name, "actions": actions}))
}

async fn issue(
    State(st): State<Arc<IssuerState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let mut req = TokenRequest {
        authorization: headers
            .get(AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        service: None,
        scopes: Vec::new(),
    };
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "scope" => req.scopes.push(v.into_owned()),
            "service" => req.service = Some(v.into_owned()),
            _ => {}
        }
    }
    st.requests.lock().unwrap().push(req.clone());
    let user = match req.authorization.as_deref() {
        None => None,
        Some(a) => match basic_user(a) {
            Some(u) => Some(u),
            None => {
                return json_response(
                    StatusCode::UNAUTHORIZED,
                    json!({"details": "incorrect username or password"}),
                )
            }
        },
    };
    let access: Vec<Value> = req.scopes.iter().filter_map(|s| grant(user, s)).collect();
    let token = st.sign(user.unwrap_or(""), access);
    st.issued.lock().unwrap().push(token.clone());
    json_response(
        StatusCode::OK,
        json!({"token": token, "access_token": token, "expires_in": 300}),
    )
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A docker-registry that demands the issuer's tokens, with one image pushed as `public/app`,
/// `public/other` and `private/app` (all `:v1`).
struct TokenUpstream {
    issuer: TokenIssuer,
    registry: Registry,
    layout: tempfile::TempDir,
    image: Written,
}

fn fixture_image() -> Image {
    Image::new()
        .layer(Layer::new(Compression::Gzip).file("etc/os-release", "ID=auth-fixture\n"))
        .layer(Layer::new(Compression::Gzip).random_file("opt/data.bin", 200_000, 7))
}

/// The issuer listens on `issuer_ip` (the registry always on 127.0.0.1).
fn token_upstream(issuer_ip: &str) -> TokenUpstream {
    let issuer = TokenIssuer::start(issuer_ip);
    let registry = Registry::start_with(&issuer.registry_yaml());
    let layout = tempfile::tempdir().unwrap();
    let image = fixture_image().write(layout.path(), Some("v1"));
    for repo in [PUBLIC, PUBLIC_OTHER, PRIVATE] {
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            &format!("{PUSHER}:{PUSHER_PASSWORD}"),
            &format!("oci:{}:v1", layout.path().display()),
            &format!("docker://{}/{repo}:v1", registry.addr),
        ])
        .unwrap_or_else(|e| panic!("push {repo}: {e}\nregistry log:\n{}", registry.log_text()));
    }
    issuer.clear();
    TokenUpstream {
        issuer,
        registry,
        layout,
        image,
    }
}

/// How portcullis gets the upstream's password.
#[derive(Clone, Copy)]
enum Creds<'a> {
    Anonymous,
    Env(&'a str),
    File(&'a str),
}

/// portcullis with one upstream, `UPSTREAM` at `url` (the default), configured by a TOML file.
/// The second value holds the config (and password file) while portcullis runs.
fn start_proxy(url: &str, creds: Creds, auth_hosts: &[&str]) -> (Portcullis, tempfile::TempDir) {
    start_proxy_args(url, creds, auth_hosts, &[])
}

/// `start_proxy` with more `portcullis serve` arguments.
fn start_proxy_args(
    url: &str,
    creds: Creds,
    auth_hosts: &[&str],
    args: &[&str],
) -> (Portcullis, tempfile::TempDir) {
    start_proxy_full(url, creds, auth_hosts, &[], args)
}

/// `start_proxy_args` with `redirect_hosts`.
fn start_proxy_full(
    url: &str,
    creds: Creds,
    auth_hosts: &[&str],
    redirect_hosts: &[&str],
    args: &[&str],
) -> (Portcullis, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = format!(
        "[upstream]\ndefault = \"{UPSTREAM}\"\n\n[upstreams.\"{UPSTREAM}\"]\nurl = \"{url}\"\n"
    );
    let mut env = Vec::new();
    match creds {
        Creds::Anonymous => {}
        Creds::Env(password) => {
            toml += &format!("username = \"{READER}\"\npassword_env = \"{PASSWORD_ENV}\"\n");
            env.push((PASSWORD_ENV, password));
        }
        Creds::File(password) => {
            let file = dir.path().join("upstream-password");
            std::fs::write(&file, format!("{password}\n")).unwrap();
            toml += &format!(
                "username = \"{READER}\"\npassword_file = \"{}\"\n",
                file.display()
            );
        }
    }
    if !auth_hosts.is_empty() {
        toml += &format!("auth_hosts = {auth_hosts:?}\n");
    }
    if !redirect_hosts.is_empty() {
        toml += &format!("redirect_hosts = {redirect_hosts:?}\n");
    }
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, toml).unwrap();
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    let p = Portcullis::start_env(&all, &env);
    (p, dir)
}

/// portcullis as the reader, without the cache: every request reaches the upstream, so each one
/// needs its token.
fn uncached_reader_proxy(up: &TokenUpstream) -> (Portcullis, tempfile::TempDir) {
    start_proxy_args(
        &up.registry.url(),
        Creds::Env(READER_PASSWORD),
        &[],
        &["--no-cache"],
    )
}

/// skopeo copies `repo:v1` from portcullis into an OCI layout.
fn pull(p: &Portcullis, repo: &str) -> Result<tempfile::TempDir, String> {
    let dest = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--preserve-digests",
        &format!("docker://{}/{repo}:v1", p.addr),
        &format!("oci:{}:out", dest.path().display()),
    ])
    .map(|_| dest)
}

/// The pulled layout holds the image's manifest, config and layers, byte for byte.
fn assert_pulled(source: &Path, pulled: &Path, image: &Written) {
    let src = layout_blobs(source);
    let got = layout_blobs(pulled);
    for d in std::iter::once(&image.manifest_digest)
        .chain(std::iter::once(&image.config_digest))
        .chain(&image.layer_digests)
    {
        assert_eq!(got.get(d), src.get(d), "blob {d}");
        assert!(got.contains_key(d), "blob {d} missing from the pull");
    }
}

/// A manifest GET through portcullis: its status and error envelope (if any).
fn get_manifest(p: &Portcullis, repo: &str) -> (u16, Value) {
    let r = http()
        .get(format!("{}/v2/{repo}/manifests/v1", p.url()))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Neither the password, nor its Basic encoding, nor any token issued appears in portcullis' log.
fn assert_log_keeps_secrets(p: &Portcullis, tokens: &[String]) {
    let log = p.log_text();
    assert!(!log.is_empty());
    let encoded = STANDARD.encode(format!("{READER}:{READER_PASSWORD}"));
    assert!(
        !log.contains(READER_PASSWORD),
        "password in the log:\n{log}"
    );
    assert!(
        !log.contains(&encoded),
        "Basic credentials in the log:\n{log}"
    );
    for t in tokens {
        // The signature alone is enough to tell a token apart.
        let sig = t.rsplit('.').next().unwrap();
        assert!(!log.contains(sig), "a bearer token in the log:\n{log}");
    }
}

// ---------------------------------------------------------------------------------------------
// Token flow against the real registry

#[test]
fn anonymous_pull_of_a_public_repo_asks_the_realm_without_credentials() {
    let up = token_upstream("127.0.0.1");
    // The upstream really demands a token.
    let r = http()
        .get(format!("{}/v2/{PUBLIC}/manifests/v1", up.registry.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let (p, _conf) = start_proxy(&up.registry.url(), Creds::Anonymous, &[]);
    let out =
        pull(&p, PUBLIC).unwrap_or_else(|e| panic!("pull: {e}\nportcullis log:\n{}", p.log_text()));
    assert_pulled(up.layout.path(), out.path(), &up.image);
    let reqs = up.issuer.requests();
    assert!(!reqs.is_empty(), "portcullis never asked the token service");
    for r in &reqs {
        assert_eq!(r.scopes, [scope(PUBLIC)], "{r:?}");
        assert_eq!(r.service.as_deref(), Some(SERVICE), "{r:?}");
        assert_eq!(r.authorization, None, "{r:?}");
    }
    assert_log_keeps_secrets(&p, &up.issuer.issued());
}

/// A pull of the private repository with the reader's password configured one way or another.
fn private_pull_sends_basic_to_the_realm(creds: Creds) {
    let up = token_upstream("127.0.0.1");
    let (p, _conf) = start_proxy(&up.registry.url(), creds, &[]);
    let out = pull(&p, PRIVATE)
        .unwrap_or_else(|e| panic!("pull: {e}\nportcullis log:\n{}", p.log_text()));
    assert_pulled(up.layout.path(), out.path(), &up.image);
    let reqs = up.issuer.requests();
    assert!(!reqs.is_empty(), "portcullis never asked the token service");
    let expected = basic(READER, READER_PASSWORD);
    for r in &reqs {
        assert_eq!(r.scopes, [scope(PRIVATE)], "{r:?}");
        assert_eq!(r.authorization.as_deref(), Some(expected.as_str()), "{r:?}");
    }
    assert_log_keeps_secrets(&p, &up.issuer.issued());
}

#[test]
fn private_pull_with_password_env_sends_basic_to_the_realm() {
    private_pull_sends_basic_to_the_realm(Creds::Env(READER_PASSWORD));
}

#[test]
fn private_pull_with_password_file_sends_basic_to_the_realm() {
    private_pull_sends_basic_to_the_realm(Creds::File(READER_PASSWORD));
}

#[test]
fn private_pull_without_credentials_is_denied_with_the_upstreams_message() {
    let up = token_upstream("127.0.0.1");
    let (p, _conf) = start_proxy(&up.registry.url(), Creds::Anonymous, &[]);
    let (status, body) = get_manifest(&p, PRIVATE);
    assert_eq!(status, 403, "{body}");
    let e = &body["errors"][0];
    assert_eq!(e["code"], "DENIED", "{body}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(PRIVATE) && message.contains(UPSTREAM),
        "{message}"
    );
    // distribution's own words for a token without the access.
    assert!(message.contains("authentication required"), "{message}");
    assert_eq!(e["detail"]["source"], "upstream", "{body}");
    assert_eq!(e["detail"]["retryable"], false, "{body}");
    let err = pull(&p, PRIVATE).expect_err("a private pull without credentials must fail");
    assert!(
        err.contains("authentication required"),
        "skopeo said: {err}"
    );
    // The public repository still pulls, and every token request was anonymous.
    pull(&p, PUBLIC).unwrap();
    let reqs = up.issuer.requests();
    assert!(reqs.iter().any(|r| r.scopes == [scope(PRIVATE)]));
    assert!(reqs.iter().all(|r| r.authorization.is_none()), "{reqs:?}");
}

#[test]
fn private_pull_with_a_wrong_password_is_denied() {
    let up = token_upstream("127.0.0.1");
    let wrong = "not-the-password-31c7";
    let (p, _conf) = start_proxy(&up.registry.url(), Creds::Env(wrong), &[]);
    let (status, body) = get_manifest(&p, PRIVATE);
    let reqs = up.issuer.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(r.authorization, Some(basic(READER, wrong)), "{r:?}");
    }
    assert_eq!(status, 403, "{body}");
    let e = &body["errors"][0];
    assert_eq!(e["code"], "DENIED", "{body}");
    assert_eq!(e["detail"]["retryable"], false, "{body}");
    // The token service's own reason reaches the client.
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("incorrect username or password"),
        "{message}"
    );
    let err = pull(&p, PRIVATE).expect_err("a private pull with a wrong password must fail");
    assert!(
        err.contains("incorrect username or password"),
        "skopeo said: {err}"
    );
    assert!(!p.log_text().contains(wrong), "password in the log");
}

/// Concurrent first requests for one repository make one token request: the first to need the
/// token fetches it, the others wait for it. (Manifests by tag: blob requests are already
/// serialised per digest by the shared fetch.)
#[test]
fn concurrent_first_requests_share_one_token_request() {
    let up = token_upstream("127.0.0.1");
    let (p, _conf) = uncached_reader_proxy(&up);
    let url = format!("{}/v2/{PRIVATE}/manifests/v1", p.url());
    concurrently(8, || {
        let r = http()
            .get(&url)
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(sha256(&r.bytes().unwrap()), up.image.manifest_digest);
    });
    let reqs = up.issuer.requests();
    let n = reqs.iter().filter(|r| r.scopes == [scope(PRIVATE)]).count();
    assert_eq!(n, 1, "token requests for {PRIVATE}: {reqs:?}");
}

#[test]
fn tokens_are_fetched_once_per_scope_and_reused() {
    let up = token_upstream("127.0.0.1");
    let (p, _conf) = uncached_reader_proxy(&up);
    for repo in [PUBLIC, PRIVATE, PUBLIC_OTHER] {
        for _ in 0..2 {
            let out = pull(&p, repo).unwrap_or_else(|e| panic!("pull {repo}: {e}"));
            assert_pulled(up.layout.path(), out.path(), &up.image);
        }
    }
    // Many more blob requests, from several threads at once.
    let blobs: Vec<&String> = std::iter::once(&up.image.config_digest)
        .chain(&up.image.layer_digests)
        .collect();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let c = http();
                for _ in 0..3 {
                    for repo in [PUBLIC, PRIVATE, PUBLIC_OTHER] {
                        for d in &blobs {
                            let url = format!("{}/v2/{repo}/blobs/{d}", p.url());
                            assert_eq!(c.head(&url).send().unwrap().status(), 200);
                            let r = c.get(&url).send().unwrap();
                            assert_eq!(r.status(), 200);
                            assert_eq!(sha256(&r.bytes().unwrap()), **d);
                        }
                    }
                }
            });
        }
    });
    let reqs = up.issuer.requests();
    for repo in [PUBLIC, PRIVATE, PUBLIC_OTHER] {
        let n = reqs.iter().filter(|r| r.scopes == [scope(repo)]).count();
        assert_eq!(n, 1, "token requests for {repo}: {reqs:?}");
    }
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    // Those requests did reach the upstream (the cache is off), each with a token: only
    // the very first one was answered with a challenge.
    let log = up.registry.log_text();
    let ours: Vec<&str> = log.lines().filter(|l| l.contains("portcullis/")).collect();
    let blob_gets = ours
        .iter()
        .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/") && l.contains("\" 200 "))
        .count();
    assert!(
        blob_gets >= 3 * 2 * 3 + 4 * 3 * 3 * 3,
        "{blob_gets} blob GETs upstream"
    );
    let challenged = ours.iter().filter(|l| l.contains("\" 401 ")).count();
    assert_eq!(challenged, 1, "{ours:#?}");
    assert_log_keeps_secrets(&p, &up.issuer.issued());
}

// ---------------------------------------------------------------------------------------------
// Blob redirects

/// One request a fake server received: method, path and query, headers.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn seen(method: Method, uri: &Uri, headers: &HeaderMap) -> Seen {
    Seen {
        method,
        uri: uri.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    }
}

const REDIRECT_REPO: &str = "team/app";

/// A registry that wants Basic, serves `REDIRECT_REPO:v1`, and sends every blob to `cdn`.
struct FakeUpstream {
    manifest: Vec<u8>,
    manifest_digest: String,
    blobs: BTreeMap<String, Vec<u8>>,
    cdn: SocketAddr,
    seen: Mutex<Vec<Seen>>,
}

async fn fake_upstream(
    State(st): State<Arc<FakeUpstream>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    st.seen.lock().unwrap().push(seen(method, &uri, &headers));
    let authorized = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
        == Some(&basic(READER, READER_PASSWORD));
    if !authorized {
        let mut r = json_response(
            StatusCode::UNAUTHORIZED,
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}),
        );
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            "Basic realm=\"fake upstream\"".parse().unwrap(),
        );
        return r;
    }
    let not_found = || {
        json_response(
            StatusCode::NOT_FOUND,
            json!({"errors": [{"code": "NOT_FOUND", "message": "no"}]}),
        )
    };
    let Some(rest) = uri.path().strip_prefix(&format!("/v2/{REDIRECT_REPO}/")) else {
        return not_found();
    };
    if let Some(reference) = rest.strip_prefix("manifests/") {
        if reference != "v1" && reference != st.manifest_digest {
            return not_found();
        }
        return (
            [
                (CONTENT_TYPE, "application/vnd.oci.image.manifest.v1+json"),
                (
                    axum::http::HeaderName::from_static("docker-content-digest"),
                    st.manifest_digest.as_str(),
                ),
            ],
            st.manifest.clone(),
        )
            .into_response();
    }
    match rest.strip_prefix("blobs/") {
        Some(d) if st.blobs.contains_key(d) => {
            // Like a CDN's signed URL: another port, the grant in the query.
            let location = format!("http://{}/data/{d}?sig=signed-url-grant", st.cdn);
            (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, location)]).into_response()
        }
        _ => not_found(),
    }
}

struct FakeCdn {
    blobs: BTreeMap<String, Vec<u8>>,
    seen: Mutex<Vec<Seen>>,
}

async fn fake_cdn(
    State(st): State<Arc<FakeCdn>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    st.seen.lock().unwrap().push(seen(method, &uri, &headers));
    match uri
        .path()
        .strip_prefix("/data/")
        .and_then(|d| st.blobs.get(d))
    {
        Some(bytes) => {
            ([(CONTENT_TYPE, "application/octet-stream")], bytes.clone()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[test]
fn blob_redirects_to_another_port_carry_no_authorization() {
    let layout = tempfile::tempdir().unwrap();
    let image = fixture_image().write(layout.path(), Some("v1"));
    let mut blobs = layout_blobs(layout.path());
    blobs.remove(&image.manifest_digest);
    let cdn = Arc::new(FakeCdn {
        blobs: blobs.clone(),
        seen: Mutex::default(),
    });
    let cdn_server = BgServer::start(
        "127.0.0.1",
        Router::new().fallback(fake_cdn).with_state(cdn.clone()),
    );
    let upstream = Arc::new(FakeUpstream {
        manifest: image.manifest.clone(),
        manifest_digest: image.manifest_digest.clone(),
        blobs,
        cdn: cdn_server.addr,
        seen: Mutex::default(),
    });
    let up_server = BgServer::start(
        "127.0.0.1",
        Router::new()
            .fallback(fake_upstream)
            .with_state(upstream.clone()),
    );
    assert_ne!(up_server.addr.port(), cdn_server.addr.port());

    // Another port is another origin: the CDN's host is listed (exactly, being loopback).
    let (p, _conf) = start_proxy_full(
        &format!("http://{}", up_server.addr),
        Creds::Env(READER_PASSWORD),
        &[],
        &["127.0.0.1"],
        &[],
    );
    let out = pull(&p, REDIRECT_REPO)
        .unwrap_or_else(|e| panic!("pull: {e}\nportcullis log:\n{}", p.log_text()));
    assert_pulled(layout.path(), out.path(), &image);
    // And once more by hand, HEAD and GET of the big layer.
    let layer = &image.layer_digests[1];
    let url = format!("{}/v2/{REDIRECT_REPO}/blobs/{layer}", p.url());
    let r = http().head(&url).send().unwrap();
    assert_eq!(r.status(), 200);
    let r = http().get(&url).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().unwrap()), *layer);

    let expected = basic(READER, READER_PASSWORD);
    let up_seen = upstream.seen.lock().unwrap().clone();
    let blob_requests: Vec<&Seen> = up_seen
        .iter()
        .filter(|s| s.uri.contains("/blobs/"))
        .collect();
    // The config and every layer.
    assert!(
        blob_requests.len() > image.layer_digests.len(),
        "{up_seen:#?}"
    );
    for s in &blob_requests {
        assert_eq!(s.header("authorization"), Some(expected.as_str()), "{s:?}");
    }
    let cdn_seen = cdn.seen.lock().unwrap().clone();
    assert!(
        cdn_seen.len() >= blob_requests.len(),
        "the CDN got {cdn_seen:#?}"
    );
    let encoded = STANDARD.encode(format!("{READER}:{READER_PASSWORD}"));
    for s in &cdn_seen {
        assert!(s.uri.ends_with("?sig=signed-url-grant"), "{s:?}");
        assert_eq!(
            s.header("authorization"),
            None,
            "credentials followed the redirect: {s:?}"
        );
        assert!(
            s.headers
                .iter()
                .all(|(_, v)| !v.contains(&encoded) && !v.contains(READER_PASSWORD)),
            "{s:?}"
        );
    }
    assert!(cdn_seen.iter().any(|s| s.method == Method::GET));
    assert_log_keeps_secrets(&p, &[]);
}

// ---------------------------------------------------------------------------------------------
// Realms on other hosts

#[test]
fn a_realm_on_an_unrelated_internal_host_is_not_asked_unless_listed() {
    // The registry is on 127.0.0.1, its token service on 127.0.0.2: another host, and a loopback
    // address, which an upstream may not send portcullis to (an internal service could answer).
    let up = token_upstream("127.0.0.2");
    assert!(up.issuer.realm().starts_with("http://127.0.0.2:"));
    {
        let (p, _conf) = start_proxy(&up.registry.url(), Creds::Env(READER_PASSWORD), &[]);
        let (status, body) = get_manifest(&p, PUBLIC);
        assert_eq!(status, 502, "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or("");
        assert!(message.contains("token realm"), "{body}");
        assert!(!message.contains("127.0.0.2"), "{body}");
        assert!(pull(&p, PRIVATE).is_err());
        let reqs = up.issuer.requests();
        assert!(reqs.is_empty(), "the realm was asked: {reqs:?}");
        assert!(p.log_text().contains("refused a token realm"));
        assert_log_keeps_secrets(&p, &up.issuer.issued());
    }
    // Listed in auth_hosts, the same realm gets the credentials.
    up.issuer.clear();
    let (p, _conf) = start_proxy(
        &up.registry.url(),
        Creds::Env(READER_PASSWORD),
        &["127.0.0.2"],
    );
    let out = pull(&p, PRIVATE)
        .unwrap_or_else(|e| panic!("pull: {e}\nportcullis log:\n{}", p.log_text()));
    assert_pulled(up.layout.path(), out.path(), &up.image);
    let reqs = up.issuer.requests();
    assert!(!reqs.is_empty());
    let expected = basic(READER, READER_PASSWORD);
    assert!(
        reqs.iter()
            .all(|r| r.authorization.as_deref() == Some(expected.as_str())),
        "{reqs:?}"
    );
}
