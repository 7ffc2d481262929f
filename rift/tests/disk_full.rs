//! Disk full: the `rift` process runs with a file size limit (RLIMIT_FSIZE, SIGXFSZ
//! ignored, so a write past it fails with EFBIG as a full disk fails with ENOSPC). An
//! upload that does not fit is refused with 507 and leaves nothing behind, what was stored
//! before is still served, and Rift goes on serving.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{binary_files, bytes, client, wait_listening, Proc, TOKEN};

/// Largest file Rift may write.
const LIMIT: u64 = 64 * 1024;

/// `rift --config CFG` whose files may not grow past [`LIMIT`] bytes.
fn rift_with_file_limit(cfg: &Path, auth: &Path) -> (Proc, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rift"));
    cmd.arg("--config")
        .arg(cfg)
        .env("RIFT_AUTH_FILE", auth)
        .env("RIFT_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, signal).
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("rift starts");
    let (addr, _lines) = wait_listening(&mut child);
    (Proc(child), addr)
}

fn parts_left(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("tmp"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_upload_that_does_not_fit_is_refused_cleanly_and_what_was_stored_is_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (cfg, auth) = binary_files(dir.path(), "");
    let (mut rift, addr) = rift_with_file_limit(&cfg, &auth);
    let url = |key: &str| format!("http://{addr}/cache/{key}");
    let http = client();
    let put = |key: &str, body: Vec<u8>| http.put(url(key)).bearer_auth(TOKEN).body(body).send();
    let get = |key: &str| http.get(url(key)).bearer_auth(TOKEN).send();

    let first = bytes(4096, 1);
    assert_eq!(put("first", first.clone()).await.unwrap().status(), 200);

    // Too big for what is left: received whole in memory (128 KiB), or streamed (4 MiB).
    // A streamed upload is answered as soon as the write fails, while the client may still
    // be sending: it then sees the connection closed instead of the answer.
    let mut answered = 0;
    for (key, len) in [
        ("medium", 128 * 1024),
        ("large", 4 << 20),
        ("first", 4 << 20),
    ] {
        let r = match put(key, bytes(len, 2)).await {
            Ok(r) => r,
            Err(e) if len > 256 * 1024 && e.is_request() => continue,
            Err(e) => panic!("{key}: {e}"),
        };
        let status = r.status().as_u16();
        let connection = r.headers().get("connection").cloned();
        assert_eq!(
            connection.as_ref().and_then(|v| v.to_str().ok()),
            Some("close"),
            "an upload refused part-read ends its connection (no client reuses it)"
        );
        let text = r.text().await.unwrap();
        assert_eq!(status, 507, "{key} ({len} bytes): {text}");
        assert!(text.contains("InsufficientStorage"), "{text}");
        answered += 1;
    }
    assert!(answered >= 1, "the upload received whole is answered");

    // Nothing partial is visible or left behind; the first object is intact.
    for key in ["medium", "large"] {
        assert_eq!(get(key).await.unwrap().status(), 404, "{key}");
    }
    assert!(parts_left(&data).is_empty(), "{:?}", parts_left(&data));
    let r = get("first").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), first.as_slice());

    // Still up, and what fits is still stored.
    assert!(rift.0.try_wait().unwrap().is_none(), "rift is alive");
    let second = bytes(2048, 3);
    assert_eq!(put("second", second.clone()).await.unwrap().status(), 200);
    let r = get("second").await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), second.as_slice());
    let _ = rift.0.kill();
}
