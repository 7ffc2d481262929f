//! GitLab webhook payloads: the Job, Pipeline, Push and Merge Request hooks, read into the
//! fields the executors act on (everything else is ignored, so new GitLab fields never
//! break parsing).

use serde::{Deserialize, Serialize};

/// Why a payload was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// Not JSON, or not an object.
    #[error("the body is not a JSON object: {0}")]
    Json(String),
    /// `object_kind` is missing or names an event this service does not handle.
    #[error("unknown object_kind `{0}` (handled: build, pipeline, push, tag_push, merge_request)")]
    UnknownKind(String),
    /// A known kind without a field it must have.
    #[error("a `{kind}` event without a valid `{field}`: {message}")]
    Missing {
        /// The event kind.
        kind: &'static str,
        /// The field.
        field: &'static str,
        /// serde's words.
        message: String,
    },
}

/// A runner as a hook shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRunner {
    /// GitLab's runner id.
    pub id: i64,
    /// Its description.
    #[serde(default)]
    pub description: Option<String>,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The project a hook is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookProject {
    /// Project id.
    pub id: u64,
    /// `group/project`.
    #[serde(default)]
    pub path_with_namespace: Option<String>,
    /// Its web URL (tells which GitLab sent the hook).
    #[serde(default)]
    pub web_url: Option<String>,
}

/// `X-Gitlab-Event: Job Hook` (`object_kind: build`). It carries no job tag list: read the
/// job through the Jobs API for that.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobHook {
    /// The job (build) id.
    pub build_id: u64,
    /// `created`, `pending`, `running`, `success`, `failed`, `canceled`, `skipped`, `manual`.
    pub build_status: String,
    /// The job name.
    #[serde(default)]
    pub build_name: String,
    /// Its stage.
    #[serde(default)]
    pub build_stage: String,
    /// Seconds it ran, when finished.
    #[serde(default)]
    pub build_duration: Option<f64>,
    /// Why it failed, when it did.
    #[serde(default)]
    pub build_failure_reason: Option<String>,
    /// The pipeline.
    #[serde(default)]
    pub pipeline_id: Option<u64>,
    /// The project id.
    pub project_id: u64,
    /// The project.
    #[serde(default)]
    pub project: Option<HookProject>,
    /// The runner that took it (null until one did).
    #[serde(default)]
    pub runner: Option<HookRunner>,
    /// How often it was retried.
    #[serde(default)]
    pub retries_count: Option<u32>,
}

/// One job of a Pipeline Hook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineBuild {
    /// The job id.
    pub id: u64,
    /// Its status.
    pub status: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its stage.
    #[serde(default)]
    pub stage: String,
    /// The runner that took it.
    #[serde(default)]
    pub runner: Option<HookRunner>,
}

/// `object_attributes` of a Pipeline Hook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineAttributes {
    /// Pipeline id.
    pub id: u64,
    /// Its status.
    #[serde(default)]
    pub status: String,
    /// Its ref.
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
}

/// `X-Gitlab-Event: Pipeline Hook`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineHook {
    /// The pipeline.
    pub object_attributes: PipelineAttributes,
    /// The project.
    pub project: HookProject,
    /// Its jobs.
    #[serde(default)]
    pub builds: Vec<PipelineBuild>,
}

/// `X-Gitlab-Event: Push Hook` / `Tag Push Hook`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushHook {
    /// The project id.
    pub project_id: u64,
    /// The ref pushed.
    #[serde(rename = "ref", default)]
    pub git_ref: String,
    /// The new head.
    #[serde(default)]
    pub after: Option<String>,
    /// Commits in the push.
    #[serde(default)]
    pub total_commits_count: Option<u64>,
}

/// `object_attributes` of a Merge Request Hook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeRequestAttributes {
    /// The merge request's number in the project.
    pub iid: u64,
    /// `opened`, `merged`, …
    #[serde(default)]
    pub state: String,
    /// `open`, `update`, `merge`, …
    #[serde(default)]
    pub action: Option<String>,
}

/// `X-Gitlab-Event: Merge Request Hook`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeRequestHook {
    /// The project.
    pub project: HookProject,
    /// The merge request.
    pub object_attributes: MergeRequestAttributes,
}

/// A webhook event MotherGoose handles.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A job changed status.
    Job(JobHook),
    /// A pipeline changed status.
    Pipeline(PipelineHook),
    /// A push (or tag push).
    Push(PushHook),
    /// A merge request changed.
    MergeRequest(MergeRequestHook),
}

impl Event {
    /// Reads a payload by its `object_kind`.
    pub fn parse(body: &[u8]) -> Result<Event, PayloadError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
        Event::from_value(value)
    }

    /// Reads a parsed payload by its `object_kind`.
    pub fn from_value(value: serde_json::Value) -> Result<Event, PayloadError> {
        if !value.is_object() {
            return Err(PayloadError::Json("not an object".into()));
        }
        let kind = value
            .get("object_kind")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_string();
        fn read<T: serde::de::DeserializeOwned>(
            kind: &'static str,
            field: &'static str,
            v: serde_json::Value,
        ) -> Result<T, PayloadError> {
            serde_json::from_value(v).map_err(|e| PayloadError::Missing {
                kind,
                field,
                message: e.to_string(),
            })
        }
        match kind.as_str() {
            "build" => read("build", "build_id, build_status, project_id", value).map(Event::Job),
            "pipeline" => {
                read("pipeline", "object_attributes, project", value).map(Event::Pipeline)
            }
            "push" | "tag_push" => read("push", "project_id", value).map(Event::Push),
            "merge_request" => {
                read("merge_request", "object_attributes, project", value).map(Event::MergeRequest)
            }
            _ => Err(PayloadError::UnknownKind(kind)),
        }
    }

    /// The `object_kind` it came as.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Job(_) => "build",
            Event::Pipeline(_) => "pipeline",
            Event::Push(_) => "push",
            Event::MergeRequest(_) => "merge_request",
        }
    }

    /// The project it concerns.
    pub fn project_id(&self) -> u64 {
        match self {
            Event::Job(j) => j.project_id,
            Event::Pipeline(p) => p.project.id,
            Event::Push(p) => p.project_id,
            Event::MergeRequest(m) => m.project.id,
        }
    }
}

/// Job statuses after which a job needs no runner any more.
pub fn is_final_status(status: &str) -> bool {
    matches!(status, "success" | "failed" | "canceled" | "skipped")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_each_kind_and_refuses_the_rest() {
        let job = json!({"object_kind": "build", "build_id": 7, "build_status": "pending",
            "project_id": 3, "runner": null, "extra": {"nested": [1, 2]}});
        match Event::from_value(job).unwrap() {
            Event::Job(j) => {
                assert_eq!((j.build_id, j.project_id), (7, 3));
                assert_eq!(j.build_status, "pending");
                assert!(j.runner.is_none());
            }
            other => panic!("{other:?}"),
        }
        let err = Event::from_value(json!({"object_kind": "note"})).unwrap_err();
        assert_eq!(err, PayloadError::UnknownKind("note".into()));
        let err = Event::from_value(json!({"object_kind": "build", "build_id": "x"})).unwrap_err();
        assert!(
            matches!(err, PayloadError::Missing { kind: "build", .. }),
            "{err:?}"
        );
        assert!(matches!(Event::parse(b"[1]"), Err(PayloadError::Json(_))));
        assert!(matches!(Event::parse(b"{"), Err(PayloadError::Json(_))));
    }

    #[test]
    fn final_statuses() {
        for s in ["success", "failed", "canceled", "skipped"] {
            assert!(is_final_status(s));
        }
        for s in ["created", "pending", "running", "manual"] {
            assert!(!is_final_status(s));
        }
    }
}
