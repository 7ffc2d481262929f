//! The AWS providers against moto: EC2 (RunInstances from the egg, idempotent by runner,
//! spot with on-demand fallback on a capacity error, terminate of an unknown instance) and
//! ECS Fargate (task definition per egg reused, RunTask with the bootstrap, idempotent by
//! `startedBy`, StopTask).

mod common;

use base64::Engine as _;
use common::{egg, moto_settings, spec, MotoProxy, CREDENTIAL};
use fly_ir::{Provider as Cloud, RunnerKind};
use gosling_fleet::{Handle, MachineStatus};
use gosling_standins::Moto;
use std::collections::BTreeMap;

async fn clients(endpoint: &str) -> (aws_sdk_ec2::Client, aws_sdk_ecs::Client) {
    let conf = gosling_state::aws_config(
        Some(endpoint),
        Some("eu-west-1"),
        Some(&Moto::credentials()),
    )
    .await;
    (
        aws_sdk_ec2::Client::new(&conf),
        aws_sdk_ecs::Client::new(&conf),
    )
}

async fn instance(ec2: &aws_sdk_ec2::Client, id: &str) -> aws_sdk_ec2::types::Instance {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    out.reservations()[0].instances()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_runner_from_the_egg() {
    let moto = Moto::start();
    let settings = moto_settings(&moto.endpoint).await;
    let p = gosling_providers::providers(&settings).unwrap();
    let vm = p.by_key["aws/vm"].clone();
    let (ec2, _) = clients(&moto.endpoint).await;
    let mut e = egg("builds", Cloud::Aws, RunnerKind::Vm);
    e.resources.cpu = 4;
    e.resources.memory_mb = 12_000;
    let s = spec("r-0123456789abcdef", e);
    let h = vm.create(&s).await.unwrap();
    assert_eq!(h.provider, "aws-ec2");
    assert_eq!(h.details["market"], "on-demand");
    let i = instance(&ec2, &h.id).await;
    assert_eq!(i.instance_type().unwrap().as_str(), "m6i.xlarge");
    let tags: BTreeMap<_, _> = i
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(tags["gosling:egg"], "builds");
    assert_eq!(tags["gosling:runner"], "r-0123456789abcdef");
    assert_eq!(tags["Name"], "gosling-builds-r-0123456789abcdef");
    assert_eq!(
        i.subnet_id(),
        settings
            .aws
            .as_ref()
            .unwrap()
            .subnets
            .first()
            .map(String::as_str)
    );
    assert!(i.instance_lifecycle().is_none(), "not spot");
    let ud = ec2
        .describe_instance_attribute()
        .instance_id(&h.id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let ud = ud.user_data().and_then(|u| u.value()).unwrap();
    let ud = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(ud)
            .unwrap(),
    )
    .unwrap();
    assert!(ud.starts_with("#cloud-config\n"));
    assert!(ud.contains("gosling-runner@r-0123456789abcdef"));
    assert!(
        !ud.contains(CREDENTIAL),
        "the credential is only in the base64 env file"
    );
    assert!(matches!(
        vm.status(&h).await.unwrap(),
        MachineStatus::Running | MachineStatus::Starting
    ));

    // Again: the same instance (found by its runner tag), nothing new.
    let again = vm.create(&s).await.unwrap();
    assert_eq!(again.id, h.id);
    let all = ec2.describe_instances().send().await.unwrap();
    assert_eq!(
        all.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .count(),
        1
    );

    vm.terminate(&h).await.unwrap();
    assert_eq!(vm.status(&h).await.unwrap(), MachineStatus::Gone);
    vm.terminate(&h).await.unwrap();
    // An instance that never existed: already gone.
    let unknown = Handle {
        provider: "aws-ec2".into(),
        id: "i-0123456789abcdef0".into(),
        details: BTreeMap::new(),
    };
    vm.terminate(&unknown).await.unwrap();
    assert_eq!(vm.status(&unknown).await.unwrap(), MachineStatus::Gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_falls_back_to_on_demand_on_insufficient_capacity() {
    let moto = Moto::start();
    let proxy = MotoProxy::start(moto.port(), 1).await;
    let mut settings = moto_settings(&moto.endpoint).await;
    settings.aws.as_mut().unwrap().endpoint = Some(proxy.endpoint.clone());
    let p = gosling_providers::providers(&settings).unwrap();
    let vm = p.by_key["aws/vm"].clone();
    let (ec2, _) = clients(&moto.endpoint).await;
    let mut e = egg("cheap", Cloud::Aws, RunnerKind::Vm);
    e.cloud.preemptible = true;

    // No spot capacity: on-demand instead.
    let h = vm.create(&spec("r-spot-1", e.clone())).await.unwrap();
    assert_eq!(proxy.refused.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(*proxy.forwarded.lock().unwrap(), vec![false]);
    assert_eq!(h.details["market"], "on-demand");
    assert!(instance(&ec2, &h.id).await.instance_lifecycle().is_none());

    // Capacity again: spot.
    let h2 = vm.create(&spec("r-spot-2", e)).await.unwrap();
    assert_eq!(h2.details["market"], "spot");
    assert_eq!(*proxy.forwarded.lock().unwrap(), vec![false, true]);
    assert_eq!(
        instance(&ec2, &h2.id)
            .await
            .instance_lifecycle()
            .map(|l| l.as_str()),
        Some("spot")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fargate_runner_from_the_egg() {
    let moto = Moto::start();
    let proxy = MotoProxy::start(moto.port(), 0).await;
    let mut settings = moto_settings(&moto.endpoint).await;
    settings.aws.as_mut().unwrap().endpoint = Some(proxy.endpoint.clone());
    common::moto_hold_tasks(&moto.endpoint).await;
    let p = gosling_providers::providers(&settings).unwrap();
    let sl = p.by_key["aws/serverless"].clone();
    let (_, ecs) = clients(&proxy.endpoint).await;
    let mut e = egg("quick", Cloud::Aws, RunnerKind::Serverless);
    e.resources.cpu = 1;
    e.resources.memory_mb = 3000;
    let mut s = spec("r-fargate-1", e.clone());
    s.ephemeral = true;
    let h = sl.create(&s).await.unwrap();
    assert_eq!(h.provider, "aws-ecs");
    assert_eq!(h.details["cluster"], "gosling");
    let t = ecs
        .describe_tasks()
        .cluster("gosling")
        .tasks(&h.id)
        .send()
        .await
        .unwrap();
    let t = &t.tasks()[0];
    assert_eq!(t.started_by(), Some("r-fargate-1"));
    assert_eq!(t.launch_type().map(|l| l.as_str()), Some("FARGATE"));
    let env: BTreeMap<_, _> = t.overrides().unwrap().container_overrides()[0]
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap().to_string(),
                kv.value().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(env["RUNNER_ID"], "r-fargate-1");
    assert_eq!(env["EGG_NAME"], "quick");
    assert_eq!(env["GOSLING_RUNNER_EPHEMERAL"], "true");
    let td = ecs
        .describe_task_definition()
        .task_definition(t.task_definition_arn().unwrap())
        .send()
        .await
        .unwrap();
    let td = td.task_definition().unwrap();
    assert_eq!(td.family(), Some("gosling-quick"));
    assert_eq!((td.cpu(), td.memory()), (Some("1024"), Some("3072")));
    let c = &td.container_definitions()[0];
    assert_eq!(c.entry_point(), ["/usr/local/bin/gosling", "runner"]);
    assert_eq!(sl.status(&h).await.unwrap(), MachineStatus::Running);

    // Again: the same task. Another runner of the egg: the same task definition.
    assert_eq!(sl.create(&s).await.unwrap().id, h.id);
    let h2 = sl.create(&spec("r-fargate-2", e)).await.unwrap();
    assert_ne!(h2.id, h.id);
    let defs = ecs
        .list_task_definitions()
        .family_prefix("gosling-quick")
        .send()
        .await
        .unwrap();
    assert_eq!(
        defs.task_definition_arns().len(),
        1,
        "registered once, reused"
    );

    sl.terminate(&h).await.unwrap();
    assert_eq!(sl.status(&h).await.unwrap(), MachineStatus::Gone);
    sl.terminate(&h).await.unwrap();
    sl.terminate(&h2).await.unwrap();
    // A task that never existed: already gone.
    let mut unknown = h.clone();
    unknown.id =
        "arn:aws:ecs:eu-west-1:123456789012:task/gosling/00000000000000000000000000000000".into();
    sl.terminate(&unknown).await.unwrap();
    assert_eq!(sl.status(&unknown).await.unwrap(), MachineStatus::Gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_before_any_request() {
    let moto = Moto::start();
    let settings = moto_settings(&moto.endpoint).await;
    let p = gosling_providers::providers(&settings).unwrap();
    let (ec2, _) = clients(&moto.endpoint).await;
    // User data over 16 KB.
    let mut s = spec("r-big", egg("builds", Cloud::Aws, RunnerKind::Vm));
    s.extra_env.insert("BIG".into(), "x".repeat(17 * 1024));
    let e = p.by_key["aws/vm"].create(&s).await.unwrap_err();
    assert!(!e.is_retryable() && e.to_string().contains("16384"), "{e}");
    // A Fargate disk beyond 200 GiB.
    let mut big = egg("disky", Cloud::Aws, RunnerKind::Serverless);
    big.resources.disk_gb = 500;
    let e = p.by_key["aws/serverless"]
        .create(&spec("r-disk", big))
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    // An AMI that does not exist.
    let mut e2 = egg("builds", Cloud::Aws, RunnerKind::Vm);
    e2.cloud.image_id = Some("ami-00000000deadbeef0".into());
    let e = p.by_key["aws/vm"]
        .create(&spec("r-ami", e2))
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    let all = ec2.describe_instances().send().await.unwrap();
    assert_eq!(all.reservations().len(), 0);
}
