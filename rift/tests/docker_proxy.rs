//! The Docker API proxy with the real Docker CLI (`DOCKER_HOST=tcp://127.0.0.1:PORT`) against a
//! test upstream that answers the Engine API on a unix socket.

mod common;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{require_program, start, TOKEN};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(90);
const ENGINE_VERSION: &str = "99.1.0-rift-test";

/// Headers seen by the fake engine, to check what Rift forwards.
type Seen = Arc<Mutex<Vec<(String, hyper::HeaderMap)>>>;

fn json(body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut()
        .insert("api-version", "1.47".parse().unwrap());
    r
}

/// Strips a `/v1.xx` prefix.
fn unversioned(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(i) = rest.find('/') {
            if rest[..i].chars().all(|c| c.is_ascii_digit() || c == '.') {
                return &rest[i..];
            }
        }
    }
    path
}

async fn engine(req: Request<Incoming>, seen: Seen) -> Result<Response<Full<Bytes>>, Infallible> {
    seen.lock()
        .unwrap()
        .push((req.uri().path().to_string(), req.headers().clone()));
    let path = unversioned(req.uri().path()).to_string();
    let resp = match path.as_str() {
        "/_ping" => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"OK")));
            for (k, v) in [
                ("api-version", "1.47"),
                ("docker-experimental", "false"),
                ("ostype", "linux"),
            ] {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            r
        }
        "/version" => json(format!(
            r#"{{"Platform":{{"Name":"Rift test engine"}},"Version":"{ENGINE_VERSION}","ApiVersion":"1.47","MinAPIVersion":"1.24","GitCommit":"0000000","GoVersion":"go1.22.0","Os":"linux","Arch":"amd64","KernelVersion":"6.1.0","BuildTime":"2024-01-01T00:00:00.000000000+00:00"}}"#
        )),
        "/info" => json(format!(
            r#"{{"ID":"rift-test","Containers":3,"ContainersRunning":1,"ContainersPaused":0,"ContainersStopped":2,"Images":5,"Driver":"overlay2","Name":"rift-test-engine","ServerVersion":"{ENGINE_VERSION}","OperatingSystem":"Test OS","OSType":"linux","Architecture":"x86_64","NCPU":2,"MemTotal":25769803776,"DockerRootDir":"/var/lib/docker","Plugins":{{"Volume":["local"],"Network":["bridge"]}},"Warnings":null}}"#
        )),
        p if p.ends_with("/attach") => {
            // Upgrade to a raw stream that echoes in upper case.
            let mut req = req;
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    loop {
                        match io.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let upper: Vec<u8> = buf[..n].to_ascii_uppercase();
                                if io.write_all(&upper).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
            });
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("connection", "Upgrade".parse().unwrap());
            r.headers_mut().insert("upgrade", "tcp".parse().unwrap());
            r.headers_mut().insert(
                "content-type",
                "application/vnd.docker.raw-stream".parse().unwrap(),
            );
            r
        }
        _ => {
            let mut r = json(r#"{"message":"page not found"}"#.to_string());
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    Ok(resp)
}

/// Serves the fake engine on a unix socket until the task is dropped.
fn spawn_engine(socket: &Path, seen: Seen) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::UnixListener::bind(socket).expect("bind unix socket");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| engine(req, Arc::clone(&seen)));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    })
}

async fn docker(args: &[&str], host: &str, config_dir: &Path) -> std::process::Output {
    docker_with(&[], args, host, config_dir).await
}

/// The Docker CLI with global options `global` (e.g. `--tlsverify`) before the command.
async fn docker_with(
    global: &[&str],
    args: &[&str],
    host: &str,
    config_dir: &Path,
) -> std::process::Output {
    let bin = require_program(
        "docker",
        "the Docker CLI (Debian package docker.io, or docker-ce-cli)",
    );
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(global)
        .args(args)
        .env("DOCKER_HOST", host)
        .env("DOCKER_CONFIG", config_dir)
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("docker finished within 30 s")
        .expect("docker ran")
}

fn config_dir(parent: &Path, name: &str, token: Option<&str>) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let cfg = match token {
        Some(t) => format!(r#"{{"HttpHeaders":{{"X-Rift-Token":"{t}"}}}}"#),
        None => "{}".to_string(),
    };
    std::fs::write(d.join("config.json"), cfg).unwrap();
    d
}

#[tokio::test]
async fn docker_cli_through_rift() {
    tokio::time::timeout(LIMIT, async {
        require_program(
            "docker",
            "the Docker CLI (Debian package docker.io, or docker-ce-cli)",
        );
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("engine.sock");
        let seen: Seen = Arc::default();
        let _engine = spawn_engine(&socket, Arc::clone(&seen));
        let sock = socket.clone();
        let s = start(move |c| {
            c.docker_listen = Some("127.0.0.1:0".parse().unwrap());
            c.docker_upstream = Some(rift::config::DockerUpstream::Unix(sock));
        })
        .await;
        let host = format!("tcp://{}", s.running().docker_addr.unwrap());
        let with_token = config_dir(tmp.path(), "good", Some(TOKEN));
        let without = config_dir(tmp.path(), "none", None);
        let wrong = config_dir(tmp.path(), "wrong", Some("glrt-wrong"));

        let out = docker(
            &["version", "--format", "{{.Server.Version}}"],
            &host,
            &with_token,
        )
        .await;
        assert!(out.status.success(), "docker version failed: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ENGINE_VERSION);

        let out = docker(
            &["info", "--format", "{{.Name}} {{.ServerVersion}} {{.NCPU}}"],
            &host,
            &with_token,
        )
        .await;
        assert!(out.status.success(), "docker info failed: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("rift-test-engine {ENGINE_VERSION} 2")
        );

        // The token never reaches the upstream daemon; versioned paths pass through unchanged.
        {
            let seen = seen.lock().unwrap();
            assert!(!seen.is_empty());
            assert!(seen.iter().all(|(_, h)| !h.contains_key("x-rift-token")));
            assert!(
                seen.iter()
                    .any(|(p, _)| p.starts_with("/v1.") && p.ends_with("/version")),
                "{:?}",
                seen.iter().map(|s| &s.0).collect::<Vec<_>>()
            );
        }
        let forwarded = seen.lock().unwrap().len();

        for dir in [&without, &wrong] {
            let out = docker(&["version", "--format", "{{.Server.Version}}"], &host, dir).await;
            assert!(!out.status.success(), "refused request succeeded: {out:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("missing or invalid runner token"), "{err}");
            let out = docker(&["info"], &host, dir).await;
            assert!(!out.status.success());
        }
        assert_eq!(
            seen.lock().unwrap().len(),
            forwarded,
            "refused requests reached the upstream"
        );
        assert!(s.metric(|m| &m.auth_failures) >= 4);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn docker_cli_through_rift_over_tls() {
    tokio::time::timeout(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("engine.sock");
        let seen: Seen = Arc::default();
        let _engine = spawn_engine(&socket, Arc::clone(&seen));
        let pki = common::pki(tmp.path());
        let ca = tmp.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let (sock, files) = (socket.clone(), pki.files.clone());
        let s = start(move |c| {
            c.docker_listen = Some("127.0.0.1:0".parse().unwrap());
            c.docker_upstream = Some(rift::config::DockerUpstream::Unix(sock));
            c.tls = Some(files);
        })
        .await;
        let host = format!("tcp://{}", s.running().docker_addr.unwrap());
        let with_token = config_dir(tmp.path(), "good", Some(TOKEN));
        let ca_flag = format!("--tlscacert={}", ca.display());
        // `--tlsverify` with only the CA: the server is verified, no client certificate.
        let out = docker_with(
            &["--tlsverify", &ca_flag],
            &["version", "--format", "{{.Server.Version}}"],
            &host,
            &with_token,
        )
        .await;
        assert!(out.status.success(), "docker over TLS failed: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ENGINE_VERSION);
        // Plain TCP to the TLS listener does not get through.
        let before = seen.lock().unwrap().len();
        let out = docker(
            &["version", "--format", "{{.Server.Version}}"],
            &host,
            &with_token,
        )
        .await;
        assert!(!out.status.success(), "plain TCP was served: {out:?}");
        assert_eq!(seen.lock().unwrap().len(), before);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn upgraded_attach_streams_both_ways() {
    tokio::time::timeout(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("engine.sock");
        let _engine = spawn_engine(&socket, Arc::default());
        let sock = socket.clone();
        let s = start(move |c| {
            c.docker_listen = Some("127.0.0.1:0".parse().unwrap());
            c.docker_upstream = Some(rift::config::DockerUpstream::Unix(sock));
        })
        .await;
        let addr = s.running().docker_addr.unwrap();
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "POST /v1.47/containers/abc/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: docker\r\nX-Rift-Token: {TOKEN}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        );
        c.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            c.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        for msg in ["hello", "from the runner"] {
            c.write_all(msg.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; msg.len()];
            c.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, msg.to_ascii_uppercase().as_bytes());
        }
        // Without a token the upgrade is refused before reaching the daemon.
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = "POST /v1.47/containers/abc/attach HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n";
        c.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 12];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 401");
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn unreachable_upstream_is_a_clean_502() {
    tokio::time::timeout(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("nothing-here.sock");
        let s = start(move |c| {
            c.docker_listen = Some("127.0.0.1:0".parse().unwrap());
            c.docker_upstream = Some(rift::config::DockerUpstream::Unix(sock));
        })
        .await;
        let r = common::client()
            .get(format!("http://{}/_ping", s.running().docker_addr.unwrap()))
            .header("x-rift-token", TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::BAD_GATEWAY);
        assert!(r.text().await.unwrap().contains("\"message\""));
        assert_eq!(s.metric(|m| &m.docker_upstream_errors), 1);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn tcp_upstream_and_streamed_bodies() {
    tokio::time::timeout(LIMIT, async {
        // The same fake engine, this time on TCP.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let seen2 = Arc::clone(&seen);
        let _engine = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = Arc::clone(&seen2);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| engine(req, Arc::clone(&seen)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        let s = start(move |c| {
            c.docker_listen = Some("127.0.0.1:0".parse().unwrap());
            c.docker_upstream = Some(rift::config::DockerUpstream::Tcp(upstream.to_string()));
        })
        .await;
        let base = format!("http://{}", s.running().docker_addr.unwrap());
        let r = common::client()
            .get(format!("{base}/v1.47/info"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        assert!(r.text().await.unwrap().contains("rift-test-engine"));
        // A streamed (chunked) request body is forwarded; the engine answers 404 for this path.
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            (0..4).map(|_| Ok(vec![b'x'; 10_000])).collect();
        let r = common::client()
            .post(format!("{base}/v1.47/build?t=x"))
            .header("x-rift-token", TOKEN)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen
            .iter()
            .all(|(_, h)| !h.contains_key("authorization") && !h.contains_key("x-rift-token")));
    })
    .await
    .expect("bounded in time");
}
