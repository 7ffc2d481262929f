//! The GitLab REST calls gosling makes: project webhooks for job events
//! (`GET|POST /projects/:id/hooks`, `PUT|DELETE /projects/:id/hooks/:hook_id`), with retries
//! and exponential backoff on transient failures (connection errors, 429, 5xx).

use gosling_state::SecretString;
use serde::Deserialize;
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

/// How often and how patiently to retry transient failures.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The first delay; each next one doubles.
    pub base_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 4,
            base_delay: Duration::from_millis(250),
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

/// A GitLab API client authenticated with a token (`PRIVATE-TOKEN`).
#[derive(Clone, Debug)]
pub struct GitLab {
    http: reqwest::Client,
    token: SecretString,
    retry: Retry,
}

impl GitLab {
    /// A client with `token` and a retry policy.
    pub fn new(token: SecretString, retry: Retry) -> GitLab {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("gosling/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        GitLab { http, token, retry }
    }

    fn api(base: &str, path: &str) -> String {
        format!("{}/api/v4{path}", base.trim_end_matches('/'))
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
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    let transient = status == 429 || (500..600).contains(&status);
                    if !transient || attempt == attempts {
                        return Ok((status, text));
                    }
                    last = format!("status {status}");
                }
                Err(e) => {
                    last = e.to_string();
                    if attempt == attempts {
                        break;
                    }
                }
            }
            tokio::time::sleep(delay).await;
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
            403 => " (the token needs the Maintainer role on the project)",
            404 => " (no such project, or the token cannot see it)",
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

    async fn hooks(&self, base: &str, project_id: u64) -> Result<Vec<Hook>, GitLabError> {
        let mut out = Vec::new();
        for page in 1..=50 {
            let url = Self::api(
                base,
                &format!("/projects/{project_id}/hooks?per_page=100&page={page}"),
            );
            let text = self.call("GET", &url, None).await?;
            let hooks: Vec<Hook> =
                serde_json::from_str(&text).map_err(|e| GitLabError::Response {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
            let n = hooks.len();
            out.extend(hooks);
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// Makes sure project `project_id` has one hook to `target` for job events with
    /// `secret`: updates the hook with that URL if there is one, creates it otherwise.
    pub async fn ensure_hook(
        &self,
        base: &str,
        project_id: u64,
        target: &str,
        secret: &SecretString,
    ) -> Result<HookOutcome, GitLabError> {
        let body = json!({
            "url": target,
            "job_events": true,
            "push_events": false,
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
                let url = Self::api(base, &format!("/projects/{project_id}/hooks/{}", h.id));
                self.call("PUT", &url, Some(&body)).await?;
                Ok(HookOutcome::Updated(h.id))
            }
            None => {
                let url = Self::api(base, &format!("/projects/{project_id}/hooks"));
                let text = self.call("POST", &url, Some(&body)).await?;
                let hook: Hook =
                    serde_json::from_str(&text).map_err(|e| GitLabError::Response {
                        url,
                        message: e.to_string(),
                    })?;
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
                let url = Self::api(base, &format!("/projects/{project_id}/hooks/{}", h.id));
                match self.call("DELETE", &url, None).await {
                    Ok(_) | Err(GitLabError::Status { status: 404, .. }) => n += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(n)
    }
}
