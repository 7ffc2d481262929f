//! What the UglyFox tests share: a Nest compiled to IR, an embedded store with that IR
//! deployed, runners, a provider whose terminate can be made to fail, a recording
//! notifier, and an UglyFox over all of it on a manual clock.
#![allow(dead_code)]

use async_trait::async_trait;
use chrono::{DateTime, Duration as TimeDelta, Utc};
use fly_ir::Deployment;
use gosling_fleet::secrets::Secrets;
use gosling_fleet::*;
use gosling_queue::{open_queue, Queue, QueueOptions};
use gosling_state::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uglyfox::apply::Applier;
use uglyfox::cron::Cron;
use uglyfox::metrics::Metrics;
use uglyfox::notify::{Notification, Notifier, NotifyError};
use uglyfox::{Config, UglyFox};

/// A Nest: two VM eggs, a serverless egg, a cron job and UglyFox.
pub const NEST: &str = r#"
egg "app" {
  type = "vm"
  cloud {
    provider = "aws"
    region   = "eu-west-1"
  }
  runner {
    concurrent = 1
    timeout    = "1h"
  }
  gitlab {
    project_id   = 7
    token_secret = "vault://gitlab/token"
  }
}

egg "web" {
  type = "vm"
  cloud {
    provider = "aws"
    region   = "eu-west-1"
  }
  runner {
    concurrent = 2
  }
  gitlab {
    project_id   = 8
    token_secret = "vault://gitlab/token"
  }
}

egg "fn" {
  type = "serverless"
  cloud {
    provider = "aws"
    region   = "eu-west-1"
  }
  runner {
    timeout = "30m"
  }
  gitlab {
    project_id   = 9
    token_secret = "vault://gitlab/token"
  }
}

job "tick" {
  schedule = "*/15 * * * *"
  script   = "true"
  on_failure {
    notify = ["ops@example.com"]
    retry  = 1
  }
}

uglyfox {
  pruning {
    failed_threshold = 3
    max_age          = "24h"
    check_interval   = "5m"
  }
  apex {
    max_count = 4
    min_count = 1
  }
  nadir {
    max_count    = 2
    idle_timeout = "30m"
  }
}
"#;

/// Compiles Fly text to the IR (panics on diagnostics: test input is valid).
pub fn compile(text: &str) -> Deployment {
    let c = fly_types::compile(
        vec![fly_types::SourceFile::new("nest.fly", text)],
        &fly_types::Env::default(),
    );
    let errors: Vec<String> = c
        .diagnostics()
        .map(|(f, d)| format!("{f}: {d:?}"))
        .collect();
    c.ir.unwrap_or_else(|| panic!("the test Nest does not compile: {errors:#?}"))
}

/// The test Nest's IR.
pub fn nest() -> Deployment {
    compile(NEST)
}

/// 2026-03-02 00:00 UTC (a Monday).
pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A provider whose terminate fails the first `fail` times; it records what it removed.
#[derive(Default)]
pub struct FakeProvider {
    pub fail: AtomicU32,
    pub terminated: Mutex<Vec<String>>,
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &str {
        "fake"
    }
    async fn create(&self, spec: &RunnerSpec) -> Result<Handle, ProviderError> {
        Ok(handle(&spec.runner_id))
    }
    async fn status(&self, _: &Handle) -> Result<MachineStatus, ProviderError> {
        Ok(MachineStatus::Running)
    }
    async fn terminate(&self, h: &Handle) -> Result<(), ProviderError> {
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
            .is_ok()
        {
            return Err(ProviderError::retryable("fake", "API throttled"));
        }
        self.terminated.lock().unwrap().push(h.id.clone());
        Ok(())
    }
}

/// The fake provider's handle of a runner.
pub fn handle(id: &str) -> Handle {
    Handle {
        provider: "fake".into(),
        id: id.into(),
        details: Default::default(),
    }
}

/// A notifier that remembers what it was asked to deliver.
#[derive(Default)]
pub struct Recorder {
    pub sent: Mutex<Vec<Notification>>,
}

#[async_trait]
impl Notifier for Recorder {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        self.sent.lock().unwrap().push(n.clone());
        Ok(())
    }
}

/// A store, a queue, objects and a clock in a temporary folder.
pub struct World {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn StateStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub queue: Arc<dyn Queue>,
    pub clock: ManualClock,
}

impl World {
    /// An empty world at `t0()`.
    pub async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::from(
            open_state(
                &format!("sqlite://{}", dir.path().join("state.db").display()),
                &OpenOptions::default(),
            )
            .await
            .unwrap(),
        );
        let objects: Arc<dyn ObjectStore> = Arc::from(
            open_objects(
                &dir.path().join("objects").display().to_string(),
                &OpenOptions::default(),
            )
            .await
            .unwrap(),
        );
        let clock = ManualClock::new(t0());
        let queue: Arc<dyn Queue> = Arc::from(
            open_queue(
                &dir.path().join("queue.db").display().to_string(),
                &QueueOptions {
                    clock: Arc::new(clock.clone()),
                    ..QueueOptions::default()
                },
            )
            .await
            .unwrap(),
        );
        World {
            dir,
            store,
            objects,
            queue,
            clock,
        }
    }

    /// Makes `ir` the current deployment (IR object, plan record, eggs and jobs tables).
    pub async fn deploy(&self, ir: &Deployment) {
        deploy(&*self.store, &*self.objects, ir, self.clock.now()).await
    }

    /// An UglyFox (actor `name`'s audit entries say `uglyfox`) over this world.
    pub fn fox(&self, provider: Arc<dyn Provider>, notifier: Arc<dyn Notifier>) -> UglyFox {
        fox(
            self.store.clone(),
            self.queue.clone(),
            Arc::new(self.clock.clone()),
            provider,
            notifier,
        )
    }

    /// Adds a runner of `egg` in `state`, created `age` ago, shaped by `f`.
    pub async fn runner(
        &self,
        id: &str,
        egg: &str,
        state: RunnerState,
        age: TimeDelta,
        f: impl FnOnce(&mut Runner),
    ) {
        let now = self.clock.now();
        let mut r = Runner::new(id, egg, "vm", "aws", "eu-west-1", now - age);
        r.state = state.as_str().into();
        r.state_since = Some(now - age);
        r.machine = Some(serde_json::to_value(handle(id)).unwrap());
        if state != RunnerState::Provisioning {
            r.last_heartbeat = Some(now);
        }
        if matches!(
            state,
            RunnerState::Active | RunnerState::Idle | RunnerState::Busy
        ) {
            r.pool = Some("apex".into());
        }
        f(&mut r);
        self.store.put_runner(&r, Expect::Absent).await.unwrap();
    }

    /// Every runner that is up reports now (as its heartbeats would).
    pub async fn heartbeat_all(&self) {
        for v in self.store.runners().await.unwrap() {
            let mut r = v.item;
            if matches!(r.state.as_str(), "active" | "idle" | "busy" | "draining") {
                r.last_heartbeat = Some(self.clock.now());
                self.store
                    .put_runner(&r, Expect::Version(v.version))
                    .await
                    .unwrap();
            }
        }
    }

    /// Audit actions about `id` by UglyFox, sorted (entries of one pass share a time).
    pub async fn actions_sorted(&self, id: &str) -> Vec<String> {
        let mut a = self.actions(id).await;
        a.sort();
        a
    }

    /// A runner as stored.
    pub async fn get(&self, id: &str) -> Runner {
        self.store.runner(id).await.unwrap().unwrap().item
    }

    /// Audit entries about `id` by `actor`, as action names.
    pub async fn actions(&self, id: &str) -> Vec<String> {
        self.store
            .audit_logs()
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.resource_id == id && a.actor == "uglyfox")
            .map(|a| a.action)
            .collect()
    }
}

/// Makes `ir` the current deployment of `store`.
pub async fn deploy(
    store: &dyn StateStore,
    objects: &dyn ObjectStore,
    ir: &Deployment,
    now: DateTime<Utc>,
) {
    use sha2::Digest;
    let text = ir.to_json();
    let hash = hex(&sha2::Sha256::digest(text.as_bytes()));
    let version = store.plans().await.unwrap().len() as u64 + 1;
    let key = format!("deployments/ir/{hash}.json");
    objects.put(&key, text.into_bytes()).await.unwrap();
    let plan = DeploymentPlan {
        id: DeploymentPlan::id_for(version),
        version,
        egg_name: None,
        plan_type: "nest".into(),
        plan_key: format!("deployments/plans/{version}.json"),
        ir_key: key,
        config_hash: hash,
        created_at: now,
        applied_at: None,
        status: PlanStatus::Pending,
        rollback_plan_id: None,
        metadata: serde_json::Value::Null,
    };
    store.put_plan(&plan, Expect::Absent).await.unwrap();
    let current = store.current().await.unwrap();
    let previous = match &current {
        Some(c) => store
            .plan(&c.item.plan_id)
            .await
            .unwrap()
            .map(|p| (p, PlanStatus::Applied)),
        None => None,
    };
    let jobs = ir
        .jobs
        .iter()
        .map(|j| JobRecord {
            name: j.name.clone(),
            schedule: j.schedule.expression.clone(),
            last_run: None,
            next_run: j.schedule.next_after(now),
            status: "scheduled".into(),
            config: serde_json::to_value(j).unwrap(),
            config_hash: j.config_hash.clone(),
            deployment_version: version,
            scheduled_for: None,
            attempt: 0,
            last_result: None,
            notified: false,
        })
        .collect();
    let eggs = ir
        .eggs
        .iter()
        .map(|e| EggRecord {
            name: e.name.clone(),
            config: serde_json::to_value(e).unwrap(),
            config_hash: e.config_hash.clone(),
            deployment_version: version,
            created_at: now,
            updated_at: now,
        })
        .collect();
    store
        .apply_deployment(ApplyDeployment {
            target: Versioned {
                item: plan,
                version: 1,
            },
            previous,
            expected_current: current.map(|c| c.version),
            eggs,
            jobs,
            audit: AuditLog::new(
                now,
                "test",
                "deploy",
                "deployment",
                "1",
                serde_json::json!({}),
            ),
            now,
        })
        .await
        .unwrap();
}

/// An UglyFox over `store` and `queue`, removing machines through `provider`.
pub fn fox(
    store: Arc<dyn StateStore>,
    queue: Arc<dyn Queue>,
    clock: SharedClock,
    provider: Arc<dyn Provider>,
    notifier: Arc<dyn Notifier>,
) -> UglyFox {
    let cipher = Cipher::from_base64(&Cipher::generate_key()).unwrap();
    let registry = Arc::new(Registry::new(
        Arc::new(Secrets::new(HashMap::new(), None)),
        cipher,
        gosling_gitlab::Retry::default(),
    ));
    let config = Config {
        termination: TerminationPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(20),
            drain_grace: Duration::from_secs(300),
        },
        ..Config::default()
    };
    let fleet = Fleet::new(store.clone(), clock.clone(), "uglyfox");
    let lifecycle = Lifecycle {
        fleet: fleet.clone(),
        providers: Providers::single(provider),
        registry,
        policy: config.termination,
    };
    let metrics = Arc::new(Metrics::default());
    let applier = Applier::new(
        fleet,
        lifecycle,
        queue.clone(),
        notifier.clone(),
        metrics.clone(),
    );
    let cron = Cron {
        store: store.clone(),
        queue,
        notifier,
        metrics,
        lost_grace: Duration::from_secs(900),
    };
    UglyFox {
        store,
        clock,
        config,
        applier,
        cron,
        cron_every: Duration::from_secs(15),
    }
}
