//! Property tests over generated fleets (runners in every state, ages, failure counts,
//! samples, pending demand) and configurations (pool sizes, idle timeouts, throttles, rules).
//! The planner's properties are checked on the plan itself (256 cases each); the applied
//! ones — busy runners only drained, every action audited — over an embedded store (100
//! cases).

mod common;

use chrono::{DateTime, Duration as D, Utc};
use common::*;
use fly_ir::Deployment;
use gosling_fleet::{state_of, RunnerState, ALL_STATES};
use gosling_state::{Runner, Versioned};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uglyfox::planner::{idle_since, is_pool_runner, Config};
use uglyfox::{plan, Guard, Kind, Plan, Reason, Sample, Snapshot};

const EGGS: [&str; 4] = ["app", "web", "fn", "gone"];

#[derive(Clone, Debug)]
struct GenRunner {
    egg: usize,
    state: usize,
    nadir: bool,
    ephemeral: bool,
    age_min: i64,
    failures: u32,
    silent_s: Option<i64>,
    idle_min: i64,
    sample: Option<(f64, f64)>,
    jobs: u64,
}

fn gen_runner() -> impl Strategy<Value = GenRunner> {
    (
        (
            0..4usize,
            0..9usize,
            any::<bool>(),
            prop::bool::weighted(0.15),
        ),
        (0..3000i64, 0..6u32, prop::option::weighted(0.9, 0..400i64)),
        (
            0..180i64,
            prop::option::weighted(0.6, (0.0..100.0f64, 0.0..100.0f64)),
            0..200u64,
        ),
    )
        .prop_map(
            |(
                (egg, state, nadir, ephemeral),
                (age_min, failures, silent_s),
                (idle_min, sample, jobs),
            )| GenRunner {
                egg,
                state,
                nadir,
                ephemeral,
                age_min,
                failures,
                silent_s,
                idle_min,
                sample,
                jobs,
            },
        )
}

#[derive(Clone, Debug)]
struct GenConfig {
    threshold: u32,
    max_age_h: u64,
    apex: (u32, u32),
    nadir: (u32, u32),
    apex_idle: Option<u64>,
    nadir_idle: Option<u64>,
    throttle: (u32, u32),
    max_runners: u32,
    rules: Vec<usize>,
    pending: (u32, u32),
}

fn gen_config() -> impl Strategy<Value = GenConfig> {
    (
        (1..5u32, 1..48u64, (0..6u32, 0..6u32), (0..4u32, 0..4u32)),
        (
            prop::option::of(5..90u64),
            prop::option::of(5..90u64),
            (0..12u32, 0..12u32),
            1..40u32,
        ),
        (prop::collection::vec(0..6usize, 0..4), (0..8u32, 0..8u32)),
    )
        .prop_map(
            |(
                (threshold, max_age_h, a, n),
                (apex_idle, nadir_idle, throttle, max_runners),
                (rules, pending),
            )| GenConfig {
                threshold,
                max_age_h,
                apex: (a.0.min(a.1), a.0.max(a.1)),
                nadir: (n.0.min(n.1), n.0.max(n.1)),
                apex_idle,
                nadir_idle,
                throttle,
                max_runners,
                rules,
                pending,
            },
        )
}

const RULES: [(&str, &str, &str); 6] = [
    ("hot", "cpu_usage > 80", "terminate"),
    (
        "lazy",
        "state == 'apex' AND idle_time > 20m",
        "demote_to_nadir",
    ),
    (
        "wake",
        "state == 'nadir' AND job_count > 50",
        "promote_to_apex",
    ),
    ("bloat", "memory_usage > 70", "restart"),
    ("shaky", "failed_count >= 1", "notify"),
    ("veteran", "job_count > 150 AND age > 10h", "terminate"),
];

fn ir_for(c: &GenConfig) -> Deployment {
    let rules: String = c
        .rules
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let (name, cond, action) = RULES[*r];
            format!("    rule \"{name}{k}\" {{\n      condition = \"{cond}\"\n      action = \"{action}\"\n    }}\n")
        })
        .collect();
    let text = NEST.replace(
        "uglyfox {",
        &format!("uglyfox {{\n  policies {{\n{rules}  }}\n"),
    );
    let mut ir = compile(&text);
    let uf = ir.uglyfox.as_mut().unwrap();
    uf.pruning.failed_threshold = c.threshold;
    uf.pruning.max_age_s = c.max_age_h * 3600;
    uf.apex.min_count = c.apex.0;
    uf.apex.max_count = c.apex.1;
    uf.apex.idle_timeout_s = c.apex_idle.map(|m| m * 60);
    uf.nadir.min_count = c.nadir.0;
    uf.nadir.max_count = c.nadir.1;
    uf.nadir.idle_timeout_s = c.nadir_idle.map(|m| m * 60);
    uf.throttle.create_per_pass = c.throttle.0;
    uf.throttle.terminate_per_pass = c.throttle.1;
    for e in &mut ir.eggs {
        e.runner.max_runners = c.max_runners;
    }
    ir
}

fn runner_of(i: usize, g: &GenRunner, now: DateTime<Utc>) -> Runner {
    let egg = EGGS[g.egg];
    let kind = if egg == "fn" { "serverless" } else { "vm" };
    let state = ALL_STATES[g.state];
    let mut r = Runner::new(
        format!("r{i:03}"),
        egg,
        kind,
        "aws",
        "eu-west-1",
        now - D::minutes(g.age_min),
    );
    r.state = state.as_str().into();
    r.ephemeral = g.ephemeral || kind == "serverless";
    let since = now - D::minutes(g.idle_min.min(g.age_min));
    r.state_since = Some(since);
    r.updated_at = since;
    r.failure_count = g.failures;
    r.job_count = g.jobs;
    r.last_heartbeat = g.silent_s.map(|s| now - D::seconds(s));
    if matches!(
        state,
        RunnerState::Active | RunnerState::Idle | RunnerState::Busy
    ) && is_pool_runner(&r)
    {
        r.pool = Some(if g.nadir { "nadir" } else { "apex" }.into());
    }
    r.machine = Some(serde_json::to_value(handle(&r.id)).unwrap());
    r
}

fn snapshot(runners: &[GenRunner], c: &GenConfig, now: DateTime<Utc>) -> Snapshot {
    let mut s = Snapshot::empty(now);
    for (i, g) in runners.iter().enumerate() {
        let r = runner_of(i, g, now);
        if let Some((cpu, mem)) = g.sample {
            s.samples.insert(
                r.id.clone(),
                Sample {
                    cpu,
                    memory: mem,
                    disk: 1.0,
                },
            );
        }
        s.runners.push(Versioned {
            item: r,
            version: 1,
        });
    }
    s.runners.retain(|r| r.item.state != "terminated");
    s.pending.insert("app".into(), c.pending.0);
    s.pending.insert("web".into(), c.pending.1);
    s
}

fn up(s: RunnerState) -> bool {
    matches!(
        s,
        RunnerState::Active | RunnerState::Idle | RunnerState::Busy
    )
}

/// The pools after the plan, counted independently of the planner: pool runners that are
/// up, moved by Demote/Promote, removed by End/MarkFailed.
fn pools_after(s: &Snapshot, p: &Plan) -> HashMap<String, (u32, u32)> {
    let mut by: HashMap<&str, &uglyfox::Decision> = HashMap::new();
    for d in &p.decisions {
        if let Some(r) = &d.runner {
            by.insert(r, d);
        }
    }
    let mut out: HashMap<String, (u32, u32)> = HashMap::new();
    for v in &s.runners {
        let r = &v.item;
        if !is_pool_runner(r) || !up(state_of(r)) {
            continue;
        }
        let mut nadir = r.pool.as_deref() == Some("nadir");
        match by.get(r.id.as_str()).map(|d| d.kind) {
            Some(Kind::End | Kind::MarkFailed) => continue,
            Some(Kind::Demote) => nadir = true,
            Some(Kind::Promote) => nadir = false,
            _ => {}
        }
        let e = out.entry(r.egg_name.clone()).or_default();
        if nadir {
            e.1 += 1
        } else {
            e.0 += 1
        }
    }
    out
}

fn decided<'p>(p: &'p Plan, id: &str) -> Vec<&'p uglyfox::Decision> {
    p.decisions
        .iter()
        .filter(|d| d.runner.as_deref() == Some(id))
        .collect()
}

fn ended_or_throttled(p: &Plan, id: &str) -> bool {
    decided(p, id).iter().any(|d| {
        d.kind == Kind::End
            || (d.kind == Kind::Hold
                && d.wanted == Some(Kind::End)
                && d.guard == Some(Guard::Throttle))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    // Property 14: Apex Pool Size Limits — after every pass, no egg's Apex exceeds
    // max_count, and new runners are only requested while Apex + those on their way stay
    // within it.
    #[test]
    fn property_14_apex_never_exceeds_max_count(
        runners in prop::collection::vec(gen_runner(), 0..40),
        c in gen_config(),
    ) {
        let ir = ir_for(&c);
        let s = snapshot(&runners, &c, t0());
        let p = plan(&s, Some(&ir), &Config::default());
        let after = pools_after(&s, &p);
        for egg in ["app", "web"] {
            let (apex, _) = after.get(egg).copied().unwrap_or_default();
            prop_assert!(apex <= c.apex.1, "{egg}: apex {apex} > max {}: {p:#?}", c.apex.1);
            let requests = p.of(Kind::Request).filter(|d| d.egg == egg).count() as u32;
            if requests > 0 {
                let provisioning = s.runners.iter().filter(|v| v.item.egg_name == egg && is_pool_runner(&v.item)
                    && state_of(&v.item) == RunnerState::Provisioning
                    && !decided(&p, &v.item.id).iter().any(|d| matches!(d.kind, Kind::End | Kind::MarkFailed))).count() as u32;
                prop_assert!(apex + provisioning + requests <= c.apex.1, "{egg}: {p:#?}");
            }
        }
        // The throttle bounds every pass; one decision per runner at most.
        prop_assert!(p.of(Kind::End).count() as u32 <= c.throttle.1);
        prop_assert!(p.of(Kind::Request).count() as u32 <= c.throttle.0);
        // At most one action per runner (a guard's hold may precede a demotion).
        let mut seen = HashSet::new();
        for d in p.actions() {
            if let Some(r) = &d.runner {
                prop_assert!(seen.insert(r.clone()), "two actions for {r}");
            }
        }
    }

    // Property 15: Nadir to Apex Promotion — new runners are requested only when no Nadir
    // runner is left to promote, and when demand exceeds Apex (and Apex is below max_count)
    // a Nadir runner is promoted.
    #[test]
    fn property_15_nadir_is_promoted_before_new_runners_are_requested(
        runners in prop::collection::vec(gen_runner(), 0..40),
        c in gen_config(),
    ) {
        let ir = ir_for(&c);
        let s = snapshot(&runners, &c, t0());
        let p = plan(&s, Some(&ir), &Config::default());
        let after = pools_after(&s, &p);
        for egg in ["app", "web"] {
            let requested = p.of(Kind::Request).any(|d| d.egg == egg);
            let (apex, _) = after.get(egg).copied().unwrap_or_default();
            // Nadir runners nothing else was decided for (one being ended, or held from
            // ending by the throttle, is not promotable).
            let free = s.runners.iter().filter(|v| v.item.egg_name == egg && is_pool_runner(&v.item)
                && up(state_of(&v.item)) && v.item.pool.as_deref() == Some("nadir")
                && decided(&p, &v.item.id).is_empty()).count();
            if requested {
                prop_assert_eq!(free, 0, "{} requested new runners with {} Nadir runner(s) left: {:#?}", egg, free, p);
            }
            let summary = p.pools.iter().find(|x| x.egg == egg).unwrap();
            if summary.target > apex + summary.coming {
                prop_assert_eq!(free, 0, "{}: demand unmet while Nadir runners wait: {:#?}", egg, p);
            }
        }
    }

    // Property 16: Apex to Nadir Demotion — every Apex runner idle beyond the idle timeout
    // is demoted (or ended when Nadir is full), unless a guard holds it, which is said.
    #[test]
    fn property_16_idle_apex_runners_are_demoted(
        runners in prop::collection::vec(gen_runner(), 0..40),
        c in gen_config(),
    ) {
        let ir = ir_for(&c);
        let s = snapshot(&runners, &c, t0());
        let p = plan(&s, Some(&ir), &Config::default());
        let Some(limit) = c.apex_idle.or(c.nadir_idle).map(|m| m as i64 * 60) else { return Ok(()) };
        for v in &s.runners {
            let r = &v.item;
            let st = state_of(r);
            if !is_pool_runner(r) || r.pool.as_deref() != Some("apex") || r.egg_name == "gone" || r.egg_name == "fn" {
                continue;
            }
            let Some(since) = idle_since(r, st) else { continue };
            if (t0() - since).num_seconds() <= limit {
                continue;
            }
            let ds = decided(&p, &r.id);
            prop_assert!(!ds.is_empty(), "idle Apex runner {} has no decision: {:#?}", &r.id, p);
            // Demoted, ended (Nadir full, or pruned first), marked failed, held by a guard
            // (said), or acted on by an earlier rule.
            for d in ds {
                prop_assert!(matches!(d.kind, Kind::Demote | Kind::End | Kind::Hold | Kind::MarkFailed | Kind::Restart | Kind::Notify), "{:?}", d);
            }
        }
    }

    // Property 17: UglyFox Failure Threshold Termination — every runner that is not
    // already leaving with failure_count >= failed_threshold is ended (or held by the
    // pass's termination throttle, which is said).
    #[test]
    fn property_17_failed_threshold_ends_runners(
        runners in prop::collection::vec(gen_runner(), 0..40),
        c in gen_config(),
    ) {
        let ir = ir_for(&c);
        let s = snapshot(&runners, &c, t0());
        let p = plan(&s, Some(&ir), &Config::default());
        for v in &s.runners {
            let st = state_of(&v.item);
            if st.is_leaving() || v.item.failure_count < c.threshold {
                continue;
            }
            prop_assert!(ended_or_throttled(&p, &v.item.id), "{} ({st}, {} failures): {:#?}", &v.item.id, v.item.failure_count, p);
        }
    }

    // Property 18: UglyFox Age-Based Termination — every runner that is not already
    // leaving and is older than max_age is ended (or held by the throttle, which is said).
    #[test]
    fn property_18_old_runners_are_ended(
        runners in prop::collection::vec(gen_runner(), 0..40),
        c in gen_config(),
    ) {
        let ir = ir_for(&c);
        let s = snapshot(&runners, &c, t0());
        let p = plan(&s, Some(&ir), &Config::default());
        for v in &s.runners {
            let st = state_of(&v.item);
            let age = (t0() - v.item.created_at).num_seconds();
            if st.is_leaving() || age <= (c.max_age_h * 3600) as i64 {
                continue;
            }
            prop_assert!(ended_or_throttled(&p, &v.item.id), "{} aged {age} s: {:#?}", &v.item.id, p);
            let d = decided(&p, &v.item.id)[0];
            prop_assert!(matches!(d.reason, Reason::MaxAge | Reason::FailedThreshold | Reason::EggNotDeployed));
        }
    }

    // No busy runner is forced: a forced end is only ever for a drain past its deadline,
    // and a runner that may run a job is only ever ended by a (draining) End.
    #[test]
    fn busy_runners_are_only_ever_drained(
        runners in prop::collection::vec(gen_runner(), 0..40),
        c in gen_config(),
    ) {
        let ir = ir_for(&c);
        let s = snapshot(&runners, &c, t0());
        let p = plan(&s, Some(&ir), &Config::default());
        for d in p.of(Kind::ForceEnd) {
            prop_assert_eq!(d.seen.as_ref().map(|x| x.state), Some(RunnerState::Draining));
        }
        for d in p.of(Kind::Remove) {
            let st = d.seen.as_ref().map(|x| x.state);
            prop_assert!(matches!(st, Some(RunnerState::Terminating | RunnerState::PendingTermination)));
        }
    }
}

// Property 19 and the applied guarantees, over an embedded store: after a pass, a runner
// that was busy is busy, draining or failed — never terminating or gone; every decision
// done has its audit entry by `uglyfox` naming the runner (or egg) and the reason.
proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn property_19_every_action_is_audited_and_busy_runners_are_drained(
        runners in prop::collection::vec(gen_runner(), 0..16),
        c in gen_config(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let w = World::new().await;
            let ir = ir_for(&c);
            w.deploy(&ir).await;
            let s = snapshot(&runners, &c, t0());
            for v in &s.runners {
                w.store.put_runner(&v.item, gosling_state::Expect::Absent).await.unwrap();
            }
            let provider = Arc::new(FakeProvider::default());
            let fox = w.fox(provider, Arc::new(Recorder::default()));
            let (plan, report) = fox.pass(Some(&ir)).await.unwrap();
            let audit: Vec<_> = w.store.audit_logs().await.unwrap().into_iter().filter(|a| a.actor == "uglyfox").collect();
            for v in &s.runners {
                if state_of(&v.item) == RunnerState::Busy {
                    let now = state_of(&w.get(&v.item.id).await);
                    assert!(matches!(now, RunnerState::Busy | RunnerState::Draining | RunnerState::Failed),
                        "busy runner {} became {now}", v.item.id);
                }
            }
            for (d, o) in plan.decisions.iter().zip(&report.outcomes) {
                if *o != uglyfox::Outcome::Done {
                    continue;
                }
                let target = d.runner.clone().unwrap_or_else(|| d.egg.clone());
                let wanted: &[&str] = match d.kind {
                    Kind::MarkFailed => &["mark_failed"],
                    Kind::End | Kind::ForceEnd => &["drain", "terminate"],
                    Kind::Remove => &["terminated", "terminate_failed", "terminate_forced"],
                    Kind::Demote => &["demote"],
                    Kind::Promote => &["promote"],
                    Kind::Restart => &["restart"],
                    Kind::Notify => &["notify"],
                    Kind::Request => &["request_runner"],
                    Kind::Hold => &["hold"],
                };
                let entry = audit.iter().find(|a| a.resource_id == target && wanted.contains(&a.action.as_str()));
                assert!(entry.is_some(), "no audit entry for {d:?}");
                let entry = entry.unwrap();
                assert_eq!(entry.actor, "uglyfox");
                if matches!(d.kind, Kind::End | Kind::ForceEnd) {
                    let reason = entry.details["reason"].as_str().unwrap_or("");
                    assert!(reason.contains(d.reason.as_str()) || d.rule.as_deref().is_some_and(|r| reason.contains(r)), "{reason}");
                } else if d.kind != Kind::Remove {
                    assert_eq!(entry.details["reason"].as_str(), Some(d.reason.as_str()));
                }
            }
            // Nothing was written by UglyFox without a decision behind it.
            let targets: HashSet<String> = plan.decisions.iter().map(|d| d.runner.clone().unwrap_or_else(|| d.egg.clone())).collect();
            for a in audit.iter().filter(|a| a.actor == "uglyfox") {
                assert!(targets.contains(&a.resource_id), "audit entry without a decision: {a:?}");
            }
        });
    }
}
