//! What one pass looks at: the live runners, their latest metrics samples, pending demand
//! per egg and the pool ledgers, read from the store at one time.

use crate::error::Error;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use gosling_state::{ts, Runner, StateStore, Versioned};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The latest resource sample of a runner (the `runner_metrics` table).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// CPU %.
    pub cpu: f64,
    /// Memory %.
    pub memory: f64,
    /// Disk %.
    pub disk: f64,
}

/// A pool runner UglyFox asked MotherGoose for (`DeployRunner { job: key }`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The task key, `pool:<egg>:<nonce>`.
    pub key: String,
    /// When it was asked for.
    #[serde(with = "ts")]
    pub at: DateTime<Utc>,
}

/// An egg's pool ledger (`meta` value `uglyfox/pool/<egg>`): the requests still on their
/// way. Writing it with the version read is how one UglyFox instance claims the egg's pool
/// decisions of a pass; a second instance that read the same version gets a conflict and
/// leaves the egg alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Requests not yet seen as runners, oldest first.
    #[serde(default)]
    pub requests: Vec<Request>,
}

/// The `meta` value name of an egg's ledger.
pub fn ledger_name(egg: &str) -> String {
    format!("uglyfox/pool/{egg}")
}

/// Everything a pass decides from.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The time of the pass.
    pub now: DateTime<Utc>,
    /// Every runner that is not terminated, with the version read.
    pub runners: Vec<Versioned<Runner>>,
    /// The latest sample per runner (only read when a rule needs one).
    pub samples: HashMap<String, Sample>,
    /// GitLab jobs waiting for a runner, per egg.
    pub pending: HashMap<String, u32>,
    /// Pool ledgers per egg, with their versions (absent: never written).
    pub ledgers: HashMap<String, Versioned<Ledger>>,
}

impl Snapshot {
    /// An empty fleet at `now`.
    pub fn empty(now: DateTime<Utc>) -> Snapshot {
        Snapshot {
            now,
            runners: Vec::new(),
            samples: HashMap::new(),
            pending: HashMap::new(),
            ledgers: HashMap::new(),
        }
    }

    /// Reads the store: runners of every state but `terminated` (through the state index),
    /// pending GitLab jobs, the ledgers of `eggs`, and — when `with_samples` — each live
    /// runner's latest metrics sample.
    pub async fn load(
        store: &dyn StateStore,
        now: DateTime<Utc>,
        eggs: &[String],
        with_samples: bool,
    ) -> Result<Snapshot, Error> {
        let runners = gosling_fleet::unended_runners(store, None).await?;
        let mut pending: HashMap<String, u32> = HashMap::new();
        for j in store.gitlab_jobs_by_status("pending").await? {
            if let Some(egg) = j.item.egg_name {
                *pending.entry(egg).or_default() += 1;
            }
        }
        let mut ledgers = HashMap::new();
        for egg in eggs {
            if let Some(v) = store.meta_value(&ledger_name(egg)).await? {
                let ledger: Ledger = serde_json::from_value(v.item).unwrap_or_default();
                ledgers.insert(
                    egg.clone(),
                    Versioned {
                        item: ledger,
                        version: v.version,
                    },
                );
            }
        }
        let mut samples = HashMap::new();
        if with_samples {
            let ids: Vec<String> = runners.iter().map(|r| r.item.id.clone()).collect();
            let found: Vec<(String, Option<Sample>)> = stream::iter(ids)
                .map(|id| async move {
                    let last = store.metrics(&id).await?.pop().map(|m| Sample {
                        cpu: m.cpu_usage,
                        memory: m.memory_usage,
                        disk: m.disk_usage,
                    });
                    Ok::<_, Error>((id, last))
                })
                .buffer_unordered(16)
                .try_collect()
                .await?;
            samples.extend(found.into_iter().filter_map(|(id, s)| s.map(|s| (id, s))));
        }
        Ok(Snapshot {
            now,
            runners,
            samples,
            pending,
            ledgers,
        })
    }
}
