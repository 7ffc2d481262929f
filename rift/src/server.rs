//! The HTTP server: listeners, graceful shutdown, request routing, authentication, and the
//! object handlers shared by the S3 API and the plain `/cache/{key}` endpoint.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::either::Either;

use crate::auth::{AuthFileError, AuthState, Principal, RateLimitConfig, RateLimiter};
use crate::config::Config;
use crate::error::{empty, full, ApiError, Body, BoxError};
use crate::fleet::{Fleet, FleetError, FleetSetupError, Verdict};
use crate::metrics::Metrics;
use crate::origin::Origin;
use crate::reload::{spawn_reloader, Reloadable};
use crate::s3::{self, ListParams, ListVersion, RangeSpec};
use crate::sigv4::{self, PayloadHash, SigRequest};
use crate::store::{ObjectHeaders, PutOptions, Store, StoreConfig, StoreError};
use crate::tls::{server_config, CertStore};

/// The bucket behind the plain `/cache/{key}` endpoint (also reachable through the S3 API).
pub const PLAIN_BUCKET: &str = "cache";

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    /// The configuration in force.
    pub config: Config,
    /// The object store.
    pub store: Arc<Store>,
    /// Credentials of the auth file.
    pub auth: Arc<AuthState>,
    /// The fleet's runners, verified with MotherGoose.
    pub fleet: Option<Fleet>,
    /// Auth failure limiter.
    pub limiter: RateLimiter,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Pull-through origin.
    pub origin: Option<Origin>,
    started: i64,
    request_ids: AtomicU64,
    created_buckets: Mutex<BTreeSet<String>>,
}

impl AppState {
    /// Records an authentication failure from `peer`.
    pub fn auth_failure(&self, peer: SocketAddr, what: &str) {
        Metrics::inc(&self.metrics.auth_failures);
        self.limiter.record_failure(peer.ip());
        tracing::info!(client = %peer.ip(), endpoint = what, "authentication failed");
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StartError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The auth file could not be loaded.
    #[error(transparent)]
    #[diagnostic(help(
        "the auth file is TOML with `tokens = [..]` and [[s3_keys]] tables; see `rift --help`"
    ))]
    Auth(#[from] AuthFileError),
    /// The MotherGoose client could not be set up.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Fleet(#[from] FleetSetupError),
    /// The TLS certificate or key could not be used.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// Address of the S3 / cache / metrics listener.
    pub addr: SocketAddr,
    /// Address of the Docker proxy listener, if enabled.
    pub docker_addr: Option<SocketAddr>,
    /// Shared state (metrics, store) for inspection.
    pub state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting connections; in-flight requests may finish within the grace period.
    pub fn trigger_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits until every listener has finished.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Triggers a graceful shutdown and waits for it.
    pub async fn shutdown(self) {
        self.trigger_shutdown();
        self.wait().await;
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// Opens the store, loads credentials, binds the listeners and starts serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::default());
    let store_cfg = StoreConfig {
        dir: config.data_dir.clone(),
        max_bytes: config.max_cache_size,
        max_age: config.max_age,
        max_object_size: config.max_object_size,
        fsync: config.fsync,
        memory_cache: config.memory_cache_size,
    };
    let m = Arc::clone(&metrics);
    let store = tokio::task::spawn_blocking(move || Store::open(store_cfg, m))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
    let auth = Arc::new(match &config.auth_file {
        Some(path) => AuthState::load(path)?,
        None => AuthState::empty(),
    });
    let fleet = config
        .fleet
        .as_ref()
        .map(|f| Fleet::new(f, Arc::clone(&metrics)))
        .transpose()?;
    let certs = config
        .tls
        .as_ref()
        .map(CertStore::load)
        .transpose()?
        .map(Arc::new);
    let tls = certs
        .clone()
        .map(server_config)
        .transpose()?
        .map(tokio_rustls::TlsAcceptor::from);
    let main = bind(config.listen).await?;
    let docker = match config.docker_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let addr = main.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let docker_addr = match &docker {
        Some(l) => Some(l.local_addr().map_err(|source| StartError::Bind {
            addr: addr.to_owned(),
            source,
        })?),
        None => None,
    };
    let origin = config
        .origin
        .as_ref()
        .map(|o| Origin::new(o, Arc::clone(&metrics)));
    let state = Arc::new(AppState {
        limiter: RateLimiter::new(RateLimitConfig {
            max_failures: config.auth_failure_limit,
            window: config.auth_failure_window,
            lockout: config.auth_lockout,
        }),
        config,
        store,
        auth,
        fleet,
        metrics,
        origin,
        started: chrono::Utc::now().timestamp(),
        request_ids: AtomicU64::new(1),
        created_buckets: Mutex::new(BTreeSet::new()),
    });
    let (tx, rx) = watch::channel(false);
    let mut reloadable: Vec<Arc<dyn Reloadable>> = Vec::new();
    if state.config.auth_file.is_some() {
        reloadable.push(Arc::clone(&state.auth) as _);
    }
    if let Some(c) = certs {
        reloadable.push(c);
    }
    let mut tasks = vec![
        spawn_reloader(
            reloadable,
            state.config.auth_reload_interval,
            Arc::clone(&state.metrics),
            rx.clone(),
        ),
        tokio::spawn(serve(
            main,
            tls.clone(),
            Arc::clone(&state),
            handle_main,
            rx.clone(),
        )),
    ];
    if let Some(l) = docker {
        tasks.push(tokio::spawn(serve(
            l,
            tls.clone(),
            Arc::clone(&state),
            crate::docker::handle,
            rx.clone(),
        )));
    }
    if let Some(age) = state.config.max_age {
        let st = Arc::clone(&state);
        let mut rx = rx.clone();
        let period = (age / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = rx.changed() => return,
                    _ = tick.tick() => {
                        let store = Arc::clone(&st.store);
                        let n = tokio::task::spawn_blocking(move || store.sweep_expired()).await.unwrap_or(0);
                        if n > 0 {
                            tracing::info!(evicted = n, "expired objects evicted");
                        }
                    }
                }
            }
        }));
    }
    let mothergoose = state.config.fleet.as_ref().map(|f| f.url.as_str());
    if mothergoose.is_some_and(|u| u.starts_with("http://")) {
        tracing::warn!("MotherGoose is reached over plain HTTP: Rift's token and runner secrets cross the network unencrypted");
    }
    tracing::info!(%addr, docker = ?docker_addr, tls = state.config.tls.is_some(), origin = state.origin.is_some(), mothergoose, "rift listening");
    Ok(Running {
        addr,
        docker_addr,
        state,
        shutdown: tx,
        tasks,
    })
}

/// Largest read from a connection (and so the largest body chunk).
const READ_BUFFER: usize = 256 * 1024;

/// The size of a request's head as sent: request line, header lines, blank line.
fn head_size<B>(req: &Request<B>) -> usize {
    let line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len()
        + 1;
    req.headers().iter().fold(line, |n, (k, v)| {
        n + k.as_str().len() + v.len() + ": \r\n".len()
    }) + 2
}

/// The 431 answer to a request head larger than `max_header_size` (every handler checks
/// first: the read buffer lets hyper take heads up to [`READ_BUFFER`]).
pub(crate) fn head_too_large(req: &Request<Incoming>, max: usize) -> Option<Response<Body>> {
    (head_size(req) > max).then(head_too_large_response)
}

fn head_too_large_response() -> Response<Body> {
    let mut r = text(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request header fields too large\n",
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Serves one listener until shutdown: plain HTTP/1.1, or HTTPS when `tls` is set (the
/// handshake runs in the connection's task, bounded by the request-head timeout).
async fn serve<F, Fut>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AppState>,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(Arc<AppState>, SocketAddr, Request<Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let tracker = tokio_util::task::TaskTracker::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout)
        // The read buffer also bounds the request head: bodies are read in chunks of up to
        // READ_BUFFER (fewer system calls and handoffs per upload), and heads larger than
        // max_header_size are refused below, with the same 431 hyper would answer.
        .max_buf_size(state.config.max_header_size.max(READ_BUFFER))
        .keep_alive(true);
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let st = Arc::clone(&state);
                    let svc = service_fn(move |req| handler(Arc::clone(&st), peer, req));
                    let builder = builder.clone();
                    let mut stop = shutdown.clone();
                    let tls = tls.clone();
                    let limit = state.config.header_read_timeout;
                    let metrics = Arc::clone(&state.metrics);
                    tracker.spawn(async move {
                        let io = match tls {
                            None => Either::Left(stream),
                            Some(acceptor) => {
                                let handshake = tokio::time::timeout(limit, acceptor.accept(stream));
                                let result = tokio::select! {
                                    r = handshake => r,
                                    // A connection still shaking hands has no request in
                                    // flight: shutting down drops it at once.
                                    _ = async { let _ = stop.wait_for(|v| *v).await; } => return,
                                };
                                match result {
                                    Ok(Ok(s)) => Either::Right(s),
                                    failed => {
                                        Metrics::inc(&metrics.tls_handshake_failures);
                                        let error = match failed {
                                            Ok(Err(e)) => e.to_string(),
                                            _ => "timed out".into(),
                                        };
                                        tracing::debug!(client = %peer, %error, "TLS handshake failed");
                                        return;
                                    }
                                }
                            }
                        };
                        let conn = builder.serve_connection(TokioIo::new(io), svc).with_upgrades();
                        tokio::pin!(conn);
                        let result = tokio::select! {
                            r = conn.as_mut() => r,
                            _ = async { let _ = stop.wait_for(|v| *v).await; } => {
                                // Finish the request in flight, then close.
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(e) = result {
                            tracing::debug!(client = %peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = async { let _ = shutdown.wait_for(|v| *v).await; } => break,
        }
    }
    drop(listener);
    tracker.close();
    tokio::select! {
        _ = tracker.wait() => tracing::info!("listener drained"),
        _ = tokio::time::sleep(state.config.shutdown_grace) => {
            tracing::warn!("shutdown grace period elapsed; closing remaining connections");
        }
    }
}

async fn handle_main(
    state: Arc<AppState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    Metrics::inc(&state.metrics.requests);
    if let Some(r) = head_too_large(&req, state.config.max_header_size) {
        return Ok(r);
    }
    let method = req.method().clone();
    let resp = match route(&state, peer, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, code = e.code, status = %e.status, "request failed");
            let rid = format!("{:016X}", state.request_ids.fetch_add(1, Ordering::Relaxed));
            let mut r = e.into_response(method == Method::HEAD, &rid);
            if matches!(method, Method::PUT | Method::POST) {
                // The upload may not have been read to its end, so the connection is not
                // reused: a client must not send its next request on it.
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            r
        }
    };
    Ok(resp)
}

fn decode_path(raw: &str) -> Result<std::borrow::Cow<'_, str>, ApiError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::invalid_argument("the path is not valid UTF-8"))
}

fn query_map(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

fn qget<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn qhas(q: &[(String, String)], name: &str) -> bool {
    q.iter().any(|(k, _)| k == name)
}

/// How a request was authenticated.
enum Authn {
    Bearer,
    SigV4(PayloadHash),
}

async fn route(
    state: &Arc<AppState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    // A cheap handle (shared bytes), so that the path outlives the moved request.
    let uri = req.uri().clone();
    let path = uri.path();
    if path == "/health" {
        return Ok(text(StatusCode::OK, "ok\n"));
    }
    if let Err(wait) = state.limiter.check(peer.ip()) {
        Metrics::inc(&state.metrics.rate_limited);
        return Err(ApiError::rate_limited(wait.as_secs()));
    }
    if path == "/metrics" {
        return metrics(state, peer, req.headers());
    }
    let query = uri.query();
    let sig = sigv4::is_sigv4(req.headers(), query);
    if !sig {
        if let Some(raw_key) = path.strip_prefix("/cache/") {
            let Some(token) = bearer(req.headers()) else {
                state.auth_failure(peer, "cache");
                return Err(ApiError::unauthenticated());
            };
            let Some(principal) = token_principal(state, token).await? else {
                state.auth_failure(peer, "cache");
                return Err(ApiError::bad_token());
            };
            let key = decode_path(raw_key)?;
            if !principal.may_use(&key) {
                return Err(ApiError::access_denied(format!("/{PLAIN_BUCKET}/{key}")));
            }
            return object(state, req, PLAIN_BUCKET, &key, Authn::Bearer, &[]).await;
        }
        state.auth_failure(peer, "s3");
        return Err(ApiError::unauthenticated());
    }
    // SigV4 requests have their own (boxed) future: the bearer path stays small to move.
    Box::pin(route_s3(state, peer, req, path, query)).await
}

/// `/metrics`, for a token of the auth file (an operator's; runners' credentials do not
/// open it).
fn metrics(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    match bearer(headers) {
        Some(token) if state.auth.check_token(token) => {
            let m = state.metrics.render(state.store.gauges());
            let mut r = text(StatusCode::OK, m);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(r)
        }
        presented => {
            state.auth_failure(peer, "metrics");
            Err(match presented {
                Some(_) => ApiError::bad_token(),
                None => ApiError::unauthenticated(),
            })
        }
    }
}

/// Who a bearer token belongs to: a token of the auth file, or a live runner's
/// `<runner id>.<secret>`; `None` for neither.
pub(crate) async fn token_principal(
    state: &AppState,
    token: &str,
) -> Result<Option<Principal>, FleetError> {
    if state.auth.check_token(token) {
        return Ok(Some(Principal::Operator));
    }
    match &state.fleet {
        Some(fleet) => Ok(Box::pin(fleet.check_token(token))
            .await?
            .map(Principal::Runner)),
        None => Ok(None),
    }
}

/// Verifies a SigV4 signature with the secret of its access key: from the auth file, else
/// (with MotherGoose configured) the secret of the live runner with that id.
async fn authenticate_s3(
    state: &Arc<AppState>,
    peer: SocketAddr,
    req: &Request<Incoming>,
    path: &str,
    query: Option<&str>,
) -> Result<(Principal, PayloadHash), ApiError> {
    let fail = |e: sigv4::SigError| {
        state.auth_failure(peer, "s3");
        ApiError::from(e)
    };
    let skew = chrono::Duration::from_std(state.config.clock_skew)
        .unwrap_or_else(|_| chrono::Duration::minutes(15));
    let sreq = SigRequest {
        method: req.method().as_str(),
        path,
        query,
        headers: req.headers(),
    };
    let signed = sigv4::prepare(sreq, chrono::Utc::now(), skew).map_err(fail)?;
    let own = state.auth.current();
    if let Some(secret) = own.secret_for(signed.access_key()) {
        let v = signed.verify(secret).map_err(fail)?;
        return Ok((Principal::Operator, v.payload));
    }
    drop(own);
    let Some(fleet) = &state.fleet else {
        return Err(fail(sigv4::SigError::InvalidAccessKey));
    };
    match Box::pin(fleet.lookup(signed.access_key())).await? {
        Verdict::Allowed(grant) => {
            let v = signed.verify(grant.secret()).map_err(fail)?;
            Ok((Principal::Runner(grant), v.payload))
        }
        Verdict::Denied => Err(fail(sigv4::SigError::InvalidAccessKey)),
    }
}

/// A request signed with SigV4: verified, then routed to the bucket or object operation.
async fn route_s3(
    state: &Arc<AppState>,
    peer: SocketAddr,
    req: Request<Incoming>,
    path: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let (principal, payload) = authenticate_s3(state, peer, &req, path, query).await?;
    let q = query_map(query);
    let decoded = decode_path(path)?;
    let trimmed = decoded.strip_prefix('/').unwrap_or(&decoded);
    if trimmed.is_empty() {
        if !principal.is_operator() {
            return Err(ApiError::access_denied("/"));
        }
        return match *req.method() {
            Method::GET => {
                let mut names: BTreeSet<String> = state.store.buckets().into_iter().collect();
                names.extend(
                    state
                        .created_buckets
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .cloned(),
                );
                let names: Vec<String> = names.into_iter().collect();
                Ok(xml(StatusCode::OK, s3::buckets_xml(&names, state.started)))
            }
            _ => Err(method_not_allowed()),
        };
    }
    let (bucket, key) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    if !s3::valid_bucket(bucket) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidBucketName",
            "The specified bucket is not valid.",
        )
        .with_resource(format!("/{bucket}")));
    }
    if key.is_empty() {
        return bucket_op(state, req, bucket, &q, &principal).await;
    }
    if !principal.may_use(key) {
        return Err(ApiError::access_denied(format!("/{bucket}/{key}")));
    }
    object(state, req, bucket, key, Authn::SigV4(payload), &q).await
}

fn bearer(h: &HeaderMap) -> Option<&str> {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

pub(crate) fn xml(status: StatusCode, body: String) -> Response<Body> {
    let len = body.len();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

pub(crate) fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    r
}

fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "The specified method is not allowed against this resource.",
    )
}

async fn bucket_op(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    bucket: &str,
    q: &[(String, String)],
    principal: &Principal,
) -> Result<Response<Body>, ApiError> {
    let denied = || ApiError::access_denied(format!("/{bucket}"));
    match *req.method() {
        Method::GET | Method::HEAD if qhas(q, "location") => Ok(xml(
            StatusCode::OK,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"{}\"></LocationConstraint>",
                s3::XMLNS
            ),
        )),
        Method::HEAD => Ok(status_only(StatusCode::OK)),
        Method::GET => {
            for sub in ["uploads", "versioning", "acl", "policy", "lifecycle", "versions"] {
                if qhas(q, sub) {
                    return Err(ApiError::not_implemented(&format!("bucket ?{sub}")));
                }
            }
            if !principal.may_use(qget(q, "prefix").unwrap_or("")) {
                return Err(denied());
            }
            list_objects(state, bucket, q)
        }
        Method::PUT | Method::DELETE if !principal.is_operator() => Err(denied()),
        Method::PUT => {
            state
                .created_buckets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(bucket.to_string());
            let mut r = status_only(StatusCode::OK);
            if let Ok(v) = HeaderValue::from_str(&format!("/{bucket}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Ok(r)
        }
        Method::DELETE => {
            let mut any = false;
            state.store.scan(&format!("{bucket}/"), None, |_| {
                any = true;
                false
            });
            if any {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "BucketNotEmpty",
                    "The bucket you tried to delete is not empty",
                )
                .with_resource(format!("/{bucket}")));
            }
            state
                .created_buckets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(bucket);
            Ok(status_only(StatusCode::NO_CONTENT))
        }
        Method::POST if qhas(q, "delete") => delete_objects(state, req, bucket, principal).await,
        _ => Err(method_not_allowed()),
    }
}

/// Largest DeleteObjects body accepted (1000 keys of 1 KiB, with markup).
const MAX_DELETE_BODY: usize = 2 << 20;

async fn delete_objects(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    bucket: &str,
    principal: &Principal,
) -> Result<Response<Body>, ApiError> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_DELETE_BODY);
    let body = limited
        .collect()
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "MalformedXML", e.to_string()))?
        .to_bytes();
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "MalformedXML", "body is not UTF-8"))?;
    let parsed = s3::parse_delete(text)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "MalformedXML", e))?;
    // All or nothing: one key outside the principal's prefix refuses the whole request.
    if let Some(o) = parsed.objects.iter().find(|o| !principal.may_use(&o.key)) {
        return Err(ApiError::access_denied(format!("/{bucket}/{}", o.key)));
    }
    let mut deleted = Vec::with_capacity(parsed.objects.len());
    for o in parsed.objects {
        let full_key = format!("{bucket}/{}", o.key);
        if crate::store::validate_key(&full_key).is_ok() {
            state.store.delete(&full_key).await?;
        }
        // S3 reports keys that did not exist as deleted too.
        deleted.push(o.key);
    }
    Ok(xml(
        StatusCode::OK,
        s3::delete_result_xml(&deleted, parsed.quiet),
    ))
}

fn list_objects(
    state: &Arc<AppState>,
    bucket: &str,
    q: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let v2 = qget(q, "list-type") == Some("2");
    let max_keys = match qget(q, "max-keys") {
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| ApiError::invalid_argument("max-keys must be a non-negative integer"))?
            .min(1000),
        None => 1000,
    };
    let url_encoding = match qget(q, "encoding-type") {
        None => false,
        Some("url") => true,
        Some(_) => {
            return Err(ApiError::invalid_argument(
                "Invalid Encoding Method specified in Request",
            ))
        }
    };
    let (version, after) = if v2 {
        let token = qget(q, "continuation-token").map(str::to_string);
        let start_after = qget(q, "start-after").map(str::to_string);
        let after = match &token {
            Some(t) => Some(s3::decode_token(t).ok_or_else(|| {
                ApiError::invalid_argument("The continuation token provided is incorrect")
            })?),
            None => start_after.clone(),
        };
        (
            ListVersion::V2 {
                continuation_token: token,
                start_after,
            },
            after,
        )
    } else {
        let marker = qget(q, "marker").map(str::to_string);
        (
            ListVersion::V1 {
                marker: marker.clone(),
            },
            marker,
        )
    };
    let params = ListParams {
        prefix: qget(q, "prefix").unwrap_or("").to_string(),
        delimiter: qget(q, "delimiter").map(str::to_string),
        max_keys,
        after,
    };
    let result = s3::list(&state.store, bucket, &params);
    Ok(xml(
        StatusCode::OK,
        s3::list_xml(bucket, &params, &result, &version, url_encoding),
    ))
}

async fn object(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    bucket: &str,
    key: &str,
    authn: Authn,
    q: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let resource = || format!("/{bucket}/{key}");
    if key.is_empty() {
        return Err(ApiError::invalid_argument("the object key is empty").with_resource(resource()));
    }
    let full_key = format!("{bucket}/{key}");
    crate::store::validate_key(&full_key)
        .map_err(|e| ApiError::from(e).with_resource(resource()))?;
    let multipart =
        !q.is_empty() && (qhas(q, "uploadId") || qhas(q, "uploads") || qhas(q, "partNumber"));
    if !multipart && matches!(*req.method(), Method::GET | Method::HEAD) {
        return get_object(state, &req, bucket, key, &full_key).await;
    }
    // Writes and multipart operations have their own (boxed) future, so that the future of a
    // read stays small.
    Box::pin(object_change(
        state, req, bucket, key, &full_key, authn, q, multipart,
    ))
    .await
}

/// Everything [`object`] does besides plain reads.
#[allow(clippy::too_many_arguments)]
async fn object_change(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    bucket: &str,
    key: &str,
    full_key: &str,
    authn: Authn,
    q: &[(String, String)],
    multipart: bool,
) -> Result<Response<Body>, ApiError> {
    match *req.method() {
        Method::PUT if !multipart => {
            if req.headers().contains_key("x-amz-copy-source") {
                return Err(ApiError::not_implemented("CopyObject"));
            }
            put_object(state, req, full_key, authn).await
        }
        Method::DELETE if !multipart => {
            state.store.delete(full_key).await?;
            Ok(status_only(StatusCode::NO_CONTENT))
        }
        Method::POST if qhas(q, "uploads") => {
            crate::multipart::create(state, req.headers(), bucket, key).await
        }
        Method::PUT if qhas(q, "uploadId") && qhas(q, "partNumber") => {
            let part_key = crate::multipart::part_key_for(
                state,
                qget(q, "uploadId").unwrap_or(""),
                qget(q, "partNumber").unwrap_or(""),
                full_key,
            )
            .await?;
            put_object(state, req, &part_key, authn).await
        }
        Method::POST if qhas(q, "uploadId") => {
            crate::multipart::complete(state, req, bucket, key, qget(q, "uploadId").unwrap_or(""))
                .await
        }
        Method::DELETE if qhas(q, "uploadId") => {
            crate::multipart::abort(state, full_key, qget(q, "uploadId").unwrap_or("")).await
        }
        _ if multipart => Err(ApiError::not_implemented("this multipart operation")),
        _ => Err(method_not_allowed()),
    }
}

fn etag_matches(header_value: &str, etag: &str) -> bool {
    header_value
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

async fn get_object(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
    bucket: &str,
    key: &str,
    full_key: &str,
) -> Result<Response<Body>, ApiError> {
    let resource = || format!("/{bucket}/{key}");
    // Hot small objects are answered from memory, without a thread handoff or a file.
    if let Some(hot) = state.store.get_hot(full_key) {
        Metrics::inc(&state.metrics.hits);
        let headers = ObjectHeaders {
            etag: hot.etag.clone(),
            last_modified: hot.last_modified.clone(),
            content_type: hot.content_type.clone(),
        };
        return answer(
            state,
            req,
            hot.meta.size,
            headers,
            Source::Memory(hot.body.clone()),
            &resource,
        );
    }
    Box::pin(get_object_cold(state, req, bucket, key, full_key)).await
}

/// A read that goes to the disk (and on a miss to the origin).
async fn get_object_cold(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
    bucket: &str,
    key: &str,
    full_key: &str,
) -> Result<Response<Body>, ApiError> {
    let resource = || format!("/{bucket}/{key}");
    let mut found = state.store.get(full_key).await?;
    if found.is_some() {
        Metrics::inc(&state.metrics.hits);
    } else {
        Metrics::inc(&state.metrics.misses);
        if let Some(origin) = &state.origin {
            match origin.fetch(&state.store, bucket, key).await {
                Ok(true) => found = state.store.get(full_key).await?,
                Ok(false) => {}
                Err(e) => {
                    Metrics::inc(&state.metrics.origin_errors);
                    tracing::warn!(key = %full_key, error = %e, "origin fetch failed; answering as a miss");
                }
            }
        }
    }
    let Some(mut obj) = found else {
        return Err(ApiError::no_such_key(&resource()));
    };
    let headers = ObjectHeaders::of(&obj.meta);
    let size = obj.meta.size;
    let source = match obj.small.take() {
        Some(b) => Source::Memory(b),
        None => Source::File(obj),
    };
    answer(state, req, size, headers, source, &resource)
}

/// Where the body of an answered object comes from.
enum Source {
    Memory(Bytes),
    File(crate::store::OpenObject),
}

/// Answers a GET or HEAD of an object: preconditions, range, headers, body.
fn answer(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
    size: u64,
    headers: ObjectHeaders,
    source: Source,
    resource: &dyn Fn() -> String,
) -> Result<Response<Body>, ApiError> {
    let head = req.method() == Method::HEAD;
    let h = req.headers();
    if let Some(v) = h.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        if !etag_matches(v, etag_str(&headers.etag)) {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
            )
            .with_resource(resource()));
        }
    }
    if let Some(v) = h.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        if etag_matches(v, etag_str(&headers.etag)) {
            let mut r = status_only(StatusCode::NOT_MODIFIED);
            r.headers_mut().insert(header::ETAG, headers.etag);
            return Ok(r);
        }
    }
    let range_header = h.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range = s3::parse_range(range_header, size);
    let (status, start, len) = match range {
        RangeSpec::Full => (StatusCode::OK, 0, size),
        RangeSpec::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeSpec::Unsatisfiable => {
            let mut e = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The requested range is not satisfiable",
            )
            .with_resource(resource())
            .into_response(head, "0");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", size)) {
                e.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(e);
        }
    };
    let mut r = Response::new(empty());
    let hm = r.headers_mut();
    hm.reserve(7);
    hm.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    hm.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    hm.insert(header::ETAG, headers.etag);
    hm.insert(header::LAST_MODIFIED, headers.last_modified);
    hm.insert(header::CONTENT_TYPE, headers.content_type);
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) =
            HeaderValue::from_str(&format!("bytes {}-{}/{}", start, start + len - 1, size))
        {
            hm.insert(header::CONTENT_RANGE, v);
        }
    }
    *r.status_mut() = status;
    if !head {
        Metrics::add(&state.metrics.bytes_out, len);
        *r.body_mut() = match source {
            Source::Memory(b) => {
                let s = start as usize;
                full(b.slice(s..s + len as usize))
            }
            Source::File(obj) => {
                let stream = obj
                    .into_stream(start, len)
                    .map_err(|e| ApiError::internal(format!("seek failed: {e}")))?
                    .map_ok(Frame::data)
                    .map_err(|e| Box::new(e) as BoxError);
                StreamBody::new(stream).boxed_unsync()
            }
        };
    }
    Ok(r)
}

/// The text of an ETag header value (always ASCII: quotes and hex digits).
fn etag_str(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or("")
}

async fn put_object(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    full_key: &str,
    authn: Authn,
) -> Result<Response<Body>, ApiError> {
    let h = req.headers();
    let aws_chunked = h
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("aws-chunked"));
    let (expected_sha256, chunked) = match authn {
        Authn::Bearer => (None, None),
        Authn::SigV4(PayloadHash::Unsigned) => (None, aws_chunked.then_some(None)),
        Authn::SigV4(PayloadHash::Sha256(d)) => (Some(d), None),
        Authn::SigV4(PayloadHash::StreamingSigned(s)) => (None, Some(Some(s))),
        Authn::SigV4(PayloadHash::StreamingUnsigned) => (None, Some(None)),
        Authn::SigV4(PayloadHash::Streaming(kind)) => {
            return Err(ApiError::not_implemented(&format!("{kind} uploads")))
        }
    };
    let parse_len = |name: header::HeaderName| -> Result<Option<u64>, ApiError> {
        match h.get(&name) {
            Some(v) => Ok(Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| ApiError::invalid_argument(format!("invalid {name}")))?,
            )),
            None => Ok(None),
        }
    };
    // With aws-chunked, Content-Length covers the framing; the object's length is
    // x-amz-decoded-content-length.
    let expected_len = if chunked.is_some() {
        parse_len(header::HeaderName::from_static(
            "x-amz-decoded-content-length",
        ))?
    } else {
        parse_len(header::CONTENT_LENGTH)?
    };
    let expected_md5 = match h.get("content-md5") {
        Some(v) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v.as_bytes())
                .ok()
                .and_then(|b| <[u8; 16]>::try_from(b).ok());
            Some(raw.ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidDigest",
                    "The Content-MD5 you specified was invalid.",
                )
            })?)
        }
        None => None,
    };
    let content_type = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let opts = PutOptions {
        content_type,
        expected_len,
        expected_sha256,
        expected_md5,
    };
    let body = req.into_body().into_data_stream();
    let stored = match chunked {
        Some(signing) => {
            let decoded = crate::chunked::decode(body, signing);
            state.store.put_stream(full_key, opts, decoded).await
        }
        None => state.store.put_stream(full_key, opts, body).await,
    };
    let meta = stored.map_err(|e| {
        tracing::info!(key = %full_key, error = %e, "upload discarded");
        ApiError::from(e)
    })?;
    tracing::debug!(key = %full_key, size = meta.size, "stored");
    let mut r = status_only(StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(&meta.etag()) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(etag_matches("\"x\", W/\"abc\"", "\"abc\""));
        assert!(!etag_matches("\"x\"", "\"abc\""));
    }
}
