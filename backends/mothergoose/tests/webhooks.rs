//! Webhook intake: every bad request is refused with its status and queues nothing;
//! Property 33 as a proptest over random bodies and headers; signed deliveries; the
//! body limit; duplicates acknowledged without a second task.

mod support;

use gosling_fleet::Providers;
use gosling_gitlab::SigningKey;
use gosling_queue::QueueStats;
use proptest::prelude::*;
use reqwest::StatusCode;
use std::sync::Arc;
use support::*;

const JOB: &str = r#"{"object_kind":"build","build_id":1,"build_status":"pending","project_id":7}"#;

async fn started(signing: Option<&str>) -> (Harness, mothergoose::Running, Arc<mothergoose::App>) {
    let mut h = Harness::new().await;
    h.settings.workers = 0; // nothing consumes the queue: what was queued stays countable
    h.settings.signing_secret = signing.map(gosling_state::SecretString::new);
    let files = vec![(
        "Eggs/a.fly".to_string(),
        egg("a", "vm", 7, &["docker"], &h.gitlab.url),
    )];
    h.deploy(&files).await;
    let app = h
        .app(Providers::single(idle_runner(h.dir.path())), None)
        .await;
    let running = h.start(app.clone()).await;
    (h, running, app)
}

async fn post(h: &Harness, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> StatusCode {
    let mut req = reqwest::Client::new()
        .post(h.hook_url())
        .header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body).send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_queue_nothing() {
    let (h, running, app) = started(None).await;
    let ok = ("X-Gitlab-Token", SECRET);
    // Property 33: no token or a wrong one is 403.
    assert_eq!(post(&h, &[], JOB).await, StatusCode::FORBIDDEN);
    assert_eq!(
        post(&h, &[("X-Gitlab-Token", "guess")], JOB).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&h, &[("X-Gitlab-Token", "")], JOB).await,
        StatusCode::FORBIDDEN
    );
    // Malformed JSON and unknown kinds are 400.
    assert_eq!(post(&h, &[ok], "{not json").await, StatusCode::BAD_REQUEST);
    assert_eq!(
        post(&h, &[ok], r#"{"object_kind":"note"}"#).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(&h, &[ok], r#"{"object_kind":"build","build_id":"one"}"#).await,
        StatusCode::BAD_REQUEST
    );
    // Oversize is 413 (the limit is 1 MiB).
    let big = format!(
        r#"{{"object_kind":"build","pad":"{}"}}"#,
        "x".repeat(1 << 20)
    );
    assert_eq!(post(&h, &[ok], big).await, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        app.queue.stats().await.unwrap(),
        QueueStats::default(),
        "nothing was queued"
    );
    // A good one is queued once; its replay (same delivery id) is acknowledged, not queued.
    let id = ("X-Gitlab-Event-UUID", "delivery-1");
    assert_eq!(post(&h, &[ok, id], JOB).await, StatusCode::OK);
    assert_eq!(post(&h, &[ok, id], JOB).await, StatusCode::OK);
    assert_eq!(app.queue.stats().await.unwrap().ready, 1);
    // A body just under the limit is accepted.
    let near = format!(
        r#"{{"object_kind":"build","build_id":2,"build_status":"created","project_id":7,"pad":"{}"}}"#,
        "x".repeat((1 << 20) - 200)
    );
    assert_eq!(
        post(&h, &[ok, ("X-Gitlab-Event-UUID", "delivery-2")], near).await,
        StatusCode::OK
    );
    assert_eq!(
        app.metrics.get("mothergoose_webhooks_total", "forbidden"),
        3
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_are_checked() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (h, running, app) = started(Some(secret)).await;
    let key = SigningKey::parse(secret).unwrap();
    let now = chrono::Utc::now().timestamp();
    let sig = key.sign("msg-1", now, JOB.as_bytes());
    let ts = now.to_string();
    let good = [
        ("X-Gitlab-Token", SECRET),
        ("webhook-id", "msg-1"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    assert_eq!(post(&h, &good, JOB).await, StatusCode::OK);
    // Unsigned, wrongly signed, stale: 401; nothing more queued.
    assert_eq!(post(&h, &good[..1], JOB).await, StatusCode::UNAUTHORIZED);
    let tampered =
        r#"{"object_kind":"build","build_id":9,"build_status":"pending","project_id":7}"#;
    assert_eq!(post(&h, &good, tampered).await, StatusCode::UNAUTHORIZED);
    let old = (now - 301).to_string();
    let stale_sig = key.sign("msg-2", now - 301, JOB.as_bytes());
    let stale = [
        ("X-Gitlab-Token", SECRET),
        ("webhook-id", "msg-2"),
        ("webhook-timestamp", old.as_str()),
        ("webhook-signature", stale_sig.as_str()),
    ];
    assert_eq!(post(&h, &stale, JOB).await, StatusCode::UNAUTHORIZED);
    // The same delivery again (a replay) is acknowledged and not queued again.
    assert_eq!(post(&h, &good, JOB).await, StatusCode::OK);
    assert_eq!(app.queue.stats().await.unwrap().ready, 1);
    running.stop().await;
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![Just(SECRET.to_string()), "[ -~]{0,40}", Just(String::new())]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

    // Property 33: Webhook Authentication — whatever the body and headers, a request
    // without the shared secret is refused with 403 and never queued; no input panics.
    #[test]
    fn property_33_unauthenticated_requests_never_reach_the_queue(
        token in proptest::option::of(header_value()),
        body in prop_oneof![Just(JOB.to_string()), ".{0,200}", "[{}\\[\\]\":,a-z0-9]{0,200}"],
        event in proptest::option::of("[ -~]{0,20}"),
    ) {
        RT.block_on(async {
            let (h, running, app) = SHARED.get_or_init(|| async { started(None).await }).await;
            let _ = running;
            let before = app.queue.stats().await.unwrap().ready;
            let mut headers = vec![];
            if let Some(t) = &token { headers.push(("X-Gitlab-Token", t.as_str())); }
            if let Some(e) = &event { headers.push(("X-Gitlab-Event", e.as_str())); }
            let status = post(h, &headers, body.clone()).await;
            let after = app.queue.stats().await.unwrap().ready;
            let authenticated = token.as_deref() == Some(SECRET);
            if !authenticated {
                prop_assert_eq!(status, StatusCode::FORBIDDEN);
                prop_assert_eq!(after, before);
            } else {
                prop_assert!(matches!(status, StatusCode::OK | StatusCode::BAD_REQUEST), "{status}");
                prop_assert!(after <= before + 1);
            }
            Ok(())
        })?;
    }
}

/// One runtime for every case, so the server started by the first case keeps serving.
static RT: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

static SHARED: tokio::sync::OnceCell<(Harness, mothergoose::Running, Arc<mothergoose::App>)> =
    tokio::sync::OnceCell::const_new();
