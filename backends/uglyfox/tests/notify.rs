//! The notification channels against servers the test starts: a webhook (HTTP POST JSON)
//! and a tiny SMTP server; and `/metrics` (admin token), `/health` (open).

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use uglyfox::notify::{Channels, Email, Notification, Notifier, Silent, Webhook};

fn note(recipients: &[&str]) -> Notification {
    Notification {
        subject: "Gosling job `tick` failed after 2 attempt(s)".into(),
        body: "The self-management job `tick` failed.\n".into(),
        recipients: recipients.iter().map(|s| s.to_string()).collect(),
        details: serde_json::json!({ "job": "tick", "attempts": 2 }),
    }
}

/// An HTTP server answering every POST with `status`, keeping the bodies.
async fn hook_server(status: u16) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(
            "/hook",
            post(
                move |State(s): State<Arc<Mutex<Vec<serde_json::Value>>>>,
                      Json(v): Json<serde_json::Value>| async move {
                    s.lock().unwrap().push(v);
                    StatusCode::from_u16(status).unwrap()
                },
            ),
        )
        .with_state(seen.clone());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

#[tokio::test]
async fn the_webhook_posts_the_notification_as_json() {
    let (url, seen) = hook_server(200).await;
    Webhook::new(&url)
        .unwrap()
        .notify(&note(&["ops@example.com"]))
        .await
        .unwrap();
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]["subject"],
        "Gosling job `tick` failed after 2 attempt(s)"
    );
    assert_eq!(got[0]["recipients"][0], "ops@example.com");
    assert_eq!(got[0]["details"]["attempts"], 2);

    let (bad, _) = hook_server(500).await;
    let e = Webhook::new(&bad)
        .unwrap()
        .notify(&note(&[]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("500"), "{e}");
    let e = Webhook::new("http://127.0.0.1:9/hook")
        .unwrap()
        .notify(&note(&[]))
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with("webhook http://127.0.0.1:9/hook"),
        "{e}"
    );
}

/// What the test SMTP server received: envelope recipients and the message text.
#[derive(Default, Debug)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// A minimal SMTP server (RFC 5321 commands lettre sends, no TLS, no AUTH).
async fn smtp_server() -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let keep = inbox.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = l.accept().await else {
                return;
            };
            let inbox = keep.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 localhost test ESMTP\r\n").await.unwrap();
                let mut mail = Mail::default();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_string();
                    let upper = cmd.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250-localhost\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        mail.from = cmd[10..].trim().to_string();
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        mail.to
                            .push(cmd[8..].trim().trim_matches(['<', '>']).to_string());
                        b"250 OK\r\n"
                    } else if upper == "DATA" {
                        w.write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                            .await
                            .unwrap();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                            mail.data.push_str(&line);
                        }
                        inbox.lock().unwrap().push(std::mem::take(&mut mail));
                        b"250 queued\r\n"
                    } else if upper == "QUIT" {
                        w.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, inbox)
}

#[tokio::test]
async fn e_mail_goes_over_smtp_to_every_recipient() {
    let (port, inbox) = smtp_server().await;
    let mailer = Email::new(
        &format!("smtp://127.0.0.1:{port}"),
        "UglyFox <uglyfox@example.com>",
    )
    .unwrap();
    mailer
        .notify(&note(&["ops@example.com", "oncall@example.com"]))
        .await
        .unwrap();
    let mails = inbox.lock().unwrap();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["ops@example.com", "oncall@example.com"]);
    assert!(
        mails[0].from.contains("uglyfox@example.com"),
        "{:?}",
        mails[0]
    );
    assert!(
        mails[0]
            .data
            .contains("Subject: Gosling job `tick` failed after 2 attempt(s)"),
        "{}",
        mails[0].data
    );
    assert!(
        mails[0]
            .data
            .contains("The self-management job `tick` failed."),
        "{}",
        mails[0].data
    );
}

#[tokio::test]
async fn channels_route_mail_to_smtp_and_everything_to_the_webhook() {
    let (port, inbox) = smtp_server().await;
    let (url, seen) = hook_server(200).await;
    let both = Channels {
        email: Some(Arc::new(
            Email::new(&format!("smtp://127.0.0.1:{port}"), "uglyfox@example.com").unwrap(),
        )),
        webhook: Some(Arc::new(Webhook::new(&url).unwrap())),
    };
    both.notify(&note(&["ops@example.com"])).await.unwrap();
    assert_eq!(inbox.lock().unwrap().len(), 1);
    assert_eq!(seen.lock().unwrap().len(), 1);
    // No mailer: an e-mail recipient cannot be reached, and that is an error, not silence.
    let none = Channels::default();
    assert!(none.notify(&note(&["ops@example.com"])).await.is_err());
    assert!(Silent.notify(&note(&["ops@example.com"])).await.is_err());
    assert!(none.notify(&note(&[])).await.is_ok());
    assert!(Email::new("smtp://127.0.0.1:1", "not an address").is_err());
}

#[tokio::test]
async fn metrics_are_served_for_the_admin_token_and_health_to_anyone() {
    use gosling_fleet::credentials::ADMIN_TOKEN;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn gosling_state::StateStore> =
        Arc::new(gosling_state::SqliteStore::open(&dir.path().join("state.db"), false).unwrap());
    let m = Arc::new(uglyfox::metrics::Metrics::default());
    m.passes.fetch_add(3, std::sync::atomic::Ordering::Relaxed);
    m.decided(uglyfox::Kind::Demote);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(uglyfox::server::serve(
        l,
        m,
        store.clone(),
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let metrics = |token: Option<&str>| {
        let mut r = http.get(format!("http://{addr}/metrics"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    // No admin token exists yet: nothing opens the metrics.
    assert_eq!(metrics(None).await.unwrap().status(), 401);
    assert_eq!(metrics(Some("gsa_guess")).await.unwrap().status(), 401);
    // Created (by MotherGoose, or `mothergoose token admin`) while UglyFox runs: it works
    // at once; another token does not.
    let token = ADMIN_TOKEN.ensure(&*store).await.unwrap().expect("created");
    assert_eq!(metrics(Some("gsa_guess")).await.unwrap().status(), 401);
    let answer = metrics(Some(token.expose())).await.unwrap();
    assert_eq!(answer.status(), 200);
    let body = answer.text().await.unwrap();
    assert!(body.contains("uglyfox_passes_total 3"), "{body}");
    assert!(
        body.contains("uglyfox_decisions_total{kind=\"demote\"} 1"),
        "{body}"
    );
    assert!(body.contains("uglyfox_pass_seconds "), "{body}");
    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
}
