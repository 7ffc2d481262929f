//! Drives `fly lsp` over stdio the way an editor does and reports latencies and memory.
//!
//! Run: `cargo bench --bench lsp`. Scenarios: a 10,000-line file (edit → diagnostics,
//! completion, hover, formatting) and a 1,000-file Nest (indexing, edit → diagnostics,
//! resident memory after indexing).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: i64,
}

impl Server {
    fn start(root: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fly"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("fly lsp starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut s = Server {
            child,
            stdin,
            stdout,
            next_id: 0,
        };
        let uri = fly_lsp::world::file_uri(root);
        s.request("initialize", json!({ "capabilities": {}, "rootUri": uri }));
        s.notify("initialized", json!({}));
        s
    }

    fn send(&mut self, v: &Value) {
        let body = serde_json::to_string(v).unwrap();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{}", body.len(), body).unwrap();
        self.stdin.flush().unwrap();
    }

    fn read(&mut self) -> Value {
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            self.stdout.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(n) = line.strip_prefix("Content-Length: ") {
                len = n.parse().unwrap();
            }
        }
        let mut buf = vec![0; len];
        self.stdout.read_exact(&mut buf).unwrap();
        serde_json::from_slice(&buf).unwrap()
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a request and waits for its response, skipping notifications.
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let v = self.read();
            if v["id"] == id {
                return v["result"].clone();
            }
        }
    }

    /// Waits for a publishDiagnostics of `uri`.
    fn wait_diagnostics(&mut self, uri: &str) -> Value {
        loop {
            let v = self.read();
            if v["method"] == "textDocument/publishDiagnostics" && v["params"]["uri"] == uri {
                return v["params"]["diagnostics"].clone();
            }
        }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Makes the diagnostics of `uri` flip between clean and one error, returning each
/// didChange → publishDiagnostics time.
fn edit_latency(s: &mut Server, uri: &str, text: &str, line: u32, runs: usize) -> Vec<Duration> {
    let mut times = Vec::new();
    let line_text = text.lines().nth(line as usize).unwrap();
    let len = line_text.encode_utf16().count() as u32;
    for i in 0..runs {
        let new = if i % 2 == 0 {
            "  cpuu = 2"
        } else {
            "  cpu = 2"
        };
        let t = Instant::now();
        s.notify("textDocument/didChange", json!({
            "textDocument": { "uri": uri, "version": i as i64 + 2 },
            "contentChanges": [{ "range": { "start": {"line": line, "character": 0}, "end": {"line": line, "character": if i == 0 { len } else { 10 - (i % 2 == 0) as u32 } } }, "text": new }]
        }));
        let d = s.wait_diagnostics(uri);
        times.push(t.elapsed());
        let expect_error = i % 2 == 0;
        assert_eq!(
            d.as_array().map(|a| !a.is_empty()),
            Some(expect_error),
            "{d}"
        );
    }
    times
}

fn main() {
    let runs = 41;
    let dir = tempfile::tempdir().unwrap();

    // One 10,000-line file.
    let mut big = fly_tests::generate::nest_source(0);
    let mut i = 0;
    while big.lines().count() < 10_000 {
        big.push_str(&format!(
            "egg \"e{i}\" {{\n  type = \"vm\"\n  cloud {{\n    provider = \"aws\"\n    region   = \"eu-west-1\"\n  }}\n  resources {{\n    cpu = 2\n  }}\n  gitlab {{\n    project_id   = 1\n    token_secret = \"vault://t\"\n  }}\n}}\n\n"
        ));
        i += 1;
    }
    let big_dir = dir.path().join("big");
    std::fs::create_dir_all(&big_dir).unwrap();
    let big_path = big_dir.join("big.fly");
    std::fs::write(&big_path, &big).unwrap();
    let uri = fly_lsp::world::file_uri(&big_path);
    let mut s = Server::start(&big_dir);
    s.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "fly", "version": 1, "text": big } }),
    );
    s.wait_diagnostics(&uri);
    // Line of the last egg's `cpu = 2`.
    let cpu_line = big
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "cpu = 2")
        .last()
        .unwrap()
        .0 as u32;
    let diag = median(edit_latency(&mut s, &uri, &big, cpu_line, runs));
    let pos =
        json!({ "textDocument": { "uri": uri }, "position": { "line": cpu_line, "character": 3 } });
    let hover = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                s.request("textDocument/hover", pos.clone());
                t.elapsed()
            })
            .collect(),
    );
    let completion_pos =
        json!({ "textDocument": { "uri": uri }, "position": { "line": cpu_line, "character": 0 } });
    let completion = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                s.request("textDocument/completion", completion_pos.clone());
                t.elapsed()
            })
            .collect(),
    );
    let fmt_params = json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 2, "insertSpaces": true } });
    let formatting = median(
        (0..11)
            .map(|_| {
                let t = Instant::now();
                s.request("textDocument/formatting", fmt_params.clone());
                t.elapsed()
            })
            .collect(),
    );
    let parse_print = median(
        (0..11)
            .map(|_| {
                let t = Instant::now();
                let _ = fly_fmt::format(&big);
                t.elapsed()
            })
            .collect(),
    );
    drop(s);

    // A 1,000-file Nest.
    let nest_dir = dir.path().join("nest");
    for (path, text) in fly_tests::generate::nest_files(1000, 1000) {
        let p = nest_dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let t = Instant::now();
    let mut s = Server::start(&nest_dir);
    let first = nest_dir.join("Eggs/pools-000.fly");
    let first_uri = fly_lsp::world::file_uri(&first);
    s.wait_diagnostics(&first_uri);
    let index_time = t.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let rss = s.rss_kib();
    let text = std::fs::read_to_string(&first).unwrap();
    s.notify("textDocument/didOpen", json!({ "textDocument": { "uri": first_uri, "languageId": "fly", "version": 1, "text": text } }));
    let line = text
        .lines()
        .position(|l| l.trim_start().starts_with("cpu"))
        .unwrap() as u32;
    let nest_diag = median(edit_latency(&mut s, &first_uri, &text, line, runs));

    println!("| scenario | median |");
    println!("| --- | --- |");
    println!(
        "| 10,000-line file: didChange → publishDiagnostics | {} |",
        ms(diag)
    );
    println!("| 10,000-line file: hover | {} |", ms(hover));
    println!("| 10,000-line file: completion | {} |", ms(completion));
    println!(
        "| 10,000-line file: formatting (whole file) | {} |",
        ms(formatting)
    );
    println!(
        "| 10,000-line file: fly_fmt::format in process (parse + print) | {} |",
        ms(parse_print)
    );
    println!(
        "| 1,000-file Nest: start → first diagnostics (indexing) | {} |",
        ms(index_time)
    );
    println!(
        "| 1,000-file Nest: didChange → publishDiagnostics | {} |",
        ms(nest_diag)
    );
    println!(
        "| 1,000-file Nest: resident memory after indexing | {:.1} MB |",
        rss as f64 / 1024.0
    );
}
