//! A fake Yandex Cloud API on 127.0.0.1 — no emulator exists — for the Yandex providers'
//! tests: IAM token exchange (PS256 JWT from a service-account key) and the metadata
//! service, Compute instances, Serverless Containers (containers, revisions, async
//! invocation) and operations.
//!
//! Every request is checked against the documented shape of the REST API (field names and
//! types — int64 as strings, memory and disk in bytes, durations as `"NNNs"` —, required
//! fields, value ranges, name and label patterns, and `Authorization: Bearer` with a token
//! it issued); a request that does not match is answered `400 INVALID_ARGUMENT` and kept in
//! [`FakeYandex::violations`]. Mutations answer real-shaped Operations, which can be made
//! slow (done only after N polls) or failed ([`FakeYandex::fail_next`]). Everything
//! created is kept, and every request recorded.

mod shape;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The fake service account's authorized key (test only: never used anywhere real).
pub const TEST_PRIVATE_KEY: &str = include_str!("test-key.pem");
const TEST_PUBLIC_KEY: &str = include_str!("test-key.pub.pem");
/// The key id of [`FakeYandex::key_json`].
pub const KEY_ID: &str = "ajefakekey0000000001";
/// The service account of [`FakeYandex::key_json`].
pub const SERVICE_ACCOUNT_ID: &str = "ajefakeserviceacc001";
/// The JWT audience the IAM service requires.
pub const IAM_AUDIENCE: &str = "https://iam.api.cloud.yandex.net/iam/v1/tokens";

/// One request, as received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// JSON body (`null` when none).
    pub body: Value,
    /// Headers that matter (`x-ycf-container-integration-type`).
    pub headers: BTreeMap<String, String>,
    /// Whether it carried a valid bearer token.
    pub authorized: bool,
}

struct Op {
    value: Value,
    polls_left: u32,
    outcome: Result<Value, (i64, String)>,
    on_done: Option<Effect>,
}

enum Effect {
    InstanceRunning(String),
    InstanceGone(String),
    ContainerActive(String),
    ContainerGone(String),
    RevisionActive(String, String),
}

#[derive(Default)]
struct State {
    seq: u64,
    tokens: HashMap<String, SystemTime>,
    tokens_issued: usize,
    token_ttl: Option<Duration>,
    instances: BTreeMap<String, Value>,
    containers: BTreeMap<String, Value>,
    revisions: BTreeMap<String, Value>,
    invocations: Vec<(String, Value)>,
    ops: HashMap<String, Op>,
    slow_polls: u32,
    fail_next: HashMap<String, VecDeque<(i64, String)>>,
    fail_http: HashMap<String, VecDeque<(u16, i64, String)>>,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    base: String,
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}{:017x}", self.seq)
    }
}

/// The running fake; stopped when dropped.
pub struct FakeYandex {
    /// `http://127.0.0.1:PORT`: every endpoint (IAM, Compute, Serverless Containers,
    /// operations, metadata) is served here.
    pub base: String,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl FakeYandex {
    /// Starts the fake on a free port (its own thread and runtime, so any test can use
    /// it) and waits until it listens.
    pub fn start() -> FakeYandex {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        state.lock().unwrap().base = base.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the fake");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(
                    move |m: Method, u: Uri, h: HeaderMap, b: Bytes| {
                        let st = st.clone();
                        async move { handle(&st, m, u, h, b) }
                    },
                );
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        FakeYandex {
            base,
            state,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// An authorized key file (JSON) for the fake service account.
    pub fn key_json() -> String {
        json!({
            "id": KEY_ID,
            "service_account_id": SERVICE_ACCOUNT_ID,
            "created_at": "2026-01-01T00:00:00Z",
            "key_algorithm": "RSA_2048",
            "public_key": TEST_PUBLIC_KEY,
            "private_key": format!("PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID <{KEY_ID}>\n{TEST_PRIVATE_KEY}"),
        })
        .to_string()
    }

    /// Operations are done only after `polls` GETs of the operation.
    pub fn set_slow(&self, polls: u32) {
        self.with(|s| s.slow_polls = polls);
    }

    /// The next operation of `kind` (`instances.create`, `instances.delete`,
    /// `containers.create`, `containers.delete`, `containers.update`, `revisions.deploy`)
    /// ends failed with this gRPC code.
    pub fn fail_next(&self, kind: &str, code: i64, message: &str) {
        self.with(|s| {
            s.fail_next
                .entry(kind.to_string())
                .or_default()
                .push_back((code, message.to_string()))
        });
    }

    /// The next call of `kind` is answered at once with this HTTP status and gRPC code.
    pub fn fail_next_call(&self, kind: &str, http: u16, code: i64, message: &str) {
        self.with(|s| {
            s.fail_http.entry(kind.to_string()).or_default().push_back((
                http,
                code,
                message.to_string(),
            ))
        });
    }

    /// IAM tokens issued from now on expire after `ttl`.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.with(|s| s.token_ttl = Some(ttl));
    }

    /// How many IAM tokens were issued.
    pub fn tokens_issued(&self) -> usize {
        self.with(|s| s.tokens_issued)
    }

    /// Every request received.
    pub fn requests(&self) -> Vec<Recorded> {
        self.with(|s| s.requests.clone())
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.with(|s| s.requests.clear());
    }

    /// Requests refused for not matching the documented shape, with why.
    pub fn violations(&self) -> Vec<String> {
        self.with(|s| s.violations.clone())
    }

    /// The instances that exist.
    pub fn instances(&self) -> Vec<Value> {
        self.with(|s| s.instances.values().cloned().collect())
    }

    /// The containers that exist.
    pub fn containers(&self) -> Vec<Value> {
        self.with(|s| s.containers.values().cloned().collect())
    }

    /// The revisions deployed.
    pub fn revisions(&self) -> Vec<Value> {
        self.with(|s| s.revisions.values().cloned().collect())
    }

    /// The container invocations: (container id, body).
    pub fn invocations(&self) -> Vec<(String, Value)> {
        self.with(|s| s.invocations.clone())
    }
}

impl Drop for FakeYandex {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn error(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({ "code": code, "message": message.into(), "details": [] })),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect()
        })
        .unwrap_or_default()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match h.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `name="x"`: the only filter the fake (and, for labels, the real API) supports.
fn name_from_filter(filter: &str) -> Result<Option<String>, String> {
    if filter.is_empty() {
        return Ok(None);
    }
    let f = filter.trim();
    let rest = f
        .strip_prefix("name")
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix('='))
        .map(str::trim)
        .ok_or_else(|| {
            format!(
                "unsupported filter `{filter}` (only name=\"…\" here; labels cannot be filtered)"
            )
        })?;
    let name = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(|| format!("filter value must be quoted: `{filter}`"))?;
    Ok(Some(name.to_string()))
}

fn handle(
    st: &Arc<Mutex<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = st.lock().unwrap();
    let path = uri.path().to_string();
    let body_json: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                s.violations
                    .push(format!("{method} {path}: body is not JSON: {e}"));
                return error(StatusCode::BAD_REQUEST, 3, "request body is not JSON");
            }
        }
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let authorized = bearer
        .as_ref()
        .and_then(|t| s.tokens.get(t))
        .is_some_and(|exp| *exp > now());
    let mut hdrs = BTreeMap::new();
    if let Some(v) = headers
        .get("x-ycf-container-integration-type")
        .and_then(|v| v.to_str().ok())
    {
        hdrs.insert(
            "x-ycf-container-integration-type".to_string(),
            v.to_string(),
        );
    }
    s.requests.push(Recorded {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        body: body_json.clone(),
        headers: hdrs.clone(),
        authorized,
    });
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Unauthenticated endpoints.
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["iam", "v1", "tokens"]) => return iam_token(&mut s, &body_json),
        ("GET", ["computeMetadata", "v1", "instance", "service-accounts", "default", "token"]) => {
            if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
                return (StatusCode::FORBIDDEN, "Metadata-Flavor: Google is required")
                    .into_response();
            }
            let (token, ttl) = issue(&mut s);
            return ok(
                json!({ "access_token": token, "expires_in": ttl.as_secs(), "token_type": "Bearer" }),
            );
        }
        _ => {}
    }
    if !authorized {
        let why = if bearer.is_some() {
            "the IAM token is invalid or expired"
        } else {
            "Authorization: Bearer is missing"
        };
        return error(StatusCode::UNAUTHORIZED, 16, why);
    }
    let kind = match (method.as_str(), segs.as_slice()) {
        ("POST", ["compute", "v1", "instances"]) => "instances.create",
        ("GET", ["compute", "v1", "instances"]) => "instances.list",
        ("GET", ["compute", "v1", "instances", _]) => "instances.get",
        ("DELETE", ["compute", "v1", "instances", _]) => "instances.delete",
        ("GET", ["operations", _]) => "operations.get",
        ("POST", ["containers", "v1", "containers"]) => "containers.create",
        ("GET", ["containers", "v1", "containers"]) => "containers.list",
        ("GET", ["containers", "v1", "containers", _]) => "containers.get",
        ("PATCH", ["containers", "v1", "containers", _]) => "containers.update",
        ("DELETE", ["containers", "v1", "containers", _]) => "containers.delete",
        ("POST", ["containers", "v1", "revisions:deploy"]) => "revisions.deploy",
        ("GET", ["containers", "v1", "revisions"]) => "revisions.list",
        ("POST", ["invoke", _]) => "invoke",
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                12,
                format!("no such method: {method} {path}"),
            )
        }
    };
    if let Some((http, code, msg)) = s.fail_http.get_mut(kind).and_then(|q| q.pop_front()) {
        return error(
            StatusCode::from_u16(http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            msg,
        );
    }
    let q = query(&uri);
    let last = segs.last().copied().unwrap_or_default().to_string();
    match kind {
        "instances.create" => create_instance(&mut s, &body_json),
        "instances.list" => {
            let Some(folder) = q.get("folderId").filter(|f| !f.is_empty()) else {
                return invalid(&mut s, kind, "folderId is required".into());
            };
            let name = match name_from_filter(q.get("filter").map(String::as_str).unwrap_or("")) {
                Ok(n) => n,
                Err(e) => return invalid(&mut s, kind, e),
            };
            let list: Vec<Value> = s
                .instances
                .values()
                .filter(|i| i["folderId"] == json!(folder))
                .filter(|i| name.as_ref().is_none_or(|n| i["name"] == json!(n)))
                .cloned()
                .collect();
            ok(json!({ "instances": list }))
        }
        "instances.get" => match s.instances.get(&last) {
            Some(i) => ok(i.clone()),
            None => error(
                StatusCode::NOT_FOUND,
                5,
                format!("Instance {last} not found"),
            ),
        },
        "instances.delete" => {
            if !s.instances.contains_key(&last) {
                return error(
                    StatusCode::NOT_FOUND,
                    5,
                    format!("Instance {last} not found"),
                );
            }
            if let Some(i) = s.instances.get_mut(&last) {
                i["status"] = json!("DELETING");
            }
            let meta = json!({ "@type": "type.googleapis.com/yandex.cloud.compute.v1.DeleteInstanceMetadata", "instanceId": last });
            operation(
                &mut s,
                kind,
                "Delete instance",
                meta,
                json!({}),
                Some(Effect::InstanceGone(last)),
            )
        }
        "operations.get" => get_operation(&mut s, &last),
        "containers.create" => create_container(&mut s, &body_json),
        "containers.list" => {
            let Some(folder) = q.get("folderId").filter(|f| !f.is_empty()) else {
                return invalid(&mut s, kind, "folderId is required".into());
            };
            let name = match name_from_filter(q.get("filter").map(String::as_str).unwrap_or("")) {
                Ok(n) => n,
                Err(e) => return invalid(&mut s, kind, e),
            };
            let list: Vec<Value> = s
                .containers
                .values()
                .filter(|c| c["folderId"] == json!(folder))
                .filter(|c| name.as_ref().is_none_or(|n| c["name"] == json!(n)))
                .cloned()
                .collect();
            ok(json!({ "containers": list }))
        }
        "containers.get" => match s.containers.get(&last) {
            Some(c) => ok(c.clone()),
            None => error(
                StatusCode::NOT_FOUND,
                5,
                format!("Container {last} not found"),
            ),
        },
        "containers.update" => update_container(&mut s, &last, &body_json),
        "containers.delete" => {
            if !s.containers.contains_key(&last) {
                return error(
                    StatusCode::NOT_FOUND,
                    5,
                    format!("Container {last} not found"),
                );
            }
            if let Some(c) = s.containers.get_mut(&last) {
                c["status"] = json!("DELETING");
            }
            let meta = json!({ "containerId": last });
            operation(
                &mut s,
                kind,
                "Delete container",
                meta,
                json!({}),
                Some(Effect::ContainerGone(last)),
            )
        }
        "revisions.deploy" => deploy_revision(&mut s, &body_json),
        "revisions.list" => {
            let Some(container) = q.get("containerId").or(q.get("folderId")).cloned() else {
                return invalid(
                    &mut s,
                    kind,
                    "exactly one of containerId, folderId is required".into(),
                );
            };
            let list: Vec<Value> = s
                .revisions
                .values()
                .filter(|r| r["containerId"] == json!(container))
                .cloned()
                .collect();
            ok(json!({ "revisions": list }))
        }
        "invoke" => invoke(&mut s, &last, &hdrs, body_json),
        _ => error(StatusCode::NOT_FOUND, 12, "unimplemented"),
    }
}

fn invalid(s: &mut State, kind: &str, why: String) -> Response {
    s.violations.push(format!("{kind}: {why}"));
    error(StatusCode::BAD_REQUEST, 3, why)
}

fn issue(s: &mut State) -> (String, Duration) {
    let ttl = s.token_ttl.unwrap_or(Duration::from_secs(12 * 3600));
    s.tokens_issued += 1;
    let n = s.tokens_issued;
    let token = format!("t1.fake.{n:08}.{}", s.id("tok"));
    s.tokens.insert(token.clone(), now() + ttl);
    (token, ttl)
}

fn iam_token(s: &mut State, body: &Value) -> Response {
    let Some(jwt) = body.get("jwt").and_then(Value::as_str) else {
        return invalid(s, "iam.tokens", "the body must be {\"jwt\": \"…\"}".into());
    };
    let header = match jsonwebtoken::decode_header(jwt) {
        Ok(h) => h,
        Err(e) => return invalid(s, "iam.tokens", format!("not a JWT: {e}")),
    };
    if header.alg != jsonwebtoken::Algorithm::PS256 {
        return invalid(
            s,
            "iam.tokens",
            format!("alg must be PS256, not {:?}", header.alg),
        );
    }
    if header.kid.as_deref() != Some(KEY_ID) {
        return error(StatusCode::UNAUTHORIZED, 16, "unknown key id");
    }
    let key =
        jsonwebtoken::DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes()).expect("test key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
    validation.set_audience(&[IAM_AUDIENCE]);
    validation.set_issuer(&[SERVICE_ACCOUNT_ID]);
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    let data = match jsonwebtoken::decode::<Value>(jwt, &key, &validation) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::UNAUTHORIZED, 16, format!("JWT refused: {e}")),
    };
    let (iat, exp) = (data.claims["iat"].as_i64(), data.claims["exp"].as_i64());
    match (iat, exp) {
        (Some(iat), Some(exp)) if exp > iat && exp - iat <= 3600 => {}
        _ => {
            return invalid(
                s,
                "iam.tokens",
                "iat and exp are required, at most an hour apart".into(),
            )
        }
    }
    let (token, ttl) = issue(s);
    ok(json!({ "iamToken": token, "expiresAt": rfc3339(now() + ttl) }))
}

fn new_op(s: &mut State, description: &str, metadata: Value) -> (String, Value) {
    let id = s.id("fop");
    let t = rfc3339(now());
    (
        id.clone(),
        json!({
            "id": id,
            "description": description,
            "createdAt": t,
            "createdBy": SERVICE_ACCOUNT_ID,
            "modifiedAt": t,
            "done": false,
            "metadata": metadata,
        }),
    )
}

/// Registers an operation; answers it (done at once unless slow or failed later).
fn operation(
    s: &mut State,
    kind: &str,
    description: &str,
    metadata: Value,
    response: Value,
    effect: Option<Effect>,
) -> Response {
    let (id, value) = new_op(s, description, metadata);
    let outcome = match s.fail_next.get_mut(kind).and_then(|q| q.pop_front()) {
        Some(e) => Err(e),
        None => Ok(response),
    };
    let op = Op {
        value,
        polls_left: s.slow_polls,
        outcome,
        on_done: effect,
    };
    s.ops.insert(id.clone(), op);
    let answer = op_view(s, &id, false);
    ok(answer)
}

/// The operation as the API shows it; finishing it (and applying its effect) when due.
fn op_view(s: &mut State, id: &str, polled: bool) -> Value {
    let Some(op) = s.ops.get_mut(id) else {
        return Value::Null;
    };
    if polled && op.polls_left > 0 {
        op.polls_left -= 1;
    }
    let done = op.polls_left == 0;
    let mut v = op.value.clone();
    if !done {
        return v;
    }
    v["done"] = json!(true);
    v["modifiedAt"] = json!(rfc3339(now()));
    let outcome = op.outcome.clone();
    let effect = op.on_done.take();
    match &outcome {
        Ok(resp) => v["response"] = resp.clone(),
        Err((code, message)) => {
            v["error"] = json!({ "code": code, "message": message, "details": [] })
        }
    }
    apply(s, effect, outcome.is_ok());
    // Keep the answer stable for later polls.
    if let Some(op) = s.ops.get_mut(id) {
        op.value = v.clone();
        op.polls_left = 0;
    }
    v
}

fn apply(s: &mut State, effect: Option<Effect>, success: bool) {
    match effect {
        Some(Effect::InstanceRunning(id)) => {
            if success {
                if let Some(i) = s.instances.get_mut(&id) {
                    i["status"] = json!("RUNNING");
                }
            } else {
                s.instances.remove(&id);
            }
        }
        Some(Effect::InstanceGone(id)) => {
            if success {
                s.instances.remove(&id);
            } else if let Some(i) = s.instances.get_mut(&id) {
                i["status"] = json!("RUNNING");
            }
        }
        Some(Effect::ContainerActive(id)) => {
            if success {
                if let Some(c) = s.containers.get_mut(&id) {
                    c["status"] = json!("ACTIVE");
                }
            } else {
                s.containers.remove(&id);
            }
        }
        Some(Effect::ContainerGone(id)) => {
            if success {
                s.containers.remove(&id);
                s.revisions.retain(|_, r| r["containerId"] != json!(id));
            } else if let Some(c) = s.containers.get_mut(&id) {
                c["status"] = json!("ACTIVE");
            }
        }
        Some(Effect::RevisionActive(container, rev)) => {
            if success {
                for (rid, r) in s.revisions.iter_mut() {
                    if r["containerId"] == json!(container) {
                        r["status"] = json!(if *rid == rev { "ACTIVE" } else { "OBSOLETE" });
                    }
                }
            } else {
                s.revisions.remove(&rev);
            }
        }
        None => {}
    }
}

fn get_operation(s: &mut State, id: &str) -> Response {
    if !s.ops.contains_key(id) {
        return error(
            StatusCode::NOT_FOUND,
            5,
            format!("Operation {id} not found"),
        );
    }
    ok(op_view(s, id, true))
}

fn create_instance(s: &mut State, body: &Value) -> Response {
    if let Err(why) = shape::create_instance(body) {
        return invalid(s, "instances.create", why);
    }
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let folder = body["folderId"].clone();
    if !name.is_empty()
        && s.instances
            .values()
            .any(|i| i["name"] == json!(name) && i["folderId"] == folder)
    {
        return error(
            StatusCode::CONFLICT,
            6,
            format!("Instance with name {name} already exists"),
        );
    }
    let id = s.id("fhm");
    let r = &body["resourcesSpec"];
    let instance = json!({
        "id": id,
        "folderId": folder,
        "createdAt": rfc3339(now()),
        "name": name,
        "description": body.get("description").cloned().unwrap_or(json!("")),
        "labels": body.get("labels").cloned().unwrap_or(json!({})),
        "zoneId": body["zoneId"],
        "platformId": body["platformId"],
        "resources": { "memory": r["memory"], "cores": r["cores"], "coreFraction": r.get("coreFraction").cloned().unwrap_or(json!("100")), "gpus": "0" },
        "status": "PROVISIONING",
        "fqdn": format!("{id}.auto.internal"),
        "schedulingPolicy": body.get("schedulingPolicy").cloned().unwrap_or(json!({})),
        "serviceAccountId": body.get("serviceAccountId").cloned().unwrap_or(json!("")),
        "networkInterfaces": [{ "index": "0", "subnetId": body["networkInterfaceSpecs"][0]["subnetId"] }],
        "metadata_user_data_bytes": body["metadata"]["user-data"].as_str().map(str::len).unwrap_or(0),
    });
    s.instances.insert(id.clone(), instance.clone());
    let meta = json!({ "@type": "type.googleapis.com/yandex.cloud.compute.v1.CreateInstanceMetadata", "instanceId": id });
    let mut response = instance;
    response["status"] = json!("RUNNING");
    operation(
        s,
        "instances.create",
        "Create instance",
        meta,
        response,
        Some(Effect::InstanceRunning(id)),
    )
}

fn create_container(s: &mut State, body: &Value) -> Response {
    if let Err(why) = shape::create_container(body) {
        return invalid(s, "containers.create", why);
    }
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let folder = body["folderId"].clone();
    if !name.is_empty()
        && s.containers
            .values()
            .any(|c| c["name"] == json!(name) && c["folderId"] == folder)
    {
        return error(
            StatusCode::CONFLICT,
            6,
            format!("Container with name {name} already exists"),
        );
    }
    let id = s.id("bba");
    let container = json!({
        "id": id,
        "folderId": folder,
        "createdAt": rfc3339(now()),
        "name": name,
        "description": body.get("description").cloned().unwrap_or(json!("")),
        "labels": body.get("labels").cloned().unwrap_or(json!({})),
        "url": format!("{}/invoke/{id}", s.base),
        "status": "CREATING",
    });
    s.containers.insert(id.clone(), container.clone());
    let mut response = container;
    response["status"] = json!("ACTIVE");
    operation(
        s,
        "containers.create",
        "Create container",
        json!({ "containerId": id }),
        response,
        Some(Effect::ContainerActive(id)),
    )
}

fn update_container(s: &mut State, id: &str, body: &Value) -> Response {
    if let Err(why) = shape::update_container(body) {
        return invalid(s, "containers.update", why);
    }
    let Some(c) = s.containers.get_mut(id) else {
        return error(
            StatusCode::NOT_FOUND,
            5,
            format!("Container {id} not found"),
        );
    };
    let mask = body.get("updateMask").and_then(Value::as_str).unwrap_or("");
    for field in mask.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        if let Some(v) = body.get(field) {
            c[field] = v.clone();
        }
    }
    let response = c.clone();
    operation(
        s,
        "containers.update",
        "Update container",
        json!({ "containerId": id }),
        response,
        None,
    )
}

fn deploy_revision(s: &mut State, body: &Value) -> Response {
    if let Err(why) = shape::deploy_revision(body) {
        return invalid(s, "revisions.deploy", why);
    }
    let container = body["containerId"].as_str().unwrap_or_default().to_string();
    if !s.containers.contains_key(&container) {
        return error(
            StatusCode::NOT_FOUND,
            5,
            format!("Container {container} not found"),
        );
    }
    let id = s.id("bbr");
    let mut revision = Map::new();
    revision.insert("id".into(), json!(id));
    revision.insert("containerId".into(), json!(container));
    revision.insert("createdAt".into(), json!(rfc3339(now())));
    revision.insert("status".into(), json!("CREATING"));
    for (k, v) in body.as_object().into_iter().flatten() {
        match k.as_str() {
            "containerId" => {}
            "imageSpec" => {
                revision.insert("image".into(), v.clone());
            }
            _ => {
                revision.insert(k.clone(), v.clone());
            }
        }
    }
    let long_lived = shape::duration_s(&body["executionTimeout"]).is_some_and(|t| t > 600.0);
    revision.insert("longLived".into(), json!(long_lived));
    let revision = Value::Object(revision);
    s.revisions.insert(id.clone(), revision.clone());
    let mut response = revision;
    response["status"] = json!("ACTIVE");
    operation(
        s,
        "revisions.deploy",
        "Deploy container revision",
        json!({ "containerRevisionId": id }),
        response,
        Some(Effect::RevisionActive(container, id)),
    )
}

fn invoke(s: &mut State, id: &str, headers: &BTreeMap<String, String>, body: Value) -> Response {
    if !s.containers.contains_key(id) {
        return error(
            StatusCode::NOT_FOUND,
            5,
            format!("Container {id} not found"),
        );
    }
    let Some(rev) = s
        .revisions
        .values()
        .find(|r| r["containerId"] == json!(id) && r["status"] == json!("ACTIVE"))
        .cloned()
    else {
        return error(
            StatusCode::BAD_GATEWAY,
            9,
            "the container has no active revision",
        );
    };
    let is_async = headers
        .get("x-ycf-container-integration-type")
        .map(String::as_str)
        == Some("async");
    if is_async
        && rev
            .pointer("/asyncInvocationConfig/serviceAccountId")
            .is_none()
    {
        return invalid(
            s,
            "invoke",
            "async invocation needs asyncInvocationConfig.serviceAccountId on the revision".into(),
        );
    }
    s.invocations.push((id.to_string(), body));
    if is_async {
        StatusCode::ACCEPTED.into_response()
    } else {
        ok(json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn http(base: &str, request: &str) -> String {
        let addr = base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn every_call_needs_a_token_it_issued() {
        let fake = FakeYandex::start();
        let get = |auth: &str| {
            http(
                &fake.base,
                &format!("GET /compute/v1/instances/fhm1 HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
            )
        };
        assert!(get("").starts_with("HTTP/1.1 401"));
        assert!(get("Authorization: Bearer made-up\r\n").starts_with("HTTP/1.1 401"));
        let meta = http(
            &fake.base,
            "GET /computeMetadata/v1/instance/service-accounts/default/token HTTP/1.1\r\nHost: x\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n",
        );
        let body: Value = serde_json::from_str(meta.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        let token = body["access_token"].as_str().unwrap();
        let answer = get(&format!("Authorization: Bearer {token}\r\n"));
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        assert!(answer.contains("\"code\":5"));
        assert_eq!(fake.requests().len(), 4);
        assert!(fake.requests()[3].authorized);
    }
}
