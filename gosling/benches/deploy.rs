//! `gosling deploy --dry-run` and a real deploy to the embedded store on a generated Nest of
//! 1,000 eggs (and 100 jobs) in 100 files, end to end through the binary.
//!
//! Run: `cargo bench -p gosling --bench deploy` (figures go to BENCHMARKS.md).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 7;

fn gosling(nest: &Path, home: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_gosling"))
        .args(args)
        .current_dir(nest)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .output()
        .expect("gosling runs");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "gosling {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn row(name: &str, v: Vec<Duration>) {
    let (min, med, max) = stats(v);
    println!(
        "| {name} | {:.0} ms | {:.0} ms | {:.0} ms |",
        min.as_secs_f64() * 1e3,
        med.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let nest = dir.path().join("nest");
    let home = dir.path().join("home");
    let files = fly_tests::generate::nest_files(1000, 100);
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    for (p, t) in &files {
        let path = nest.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    }
    let state = nest.join(".gosling");
    println!(
        "Nest: 1,000 eggs, 100 jobs, 1 uglyfox in {} files ({:.1} MB); {RUNS} runs each\n",
        files.len(),
        bytes as f64 / 1e6
    );
    println!("| command | min | median | max |");
    println!("| --- | --- | --- | --- |");

    let mut dry_first = Vec::new();
    let mut first = Vec::new();
    for _ in 0..RUNS {
        let _ = std::fs::remove_dir_all(&state);
        dry_first.push(gosling(&nest, &home, &["deploy", "--dry-run"]));
        assert!(!state.exists(), "the dry run wrote something");
        first.push(gosling(&nest, &home, &["deploy"]));
    }
    row(
        "`deploy --dry-run`, nothing deployed yet (1,000 to add)",
        dry_first,
    );
    row(
        "`deploy` to an empty embedded store (1,000 eggs + 100 jobs written)",
        first,
    );

    let dry_same: Vec<Duration> = (0..RUNS)
        .map(|_| gosling(&nest, &home, &["deploy", "--dry-run"]))
        .collect();
    row("`deploy --dry-run`, deployed and unchanged", dry_same);

    // Change one egg per run, deploy it (a new version each time).
    let file = nest.join(&files[0].0);
    let original = std::fs::read_to_string(&file).unwrap();
    let mut change = Vec::new();
    for i in 0..RUNS {
        let edited = original.replacen(
            "idle_timeout = \"",
            &format!("idle_timeout = \"{}", i + 1),
            1,
        );
        std::fs::write(&file, edited).unwrap();
        change.push(gosling(&nest, &home, &["deploy"]));
    }
    row("`deploy` of a one-egg change over 1,000 deployed", change);
    let status: Vec<Duration> = (0..RUNS)
        .map(|_| gosling(&nest, &home, &["status", "--output", "json"]))
        .collect();
    row("`status --output json`", status);
    let db = std::fs::metadata(state.join("state.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "\nembedded store after the runs: state.db {:.1} MB",
        db as f64 / 1e6
    );
}
