//! GitLab for the executors: the REST client ([`GitLab`]: project hooks, runners, jobs,
//! projects, version; retries with backoff), the webhook payloads ([`hooks::Event`]) and
//! Standard Webhooks signatures ([`signature`]).
#![warn(missing_docs)]

pub mod client;
pub mod hooks;
pub mod signature;

pub use client::{
    api_url, CreateRunner, CreatedRunner, GitLab, GitLabError, HookEvents, HookOutcome, Job,
    Project, Retry, RunnerRef, Version,
};
pub use hooks::{is_final_status, Event, JobHook, PayloadError};
pub use signature::{secrets_equal, SignatureError, SigningKey};
