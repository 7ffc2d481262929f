//! The OpenTofu updater against a local HTTP server that serves releases built here
//! (`.tar.gz` and `.zip` archives, checksums files, a GitHub-shaped releases API and a
//! custom source behind authentication), including a wrong checksum and a connection
//! dropped in the middle of a download.

use gosling_state::{SecretString, SqliteStore, StateStore};
use gosling_tofu::{Auth, BinaryError, Platform, Source, Updater};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone)]
struct Route {
    body: Vec<u8>,
    /// Send only this many bytes of the body (after announcing all of it), then close.
    cut_at: Option<usize>,
    /// A header (lower-case name, value) the request must carry, else 401.
    require: Option<(String, String)>,
}

#[derive(Default)]
struct Server {
    routes: Mutex<HashMap<String, Route>>,
    /// (path, headers) of every request.
    seen: Mutex<Vec<(String, HashMap<String, String>)>>,
}

impl Server {
    fn route(&self, path: &str, body: Vec<u8>) {
        self.routes.lock().unwrap().insert(
            path.to_string(),
            Route {
                body,
                cut_at: None,
                require: None,
            },
        );
    }

    fn edit(&self, path: &str, f: impl FnOnce(&mut Route)) {
        f(self.routes.lock().unwrap().get_mut(path).expect("route"));
    }

    fn seen(&self, path_prefix: &str) -> Vec<HashMap<String, String>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.starts_with(path_prefix))
            .map(|(_, h)| h.clone())
            .collect()
    }
}

async fn handle(server: Arc<Server>, mut sock: tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let path = target.split('?').next().unwrap_or("/").to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    server
        .seen
        .lock()
        .unwrap()
        .push((path.clone(), headers.clone()));
    let route = server.routes.lock().unwrap().get(&path).cloned();
    let (status, body, cut) = match route {
        None => ("404 Not Found", b"not found".to_vec(), None),
        Some(r) => match &r.require {
            Some((k, v)) if headers.get(k) != Some(v) => {
                ("401 Unauthorized", b"unauthorized".to_vec(), None)
            }
            _ => ("200 OK", r.body, r.cut_at),
        },
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = sock.write_all(head.as_bytes()).await;
    let send = cut.unwrap_or(body.len()).min(body.len());
    let _ = sock.write_all(&body[..send]).await;
    let _ = sock.flush().await;
    // Dropping the socket closes the connection (mid-body when cut).
}

async fn start() -> (Arc<Server>, String) {
    let server = Arc::new(Server::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let s = server.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(handle(s.clone(), sock));
        }
    });
    (server, url)
}

fn binary_text(version: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho 'OpenTofu v{version}'\n").into_bytes()
}

fn tar_gz(version: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, body, mode) in [
        ("LICENSE", b"MPL-2.0\n".to_vec(), 0o644),
        ("tofu", binary_text(version), 0o755),
        ("README.md", b"# OpenTofu\n".to_vec(), 0o644),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        tar.append_data(&mut h, name, &body[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn zip(version: &str) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.start_file("LICENSE", opts).unwrap();
    z.write_all(b"MPL-2.0\n").unwrap();
    z.start_file("tofu.exe", opts).unwrap();
    z.write_all(&binary_text(version)).unwrap();
    z.finish().unwrap().into_inner()
}

fn sha(bytes: &[u8]) -> String {
    gosling_state::hex(&Sha256::digest(bytes))
}

/// Publishes release `version` under `prefix` (`/download/v{version}/…`): both archives and
/// the checksums file.
fn publish(server: &Server, prefix: &str, version: &str) {
    let tgz = tar_gz(version);
    let z = zip(version);
    let linux = format!("tofu_{version}_linux_amd64.tar.gz");
    let windows = format!("tofu_{version}_windows_amd64.zip");
    let sums = format!("{}  {linux}\n{}  {windows}\n", sha(&tgz), sha(&z));
    server.route(&format!("{prefix}/v{version}/{linux}"), tgz);
    server.route(&format!("{prefix}/v{version}/{windows}"), z);
    server.route(
        &format!("{prefix}/v{version}/tofu_{version}_SHA256SUMS"),
        sums.into_bytes(),
    );
}

/// The GitHub releases API listing `releases` (version, prerelease, draft).
fn github_api(server: &Server, url: &str, releases: &[(&str, bool, bool)]) {
    let list: Vec<serde_json::Value> = releases
        .iter()
        .map(|(v, pre, draft)| {
            let assets: Vec<serde_json::Value> = [
                format!("tofu_{v}_linux_amd64.tar.gz"),
                format!("tofu_{v}_windows_amd64.zip"),
                format!("tofu_{v}_SHA256SUMS"),
            ]
            .into_iter()
            .map(|name| {
                serde_json::json!({
                    "name": name,
                    "browser_download_url": format!("{url}/download/v{v}/{name}"),
                })
            })
            .collect();
            serde_json::json!({ "tag_name": format!("v{v}"), "prerelease": pre, "draft": draft, "assets": assets })
        })
        .collect();
    server.route(
        "/repos/opentofu/opentofu/releases",
        serde_json::to_vec(&list).unwrap(),
    );
}

fn linux() -> Platform {
    Platform {
        os: "linux".into(),
        arch: "amd64".into(),
    }
}

fn updater(source: Source, root: &Path, state: Arc<dyn StateStore>) -> Updater {
    Updater::new(source, root, state, gosling_state::system_clock())
        .unwrap()
        .with_platform(linux())
}

fn github(url: &str) -> Source {
    Source::GitHub {
        api_base: url.to_string(),
        repo: "opentofu/opentofu".into(),
        token: Some(SecretString::new("ghp_testtoken123")),
    }
}

fn store(dir: &Path) -> Arc<dyn StateStore> {
    Arc::new(SqliteStore::open(&dir.join("state.db"), false).unwrap())
}

async fn active_versions(state: &Arc<dyn StateStore>) -> Vec<String> {
    state
        .tofu_versions()
        .await
        .unwrap()
        .into_iter()
        .filter(|v| v.item.active)
        .map(|v| v.item.version)
        .collect()
}

fn dirs(root: &Path) -> Vec<String> {
    let mut d: Vec<String> = std::fs::read_dir(root)
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    d.sort();
    d
}

#[tokio::test]
async fn github_releases_are_installed_switched_and_pruned() {
    let (server, url) = start().await;
    for v in ["1.6.0", "1.7.3", "1.8.0", "1.8.1", "1.9.0-rc1", "2.0.0"] {
        publish(&server, "/download", v);
    }
    github_api(
        &server,
        &url,
        &[
            ("2.0.0", false, true),
            ("1.9.0-rc1", true, false),
            ("1.8.1", false, false),
            ("1.8.0", false, false),
            ("1.7.3", false, false),
            ("1.6.0", false, false),
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let state = store(tmp.path());
    let root = tmp.path().join("bin");
    let up = updater(github(&url), &root, state.clone());
    let versions: Vec<String> = up
        .available_versions()
        .await
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(
        versions,
        ["1.8.1", "1.8.0", "1.7.3", "1.6.0"],
        "no draft, no pre-release"
    );
    assert!(up.check_required_actions().await.unwrap());
    assert!(matches!(
        up.active_binary().await,
        Err(BinaryError::NoneActive)
    ));

    let report = up.update(2).await.unwrap();
    assert_eq!(report.active, "1.8.1");
    assert!(report.switched);
    assert_eq!(report.rollback, ["1.8.0", "1.7.3"]);
    assert_eq!(dirs(&root), ["1.7.3", "1.8.0", "1.8.1"]);
    assert_eq!(active_versions(&state).await, ["1.8.1"]);
    let bin = up.active_binary().await.unwrap();
    assert_eq!(bin, root.join("1.8.1/tofu"));
    assert_eq!(std::fs::read(&bin).unwrap(), binary_text("1.8.1"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&bin).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }
    let rows = state.tofu_versions().await.unwrap();
    let row = rows.iter().find(|r| r.item.version == "1.8.1").unwrap();
    assert_eq!(row.item.source, "github");
    assert_eq!(row.item.sha256_hash, sha(&binary_text("1.8.1")));
    assert!(!up.check_required_actions().await.unwrap());
    // The token goes to the API only, never to downloads.
    assert!(server
        .seen("/repos/")
        .iter()
        .all(|h| h.get("authorization").map(String::as_str) == Some("Bearer ghp_testtoken123")));
    assert!(server
        .seen("/download/")
        .iter()
        .all(|h| !h.contains_key("authorization")));

    // A new release: the one that was active is the first rollback version, older ones go.
    publish(&server, "/download", "1.9.0");
    github_api(
        &server,
        &url,
        &[
            ("1.9.0", false, false),
            ("1.8.1", false, false),
            ("1.8.0", false, false),
            ("1.7.3", false, false),
        ],
    );
    let report = up.update(1).await.unwrap();
    assert_eq!(report.active, "1.9.0");
    assert_eq!(report.rollback, ["1.8.1"]);
    assert_eq!(report.removed, ["1.7.3", "1.8.0"]);
    assert_eq!(dirs(&root), ["1.8.1", "1.9.0"]);
    assert_eq!(state.tofu_versions().await.unwrap().len(), 2);

    // Switching back and forth: always exactly one active.
    up.activate("1.8.1").await.unwrap();
    assert_eq!(active_versions(&state).await, ["1.8.1"]);
    assert_eq!(up.active_binary().await.unwrap(), root.join("1.8.1/tofu"));
    up.activate("1.9.0").await.unwrap();
    assert_eq!(active_versions(&state).await, ["1.9.0"]);
    assert!(matches!(
        up.activate("1.6.0").await,
        Err(BinaryError::NotInstalled(_))
    ));
    assert!(matches!(
        up.update(0).await,
        Err(BinaryError::RollbackFactor(0))
    ));
    assert!(matches!(
        up.update(4).await,
        Err(BinaryError::RollbackFactor(4))
    ));

    // A binary changed on disk is not handed out.
    std::fs::write(root.join("1.9.0/tofu"), b"tampered").unwrap();
    assert!(matches!(
        up.active_binary().await,
        Err(BinaryError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn a_wrong_checksum_is_refused_and_the_active_version_stays() {
    let (server, url) = start().await;
    publish(&server, "/download", "1.8.0");
    github_api(&server, &url, &[("1.8.0", false, false)]);
    let tmp = tempfile::tempdir().unwrap();
    let state = store(tmp.path());
    let root = tmp.path().join("bin");
    let up = updater(github(&url), &root, state.clone());
    up.update(1).await.unwrap();

    publish(&server, "/download", "1.8.1");
    server.edit("/download/v1.8.1/tofu_1.8.1_SHA256SUMS", |r| {
        r.body = format!("{}  tofu_1.8.1_linux_amd64.tar.gz\n", "0".repeat(64)).into_bytes();
    });
    github_api(
        &server,
        &url,
        &[("1.8.1", false, false), ("1.8.0", false, false)],
    );
    let err = up.update(1).await.unwrap_err();
    assert!(matches!(err, BinaryError::Checksum { .. }), "{err}");
    assert_eq!(active_versions(&state).await, ["1.8.0"]);
    assert_eq!(dirs(&root), ["1.8.0"], "nothing installed, no staging left");
    assert_eq!(up.active_binary().await.unwrap(), root.join("1.8.0/tofu"));

    // A checksums file without the archive: refused too.
    server.edit("/download/v1.8.1/tofu_1.8.1_SHA256SUMS", |r| {
        r.body = format!("{}  tofu_1.8.1_darwin_arm64.tar.gz\n", "a".repeat(64)).into_bytes();
    });
    let err = up.update(1).await.unwrap_err();
    assert!(matches!(err, BinaryError::NoChecksum { .. }), "{err}");
    assert_eq!(active_versions(&state).await, ["1.8.0"]);
}

#[tokio::test]
async fn an_interrupted_download_installs_nothing() {
    let (server, url) = start().await;
    publish(&server, "/download", "1.8.0");
    publish(&server, "/download", "1.8.1");
    github_api(&server, &url, &[("1.8.0", false, false)]);
    let tmp = tempfile::tempdir().unwrap();
    let state = store(tmp.path());
    let root = tmp.path().join("bin");
    let up = updater(github(&url), &root, state.clone());
    up.update(1).await.unwrap();

    let archive = "/download/v1.8.1/tofu_1.8.1_linux_amd64.tar.gz";
    let len = tar_gz("1.8.1").len();
    server.edit(archive, |r| r.cut_at = Some(len / 2));
    github_api(
        &server,
        &url,
        &[("1.8.1", false, false), ("1.8.0", false, false)],
    );
    let err = up.update(1).await.unwrap_err();
    assert!(matches!(err, BinaryError::Http { .. }), "{err}");
    assert_eq!(active_versions(&state).await, ["1.8.0"]);
    assert_eq!(dirs(&root), ["1.8.0"]);
    assert_eq!(state.tofu_versions().await.unwrap().len(), 1);

    // Once the server sends it whole, the update goes through.
    server.edit(archive, |r| r.cut_at = None);
    assert_eq!(up.update(1).await.unwrap().active, "1.8.1");
}

#[tokio::test]
async fn windows_zip_archives_are_extracted() {
    let (server, url) = start().await;
    publish(&server, "/download", "1.8.0");
    github_api(&server, &url, &[("1.8.0", false, false)]);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("bin");
    let up = Updater::new(
        github(&url),
        &root,
        store(tmp.path()),
        gosling_state::system_clock(),
    )
    .unwrap()
    .with_platform(Platform {
        os: "windows".into(),
        arch: "amd64".into(),
    });
    up.update(1).await.unwrap();
    let bin = up.active_binary().await.unwrap();
    assert_eq!(bin, root.join("1.8.0/tofu.exe"));
    assert_eq!(std::fs::read(&bin).unwrap(), binary_text("1.8.0"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
}

#[tokio::test]
async fn a_custom_source_authenticates_every_request() {
    let (server, url) = start().await;
    publish(&server, "/mirror", "1.7.0");
    publish(&server, "/mirror", "1.8.0");
    server.route(
        "/versions.json",
        br#"["1.8.0", "v1.7.0", "1.9.0-beta1", "junk"]"#.to_vec(),
    );
    let cases = [
        (
            Auth::Token(SecretString::new("tok-1")),
            ("authorization", "token tok-1"),
        ),
        (
            Auth::Bearer(SecretString::new("tok-2")),
            ("authorization", "Bearer tok-2"),
        ),
        (
            Auth::Header {
                name: "PRIVATE-TOKEN".into(),
                value: SecretString::new("tok-3"),
            },
            ("private-token", "tok-3"),
        ),
    ];
    let paths: Vec<String> = server.routes.lock().unwrap().keys().cloned().collect();
    for (auth, (name, value)) in cases {
        for p in &paths {
            server.edit(p, |r| {
                r.require = Some((name.to_string(), value.to_string()))
            });
        }
        let tmp = tempfile::tempdir().unwrap();
        let state = store(tmp.path());
        let source = Source::Custom {
            versions_url: format!("{url}/versions.json"),
            base_url: format!("{url}/mirror"),
            auth,
        };
        let up = updater(source, &tmp.path().join("bin"), state.clone());
        let report = up.update(1).await.unwrap();
        assert_eq!(
            (report.active.as_str(), report.rollback.as_slice()),
            ("1.8.0", &["1.7.0".to_string()][..])
        );
        let rows = state.tofu_versions().await.unwrap();
        assert!(rows.iter().all(|r| r.item.source == "other"));
        // Without the credential the server refuses, and nothing changes.
        let tmp2 = tempfile::tempdir().unwrap();
        let anonymous = updater(
            Source::Custom {
                versions_url: format!("{url}/versions.json"),
                base_url: format!("{url}/mirror"),
                auth: Auth::None,
            },
            &tmp2.path().join("bin"),
            store(tmp2.path()),
        );
        assert!(matches!(
            anonymous.update(1).await,
            Err(BinaryError::Status { status: 401, .. })
        ));
    }
}
