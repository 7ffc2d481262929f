//! One UglyFox pass over a large fleet.
//!
//! - `plan/100000`: the planner alone over 100,000 runners of 100 VM eggs, with a latest
//!   metrics sample for most of them and three rules (one reading `cpu_usage`), in memory;
//! - `store/…`: the pass against the embedded store — reading the snapshot (runners by state,
//!   pending jobs, ledgers, and each runner's latest sample because a rule reads one) and
//!   planning — for 10,000 and 100,000 runners.
//!
//! `cargo bench -p uglyfox --bench planner` (BENCHMARKS.md has the figures).

use chrono::{DateTime, Duration as D, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use fly_ir::Deployment;
use gosling_state::{
    open_state, to_doc, Expect, OpenOptions, Runner, RunnerMetric, StateStore, Table, Versioned,
    Write,
};
use std::time::Duration;
use uglyfox::planner::{plan, Config};
use uglyfox::{Sample, Snapshot};

const EGGS: usize = 100;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn nest() -> Deployment {
    let mut text = String::new();
    for e in 0..EGGS {
        text.push_str(&format!(
            "egg \"egg{e}\" {{\n  type = \"vm\"\n  cloud {{\n    provider = \"aws\"\n    region = \"eu-west-1\"\n  }}\n  runner {{\n    concurrent = 2\n    max_runners = 5000\n  }}\n  gitlab {{\n    project_id = {}\n    token_secret = \"vault://gitlab/token\"\n  }}\n}}\n",
            e + 1
        ));
    }
    text.push_str(
        r#"uglyfox {
  apex {
    max_count = 1000
    min_count = 10
  }
  nadir {
    max_count    = 200
    idle_timeout = "30m"
  }
  policies {
    rule "hot" {
      condition = "cpu_usage > 95"
      action    = "restart"
    }
    rule "old_failing" {
      condition = "failed_count >= 2 AND age > 1h"
      action    = "terminate"
    }
    rule "lazy" {
      condition = "state == 'apex' AND idle_time > 45m"
      action    = "demote_to_nadir"
    }
  }
}
"#,
    );
    let c = fly_types::compile(
        vec![fly_types::SourceFile::new("nest.fly", text)],
        &fly_types::Env::default(),
    );
    let mut ir = c.ir.expect("the bench Nest compiles");
    // Keep the fleet's own size (the throttle would only shorten the decision list).
    let uf = ir.uglyfox.as_mut().unwrap();
    uf.throttle.create_per_pass = 1000;
    uf.throttle.terminate_per_pass = 1000;
    ir
}

/// A fleet: mostly busy and idle pool runners with fresh heartbeats, some silent, some
/// failing, some in Nadir, some provisioning; a sample for 9 in 10.
fn fleet(n: usize) -> (Vec<Runner>, Vec<RunnerMetric>) {
    let now = now();
    let mut runners = Vec::with_capacity(n);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let egg = format!("egg{}", i % EGGS);
        let mut r = Runner::new(
            format!("r{i:07}"),
            egg,
            "vm",
            "aws",
            "eu-west-1",
            now - D::minutes((i % 1400) as i64),
        );
        let (state, pool) = match i % 20 {
            0..=9 => ("busy", "apex"),
            10..=15 => ("idle", "apex"),
            16 => ("idle", "nadir"),
            17 => ("failed", "apex"),
            18 => ("provisioning", ""),
            _ => ("active", "apex"),
        };
        r.state = state.into();
        r.pool = (!pool.is_empty()).then(|| pool.into());
        r.state_since = Some(now - D::minutes((i % 90) as i64));
        r.last_heartbeat = (state != "provisioning").then(|| now - D::seconds((i % 150) as i64));
        r.failure_count = (i % 7 == 0) as u32;
        r.job_count = (i % 300) as u64;
        runners.push(r);
        if i % 10 != 0 {
            samples.push(RunnerMetric {
                runner_id: format!("r{i:07}"),
                timestamp: now - D::seconds(20),
                state: state.into(),
                job_count: (i % 300) as u64,
                cpu_usage: (i % 97) as f64,
                memory_usage: 40.0,
                disk_usage: 30.0,
                agent_version: "17.5.0".into(),
                failure_count: 0,
                last_job_timestamp: None,
            });
        }
    }
    (runners, samples)
}

fn snapshot(runners: &[Runner], samples: &[RunnerMetric]) -> Snapshot {
    let mut s = Snapshot::empty(now());
    s.runners = runners
        .iter()
        .cloned()
        .map(|item| Versioned { item, version: 1 })
        .collect();
    for m in samples {
        s.samples.insert(
            m.runner_id.clone(),
            Sample {
                cpu: m.cpu_usage,
                memory: m.memory_usage,
                disk: m.disk_usage,
            },
        );
    }
    for e in 0..EGGS {
        s.pending.insert(format!("egg{e}"), (e % 5) as u32);
    }
    s
}

fn in_memory(c: &mut Criterion) {
    let ir = nest();
    let (runners, samples) = fleet(100_000);
    let snap = snapshot(&runners, &samples);
    let cfg = Config::default();
    let p = plan(&snap, Some(&ir), &cfg);
    eprintln!(
        "plan over {} runners: {} decisions",
        snap.runners.len(),
        p.decisions.len()
    );
    let mut g = c.benchmark_group("plan");
    g.sample_size(20);
    g.bench_function("100000", |b| b.iter(|| plan(&snap, Some(&ir), &cfg)));
    g.finish();
}

async fn fill(store: &dyn StateStore, runners: &[Runner], samples: &[RunnerMetric]) {
    for chunk in runners.chunks(5000) {
        let writes = chunk
            .iter()
            .map(|r| Write::Put {
                table: Table::Runners,
                doc: to_doc(Table::Runners, r).unwrap(),
                expect: Expect::Absent,
            })
            .collect();
        store.transact(writes).await.unwrap();
    }
    for chunk in samples.chunks(5000) {
        let writes = chunk
            .iter()
            .map(|m| Write::Put {
                table: Table::RunnerMetrics,
                doc: to_doc(Table::RunnerMetrics, m).unwrap(),
                expect: Expect::Absent,
            })
            .collect();
        store.transact(writes).await.unwrap();
    }
}

fn store_backed(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ir = nest();
    let cfg = Config::default();
    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    for n in [10_000usize, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        let store = rt.block_on(async {
            let s = open_state(&url, &OpenOptions::default()).await.unwrap();
            let (runners, samples) = fleet(n);
            fill(&*s, &runners, &samples).await;
            s
        });
        g.bench_function(format!("{n}"), |b| {
            b.iter(|| {
                rt.block_on(uglyfox::service::plan_from_store(
                    &*store,
                    Some(&ir),
                    &cfg,
                    now(),
                ))
                .unwrap()
            })
        });
        // The same without samples (no rule reads one): runners, pending jobs, ledgers.
        g.bench_function(format!("{n}-no-samples"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let eggs = uglyfox::service::pool_eggs(Some(&ir));
                    let snap = Snapshot::load(&*store, now(), &eggs, false).await.unwrap();
                    plan(&snap, Some(&ir), &cfg)
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, in_memory, store_backed);
criterion_main!(benches);
