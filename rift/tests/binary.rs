//! The `rift` binary: help text, configuration from a file and the environment, token reload
//! on SIGHUP, graceful stop on SIGTERM.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{binary_files, client, wait_listening, write_auth, Proc, TOKEN};

fn rift() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rift"))
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[test]
fn help_shows_an_example() {
    let out = rift().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("EXAMPLE:"), "{text}");
    assert!(text.contains("--max-cache-size"));
    assert!(text.contains("[runners.cache.s3]"));
}

#[test]
fn missing_auth_file_is_a_clear_error() {
    let out = rift()
        .env_remove("RIFT_AUTH_FILE")
        .env_remove("RIFT_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth_file"), "{err}");
}

#[tokio::test]
async fn sighup_reloads_tokens_and_sigterm_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, auth) = binary_files(dir.path(), "auth_reload_interval = \"1h\"\nfsync = false\n");
    let child = rift()
        .arg("--config")
        .arg(&cfg)
        .env("RIFT_AUTH_FILE", &auth)
        .env("RIFT_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut p = Proc(child);
    let (addr, reader) = wait_listening(&mut p.0);
    let url = format!("http://{addr}/cache/k");
    let r = client()
        .put(&url)
        .bearer_auth(TOKEN)
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Rotate the token: with a 1 h poll interval only SIGHUP can pick it up.
    write_auth(&auth, &["glrt-after-hup"]);
    signal(&p.0, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client()
            .get(&url)
            .bearer_auth("glrt-after-hup")
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "token not reloaded after SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client().get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 401);

    signal(&p.0, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "rift did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    let lines = reader.join().unwrap();
    assert!(lines.iter().any(|l| l.contains("SIGHUP")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("stopped")), "{lines:?}");
}
