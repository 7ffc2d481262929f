//! The `local` provider (runners as processes on this machine): creating a runner is
//! idempotent by its id, also when several workers create it at the same moment; ending
//! it removes its process and its folder, and nothing else.

mod common;

use gosling_fleet::local::{process_runs, LocalProvider};
use gosling_fleet::{MachineStatus, Provider};
use std::sync::Arc;
use std::time::Duration;

fn provider(dir: &std::path::Path) -> Arc<LocalProvider> {
    Arc::new(
        LocalProvider::new(
            dir.join("runners"),
            "/bin/sh",
            vec!["-c".into(), "sleep 30".into(), "runner".into()],
        )
        .with_grace(Duration::from_secs(1)),
    )
}

/// Processes whose command line names `runner`.
fn processes_of(runner: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| process_runs(*pid, runner))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_runner_start_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let p = provider(dir.path());
    let egg = common::egg("app", fly_ir::Provider::Aws, fly_ir::RunnerKind::Vm);
    let spec = common::spec("r-concurrent-create", egg);
    let creates: Vec<_> = (0..8)
        .map(|_| {
            let (p, spec) = (p.clone(), spec.clone());
            tokio::spawn(async move { p.create(&spec).await })
        })
        .collect();
    let mut pids = std::collections::BTreeSet::new();
    for c in creates {
        pids.insert(c.await.unwrap().unwrap().id);
    }
    assert_eq!(
        pids.len(),
        1,
        "every create names the same process: {pids:?}"
    );
    assert_eq!(processes_of("r-concurrent-create"), 1);

    let handle = p.create(&spec).await.unwrap();
    p.terminate(&handle).await.unwrap();
    assert_eq!(p.status(&handle).await.unwrap(), MachineStatus::Gone);
    assert_eq!(processes_of("r-concurrent-create"), 0);
    let folder = dir.path().join("runners/r-concurrent-create");
    assert!(!folder.exists(), "its folder (config, log) goes with it");
    p.terminate(&handle).await.unwrap();
}

#[tokio::test]
async fn a_handle_that_names_no_runner_folder_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = provider(dir.path());
    let egg = common::egg("app", fly_ir::Provider::Aws, fly_ir::RunnerKind::Vm);
    let kept = p.create(&common::spec("r-kept", egg)).await.unwrap();
    for runner in [None, Some(""), Some(".."), Some("r-kept/.."), Some("/tmp")] {
        let mut h = kept.clone();
        h.id = "999999999".into();
        match runner {
            Some(r) => h.details.insert("runner_id".into(), r.into()),
            None => h.details.remove("runner_id"),
        };
        p.terminate(&h).await.unwrap();
        assert!(
            dir.path().join("runners/r-kept/runner.pid").exists(),
            "{runner:?}"
        );
    }
    p.terminate(&kept).await.unwrap();
    assert!(!dir.path().join("runners/r-kept").exists());
    assert!(dir.path().join("runners").exists());
}

#[tokio::test]
async fn a_runner_ending_without_its_handle_leaves_no_process_and_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    let p = provider(dir.path());
    let egg = common::egg("app", fly_ir::Provider::Aws, fly_ir::RunnerKind::Vm);
    // Its process started, but the handle never reached the store (the caller died).
    p.create(&common::spec("r-unrecorded", egg)).await.unwrap();
    assert_eq!(processes_of("r-unrecorded"), 1);
    p.terminate_unrecorded("r-unrecorded").await.unwrap();
    assert_eq!(processes_of("r-unrecorded"), 0);
    assert!(!dir.path().join("runners/r-unrecorded").exists());
    // Cut short before the process started: only the folder.
    std::fs::create_dir_all(dir.path().join("runners/r-no-process")).unwrap();
    p.terminate_unrecorded("r-no-process").await.unwrap();
    assert!(!dir.path().join("runners/r-no-process").exists());
    p.terminate_unrecorded("r-never-made").await.unwrap();
}
