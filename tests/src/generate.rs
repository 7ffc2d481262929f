//! Deterministic generated Nest sources for benchmarks: Eggs, Jobs and UglyFox blocks with
//! comments, heredocs, interpolations, lists and maps. The text is valid Fly *and* valid HCL,
//! so `hcl-edit` can parse the same bytes.

use std::fmt::Write;

/// A small deterministic generator (64-bit LCG), so runs compare like with like.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Appends one egg, job or uglyfox block (chosen by `i`) to `out`.
pub fn block(i: usize, rng_seed: u64, out: &mut String) {
    let mut rng = Lcg(rng_seed ^ (i as u64).wrapping_mul(0x9e3779b97f4a7c15));
    let provider = ["aws", "yandex"][rng.next(2) as usize];
    match i % 5 {
        0..=2 => {
            let _ = write!(
                out,
                r#"# Runner pool {i}: builds for team {team}
egg "app-{i}" {{
  type = "{ty}" // pool kind
  cloud {{
    provider = "{provider}"
    region   = "${{vars.region}}"
  }}
  resources {{
    cpu    = {cpu}
    memory = {mem} /* MB */
    disk   = {disk}
  }}
  runner {{
    tags         = ["docker", "linux", "team-{team}", "pool-{i}"]
    concurrent   = {conc}
    idle_timeout = "{idle}m"
  }}
  gitlab {{
    project_id   = {project}
    token_secret = "vault://gitlab/runner-token-{i}"
  }}
  environment {{
    DOCKER_DRIVER = "overlay2"
    POOL          = "app-{i}-${{vars.env}}"
    WEIGHT        = "-{weight}.5"
  }}
  labels = {{ team = "t{team}", cost = {cost}, ratio = -{ratio}.25e-1 }}
}}

"#,
                team = rng.next(40),
                ty = ["vm", "serverless"][rng.next(2) as usize],
                cpu = 1 + rng.next(16),
                mem = 512 * (1 + rng.next(32)),
                disk = 10 + rng.next(200),
                conc = 1 + rng.next(10),
                idle = 5 + rng.next(55),
                project = 1000 + rng.next(100_000),
                weight = rng.next(100),
                cost = rng.next(10_000),
                ratio = rng.next(10),
            );
        }
        3 => {
            let _ = write!(
                out,
                r#"// Maintenance job {i}
job "rotate-{i}" {{
  schedule = "{min} {hour} * * *"
  runner {{
    type = "vm"
    tags = ["privileged", "ops"]
  }}
  script = <<-EOT
    #!/bin/bash
    # Rotate GitLab runner tokens for shard {i}
    gosling rotate-tokens --shard {i} --region ${{vars.region}}
    echo "done: {i}"
  EOT
  on_failure {{
    notify = ["ops-{i}@example.com", "oncall@example.com"]
  }}
}}

"#,
                min = rng.next(60),
                hour = rng.next(24),
            );
        }
        _ => {
            let _ = write!(
                out,
                r#"uglyfox {{
  pruning {{
    failed_threshold = {thr}
    max_age          = "{age}h"
    check_interval   = "5m"
  }}
  apex {{
    max_count = {max}
    min_count = 2
  }}
  nadir {{
    max_count    = 5
    idle_timeout = "30m"
  }}
  policies {{
    rule "terminate_old_failed_{i}" {{
      condition = "failed_count >= {thr} AND age > 1h"
      action    = "terminate"
    }}
    rule "demote_idle_{i}" {{
      condition = "state == 'apex' AND idle_time > 30m"
      action    = "demote_to_nadir"
    }}
  }}
}}

"#,
                thr = 1 + rng.next(9),
                age = 1 + rng.next(72),
                max = 2 + rng.next(20),
            );
        }
    }
}

/// A single source of at least `min_bytes` bytes.
pub fn large_source(min_bytes: usize) -> String {
    let mut out = String::with_capacity(min_bytes + 4096);
    out.push_str("vars {\n  region = \"ru-central1-a\"\n  env    = \"prod\"\n}\n\n");
    let mut i = 0;
    while out.len() < min_bytes {
        block(i, 42, &mut out);
        i += 1;
    }
    out.pop(); // one final newline, as the formatter writes it
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_source_is_valid_and_formatted() {
        let src = super::large_source(64 * 1024);
        let parse = fly_syntax::parse(&src);
        assert!(
            parse.diagnostics.is_empty(),
            "{:?}",
            &parse.diagnostics[..1]
        );
        assert!(parse.comments.len() > 100);
        let formatted = fly_fmt::format(&src).unwrap();
        let first_diff = formatted.lines().zip(src.lines()).position(|(a, b)| a != b);
        assert!(formatted == src, "formatting changes line {first_diff:?}");
    }
}

/// One valid egg (every third serverless), as a Nest file holds it.
fn nest_egg(i: usize, out: &mut String) {
    let mut rng = Lcg(7 ^ (i as u64).wrapping_mul(0x9e3779b97f4a7c15));
    let serverless = i.is_multiple_of(3);
    let _ = write!(
        out,
        r#"# Pool {i}
egg "pool-{i}" {{
  type = "{ty}"

  cloud {{
    provider = "{provider}"
    region   = "{region}"
  }}

  resources {{
    cpu    = {cpu}
    memory = {mem}
  }}

  runner {{
    tags         = ["docker", "team-{team}", "pool-{i}"]
    concurrent   = {conc}
    idle_timeout = "{idle}m"
    timeout      = "{timeout}m"
  }}

  gitlab {{
    project_id   = {project}
    token_secret = "vault://gitlab/pool-{i}"
  }}

  environment {{
    DOCKER_DRIVER = "overlay2"
    POOL          = "pool-{i}-${{vars.env}}"
  }}
}}

"#,
        ty = if serverless { "serverless" } else { "vm" },
        provider = if i.is_multiple_of(2) { "yandex" } else { "aws" },
        region = if i.is_multiple_of(2) {
            "${vars.region}"
        } else {
            "eu-west-1"
        },
        cpu = 1 + rng.next(4),
        mem = 512 * (1 + rng.next(16)),
        team = rng.next(40),
        conc = 1 + rng.next(10),
        idle = 5 + rng.next(55),
        timeout = 10 + rng.next(50),
        project = 1000 + rng.next(100_000),
    );
}

/// One valid job.
fn nest_job(i: usize, out: &mut String) {
    let _ = write!(
        out,
        r#"job "maintain-{i}" {{
  schedule = "{m} {h} * * *"
  script   = <<-EOT
    gosling rotate-tokens --pool pool-{i}
  EOT

  runner {{
    tags = ["docker"]
  }}
}}

"#,
        m = i % 60,
        h = i % 24
    );
}

const NEST_HEADER: &str = "vars {\n  region = \"ru-central1-a\"\n  env    = \"prod\"\n}\n\nuglyfox {\n  apex {\n    max_count = 10\n    min_count = 2\n  }\n\n  policies {\n    rule \"old\" {\n      condition = \"failed_count >= 3 AND age > 1h\"\n      action    = \"terminate\"\n    }\n  }\n}\n\n";

/// A valid Nest of `eggs` eggs (and a job per ten eggs) spread over `files` files under
/// `Eggs/`, plus `vars` and `uglyfox` in `UF/policy.fly`.
pub fn nest_files(eggs: usize, files: usize) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = (0..files)
        .map(|f| (format!("Eggs/pools-{f:03}.fly"), String::new()))
        .collect();
    for i in 0..eggs {
        nest_egg(i, &mut out[i % files].1);
        if i.is_multiple_of(10) {
            nest_job(i, &mut out[i % files].1);
        }
    }
    out.push(("UF/policy.fly".into(), NEST_HEADER.to_string()));
    out
}

/// A valid single-file Nest of at least `min_bytes` bytes.
pub fn nest_source(min_bytes: usize) -> String {
    let mut out = String::from(NEST_HEADER);
    let mut i = 0;
    while out.len() < min_bytes {
        nest_egg(i, &mut out);
        if i.is_multiple_of(10) {
            nest_job(i, &mut out);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod nest_tests {
    #[test]
    fn generated_nests_compile_cleanly() {
        let files: Vec<fly_types::SourceFile> = super::nest_files(50, 5)
            .into_iter()
            .map(|(p, t)| fly_types::SourceFile::new(p, t))
            .collect();
        let c = fly_types::compile(files, &fly_types::Env::default());
        let d: Vec<_> = c
            .diagnostics()
            .map(|(p, d)| format!("{p}: {}", d.message))
            .collect();
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.ir.unwrap().eggs.len(), 50);
        let one = fly_types::compile(
            vec![fly_types::SourceFile::new(
                "n.fly",
                super::nest_source(20_000),
            )],
            &fly_types::Env::default(),
        );
        assert!(one.ir.is_some());
    }
}
