//! The fleet credential source against a scripted MotherGoose on a real socket: answers
//! cached for their (capped) TTL, one request for concurrent lookups of one runner, lookups
//! of unknown ids rate limited, a MotherGoose that fails or refuses Rift's token, and its
//! certificate checked against the configured CA.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gosling_api::{RiftVerifyReply, RiftVerifyRequest};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rift::fleet::{Fleet, FleetConfig, FleetError, Secret, Verdict};
use rift::metrics::Metrics;

const TOKEN: &str = "gsk_test-rift-token";
const LIMIT: Duration = Duration::from_secs(60);

/// What the scripted MotherGoose knows and how it behaves.
#[derive(Default)]
struct Script {
    /// Live runners: id → (egg, secret).
    live: Mutex<HashMap<String, (String, String)>>,
    /// Requests received.
    requests: AtomicU64,
    /// Delay before answering.
    delay: Mutex<Duration>,
    /// Answer this status instead (a failing MotherGoose).
    fail_with: Mutex<Option<StatusCode>>,
    /// TTL given with every answer.
    ttl_s: AtomicU64,
}

impl Script {
    fn live(&self, id: &str, egg: &str, secret: &str) {
        self.live
            .lock()
            .unwrap()
            .insert(id.into(), (egg.into(), secret.into()));
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn answer(
    req: Request<Incoming>,
    s: Arc<Script>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let delay = *s.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok(r)
    };
    if let Some(status) = *s.fail_with.lock().unwrap() {
        return reply(status, "{}".into());
    }
    let authorized = req.uri().path() == "/rift/verify"
        && req
            .headers()
            .get("authorization")
            .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
    if !authorized {
        return reply(
            StatusCode::UNAUTHORIZED,
            "{\"error\":\"not Rift's token\"}".into(),
        );
    }
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let asked: RiftVerifyRequest = serde_json::from_slice(&body).unwrap();
    let ttl_s = s.ttl_s.load(Ordering::SeqCst);
    let r = match s.live.lock().unwrap().get(&asked.runner_id) {
        Some((egg, secret)) => RiftVerifyReply {
            allowed: true,
            egg_name: Some(egg.clone()),
            secret_key: Some(secret.clone()),
            ttl_s,
        },
        None => RiftVerifyReply {
            allowed: false,
            egg_name: None,
            secret_key: None,
            ttl_s,
        },
    };
    reply(StatusCode::OK, serde_json::to_string(&r).unwrap())
}

/// Serves the script on 127.0.0.1 (over TLS with `tls`) until the test ends.
async fn serve(script: Arc<Script>, tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let s = Arc::clone(&script);
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| answer(req, Arc::clone(&s)));
                let http = hyper::server::conn::http1::Builder::new();
                let _ = match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(t) => http.serve_connection(TokioIo::new(t), svc).await,
                        Err(_) => return,
                    },
                    None => http.serve_connection(TokioIo::new(stream), svc).await,
                };
            });
        }
    });
    addr
}

fn client_of(url: String, tweak: impl FnOnce(&mut FleetConfig)) -> (Fleet, Arc<Metrics>) {
    let mut cfg = FleetConfig::new(url, Secret::new(TOKEN));
    cfg.timeout = Duration::from_secs(5);
    tweak(&mut cfg);
    let metrics = Arc::new(Metrics::default());
    (Fleet::new(&cfg, Arc::clone(&metrics)).unwrap(), metrics)
}

async fn scripted(tweak: impl FnOnce(&mut FleetConfig)) -> (Arc<Script>, Fleet, Arc<Metrics>) {
    let script = Arc::new(Script::default());
    script.ttl_s.store(15, Ordering::SeqCst);
    let addr = serve(Arc::clone(&script), None).await;
    let (f, m) = client_of(format!("http://{addr}"), tweak);
    (script, f, m)
}

fn allowed(v: &Verdict) -> Option<(&str, &str)> {
    match v {
        Verdict::Allowed(g) => Some((g.egg(), g.secret())),
        Verdict::Denied => None,
    }
}

#[tokio::test]
async fn concurrent_lookups_of_one_runner_share_one_request() {
    tokio::time::timeout(LIMIT, async {
        let (script, fleet, _) = scripted(|_| {}).await;
        script.live("r-1", "app", "s3cret");
        *script.delay.lock().unwrap() = Duration::from_millis(300);
        let fleet = Arc::new(fleet);
        let lookups: Vec<_> = (0..50)
            .map(|_| {
                let f = Arc::clone(&fleet);
                tokio::spawn(async move { f.lookup("r-1").await })
            })
            .collect();
        for l in lookups {
            let v = l.await.unwrap().unwrap();
            assert_eq!(allowed(&v), Some(("app", "s3cret")));
        }
        assert_eq!(script.requests(), 1, "one request for fifty lookups");
        // Bearer tokens: `<runner id>.<secret>`, the secret compared exactly.
        let g = fleet.check_token("r-1.s3cret").await.unwrap().unwrap();
        assert_eq!((g.runner_id(), g.egg()), ("r-1", "app"));
        for wrong in [
            "r-1.s3cre",
            "r-1.s3cret2",
            "r-1",
            "r-2.s3cret",
            ".s3cret",
            "r-1.",
        ] {
            assert!(fleet.check_token(wrong).await.unwrap().is_none(), "{wrong}");
        }
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn answers_are_cached_for_their_ttl_capped() {
    tokio::time::timeout(LIMIT, async {
        let (script, fleet, metrics) = scripted(|c| {
            c.allow_ttl = Duration::from_secs(1);
            c.deny_ttl = Duration::from_secs(1);
        })
        .await;
        script.live("r-1", "app", "s3cret");
        for _ in 0..5 {
            assert!(allowed(&fleet.lookup("r-1").await.unwrap()).is_some());
            assert!(allowed(&fleet.lookup("r-gone").await.unwrap()).is_none());
        }
        assert_eq!(script.requests(), 2, "one per id while cached");
        assert_eq!(metrics.fleet_cache_hits.load(Ordering::SeqCst), 8);
        // The runner is terminated: refused once the capped TTL (not MotherGoose's 15 s)
        // has passed.
        script.live.lock().unwrap().clear();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(allowed(&fleet.lookup("r-1").await.unwrap()).is_none());
        // A runner created meanwhile is found once the "no" has expired.
        script.live("r-gone", "app", "late");
        assert_eq!(
            allowed(&fleet.lookup("r-gone").await.unwrap()),
            Some(("app", "late"))
        );
        assert_eq!(script.requests(), 4);
        // A TTL of 0 from MotherGoose is not cached at all.
        script.ttl_s.store(0, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        fleet.lookup("r-gone").await.unwrap();
        fleet.lookup("r-gone").await.unwrap();
        assert_eq!(script.requests(), 6);
        // Ids no runner can have are refused without asking.
        for id in ["", "../etc", "a b", &"r".repeat(200)] {
            assert!(allowed(&fleet.lookup(id).await.unwrap()).is_none());
        }
        assert_eq!(script.requests(), 6);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn lookups_of_unknown_ids_are_rate_limited() {
    tokio::time::timeout(LIMIT, async {
        let (script, fleet, metrics) = scripted(|c| {
            c.lookup_rate = 5;
            c.allow_ttl = Duration::from_millis(200);
        })
        .await;
        script.live("r-known", "app", "s3cret");
        assert!(allowed(&fleet.lookup("r-known").await.unwrap()).is_some());
        let before = script.requests();
        let mut throttled = 0;
        for i in 0..200 {
            match fleet.lookup(&format!("r-made-up-{i}")).await {
                Ok(v) => assert!(allowed(&v).is_none()),
                Err(FleetError::Throttled) => throttled += 1,
                Err(e) => panic!("{e}"),
            }
        }
        let sent = script.requests() - before;
        // A burst of twice the rate (one token was spent on r-known), plus what refilled
        // while the loop ran.
        assert!(sent <= 12, "{sent} lookups reached MotherGoose");
        assert_eq!(throttled, 200 - sent);
        assert_eq!(metrics.fleet_throttled.load(Ordering::SeqCst), throttled);
        // A runner seen live before is refreshed even with the bucket empty.
        tokio::time::sleep(Duration::from_millis(250)).await;
        for i in 0..20 {
            let _ = fleet.lookup(&format!("r-more-{i}")).await;
        }
        let n = script.requests();
        assert!(allowed(&fleet.lookup("r-known").await.unwrap()).is_some());
        assert_eq!(script.requests(), n + 1);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn an_unreachable_mothergoose_keeps_cached_answers_and_refuses_the_rest() {
    tokio::time::timeout(LIMIT, async {
        let (script, fleet, metrics) = scripted(|c| c.allow_ttl = Duration::from_secs(30)).await;
        script.live("r-1", "app", "s3cret");
        script.live("r-2", "app", "other");
        assert!(allowed(&fleet.lookup("r-1").await.unwrap()).is_some());
        *script.fail_with.lock().unwrap() = Some(StatusCode::BAD_GATEWAY);
        assert!(
            allowed(&fleet.lookup("r-1").await.unwrap()).is_some(),
            "cached"
        );
        assert!(matches!(
            fleet.lookup("r-2").await,
            Err(FleetError::Unavailable(_))
        ));
        // Backed off: the next lookups within a second are refused without a request.
        let n = script.requests();
        for _ in 0..10 {
            assert!(fleet.lookup("r-2").await.is_err());
        }
        assert_eq!(script.requests(), n);
        assert!(metrics.fleet_errors.load(Ordering::SeqCst) >= 11);
        // MotherGoose answers again: found after the back-off.
        *script.fail_with.lock().unwrap() = None;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            allowed(&fleet.lookup("r-2").await.unwrap()),
            Some(("app", "other"))
        );
        // Nobody listening at all is the same.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let (nobody, _) = client_of(url, |_| {});
        let e = nobody.lookup("r-1").await.unwrap_err();
        assert!(matches!(e, FleetError::Unavailable(_)), "{e:?}");
        assert!(!e.to_string().contains(TOKEN));
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn a_refused_token_is_an_error_not_a_denial() {
    tokio::time::timeout(LIMIT, async {
        let script = Arc::new(Script::default());
        let addr = serve(Arc::clone(&script), None).await;
        script.live("r-1", "app", "s3cret");
        let mut cfg = FleetConfig::new(format!("http://{addr}/"), Secret::new("gsk_wrong"));
        cfg.timeout = Duration::from_secs(5);
        let f = Fleet::new(&cfg, Arc::default()).unwrap();
        let e = f.lookup("r-1").await.unwrap_err();
        assert_eq!(e, FleetError::Rejected(401));
        assert!(e.to_string().contains("mothergoose token rift"), "{e}");
        assert!(!format!("{f:?} {cfg:?}").contains("gsk_wrong"));
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn mothergoose_over_tls_is_checked_against_the_ca() {
    tokio::time::timeout(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let ca = dir.path().join("mothergoose-ca.pem");
        std::fs::write(&ca, ck.cert.pem()).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        let script = Arc::new(Script::default());
        script.ttl_s.store(15, Ordering::SeqCst);
        script.live("r-1", "app", "s3cret");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let addr = serve(Arc::clone(&script), Some(acceptor)).await;
        let url = format!("https://{addr}");
        let (trusting, _) = client_of(url.clone(), |c| c.ca = Some(ca.clone()));
        assert!(allowed(&trusting.lookup("r-1").await.unwrap()).is_some());
        let (untrusting, _) = client_of(url, |_| {});
        assert!(matches!(
            untrusting.lookup("r-1").await,
            Err(FleetError::Unavailable(_))
        ));
        // A CA file without a certificate is refused when the client is made.
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let mut cfg = FleetConfig::new("https://localhost:1", Secret::new(TOKEN));
        cfg.ca = Some(empty);
        assert!(Fleet::new(&cfg, Arc::default()).is_err());
    })
    .await
    .expect("bounded in time");
}
