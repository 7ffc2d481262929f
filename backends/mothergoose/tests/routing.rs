//! Routing a job to an egg, as properties over generated Nests and jobs:
//! Property 9 (project matching), Property 27 (tags), Property 10 (runner type).

mod support;

use fly_ir::{Deployment, Egg, RunnerKind};
use mothergoose::matching::*;
use proptest::prelude::*;

fn base() -> Egg {
    let ir = support::compile(&[(
        "e.fly".into(),
        support::egg("x", "vm", 1, &[], "https://gitlab.example.com"),
    )]);
    ir.eggs[0].clone()
}

const TAGS: [&str; 4] = ["docker", "linux", "gpu", "arm"];

fn egg_strategy() -> impl Strategy<Value = (u64, bool, Vec<usize>, bool, bool)> {
    (
        1u64..4,
        any::<bool>(),
        proptest::collection::vec(0usize..4, 0..4),
        any::<bool>(),
        any::<bool>(),
    )
}

fn build(specs: &[(u64, bool, Vec<usize>, bool, bool)]) -> Deployment {
    let template = base();
    let eggs = specs
        .iter()
        .enumerate()
        .map(|(i, (project, serverless, tags, untagged, other_host))| {
            let mut e = template.clone();
            e.name = format!("egg-{i}");
            e.gitlab.project_id = *project;
            e.kind = if *serverless {
                RunnerKind::Serverless
            } else {
                RunnerKind::Vm
            };
            let mut t: Vec<String> = tags.iter().map(|t| TAGS[*t].to_string()).collect();
            t.sort();
            t.dedup();
            e.runner.tags = t;
            e.runner.run_untagged = *untagged;
            if *other_host {
                e.gitlab.url = "https://other.example.com".into();
            }
            e
        })
        .collect();
    Deployment {
        eggs,
        ..support::compile(&[])
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    // Property 9: Webhook Event Matching — the eggs matched for an event are exactly those
    // whose project is the event's project (on the GitLab that sent it, when known).
    #[test]
    fn property_9_events_match_exactly_the_eggs_of_their_project(
        specs in proptest::collection::vec(egg_strategy(), 0..8),
        project in 1u64..5,
        known_host in any::<bool>(),
    ) {
        let ir = build(&specs);
        let host = known_host.then_some("gitlab.example.com");
        let got: Vec<&str> = eggs_for_project(&ir, project, host).iter().map(|e| e.name.as_str()).collect();
        let want: Vec<&str> = ir.eggs.iter()
            .filter(|e| e.gitlab.project_id == project)
            .filter(|e| !known_host || e.gitlab.url == "https://gitlab.example.com")
            .map(|e| e.name.as_str())
            .collect();
        prop_assert_eq!(got, want);
    }

    // Property 27: Runner Tag-Based Routing — a job goes only to an egg that has all of its
    // tags (an untagged job only to one that runs untagged jobs), and when such an egg of
    // its project exists, the job is routed.
    #[test]
    fn property_27_jobs_go_to_eggs_with_all_their_tags(
        specs in proptest::collection::vec(egg_strategy(), 1..8),
        project in 1u64..4,
        job_tags in proptest::collection::vec(0usize..4, 0..3),
        timeout in proptest::option::of(60u64..10_000),
    ) {
        let ir = build(&specs);
        let mut tags: Vec<String> = job_tags.iter().map(|t| TAGS[*t].to_string()).collect();
        tags.sort();
        tags.dedup();
        let expected = timeout.map_or(Expected::Unknown, Expected::ProjectTimeout);
        let routed = route(&ir, project, None, &tags, expected);
        let any_serves = ir.eggs.iter().any(|e| e.gitlab.project_id == project && serves(e, &tags));
        prop_assert_eq!(routed.is_ok(), any_serves);
        if let Ok(egg) = routed {
            prop_assert_eq!(egg.gitlab.project_id, project);
            if tags.is_empty() {
                prop_assert!(egg.runner.run_untagged);
            } else {
                prop_assert!(tags.iter().all(|t| egg.runner.tags.contains(t)), "{tags:?} ⊄ {:?}", egg.runner.tags);
            }
        }
    }

    // Property 10: Runner Type Determination — with eggs of both types serving a job,
    // serverless exactly when the job surely ends within 60 minutes (the project's job
    // timeout is under it), VM otherwise (and when unknown).
    #[test]
    fn property_10_serverless_only_for_jobs_under_sixty_minutes(
        timeout in proptest::option::of(1u64..20_000),
    ) {
        let mut vm = base();
        vm.name = "vm".into();
        let mut sl = base();
        sl.name = "sl".into();
        sl.kind = RunnerKind::Serverless;
        let expected = timeout.map_or(Expected::Unknown, Expected::ProjectTimeout);
        let chosen = choose(&[&vm, &sl], expected).unwrap();
        let short = timeout.is_some_and(|t| t < SERVERLESS_LIMIT_S);
        prop_assert_eq!(chosen.kind == RunnerKind::Serverless, short);
        // With one type only, that type serves whatever the duration.
        prop_assert_eq!(choose(&[&vm], expected).unwrap().name.as_str(), "vm");
        prop_assert_eq!(choose(&[&sl], expected).unwrap().name.as_str(), "sl");
    }
}

#[test]
fn property_10_both_sides_of_the_limit() {
    let mut vm = base();
    vm.name = "vm".into();
    let mut sl = base();
    sl.name = "sl".into();
    sl.kind = RunnerKind::Serverless;
    assert_eq!(
        choose(&[&vm, &sl], Expected::ProjectTimeout(3599))
            .unwrap()
            .name,
        "sl"
    );
    assert_eq!(
        choose(&[&vm, &sl], Expected::ProjectTimeout(3600))
            .unwrap()
            .name,
        "vm"
    );
    assert_eq!(choose(&[&vm, &sl], Expected::Unknown).unwrap().name, "vm");
}
