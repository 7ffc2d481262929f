//! The store contract, run against every adapter: the embedded store (SQLite and a local
//! directory) with one test per case, and DynamoDB + S3 served by a `moto_server` that this
//! file starts on 127.0.0.1 and resets between cases.

use async_trait::async_trait;
use chrono::{Duration, TimeZone, Utc};
use gosling_state::*;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

type Store = Arc<dyn StateStore>;
type Objects = Arc<dyn ObjectStore>;
type Case = fn(Store, Objects) -> Pin<Box<dyn Future<Output = ()> + Send>>;

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn runner(id: &str, egg: &str, state: &str) -> Runner {
    let mut r = Runner::new(id, egg, "vm", "yandex", "ru-central1-a", t0());
    r.state = state.into();
    r.gitlab_runner_id = Some(42);
    r.metadata = json!({"zone": "a", "labels": {"team": "core"}, "ratio": 0.5});
    r.pool = Some("apex".into());
    r.machine = Some(json!({"provider": "local", "id": "123"}));
    r.jobs = vec!["gitlab.example.com/1/2".into()];
    r
}

fn egg(name: &str, hash: &str, version: u64) -> EggRecord {
    EggRecord {
        name: name.into(),
        config: json!({"name": name, "resources": {"cpu": 2}, "tags": ["docker"]}),
        config_hash: hash.into(),
        deployment_version: version,
        created_at: t0(),
        updated_at: t0(),
    }
}

fn job(name: &str, hash: &str, version: u64) -> JobRecord {
    JobRecord {
        name: name.into(),
        schedule: "0 2 * * *".into(),
        last_run: None,
        next_run: Some(t0() + Duration::hours(1)),
        status: "scheduled".into(),
        config: json!({"name": name}),
        config_hash: hash.into(),
        deployment_version: version,
        scheduled_for: None,
        attempt: 0,
        last_result: None,
        notified: false,
    }
}

fn plan(version: u64, rollback: Option<String>) -> DeploymentPlan {
    DeploymentPlan {
        id: DeploymentPlan::id_for(version),
        version,
        egg_name: None,
        plan_type: "nest".into(),
        plan_key: format!("deployments/plans/{version}.json"),
        ir_key: format!("deployments/ir/{version}.json"),
        config_hash: format!("hash{version}"),
        created_at: t0(),
        applied_at: None,
        status: PlanStatus::Pending,
        rollback_plan_id: rollback,
        metadata: json!({"summary": {"add": 1}}),
    }
}

/// Records a pending plan and makes it current with `eggs` and `jobs`.
async fn deploy(
    s: &dyn StateStore,
    version: u64,
    eggs: Vec<EggRecord>,
    jobs: Vec<JobRecord>,
) -> Result<ApplyStats> {
    let current = s.current().await?;
    let previous = match &current {
        Some(c) => Some((s.plan(&c.item.plan_id).await?.unwrap(), PlanStatus::Applied)),
        None => None,
    };
    let p = plan(version, current.as_ref().map(|c| c.item.plan_id.clone()));
    let v = s.put_plan(&p, Expect::Absent).await?;
    s.apply_deployment(ApplyDeployment {
        target: Versioned {
            item: p,
            version: v,
        },
        previous,
        expected_current: current.map(|c| c.version),
        eggs,
        jobs,
        audit: AuditLog::new(
            t0(),
            "test",
            "deploy",
            "deployment",
            DeploymentPlan::id_for(version),
            json!({}),
        ),
        now: t0() + Duration::minutes(version as i64),
    })
    .await
}

/// Every item of every table, for before/after comparisons.
async fn dump(s: &dyn StateStore) -> Vec<(Table, Vec<Item>)> {
    let mut out = Vec::new();
    for t in Table::ALL {
        out.push((t, s.scan(t).await.unwrap()));
    }
    out
}

async fn optimistic_versions(s: Store, _o: Objects) {
    let r = runner("r1", "app", "active");
    assert_eq!(s.put_runner(&r, Expect::Absent).await.unwrap(), 1);
    let err = s.put_runner(&r, Expect::Absent).await.unwrap_err();
    assert!(
        matches!(
            err,
            StateError::Conflict {
                table: Table::Runners,
                ..
            }
        ),
        "{err}"
    );
    let mut r2 = r.clone();
    r2.failure_count = 1;
    assert_eq!(s.put_runner(&r2, Expect::Version(1)).await.unwrap(), 2);
    // A writer that read version 1 loses, instead of overwriting the update.
    let stale = s.put_runner(&r, Expect::Version(1)).await.unwrap_err();
    assert!(matches!(stale, StateError::Conflict { .. }));
    let got = s.runner("r1").await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(got.item, r2);
    assert!(s.delete_runner("r1", Expect::Version(1)).await.is_err());
    s.delete_runner("r1", Expect::Version(2)).await.unwrap();
    assert!(s.runner("r1").await.unwrap().is_none());
    assert!(
        s.put_runner(&r, Expect::Any).await.is_err(),
        "a put must say what it replaces"
    );
}

async fn transactions_are_atomic(s: Store, _o: Objects) {
    // Property 32: either every write of a transaction is committed or none is.
    s.put_runner(&runner("b", "app", "idle"), Expect::Absent)
        .await
        .unwrap();
    let before = dump(&*s).await;
    let doc = |id: &str| match serde_json::to_value(runner(id, "app", "idle")).unwrap() {
        serde_json::Value::Object(m) => m,
        _ => unreachable!(),
    };
    let err = s
        .transact(vec![
            Write::Put {
                table: Table::Runners,
                doc: doc("a"),
                expect: Expect::Absent,
            },
            Write::Put {
                table: Table::Runners,
                doc: doc("b"),
                expect: Expect::Version(7),
            },
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err}");
    assert_eq!(dump(&*s).await, before);
    s.transact(vec![
        Write::Put {
            table: Table::Runners,
            doc: doc("a"),
            expect: Expect::Absent,
        },
        Write::Put {
            table: Table::Runners,
            doc: doc("b"),
            expect: Expect::Version(1),
        },
        Write::Delete {
            table: Table::Runners,
            pk: "zzz".into(),
            sk: None,
            expect: Expect::Any,
        },
    ])
    .await
    .unwrap();
    assert_eq!(s.runner("a").await.unwrap().unwrap().version, 1);
    assert_eq!(s.runner("b").await.unwrap().unwrap().version, 2);
}

async fn concurrent_writers_lose_no_update(s: Store, _o: Objects) {
    s.put_runner(&runner("hot", "app", "busy"), Expect::Absent)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                loop {
                    let cur = s.runner("hot").await.unwrap().unwrap();
                    let mut r = cur.item.clone();
                    r.failure_count += 1;
                    match s.put_runner(&r, Expect::Version(cur.version)).await {
                        Ok(_) => break,
                        Err(StateError::Conflict { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = s.runner("hot").await.unwrap().unwrap();
    if ON_MOTO.get() {
        // Two racing writers can both succeed on moto; each write still bumps the version.
        assert!((15..=20).contains(&r.item.failure_count), "{r:?}");
        assert_eq!(r.version, u64::from(r.item.failure_count) + 1);
    } else {
        assert_eq!(r.item.failure_count, 20);
        assert_eq!(r.version, 21);
    }
}

thread_local! {
    /// Set while the cases run on moto, whose server does not serialise a conditional
    /// write's check with the write (its threads race): an update can be lost there,
    /// never on DynamoDB, SQLite or YDB.
    static ON_MOTO: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

async fn indexes_and_scans(s: Store, _o: Objects) {
    for (id, egg, state) in [
        ("r3", "b", "idle"),
        ("r1", "a", "busy"),
        ("r2", "a", "idle"),
    ] {
        s.put_runner(&runner(id, egg, state), Expect::Absent)
            .await
            .unwrap();
    }
    let ids = |v: Vec<Versioned<Runner>>| v.into_iter().map(|r| r.item.id).collect::<Vec<_>>();
    assert_eq!(ids(s.runners().await.unwrap()), ["r1", "r2", "r3"]);
    assert_eq!(ids(s.runners_by_state("idle").await.unwrap()), ["r2", "r3"]);
    assert_eq!(ids(s.runners_by_egg("a").await.unwrap()), ["r1", "r2"]);
    assert!(s.runners_by_egg("none").await.unwrap().is_empty());
    let got = s.runner("r1").await.unwrap().unwrap().item;
    assert_eq!(
        got.metadata,
        json!({"zone": "a", "labels": {"team": "core"}, "ratio": 0.5})
    );
}

async fn metrics_audit_tofu(s: Store, _o: Objects) {
    for (i, runner_id) in ["r1", "r2", "r1", "r1"].iter().enumerate() {
        s.put_metric(&RunnerMetric {
            runner_id: runner_id.to_string(),
            // Out of order on purpose: the sort key orders them.
            timestamp: t0() + Duration::seconds(30 * ((i as i64 * 7) % 4)),
            state: "busy".into(),
            job_count: i as u64,
            cpu_usage: 12.5,
            memory_usage: 40.0,
            disk_usage: 3.25,
            agent_version: "17.0.0".into(),
            failure_count: 0,
            last_job_timestamp: Some(t0()),
        })
        .await
        .unwrap();
    }
    let m = s.metrics("r1").await.unwrap();
    assert_eq!(m.len(), 3);
    assert!(m.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    assert_eq!(m[0].cpu_usage, 12.5);
    assert_eq!(s.metrics("r2").await.unwrap().len(), 1);

    for (i, action) in ["b", "a", "c"].iter().enumerate() {
        s.append_audit(&AuditLog::new(
            t0() + Duration::seconds(i as i64),
            "uglyfox",
            *action,
            "runner",
            "r1",
            json!({"why": "age"}),
        ))
        .await
        .unwrap();
    }
    let log: Vec<String> = s
        .audit_logs()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(log, ["b", "a", "c"]);

    let v = TofuVersion {
        version_id: TofuVersion::make_id("sha", "1.6.0", "github"),
        version: "1.6.0".into(),
        source: "github".into(),
        downloaded_at: t0(),
        sha256_hash: "sha".into(),
        active: true,
    };
    s.put_tofu_version(&v, Expect::Absent).await.unwrap();
    let mut v2 = v.clone();
    v2.active = false;
    s.put_tofu_version(&v2, Expect::Version(1)).await.unwrap();
    let all = s.tofu_versions().await.unwrap();
    assert_eq!(all.len(), 1);
    assert!(!all[0].item.active);
}

async fn secrets_are_sealed(s: Store, _o: Objects) {
    // Property 34: what reaches the store is ciphertext only.
    let cipher = Cipher::from_base64(&Cipher::generate_key()).unwrap();
    let token = SecretString::new("glrt-very-secret-token");
    let mut r = runner("r9", "app", "active");
    r.gitlab_runner_token = Some(
        cipher
            .seal(&token, "runners/r9/gitlab_runner_token")
            .unwrap(),
    );
    s.put_runner(&r, Expect::Absent).await.unwrap();
    let secret = SecretString::new("webhook-secret-value");
    s.put_secret(
        "webhook_secret",
        &cipher.seal(&secret, "meta/webhook_secret").unwrap(),
        Expect::Absent,
    )
    .await
    .unwrap();
    let everything = format!("{:?}", dump(&*s).await);
    assert!(
        !everything.contains("very-secret"),
        "plaintext token in the store"
    );
    assert!(
        !everything.contains("webhook-secret-value"),
        "plaintext secret in the store"
    );
    let back = s.runner("r9").await.unwrap().unwrap().item;
    let sealed = back.gitlab_runner_token.unwrap();
    assert_eq!(
        cipher
            .open(&sealed, "runners/r9/gitlab_runner_token")
            .unwrap(),
        token
    );
    let stored = s.secret("webhook_secret").await.unwrap().unwrap();
    assert_eq!(
        cipher.open(&stored.item, "meta/webhook_secret").unwrap(),
        secret
    );
    assert!(s.secret("other").await.unwrap().is_none());
}

async fn apply_deployment_replaces_tables(s: Store, _o: Objects) {
    assert!(s.current().await.unwrap().is_none());
    let stats = deploy(
        &*s,
        1,
        vec![egg("a", "h1", 1), egg("b", "h1", 1)],
        vec![job("j", "h1", 1)],
    )
    .await
    .unwrap();
    assert_eq!((stats.eggs_written, stats.jobs_written), (2, 1));
    let cur = s.current().await.unwrap().unwrap();
    assert_eq!((cur.item.plan_id.as_str(), cur.item.version), ("000001", 1));
    assert_eq!(
        s.plan("000001").await.unwrap().unwrap().item.status,
        PlanStatus::Applied
    );

    // Change a, keep b, drop j, add c.
    let mut job_state = s.job("j").await.unwrap().unwrap();
    job_state.item.last_run = Some(t0());
    s.put_job(&job_state.item, Expect::Version(job_state.version))
        .await
        .unwrap();
    let stats = deploy(
        &*s,
        2,
        vec![egg("a", "h2", 2), egg("b", "h1", 2), egg("c", "h2", 2)],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!((stats.eggs_written, stats.jobs_written), (2, 1));
    let eggs = s.eggs().await.unwrap();
    let names: Vec<_> = eggs
        .iter()
        .map(|e| (e.item.name.as_str(), e.item.config_hash.as_str(), e.version))
        .collect();
    assert_eq!(names, [("a", "h2", 2), ("b", "h1", 1), ("c", "h2", 1)]);
    assert_eq!(
        eggs[0].item.created_at,
        t0(),
        "created_at survives a change"
    );
    assert!(s.jobs().await.unwrap().is_empty());
    let p2 = s.plan("000002").await.unwrap().unwrap().item;
    assert_eq!(p2.rollback_plan_id.as_deref(), Some("000001"));
    assert_eq!(s.current().await.unwrap().unwrap().item.version, 2);

    // A writer that read an old pointer changes nothing.
    let before = dump(&*s).await;
    let p3 = plan(3, None);
    let v3 = s.put_plan(&p3, Expect::Absent).await.unwrap();
    let before_apply = dump(&*s).await;
    let err = s
        .apply_deployment(ApplyDeployment {
            target: Versioned {
                item: p3,
                version: v3,
            },
            previous: None,
            expected_current: Some(1),
            eggs: vec![egg("z", "h3", 3)],
            jobs: vec![],
            audit: AuditLog::new(t0(), "test", "deploy", "deployment", "000003", json!({})),
            now: t0(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err}");
    assert_eq!(dump(&*s).await, before_apply);
    assert_ne!(before, before_apply);
    let list: Vec<u64> = s
        .plans()
        .await
        .unwrap()
        .iter()
        .map(|p| p.item.version)
        .collect();
    assert_eq!(list, [1, 2, 3]);
}

/// Fails the `fail_at`-th transaction and limits transactions to 5 writes, so that
/// `apply_deployment` goes through its chunked path.
struct Faulty {
    inner: Store,
    calls: AtomicUsize,
    fail_at: usize,
}

#[async_trait]
impl StateStore for Faulty {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn max_transaction_writes(&self) -> Option<usize> {
        Some(5)
    }
    async fn get_item(&self, t: Table, pk: &str, sk: Option<&str>) -> Result<Option<Item>> {
        self.inner.get_item(t, pk, sk).await
    }
    async fn scan(&self, t: Table) -> Result<Vec<Item>> {
        self.inner.scan(t).await
    }
    async fn query(&self, t: Table, pk: &str) -> Result<Vec<Item>> {
        self.inner.query(t, pk).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<()> {
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(StateError::Remote {
                service: "test",
                operation: "TransactWriteItems".into(),
                message: "injected failure".into(),
            });
        }
        self.inner.transact(writes).await
    }
}

async fn chunked_apply_undoes_partial_writes(s: Store, _o: Objects) {
    let eggs1: Vec<EggRecord> = (0..12).map(|i| egg(&format!("e{i:02}"), "h1", 1)).collect();
    deploy(&*s, 1, eggs1, vec![job("j", "h1", 1)])
        .await
        .unwrap();
    let mut eggs2: Vec<EggRecord> = (3..20)
        .map(|i| egg(&format!("e{i:02}"), if i % 2 == 0 { "h2" } else { "h1" }, 2))
        .collect();
    eggs2.push(egg("new", "h2", 2));
    // put_plan is call 1; the chunks are calls 2..; fail at each step in turn.
    for fail_at in 2..=6 {
        let before = dump(&*s).await;
        let faulty = Faulty {
            inner: s.clone(),
            calls: AtomicUsize::new(0),
            fail_at,
        };
        let err = deploy(&faulty, 2, eggs2.clone(), vec![]).await.unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        // Property 32: the tables still match the current deployment; only the pending
        // plan record was added.
        let after = dump(&*s).await;
        for ((t, b), (_, a)) in before.iter().zip(&after) {
            if *t == Table::DeploymentPlans {
                continue;
            }
            let strip = |v: &Vec<Item>| v.iter().map(|i| i.doc.clone()).collect::<Vec<_>>();
            assert_eq!(
                strip(b),
                strip(a),
                "{t} changed after a failure at transaction {fail_at}"
            );
        }
        s.transact(vec![Write::Delete {
            table: Table::DeploymentPlans,
            pk: "000002".into(),
            sk: None,
            expect: Expect::Any,
        }])
        .await
        .unwrap();
    }
    let faulty = Faulty {
        inner: s.clone(),
        calls: AtomicUsize::new(0),
        fail_at: 0,
    };
    let stats = deploy(&faulty, 2, eggs2, vec![]).await.unwrap();
    assert!(stats.transactions > 2, "{stats:?}");
    assert_eq!(s.eggs().await.unwrap().len(), 18);
    assert_eq!(s.current().await.unwrap().unwrap().item.version, 2);
}

async fn objects(_s: Store, o: Objects) {
    assert!(o.get("deployments/ir/x.json").await.unwrap().is_none());
    o.put("deployments/ir/x.json", b"{\"a\":1}".to_vec())
        .await
        .unwrap();
    o.put("deployments/ir/y.json", vec![0, 159, 146, 150])
        .await
        .unwrap();
    o.put("tofu-states/app/terraform.tfstate", b"state".to_vec())
        .await
        .unwrap();
    o.put("deployments/ir/x.json", b"{\"a\":2}".to_vec())
        .await
        .unwrap();
    assert_eq!(
        o.get("deployments/ir/x.json").await.unwrap().unwrap(),
        b"{\"a\":2}"
    );
    assert_eq!(
        o.get("deployments/ir/y.json").await.unwrap().unwrap(),
        vec![0, 159, 146, 150]
    );
    assert_eq!(
        o.list("deployments/").await.unwrap(),
        ["deployments/ir/x.json", "deployments/ir/y.json"]
    );
    assert_eq!(o.list("").await.unwrap().len(), 3);
    o.delete("deployments/ir/x.json").await.unwrap();
    o.delete("deployments/ir/x.json").await.unwrap();
    assert!(o.get("deployments/ir/x.json").await.unwrap().is_none());
    for bad in ["../etc/passwd", "/abs", "a//b", "a/./b", "", "sp ace"] {
        assert!(
            matches!(o.put(bad, vec![]).await, Err(StateError::BadObjectKey(_))),
            "{bad}"
        );
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        const CASES: &[(&str, Case)] = &[$((stringify!($name), |s, o| Box::pin($name(s, o)))),*];
        mod embedded {
            $(
                #[test]
                fn $name() {
                    super::run_embedded(super::$name);
                }
            )*
        }
    };
}

contract!(
    optimistic_versions,
    transactions_are_atomic,
    concurrent_writers_lose_no_update,
    indexes_and_scans,
    metrics_audit_tofu,
    secrets_are_sealed,
    apply_deployment_replaces_tables,
    chunked_apply_undoes_partial_writes,
    objects,
);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn run_embedded<F: Future<Output = ()> + Send + 'static>(case: fn(Store, Objects) -> F) {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let url = format!(
            "sqlite://{}",
            dir.path().join(".gosling/state.db").display()
        );
        let s: Store = Arc::from(open_state(&url, &OpenOptions::default()).await.unwrap());
        let o: Objects = Arc::from(
            open_objects(
                &dir.path().join(".gosling/objects").display().to_string(),
                &OpenOptions::default(),
            )
            .await
            .unwrap(),
        );
        case(s, o).await;
    });
}

#[test]
fn dynamodb_and_s3_on_moto() {
    let moto = gosling_standins::Moto::start();
    let rt = runtime();
    ON_MOTO.set(true);
    for (name, case) in CASES {
        moto.reset();
        eprintln!("dynamodb+s3: {name}");
        rt.block_on(async {
            let opts = OpenOptions {
                read_only: false,
                credentials: Some(gosling_standins::Moto::credentials()),
            };
            let url = format!(
                "dynamodb://gosling?endpoint={}&region=us-east-1",
                moto.endpoint
            );
            let s: Store = Arc::from(open_state(&url, &opts).await.unwrap());
            let s3 = open_s3(
                &format!(
                    "s3://gosling-state/prefix?endpoint={}&region=us-east-1",
                    moto.endpoint
                ),
                &opts,
            )
            .await
            .unwrap()
            .unwrap();
            s3.create_bucket().await.unwrap();
            let o: Objects = Arc::new(s3);
            case(s, o).await;
        });
    }
}

/// The same contract on a real YDB: no YDB server runs in CI, so this is opt-in, e.g.
/// `docker run -d -p 2136:2136 ydbplatform/local-ydb` then
/// `GOSLING_TEST_YDB='ydb://localhost:2136/local?secure=false' cargo test -p gosling-state
/// --test contract -- --ignored ydb`. Each case gets tables under its own prefix.
#[cfg(feature = "ydb")]
#[test]
#[ignore = "needs a YDB server: set GOSLING_TEST_YDB=ydb://HOST:PORT/DATABASE?secure=false"]
fn ydb_contract() {
    let base = std::env::var("GOSLING_TEST_YDB").expect("GOSLING_TEST_YDB names a YDB");
    let rt = runtime();
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (name, case) in CASES {
        eprintln!("ydb: {name}");
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}prefix=gosling_test/{run}/{name}");
            let s: Store = Arc::from(open_state(&url, &OpenOptions::default()).await.unwrap());
            let o: Objects = Arc::from(
                open_objects(&dir.path().display().to_string(), &OpenOptions::default())
                    .await
                    .unwrap(),
            );
            case(s, o).await;
        });
    }
}

#[test]
fn dynamodb_read_only_creates_nothing_and_big_transactions_are_chunked() {
    let moto = gosling_standins::Moto::start();
    runtime().block_on(async {
        let opts = OpenOptions {
            read_only: true,
            credentials: Some(gosling_standins::Moto::credentials()),
        };
        let url = format!(
            "dynamodb://ro?endpoint={}&region=us-east-1&max_tx=25",
            moto.endpoint
        );
        let ro = open_state(&url, &opts).await.unwrap();
        assert!(ro.current().await.unwrap().is_none());
        assert!(ro.eggs().await.unwrap().is_empty());
        assert!(matches!(
            ro.append_audit(&AuditLog::new(t0(), "a", "b", "c", "d", json!({})))
                .await,
            Err(StateError::ReadOnly)
        ));
        let rw = open_state(
            &url,
            &OpenOptions {
                read_only: false,
                ..opts
            },
        )
        .await
        .unwrap();
        assert_eq!(rw.max_transaction_writes(), Some(25));
        let eggs: Vec<EggRecord> = (0..60).map(|i| egg(&format!("e{i:02}"), "h1", 1)).collect();
        let stats = deploy(&*rw, 1, eggs, vec![]).await.unwrap();
        assert_eq!(stats.transactions, 4, "{stats:?}");
        assert_eq!(rw.eggs().await.unwrap().len(), 60);
    });
}

#[test]
fn embedded_read_only_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".gosling/state.db");
    runtime().block_on(async {
        let opts = OpenOptions {
            read_only: true,
            credentials: None,
        };
        let s = open_state(&path.display().to_string(), &opts)
            .await
            .unwrap();
        assert!(s.current().await.unwrap().is_none());
        assert!(matches!(
            s.put_runner(&runner("r", "e", "idle"), Expect::Absent)
                .await,
            Err(StateError::ReadOnly)
        ));
        let o = open_objects(
            &dir.path().join(".gosling/objects").display().to_string(),
            &opts,
        )
        .await
        .unwrap();
        assert!(matches!(
            o.put("a", vec![1]).await,
            Err(StateError::ReadOnly)
        ));
    });
    assert!(
        !dir.path().join(".gosling").exists(),
        "a read-only open created files"
    );
}
