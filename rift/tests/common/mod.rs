//! Shared helpers of the integration tests: a Rift instance on 127.0.0.1 with temporary
//! storage and credentials.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use rift::{Config, Running};

/// A runner token accepted by every test server.
pub const TOKEN: &str = "glrt-rift-test-token";
/// An S3 access key accepted by every test server.
pub const ACCESS_KEY: &str = "RIFTTESTKEY";
/// Its secret.
pub const SECRET_KEY: &str = "rift-test-secret/with+special=chars";

/// Writes an auth file with the given tokens and the test S3 key.
pub fn write_auth(path: &Path, tokens: &[&str]) {
    let list: Vec<String> = tokens.iter().map(|t| format!("\"{t}\"")).collect();
    let text = format!(
        "tokens = [{}]\n[[s3_keys]]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n",
        list.join(", ")
    );
    // Write then rename, so a concurrent reload never sees a half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write auth file");
    std::fs::rename(&tmp, path).expect("rename auth file");
}

/// A running test server and its files.
pub struct TestServer {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

impl TestServer {
    /// Base URL of the S3 / cache listener.
    pub fn url(&self) -> String {
        format!("http://{}", self.running().addr)
    }

    /// The running server.
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("server is running")
    }

    /// Path of the auth file.
    pub fn auth_path(&self) -> PathBuf {
        self.config
            .auth_file
            .clone()
            .expect("test servers have an auth file")
    }

    /// A counter's value.
    pub fn metric(
        &self,
        f: impl Fn(&rift::metrics::Metrics) -> &std::sync::atomic::AtomicU64,
    ) -> u64 {
        f(&self.running().state.metrics).load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the server gracefully.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(20), r.shutdown())
                .await
                .expect("graceful shutdown within 20 s");
        }
    }

    /// Starts the server again on the same data directory (a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut c = self.config.clone();
        c.listen = "127.0.0.1:0".parse().unwrap();
        self.running = Some(rift::start(c).await.expect("restart"));
    }
}

/// Starts a server with test defaults, adjusted by `tweak`.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth = dir.path().join("auth.toml");
    write_auth(&auth, &[TOKEN]);
    let mut config = Config::new(dir.path().join("data"), &auth);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.fsync = false;
    config.auth_failure_limit = 0;
    config.auth_reload_interval = Duration::from_millis(100);
    config.shutdown_grace = Duration::from_secs(10);
    tweak(&mut config);
    let running = rift::start(config.clone()).await.expect("start rift");
    TestServer {
        running: Some(running),
        dir,
        config,
    }
}

/// An HTTP client with bounded timeouts.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .expect("reqwest client")
}

/// Finds a program on PATH or fails with a message saying how CI installs it.
pub fn require_program(name: &str, install_hint: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` is required on PATH for this test but was not found; install it with: {install_hint}");
}

/// MD5 hex of `data`, as S3 ETags show it (without quotes).
pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(data))
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A minimal, independent SigV4 header signer for hand-made requests (path-style, no query).
/// Returns the headers to send, including `authorization`, and the request signature.
pub fn sign_headers(
    method: &str,
    host: &str,
    path: &str,
    payload_hash: &str,
    extra: &[(&str, String)],
) -> (Vec<(String, String)>, String) {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    fn mac(key: &[u8], data: &str) -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data.as_bytes());
        m.finalize().into_bytes().to_vec()
    }
    let now = chrono::Utc::now();
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let day = now.format("%Y%m%d").to_string();
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), host.into()),
        ("x-amz-content-sha256".into(), payload_hash.into()),
        ("x-amz-date".into(), amz_date.clone()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let creq = format!("{method}\n{path}\n\n{canonical_headers}\n{signed}\n{payload_hash}");
    let scope = format!("{day}/us-east-1/s3/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(creq.as_bytes()))
    );
    let k = mac(format!("AWS4{SECRET_KEY}").as_bytes(), &day);
    let k = mac(&k, "us-east-1");
    let k = mac(&k, "s3");
    let k = mac(&k, "aws4_request");
    let signature = hex::encode(mac(&k, &sts));
    headers.push((
        "authorization".into(),
        format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={signed}, Signature={signature}"),
    ));
    // Chunk signatures need the key and scope: return them through the signature string.
    (
        headers,
        format!("{signature} {amz_date} {scope} {}", hex::encode(k)),
    )
}

/// Encodes `data` as aws-chunked with signed chunks, continuing the chain from `sig_info`
/// (the second value returned by [`sign_headers`]).
pub fn signed_chunks(data: &[u8], chunk: usize, sig_info: &str) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let mut parts = sig_info.split(' ');
    let mut prev = parts.next().unwrap().to_string();
    let amz_date = parts.next().unwrap();
    let scope = parts.next().unwrap();
    let key = hex::decode(parts.next().unwrap()).unwrap();
    let empty = hex::encode(Sha256::digest(b""));
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = data.chunks(chunk).collect();
    pieces.push(&[]);
    for p in pieces {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{prev}\n{empty}\n{}",
            hex::encode(Sha256::digest(p))
        );
        let mut m = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        m.update(sts.as_bytes());
        let sig = hex::encode(m.finalize().into_bytes());
        out.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
        prev = sig;
    }
    out
}

/// The AWS CLI against a test server, isolated from the user's AWS configuration.
pub struct Aws<'a> {
    /// `--endpoint-url`.
    pub endpoint: String,
    /// HOME, holding `config` and `credentials`.
    pub home: &'a Path,
    /// `--ca-bundle`, for HTTPS with a test certificate.
    pub ca_bundle: Option<&'a Path>,
}

impl Aws<'_> {
    /// Runs `aws ARGS` with the test access key and `secret`.
    pub async fn run(&self, args: &[&str], secret: &str) -> Output {
        let aws = require_program("aws", "pip install awscli");
        let mut cmd = tokio::process::Command::new(aws);
        cmd.arg("--endpoint-url").arg(&self.endpoint);
        if let Some(ca) = self.ca_bundle {
            cmd.arg("--ca-bundle").arg(ca);
        }
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", self.home.join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.home.join("credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_MAX_ATTEMPTS", "1")
            .kill_on_drop(true);
        if let Some(v) = std::env::var_os("PYENV_VERSION") {
            cmd.env("PYENV_VERSION", v);
        }
        if let Some(v) = std::env::var_os("PYENV_ROOT") {
            cmd.env("PYENV_ROOT", v);
        }
        tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("aws finished within 60 s")
            .expect("aws ran")
    }

    /// Runs `aws ARGS` with the test keys; it must succeed. Returns its output.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, SECRET_KEY).await;
        assert!(
            out.status.success(),
            "aws {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A server certificate and key on disk, and the PEM a client trusts it by.
pub struct Pki {
    /// The files Rift is started with.
    pub files: rift::tls::TlsFiles,
    /// The (self-signed) certificate, for clients.
    pub ca_pem: String,
}

/// A self-signed certificate for 127.0.0.1 and localhost, written under `dir`.
pub fn pki(dir: &Path) -> Pki {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    Pki {
        files: rift::tls::TlsFiles { cert, key },
        ca_pem: ck.cert.pem(),
    }
}

/// One multi-threaded runtime for the property tests (proptest cases are synchronous).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Writes `auth.toml` (the test token and S3 key) and `rift.toml` (a free port on
/// 127.0.0.1, data in `dir/data`, a 64 MiB cache, then `extra` lines) for the `rift`
/// binary; returns the config and auth paths.
pub fn binary_files(dir: &Path, extra: &str) -> (PathBuf, PathBuf) {
    let auth = dir.join("auth.toml");
    write_auth(&auth, &[TOKEN]);
    let cfg = dir.join("rift.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nmax_cache_size = \"64MiB\"\n{extra}",
            dir.join("data").display()
        ),
    )
    .expect("write rift.toml");
    (cfg, auth)
}

/// Reads stderr until the "rift listening" line and returns the address.
pub fn wait_listening(
    child: &mut std::process::Child,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("rift listening") {
                let _ = tx.send(line.clone());
            }
            lines.push(line);
        }
        lines
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("rift started within 20 s");
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("addr in the startup line")
        .to_string();
    (addr, reader)
}

/// A child process killed (and reaped) when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
