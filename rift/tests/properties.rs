//! Property tests: authentication enforcement over HTTP, and the store's invariants under any
//! sequence of puts, gets, deletes, aborted uploads, evictions and restarts.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{client, runtime, start, TestServer, ACCESS_KEY, TOKEN};
use proptest::prelude::*;
use rift::metrics::Metrics;
use rift::store::{PutOptions, Store, StoreConfig};

async fn server() -> &'static TestServer {
    static S: tokio::sync::OnceCell<TestServer> = tokio::sync::OnceCell::const_new();
    S.get_or_init(|| start(|_| {})).await
}

#[derive(Debug, Clone)]
enum Cred {
    None,
    WrongBearer(String),
    BearerOnS3Path,
    Basic,
    GarbageSigV4(String),
    ForgedSigV4,
    ForgedPresigned,
    ExpiredPresignedShape,
}

fn cred() -> impl Strategy<Value = Cred> {
    prop_oneof![
        Just(Cred::None),
        "[ -~]{0,40}".prop_map(Cred::WrongBearer),
        Just(Cred::BearerOnS3Path),
        Just(Cred::Basic),
        "[ -~]{0,80}".prop_map(Cred::GarbageSigV4),
        Just(Cred::ForgedSigV4),
        Just(Cred::ForgedPresigned),
        Just(Cred::ExpiredPresignedShape),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    // Property 21: Rift Authentication Enforcement — for any request to Rift without valid
    // authentication, the request is rejected with 401 Unauthorized (and has no effect).
    #[test]
    fn property_21_unauthenticated_requests_are_401(
        method in prop_oneof![Just("GET"), Just("HEAD"), Just("PUT"), Just("DELETE"), Just("POST")],
        plain in any::<bool>(),
        key in "[a-zA-Z0-9._/-]{1,40}",
        c in cred(),
    ) {
        runtime().block_on(async {
            tokio::time::timeout(Duration::from_secs(30), async {
                let s = server().await;
                let path = if plain { format!("/cache/{key}") } else { format!("/bucket/{key}") };
                let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
                let day = &now[..8];
                let mut url = format!("{}{}", s.url(), path);
                let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                let mut rb = client().request(m, url.clone());
                match &c {
                    Cred::None => {}
                    Cred::WrongBearer(t) => {
                        if t.trim() != TOKEN {
                            rb = rb.header("authorization", format!("Bearer {t}"));
                        }
                    }
                    Cred::BearerOnS3Path => {
                        if !plain {
                            rb = rb.bearer_auth(TOKEN);
                        }
                    }
                    Cred::Basic => rb = rb.header("authorization", format!("Basic {TOKEN}")),
                    Cred::GarbageSigV4(g) => {
                        rb = rb.header("authorization", format!("AWS4-HMAC-SHA256 {g}"))
                            .header("x-amz-date", now.clone())
                            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
                    }
                    Cred::ForgedSigV4 => {
                        rb = rb.header("authorization", format!(
                            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{day}/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}", "ab".repeat(32)))
                            .header("x-amz-date", now.clone())
                            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
                    }
                    Cred::ForgedPresigned => {
                        url = format!("{url}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={ACCESS_KEY}%2F{day}%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date={now}&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature={}", "0".repeat(64));
                        rb = client().request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
                    }
                    Cred::ExpiredPresignedShape => {
                        url = format!("{url}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={ACCESS_KEY}%2F20200101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20200101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature={}", "1".repeat(64));
                        rb = client().request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
                    }
                }
                if method == "PUT" {
                    rb = rb.body("should never be stored");
                }
                let r = rb.send().await.unwrap();
                assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED, "{method} {path} {c:?}");
                assert_eq!(s.running().state.store.gauges().objects, 0);
            })
            .await
            .expect("bounded in time");
        });
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, Vec<u8>),
    /// An upload that fails after sending this prefix (cut connection).
    Abort(u8, Vec<u8>),
    Get(u8),
    Delete(u8),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let body = prop::collection::vec(any::<u8>(), 0..3000);
    prop_oneof![
        4 => (0u8..6, body.clone()).prop_map(|(k, b)| Op::Put(k, b)),
        1 => (0u8..6, body).prop_map(|(k, b)| Op::Abort(k, b)),
        4 => (0u8..6).prop_map(Op::Get),
        1 => (0u8..6).prop_map(Op::Delete),
        1 => Just(Op::Restart),
    ]
}

fn open(dir: &std::path::Path, max: u64) -> Arc<Store> {
    Store::open(
        StoreConfig {
            dir: dir.to_path_buf(),
            max_bytes: max,
            max_age: None,
            max_object_size: 1 << 20,
            fsync: false,
            // Small enough that hot copies are dropped and taken again.
            memory_cache: 8_000,
        },
        Arc::new(Metrics::default()),
    )
    .expect("open store")
}

fn read(o: rift::store::OpenObject) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    if let Some(b) = o.small {
        return b.to_vec();
    }
    let mut f = o.file;
    f.seek(SeekFrom::Start(o.body_offset)).unwrap();
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    // Property 20 (store side) and the cache invariant: any sequence of puts, gets,
    // deletes, cut uploads, evictions and restarts keeps the size limit and never serves bytes
    // other than those last fully written for a key, from disk or from memory.
    #[test]
    fn store_keeps_limit_and_serves_only_last_complete_write(
        ops in prop::collection::vec(op(), 1..40),
        max in 2_000u64..12_000,
    ) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut store = open(dir.path(), max);
            let mut last: HashMap<u8, Vec<u8>> = HashMap::new();
            for op in ops {
                match op {
                    Op::Put(k, body) => {
                        let chunks: Vec<Result<Bytes, String>> =
                            body.chunks(700).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
                        let r = store
                            .put_stream(&format!("b/{k}"), PutOptions::default(), futures_util::stream::iter(chunks))
                            .await;
                        match r {
                            Ok(m) => {
                                assert_eq!(m.size, body.len() as u64);
                                last.insert(k, body);
                            }
                            // Too large for this cache: refused, previous version untouched.
                            Err(rift::store::StoreError::TooLarge { .. }) => {}
                            Err(e) => panic!("put failed: {e}"),
                        }
                    }
                    Op::Abort(k, body) => {
                        let mut chunks: Vec<Result<Bytes, String>> =
                            body.chunks(700).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
                        chunks.push(Err("connection reset".into()));
                        let r = store
                            .put_stream(&format!("b/{k}"), PutOptions::default(), futures_util::stream::iter(chunks))
                            .await;
                        assert!(r.is_err());
                    }
                    Op::Get(k) => {
                        // The in-memory copy, when there is one, and the disk.
                        if let Some(h) = store.get_hot(&format!("b/{k}")) {
                            let expected = last.get(&k).expect("served a key never fully written");
                            assert_eq!(&h.body[..], &expected[..], "memory served bytes other than the last complete write");
                        }
                        if let Some(o) = store.get(&format!("b/{k}")).await.unwrap() {
                            let got = read(o);
                            let expected = last.get(&k).expect("served a key never fully written");
                            assert_eq!(&got, expected, "served bytes other than the last complete write");
                        }
                    }
                    Op::Delete(k) => {
                        store.delete(&format!("b/{k}")).await.unwrap();
                        last.remove(&k);
                    }
                    Op::Restart => {
                        drop(store);
                        store = open(dir.path(), max);
                    }
                }
                let g = store.gauges();
                assert!(g.bytes <= max, "size limit exceeded: {g:?}");
                // Nothing partial is ever left in tmp/.
                assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
            }
            // Whatever survived eviction is exactly the last complete write.
            for (k, body) in &last {
                if let Some(o) = store.get(&format!("b/{k}")).await.unwrap() {
                    assert_eq!(&read(o), body);
                }
                if let Some(h) = store.get_hot(&format!("b/{k}")) {
                    assert_eq!(&h.body[..], &body[..]);
                }
            }
        });
    }
}
