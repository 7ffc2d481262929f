//! Property 11: Runner State Persistence — after any runner state update, reading the
//! store returns exactly the state written; a change the state machine refuses writes
//! nothing.

use gosling_fleet::*;
use gosling_state::*;
use proptest::prelude::*;
use std::sync::Arc;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]

    // Property 11: Runner State Persistence.
    #[test]
    fn property_11_every_state_change_reads_back_as_written(
        steps in proptest::collection::vec(0usize..ALL_STATES.len(), 1..25)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn StateStore> = Arc::from(
                open_state(&format!("sqlite://{}", dir.path().join("s.db").display()), &OpenOptions::default())
                    .await
                    .unwrap(),
            );
            let clock = ManualClock::new(chrono::Utc::now());
            let fleet = Fleet::new(store.clone(), Arc::new(clock.clone()), "test");
            let r = Runner::new("r-p", "egg", "vm", "aws", "eu-west-1", clock.now());
            fleet.create(&r, serde_json::json!({}), vec![]).await.unwrap();
            let mut expected = RunnerState::Provisioning;
            let mut audits = 1;
            for i in steps {
                let to = ALL_STATES[i];
                clock.advance(chrono::Duration::seconds(1));
                let result = fleet.transition("r-p", to, "test", serde_json::json!({})).await;
                if expected.can_become(to) {
                    prop_assert!(result.is_ok(), "{expected} → {to}: {result:?}");
                    if expected != to {
                        audits += 1;
                    }
                    expected = to;
                } else {
                    prop_assert!(matches!(result, Err(FleetError::Illegal(_))), "{expected} → {to}");
                }
                let stored = store.runner("r-p").await.unwrap().unwrap().item;
                prop_assert_eq!(state_of(&stored), expected);
                prop_assert_eq!(stored.state.as_str(), expected.as_str());
            }
            let logged = store.audit_logs().await.unwrap().len();
            prop_assert_eq!(logged, audits, "one audit entry per change");
            Ok(())
        })?;
    }
}
