//! The Yandex Cloud providers against the fake Yandex Cloud API: the documented request
//! shapes, operations polled to completion (slow and failed ones), idempotent create,
//! terminate of what is gone, the IAM token (JWT exchange, reuse, renewal, a refused
//! token) and serverless runners as long-lived, asynchronously called containers.

mod common;

use common::{egg, spec, yandex_settings, CREDENTIAL};
use fly_ir::{Provider as Cloud, RunnerKind};
use gosling_fleet::{MachineStatus, ProviderError, Providers};
use gosling_providers::errors::grpc;
use gosling_standins::yandex::FakeYandex;

fn providers(fake: &FakeYandex, dir: &tempfile::TempDir) -> Providers {
    gosling_providers::providers(&yandex_settings(&fake.base, dir.path())).unwrap()
}

fn vm(providers: &Providers) -> gosling_fleet::SharedProvider {
    providers.by_key["yandex/vm"].clone()
}

fn assert_clean(fake: &FakeYandex) {
    assert_eq!(
        fake.violations(),
        Vec::<String>::new(),
        "requests off the documented shape"
    );
    assert!(fake
        .requests()
        .iter()
        .filter(|r| !r.path.starts_with("/iam/") && !r.path.starts_with("/computeMetadata/"))
        .all(|r| r.authorized));
}

#[tokio::test]
async fn compute_create_status_terminate_idempotent() {
    let fake = FakeYandex::start();
    let dir = tempfile::tempdir().unwrap();
    let p = providers(&fake, &dir);
    let mut e = egg("builds", Cloud::Yandex, RunnerKind::Vm);
    e.cloud.preemptible = true;
    e.resources.cpu = 3;
    e.resources.memory_mb = 5000;
    let s = spec("r-0123456789abcdef", e);
    let h = vm(&p).create(&s).await.unwrap();
    assert_eq!(h.provider, "yandex-compute");
    assert_eq!(h.details["name"], "r-0123456789abcdef");
    let created = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/compute/v1/instances")
        .unwrap();
    let b = &created.body;
    assert_eq!(b["resourcesSpec"]["cores"], "4");
    assert_eq!(b["resourcesSpec"]["memory"], (8u64 << 30).to_string());
    assert_eq!(
        b["bootDiskSpec"]["diskSpec"]["size"],
        (20u64 << 30).to_string()
    );
    assert_eq!(b["schedulingPolicy"]["preemptible"], true);
    assert_eq!(b["labels"]["egg"], "builds");
    assert_eq!(b["labels"]["runner"], "r-0123456789abcdef");
    assert!(b["metadata"]["user-data"]
        .as_str()
        .unwrap()
        .starts_with("#cloud-config\n"));
    assert_eq!(vm(&p).status(&h).await.unwrap(), MachineStatus::Running);

    // The same runner again: the same instance, nothing new.
    let again = vm(&p).create(&s).await.unwrap();
    assert_eq!(again.id, h.id);
    assert_eq!(fake.instances().len(), 1);

    vm(&p).terminate(&h).await.unwrap();
    assert!(fake.instances().is_empty());
    assert_eq!(vm(&p).status(&h).await.unwrap(), MachineStatus::Gone);
    vm(&p).terminate(&h).await.unwrap();
    assert_clean(&fake);
    // One token for all of it.
    assert_eq!(fake.tokens_issued(), 1);
}

#[tokio::test]
async fn slow_operations_are_polled_to_completion() {
    let fake = FakeYandex::start();
    fake.set_slow(4);
    let dir = tempfile::tempdir().unwrap();
    let p = providers(&fake, &dir);
    let h = vm(&p)
        .create(&spec(
            "r-slow",
            egg("builds", Cloud::Yandex, RunnerKind::Vm),
        ))
        .await
        .unwrap();
    let polls = fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/operations/"))
        .count();
    assert_eq!(polls, 4);
    assert_eq!(fake.instances()[0]["status"], "RUNNING");
    vm(&p).terminate(&h).await.unwrap();
    assert!(fake.instances().is_empty());
    assert_clean(&fake);
}

#[tokio::test]
async fn failed_operations_are_typed() {
    let fake = FakeYandex::start();
    fake.set_slow(1);
    let dir = tempfile::tempdir().unwrap();
    let p = providers(&fake, &dir);
    let s = spec("r-failing", egg("builds", Cloud::Yandex, RunnerKind::Vm));
    fake.fail_next(
        "instances.create",
        grpc::RESOURCE_EXHAUSTED,
        "Quota limit compute.instanceCores.count exceeded",
    );
    let e = vm(&p).create(&s).await.unwrap_err();
    assert!(matches!(e, ProviderError::Permanent { .. }), "{e}");
    assert!(e.to_string().contains("Quota limit"));
    assert!(
        fake.instances().is_empty(),
        "a failed create leaves nothing"
    );

    fake.fail_next(
        "instances.create",
        grpc::UNAVAILABLE,
        "no capacity in ru-central1-a",
    );
    let e = vm(&p).create(&s).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");

    fake.fail_next_call("instances.create", 503, grpc::UNAVAILABLE, "try again");
    assert!(vm(&p).create(&s).await.unwrap_err().is_retryable());
    fake.fail_next_call(
        "instances.create",
        403,
        grpc::PERMISSION_DENIED,
        "not allowed",
    );
    assert!(!vm(&p).create(&s).await.unwrap_err().is_retryable());

    // Then it works, and a failed delete is reported.
    let h = vm(&p).create(&s).await.unwrap();
    fake.fail_next("instances.delete", grpc::INTERNAL, "internal");
    assert!(vm(&p).terminate(&h).await.unwrap_err().is_retryable());
    vm(&p).terminate(&h).await.unwrap();
    assert_clean(&fake);
}

#[tokio::test]
async fn a_refused_token_is_renewed_once() {
    let fake = FakeYandex::start();
    let dir = tempfile::tempdir().unwrap();
    let p = providers(&fake, &dir);
    let s = spec("r-token", egg("builds", Cloud::Yandex, RunnerKind::Vm));
    fake.fail_next_call(
        "instances.create",
        401,
        grpc::UNAUTHENTICATED,
        "token expired",
    );
    vm(&p).create(&s).await.unwrap();
    assert_eq!(fake.tokens_issued(), 2);
    assert_clean(&fake);

    // A token is renewed before it expires: at half its life when that is sooner than
    // five minutes before the end.
    let fake = FakeYandex::start();
    fake.set_token_ttl(std::time::Duration::from_millis(1200));
    let p = providers(&fake, &dir);
    let h = vm(&p)
        .create(&spec(
            "r-token2",
            egg("builds", Cloud::Yandex, RunnerKind::Vm),
        ))
        .await
        .unwrap();
    assert_eq!(fake.tokens_issued(), 1);
    // Past half its life (600 ms), well before its end (1.2 s), even on a busy machine.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    vm(&p).status(&h).await.unwrap();
    assert_eq!(
        fake.tokens_issued(),
        2,
        "renewed while the old one was still valid"
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn metadata_service_tokens() {
    let fake = FakeYandex::start();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = yandex_settings(&fake.base, dir.path());
    settings.yandex.as_mut().unwrap().key_file = None;
    let p = gosling_providers::providers(&settings).unwrap();
    let h = vm(&p)
        .create(&spec(
            "r-meta",
            egg("builds", Cloud::Yandex, RunnerKind::Vm),
        ))
        .await
        .unwrap();
    vm(&p).terminate(&h).await.unwrap();
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.path.starts_with("/computeMetadata/")));
    assert_clean(&fake);
}

#[tokio::test]
async fn serverless_runner_is_a_long_lived_task_container_called_once() {
    let fake = FakeYandex::start();
    fake.set_slow(2);
    let dir = tempfile::tempdir().unwrap();
    let p = providers(&fake, &dir);
    let sp = p.by_key["yandex/serverless"].clone();
    let mut e = egg("quick", Cloud::Yandex, RunnerKind::Serverless);
    e.resources.memory_mb = 1000;
    e.runner.timeout_s = 3000;
    let mut s = spec("r-serverless1", e);
    s.ephemeral = true;
    let h = sp.create(&s).await.unwrap();
    assert_eq!(h.provider, "yandex-serverless");
    let revs = fake.revisions();
    assert_eq!(revs.len(), 1);
    let r = &revs[0];
    assert_eq!(r["status"], "ACTIVE");
    assert_eq!(r["executionTimeout"], "3300s");
    assert_eq!(r["longLived"], true);
    assert_eq!(r["resources"]["memory"], (1024u64 << 20).to_string());
    assert_eq!(r["runtime"], serde_json::json!({ "task": {} }));
    assert_eq!(r["image"]["command"]["command"][1], "runner");
    assert_eq!(r["image"]["environment"]["RUNNER_ID"], "r-serverless1");
    assert_eq!(
        r["image"]["environment"]["GOSLING_RUNNER_CREDENTIAL"],
        CREDENTIAL
    );
    assert_eq!(
        r["image"]["environment"]["GOSLING_RUNNER_EPHEMERAL"],
        "true"
    );
    let inv = fake.invocations();
    assert_eq!(inv.len(), 1);
    let call = fake
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/invoke/"))
        .unwrap();
    assert_eq!(call.headers["x-ycf-container-integration-type"], "async");
    assert_eq!(sp.status(&h).await.unwrap(), MachineStatus::Running);

    // Created again (a redelivered task): same container, not started twice.
    let again = sp.create(&s).await.unwrap();
    assert_eq!(again.id, h.id);
    assert_eq!(fake.invocations().len(), 1);
    assert_eq!(fake.containers().len(), 1);

    sp.terminate(&h).await.unwrap();
    assert!(fake.containers().is_empty());
    assert_eq!(sp.status(&h).await.unwrap(), MachineStatus::Gone);
    sp.terminate(&h).await.unwrap();
    assert_clean(&fake);
}

#[tokio::test]
async fn serverless_deploy_failure_is_reported_and_retried_cleanly() {
    let fake = FakeYandex::start();
    let dir = tempfile::tempdir().unwrap();
    let p = providers(&fake, &dir);
    let sp = p.by_key["yandex/serverless"].clone();
    let s = spec(
        "r-serverless2",
        egg("quick", Cloud::Yandex, RunnerKind::Serverless),
    );
    fake.fail_next(
        "revisions.deploy",
        grpc::INVALID_ARGUMENT,
        "image not found",
    );
    let e = sp.create(&s).await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(fake.invocations().is_empty());
    // The container stays; the next attempt deploys and starts it.
    let h = sp.create(&s).await.unwrap();
    assert_eq!(fake.invocations().len(), 1);
    sp.terminate(&h).await.unwrap();
    assert_clean(&fake);
}

#[tokio::test]
async fn too_big_for_yandex_is_permanent_and_sends_nothing() {
    let fake = FakeYandex::start();
    let dir = tempfile::tempdir().unwrap();
    let p = providers(&fake, &dir);
    let mut e = egg("huge", Cloud::Yandex, RunnerKind::Vm);
    e.resources.memory_mb = 700 * 1024;
    let err = vm(&p).create(&spec("r-huge", e)).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(fake
        .requests()
        .iter()
        .all(|r| r.path != "/compute/v1/instances"));
}
