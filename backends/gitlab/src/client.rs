//! The GitLab REST calls the executors make, with retries and exponential backoff on
//! transient failures (connection errors, 429 — honouring `Retry-After` — and 5xx).
//!
//! - project webhooks (`GET|POST /projects/:id/hooks`, `PUT|DELETE /projects/:id/hooks/:hook_id`);
//! - runners (`POST /user/runners`, `DELETE /runners/:id`);
//! - jobs (`GET /projects/:id/jobs/:job_id`, `GET /projects/:id/jobs?scope[]=pending`);
//! - projects (`GET /projects/:id`) and the server version (`GET /version`).

use gosling_state::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// Why a GitLab call failed.
#[derive(Debug, thiserror::Error)]
pub enum GitLabError {
    /// GitLab answered with an error status.
    #[error("GitLab {method} {url} answered {status}{hint}: {body}")]
    Status {
        /// The method.
        method: &'static str,
        /// The URL (no token in it).
        url: String,
        /// The status code.
        status: u16,
        /// What to do about it.
        hint: &'static str,
        /// The start of the response body.
        body: String,
    },
    /// GitLab could not be reached (after retries).
    #[error("GitLab {method} {url} failed after {attempts} attempts: {message}")]
    Unreachable {
        /// The method.
        method: &'static str,
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        message: String,
    },
    /// The response was not what the API documents.
    #[error("GitLab {url}: unexpected response: {message}")]
    Response {
        /// The URL.
        url: String,
        /// What was wrong.
        message: String,
    },
}

impl GitLabError {
    /// Whether trying again later may succeed (GitLab down, rate-limited, 5xx), as opposed
    /// to a request GitLab refuses for good (401, 403, 404, 422).
    pub fn is_transient(&self) -> bool {
        match self {
            GitLabError::Unreachable { .. } => true,
            GitLabError::Status { status, .. } => *status == 429 || *status >= 500,
            GitLabError::Response { .. } => false,
        }
    }

    /// The HTTP status GitLab answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GitLabError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How often and how patiently to retry transient failures.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The first delay; each next one doubles.
    pub base_delay: Duration,
    /// The longest a `Retry-After` answer may make a call wait.
    pub max_delay: Duration,
    /// How long one attempt may take, answer included, before it counts as failed.
    pub attempt_timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// What happened to a project's hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookOutcome {
    /// A new hook was created.
    Created(u64),
    /// The hook with the same URL was updated in place.
    Updated(u64),
}

impl HookOutcome {
    /// The hook id.
    pub fn id(self) -> u64 {
        match self {
            HookOutcome::Created(id) | HookOutcome::Updated(id) => id,
        }
    }
}

#[derive(Deserialize)]
struct Hook {
    id: u64,
    url: String,
}

/// A runner to create with `POST /user/runners` (a project runner).
#[derive(Clone, Debug, Serialize)]
pub struct CreateRunner {
    /// Always `project_type` here.
    pub runner_type: &'static str,
    /// The project.
    pub project_id: u64,
    /// Shown in GitLab's runner list (`gosling <runner id> (<egg>)`).
    pub description: String,
    /// The job tags it takes.
    pub tag_list: Vec<String>,
    /// Whether it takes untagged jobs.
    pub run_untagged: bool,
    /// Longest job, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_timeout: Option<u64>,
    /// Created paused (takes no job until resumed).
    pub paused: bool,
    /// Why it exists.
    pub maintenance_note: String,
}

/// What `POST /user/runners` answers.
#[derive(Debug)]
pub struct CreatedRunner {
    /// GitLab's runner id.
    pub id: i64,
    /// The runner authentication token (`glrt-…`), shown once.
    pub token: SecretString,
    /// When the token expires, if it does.
    pub token_expires_at: Option<String>,
}

/// A job as the Jobs API shows it (the fields the executors read).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Job (build) id.
    pub id: u64,
    /// `created`, `pending`, `running`, `success`, `failed`, `canceled`, `skipped`, …
    pub status: String,
    /// The job's tags (the Job Hook does not carry them).
    #[serde(default)]
    pub tag_list: Vec<String>,
    /// The runner that took it, once one did.
    #[serde(default)]
    pub runner: Option<RunnerRef>,
    /// The job's name.
    #[serde(default)]
    pub name: String,
    /// Its stage.
    #[serde(default)]
    pub stage: String,
    /// Seconds it ran, once finished.
    #[serde(default)]
    pub duration: Option<f64>,
}

/// A runner as a job or a hook names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerRef {
    /// GitLab's runner id.
    pub id: i64,
    /// Its description.
    #[serde(default)]
    pub description: String,
}

/// A project (the fields the executors read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Project id.
    pub id: u64,
    /// `group/project`.
    #[serde(default)]
    pub path_with_namespace: String,
    /// The project's job timeout in seconds (no job of it runs longer).
    #[serde(default)]
    pub build_timeout: Option<u64>,
}

/// `GET /version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// e.g. `17.5.1-ee`.
    pub version: String,
    /// The commit.
    #[serde(default)]
    pub revision: String,
}

/// Which events a project hook subscribes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookEvents {
    /// Job events (what provisions runners).
    pub job: bool,
    /// Pipeline events.
    pub pipeline: bool,
    /// Push events.
    pub push: bool,
    /// Merge request events.
    pub merge_requests: bool,
}

impl HookEvents {
    /// Everything MotherGoose handles (Property 26).
    pub const ALL: HookEvents = HookEvents {
        job: true,
        pipeline: true,
        push: true,
        merge_requests: true,
    };
}

/// A GitLab API client authenticated with a token (`PRIVATE-TOKEN`).
#[derive(Clone, Debug)]
pub struct GitLab {
    http: reqwest::Client,
    token: SecretString,
    retry: Retry,
}

/// The `/api/v4` URL of `path` on the GitLab at `base`.
pub fn api_url(base: &str, path: &str) -> String {
    format!("{}/api/v4{path}", base.trim_end_matches('/'))
}

impl GitLab {
    /// A client with `token` and a retry policy.
    pub fn new(token: SecretString, retry: Retry) -> GitLab {
        let http = reqwest::Client::builder()
            .timeout(retry.attempt_timeout)
            .connect_timeout(retry.attempt_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("gosling/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        GitLab { http, token, retry }
    }

    async fn send(
        &self,
        method: &'static str,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, String), GitLabError> {
        let mut delay = self.retry.base_delay;
        let attempts = self.retry.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
            let mut req = self
                .http
                .request(m, url)
                .header("PRIVATE-TOKEN", self.token.expose());
            if let Some(b) = body {
                req = req.json(b);
            }
            let mut wait = delay;
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = retry_after(&resp);
                    let text = resp.text().await.unwrap_or_default();
                    let transient = status == 429 || (500..600).contains(&status);
                    if !transient || attempt == attempts {
                        return Ok((status, text));
                    }
                    if let Some(after) = retry_after {
                        wait = wait.max(after);
                    }
                    last = format!("status {status}");
                }
                Err(e) => {
                    last = without_query(&e.to_string());
                    if attempt == attempts {
                        break;
                    }
                }
            }
            tokio::time::sleep(wait.min(self.retry.max_delay)).await;
            delay *= 2;
        }
        Err(GitLabError::Unreachable {
            method,
            url: url.into(),
            attempts,
            message: last,
        })
    }

    async fn call(
        &self,
        method: &'static str,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<String, GitLabError> {
        let (status, text) = self.send(method, url, body).await?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let hint = match status {
            401 => " (check the GitLab token)",
            403 => " (the token lacks the role or scope this needs)",
            404 => " (no such resource, or the token cannot see it)",
            429 => " (rate-limited)",
            _ => "",
        };
        Err(GitLabError::Status {
            method,
            url: url.into(),
            status,
            hint,
            body: text.chars().take(300).collect(),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, GitLabError> {
        let text = self.call("GET", url, None).await?;
        parse(url, &text)
    }

    async fn hooks(&self, base: &str, project_id: u64) -> Result<Vec<Hook>, GitLabError> {
        self.pages(base, &format!("/projects/{project_id}/hooks?"))
            .await
    }

    /// Every item of a paginated list (`per_page=100`, at most 50 pages).
    async fn pages<T: serde::de::DeserializeOwned>(
        &self,
        base: &str,
        path_and_query: &str,
    ) -> Result<Vec<T>, GitLabError> {
        let mut out = Vec::new();
        for page in 1..=50 {
            let url = api_url(base, &format!("{path_and_query}per_page=100&page={page}"));
            let items: Vec<T> = self.get_json(&url).await?;
            let n = items.len();
            out.extend(items);
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// Makes sure project `project_id` has one hook to `target` for `events` with
    /// `secret`: updates the hook with that URL if there is one, creates it otherwise.
    pub async fn ensure_hook(
        &self,
        base: &str,
        project_id: u64,
        target: &str,
        secret: &SecretString,
        events: HookEvents,
    ) -> Result<HookOutcome, GitLabError> {
        let body = json!({
            "url": target,
            "job_events": events.job,
            "pipeline_events": events.pipeline,
            "push_events": events.push,
            "merge_requests_events": events.merge_requests,
            "enable_ssl_verification": true,
            "token": secret.expose(),
        });
        let existing = self
            .hooks(base, project_id)
            .await?
            .into_iter()
            .find(|h| h.url == target);
        match existing {
            Some(h) => {
                let url = api_url(base, &format!("/projects/{project_id}/hooks/{}", h.id));
                self.call("PUT", &url, Some(&body)).await?;
                Ok(HookOutcome::Updated(h.id))
            }
            None => {
                let url = api_url(base, &format!("/projects/{project_id}/hooks"));
                let text = self.call("POST", &url, Some(&body)).await?;
                let hook: Hook = parse(&url, &text)?;
                Ok(HookOutcome::Created(hook.id))
            }
        }
    }

    /// Removes project `project_id`'s hooks to `target`; returns how many there were.
    pub async fn remove_hook(
        &self,
        base: &str,
        project_id: u64,
        target: &str,
    ) -> Result<usize, GitLabError> {
        let mut n = 0;
        for h in self.hooks(base, project_id).await? {
            if h.url == target {
                let url = api_url(base, &format!("/projects/{project_id}/hooks/{}", h.id));
                match self.call("DELETE", &url, None).await {
                    Ok(_) | Err(GitLabError::Status { status: 404, .. }) => n += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(n)
    }

    /// Creates a project runner (`POST /user/runners`); the token is shown only here.
    pub async fn create_runner(
        &self,
        base: &str,
        runner: &CreateRunner,
    ) -> Result<CreatedRunner, GitLabError> {
        #[derive(Deserialize)]
        struct Created {
            id: i64,
            token: String,
            #[serde(default)]
            token_expires_at: Option<String>,
        }
        let url = api_url(base, "/user/runners");
        let body = serde_json::to_value(runner).map_err(|e| GitLabError::Response {
            url: url.clone(),
            message: e.to_string(),
        })?;
        let text = self.call("POST", &url, Some(&body)).await?;
        let c: Created = parse(&url, &text)?;
        Ok(CreatedRunner {
            id: c.id,
            token: SecretString::new(c.token),
            token_expires_at: c.token_expires_at,
        })
    }

    /// Deletes a runner (`DELETE /runners/:id`); one that is already gone is not an error.
    pub async fn delete_runner(&self, base: &str, id: i64) -> Result<(), GitLabError> {
        let url = api_url(base, &format!("/runners/{id}"));
        match self.call("DELETE", &url, None).await {
            Ok(_) | Err(GitLabError::Status { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A job (`GET /projects/:id/jobs/:job_id`), with its tags.
    pub async fn job(&self, base: &str, project_id: u64, job_id: u64) -> Result<Job, GitLabError> {
        self.get_json(&api_url(
            base,
            &format!("/projects/{project_id}/jobs/{job_id}"),
        ))
        .await
    }

    /// The project's pending jobs (`GET /projects/:id/jobs?scope[]=pending`, every page).
    pub async fn pending_jobs(&self, base: &str, project_id: u64) -> Result<Vec<Job>, GitLabError> {
        self.pages(
            base,
            &format!("/projects/{project_id}/jobs?scope[]=pending&"),
        )
        .await
    }

    /// A project (`GET /projects/:id`).
    pub async fn project(&self, base: &str, project_id: u64) -> Result<Project, GitLabError> {
        self.get_json(&api_url(base, &format!("/projects/{project_id}")))
            .await
    }

    /// The server's version (`GET /version`).
    pub async fn version(&self, base: &str) -> Result<Version, GitLabError> {
        self.get_json(&api_url(base, "/version")).await
    }
}

fn parse<T: serde::de::DeserializeOwned>(url: &str, text: &str) -> Result<T, GitLabError> {
    serde_json::from_str(text).map_err(|e| GitLabError::Response {
        url: url.into(),
        message: e.to_string(),
    })
}

/// `Retry-After` in seconds (GitLab sends seconds, not dates), capped at an hour.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = v.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// An error message without URL query strings (they may carry tokens in other clients).
fn without_query(message: &str) -> String {
    message
        .split(' ')
        .map(|w| match w.split_once('?') {
            Some((head, _)) if head.contains("://") => head,
            _ => w,
        })
        .collect::<Vec<_>>()
        .join(" ")
}
