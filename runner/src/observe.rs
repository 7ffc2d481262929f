//! What runner mode can see of the agent, a black box: its Prometheus metrics and its log.
//!
//! `gitlab-runner run` serves metrics on config.toml's `listen_address` (runner mode sets
//! it to a free loopback port): the gauge `gitlab_runner_jobs` (running jobs, one sample
//! per runner and stage, with a zero `state="idle"` sample; `ci_runner_builds` before
//! gitlab-runner 10) says whether it is busy, `gitlab_runner_jobs_total` how many jobs it
//! took and `gitlab_runner_failed_jobs_total` how many failed. `run-single` serves no
//! metrics, so there runner mode reads its log: `Checking for jobs... received` is the
//! line gitlab-runner writes when GitLab hands it a job; the agent exits after it.

/// Job counts read from one scrape of the agent's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobGauge {
    /// Jobs running now.
    pub running: u32,
    /// Jobs this agent process took.
    pub taken: u64,
    /// Jobs of this agent process that failed.
    pub failed: u64,
}

/// The log line of a job handed to the agent.
pub const RECEIVED_LINE: &str = "Checking for jobs... received";

/// Whether a log line says the agent was handed a job.
pub fn received_job(line: &str) -> bool {
    line.contains(RECEIVED_LINE)
}

/// A sample line `name{labels} value [timestamp]` as (name, value).
fn sample(line: &str) -> Option<(&str, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        // Skip the labels, minding quoted values (which may hold `}` or escaped quotes).
        let (mut quoted, mut escaped, mut end) = (false, false, None);
        for (i, c) in rest.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '}' if !quoted => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[end? + 1..];
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    value.is_finite().then_some((name, value))
}

fn count(v: f64) -> u64 {
    if v <= 0.0 {
        0
    } else {
        v.min(u64::MAX as f64) as u64
    }
}

/// Reads the job counts from a Prometheus text exposition; `None` when it has no job gauge
/// (not gitlab-runner's metrics).
pub fn parse_metrics(text: &str) -> Option<JobGauge> {
    let (mut jobs, mut legacy, mut taken, mut failed) = (None::<f64>, None::<f64>, 0.0, 0.0);
    for (name, value) in text.lines().filter_map(sample) {
        match name {
            "gitlab_runner_jobs" => *jobs.get_or_insert(0.0) += value,
            "ci_runner_builds" => *legacy.get_or_insert(0.0) += value,
            "gitlab_runner_jobs_total" => taken += value,
            "gitlab_runner_failed_jobs_total" => failed += value,
            _ => {}
        }
    }
    let running = jobs.or(legacy)?;
    Some(JobGauge {
        running: count(running).min(u32::MAX as u64) as u32,
        taken: count(taken),
        failed: count(failed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_runner_metrics_are_read() {
        let text = r#"# HELP gitlab_runner_jobs The current number of running builds.
# TYPE gitlab_runner_jobs gauge
gitlab_runner_jobs{executor_stage="idle",runner="abc",stage="idle",state="idle",system_id="s_1"} 0
gitlab_runner_jobs{executor_stage="docker_run",runner="abc",stage="step_script",state="running",system_id="s_1"} 2
gitlab_runner_jobs{runner="we}ird \"x\"",state="running"} 1 1700000000000
gitlab_runner_jobs_total{runner="abc",system_id="s_1"} 7
gitlab_runner_failed_jobs_total{failure_reason="script_failure",runner="abc"} 1
gitlab_runner_failed_jobs_total{failure_reason="runner_system_failure",runner="abc"} 2
gitlab_runner_version_info{version="17.5.0"} 1
"#;
        assert_eq!(
            parse_metrics(text),
            Some(JobGauge {
                running: 3,
                taken: 7,
                failed: 3
            })
        );
        assert_eq!(
            parse_metrics("ci_runner_builds{state=\"running\"} 1\n"),
            Some(JobGauge {
                running: 1,
                taken: 0,
                failed: 0
            })
        );
        assert_eq!(parse_metrics("up 1\n"), None);
        assert_eq!(
            parse_metrics("gitlab_runner_jobs{unterminated 3\ngitlab_runner_jobs NaN\n"),
            None
        );
        assert_eq!(
            parse_metrics("gitlab_runner_jobs -4\n").map(|g| g.running),
            Some(0)
        );
    }

    #[test]
    fn the_received_line_is_recognised() {
        assert!(received_job(
            "Checking for jobs... received                       job=1234 repo_url=https://x runner=abc"
        ));
        assert!(!received_job("Checking for jobs... nothing"));
    }
}
