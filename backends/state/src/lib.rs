//! The state layer the executors share (the gosling CLI, MotherGoose, UglyFox, runners).
//!
//! - [`StateStore`]: the design document's tables — `runners`, `eggs`, `jobs`, `audit_logs`,
//!   `deployment_plans`, `tofu_versions`, `runner_metrics` (plus `meta` for the current
//!   deployment pointer and sealed secrets) — behind conditional writes with optimistic
//!   versions, so concurrent writers never lose an update, and the transactional
//!   [`StateStore::apply_deployment`] (Property 32).
//! - [`ObjectStore`]: deployment IR and plans, OpenTofu states and binaries.
//! - [`Cipher`]: secrets at rest (AES-256-GCM, Property 34); only [`Sealed`] values reach a
//!   store.
//!
//! Adapters are chosen by URL ([`open_state`], [`open_objects`]): the embedded SQLite store
//! and a local directory by default, `dynamodb://` (AWS DynamoDB or the YDB Document API),
//! `ydb://` (native YDB, the default `ydb` feature) and `s3://` (AWS S3, Yandex Object
//! Storage).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use gosling_state::{open_state, OpenOptions, Expect, TofuVersion};
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("sqlite://{}", dir.path().join("state.db").display());
//! let store = open_state(&url, &OpenOptions::default()).await.unwrap();
//! let v = TofuVersion {
//!     version_id: TofuVersion::make_id("abc", "1.6.0", "github"),
//!     version: "1.6.0".into(),
//!     source: "github".into(),
//!     downloaded_at: chrono::Utc::now(),
//!     sha256_hash: "abc".into(),
//!     active: true,
//! };
//! assert_eq!(store.put_tofu_version(&v, Expect::Absent).await.unwrap(), 1);
//! // A second writer that read nothing is refused: no lost update.
//! assert!(store.put_tofu_version(&v, Expect::Absent).await.is_err());
//! # });
//! ```
#![warn(missing_docs)]
// The ydb SDK's query futures are ~130 layout queries deep (the SDK sets this limit for
// itself); this crate instantiates them, so it needs the same. Its public YDB entry points
// are boxed and never inlined (`ydb_store::BoxFuture`), so no crate above it needs it.
#![recursion_limit = "256"]

mod clock;
mod crypto;
mod dynamo;
mod error;
mod model;
mod objects;
mod open;
mod sqlite;
mod store;
#[cfg(feature = "ydb")]
pub mod ydb_store;

pub use clock::{system_clock, Clock, ManualClock, SharedClock, SystemClock};
pub use crypto::{
    config_dir, default_key_file, Cipher, KeySource, Sealed, SecretString, KEY_ENV, KEY_FILE_ENV,
};
pub use dynamo::{from_attr, to_attr, DynamoStore};
pub use error::{Result, StateError};
pub use model::{
    hex, ts, AuditLog, CurrentDeployment, DeploymentPlan, EggRecord, GitLabJob, JobRecord,
    PlanStatus, Runner, RunnerMetric, Table, TofuVersion, Versioned, WebhookEvent,
};
pub use objects::{check_key, LocalObjects, ObjectStore, S3Objects};
pub use open::{
    aws_config, aws_timeouts, open_objects, open_s3, open_state, AwsCredentials, OpenOptions,
    AWS_ATTEMPT_TIMEOUT,
};
pub use sqlite::{sqlite_memory_used, SqliteStore};
pub use store::{
    from_item, key_of, meta_value_doc, show_key, to_doc, ApplyDeployment, ApplyStats, Doc, Expect,
    Item, StateStore, Write,
};
#[cfg(feature = "ydb")]
pub use ydb_store::YdbStore;
