//! Property 35: runner mode reaches MotherGoose over TLS 1.3 or higher only, trusting the
//! CA it is given.

use chrono::Utc;
use gosling_api::{AgentState, Heartbeat};
use gosling_runner::client::{ApiError, HeartbeatSink, MotherGoose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Server {
    url: String,
    ca_pem: String,
}

/// An HTTPS server on loopback speaking only `version`, answering every request with a
/// heartbeat reply.
async fn server(version: &'static rustls::SupportedProtocolVersion) -> Server {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = 0;
                // Read the head and the body (heartbeats are small).
                while let Ok(n) = tls.read(&mut buf[got..]).await {
                    got += n;
                    let text = String::from_utf8_lossy(&buf[..got]);
                    if n == 0 || text.contains("\r\n\r\n{") && text.ends_with('}') {
                        break;
                    }
                }
                let body = r#"{"runner_state":"idle","instruction":null}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server {
        url,
        ca_pem: ck.cert.pem(),
    }
}

fn hb() -> Heartbeat {
    Heartbeat {
        state: AgentState::Idle,
        jobs_running: 0,
        job_count: 0,
        cpu_usage: 0.0,
        memory_usage: 0.0,
        disk_usage: 0.0,
        agent_version: "17.5.0".into(),
        failure_count: 0,
        last_job_at: None,
        config_hash: None,
        measured_at: Utc::now(),
    }
}

// Property 35: a MotherGoose that offers TLS 1.3 is reached (with the CA given); one
// that offers only TLS 1.2 is refused, and so is a certificate no trusted CA signed.
#[tokio::test]
async fn property_35_tls_1_3_only_with_the_given_ca() {
    let tls13 = server(&rustls::version::TLS13).await;
    let mg = MotherGoose::new(&tls13.url, "r1", "cred", Some(&tls13.ca_pem)).unwrap();
    let reply = mg.heartbeat(&hb()).await.expect("TLS 1.3 works");
    assert_eq!(reply.runner_state, "idle");

    let untrusted = MotherGoose::new(&tls13.url, "r1", "cred", None).unwrap();
    let e = untrusted.heartbeat(&hb()).await.unwrap_err();
    assert!(matches!(e, ApiError::Unreachable { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    let tls12 = server(&rustls::version::TLS12).await;
    let old = MotherGoose::new(&tls12.url, "r1", "cred", Some(&tls12.ca_pem)).unwrap();
    let e = old.heartbeat(&hb()).await.unwrap_err();
    assert!(matches!(e, ApiError::Unreachable { .. }), "{e}");
    assert!(
        !e.to_string().contains("cred"),
        "no credential in errors: {e}"
    );
}
