//! HTTPS on Rift's listeners with a certificate made for the test: real rustls clients
//! (reqwest) and the AWS CLI over TLS, and what is refused (Property 35).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use rift::tls::{CertStore, TlsError, TlsFiles};

const LIMIT: Duration = Duration::from_secs(120);

/// A Rift serving HTTPS with a fresh certificate (kept in `_certs`).
struct TlsServer {
    s: TestServer,
    pki: Pki,
    base: String,
    _certs: tempfile::TempDir,
}

async fn tls_server(tweak: impl FnOnce(&mut rift::Config)) -> TlsServer {
    let certs = tempfile::tempdir().unwrap();
    let pki = pki(certs.path());
    let files = pki.files.clone();
    let s = start(move |c| {
        c.tls = Some(files);
        tweak(c);
    })
    .await;
    let base = format!("https://{}", s.running().addr);
    TlsServer {
        s,
        pki,
        base,
        _certs: certs,
    }
}

fn https_client(ca_pem: &str, max: Option<reqwest::tls::Version>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
        .no_proxy();
    if let Some(v) = max {
        b = b.max_tls_version(v);
    }
    b.build().expect("client")
}

#[tokio::test]
async fn cache_over_https_and_only_tls_13() {
    tokio::time::timeout(LIMIT, async {
        let TlsServer {
            mut s, pki, base, ..
        } = tls_server(|_| {}).await;
        let client = https_client(&pki.ca_pem, None);

        let health = client.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(health.version(), reqwest::Version::HTTP_11);

        let body = bytes(300_000, 9);
        let put = client
            .put(format!("{base}/cache/p/7/deps.tar"))
            .bearer_auth(TOKEN)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "{}", put.status());
        let got = client
            .get(format!("{base}/cache/p/7/deps.tar"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.unwrap().as_ref(), body.as_slice());

        // Property 35: Communication Encryption — a client that offers at most TLS 1.2 is
        // refused, and so is plain HTTP on the TLS port; both count as failed handshakes.
        let before = s.metric(|m| &m.tls_handshake_failures);
        let old = https_client(&pki.ca_pem, Some(reqwest::tls::Version::TLS_1_2));
        let e = old.get(format!("{base}/health")).send().await.unwrap_err();
        let chain = error_chain(&e);
        assert!(
            chain.contains("ProtocolVersion"),
            "refused for another reason: {chain}"
        );
        let plain = common::client()
            .get(format!("http://{}/health", s.running().addr))
            .send()
            .await;
        assert!(
            plain.is_err() || !plain.unwrap().status().is_success(),
            "plain HTTP must not be served on the TLS port"
        );
        // A client that does not trust the certificate is refused by the client itself.
        let untrusting = reqwest::Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .build()
            .unwrap();
        assert!(untrusting
            .get(format!("{base}/health"))
            .send()
            .await
            .is_err());
        let counted = async {
            while s.metric(|m| &m.tls_handshake_failures) < before + 3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), counted)
            .await
            .expect("all three refused handshakes are counted");

        let metrics = client
            .get(format!("{base}/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("rift_tls_handshake_failures_total"),
            "{metrics}"
        );
        s.stop().await;
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn aws_cli_over_https() {
    tokio::time::timeout(LIMIT, async {
        require_program("aws", "pip install awscli");
        let TlsServer { mut s, pki, .. } = tls_server(|_| {}).await;
        let home = tempfile::tempdir().unwrap();
        let ca = home.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        std::fs::write(
            home.path().join("config"),
            "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n",
        )
        .unwrap();
        std::fs::write(home.path().join("credentials"), "").unwrap();
        let src = home.path().join("cache.zip");
        let data = bytes(100_000, 3);
        std::fs::write(&src, &data).unwrap();
        let dst = home.path().join("back.zip");
        let aws = Aws {
            endpoint: format!("https://{}", s.running().addr),
            home: home.path(),
            ca_bundle: Some(&ca),
        };
        let (src_s, dst_s) = (src.to_str().unwrap(), dst.to_str().unwrap());
        aws.ok(&["s3", "cp", src_s, "s3://runner-cache/p/cache.zip"])
            .await;
        aws.ok(&["s3", "cp", "s3://runner-cache/p/cache.zip", dst_s])
            .await;
        // Without the CA bundle the CLI refuses the certificate.
        let untrusting = Aws {
            ca_bundle: None,
            ..aws
        };
        let out = untrusting
            .run(&["s3", "ls", "s3://runner-cache/"], SECRET_KEY)
            .await;
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("CERTIFICATE_VERIFY_FAILED"), "{stderr}");
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        s.stop().await;
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn silent_handshakes_time_out_and_never_hold_up_shutdown() {
    tokio::time::timeout(LIMIT, async {
        let TlsServer { mut s, .. } =
            tls_server(|c| c.header_read_timeout = Duration::from_millis(500)).await;
        // A client that connects and never says hello is dropped at the head timeout.
        let mut idle = tokio::net::TcpStream::connect(s.running().addr)
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut idle, &mut buf),
        )
        .await
        .expect("closed by the server");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert_eq!(s.metric(|m| &m.tls_handshake_failures), 1);
        s.stop().await;

        // A connection still shaking hands when shutdown starts does not wait for the
        // grace period (10 s in these tests).
        let TlsServer { mut s, .. } = tls_server(|_| {}).await;
        let _pending = tokio::net::TcpStream::connect(s.running().addr)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        s.stop().await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "shutdown took {:?}",
            started.elapsed()
        );
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    tokio::time::timeout(LIMIT, async {
        let TlsServer {
            mut s,
            pki: old,
            base,
            _certs,
        } = tls_server(|_| {}).await;
        assert_eq!(health(&old.ca_pem, &base).await.unwrap(), 200);

        // Renewal: a new certificate and key written over the old files (as certbot or a
        // secret mount does); the poller (100 ms in these tests) picks them up.
        let renewed = tempfile::tempdir().unwrap();
        let new = pki(renewed.path());
        std::fs::copy(&new.files.cert, &old.files.cert).unwrap();
        std::fs::copy(&new.files.key, &old.files.key).unwrap();
        let switched = async {
            loop {
                if let Ok(status) = health(&new.ca_pem, &base).await {
                    break status;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let status = tokio::time::timeout(Duration::from_secs(10), switched)
            .await
            .expect("the renewed certificate is served");
        assert_eq!(status, 200);
        assert!(
            health(&old.ca_pem, &base).await.is_err(),
            "the old certificate is still served"
        );
        assert!(s.metric(|m| &m.tls_reloads) >= 1);

        // A broken renewal (a key that is not the certificate's) keeps the one in force.
        let other = tempfile::tempdir().unwrap();
        let stray = pki(other.path());
        let errors = s.metric(|m| &m.tls_reload_errors);
        std::fs::copy(&stray.files.key, &old.files.key).unwrap();
        let failed = async {
            while s.metric(|m| &m.tls_reload_errors) == errors {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), failed)
            .await
            .expect("the mismatched pair is refused");
        assert_eq!(health(&new.ca_pem, &base).await.unwrap(), 200);
        s.stop().await;
    })
    .await
    .expect("bounded in time");
}

/// `GET /health` on a new connection from a client that trusts only `ca_pem`.
async fn health(ca_pem: &str, base: &str) -> reqwest::Result<reqwest::StatusCode> {
    https_client(ca_pem, None)
        .get(format!("{base}/health"))
        .send()
        .await
        .map(|r| r.status())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        out.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    out
}

#[test]
fn unusable_certificates_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = pki(&subdir(dir.path(), "a"));
    let b = pki(&subdir(dir.path(), "b"));
    let missing = TlsFiles {
        cert: dir.path().join("nope.pem"),
        key: a.files.key.clone(),
    };
    let e = CertStore::load(&missing).unwrap_err();
    assert!(matches!(e, TlsError::Read { .. }), "{e}");
    assert!(e.to_string().contains("nope.pem"), "{e}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let e = CertStore::load(&TlsFiles {
        cert: empty.clone(),
        key: a.files.key.clone(),
    })
    .unwrap_err();
    assert!(e.to_string().contains("no CERTIFICATE section"), "{e}");
    let e = CertStore::load(&TlsFiles {
        cert: a.files.cert.clone(),
        key: empty,
    })
    .unwrap_err();
    assert!(e.to_string().contains("no usable private key"), "{e}");

    // The key of another certificate.
    let e = CertStore::load(&TlsFiles {
        cert: a.files.cert.clone(),
        key: b.files.key.clone(),
    })
    .unwrap_err();
    assert!(matches!(e, TlsError::Rustls(_)), "{e}");
    assert!(CertStore::load(&a.files).is_ok());
}

fn subdir(dir: &Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}
