//! `gitlab-standin`: the GitLab stand-in as a process, for trying Polar Gosling on one
//! machine (and for the end-to-end tests). Prints its URL, serves until SIGTERM/SIGINT.
//!
//! ```text
//! gitlab-standin [--listen 127.0.0.1:0] [--token glpat-…] [--signing-token whsec_…] [--build-timeout PROJECT=SECONDS]…
//! ```
//! Control API: `POST /-/jobs {"project_id":1,"tags":["docker"]}` creates a pending job and
//! delivers its Job Hook; `POST /-/jobs/ID/status {"status":"success"}`; `POST /-/faults
//! [{"status":500}]`; `GET /-/state`.

use gosling_standins::gitlab::GitLab;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let token = arg(&args, "--token").unwrap_or_else(|| "glpat-standin".into());
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gitlab-standin: cannot listen on {listen}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let gitlab = match GitLab::serve(listener, &token).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("gitlab-standin: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let signing = arg(&args, "--signing-token");
    let timeouts: Vec<(u64, u64)> = args
        .windows(2)
        .filter(|w| w[0] == "--build-timeout")
        .filter_map(|w| {
            w[1].split_once('=')
                .and_then(|(p, s)| Some((p.parse().ok()?, s.parse().ok()?)))
        })
        .collect();
    gitlab.with(|w| {
        w.signing_token = signing;
        w.build_timeouts.extend(timeouts);
    });
    println!("{}", gitlab.url);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
    std::process::ExitCode::SUCCESS
}
