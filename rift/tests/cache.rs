//! The plain `/cache/{key}` endpoint and the store's behaviour seen over HTTP: auth,
//! eviction, restart recovery, concurrent writers, cut uploads, limits, metrics, shutdown.

mod common;

use std::time::Duration;

use common::{bytes, client, md5_hex, start, write_auth, TOKEN};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(60);

async fn put(url: &str, key: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .put(format!("{url}/cache/{key}"))
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .expect("PUT")
}

async fn get(url: &str, key: &str) -> reqwest::Response {
    client()
        .get(format!("{url}/cache/{key}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET")
}

#[tokio::test]
async fn plain_cache_roundtrip_with_bearer_token() {
    tokio::time::timeout(LIMIT, async {
        let s = start(|_| {}).await;
        let url = s.url();
        let data = bytes(100_000, 1);
        let r = put(&url, "project/1/job%20cache/cache.zip", data.clone()).await;
        assert_eq!(r.status(), StatusCode::OK);
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(etag, format!("\"{}\"", md5_hex(&data)));

        let r = get(&url, "project/1/job%20cache/cache.zip").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
        assert_eq!(r.headers()["content-length"].to_str().unwrap(), "100000");
        assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());

        let r = client()
            .head(format!("{url}/cache/project/1/job%20cache/cache.zip"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-length"].to_str().unwrap(), "100000");

        let r = client()
            .get(format!("{url}/cache/project/1/job%20cache/cache.zip"))
            .bearer_auth(TOKEN)
            .header("range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            r.headers()["content-range"].to_str().unwrap(),
            "bytes 10-19/100000"
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), &data[10..20]);

        let r = get(&url, "").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = get(&url, "missing").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.text().await.unwrap().contains("<Code>NoSuchKey</Code>"));

        // The plain cache is bucket "cache" of the S3 API: visible in the metrics too, which
        // need an operator's token.
        let metrics = format!("{url}/metrics");
        let r = client().get(&metrics).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = client()
            .get(&metrics)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let m = client()
            .get(&metrics)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(m.contains("rift_cache_hits_total 3"), "{m}");
        assert!(m.contains("rift_cache_misses_total 1"), "{m}");
        assert!(m.contains("rift_bytes_in_total 100000"), "{m}");
        assert!(m.contains("rift_cache_objects 1"), "{m}");
        let h = client().get(format!("{url}/health")).send().await.unwrap();
        assert_eq!(h.status(), StatusCode::OK);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn missing_or_wrong_token_is_401() {
    tokio::time::timeout(LIMIT, async {
        let s = start(|_| {}).await;
        let url = s.url();
        assert_eq!(put(&url, "k", b"v".to_vec()).await.status(), StatusCode::OK);
        for req in [
            client().get(format!("{url}/cache/k")),
            client().get(format!("{url}/cache/k")).bearer_auth("wrong"),
            client().put(format!("{url}/cache/k")).body("evil"),
            client().head(format!("{url}/cache/k")).bearer_auth(""),
            client().get(format!("{url}/bucket/k")),
            client()
                .get(format!("{url}/cache/k"))
                .header("authorization", format!("Basic {TOKEN}")),
        ] {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            assert!(r.headers().contains_key("www-authenticate"));
        }
        // Nothing was overwritten.
        assert_eq!(get(&url, "k").await.bytes().await.unwrap().as_ref(), b"v");
        assert_eq!(s.metric(|m| &m.auth_failures), 6);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn repeated_failures_are_rate_limited_per_client() {
    tokio::time::timeout(LIMIT, async {
        let s = start(|c| {
            c.auth_failure_limit = 3;
            c.auth_lockout = Duration::from_secs(30);
        })
        .await;
        let url = s.url();
        for _ in 0..3 {
            let r = client()
                .get(format!("{url}/cache/k"))
                .bearer_auth("bad")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        // Locked out, even with a valid token.
        let r = get(&url, "k").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().contains_key("retry-after"));
        assert!(r.text().await.unwrap().contains("SlowDown"));
        assert_eq!(s.metric(|m| &m.rate_limited), 1);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn tokens_reload_when_the_file_changes() {
    tokio::time::timeout(LIMIT, async {
        let s = start(|_| {}).await;
        let url = s.url();
        assert_eq!(get(&url, "k").await.status(), StatusCode::NOT_FOUND);
        // Make sure the modification time differs from the first write.
        tokio::time::sleep(Duration::from_millis(20)).await;
        write_auth(&s.auth_path(), &["glrt-rotated"]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = client()
                .get(format!("{url}/cache/k"))
                .bearer_auth("glrt-rotated")
                .send()
                .await
                .unwrap();
            if r.status() == StatusCode::NOT_FOUND {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "new token never accepted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(get(&url, "k").await.status(), StatusCode::UNAUTHORIZED);
        // A broken file keeps the previous credentials.
        tokio::time::sleep(Duration::from_millis(20)).await;
        std::fs::write(s.auth_path(), "tokens = [").unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = client()
            .get(format!("{url}/cache/k"))
            .bearer_auth("glrt-rotated")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(s.metric(|m| &m.auth_reload_errors) >= 1);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn lru_eviction_keeps_the_size_limit() {
    tokio::time::timeout(LIMIT, async {
        // Room for three 10 KB objects (plus headers), not four.
        let s = start(|c| c.max_cache_size = 35_000).await;
        let url = s.url();
        for i in 0..3 {
            assert_eq!(
                put(&url, &format!("k{i}"), bytes(10_000, i)).await.status(),
                StatusCode::OK
            );
        }
        // Read k0 so that k1 becomes the least recently used.
        assert_eq!(get(&url, "k0").await.status(), StatusCode::OK);
        assert_eq!(
            put(&url, "k3", bytes(10_000, 3)).await.status(),
            StatusCode::OK
        );
        assert_eq!(get(&url, "k1").await.status(), StatusCode::NOT_FOUND);
        for i in [0u64, 2, 3] {
            let r = get(&url, &format!("k{i}")).await;
            assert_eq!(
                r.bytes().await.unwrap().as_ref(),
                bytes(10_000, i).as_slice()
            );
        }
        let g = s.running().state.store.gauges();
        assert!(g.bytes <= 35_000, "{g:?}");
        assert_eq!(s.metric(|m| &m.evictions), 1);
        // An object that can never fit is refused up front.
        let r = put(&url, "huge", bytes(40_000, 9)).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(r.text().await.unwrap().contains("EntityTooLarge"));
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn max_object_size_and_max_age() {
    tokio::time::timeout(LIMIT, async {
        let s = start(|c| {
            c.max_object_size = 1000;
            c.max_age = Some(Duration::from_secs(1));
        })
        .await;
        let url = s.url();
        assert_eq!(
            put(&url, "big", vec![0; 1001]).await.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        // Without a Content-Length the limit is enforced while streaming.
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            (0..5).map(|_| Ok(vec![1u8; 400])).collect();
        let r = client()
            .put(format!("{url}/cache/streamed"))
            .bearer_auth(TOKEN)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await;
        if let Ok(r) = r {
            assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        }
        assert_eq!(get(&url, "streamed").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(put(&url, "old", vec![1; 10]).await.status(), StatusCode::OK);
        assert_eq!(get(&url, "old").await.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(get(&url, "old").await.status(), StatusCode::NOT_FOUND);
        assert!(s.metric(|m| &m.evictions) >= 1);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn restart_finds_objects_again() {
    tokio::time::timeout(LIMIT, async {
        let mut s = start(|c| c.fsync = true).await;
        let url = s.url();
        let big = bytes(3 << 20, 7);
        assert_eq!(
            put(&url, "a/b/c", big.clone()).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            put(&url, "small", b"tiny".to_vec()).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            put(&url, "small", b"tiny v2".to_vec()).await.status(),
            StatusCode::OK
        );
        // A leftover of an interrupted upload must not survive a restart.
        std::fs::write(s.config.data_dir.join("tmp").join("999-1.part"), b"partial").unwrap();
        s.restart().await;
        let url = s.url();
        assert!(std::fs::read_dir(s.config.data_dir.join("tmp"))
            .unwrap()
            .next()
            .is_none());
        let r = get(&url, "a/b/c").await;
        assert_eq!(
            r.headers()["etag"].to_str().unwrap(),
            format!("\"{}\"", md5_hex(&big))
        );
        assert_eq!(r.bytes().await.unwrap().len(), big.len());
        assert_eq!(
            get(&url, "small").await.bytes().await.unwrap().as_ref(),
            b"tiny v2"
        );
        assert_eq!(s.running().state.store.gauges().objects, 2);
        s.stop().await;
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn concurrent_writers_of_one_key_never_mix() {
    tokio::time::timeout(LIMIT, async {
        let s = start(|_| {}).await;
        let url = s.url();
        let bodies: Vec<Vec<u8>> = (0..8)
            .map(|i| bytes(512 * 1024 + i * 1000, i as u64))
            .collect();
        let mut tasks = Vec::new();
        for b in bodies.clone() {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                put(&url, "shared", b).await.status()
            }));
        }
        // Readers racing the writers only ever see a complete body.
        let mut readers = Vec::new();
        for _ in 0..8 {
            let url = url.clone();
            let bodies = bodies.clone();
            readers.push(tokio::spawn(async move {
                for _ in 0..5 {
                    let r = get(&url, "shared").await;
                    if r.status() == StatusCode::OK {
                        let etag = r.headers()["etag"].to_str().unwrap().to_string();
                        let got = r.bytes().await.unwrap();
                        assert!(bodies.iter().any(|b| b.as_slice() == got.as_ref()));
                        assert_eq!(etag, format!("\"{}\"", md5_hex(&got)));
                    }
                }
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), StatusCode::OK);
        }
        for r in readers {
            r.await.unwrap();
        }
        let got = get(&url, "shared").await.bytes().await.unwrap();
        assert!(bodies.iter().any(|b| b.as_slice() == got.as_ref()));
        assert_eq!(s.running().state.store.gauges().objects, 1);
        // Replaced generations were removed from disk.
        let files: usize = std::fs::read_dir(s.config.data_dir.join("objects"))
            .unwrap()
            .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum();
        assert_eq!(files, 1);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn a_cut_upload_leaves_no_partial_object() {
    tokio::time::timeout(LIMIT, async {
        let s = start(|_| {}).await;
        let url = s.url();
        assert_eq!(put(&url, "victim", b"old complete body".to_vec()).await.status(), StatusCode::OK);
        for key in ["victim", "fresh"] {
            let mut sock = TcpStream::connect(s.running().addr).await.unwrap();
            let head = format!(
                "PUT /cache/{key} HTTP/1.1\r\nHost: rift\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1048576\r\n\r\n"
            );
            sock.write_all(head.as_bytes()).await.unwrap();
            sock.write_all(&vec![b'x'; 300_000]).await.unwrap();
            sock.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(sock);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while s.metric(|m| &m.uploads_aborted) < 2 {
            assert!(tokio::time::Instant::now() < deadline, "aborts not recorded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(get(&url, "victim").await.bytes().await.unwrap().as_ref(), b"old complete body");
        assert_eq!(get(&url, "fresh").await.status(), StatusCode::NOT_FOUND);
        assert!(std::fs::read_dir(s.config.data_dir.join("tmp")).unwrap().next().is_none());
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn oversized_request_heads_are_refused() {
    tokio::time::timeout(LIMIT, async {
        let s = start(|c| c.max_header_size = 16 * 1024).await;
        let mut sock = TcpStream::connect(s.running().addr).await.unwrap();
        let head = format!(
            "GET /cache/k HTTP/1.1\r\nHost: rift\r\nX-Big: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        // The server may close before everything is written.
        let _ = sock.write_all(head.as_bytes()).await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 431"),
            "unexpected answer: {text}"
        );
        // The server is still fine.
        assert_eq!(get(&s.url(), "k").await.status(), StatusCode::NOT_FOUND);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn the_head_limit_holds_below_the_read_buffer() {
    // Bodies are read in chunks larger than the head limit; the limit is still the limit.
    tokio::time::timeout(LIMIT, async {
        let s = start(|c| c.max_header_size = 16 * 1024).await;
        let url = format!("{}/cache/k", s.url());
        let with_header = |n: usize| {
            client()
                .get(url.clone())
                .bearer_auth(TOKEN)
                .header("x-pad", "a".repeat(n))
                .send()
        };
        let r = with_header(20 * 1024).await.unwrap();
        assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let r = with_header(12 * 1024).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_downloads() {
    tokio::time::timeout(LIMIT, async {
        let mut s = start(|_| {}).await;
        let url = s.url();
        let data = bytes(16 << 20, 3);
        assert_eq!(
            put(&url, "big", data.clone()).await.status(),
            StatusCode::OK
        );
        let r = get(&url, "big").await;
        assert_eq!(r.status(), StatusCode::OK);
        let mut stream = r;
        // Read a little, then ask the server to stop while the rest is in flight.
        let first = stream.chunk().await.unwrap().unwrap();
        let running = s.running.take().unwrap();
        let addr = running.addr;
        running.trigger_shutdown();
        let mut got = first.to_vec();
        while let Some(c) = stream.chunk().await.unwrap() {
            got.extend_from_slice(&c);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data);
        tokio::time::timeout(Duration::from_secs(10), running.wait())
            .await
            .expect("drained");
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "listener still open"
        );
    })
    .await
    .expect("bounded in time");
}
