//! Control-plane cost of one provisioned runner: the time from `Provider::create` to the
//! handle, and the API requests it takes, for each provider — EC2 and ECS Fargate against
//! moto, Compute and Serverless Containers against the fake Yandex Cloud API (operations
//! done at once). Local emulators: the figures are the client's own cost plus loopback
//! round trips, not the clouds' provisioning time.
//!
//! `cargo bench -p gosling-providers --bench provision`

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use fly_ir::{Provider as Cloud, RunnerKind};
use gosling_standins::yandex::FakeYandex;
use gosling_standins::Moto;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let moto = Moto::start();
    let fake = FakeYandex::start();
    let dir = tempfile::tempdir().unwrap();
    let (proxy, providers) = rt.block_on(async {
        let proxy = common::MotoProxy::start(moto.port(), 0).await;
        common::moto_hold_tasks(&moto.endpoint).await;
        let mut settings = common::moto_settings(&moto.endpoint).await;
        settings.aws.as_mut().unwrap().endpoint = Some(proxy.endpoint.clone());
        settings.yandex = common::yandex_settings(&fake.base, dir.path()).yandex;
        let providers = gosling_providers::providers(&settings).unwrap();
        (proxy, providers)
    });
    let seq = AtomicUsize::new(0);
    let mut group = c.benchmark_group("create_to_handle");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (label, cloud, kind) in [
        ("aws-ec2 (moto)", Cloud::Aws, RunnerKind::Vm),
        ("aws-ecs (moto)", Cloud::Aws, RunnerKind::Serverless),
        ("yandex-compute (fake)", Cloud::Yandex, RunnerKind::Vm),
        (
            "yandex-serverless (fake)",
            Cloud::Yandex,
            RunnerKind::Serverless,
        ),
    ] {
        let egg = common::egg("bench", cloud, kind);
        let p = providers.for_egg(&egg).unwrap();
        // Warm-up (token, SDK config, task definition, AMI root device), then the
        // requests of one more create.
        let one = |p: &gosling_fleet::SharedProvider| {
            let id = format!("r-bench-{}", seq.fetch_add(1, Ordering::SeqCst));
            rt.block_on(p.create(&common::spec(&id, egg.clone())))
                .unwrap();
        };
        one(&p);
        let (before_aws, before_yc) =
            (proxy.requests.load(Ordering::SeqCst), fake.requests().len());
        one(&p);
        let requests =
            proxy.requests.load(Ordering::SeqCst) - before_aws + fake.requests().len() - before_yc;
        println!("{label}: {requests} requests per provisioned runner (after warm-up)");
        group.bench_function(label, |b| b.iter(|| one(&p)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
