//! Property tests of the embedded store against a model.

use gosling_state::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: u8,
        expect: Option<u64>,
        payload: u8,
    },
    Delete {
        key: u8,
        expect: Option<u64>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, proptest::option::of(1u64..4), any::<u8>()).prop_map(|(key, expect, payload)| {
            Op::Put {
                key,
                expect,
                payload,
            }
        }),
        (0u8..4, proptest::option::of(1u64..4))
            .prop_map(|(key, expect)| Op::Delete { key, expect }),
    ]
}

fn doc(key: u8, payload: u8) -> Doc {
    match json!({"version_id": format!("k{key}"), "payload": payload}) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    // Property 32: Database Transaction Atomicity — for any batch of conditional writes, the
    // store either applies all of them (when every expectation holds, checked against a
    // model that applies them in order) or none of them.
    #[test]
    fn property_32_transactions_all_or_nothing(batches in proptest::collection::vec(proptest::collection::vec(op(), 1..5), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = open_state(&dir.path().join("s.db").display().to_string(), &OpenOptions::default()).await.unwrap();
            let mut model: BTreeMap<u8, (u64, u8)> = BTreeMap::new();
            for batch in batches {
                let mut next = model.clone();
                let mut ok = true;
                let mut writes = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for op in &batch {
                    let (key, expect) = match op { Op::Put { key, expect, .. } | Op::Delete { key, expect } => (*key, *expect) };
                    if !seen.insert(key) { continue; } // one write per item per transaction
                    let cur = next.get(&key).map(|(v, _)| *v);
                    let holds = match (expect, cur) { (None, None) => true, (Some(e), Some(c)) => e == c, _ => false };
                    ok &= holds;
                    let exp = expect.map(Expect::Version).unwrap_or(Expect::Absent);
                    match op {
                        Op::Put { payload, .. } => {
                            next.insert(key, (expect.unwrap_or(0) + 1, *payload));
                            writes.push(Write::Put { table: Table::TofuVersions, doc: doc(key, *payload), expect: exp });
                        }
                        Op::Delete { .. } => {
                            next.remove(&key);
                            writes.push(Write::Delete { table: Table::TofuVersions, pk: format!("k{key}"), sk: None, expect: exp });
                        }
                    }
                }
                let result = store.transact(writes).await;
                prop_assert_eq!(result.is_ok(), ok, "{:?}", result);
                if ok { model = next; }
                let stored: BTreeMap<u8, (u64, u8)> = store.scan(Table::TofuVersions).await.unwrap().into_iter().map(|i| {
                    let k: u8 = i.doc["version_id"].as_str().unwrap()[1..].parse().unwrap();
                    (k, (i.version, i.doc["payload"].as_u64().unwrap() as u8))
                }).collect();
                prop_assert_eq!(&stored, &model);
            }
            Ok(())
        })?;
    }

    // Property 34: Data Encryption at Rest — for any secret, the sealed form never contains
    // the plaintext and opens only with the same key and context.
    #[test]
    fn property_34_sealed_secrets(secret in "[ -~]{4,64}", context in "[a-z/]{1,20}") {
        let c = Cipher::from_base64(&Cipher::generate_key()).unwrap();
        let sealed = c.seal(&SecretString::new(secret.clone()), &context).unwrap();
        prop_assert!(!sealed.as_str().contains(&secret));
        let opened = c.open(&sealed, &context).unwrap();
        prop_assert_eq!(opened.expose(), secret.as_str());
        let other = format!("{context}x");
        prop_assert!(c.open(&sealed, &other).is_err());
    }
}
