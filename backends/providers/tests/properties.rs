//! Property 8 (every egg becomes valid cloud requests) and Property 23 (the same egg goes
//! through the same runner states on Yandex Cloud and on AWS).

mod common;

use common::{egg, moto_settings, spec, yandex_settings, MotoProxy};
use fly_ir::{Provider as Cloud, RunnerKind};
use gosling_fleet::{
    Fleet, Lifecycle, MachineStatus, ProviderError, Providers, Registry, RunnerState, Step,
    TerminationPolicy,
};
use gosling_providers::{aws, cloud_init, sizing, yandex};
use gosling_standins::yandex::FakeYandex;
use gosling_standins::Moto;
use proptest::prelude::*;
use std::sync::Arc;

/// Eggs the language accepts: both providers, both types, sizes from the smallest to the
/// largest the checker allows (serverless ones within their provider's limits), often
/// realistic and sometimes extreme.
fn arb_egg() -> impl Strategy<Value = fly_ir::Egg> {
    let provider = prop_oneof![Just(Cloud::Yandex), Just(Cloud::Aws)];
    let kind = prop_oneof![Just(RunnerKind::Vm), Just(RunnerKind::Serverless)];
    let name = "[a-zA-Z][a-zA-Z0-9_.-]{0,40}";
    (
        provider,
        kind,
        name,
        any::<bool>(),
        0u32..3,
        0u32..3,
        0u32..3,
        60u64..=7 * 24 * 3600,
    )
        .prop_flat_map(
            |(p, k, name, pre, cpu_mode, mem_mode, disk_mode, timeout)| {
                let (max_cpu, max_mem) = match (p, k) {
                    (_, RunnerKind::Vm) => (96u32, 786_432u64),
                    (Cloud::Yandex, RunnerKind::Serverless) => (4, 8192),
                    (Cloud::Aws, RunnerKind::Serverless) => (16, 122_880),
                };
                let cpu = match cpu_mode {
                    0 => (1u32..=4).boxed(),
                    1 => (1..=max_cpu).boxed(),
                    _ => Just(max_cpu).boxed(),
                };
                let mem = match mem_mode {
                    0 => (128u64..=8192).boxed(),
                    1 => (128..=max_mem).boxed(),
                    _ => Just(max_mem).boxed(),
                };
                let disk = match disk_mode {
                    0 => (1u64..=100).boxed(),
                    1 => (1..=16_384u64).boxed(),
                    _ => Just(16_384u64).boxed(),
                };
                let timeout = if k == RunnerKind::Serverless {
                    timeout.min(3600)
                } else {
                    timeout
                };
                (Just((p, k, name, pre, timeout)), cpu, mem, disk)
            },
        )
        .prop_map(|((p, k, name, pre, timeout), cpu, mem, disk)| {
            let mut e = egg(&name, p, k);
            e.cloud.preemptible = pre;
            e.resources.cpu = cpu;
            e.resources.memory_mb = mem;
            e.resources.disk_gb = disk;
            e.runner.timeout_s = timeout;
            e
        })
}

fn permanent(e: &ProviderError) -> bool {
    matches!(e, ProviderError::Permanent { .. })
}

fn check_aws(s: &gosling_fleet::RunnerSpec, settings: &gosling_providers::AwsSettings) {
    let e = &s.egg;
    match e.kind {
        RunnerKind::Vm => {
            let launch = aws::ec2_launch(s, settings).expect("every VM egg fits an EC2 type");
            let (_, cpu, mem) = sizing::EC2_INSTANCE_TYPES
                .iter()
                .find(|(n, _, _)| *n == launch.instance_type)
                .expect("a type from the table");
            assert!(*cpu >= e.resources.cpu && *mem >= e.resources.memory_mb);
            assert!(
                (1..=16_384).contains(&launch.disk_gib) && launch.disk_gib >= e.resources.disk_gb
            );
            assert!(launch.client_token.len() <= 64 && launch.client_token.is_ascii());
            assert!(launch
                .tags
                .iter()
                .all(|(k, v)| k.len() <= 128 && v.chars().count() <= 256));
            let ud = cloud_init::render(s, &common::binary(), &[]).unwrap();
            let b64 = ud.ec2_base64().expect("within 16 KB");
            let input = aws::run_instances_input(&launch, "/dev/xvda", &b64)
                .expect("the SDK builder accepts it");
            assert_eq!((input.min_count, input.max_count), (Some(1), Some(1)));
            assert_eq!(input.instance_market_options.is_some(), e.cloud.preemptible);
        }
        RunnerKind::Serverless => match aws::ecs_task(s, settings) {
            Ok(task) => {
                let (units, min, max, step) = *sizing::FARGATE_SIZES
                    .iter()
                    .find(|(u, ..)| *u == task.size.cpu_units)
                    .expect("a Fargate CPU size");
                assert!(u64::from(units) >= u64::from(e.resources.cpu) * 1024);
                let m = task.size.memory_mib;
                assert!(
                    m >= min && m <= max && (m - min) % step == 0 && m >= e.resources.memory_mb
                );
                if let Some(g) = task.size.storage_gib {
                    assert!((21..=200).contains(&g));
                }
                assert!(task.family.len() <= 255);
                assert!(task
                    .family
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                assert!(task.started_by.len() <= 128 && task.client_token.len() <= 64);
                aws::ecs::register_input(&task)
                    .expect("the SDK builder accepts the task definition");
                let env = gosling_providers::runner_env(s);
                aws::ecs::run_task_input(
                    &task,
                    "gosling",
                    "arn:aws:ecs:eu-west-1:123456789012:task-definition/x:1",
                    &env,
                )
                .expect("the SDK builder accepts RunTask");
            }
            Err(err) => {
                assert!(permanent(&err) && e.resources.disk_gb > 200, "{err}");
            }
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    // Property 8: Fly to Cloud SDK conversion — every egg the language accepts, of both
    // providers and both types, becomes SDK requests the AWS SDK's builders accept with
    // values in the APIs' ranges, and Yandex requests the fake Yandex API accepts; an egg
    // bigger than a service offers gets a permanent error and sends nothing.
    #[test]
    fn property_8_every_egg_becomes_valid_cloud_requests(e in arb_egg(), id in "[a-z0-9-]{1,40}|[A-Za-z0-9_.:-]{1,80}") {
        let world = world();
        let runner_id = format!("r{}", id.replace(':', "-")).chars().take(64).collect::<String>();
        let s = spec(&runner_id, e.clone());
        match e.cloud.provider {
            Cloud::Aws => check_aws(&s, world.aws.as_ref().unwrap()),
            Cloud::Yandex => {
                let key = gosling_fleet::provider_key(&e);
                let p = world.providers.by_key[&key].clone();
                let before = world.fake.instances().len() + world.fake.containers().len();
                let sent = world.fake.requests().len();
                let result = world.rt.block_on(p.create(&s));
                match (&result, e.kind) {
                    (Ok(_), _) => {}
                    (Err(err), RunnerKind::Vm) => {
                        let size = sizing::yandex_vm_size(e.resources.cpu, e.resources.memory_mb, e.resources.disk_gb, 10);
                        prop_assert!(permanent(err) && size.is_err(), "{err}");
                        prop_assert_eq!(world.fake.instances().len() + world.fake.containers().len(), before);
                        prop_assert!(world.fake.requests()[sent..].iter().all(|r| r.method == "GET" || r.path.starts_with("/iam/")));
                    }
                    (Err(err), RunnerKind::Serverless) => prop_assert!(false, "{err}"),
                }
                if let Ok(h) = result {
                    if e.kind == RunnerKind::Vm {
                        let body = yandex::instance_request(&s, world.yandex.as_ref().unwrap(), &cloud_init::render(&s, &common::binary(), &[]).unwrap()).unwrap();
                        prop_assert_eq!(body["platformId"].as_str(), Some("standard-v3"));
                    }
                    world.rt.block_on(p.terminate(&h)).unwrap();
                }
                prop_assert_eq!(world.fake.violations(), Vec::<String>::new());
            }
        }
    }
}

struct World {
    rt: tokio::runtime::Runtime,
    fake: FakeYandex,
    providers: Providers,
    yandex: Option<gosling_providers::YandexSettings>,
    aws: Option<gosling_providers::AwsSettings>,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: std::sync::OnceLock<World> = std::sync::OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fake = FakeYandex::start();
        let dir = tempfile::tempdir().unwrap();
        let mut settings = yandex_settings(&fake.base, dir.path());
        // AWS requests are only built (no moto needed): fixed ids.
        settings.aws = Some(gosling_providers::AwsSettings {
            region: "eu-west-1".into(),
            subnets: vec!["subnet-0123456789abcdef0".into()],
            security_groups: vec!["sg-0123456789abcdef0".into()],
            ami: Some("ami-0123456789abcdef0".into()),
            ecs_cluster: Some("gosling".into()),
            runner_image: Some("gosling-runner:1".into()),
            min_disk_gb: 10,
            assign_public_ip: true,
            ..Default::default()
        });
        let providers = gosling_providers::providers(&settings).unwrap();
        World {
            rt,
            fake,
            providers,
            yandex: settings.yandex_settings(),
            aws: settings.aws_settings(),
            _dir: dir,
        }
    })
}

/// The states a runner went through, driven the way MotherGoose and UglyFox drive it:
/// record, provider create, the runner's first heartbeat, termination through the
/// lifecycle (provider terminate), on an embedded SQLite store.
async fn lifecycle_states(
    providers: &Providers,
    e: &fly_ir::Egg,
    runner_id: &str,
) -> Vec<RunnerState> {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn gosling_state::StateStore> =
        Arc::new(gosling_state::SqliteStore::open(&dir.path().join("state.db"), false).unwrap());
    let fleet = Fleet::new(store.clone(), gosling_state::system_clock(), "mothergoose");
    let provider_name = match e.cloud.provider {
        Cloud::Yandex => "yandex",
        Cloud::Aws => "aws",
    };
    let kind = match e.kind {
        RunnerKind::Vm => "vm",
        RunnerKind::Serverless => "serverless",
    };
    let runner = gosling_state::Runner::new(
        runner_id,
        &e.name,
        kind,
        provider_name,
        &e.cloud.region,
        chrono::Utc::now(),
    );
    fleet
        .create(&runner, serde_json::json!({}), vec![])
        .await
        .unwrap();
    let mut states = vec![gosling_fleet::state_of(
        &store.runner(runner_id).await.unwrap().unwrap().item,
    )];

    let provider = providers.for_egg(e).unwrap();
    let handle = provider.create(&spec(runner_id, e.clone())).await.unwrap();
    assert_eq!(
        provider.status(&handle).await.unwrap(),
        MachineStatus::Running,
        "{}",
        handle.provider
    );
    let machine = serde_json::to_value(&handle).unwrap();
    fleet
        .edit(runner_id, |r, _| {
            r.machine = Some(machine.clone());
            Ok(gosling_fleet::Edit::Write(Some((
                "provisioned".into(),
                serde_json::json!({}),
            ))))
        })
        .await
        .unwrap();
    // The runner's first heartbeat: its agent is up.
    let r = fleet
        .edit(runner_id, |r, now| {
            r.last_heartbeat = Some(now);
            gosling_fleet::set_state(r, RunnerState::Active, now)?;
            Ok(gosling_fleet::Edit::Write(Some((
                "heartbeat".into(),
                serde_json::json!({}),
            ))))
        })
        .await
        .unwrap();
    states.push(gosling_fleet::state_of(&r.item));

    let cipher =
        gosling_state::Cipher::from_base64(&gosling_state::Cipher::generate_key()).unwrap();
    let lifecycle = Lifecycle {
        fleet: fleet.clone(),
        providers: providers.clone(),
        registry: Arc::new(Registry::new(
            Arc::new(gosling_fleet::secrets::Secrets::new(
                Default::default(),
                None,
            )),
            cipher,
            gosling_gitlab::Retry::default(),
        )),
        policy: TerminationPolicy::default(),
    };
    assert_eq!(
        lifecycle
            .request(runner_id, "job done", true)
            .await
            .unwrap(),
        Step::Remove
    );
    states.push(gosling_fleet::state_of(
        &store.runner(runner_id).await.unwrap().unwrap().item,
    ));
    assert_eq!(
        lifecycle.remove(runner_id, None).await.unwrap(),
        Step::Terminated
    );
    states.push(gosling_fleet::state_of(
        &store.runner(runner_id).await.unwrap().unwrap().item,
    ));
    assert_eq!(
        provider.status(&handle).await.unwrap(),
        MachineStatus::Gone,
        "{}",
        handle.provider
    );
    states
}

// Property 23: multi-cloud deployment consistency — the same egg, deployed to Yandex Cloud
// (fake API) and to AWS (moto), goes through the same runner states, provisioning →
// active → terminating → terminated, through gosling-fleet's Fleet and Lifecycle on an
// embedded SQLite store, with the machine created, running and gone at the same steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_23_same_states_on_yandex_and_aws() {
    let moto = Moto::start();
    let proxy = MotoProxy::start(moto.port(), 0).await;
    common::moto_hold_tasks(&moto.endpoint).await;
    let fake = FakeYandex::start();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = moto_settings(&moto.endpoint).await;
    settings.aws.as_mut().unwrap().endpoint = Some(proxy.endpoint.clone());
    settings.yandex = yandex_settings(&fake.base, dir.path()).yandex;
    let providers = gosling_providers::providers(&settings).unwrap();
    let expected = vec![
        RunnerState::Provisioning,
        RunnerState::Active,
        RunnerState::Terminating,
        RunnerState::Terminated,
    ];
    let mut n = 0;
    for kind in [RunnerKind::Vm, RunnerKind::Serverless] {
        for preemptible in [false, true] {
            n += 1;
            let mut e = egg("same-egg", Cloud::Yandex, kind);
            e.cloud.preemptible = preemptible;
            e.resources.cpu = 2;
            e.resources.memory_mb = 4096;
            let on_yandex = lifecycle_states(&providers, &e, &format!("r-yc-{n}")).await;
            e.cloud.provider = Cloud::Aws;
            e.cloud.region = "eu-west-1".into();
            let on_aws = lifecycle_states(&providers, &e, &format!("r-aws-{n}")).await;
            assert_eq!(
                on_yandex, expected,
                "{kind:?} preemptible={preemptible} on Yandex"
            );
            assert_eq!(
                on_aws, on_yandex,
                "{kind:?} preemptible={preemptible}: AWS differs from Yandex"
            );
        }
    }
    assert!(fake.instances().is_empty() && fake.containers().is_empty());
    assert_eq!(fake.violations(), Vec::<String>::new());
}
