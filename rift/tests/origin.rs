//! Pull-through origin: a second Rift instance plays the upstream S3 bucket (it speaks SigV4
//! to aws-sdk-s3 like AWS or Yandex Object Storage would).

mod common;

use std::time::Duration;

use common::{bytes, client, runtime, start, TestServer, ACCESS_KEY, SECRET_KEY, TOKEN};
use proptest::prelude::*;
use reqwest::StatusCode;
use rift::config::OriginConfig;

const LIMIT: Duration = Duration::from_secs(90);

async fn pair() -> (TestServer, TestServer) {
    let origin = start(|_| {}).await;
    let endpoint = origin.url();
    let front = start(move |c| {
        c.origin = Some(OriginConfig {
            endpoint: Some(endpoint),
            region: "us-east-1".into(),
            bucket: None,
            access_key: Some(ACCESS_KEY.into()),
            secret_key: Some(SECRET_KEY.into()),
            timeout: Duration::from_secs(3),
        })
    })
    .await;
    (origin, front)
}

async fn put(url: &str, key: &str, body: Vec<u8>) {
    let r = client()
        .put(format!("{url}/cache/{key}"))
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn get(url: &str, key: &str) -> (StatusCode, Vec<u8>) {
    let r = client()
        .get(format!("{url}/cache/{key}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn miss_fills_from_origin_then_hits_never_touch_it() {
    tokio::time::timeout(LIMIT, async {
        let (mut origin, front) = pair().await;
        let data = bytes(2 << 20, 11);
        put(&origin.url(), "project/1/cache.zip", data.clone()).await;

        let (status, body) = get(&front.url(), "project/1/cache.zip").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body == data);
        assert_eq!(front.metric(|m| &m.origin_fetches), 1);
        assert_eq!(front.metric(|m| &m.misses), 1);
        let origin_hits = origin.metric(|m| &m.hits);
        assert_eq!(origin_hits, 1);

        // Property 20: a hit is served from disk without fetching from origin.
        for _ in 0..3 {
            let (status, body) = get(&front.url(), "project/1/cache.zip").await;
            assert_eq!(status, StatusCode::OK);
            assert!(body == data);
        }
        assert_eq!(origin.metric(|m| &m.hits), origin_hits);
        assert_eq!(front.metric(|m| &m.origin_fetches), 1);
        assert_eq!(front.metric(|m| &m.hits), 3);

        // Absent at the origin: a plain miss.
        let (status, _) = get(&front.url(), "project/1/absent.zip").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(front.metric(|m| &m.origin_errors), 0);

        // Origin down: cached objects still served, misses fall back to 404 quickly.
        origin.stop().await;
        let (status, body) = get(&front.url(), "project/1/cache.zip").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body == data);
        let t = std::time::Instant::now();
        let (status, _) = get(&front.url(), "project/2/cache.zip").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(t.elapsed() < Duration::from_secs(20));
        assert_eq!(front.metric(|m| &m.origin_errors), 1);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn concurrent_misses_share_one_origin_fetch() {
    tokio::time::timeout(LIMIT, async {
        let (origin, front) = pair().await;
        let data = bytes(4 << 20, 12);
        put(&origin.url(), "shared.zip", data.clone()).await;
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let url = front.url();
            tasks.push(tokio::spawn(async move { get(&url, "shared.zip").await }));
        }
        for t in tasks {
            let (status, body) = t.await.unwrap();
            assert_eq!(status, StatusCode::OK);
            assert!(body == data);
        }
        assert_eq!(front.metric(|m| &m.origin_fetches), 1);
        assert_eq!(origin.metric(|m| &m.hits), 1);
    })
    .await
    .expect("bounded in time");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    // Property 20: Rift Cache Hit Behavior — for any artifact request where the artifact exists
    // in cache, Rift serves it from cache without fetching from origin.
    #[test]
    fn property_20_cached_artifacts_never_touch_the_origin(
        key in "[a-z0-9]{1,8}(/[a-z0-9._-]{1,8}){0,3}",
        len in 0usize..20_000,
        seed in any::<u64>(),
        extra_reads in 1usize..4,
    ) {
        let rt = runtime();
        rt.block_on(async {
            tokio::time::timeout(LIMIT, async {
                let (origin, front) = shared_pair().await;
                let key = format!("p20/{seed:x}/{key}");
                let data = bytes(len, seed);
                put(&origin.url(), &key, data.clone()).await;
                // The first read fills the cache from the origin...
                let (status, body) = get(&front.url(), &key).await;
                assert_eq!(status, StatusCode::OK);
                assert!(body == data);
                let origin_hits = origin.metric(|m| &m.hits);
                let fetches = front.metric(|m| &m.origin_fetches);
                // ...and every later read is a local hit.
                for _ in 0..extra_reads {
                    let (status, body) = get(&front.url(), &key).await;
                    assert_eq!(status, StatusCode::OK);
                    assert!(body == data);
                }
                assert_eq!(origin.metric(|m| &m.hits), origin_hits);
                assert_eq!(front.metric(|m| &m.origin_fetches), fetches);
            })
            .await
            .expect("bounded in time");
        });
    }
}

/// One origin/front pair shared by every proptest case (servers live on the shared runtime).
async fn shared_pair() -> &'static (TestServer, TestServer) {
    static PAIR: tokio::sync::OnceCell<(TestServer, TestServer)> =
        tokio::sync::OnceCell::const_new();
    PAIR.get_or_init(pair).await
}
