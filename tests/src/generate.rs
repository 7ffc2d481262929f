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
