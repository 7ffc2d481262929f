//! GitLab webhook registration against a mock GitLab (wiremock): method, path, the
//! PRIVATE-TOKEN header and the body are all checked.

mod support;

use fly_ir::Deployment;
use gosling::deploy::{self, Context, DeployError, DeployOutcome};
use gosling::gitlab::{GitLab, HookEvents, HookOutcome, Retry};
use gosling_state::*;
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "glpat-test-token";
const TARGET: &str = "https://mothergoose.example.com/webhooks/gitlab";

fn fast() -> Retry {
    Retry {
        attempts: 3,
        base_delay: Duration::from_millis(5),
        ..Retry::default()
    }
}

fn ir(eggs: &[(&str, u64)], gitlab: &str) -> Deployment {
    let files = eggs
        .iter()
        .map(|(name, project)| {
            fly_types::SourceFile::new(
                format!("Eggs/{name}.fly"),
                format!(
                    "egg \"{name}\" {{\n  type = \"vm\"\n  cloud {{\n    provider = \"aws\"\n    region = \"eu-west-1\"\n  }}\n  gitlab {{\n    url = \"{gitlab}\"\n    project_id = {project}\n    token_secret = \"vault://gitlab/t\"\n  }}\n}}\n"
                ),
            )
        })
        .collect();
    support::ir_of(files)
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Box<dyn StateStore>,
    objects: Box<dyn ObjectStore>,
    key: String,
    nest: std::path::PathBuf,
    key_file: std::path::PathBuf,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let nest = dir.path().join("nest");
        std::fs::create_dir_all(nest.join("Eggs")).unwrap();
        let store = open_state(
            &format!("sqlite://{}", nest.join(".gosling/state.db").display()),
            &OpenOptions::default(),
        )
        .await
        .unwrap();
        let objects = open_objects(
            &nest.join(".gosling/objects").display().to_string(),
            &OpenOptions::default(),
        )
        .await
        .unwrap();
        Fixture {
            key_file: dir.path().join("home/state.key"),
            _dir: dir,
            store,
            objects,
            key: Cipher::generate_key(),
            nest,
        }
    }

    fn ctx<'a>(&'a self, secret: Option<&str>, note: &'a (dyn Fn(&str) + Sync)) -> Context<'a> {
        Context {
            store: &*self.store,
            objects: &*self.objects,
            nest: self.nest.clone(),
            gitlab_token: Some(SecretString::new(TOKEN)),
            webhook_url: Some(TARGET.into()),
            webhook_secret: secret.map(SecretString::new),
            state_key: Some(SecretString::new(self.key.clone())),
            state_key_file: self.key_file.clone(),
            retry: fast(),
            actor: "test".into(),
            progress: note,
            note,
        }
    }

    async fn tables(&self) -> Vec<Vec<Item>> {
        let mut v = Vec::new();
        for t in [Table::Eggs, Table::Jobs, Table::Meta] {
            v.push(self.store.scan(t).await.unwrap());
        }
        v
    }
}

fn quiet(_: &str) {}

fn hooks_path(project: u64) -> String {
    format!("/api/v4/projects/{project}/hooks")
}

#[tokio::test]
async fn ensure_hook_creates_then_updates_in_place() {
    let server = MockServer::start().await;
    let gl = GitLab::new(SecretString::new(TOKEN), fast());
    let secret = SecretString::new("s3cret");
    Mock::given(method("GET"))
        .and(path(hooks_path(7)))
        .and(header("PRIVATE-TOKEN", TOKEN))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([{"id": 3, "url": "https://other.example.com"}])),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(hooks_path(7)))
        .and(header("PRIVATE-TOKEN", TOKEN))
        .and(body_partial_json(json!({
            "url": TARGET, "job_events": true, "pipeline_events": true,
            "push_events": true, "merge_requests_events": true,
            "enable_ssl_verification": true, "token": "s3cret"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 5, "url": TARGET})))
        .expect(1)
        .mount(&server)
        .await;
    let out = gl
        .ensure_hook(&server.uri(), 7, TARGET, &secret, HookEvents::ALL)
        .await
        .unwrap();
    assert_eq!(out, HookOutcome::Created(5));

    Mock::given(method("GET"))
        .and(path(hooks_path(7)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 3, "url": "https://other.example.com"}, {"id": 5, "url": TARGET}
        ])))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!("{}/5", hooks_path(7))))
        .and(header("PRIVATE-TOKEN", TOKEN))
        .and(body_partial_json(
            json!({"url": TARGET, "job_events": true, "token": "s3cret"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 5, "url": TARGET})))
        .expect(1)
        .mount(&server)
        .await;
    let out = gl
        .ensure_hook(&server.uri(), 7, TARGET, &secret, HookEvents::ALL)
        .await
        .unwrap();
    assert_eq!(
        out,
        HookOutcome::Updated(5),
        "an existing hook is updated, not duplicated"
    );

    Mock::given(method("DELETE"))
        .and(path(format!("{}/5", hooks_path(7))))
        .and(header("PRIVATE-TOKEN", TOKEN))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(gl.remove_hook(&server.uri(), 7, TARGET).await.unwrap(), 1);
}

#[tokio::test]
async fn transient_failures_are_retried_client_errors_are_not() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(hooks_path(1)))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(hooks_path(1)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(hooks_path(1)))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1, "url": TARGET})))
        .mount(&server)
        .await;
    let gl = GitLab::new(SecretString::new(TOKEN), fast());
    gl.ensure_hook(
        &server.uri(),
        1,
        TARGET,
        &SecretString::new("s"),
        HookEvents::ALL,
    )
    .await
    .unwrap();

    let denied = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401).set_body_string("{\"message\":\"401 Unauthorized\"}"),
        )
        .expect(1)
        .mount(&denied)
        .await;
    let err = gl
        .ensure_hook(
            &denied.uri(),
            1,
            TARGET,
            &SecretString::new("s"),
            HookEvents::ALL,
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("401") && msg.contains("check the GitLab token"),
        "{msg}"
    );
    assert!(
        !msg.contains(TOKEN),
        "the token leaked into an error: {msg}"
    );

    let down = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .expect(3)
        .mount(&down)
        .await;
    let err = gl
        .ensure_hook(
            &down.uri(),
            1,
            TARGET,
            &SecretString::new("s"),
            HookEvents::ALL,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
}

async fn mount_project(server: &MockServer, project: u64, existing: Value, post_status: u16) {
    Mock::given(method("GET"))
        .and(path(hooks_path(project)))
        .and(header("PRIVATE-TOKEN", TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(existing))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(hooks_path(project)))
        .and(header("PRIVATE-TOKEN", TOKEN))
        .and(body_partial_json(
            json!({"url": TARGET, "job_events": true}),
        ))
        .respond_with(
            ResponseTemplate::new(post_status)
                .set_body_json(json!({"id": 100 + project, "url": TARGET})),
        )
        .mount(server)
        .await;
}

fn posts(reqs: &[wiremock::Request]) -> Vec<(String, Value)> {
    reqs.iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| {
            (
                r.url.path().to_string(),
                serde_json::from_slice(&r.body).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn deploy_registers_one_hook_per_project_with_the_stored_secret() {
    let server = MockServer::start().await;
    mount_project(&server, 1, json!([]), 201).await;
    mount_project(&server, 2, json!([]), 201).await;
    let f = Fixture::new().await;
    let ctx = f.ctx(None, &quiet);
    let v1 = ir(&[("a", 1), ("b", 1), ("c", 2)], &server.uri());
    let out = deploy::deploy(&ctx, &v1, false).await.unwrap();
    assert!(matches!(
        out,
        DeployOutcome::Applied {
            version: 1,
            webhooks: true,
            ..
        }
    ));
    let reqs = server.received_requests().await.unwrap();
    let p = posts(&reqs);
    assert_eq!(
        p.iter().map(|(path, _)| path.as_str()).collect::<Vec<_>>(),
        [hooks_path(1), hooks_path(2)]
    );
    // The secret GitLab got is the one stored, sealed (Property 34).
    let cipher = Cipher::from_base64(&f.key).unwrap();
    let sealed = f.store.secret("webhook_secret").await.unwrap().unwrap();
    let secret = cipher.open(&sealed.item, "meta/webhook_secret").unwrap();
    assert_eq!(p[0].1["token"], secret.expose());
    let db = std::fs::read(f.nest.join(".gosling/state.db")).unwrap();
    assert!(
        !String::from_utf8_lossy(&db).contains(secret.expose()),
        "plaintext secret in the store"
    );
    assert!(
        !f.key_file.exists(),
        "GOSLING_STATE_KEY was given: no key file is created"
    );

    // The same Nest again: no changes, no calls.
    let n = reqs.len();
    assert!(matches!(
        deploy::deploy(&ctx, &v1, false).await.unwrap(),
        DeployOutcome::NoChanges(_)
    ));
    assert_eq!(server.received_requests().await.unwrap().len(), n);

    // Project 2 goes away and 3 comes: 3 is registered, 2's hook removed.
    mount_project(&server, 3, json!([]), 201).await;
    server.reset().await;
    mount_project(&server, 3, json!([]), 201).await;
    Mock::given(method("GET"))
        .and(path(hooks_path(2)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 102, "url": TARGET}])))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("{}/102", hooks_path(2))))
        .and(header("PRIVATE-TOKEN", TOKEN))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let v2 = ir(&[("a", 1), ("b", 1), ("d", 3)], &server.uri());
    let out = deploy::deploy(&ctx, &v2, false).await.unwrap();
    let DeployOutcome::Applied { plan, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(plan.hooks_ensure.len(), 1);
    assert_eq!(plan.hooks_remove.len(), 1);
    let p = posts(&server.received_requests().await.unwrap());
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].0, hooks_path(3));
}

#[tokio::test]
async fn a_failed_webhook_leaves_the_store_consistent_and_the_next_deploy_proceeds() {
    // Property 32 across the GitLab step: the deployment is recorded as failed, the previous
    // one stays current, and the eggs/jobs tables still match it.
    let server = MockServer::start().await;
    mount_project(&server, 1, json!([]), 201).await;
    let f = Fixture::new().await;
    let ctx = f.ctx(Some("given-secret"), &quiet);
    deploy::deploy(&ctx, &ir(&[("a", 1)], &server.uri()), false)
        .await
        .unwrap();
    let before = f.tables().await;

    mount_project(&server, 2, json!([]), 500).await;
    let v2 = ir(&[("a", 1), ("b", 2)], &server.uri());
    let err = deploy::deploy(&ctx, &v2, false).await.unwrap_err();
    assert!(
        matches!(err, DeployError::Failed { version: 2, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("v1 stays current") && msg.contains("500"),
        "{msg}"
    );
    assert_eq!(
        f.tables().await,
        before,
        "a failed deployment changed the tables"
    );
    let failed = f.store.plan("000002").await.unwrap().unwrap().item;
    assert_eq!(failed.status, PlanStatus::Failed);
    assert!(failed.metadata["error"].as_str().unwrap().contains("500"));
    assert!(f
        .store
        .audit_logs()
        .await
        .unwrap()
        .iter()
        .any(|a| a.action == "deploy_failed"));
    let posts_to_2 = posts(&server.received_requests().await.unwrap())
        .into_iter()
        .filter(|(p, _)| *p == hooks_path(2))
        .count();
    assert_eq!(posts_to_2, 3, "a 500 is retried");

    // GitLab recovers: the next deploy goes through as v3.
    server.reset().await;
    mount_project(&server, 2, json!([]), 201).await;
    let out = deploy::deploy(&ctx, &v2, false).await.unwrap();
    assert!(
        matches!(out, DeployOutcome::Applied { version: 3, .. }),
        "{out:?}"
    );
    assert_eq!(f.store.current().await.unwrap().unwrap().item.version, 3);
    assert_eq!(f.store.eggs().await.unwrap().len(), 2);
    let st = deploy::status(&*f.store, chrono::Utc::now()).await.unwrap();
    let hist: Vec<(u64, String)> = st
        .history
        .iter()
        .map(|h| (h.version, h.status.clone()))
        .collect();
    assert_eq!(
        hist,
        [
            (3, "applied".into()),
            (2, "failed".into()),
            (1, "applied".into())
        ]
    );
    // Rollback skips nothing it should not: the failed v2 cannot be made current.
    let err = deploy::rollback(&ctx, Some(2)).await.unwrap_err();
    assert!(err.to_string().contains("never applied"), "{err}");
}
