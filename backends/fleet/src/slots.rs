//! An egg's `max_runners`, held however many creators run at once.
//!
//! Counting an egg's live runners and then creating one is a race: two creators that both
//! count `max - 1` would both create. So every creation also rewrites the egg's slot list
//! (the ids of its runners that may still be live, a `meta` value) in the same
//! conditional transaction as the runner record. Of two creators that read the same list,
//! the second one's transaction conflicts, and it counts again on the fresh list.

use crate::runners::{state_of, unended_runners, Also};
use crate::state::RunnerState;
use gosling_state::{meta_value_doc, Expect, StateError, StateStore, Table};
use std::collections::BTreeSet;

fn slots_name(egg: &str) -> String {
    format!("slots/{egg}")
}

/// The egg's live runners: those the state index shows, and those of the slot list whose
/// record says they have not ended (point reads see a runner created a moment ago even
/// where the index lags behind).
pub async fn live(store: &dyn StateStore, egg: &str) -> Result<BTreeSet<String>, StateError> {
    Ok(read(store, egg).await?.0)
}

async fn read(store: &dyn StateStore, egg: &str) -> Result<(BTreeSet<String>, Expect), StateError> {
    let stored = store.meta_value(&slots_name(egg)).await?;
    let mut live: BTreeSet<String> = unended_runners(store, Some(egg))
        .await?
        .into_iter()
        .map(|r| r.item.id)
        .collect();
    let listed: Vec<String> = stored
        .as_ref()
        .and_then(|v| serde_json::from_value(v.item.clone()).ok())
        .unwrap_or_default();
    for id in listed {
        if live.contains(&id) {
            continue;
        }
        let ended = store
            .runner(&id)
            .await?
            .is_none_or(|r| state_of(&r.item) == RunnerState::Terminated);
        if !ended {
            live.insert(id);
        }
    }
    let expect = stored.map_or(Expect::Absent, |v| Expect::Version(v.version));
    Ok((live, expect))
}

/// A slot of `egg` for new runner `id`, as a write for the transaction that creates the
/// runner; `None` when the egg already has `max` live runners.
pub async fn claim(
    store: &dyn StateStore,
    egg: &str,
    max: u32,
    id: &str,
) -> Result<Option<Also>, StateError> {
    let (mut live, expect) = read(store, egg).await?;
    if live.len() >= max as usize && !live.contains(id) {
        return Ok(None);
    }
    live.insert(id.to_string());
    Ok(Some(Also {
        table: Table::Meta,
        doc: meta_value_doc(&slots_name(egg), serde_json::json!(live)),
        expect,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runners::Fleet;
    use gosling_state::{system_clock, Runner, SqliteStore};
    use std::sync::Arc;

    fn open() -> (tempfile::TempDir, Arc<dyn StateStore>, Fleet) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> =
            Arc::new(SqliteStore::open(&dir.path().join("state.db"), false).unwrap());
        let fleet = Fleet::new(store.clone(), system_clock(), "test");
        (dir, store, fleet)
    }

    fn runner(id: &str) -> Runner {
        Runner::new(id, "egg", "vm", "aws", "x", chrono::Utc::now())
    }

    async fn create(fleet: &Fleet, store: &dyn StateStore, id: &str) -> Result<bool, StateError> {
        let Some(slot) = claim(store, "egg", 2, id).await? else {
            return Ok(false);
        };
        match fleet
            .create(&runner(id), serde_json::json!({}), vec![slot])
            .await
        {
            Ok(()) => Ok(true),
            Err(crate::FleetError::State(e)) => Err(e),
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn two_creators_that_saw_the_last_slot_cannot_both_take_it() {
        let (_dir, store, fleet) = open();
        assert!(create(&fleet, &*store, "a").await.unwrap());
        // Both read the list while one slot is left…
        let first = claim(&*store, "egg", 2, "b").await.unwrap().unwrap();
        let second = claim(&*store, "egg", 2, "c").await.unwrap().unwrap();
        fleet
            .create(&runner("b"), serde_json::json!({}), vec![first])
            .await
            .unwrap();
        // …and the second creation conflicts, then finds no room.
        let late = fleet
            .create(&runner("c"), serde_json::json!({}), vec![second])
            .await;
        assert!(matches!(
            late,
            Err(crate::FleetError::State(StateError::Conflict { .. }))
        ));
        assert!(store.runner("c").await.unwrap().is_none());
        assert!(!create(&fleet, &*store, "c").await.unwrap());
        assert_eq!(live(&*store, "egg").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_ended_runner_gives_its_slot_back() {
        let (_dir, store, fleet) = open();
        assert!(create(&fleet, &*store, "a").await.unwrap());
        assert!(create(&fleet, &*store, "b").await.unwrap());
        assert!(!create(&fleet, &*store, "c").await.unwrap());
        fleet
            .edit("a", |r, now| {
                crate::set_state(r, RunnerState::Terminating, now)?;
                crate::set_state(r, RunnerState::Terminated, now)?;
                Ok(crate::Edit::Write(None))
            })
            .await
            .unwrap();
        assert!(create(&fleet, &*store, "c").await.unwrap());
        let live = live(&*store, "egg").await.unwrap();
        assert_eq!(live.into_iter().collect::<Vec<_>>(), ["b", "c"]);
    }
}
