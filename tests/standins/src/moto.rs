//! A `moto_server` (DynamoDB, S3, SQS, EC2, ECS) started on 127.0.0.1 on a free port for
//! the tests and stopped when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    port: u16,
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

impl Moto {
    /// Starts `moto_server` (or `python3 -m moto.server`) and waits until it answers.
    pub fn start() -> Moto {
        let port = free_port();
        let args = ["-H", "127.0.0.1", "-p", &port.to_string()];
        let spawn = |program: &str, pre: &[&str]| {
            Command::new(program)
                .args(pre)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        };
        let child = spawn("moto_server", &[])
            .or_else(|_| spawn("python3", &["-m", "moto.server"]))
            .expect(
                "moto_server is needed for the DynamoDB/S3 contract tests: \
                 python3 -m pip install 'moto[server]'",
            );
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        };
        let start = Instant::now();
        loop {
            if moto.request("GET", "/moto-api/").is_ok() {
                break;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited at start: {status} (is `moto[server]` installed?)");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// Forgets every table, item, bucket and object.
    pub fn reset(&self) {
        let status = self.request("POST", "/moto-api/reset").expect("moto reset");
        assert!(status.starts_with("HTTP/1.1 200"), "moto reset: {status}");
    }

    /// Sends a bodiless request to moto and returns its status line.
    pub fn request(&self, method: &str, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out.lines().next().unwrap_or_default().to_string())
    }

    /// Dummy static credentials moto accepts.
    pub fn credentials() -> gosling_state::AwsCredentials {
        gosling_state::AwsCredentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
        }
    }

    /// Stops the server process (SIGSTOP) without closing its sockets: connections are
    /// accepted by the kernel and then never answered, as a partitioned or hung store
    /// behaves. Tables and objects are kept for [`thaw`](Moto::thaw).
    pub fn freeze(&self) {
        assert!(self.signal(libc::SIGSTOP), "SIGSTOP to moto_server");
    }

    /// Lets a [frozen](Moto::freeze) server go on (SIGCONT).
    pub fn thaw(&self) {
        assert!(self.signal(libc::SIGCONT), "SIGCONT to moto_server");
    }

    /// Sends `signal` to the server; whether it was delivered.
    fn signal(&self, signal: i32) -> bool {
        // SAFETY: kill(2) on the pid of a child this value owns and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) == 0 }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
