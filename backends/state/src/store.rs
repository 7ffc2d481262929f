//! The [`StateStore`] trait: conditional writes over the design tables, typed access to each
//! table, and the transactional "apply deployment" operation.

use crate::crypto::Sealed;
use crate::error::{Result, StateError};
use crate::model::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// An item's attributes (including its key attributes).
pub type Doc = Map<String, Value>;

/// A stored item and its `row_version`.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// The attributes.
    pub doc: Doc,
    /// The optimistic-concurrency version (1 after the first write).
    pub version: u64,
}

impl Item {
    /// An item stored as JSON text (the embedded and YDB stores keep `doc` so).
    pub fn from_json(table: Table, version: u64, text: &str) -> Result<Item> {
        match serde_json::from_str(text) {
            Ok(Value::Object(doc)) => Ok(Item { doc, version }),
            _ => Err(StateError::Corrupt {
                table,
                reason: "an item is not a JSON object".into(),
            }),
        }
    }
}

/// What a write expects to find; a write whose expectation fails is a [`StateError::Conflict`]
/// and the whole transaction writes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No item with this key yet.
    Absent,
    /// The item exists at exactly this version.
    Version(u64),
    /// Anything (deletes only: a put must say what it replaces).
    Any,
}

impl Expect {
    /// Whether the expectation holds for an item found at `found` (`None`: absent).
    pub fn holds(self, found: Option<u64>) -> bool {
        match (self, found) {
            (Expect::Absent, None) | (Expect::Any, _) => true,
            (Expect::Version(v), Some(f)) => v == f,
            _ => false,
        }
    }
}

/// One write of a transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Creates or replaces the item whose key attributes `doc` holds. The stored version
    /// becomes 1 (after [`Expect::Absent`]) or the expected version + 1.
    Put {
        /// The table.
        table: Table,
        /// The whole item.
        doc: Doc,
        /// The condition.
        expect: Expect,
    },
    /// Removes an item.
    Delete {
        /// The table.
        table: Table,
        /// Partition key value.
        pk: String,
        /// Sort key value, for tables with a sort key.
        sk: Option<String>,
        /// The condition.
        expect: Expect,
    },
}

impl Write {
    /// The table written.
    pub fn table(&self) -> Table {
        match self {
            Write::Put { table, .. } | Write::Delete { table, .. } => *table,
        }
    }

    /// What the write expects to find.
    pub fn expect(&self) -> Expect {
        match self {
            Write::Put { expect, .. } | Write::Delete { expect, .. } => *expect,
        }
    }

    /// The key written, as `pk` or `pk/sk` (for messages).
    pub fn key(&self) -> Result<(String, Option<String>)> {
        match self {
            Write::Put { table, doc, .. } => key_of(*table, doc),
            Write::Delete { pk, sk, .. } => Ok((pk.clone(), sk.clone())),
        }
    }

    /// The version the item has after this write succeeds (0 when deleted).
    pub fn new_version(&self) -> Result<u64> {
        match self {
            Write::Put {
                expect: Expect::Absent,
                ..
            } => Ok(1),
            Write::Put {
                expect: Expect::Version(v),
                ..
            } => Ok(v + 1),
            Write::Put {
                table,
                expect: Expect::Any,
                ..
            } => Err(StateError::Invalid(format!(
                "a put to {table} must expect an absent item or a version"
            ))),
            Write::Delete { .. } => Ok(0),
        }
    }
}

/// The key attribute values of `doc` in `table`.
pub fn key_of(table: Table, doc: &Doc) -> Result<(String, Option<String>)> {
    let get = |attr: &str| match doc.get(attr) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(StateError::Invalid(format!(
            "an item of {table} needs a non-empty text `{attr}`"
        ))),
    };
    let pk = get(table.partition_key())?;
    let sk = table.sort_key().map(get).transpose()?;
    Ok((pk, sk))
}

/// Displays a key for messages.
pub fn show_key(pk: &str, sk: Option<&str>) -> String {
    match sk {
        Some(sk) => format!("{pk}/{sk}"),
        None => pk.to_string(),
    }
}

/// A record as an item of `table`.
pub fn to_doc<T: Serialize>(table: Table, value: &T) -> Result<Doc> {
    match serde_json::to_value(value) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(StateError::Invalid(format!(
            "an item of {table} must be a record"
        ))),
        Err(e) => Err(StateError::Invalid(format!("{table}: {e}"))),
    }
}

/// An item of `table` as a record.
pub fn from_item<T: DeserializeOwned>(table: Table, item: Item) -> Result<Versioned<T>> {
    serde_json::from_value(Value::Object(item.doc))
        .map(|value| Versioned {
            item: value,
            version: item.version,
        })
        .map_err(|e| StateError::Corrupt {
            table,
            reason: e.to_string(),
        })
}

fn all<T: DeserializeOwned>(table: Table, items: Vec<Item>) -> Result<Vec<Versioned<T>>> {
    items.into_iter().map(|i| from_item(table, i)).collect()
}

const CURRENT: &str = "current_deployment";

fn secret_key(name: &str) -> String {
    format!("secret/{name}")
}

fn value_key(name: &str) -> String {
    format!("value/{name}")
}

/// The `meta` item that holds the plain value `name` (for a [`Write`] in a transaction;
/// read it back with [`StateStore::meta_value`]).
pub fn meta_value_doc(name: &str, value: Value) -> Doc {
    let mut doc = Doc::new();
    doc.insert("key".into(), Value::String(value_key(name)));
    doc.insert("value".into(), value);
    doc
}

/// Everything [`StateStore::apply_deployment`] needs to make a deployment current.
#[derive(Clone, Debug)]
pub struct ApplyDeployment {
    /// The plan to make current, as read; it is written back with status `applied`.
    pub target: Versioned<DeploymentPlan>,
    /// The plan that is current now (as read) and the status it gets: it stays `applied`
    /// after a normal deploy, becomes `rolled_back` after a rollback.
    pub previous: Option<(Versioned<DeploymentPlan>, PlanStatus)>,
    /// The version of the `current_deployment` pointer as read (`None`: no deployment yet).
    pub expected_current: Option<u64>,
    /// Every egg of the target deployment (the table is made to hold exactly these).
    pub eggs: Vec<EggRecord>,
    /// Every job of the target deployment.
    pub jobs: Vec<JobRecord>,
    /// The audit entry recorded with it.
    pub audit: AuditLog,
    /// The time of the change.
    pub now: DateTime<Utc>,
}

/// What [`StateStore::apply_deployment`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Egg items written or deleted.
    pub eggs_written: usize,
    /// Job items written or deleted.
    pub jobs_written: usize,
    /// Transactions used (1 unless the store limits transaction size).
    pub transactions: usize,
}

/// The state every executor shares: the design document's tables behind conditional
/// writes, so concurrent writers never lose an update.
///
/// Adapters implement the five primitive methods; the typed methods and
/// [`apply_deployment`](StateStore::apply_deployment) are built on them. Open one with
/// [`open_state`](crate::open_state).
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Where the store is (URL without credentials), for messages.
    fn describe(&self) -> String;

    /// The most writes one [`transact`](StateStore::transact) accepts (`None`: no limit).
    fn max_transaction_writes(&self) -> Option<usize> {
        None
    }

    /// One item, read consistently.
    async fn get_item(&self, table: Table, pk: &str, sk: Option<&str>) -> Result<Option<Item>>;

    /// Every item of a table, sorted by key.
    async fn scan(&self, table: Table) -> Result<Vec<Item>>;

    /// Every item of one partition, sorted by sort key.
    async fn query(&self, table: Table, pk: &str) -> Result<Vec<Item>>;

    /// Items whose indexed attribute `attr` (see [`Table::indexed`]) equals `value`,
    /// sorted by key.
    async fn query_index(&self, table: Table, attr: &str, value: &str) -> Result<Vec<Item>> {
        Ok(self
            .scan(table)
            .await?
            .into_iter()
            .filter(|i| i.doc.get(attr).and_then(Value::as_str) == Some(value))
            .collect())
    }

    /// Applies every write or none (Property 32). Fails with [`StateError::Conflict`] when
    /// any expectation does not hold.
    async fn transact(&self, writes: Vec<Write>) -> Result<()>;

    // ---- runners ----

    /// A runner.
    async fn runner(&self, id: &str) -> Result<Option<Versioned<Runner>>> {
        self.get_item(Table::Runners, id, None)
            .await?
            .map(|i| from_item(Table::Runners, i))
            .transpose()
    }

    /// Every runner.
    async fn runners(&self) -> Result<Vec<Versioned<Runner>>> {
        all(Table::Runners, self.scan(Table::Runners).await?)
    }

    /// Runners in a state (through the `state` index).
    async fn runners_by_state(&self, state: &str) -> Result<Vec<Versioned<Runner>>> {
        all(
            Table::Runners,
            self.query_index(Table::Runners, "state", state).await?,
        )
    }

    /// Runners of an egg (through the `egg_name` index).
    async fn runners_by_egg(&self, egg: &str) -> Result<Vec<Versioned<Runner>>> {
        all(
            Table::Runners,
            self.query_index(Table::Runners, "egg_name", egg).await?,
        )
    }

    /// Writes a runner; returns its new version.
    async fn put_runner(&self, runner: &Runner, expect: Expect) -> Result<u64> {
        self.put(Table::Runners, to_doc(Table::Runners, runner)?, expect)
            .await
    }

    /// Removes a runner.
    async fn delete_runner(&self, id: &str, expect: Expect) -> Result<()> {
        self.transact(vec![Write::Delete {
            table: Table::Runners,
            pk: id.into(),
            sk: None,
            expect,
        }])
        .await
    }

    // ---- eggs and jobs (written by apply_deployment) ----

    /// A deployed egg.
    async fn egg(&self, name: &str) -> Result<Option<Versioned<EggRecord>>> {
        self.get_item(Table::Eggs, name, None)
            .await?
            .map(|i| from_item(Table::Eggs, i))
            .transpose()
    }

    /// Every deployed egg, by name.
    async fn eggs(&self) -> Result<Vec<Versioned<EggRecord>>> {
        all(Table::Eggs, self.scan(Table::Eggs).await?)
    }

    /// A deployed job.
    async fn job(&self, name: &str) -> Result<Option<Versioned<JobRecord>>> {
        self.get_item(Table::Jobs, name, None)
            .await?
            .map(|i| from_item(Table::Jobs, i))
            .transpose()
    }

    /// Every deployed job, by name.
    async fn jobs(&self) -> Result<Vec<Versioned<JobRecord>>> {
        all(Table::Jobs, self.scan(Table::Jobs).await?)
    }

    /// Updates a job's schedule state (`last_run`, `next_run`, `status`).
    async fn put_job(&self, job: &JobRecord, expect: Expect) -> Result<u64> {
        self.put(Table::Jobs, to_doc(Table::Jobs, job)?, expect)
            .await
    }

    // ---- audit ----

    /// Records an audit entry.
    async fn append_audit(&self, entry: &AuditLog) -> Result<()> {
        self.put(
            Table::AuditLogs,
            to_doc(Table::AuditLogs, entry)?,
            Expect::Absent,
        )
        .await
        .map(|_| ())
    }

    /// Every audit entry, oldest first.
    async fn audit_logs(&self) -> Result<Vec<AuditLog>> {
        let mut v: Vec<AuditLog> = all(Table::AuditLogs, self.scan(Table::AuditLogs).await?)?
            .into_iter()
            .map(|v| v.item)
            .collect();
        v.sort_by(|a, b| (a.timestamp, &a.id).cmp(&(b.timestamp, &b.id)));
        Ok(v)
    }

    // ---- deployments ----

    /// A deployment by id.
    async fn plan(&self, id: &str) -> Result<Option<Versioned<DeploymentPlan>>> {
        self.get_item(Table::DeploymentPlans, id, None)
            .await?
            .map(|i| from_item(Table::DeploymentPlans, i))
            .transpose()
    }

    /// Every deployment, by version.
    async fn plans(&self) -> Result<Vec<Versioned<DeploymentPlan>>> {
        let mut v: Vec<Versioned<DeploymentPlan>> = all(
            Table::DeploymentPlans,
            self.scan(Table::DeploymentPlans).await?,
        )?;
        v.sort_by_key(|p| p.item.version);
        Ok(v)
    }

    /// Writes a deployment record; returns its new version.
    async fn put_plan(&self, plan: &DeploymentPlan, expect: Expect) -> Result<u64> {
        self.put(
            Table::DeploymentPlans,
            to_doc(Table::DeploymentPlans, plan)?,
            expect,
        )
        .await
    }

    /// The current deployment pointer.
    async fn current(&self) -> Result<Option<Versioned<CurrentDeployment>>> {
        let Some(item) = self.get_item(Table::Meta, CURRENT, None).await? else {
            return Ok(None);
        };
        let version = item.version;
        let value = item.doc.get("value").cloned().unwrap_or(Value::Null);
        serde_json::from_value(value)
            .map(|c| Some(Versioned { item: c, version }))
            .map_err(|e| StateError::Corrupt {
                table: Table::Meta,
                reason: format!("{CURRENT}: {e}"),
            })
    }

    // ---- secrets ----

    /// A sealed secret kept in the store (e.g. `webhook_secret`).
    async fn secret(&self, name: &str) -> Result<Option<Versioned<Sealed>>> {
        let Some(item) = self.get_item(Table::Meta, &secret_key(name), None).await? else {
            return Ok(None);
        };
        let version = item.version;
        serde_json::from_value(item.doc.get("value").cloned().unwrap_or(Value::Null))
            .map(|s| Some(Versioned { item: s, version }))
            .map_err(|e| StateError::Corrupt {
                table: Table::Meta,
                reason: format!("secret {name}: {e}"),
            })
    }

    /// Stores a sealed secret; only [`Sealed`] values can be stored, never plaintext.
    async fn put_secret(&self, name: &str, value: &Sealed, expect: Expect) -> Result<u64> {
        let mut doc = Doc::new();
        doc.insert("key".into(), Value::String(secret_key(name)));
        doc.insert("value".into(), Value::String(value.as_str().into()));
        self.put(Table::Meta, doc, expect).await
    }

    // ---- GitLab jobs and webhook deliveries ----

    /// A GitLab job by key ([`GitLabJob::key`]).
    async fn gitlab_job(&self, id: &str) -> Result<Option<Versioned<GitLabJob>>> {
        self.get_item(Table::GitLabJobs, id, None)
            .await?
            .map(|i| from_item(Table::GitLabJobs, i))
            .transpose()
    }

    /// GitLab jobs in a status (through the `status` index).
    async fn gitlab_jobs_by_status(&self, status: &str) -> Result<Vec<Versioned<GitLabJob>>> {
        all(
            Table::GitLabJobs,
            self.query_index(Table::GitLabJobs, "status", status)
                .await?,
        )
    }

    /// Every GitLab job.
    async fn gitlab_jobs(&self) -> Result<Vec<Versioned<GitLabJob>>> {
        all(Table::GitLabJobs, self.scan(Table::GitLabJobs).await?)
    }

    /// Writes a GitLab job; returns its new version.
    async fn put_gitlab_job(&self, job: &GitLabJob, expect: Expect) -> Result<u64> {
        self.put(Table::GitLabJobs, to_doc(Table::GitLabJobs, job)?, expect)
            .await
    }

    /// A webhook delivery by id.
    async fn webhook_event(&self, id: &str) -> Result<Option<Versioned<WebhookEvent>>> {
        self.get_item(Table::WebhookEvents, id, None)
            .await?
            .map(|i| from_item(Table::WebhookEvents, i))
            .transpose()
    }

    /// Writes a webhook delivery; returns its new version.
    async fn put_webhook_event(&self, e: &WebhookEvent, expect: Expect) -> Result<u64> {
        self.put(
            Table::WebhookEvents,
            to_doc(Table::WebhookEvents, e)?,
            expect,
        )
        .await
    }

    // ---- meta values ----

    /// A plain (not secret) value kept in `meta` under `name`.
    async fn meta_value(&self, name: &str) -> Result<Option<Versioned<Value>>> {
        let Some(item) = self.get_item(Table::Meta, &value_key(name), None).await? else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            item: item.doc.get("value").cloned().unwrap_or(Value::Null),
            version: item.version,
        }))
    }

    /// Stores a plain value in `meta` under `name` (never a secret: see
    /// [`put_secret`](StateStore::put_secret)).
    async fn put_meta_value(&self, name: &str, value: Value, expect: Expect) -> Result<u64> {
        self.put(Table::Meta, meta_value_doc(name, value), expect)
            .await
    }

    // ---- OpenTofu versions and runner metrics ----

    /// Every known OpenTofu version.
    async fn tofu_versions(&self) -> Result<Vec<Versioned<TofuVersion>>> {
        all(Table::TofuVersions, self.scan(Table::TofuVersions).await?)
    }

    /// Writes an OpenTofu version record.
    async fn put_tofu_version(&self, v: &TofuVersion, expect: Expect) -> Result<u64> {
        self.put(Table::TofuVersions, to_doc(Table::TofuVersions, v)?, expect)
            .await
    }

    /// Records a metrics sample.
    async fn put_metric(&self, m: &RunnerMetric) -> Result<()> {
        self.put(
            Table::RunnerMetrics,
            to_doc(Table::RunnerMetrics, m)?,
            Expect::Absent,
        )
        .await
        .map(|_| ())
    }

    /// A runner's samples, oldest first.
    async fn metrics(&self, runner_id: &str) -> Result<Vec<RunnerMetric>> {
        Ok(all::<RunnerMetric>(
            Table::RunnerMetrics,
            self.query(Table::RunnerMetrics, runner_id).await?,
        )?
        .into_iter()
        .map(|v| v.item)
        .collect())
    }

    /// One conditional put; returns the new version.
    async fn put(&self, table: Table, doc: Doc, expect: Expect) -> Result<u64> {
        let w = Write::Put { table, doc, expect };
        let v = w.new_version()?;
        self.transact(vec![w]).await?;
        Ok(v)
    }

    /// Makes a deployment current: the `eggs` and `jobs` tables come to hold exactly the
    /// target's items (unchanged items are not rewritten), the target is marked `applied`, the
    /// previous deployment gets its new status, the pointer moves and the audit entry is
    /// recorded — all in one transaction, or none of it (Property 32).
    ///
    /// A store whose transactions are limited in size (DynamoDB: 100 writes, YDB's Document API: 25) gets
    /// the item writes in chunks and the pointer move last; when any step fails, the chunks
    /// already written are undone before the error is returned, so the tables again match the
    /// deployment that is still current.
    async fn apply_deployment(&self, a: ApplyDeployment) -> Result<ApplyStats> {
        let mut rows = Vec::new();
        let old_eggs: BTreeMap<String, Versioned<EggRecord>> = self
            .eggs()
            .await?
            .into_iter()
            .map(|e| (e.item.name.clone(), e))
            .collect();
        let old_jobs: BTreeMap<String, Versioned<JobRecord>> = self
            .jobs()
            .await?
            .into_iter()
            .map(|j| (j.item.name.clone(), j))
            .collect();
        let mut stats = ApplyStats::default();
        let mut undo: Vec<Write> = Vec::new();
        for egg in &a.eggs {
            match old_eggs.get(&egg.name) {
                Some(old) if old.item.config_hash == egg.config_hash => {}
                Some(old) => {
                    let mut e = egg.clone();
                    e.created_at = old.item.created_at;
                    rows.push(Write::Put {
                        table: Table::Eggs,
                        doc: to_doc(Table::Eggs, &e)?,
                        expect: Expect::Version(old.version),
                    });
                    undo.push(Write::Put {
                        table: Table::Eggs,
                        doc: to_doc(Table::Eggs, &old.item)?,
                        expect: Expect::Version(old.version + 1),
                    });
                }
                None => {
                    rows.push(Write::Put {
                        table: Table::Eggs,
                        doc: to_doc(Table::Eggs, egg)?,
                        expect: Expect::Absent,
                    });
                    undo.push(Write::Delete {
                        table: Table::Eggs,
                        pk: egg.name.clone(),
                        sk: None,
                        expect: Expect::Version(1),
                    });
                }
            }
        }
        let wanted: std::collections::HashSet<&str> =
            a.eggs.iter().map(|e| e.name.as_str()).collect();
        for (name, old) in &old_eggs {
            if !wanted.contains(name.as_str()) {
                rows.push(Write::Delete {
                    table: Table::Eggs,
                    pk: name.clone(),
                    sk: None,
                    expect: Expect::Version(old.version),
                });
                undo.push(Write::Put {
                    table: Table::Eggs,
                    doc: to_doc(Table::Eggs, &old.item)?,
                    expect: Expect::Absent,
                });
            }
        }
        stats.eggs_written = rows.len();
        for job in &a.jobs {
            match old_jobs.get(&job.name) {
                Some(old) if old.item.config_hash == job.config_hash => {}
                Some(old) => {
                    // A new configuration keeps the job's run history and any run in
                    // progress; only its definition and next run change.
                    let mut j = job.clone();
                    j.last_run = old.item.last_run;
                    j.status = old.item.status.clone();
                    j.scheduled_for = old.item.scheduled_for;
                    j.attempt = old.item.attempt;
                    j.last_result = old.item.last_result.clone();
                    j.notified = old.item.notified;
                    rows.push(Write::Put {
                        table: Table::Jobs,
                        doc: to_doc(Table::Jobs, &j)?,
                        expect: Expect::Version(old.version),
                    });
                    undo.push(Write::Put {
                        table: Table::Jobs,
                        doc: to_doc(Table::Jobs, &old.item)?,
                        expect: Expect::Version(old.version + 1),
                    });
                }
                None => {
                    rows.push(Write::Put {
                        table: Table::Jobs,
                        doc: to_doc(Table::Jobs, job)?,
                        expect: Expect::Absent,
                    });
                    undo.push(Write::Delete {
                        table: Table::Jobs,
                        pk: job.name.clone(),
                        sk: None,
                        expect: Expect::Version(1),
                    });
                }
            }
        }
        let wanted: std::collections::HashSet<&str> =
            a.jobs.iter().map(|j| j.name.as_str()).collect();
        for (name, old) in &old_jobs {
            if !wanted.contains(name.as_str()) {
                rows.push(Write::Delete {
                    table: Table::Jobs,
                    pk: name.clone(),
                    sk: None,
                    expect: Expect::Version(old.version),
                });
                undo.push(Write::Put {
                    table: Table::Jobs,
                    doc: to_doc(Table::Jobs, &old.item)?,
                    expect: Expect::Absent,
                });
            }
        }
        stats.jobs_written = rows.len() - stats.eggs_written;

        // The pointer, the plans and the audit entry.
        let mut last = Vec::new();
        let mut pointer = Doc::new();
        pointer.insert("key".into(), Value::String(CURRENT.into()));
        pointer.insert(
            "value".into(),
            serde_json::to_value(CurrentDeployment {
                plan_id: a.target.item.id.clone(),
                version: a.target.item.version,
                since: a.now,
            })
            .map_err(|e| StateError::Invalid(e.to_string()))?,
        );
        last.push(Write::Put {
            table: Table::Meta,
            doc: pointer,
            expect: a
                .expected_current
                .map(Expect::Version)
                .unwrap_or(Expect::Absent),
        });
        let mut target = a.target.item.clone();
        target.status = PlanStatus::Applied;
        target.applied_at = Some(a.now);
        last.push(Write::Put {
            table: Table::DeploymentPlans,
            doc: to_doc(Table::DeploymentPlans, &target)?,
            expect: Expect::Version(a.target.version),
        });
        if let Some((prev, status)) = &a.previous {
            if prev.item.id != target.id {
                let mut p = prev.item.clone();
                p.status = *status;
                last.push(Write::Put {
                    table: Table::DeploymentPlans,
                    doc: to_doc(Table::DeploymentPlans, &p)?,
                    expect: Expect::Version(prev.version),
                });
            }
        }
        last.push(Write::Put {
            table: Table::AuditLogs,
            doc: to_doc(Table::AuditLogs, &a.audit)?,
            expect: Expect::Absent,
        });

        let limit = self.max_transaction_writes();
        if limit.is_none_or(|l| rows.len() + last.len() <= l) {
            rows.extend(last);
            self.transact(rows).await?;
            stats.transactions = 1;
            return Ok(stats);
        }
        let limit = limit.unwrap_or(usize::MAX).max(last.len());
        let mut done = 0usize;
        let mut failure = None;
        for chunk in rows.chunks(limit) {
            match self.transact(chunk.to_vec()).await {
                Ok(()) => {
                    done += chunk.len();
                    stats.transactions += 1;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() {
            match self.transact(last).await {
                Ok(()) => {
                    stats.transactions += 1;
                    return Ok(stats);
                }
                Err(e) => failure = Some(e),
            }
        }
        let failure = failure.unwrap_or(StateError::Invalid("apply failed".into()));
        // Undo what was written, newest first.
        let undo: Vec<Write> = undo.into_iter().take(done).collect();
        for chunk in undo.chunks(limit).rev() {
            if let Err(e) = self.transact(chunk.to_vec()).await {
                return Err(StateError::Invalid(format!(
                    "{failure}; undoing the partial write also failed ({e}): run the deploy \
                     again to bring the eggs and jobs tables in line"
                )));
            }
        }
        Err(failure)
    }
}
