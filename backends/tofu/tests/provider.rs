//! TofuProvider and the tofu runner against the fake `tofu` (gosling-standins' `fake-tofu`):
//! what is run, in which directory, with which environment and files; stored plans;
//! idempotence; status; terminate; the spot fallback; the provider cache; error mapping.

mod common;

use common::*;
use gosling_fleet::{MachineStatus, Provider, Providers};
use gosling_standins::fake_tofu::{FakeTofu, Invocation};
use gosling_state::{LocalObjects, ObjectStore, PlanStatus, SecretString, SqliteStore, StateStore};
use gosling_tofu::{cache::sha256_hex, RunnerConfig, Tofu, TofuProvider, TofuRunner, TofuSettings};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The backend's secret key (asserted never to reach a file or an error).
const BACKEND_SECRET: &str = "backend-secret-key-0123456789abcdef";

/// The fake `tofu`: the one `cargo test -p gosling-standins` built beside this test, else
/// built now.
fn fake_binary() -> PathBuf {
    if let Some(p) = FakeTofu::binary() {
        return p;
    }
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "gosling-standins",
            "--bin",
            "fake-tofu",
            "--message-format=json",
        ])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the fake-tofu executable")
}

struct Env {
    tmp: tempfile::TempDir,
    fake: FakeTofu,
    state: Arc<dyn StateStore>,
    objects: Arc<dyn ObjectStore>,
    provider: Arc<TofuProvider>,
}

fn tofu(fake: &FakeTofu) -> Tofu {
    let mut t = Tofu::new(fake_binary());
    t.inherit = vec!["PATH".into()];
    t.env
        .insert("FAKE_TOFU_HOME".into(), fake.home().display().to_string());
    t.secrets.insert(
        "AWS_ACCESS_KEY_ID".into(),
        SecretString::new("AKIAGOSLINGTEST"),
    );
    t.secrets.insert(
        "AWS_SECRET_ACCESS_KEY".into(),
        SecretString::new(BACKEND_SECRET),
    );
    t.timeout = Duration::from_secs(60);
    t
}

fn provider(
    root: &Path,
    fake: &FakeTofu,
    objects: &Arc<dyn ObjectStore>,
    state: &Arc<dyn StateStore>,
    settings: TofuSettings,
    passphrase: Option<&str>,
) -> Arc<TofuProvider> {
    let mut config = RunnerConfig::new(root);
    config.encryption_passphrase = passphrase.map(SecretString::new);
    let runner = TofuRunner::new(
        tofu(fake),
        config,
        objects.clone(),
        state.clone(),
        gosling_state::system_clock(),
    )
    .unwrap();
    Arc::new(TofuProvider::new(Arc::new(runner), settings))
}

impl Env {
    fn new(settings: TofuSettings) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let fake = FakeTofu::new(&tmp.path().join("fake"));
        let state: Arc<dyn StateStore> =
            Arc::new(SqliteStore::open(&tmp.path().join("state.db"), false).unwrap());
        let objects: Arc<dyn ObjectStore> =
            Arc::new(LocalObjects::new(&tmp.path().join("objects"), false));
        let provider = provider(
            &tmp.path().join("ws"),
            &fake,
            &objects,
            &state,
            settings,
            None,
        );
        Env {
            tmp,
            fake,
            state,
            objects,
            provider,
        }
    }

    /// The provider as another machine would have it: its own workspaces and provider
    /// mirror, the same stores and fake cloud.
    fn machine(&mut self, dir: &str, settings: TofuSettings, passphrase: Option<&str>) {
        self.provider = provider(
            &self.tmp.path().join(dir),
            &self.fake,
            &self.objects,
            &self.state,
            settings,
            passphrase,
        );
    }

    fn commands(&self) -> Vec<String> {
        self.fake
            .log()
            .iter()
            .map(|i| i.command().to_string())
            .collect()
    }

    fn last(&self, command: &str) -> Invocation {
        self.fake
            .log()
            .into_iter()
            .rev()
            .find(|i| i.command() == command)
            .unwrap_or_else(|| panic!("no {command} ran"))
    }

    async fn runner_plans(&self) -> Vec<gosling_state::DeploymentPlan> {
        let mut plans: Vec<_> = self
            .state
            .plans()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.item)
            .filter(|p| p.plan_type == "runner")
            .collect();
        plans.sort_by(|a, b| a.id.cmp(&b.id));
        plans
    }
}

fn aws_vm() -> fly_ir::Egg {
    egg("my-app", fly_ir::Provider::Aws, fly_ir::RunnerKind::Vm)
}

/// Every file under `dir`, as text.
fn files_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let text =
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned();
                out.push((p, text));
            }
        }
    }
    out
}

#[tokio::test]
async fn create_applies_a_stored_plan_once_and_keeps_secrets_out_of_files() {
    let env = Env::new(settings(false));
    let spec = spec("runner-1", aws_vm());
    let handle = env.provider.create(&spec).await.unwrap();
    assert_eq!(handle.provider, "tofu");
    assert!(handle.id.starts_with("i-"), "{handle:?}");
    assert_eq!(handle.details["egg"], "my-app");
    assert_eq!(env.commands(), ["init", "show", "plan", "apply", "show"]);

    // Every command ran in the runner's workspace, with the backend credentials in its
    // environment; the user data went to plan only, as a variable.
    let ws = env.tmp.path().join("ws/my-app/runner-1");
    let plan = env.last("plan");
    assert_eq!(plan.cwd, ws);
    assert_eq!(plan.env["AWS_SECRET_ACCESS_KEY"], BACKEND_SECRET);
    assert_eq!(plan.env["TF_IN_AUTOMATION"], "1");
    assert_eq!(
        plan.env["TF_CLI_CONFIG_FILE"],
        ws.join(".tofurc").display().to_string()
    );
    assert!(plan.env["TF_VAR_user_data"].starts_with("#cloud-config"));
    assert!(
        !plan.env.contains_key("HOME"),
        "only the named variables are passed on"
    );
    for f in [
        "versions.tf",
        "providers.tf",
        "variables.tf",
        "data.tf",
        "resources.tf",
        "checks.tf",
        ".tofurc",
        ".terraform.lock.hcl",
    ] {
        assert!(
            plan.files.contains(&f.to_string()),
            "{f} missing: {:?}",
            plan.files
        );
    }
    let apply = env.last("apply");
    assert!(
        !apply.env.contains_key("TF_VAR_user_data"),
        "a saved plan carries its variables"
    );
    let plan_arg = apply.args.last().unwrap().clone();
    assert!(plan_arg.starts_with(".tofu/plans/tofu-") && plan_arg.ends_with(".tfplan"));
    // The plan file is not left in the workspace; no secret is in any file there.
    assert!(!ws.join(&plan_arg).exists());
    for (path, text) in files_under(&env.tmp.path().join("ws")) {
        assert!(
            !text.contains(CREDENTIAL),
            "{} holds the runner credential",
            path.display()
        );
        assert!(
            !text.contains(BACKEND_SECRET),
            "{} holds the backend secret",
            path.display()
        );
    }

    // The plan is stored and recorded.
    let plans = env.runner_plans().await;
    assert_eq!(plans.len(), 1);
    let p = &plans[0];
    assert_eq!(p.status, PlanStatus::Applied);
    assert_eq!(p.egg_name.as_deref(), Some("my-app"));
    assert_eq!(p.version, 0);
    assert_eq!(p.rollback_plan_id, None);
    assert_eq!(p.metadata["action"], "create");
    assert_eq!(
        p.plan_key,
        format!("tofu-plans/my-app/runner-1/{}.tfplan", p.id)
    );
    assert!(p.applied_at.is_some());
    let bundle = env.objects.get(&p.ir_key).await.unwrap().unwrap();
    assert_eq!(sha256_hex(&bundle), p.config_hash);
    assert!(env.objects.get(&p.plan_key).await.unwrap().is_some());

    // A second create for the same runner reuses the workspace and the state.
    let again = env.provider.create(&spec).await.unwrap();
    assert_eq!(again, handle);
    assert_eq!(
        env.commands(),
        ["init", "show", "plan", "apply", "show", "show"]
    );
    assert_eq!(env.runner_plans().await.len(), 1);
}

#[tokio::test]
async fn status_follows_the_cloud() {
    let env = Env::new(settings(false));
    let handle = env
        .provider
        .create(&spec("runner-1", aws_vm()))
        .await
        .unwrap();
    assert_eq!(
        env.provider.status(&handle).await.unwrap(),
        MachineStatus::Running
    );
    env.fake.set_cloud(&handle.id, Some("stopped"));
    assert_eq!(
        env.provider.status(&handle).await.unwrap(),
        MachineStatus::Stopped
    );
    env.fake.set_cloud(&handle.id, Some("pending"));
    assert_eq!(
        env.provider.status(&handle).await.unwrap(),
        MachineStatus::Starting
    );
    // Deleted by hand: the refresh drops it from the state.
    env.fake.set_cloud(&handle.id, None);
    assert_eq!(
        env.provider.status(&handle).await.unwrap(),
        MachineStatus::Gone
    );
    let refresh = env.last("apply");
    assert!(refresh.args.contains(&"-refresh-only".to_string()));
}

#[tokio::test]
async fn yandex_runners_are_created_and_read_back() {
    let env = Env::new(settings(true));
    let spec = spec(
        "runner-1",
        egg("my-app", fly_ir::Provider::Yandex, fly_ir::RunnerKind::Vm),
    );
    let handle = env.provider.create(&spec).await.unwrap();
    assert!(handle.id.starts_with("fhm"), "{handle:?}");
    assert_eq!(handle.details["cloud"], "yandex");
    assert_eq!(
        env.provider.status(&handle).await.unwrap(),
        MachineStatus::Running
    );
    env.provider.terminate(&handle).await.unwrap();
    assert!(env.fake.cloud().is_empty());
}

#[tokio::test]
async fn terminate_destroys_through_a_stored_plan_and_is_idempotent() {
    let env = Env::new(settings(false));
    let handle = env
        .provider
        .create(&spec("runner-1", aws_vm()))
        .await
        .unwrap();
    env.provider.terminate(&handle).await.unwrap();
    assert!(env.fake.cloud().is_empty());
    assert!(
        !env.tmp.path().join("ws/my-app/runner-1").exists(),
        "the workspace is removed"
    );
    let plans = env.runner_plans().await;
    assert_eq!(plans.len(), 2);
    assert_eq!(plans[1].metadata["action"], "destroy");
    assert_eq!(plans[1].status, PlanStatus::Applied);
    assert_eq!(
        plans[1].rollback_plan_id.as_deref(),
        Some(plans[0].id.as_str())
    );
    assert!(env.last("plan").args.contains(&"-destroy".to_string()));
    // Gone already: nothing to plan, nothing stored, still Ok.
    env.provider.terminate(&handle).await.unwrap();
    assert_eq!(env.runner_plans().await.len(), 2);
    assert_eq!(
        env.provider.status(&handle).await.unwrap(),
        MachineStatus::Gone
    );
    // A runner never created here.
    let mut other = handle.clone();
    other
        .details
        .insert("runner_id".into(), "never-made".into());
    env.provider.terminate(&other).await.unwrap();
    assert_eq!(
        env.provider.status(&other).await.unwrap(),
        MachineStatus::Gone
    );
}

#[tokio::test]
async fn terminate_works_from_the_stored_configuration_on_another_machine() {
    let mut env = Env::new(settings(false));
    let handle = env
        .provider
        .create(&spec("runner-1", aws_vm()))
        .await
        .unwrap();
    env.machine("other-machine", settings(false), None);
    assert_eq!(
        env.provider.status(&handle).await.unwrap(),
        MachineStatus::Running
    );
    env.provider.terminate(&handle).await.unwrap();
    assert!(env.fake.cloud().is_empty());
}

#[tokio::test]
async fn a_stored_plan_is_applied_without_planning_again() {
    let env = Env::new(settings(false));
    let spec = spec("runner-1", aws_vm());
    env.fake.fail(
        "apply",
        "Error: creating EC2 Instance: operation error EC2: RunInstances, api error RequestLimitExceeded: Request limit exceeded.",
        Some(1),
        None,
    );
    let err = env.provider.create(&spec).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let plans = env.runner_plans().await;
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].status, PlanStatus::Failed);
    assert!(plans[0].metadata["error"]
        .as_str()
        .unwrap()
        .contains("RequestLimitExceeded"));
    let id = plans[0].id.clone();

    let before = env.fake.log().len();
    let record = env.provider.runner().apply_stored(&id).await.unwrap();
    assert_eq!(record.item.status, PlanStatus::Applied);
    let after: Vec<String> = env.fake.log()[before..]
        .iter()
        .map(|i| i.command().to_string())
        .collect();
    assert_eq!(
        after,
        ["apply"],
        "no plan, and no init: the workspace was ready"
    );
    assert_eq!(env.fake.cloud().len(), 1);
    // Applied once; asking again changes nothing.
    env.provider.runner().apply_stored(&id).await.unwrap();
    assert_eq!(env.fake.log().len(), before + 1);
    // The runner exists now: create finds it.
    let handle = env.provider.create(&spec).await.unwrap();
    assert_eq!(env.fake.cloud().keys().next(), Some(&handle.id));

    // From a machine without the workspace too: made from the stored configuration.
    let err = env
        .provider
        .runner()
        .apply_stored("tofu-0000000000000-00000000")
        .await
        .unwrap_err();
    assert!(
        matches!(err, gosling_tofu::TofuError::NoSuchPlan(_)),
        "{err}"
    );
}

#[tokio::test]
async fn a_stale_or_damaged_stored_plan_is_refused() {
    let env = Env::new(settings(false));
    let spec = spec("runner-1", aws_vm());
    env.fake
        .fail("apply", "Error: connection reset by peer", Some(1), None);
    assert!(env.provider.create(&spec).await.unwrap_err().is_retryable());
    let failed = env.runner_plans().await[0].clone();
    // A newer plan changed the state since.
    env.provider.create(&spec).await.unwrap();
    let err = env
        .provider
        .runner()
        .apply_stored(&failed.id)
        .await
        .unwrap_err();
    assert!(err.is_stale_plan(), "{err}");
    let again = env.state.plan(&failed.id).await.unwrap().unwrap().item;
    assert_eq!(again.status, PlanStatus::Failed);
    assert!(again.metadata["error"].as_str().unwrap().contains("stale"));
    // A plan file that is not what was recorded is never applied.
    env.objects
        .put(&failed.plan_key, b"tampered".to_vec())
        .await
        .unwrap();
    let err = env
        .provider
        .runner()
        .apply_stored(&failed.id)
        .await
        .unwrap_err();
    assert!(
        matches!(err, gosling_tofu::TofuError::BadPlan { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn spot_capacity_falls_back_to_on_demand() {
    let env = Env::new(settings(false));
    let mut e = aws_vm();
    e.cloud.preemptible = true;
    env.fake.fail(
        "apply",
        "Error: creating EC2 Instance: operation error EC2: RunInstances, api error InsufficientInstanceCapacity: We currently do not have sufficient capacity",
        None,
        Some("market_type"),
    );
    env.provider.create(&spec("runner-1", e)).await.unwrap();
    let plans = env.runner_plans().await;
    assert_eq!(
        plans.iter().map(|p| p.status).collect::<Vec<_>>(),
        [PlanStatus::Failed, PlanStatus::Applied]
    );
    let bundle = env.objects.get(&plans[1].ir_key).await.unwrap().unwrap();
    let bundle = gosling_tofu::ConfigBundle::from_bytes(&bundle).unwrap();
    assert!(!bundle.files["resources.tf"].contains("market_type"));
    let first = env.objects.get(&plans[0].ir_key).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("market_type"));
}

#[tokio::test]
async fn failures_map_to_retryable_and_permanent() {
    let env = Env::new(settings(false));
    let s = spec("runner-1", aws_vm());
    env.fake.fail(
        "init",
        "Error: No valid credential sources found",
        Some(1),
        None,
    );
    let err = env.provider.create(&s).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    env.fake.fail(
        "plan",
        "Error: Error acquiring the state lock\n\nLock Info: ID: 1",
        Some(1),
        None,
    );
    assert!(env.provider.create(&s).await.unwrap_err().is_retryable());
    env.fake.fail(
        "plan",
        "Error: api error UnauthorizedOperation: You are not authorized",
        Some(1),
        None,
    );
    assert!(!env.provider.create(&s).await.unwrap_err().is_retryable());
    env.fake.fail(
        "plan",
        "rpc error: code = Unavailable desc = try again",
        Some(1),
        None,
    );
    assert!(env.provider.create(&s).await.unwrap_err().is_retryable());
    // A secret in the output is never repeated.
    env.fake.fail(
        "plan",
        &format!("Error: signature for {BACKEND_SECRET} rejected"),
        Some(1),
        None,
    );
    let err = env.provider.create(&s).await.unwrap_err().to_string();
    assert!(
        !err.contains(BACKEND_SECRET) && err.contains("[redacted]"),
        "{err}"
    );
    // Serverless eggs are refused, saying why.
    let err = env
        .provider
        .create(&spec(
            "r",
            egg("fn", fly_ir::Provider::Aws, fly_ir::RunnerKind::Serverless),
        ))
        .await
        .unwrap_err();
    assert!(
        !err.is_retryable() && err.to_string().contains("provisioning = sdk"),
        "{err}"
    );
    env.provider.create(&s).await.unwrap();
}

#[tokio::test]
async fn a_hung_command_is_stopped_and_retryable() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeTofu::new(&tmp.path().join("fake"));
    let mut t = tofu(&fake);
    t.timeout = Duration::from_millis(500);
    fake.sleep("init", 30.0);
    let runner = TofuRunner::new(
        t,
        RunnerConfig::new(tmp.path().join("ws")),
        Arc::new(LocalObjects::new(&tmp.path().join("objects"), false)),
        Arc::new(SqliteStore::open(&tmp.path().join("state.db"), false).unwrap()),
        gosling_state::system_clock(),
    )
    .unwrap();
    let provider = TofuProvider::new(Arc::new(runner), settings(false));
    let started = std::time::Instant::now();
    let err = provider
        .create(&spec("runner-1", aws_vm()))
        .await
        .unwrap_err();
    assert!(
        err.is_retryable() && err.to_string().contains("did not finish"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // And a missing executable is permanent.
    let mut t = tofu(&fake);
    t.binary = tmp.path().join("no-such-tofu");
    let runner = TofuRunner::new(
        t,
        RunnerConfig::new(tmp.path().join("ws2")),
        Arc::new(LocalObjects::new(&tmp.path().join("objects"), false)),
        Arc::new(SqliteStore::open(&tmp.path().join("state.db"), false).unwrap()),
        gosling_state::system_clock(),
    )
    .unwrap();
    let provider = TofuProvider::new(Arc::new(runner), settings(false));
    assert!(!provider
        .create(&spec("runner-1", aws_vm()))
        .await
        .unwrap_err()
        .is_retryable());
}

#[tokio::test]
async fn provider_plugins_are_cached_in_the_object_store() {
    let mut env = Env::new(settings(false));
    env.provider
        .create(&spec("runner-1", aws_vm()))
        .await
        .unwrap();
    let init = env.last("init");
    assert!(
        init.events
            .iter()
            .any(|e| e.starts_with("downloaded registry.opentofu.org/hashicorp/aws")),
        "{:?}",
        init.events
    );
    assert!(!init.args.contains(&"-lockfile=readonly".to_string()));
    let keys = env.objects.list("tofu-cache/").await.unwrap();
    assert!(
        keys.iter().any(|k| k.starts_with("tofu-cache/locks/")),
        "{keys:?}"
    );
    let archive = keys
        .iter()
        .find(|k| k.starts_with("tofu-cache/terraform-plugins/"))
        .cloned()
        .expect("plugins stored");
    assert!(archive.ends_with(".tar.gz"));

    // Another machine: the lock file and the plugins come from the object store.
    env.machine("machine-2", settings(false), None);
    env.provider
        .create(&spec("runner-2", aws_vm()))
        .await
        .unwrap();
    let init = env.last("init");
    assert!(init.args.contains(&"-lockfile=readonly".to_string()));
    assert!(
        init.events
            .iter()
            .any(|e| e.starts_with("mirror registry.opentofu.org/hashicorp/aws")),
        "{:?}",
        init.events
    );
    assert!(!init.events.iter().any(|e| e.starts_with("downloaded")));
    let lock1 = std::fs::read_to_string(
        env.tmp
            .path()
            .join("ws/my-app/runner-1/.terraform.lock.hcl"),
    )
    .unwrap();
    let lock2 = std::fs::read_to_string(
        env.tmp
            .path()
            .join("machine-2/my-app/runner-2/.terraform.lock.hcl"),
    )
    .unwrap();
    assert_eq!(lock1, lock2);

    // Other constraints: another lock, downloaded afresh.
    let mut s = settings(false);
    s.aws_provider_version = "~> 5.1".into();
    env.machine("machine-3", s, None);
    env.provider
        .create(&spec("runner-3", aws_vm()))
        .await
        .unwrap();
    assert!(env
        .last("init")
        .events
        .iter()
        .any(|e| e == "downloaded registry.opentofu.org/hashicorp/aws 5.1.0"));

    // Damaged plugins fail OpenTofu's checksum check: dropped, downloaded again.
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let body = b"not the provider";
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    tar.append_data(
        &mut header,
        "registry.opentofu.org/hashicorp/aws/5.0.0/linux_amd64/terraform-provider-aws_v5.0.0",
        &body[..],
    )
    .unwrap();
    let damaged = tar.into_inner().unwrap().finish().unwrap();
    env.objects.put(&archive, damaged.clone()).await.unwrap();
    env.machine("machine-4", settings(false), None);
    env.provider
        .create(&spec("runner-4", aws_vm()))
        .await
        .unwrap();
    let inits: Vec<Invocation> = env
        .fake
        .log()
        .into_iter()
        .filter(|i| i.command() == "init")
        .collect();
    let n = inits.len();
    assert_ne!(
        inits[n - 2].exit,
        0,
        "the first init refuses the damaged plugins"
    );
    assert!(inits[n - 1]
        .events
        .iter()
        .any(|e| e.starts_with("downloaded")));
    assert_ne!(
        env.objects.get(&archive).await.unwrap().unwrap(),
        damaged,
        "replaced"
    );
}

#[tokio::test]
async fn state_encryption_is_configured_in_the_environment_only() {
    let mut env = Env::new(settings(false));
    let passphrase = "correct horse battery staple 42";
    env.machine("enc", settings(false), Some(passphrase));
    env.provider
        .create(&spec("runner-1", aws_vm()))
        .await
        .unwrap();
    let plan = env.last("plan");
    assert!(plan.env["TF_ENCRYPTION"].contains(&format!("passphrase = \"{passphrase}\"")));
    assert!(plan.env["TF_ENCRYPTION"].contains("plan {"));
    for (path, text) in files_under(&env.tmp.path().join("enc")) {
        assert!(!text.contains(passphrase), "{}", path.display());
    }
    let short = TofuRunner::new(
        tofu(&env.fake),
        RunnerConfig {
            encryption_passphrase: Some(SecretString::new("short")),
            ..RunnerConfig::new(env.tmp.path().join("x"))
        },
        env.objects.clone(),
        env.state.clone(),
        gosling_state::system_clock(),
    );
    assert!(short.is_err());
}

#[tokio::test]
async fn it_serves_the_tofu_keys() {
    let env = Env::new(settings(false));
    let mut providers = Providers::default();
    env.provider.clone().register(&mut providers);
    let mut tofu_egg = aws_vm();
    assert!(providers.for_egg(&tofu_egg).is_ok());
    tofu_egg.cloud.provider = fly_ir::Provider::Yandex;
    assert_eq!(providers.for_egg(&tofu_egg).unwrap().name(), "tofu");
    tofu_egg.cloud.provisioning = fly_ir::Provisioning::Sdk;
    assert!(
        providers.for_egg(&tofu_egg).is_err(),
        "an SDK egg never gets OpenTofu"
    );
}
