//! Front-end speed on a generated ≥10 MB Nest source (valid Fly and valid HCL):
//! lex+parse next to `hcl-edit` parsing the same bytes, formatting, and the `fly check` /
//! `fly fmt --check` commands end to end. Peak memory of the commands is printed at the end.
//!
//! Run: `cargo bench --bench front_end` (figures go to BENCHMARKS.md).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::process::Command;
use std::time::Duration;

const SIZE: usize = 10 * 1024 * 1024;

fn input() -> String {
    fly_tests::generate::large_source(SIZE)
}

fn parsers(c: &mut Criterion) {
    let src = input();
    assert!(fly_syntax::parse(&src).diagnostics.is_empty());
    assert!(
        hcl_edit::parser::parse_body(&src).is_ok(),
        "the input is valid HCL"
    );
    let mut group = c.benchmark_group("parse-10MB");
    group.throughput(Throughput::Bytes(src.len() as u64));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function(BenchmarkId::new("fly-syntax", "lex+parse"), |b| {
        b.iter(|| black_box(fly_syntax::parse(black_box(&src))))
    });
    group.bench_function(BenchmarkId::new("hcl-edit", "parse_body"), |b| {
        b.iter(|| black_box(hcl_edit::parser::parse_body(black_box(&src)).is_ok()))
    });
    group.bench_function(BenchmarkId::new("fly-syntax", "lex only"), |b| {
        b.iter(|| black_box(fly_syntax::lexer::lex(black_box(&src)).tokens.len()))
    });
    group.bench_function(BenchmarkId::new("fly-fmt", "format"), |b| {
        b.iter(|| black_box(fly_fmt::format(black_box(&src)).map(|s| s.len()).ok()))
    });
    group.finish();
}

fn commands(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nest.fly");
    // A valid Nest, so `fly check` runs every stage (syntax, types, Nest-wide rules).
    // Formatted, so `fly fmt --check` walks the whole path and finds nothing to change.
    let nest = fly_fmt::format(&fly_tests::generate::nest_source(SIZE)).expect("valid");
    std::fs::write(&file, nest).unwrap();
    let fly = env!("CARGO_BIN_EXE_fly");
    let run = |args: &[&str]| {
        let status = Command::new(fly).args(args).arg(&file).status().unwrap();
        assert!(status.success(), "fly {args:?} failed");
    };
    for args in [&["check"][..], &["fmt", "--check"][..]] {
        let before = children_max_rss_kib();
        run(args);
        let after = children_max_rss_kib();
        println!(
            "peak RSS of `fly {}` on {:.1} MB: {} KiB{}",
            args.join(" "),
            std::fs::metadata(&file).unwrap().len() as f64 / 1e6,
            after,
            if after == before {
                " (no more than the previous command)"
            } else {
                ""
            }
        );
    }
    let mut group = c.benchmark_group("cli-10MB");
    group.throughput(Throughput::Bytes(std::fs::metadata(&file).unwrap().len()));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("fly check", |b| b.iter(|| run(&["check"])));
    group.bench_function("fly fmt --check", |b| b.iter(|| run(&["fmt", "--check"])));
    group.finish();
}

/// The largest resident set of any waited-for child so far (Linux reports KiB).
fn children_max_rss_kib() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_CHILDREN is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    assert_eq!(rc, 0);
    // SAFETY: initialised by the successful call above.
    unsafe { usage.assume_init() }.ru_maxrss
}

fn checker(c: &mut Criterion) {
    use criterion::BatchSize;
    use fly_types::{compile, Env, SourceFile};
    let env = Env::default();
    let nest: Vec<SourceFile> = fly_tests::generate::nest_files(1000, 100)
        .into_iter()
        .map(|(p, t)| SourceFile::new(p, t))
        .collect();
    let bytes: usize = nest.iter().map(|f| f.text.len()).sum();
    assert!(
        compile(nest.clone(), &env).ir.is_some(),
        "the generated Nest is valid"
    );
    let big = vec![SourceFile::new(
        "nest.fly",
        fly_tests::generate::nest_source(SIZE),
    )];
    assert!(
        compile(big.clone(), &env).ir.is_some(),
        "the generated file is valid"
    );

    let mut group = c.benchmark_group("compile");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("1000 eggs in 100 files (parse+check+lower)", |b| {
        b.iter_batched(
            || nest.clone(),
            |n| black_box(compile(n, &env).ir.is_some()),
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Bytes(big[0].text.len() as u64));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("one 10 MB file (parse+check+lower)", |b| {
        b.iter_batched(
            || big.clone(),
            |n| black_box(compile(n, &env).ir.is_some()),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, parsers, checker, commands);
criterion_main!(benches);
