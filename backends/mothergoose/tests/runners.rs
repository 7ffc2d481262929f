//! Runners and who may act on them: a runner's credential acts only as that runner, the
//! admin token guards management, a terminated runner is refused; serverless runners end
//! at 60 minutes (Property 12); runners made after a deployment changes get the new
//! configuration and older ones are told to reload (Property 28); the OpenAPI document is
//! current; the router answers API Gateway events (Lambda).

mod support;

use gosling_fleet::Providers;
use gosling_state::{ManualClock, SharedClock};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::*;

const LIMIT: Duration = Duration::from_secs(30);

async fn runner_for_job(h: &Harness) -> gosling_state::Runner {
    h.gitlab.create_job(7, "build", &["docker"]).await;
    let store = h.store.clone();
    eventually(LIMIT, "a runner with a machine", || async {
        store
            .runners()
            .await
            .unwrap()
            .iter()
            .any(|r| r.item.machine.is_some())
    })
    .await;
    store.runners().await.unwrap().remove(0).item
}

fn beat(state: &str) -> serde_json::Value {
    json!({ "state": state, "measured_at": chrono::Utc::now() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_act_only_as_their_owner() {
    let mut h = Harness::new().await;
    h.deploy(&[
        (
            "Eggs/a.fly".into(),
            egg("a", "vm", 7, &["docker"], &h.gitlab.url),
        ),
        (
            "Eggs/b.fly".into(),
            egg("b", "vm", 8, &["docker"], &h.gitlab.url),
        ),
    ])
    .await;
    let app = h
        .app(Providers::single(idle_runner(h.dir.path())), None)
        .await;
    let running = h.start(app.clone()).await;
    let r = runner_for_job(&h).await;
    let http = reqwest::Client::new();
    let mine = app.keys.credential(&r.id, 0);
    let url = |p: &str| format!("{}{p}", h.base);

    // Its own heartbeat works; another runner's id with its credential is 403 (changing
    // nothing); a made-up credential is 401.
    let ok = http
        .post(url(&format!("/runners/{}/heartbeat", r.id)))
        .bearer_auth(mine.expose())
        .json(&beat("idle"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let other = gosling_state::Runner::new("r-other", "b", "vm", "aws", "x", chrono::Utc::now());
    app.fleet.create(&other, json!({}), vec![]).await.unwrap();
    let r2 = http
        .post(url("/runners/r-other/heartbeat"))
        .bearer_auth(mine.expose())
        .json(&beat("busy"))
        .send()
        .await
        .unwrap();
    assert_eq!(r2.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        h.store.runner("r-other").await.unwrap().unwrap().item.state,
        "provisioning",
        "nothing changed"
    );
    let forged = http
        .post(url("/runners/r-other/heartbeat"))
        .bearer_auth("gsr1.r-other.AAAA")
        .json(&beat("busy"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    // Its own egg's configuration, not another's.
    assert_eq!(
        http.get(url("/eggs/a"))
            .bearer_auth(mine.expose())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        http.get(url("/eggs/b"))
            .bearer_auth(mine.expose())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    // Management needs the admin token; a runner's credential is not one.
    for path in [
        "/runners",
        "/eggs",
        "/metrics",
        &format!("/runners/{}", r.id),
    ] {
        assert_eq!(
            http.get(url(path)).send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            http.get(url(path))
                .bearer_auth(mine.expose())
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let del = http
        .delete(url(&format!("/runners/{}", r.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.store.runner(&r.id).await.unwrap().unwrap().item.state,
        "idle",
        "nothing deleted"
    );
    let admin = app
        .ensure_admin_token()
        .await
        .unwrap()
        .expect("first use creates it");
    let list: Vec<gosling_api::RunnerView> = http
        .get(url("/runners"))
        .bearer_auth(admin.expose())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 2);
    let metrics = http
        .get(url("/metrics"))
        .bearer_auth(admin.expose())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mothergoose_heartbeats_total"),
        "{metrics}"
    );
    let sqlite_bytes: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mothergoose_sqlite_memory_bytes "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(
        sqlite_bytes > 0.0,
        "the embedded store's SQLite holds memory"
    );
    assert_eq!(
        http.get(url("/health")).send().await.unwrap().status(),
        StatusCode::OK,
        "health needs nothing"
    );
    // An operator ends the runner: it drains (it may run a job); once it reports it
    // stopped, it is removed, and its credential no longer works.
    let del = http
        .delete(url(&format!("/runners/{}", r.id)))
        .bearer_auth(admin.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::ACCEPTED);
    let reply: gosling_api::HeartbeatReply = http
        .post(url(&format!("/runners/{}/heartbeat", r.id)))
        .bearer_auth(mine.expose())
        .json(&beat("busy"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (reply.runner_state.as_str(), reply.instruction),
        ("draining", Some(gosling_api::Instruction::Drain))
    );
    http.post(url(&format!("/runners/{}/heartbeat", r.id)))
        .bearer_auth(mine.expose())
        .json(&beat("stopped"))
        .send()
        .await
        .unwrap();
    let store = h.store.clone();
    let id = r.id.clone();
    eventually(LIMIT, "terminated", || async {
        store.runner(&id).await.unwrap().unwrap().item.state == "terminated"
    })
    .await;
    let after = http
        .post(url(&format!("/runners/{}/heartbeat", r.id)))
        .bearer_auth(mine.expose())
        .json(&beat("idle"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        StatusCode::UNAUTHORIZED,
        "a terminated runner's credential"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_12_serverless_runners_end_at_sixty_minutes() {
    let mut h = Harness::new().await;
    h.deploy(&[(
        "Eggs/a.fly".into(),
        egg("a", "serverless", 7, &["docker"], &h.gitlab.url),
    )])
    .await;
    let clock = ManualClock::new(chrono::Utc::now());
    let shared: SharedClock = Arc::new(clock.clone());
    let app = h
        .app(Providers::single(idle_runner(h.dir.path())), Some(shared))
        .await;
    let running = h.start(app.clone()).await;
    let r = runner_for_job(&h).await;
    // It runs a job that never ends.
    let http = reqwest::Client::new();
    let cred = app.keys.credential(&r.id, 0);
    http.post(format!("{}/runners/{}/heartbeat", h.base, r.id))
        .bearer_auth(cred.expose())
        .json(&beat("busy"))
        .send()
        .await
        .unwrap();
    mothergoose::reconcile::pass(&app, false).await.unwrap();
    assert_eq!(
        h.store.runner(&r.id).await.unwrap().unwrap().item.state,
        "busy",
        "59 minutes: left alone"
    );
    clock.advance(chrono::Duration::minutes(66));
    mothergoose::reconcile::pass(&app, false).await.unwrap();
    let store = h.store.clone();
    let id = r.id.clone();
    eventually(LIMIT, "ended after 60 minutes", || async {
        store.runner(&id).await.unwrap().unwrap().item.state == "terminated"
    })
    .await;
    let pid: u32 = r.machine.unwrap()["id"].as_str().unwrap().parse().unwrap();
    assert!(!gosling_fleet::local::process_runs(pid, &r.id));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_28_runners_made_after_a_deploy_get_the_new_configuration() {
    let mut h = Harness::new().await;
    let v1 = egg("a", "vm", 7, &["docker"], &h.gitlab.url);
    h.deploy(&[("Eggs/a.fly".into(), v1.clone())]).await;
    let app = h
        .app(Providers::single(idle_runner(h.dir.path())), None)
        .await;
    let running = h.start(app.clone()).await;
    let old = runner_for_job(&h).await;
    let http = reqwest::Client::new();
    let cred = app.keys.credential(&old.id, 0);
    let cfg: gosling_api::RunnerConfig = http
        .get(format!("{}/runners/{}/config", h.base, old.id))
        .bearer_auth(cred.expose())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg.egg.environment["STAGE"], "test");
    http.post(format!("{}/runners/{}/heartbeat", h.base, old.id)).bearer_auth(cred.expose()).json(&json!({"state": "busy", "measured_at": chrono::Utc::now(), "config_hash": cfg.egg.config_hash})).send().await.unwrap();

    let v2 = v1.replace("STAGE = \"test\"", "STAGE = \"prod\"");
    h.deploy(&[("Eggs/a.fly".into(), v2)]).await;
    let app2 = app.clone();
    eventually(LIMIT, "the new deployment in force", || async {
        app2.deployed.current().is_some_and(|d| d.version == 2)
    })
    .await;
    // The old runner is busy with its job: a new job gets a new runner, with the new config.
    h.gitlab.create_job(7, "build-2", &["docker"]).await;
    let store = h.store.clone();
    eventually(LIMIT, "a second runner", || async {
        store
            .runners()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.item.machine.is_some())
            .count()
            == 2
    })
    .await;
    let new = store
        .runners()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.item)
        .find(|r| r.id != old.id)
        .unwrap();
    let cred2 = app.keys.credential(&new.id, 0);
    let cfg2: gosling_api::RunnerConfig = http
        .get(format!("{}/runners/{}/config", h.base, new.id))
        .bearer_auth(cred2.expose())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg2.egg.environment["STAGE"], "prod");
    assert_eq!(new.config_hash, cfg2.egg.config_hash);
    // The old one, once idle, is told to reload.
    let reply: gosling_api::HeartbeatReply = http.post(format!("{}/runners/{}/heartbeat", h.base, old.id)).bearer_auth(cred.expose()).json(&json!({"state": "idle", "measured_at": chrono::Utc::now(), "config_hash": cfg.egg.config_hash})).send().await.unwrap().json().await.unwrap();
    assert_eq!(reply.instruction, Some(gosling_api::Instruction::Reload));
    assert_eq!(
        reply.config_hash.as_deref(),
        Some(cfg2.egg.config_hash.as_str())
    );
    running.stop().await;
}

#[test]
fn the_committed_openapi_document_is_current() {
    use utoipa::OpenApi;
    let generated = mothergoose::http::ApiDoc::openapi()
        .to_pretty_json()
        .unwrap()
        + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "backends/mothergoose/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p mothergoose --test runners`");
    for p in [
        "/webhooks/gitlab",
        "/runners/{id}/heartbeat",
        "/runners/{id}/config",
        "/eggs/{name}",
        "/jobs/{name}/trigger",
        "/health",
        "/metrics",
        "/rift/verify",
    ] {
        assert!(generated.contains(&format!("\"{p}\"")), "{p} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_answers_api_gateway_events() {
    use tower::ServiceExt;
    let h = Harness::new().await;
    h.deploy(&[(
        "Eggs/a.fly".into(),
        egg("a", "vm", 7, &["docker"], &h.gitlab.url),
    )])
    .await;
    let app = h
        .app(Providers::single(idle_runner(h.dir.path())), None)
        .await;
    let service = mothergoose::lambda::service(app.clone());
    let event = |path: &str, method: &str, token: Option<&str>, body: &str| {
        json!({
            "resource": "/{proxy+}", "path": path, "httpMethod": method,
            "headers": { "Content-Type": "application/json", "X-Gitlab-Token": token.unwrap_or(""), "X-Gitlab-Event": "Job Hook" },
            "multiValueHeaders": {}, "queryStringParameters": null, "multiValueQueryStringParameters": null,
            "pathParameters": { "proxy": path.trim_start_matches('/') }, "stageVariables": null,
            "requestContext": { "accountId": "123456789012", "resourceId": "abc", "stage": "prod", "requestId": "r-1", "identity": { "sourceIp": "127.0.0.1" }, "resourcePath": "/{proxy+}", "httpMethod": method, "apiId": "api", "path": format!("/prod{path}") },
            "body": body, "isBase64Encoded": false
        })
        .to_string()
    };
    let hook = r#"{"object_kind":"build","build_id":1,"build_status":"pending","project_id":7}"#;
    let call = |e: String| {
        let service = service.clone();
        async move {
            let req = lambda_http::request::from_str(&e).expect("an API Gateway event");
            service.oneshot(req).await.unwrap().status()
        }
    };
    assert_eq!(call(event("/health", "GET", None, "")).await, 200);
    assert_eq!(
        call(event("/webhooks/gitlab", "POST", Some(SECRET), hook)).await,
        200
    );
    assert_eq!(
        call(event("/webhooks/gitlab", "POST", Some("wrong"), hook)).await,
        403
    );
    assert_eq!(app.queue.stats().await.unwrap().ready, 1);
}
