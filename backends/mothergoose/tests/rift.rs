//! Rift in the fleet, as MotherGoose hands it out: a runner of an egg that names a Rift
//! gets its own S3 credentials and its egg's prefix; a runner of an egg without one gets
//! no cache (Property 22); Rift's check of a runner says yes while it lives and no once it
//! is terminated, and needs Rift's own token.

mod support;

use gosling_fleet::Providers;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use support::*;

const RIFT: &str = "rift \"main\" {\n  address      = \"http://127.0.0.1:9000\"\n  bucket       = \"runner-cache\"\n  docker_proxy = true\n}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_get_their_own_cache_credentials_and_rift_checks_them() {
    let mut h = Harness::new().await;
    let cached = egg("cached", "vm", 7, &["docker"], &h.gitlab.url)
        .replace("type = \"vm\"", "type = \"vm\"\n  rift = \"main\"");
    let plain = egg("plain", "vm", 8, &["docker"], &h.gitlab.url);
    h.deploy(&[
        ("Rift/main.fly".into(), RIFT.into()),
        ("Eggs/cached.fly".into(), cached),
        ("Eggs/plain.fly".into(), plain),
    ])
    .await;
    let app = h
        .app(Providers::single(idle_runner(h.dir.path())), None)
        .await;
    let running = h.start(app.clone()).await;
    h.gitlab.create_job(7, "a", &["docker"]).await;
    h.gitlab.create_job(8, "b", &["docker"]).await;
    let store = h.store.clone();
    eventually(Duration::from_secs(30), "two runners", || async {
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
    let runners: Vec<_> = store
        .runners()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.item)
        .collect();
    let http = reqwest::Client::new();
    let config = |id: String| {
        let http = http.clone();
        let cred = app.keys.credential(&id, 0);
        let url = format!("{}/runners/{id}/config", h.base);
        async move {
            http.get(url)
                .bearer_auth(cred.expose())
                .send()
                .await
                .unwrap()
                .json::<gosling_api::RunnerConfig>()
                .await
                .unwrap()
        }
    };
    let mut secrets = Vec::new();
    for r in &runners {
        let cfg = config(r.id.clone()).await;
        match r.egg_name.as_str() {
            "cached" => {
                let c = cfg.cache.expect("the egg names a Rift");
                assert_eq!(
                    (c.server_address.as_str(), c.bucket.as_str()),
                    ("127.0.0.1:9000", "runner-cache")
                );
                assert_eq!(c.access_key, r.id, "its own access key");
                assert_eq!(c.path.as_deref(), Some("cached"), "its egg's prefix");
                assert!(c.insecure);
                assert_eq!(c.docker_host.as_deref(), Some("tcp://127.0.0.1:2375"));
                assert_eq!(c.docker_token, Some(format!("{}.{}", r.id, c.secret_key)));
                secrets.push((r.id.clone(), c.secret_key));
            }
            // Property 22: no Rift named, no cache.
            _ => assert!(cfg.cache.is_none()),
        }
    }
    let (id, secret) = secrets.pop().unwrap();
    let verify = |token: Option<String>, runner: String| {
        let mut req = http
            .post(format!("{}/rift/verify", h.base))
            .json(&json!({ "runner_id": runner }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap() }
    };
    assert_eq!(
        verify(None, id.clone()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let admin = app.ensure_admin_token().await.unwrap().unwrap();
    assert_eq!(
        verify(Some(admin.expose().into()), id.clone())
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "the admin token is not Rift's"
    );
    let rift_token = gosling_fleet::credentials::RIFT_TOKEN
        .rotate(&*h.store)
        .await
        .unwrap();
    let yes: gosling_api::RiftVerifyReply = verify(Some(rift_token.expose().into()), id.clone())
        .await
        .json()
        .await
        .unwrap();
    assert!(yes.allowed);
    assert_eq!(
        (yes.egg_name.as_deref(), yes.secret_key.as_deref()),
        (Some("cached"), Some(secret.as_str()))
    );
    assert!(yes.ttl_s <= 30, "revocation within 30 s");
    // Terminated: refused.
    let del = http
        .delete(format!("{}/runners/{id}?force=true", h.base))
        .bearer_auth(admin.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::ACCEPTED);
    eventually(Duration::from_secs(30), "terminated", || async {
        store.runner(&id).await.unwrap().unwrap().item.state == "terminated"
    })
    .await;
    let no: gosling_api::RiftVerifyReply = verify(Some(rift_token.expose().into()), id.clone())
        .await
        .json()
        .await
        .unwrap();
    assert!(!no.allowed && no.secret_key.is_none());
    let unknown: gosling_api::RiftVerifyReply =
        verify(Some(rift_token.expose().into()), "r-nobody".into())
            .await
            .json()
            .await
            .unwrap();
    assert!(!unknown.allowed);
    running.stop().await;
}
