//! Runner records, changed only through the state machine: every change is a versioned
//! write (a writer that read a stale record gets a conflict and tries again on the fresh
//! one, so no update is lost between MotherGoose instances, UglyFox and heartbeats) and
//! is recorded with its audit entry in the same transaction.

use crate::state::{IllegalTransition, RunnerState};
use chrono::{DateTime, Utc};
use gosling_state::{
    AuditLog, Doc, Expect, Runner, SharedClock, StateError, StateStore, Table, Versioned, Write,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How often a conflicting write is tried again on fresh data.
const ATTEMPTS: u32 = 12;

/// Why a runner change failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The state machine refused the change.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// No such runner.
    #[error("no runner `{0}`")]
    NotFound(String),
    /// Other writers kept changing the record.
    #[error("runner {0}: too many concurrent changes, try again")]
    Busy(String),
    /// The change makes no sense for this runner.
    #[error("runner {runner}: {reason}")]
    Refused {
        /// The runner.
        runner: String,
        /// Why.
        reason: String,
    },
}

impl FleetError {
    /// Whether trying the whole operation again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, FleetError::State(_) | FleetError::Busy(_))
    }
}

/// What an edit decided.
pub enum Edit {
    /// Nothing to write.
    Keep,
    /// Write the record, with an audit entry (`action`, `details`) if given.
    Write(Option<(String, Value)>),
}

/// A record to write in the same transaction as a runner change (a claim, …).
pub struct Also {
    /// The table.
    pub table: Table,
    /// The item.
    pub doc: Doc,
    /// What the write expects.
    pub expect: Expect,
}

/// Runner records over a store, with a clock and the name audit entries carry.
#[derive(Clone)]
pub struct Fleet {
    /// The store.
    pub store: Arc<dyn StateStore>,
    /// The clock.
    pub clock: SharedClock,
    /// Who acts (`mothergoose`, `uglyfox`, …).
    pub actor: String,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fleet({}, {})", self.store.describe(), self.actor)
    }
}

/// Moves `r` to `to` at `now` if the state machine allows it.
pub fn set_state(
    r: &mut Runner,
    to: RunnerState,
    now: DateTime<Utc>,
) -> Result<(), IllegalTransition> {
    let from = RunnerState::parse(&r.state).unwrap_or(RunnerState::Failed);
    if !from.can_become(to) {
        return Err(IllegalTransition {
            runner: r.id.clone(),
            from,
            to,
        });
    }
    if from != to {
        r.state = to.as_str().to_string();
        r.state_since = Some(now);
    }
    r.updated_at = now;
    Ok(())
}

/// The state a record says (unknown spellings read as failed).
pub fn state_of(r: &Runner) -> RunnerState {
    RunnerState::parse(&r.state).unwrap_or(RunnerState::Failed)
}

/// Every runner that is not terminated (of `egg`, when given), read through the state
/// index: the work stays proportional to the live fleet, not to its history.
pub async fn unended_runners(
    store: &dyn StateStore,
    egg: Option<&str>,
) -> Result<Vec<Versioned<Runner>>, StateError> {
    let mut runners = Vec::new();
    for state in crate::state::ALL_STATES {
        if state != RunnerState::Terminated {
            let found = store.runners_by_state(state.as_str()).await?;
            runners.extend(
                found
                    .into_iter()
                    .filter(|r| egg.is_none_or(|e| r.item.egg_name == e)),
            );
        }
    }
    runners.sort_by(|a, b| a.item.id.cmp(&b.item.id));
    Ok(runners)
}

/// The runner record as a store item.
pub fn runner_doc(r: &Runner) -> Result<Doc, StateError> {
    match serde_json::to_value(r) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(StateError::Invalid(
            "a runner must serialise to a record".into(),
        )),
    }
}

/// An audit entry as a write.
pub fn audit_write(entry: &AuditLog) -> Result<Write, StateError> {
    match serde_json::to_value(entry) {
        Ok(Value::Object(doc)) => Ok(Write::Put {
            table: Table::AuditLogs,
            doc,
            expect: Expect::Absent,
        }),
        _ => Err(StateError::Invalid(
            "an audit entry must serialise to a record".into(),
        )),
    }
}

impl Fleet {
    /// A fleet acting as `actor`.
    pub fn new(store: Arc<dyn StateStore>, clock: SharedClock, actor: impl Into<String>) -> Fleet {
        Fleet {
            store,
            clock,
            actor: actor.into(),
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// An audit entry by this fleet's actor about a runner.
    pub fn audit(&self, action: &str, runner: &str, details: Value) -> AuditLog {
        AuditLog::new(self.now(), &self.actor, action, "runner", runner, details)
    }

    /// Records an audit entry on its own.
    pub async fn record(
        &self,
        action: &str,
        resource_type: &str,
        id: &str,
        details: Value,
    ) -> Result<(), StateError> {
        self.store
            .append_audit(&AuditLog::new(
                self.now(),
                &self.actor,
                action,
                resource_type,
                id,
                details,
            ))
            .await
    }

    /// Creates a runner record (it must not exist) with its audit entry and `also`.
    pub async fn create(
        &self,
        runner: &Runner,
        details: Value,
        also: Vec<Also>,
    ) -> Result<(), FleetError> {
        let mut writes = vec![
            Write::Put {
                table: Table::Runners,
                doc: runner_doc(runner)?,
                expect: Expect::Absent,
            },
            audit_write(&self.audit("create", &runner.id, details))?,
        ];
        writes.extend(also.into_iter().map(|a| Write::Put {
            table: a.table,
            doc: a.doc,
            expect: a.expect,
        }));
        self.store.transact(writes).await?;
        Ok(())
    }

    /// Reads the runner, lets `edit` change it, and writes it back with the version read
    /// (and the audit entry the edit asks for). On a conflict it starts again from a fresh
    /// read, so `edit` must decide from the record it is given. Returns the record as
    /// written (or as read, when the edit kept it).
    pub async fn edit<F>(&self, id: &str, mut edit: F) -> Result<Versioned<Runner>, FleetError>
    where
        F: FnMut(&mut Runner, DateTime<Utc>) -> Result<Edit, FleetError>,
    {
        for attempt in 0..ATTEMPTS {
            let current = self
                .store
                .runner(id)
                .await?
                .ok_or_else(|| FleetError::NotFound(id.to_string()))?;
            let mut r = current.item.clone();
            let now = self.now();
            let audit = match edit(&mut r, now)? {
                Edit::Keep => return Ok(current),
                Edit::Write(audit) => audit,
            };
            r.updated_at = now;
            let mut writes = vec![Write::Put {
                table: Table::Runners,
                doc: runner_doc(&r)?,
                expect: Expect::Version(current.version),
            }];
            if let Some((action, details)) = audit {
                writes.push(audit_write(&self.audit(&action, id, details))?);
            }
            match self.store.transact(writes).await {
                Ok(()) => {
                    return Ok(Versioned {
                        item: r,
                        version: current.version + 1,
                    })
                }
                Err(StateError::Conflict { .. }) => {
                    let jitter = rand::random::<u64>() % (5 * (attempt as u64 + 1));
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(FleetError::Busy(id.to_string()))
    }

    /// Moves a runner to `to` (with an audit entry `action` and `details`); a runner
    /// already there is left alone.
    pub async fn transition(
        &self,
        id: &str,
        to: RunnerState,
        action: &str,
        details: Value,
    ) -> Result<Versioned<Runner>, FleetError> {
        self.edit(id, |r, now| {
            if state_of(r) == to {
                return Ok(Edit::Keep);
            }
            let from = state_of(r);
            set_state(r, to, now)?;
            let mut d = details.clone();
            if let Value::Object(m) = &mut d {
                m.insert("from".into(), from.as_str().into());
                m.insert("to".into(), to.as_str().into());
            }
            Ok(Edit::Write(Some((action.to_string(), d))))
        })
        .await
    }
}
