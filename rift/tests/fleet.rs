//! Rift trusts the runners MotherGoose creates: a runner made through MotherGoose (local
//! provider) uses Rift with its own S3 keys and token, only under its egg's prefix, until it
//! is terminated; the cache is shared by the runners of one egg; a Rift that cannot reach
//! MotherGoose keeps serving the runners it has cached answers for.

mod common;
mod mothergoose;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use common::{bytes, client, md5_hex, Proc, ACCESS_KEY, SECRET_KEY};
use gosling_api::CacheConfig;
use mothergoose::MotherGoose;
use reqwest::StatusCode;
use rift::fleet::{FleetConfig, Secret};

const LIMIT: Duration = Duration::from_secs(180);
/// How long Rift trusts "the runner lives" in these tests.
const ALLOW_TTL: Duration = Duration::from_secs(1);

fn s3(url: &str, access_key: &str, secret: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .credentials_provider(Credentials::new(access_key, secret, None, None, "test"))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A runner's S3 client, with the keys MotherGoose gave it.
fn runner_s3(url: &str, c: &CacheConfig) -> aws_sdk_s3::Client {
    s3(url, &c.access_key, &c.secret_key)
}

/// A key under the runner's prefix, as gitlab-runner makes them (`Path` first).
fn key_of(c: &CacheConfig, rest: &str) -> String {
    format!("{}/{rest}", c.path.as_deref().expect("a prefix"))
}

fn fleet_config(mg: &MotherGoose, allow_ttl: Duration) -> FleetConfig {
    let mut f = FleetConfig::new(mg.base.clone(), Secret::new(mg.rift_token.expose()));
    f.allow_ttl = allow_ttl;
    f.deny_ttl = allow_ttl;
    f
}

/// The HTTP status of a failed SDK call.
fn status<T, E>(r: Result<T, aws_sdk_s3::error::SdkError<E>>) -> Option<u16> {
    r.err()
        .and_then(|e| e.raw_response().map(|r| r.status().as_u16()))
}

async fn get(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>, Option<u16>> {
    match c.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => Ok(o.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(e) => Err(e.raw_response().map(|r| r.status().as_u16())),
    }
}

async fn put(c: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &[u8]) -> Option<u16> {
    let r = c
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await;
    match r {
        Ok(_) => Some(200),
        Err(e) => e.raw_response().map(|r| r.status().as_u16()),
    }
}

/// Polls `refused` until it holds; returns how long that took.
async fn time_until<F, Fut>(limit: Duration, what: &str, mut refused: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !refused().await {
        assert!(start.elapsed() < limit, "{what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_use_their_own_keys_within_their_egg_until_terminated() {
    tokio::time::timeout(LIMIT, async {
        let mg = MotherGoose::start().await;
        let fleet = fleet_config(&mg, ALLOW_TTL);
        let rift = common::start(move |c| c.fleet = Some(fleet)).await;
        let url = rift.url();
        let a1 = mg.runner("alpha").await;
        let a2 = mg.runner("alpha").await;
        let b1 = mg.runner("beta").await;
        let bucket = a1.bucket.clone();
        let (s3a1, s3a2, s3b1) = (runner_s3(&url, &a1), runner_s3(&url, &a2), runner_s3(&url, &b1));

        // A runner uploads and downloads under its egg's prefix with its own keys.
        let key = key_of(&a1, "project/7/default-protected/cache.zip");
        let data = bytes(300_000, 7);
        assert_eq!(put(&s3a1, &bucket, &key, &data).await, Some(200));
        assert_eq!(get(&s3a1, &bucket, &key).await, Ok(data.clone()));
        let listed = s3a1
            .list_objects_v2()
            .bucket(&bucket)
            .prefix("alpha/")
            .send()
            .await
            .unwrap();
        assert_eq!(listed.contents().len(), 1);
        // As gitlab-runner does it: URLs presigned with the runner's keys.
        let presign = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300))
            .unwrap();
        let p = s3a1
            .put_object()
            .bucket(&bucket)
            .key(key_of(&a1, "project/7/presigned.zip"))
            .presigned(presign.clone())
            .await
            .unwrap();
        let r = client().put(p.uri()).body("presigned").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);

        // The next runner of the egg reads what the first wrote: the point of the cache.
        let read = get(&s3a2, &bucket, &key).await.unwrap();
        assert_eq!(md5_hex(&read), md5_hex(&data));

        // Another egg's runner cannot read, overwrite, delete or list alpha's keys, nor
        // list the bucket or the buckets; its own prefix works.
        assert_eq!(get(&s3b1, &bucket, &key).await, Err(Some(403)));
        assert_eq!(put(&s3b1, &bucket, &key, b"poison").await, Some(403));
        let del = s3b1.delete_object().bucket(&bucket).key(&key).send().await;
        assert_eq!(status(del), Some(403));
        for prefix in [None, Some("alpha/"), Some("alph"), Some("beta")] {
            let mut l = s3b1.list_objects_v2().bucket(&bucket);
            if let Some(p) = prefix {
                l = l.prefix(p);
            }
            assert_eq!(status(l.send().await), Some(403), "{prefix:?}");
        }
        assert_eq!(status(s3b1.list_buckets().send().await), Some(403));
        assert_eq!(status(s3b1.create_bucket().bucket("other").send().await), Some(403));
        let objects = aws_sdk_s3::types::Delete::builder()
            .objects(aws_sdk_s3::types::ObjectIdentifier::builder().key(key_of(&b1, "x")).build().unwrap())
            .objects(aws_sdk_s3::types::ObjectIdentifier::builder().key(&key).build().unwrap())
            .build()
            .unwrap();
        let multi = s3b1.delete_objects().bucket(&bucket).delete(objects).send().await;
        assert_eq!(status(multi), Some(403), "one foreign key refuses the batch");
        assert_eq!(put(&s3b1, &bucket, &key_of(&b1, "own"), b"beta's").await, Some(200));
        assert_eq!(get(&s3a1, &bucket, &key).await, Ok(data.clone()), "unchanged");

        // A wrong secret is refused (an authentication failure: 401, Property 21).
        let forged = s3(&url, &a1.access_key, "not-the-secret");
        assert_eq!(get(&forged, &bucket, &key).await, Err(Some(401)));
        let nobody = s3(&url, "r-0000000000000000", &a1.secret_key);
        assert_eq!(get(&nobody, &bucket, &key).await, Err(Some(401)));
        // The auth file's key still has full access.
        let operator = s3(&url, ACCESS_KEY, SECRET_KEY);
        assert_eq!(get(&operator, &bucket, &key_of(&b1, "own")).await.unwrap(), b"beta's");

        // Terminated: the same requests are refused within the TTL Rift trusts answers for.
        let asked = Instant::now();
        mg.terminate(&a1.access_key).await;
        let terminated = asked.elapsed();
        let refused = time_until(ALLOW_TTL * 5, "a terminated runner still served", || async {
            get(&s3a1, &bucket, &key).await == Err(Some(401))
        })
        .await;
        eprintln!(
            "revocation: MotherGoose terminated the runner {terminated:?} after DELETE; Rift refused it {refused:?} later (allow TTL {ALLOW_TTL:?})"
        );
        assert!(refused <= ALLOW_TTL + Duration::from_secs(2), "{refused:?}");
        assert_eq!(put(&s3a1, &bucket, &key, b"late").await, Some(401));
        let r = client().put(p.uri()).body("late").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "its presigned URLs too");
        // The egg's other runner is unaffected.
        assert_eq!(get(&s3a2, &bucket, &key).await, Ok(data));
        assert!(rift.metric(|m| &m.fleet_lookups) >= 4);
    })
    .await
    .expect("bounded in time");
}

/// A Docker Engine API stand-in on a unix socket: `/_ping` and `/version`.
fn spawn_engine(socket: &Path) -> tokio::task::JoinHandle<()> {
    use hyper::{Request, Response};
    async fn answer(
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
        let body = if req.uri().path().ends_with("/version") {
            r#"{"Version":"99.2.0-fleet","ApiVersion":"1.47","MinAPIVersion":"1.24","Os":"linux","Arch":"amd64"}"#
        } else {
            "OK"
        };
        let mut r = Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
        r.headers_mut()
            .insert("api-version", "1.47".parse().unwrap());
        r.headers_mut().insert("ostype", "linux".parse().unwrap());
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok(r)
    }
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let svc = hyper::service::service_fn(answer);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    })
}

/// `docker version` through Rift with `token` in the Docker config's `HttpHeaders`.
async fn docker_version(host: &str, dir: &Path, token: &str) -> std::process::Output {
    let bin = common::require_program("docker", "the Docker CLI (Debian package docker.io)");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"HttpHeaders":{{"X-Rift-Token":"{token}"}}}}"#),
    )
    .unwrap();
    let run = tokio::process::Command::new(bin)
        .args(["version", "--format", "{{.Server.Version}}"])
        .env("DOCKER_HOST", host)
        .env("DOCKER_CONFIG", dir)
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("docker within 30 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_runner_tokens_open_the_docker_proxy_and_the_plain_cache() {
    tokio::time::timeout(LIMIT, async {
        let mg = MotherGoose::start().await;
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("engine.sock");
        let _engine = spawn_engine(&socket);
        let fleet = fleet_config(&mg, ALLOW_TTL);
        let rift = common::start(move |c| {
            c.fleet = Some(fleet);
            c.docker_listen = Some("127.0.0.1:0".parse().unwrap());
            c.docker_upstream = Some(rift::config::DockerUpstream::Unix(socket));
        })
        .await;
        let host = format!("tcp://{}", rift.running().docker_addr.unwrap());
        let a1 = mg.runner("alpha").await;
        let token = a1
            .docker_token
            .clone()
            .expect("the Rift has the Docker proxy on");
        assert_eq!(token, format!("{}.{}", a1.access_key, a1.secret_key));

        let out = docker_version(&host, &tmp.path().join("live"), &token).await;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "99.2.0-fleet");
        let wrong = format!("{}.{}x", a1.access_key, a1.secret_key);
        let out = docker_version(&host, &tmp.path().join("wrong"), &wrong).await;
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("missing or invalid runner token"));

        // The same token on /cache, within the egg's prefix only.
        let cache = |key: &str| format!("{}/cache/{key}", rift.url());
        let put = |key: String, t: String| async move {
            client()
                .put(cache(&key))
                .bearer_auth(t)
                .body("data")
                .send()
                .await
                .unwrap()
                .status()
        };
        assert_eq!(
            put("alpha/job/1".into(), token.clone()).await,
            StatusCode::OK
        );
        assert_eq!(
            put("beta/job/1".into(), token.clone()).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            put("alpha/job/1".into(), wrong.clone()).await,
            StatusCode::UNAUTHORIZED
        );

        // Terminated: both refuse its token within the TTL.
        mg.terminate(&a1.access_key).await;
        let refused = time_until(ALLOW_TTL * 5, "a dead runner's token still works", || {
            let t = token.clone();
            let put = &put;
            async move { put("alpha/job/2".into(), t).await == StatusCode::UNAUTHORIZED }
        })
        .await;
        eprintln!("revocation of a bearer token: {refused:?} after termination");
        let out = docker_version(&host, &tmp.path().join("dead"), &token).await;
        assert!(!out.status.success(), "{out:?}");
    })
    .await
    .expect("bounded in time");
}

/// Starts the `rift` binary trusting only the fleet, the token in its environment; returns
/// the process, its address and the lines it logs.
fn rift_binary(data: &Path, mg: &MotherGoose) -> (Proc, String, std::sync::mpsc::Receiver<String>) {
    let child = Command::new(env!("CARGO_BIN_EXE_rift"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args([
            "--mothergoose-url",
            &mg.base,
            "--fleet-allow-ttl",
            "30s",
            "--fsync",
            "false",
        ])
        .env("RIFT_MOTHERGOOSE_TOKEN", mg.rift_token.expose())
        .env("RIFT_LOG", "info")
        .env_remove("RIFT_AUTH_FILE")
        .env_remove("RIFT_CONFIG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    let stderr = proc.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("rift starts");
        if let Some(addr) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
        {
            return (proc, format!("http://{addr}"), rx);
        }
        assert!(start.elapsed() < Duration::from_secs(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_mothergoose_cached_runners_are_served_and_new_ones_refused() {
    tokio::time::timeout(LIMIT, async {
        let mut mg = MotherGoose::start().await;
        let data: PathBuf = mg.dir.path().join("rift-data");
        let (proc, url, logs) = rift_binary(&data, &mg);
        let a1 = mg.runner("alpha").await;
        let a2 = mg.runner("alpha").await;
        let (s3a1, s3a2) = (runner_s3(&url, &a1), runner_s3(&url, &a2));
        let key = key_of(&a1, "project/7/cache.zip");
        assert_eq!(put(&s3a1, &a1.bucket, &key, b"cached").await, Some(200));

        mg.kill().await;
        // a1's answer is cached (30 s): served. a2 was never seen: 503, retry later.
        assert_eq!(get(&s3a1, &a1.bucket, &key).await, Ok(b"cached".to_vec()));
        assert_eq!(get(&s3a2, &a2.bucket, &key).await, Err(Some(503)));
        let r = client()
            .get(format!("{url}/cache/{key}"))
            .bearer_auth(a2.docker_token.clone().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(get(&s3a1, &a1.bucket, &key).await, Ok(b"cached".to_vec()));

        drop(proc);
        let mut lines = Vec::new();
        while let Ok(line) = logs.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        let text = lines.join("\n");
        assert!(
            text.contains("cannot verify runners with MotherGoose"),
            "the outage is logged:\n{text}"
        );
        for secret in [mg.rift_token.expose(), &a1.secret_key, &a2.secret_key] {
            assert!(!text.contains(secret), "a secret in the log:\n{text}");
        }
    })
    .await
    .expect("bounded in time");
}
