//! `mothergoose`: serve the API with embedded workers, run workers only, serve in AWS
//! Lambda, print the OpenAPI document, or manage the admin and Rift tokens.

use clap::{Args, Parser, Subcommand};
use miette::{miette, IntoDiagnostic, Result};
use mothergoose::config::{beside_state, parse_duration, parse_size, ProviderChoice, Settings};
use mothergoose::{App, Overrides};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use utoipa::OpenApi;

/// MotherGoose: GitLab job events → queue → runners, on the deployed IR.
#[derive(Parser)]
#[command(
    name = "mothergoose",
    version,
    about,
    after_help = "Example (after `gosling deploy` in NEST):\n  mothergoose serve --state sqlite://NEST/.gosling/state.db --listen 127.0.0.1:8080"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API with embedded workers and the reconciler.
    Serve(ServeArgs),
    /// Run workers (and the reconciler) only: no HTTP API.
    Worker(Common),
    /// Serve the API as an AWS Lambda function behind API Gateway (workers run elsewhere).
    Lambda(Common),
    /// Print the OpenAPI 3 document of the API.
    Openapi,
    /// Create (or, with --rotate, replace) a token and print it once.
    #[command(name = "token")]
    Token(TokenArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// State store URL, as `gosling` uses it (sqlite://PATH, dynamodb://…, ydb://…).
    #[arg(long, env = "GOSLING_STATE")]
    state: String,
    /// Object store (deployment IRs) [default: `objects` beside an sqlite:// state].
    #[arg(long, env = "GOSLING_OBJECTS")]
    objects: Option<String>,
    /// Task queue: sqlite://PATH or sqs://NAME?region=…&endpoint=… [default: `queue.db` beside an sqlite:// state].
    #[arg(long, env = "GOSLING_QUEUE")]
    queue: Option<String>,
    /// File with the state encryption key (or set GOSLING_STATE_KEY) [default: ~/.config/gosling/state.key].
    #[arg(long, env = "GOSLING_STATE_KEY_FILE")]
    state_key_file: Option<PathBuf>,
    /// How runners are made: `local` (processes on this machine) or `cloud`.
    #[arg(long, default_value = "local", value_parser = ["local", "cloud"])]
    provider: String,
    /// The providers file (TOML: [aws], [yandex], optional [tofu]), with --provider cloud.
    #[arg(long, env = "MOTHERGOOSE_PROVIDERS")]
    providers_config: Option<PathBuf>,
    /// The runner command of the local provider [default: `gosling runner`, gosling beside this binary or on PATH].
    #[arg(long, env = "MOTHERGOOSE_RUNNER_COMMAND")]
    runner_command: Option<String>,
    /// Folders of local runners [default: `runners` beside an sqlite:// state].
    #[arg(long)]
    runner_dir: Option<PathBuf>,
    /// Tasks run at once.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Deliveries of a task before it is dead-lettered.
    #[arg(long, default_value_t = 8)]
    max_attempts: u32,
    /// How often GitLab is asked for pending jobs (0s: never).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    reconcile_interval: Duration,
    /// How often runners send heartbeats.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    /// How long a task stays with the worker that took it without word from it: a worker
    /// renews this while it works, so the tasks of a worker that died are taken up again
    /// this long after.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    task_lease: Duration,
    /// MotherGoose's URL as runners reach it [default: http://LISTEN].
    #[arg(long, env = "MOTHERGOOSE_PUBLIC_URL")]
    public_url: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Where to listen [default: 127.0.0.1:8080, or 0.0.0.0:$PORT when PORT is set (Yandex Serverless Containers)].
    #[arg(long, env = "MOTHERGOOSE_LISTEN")]
    listen: Option<SocketAddr>,
    /// PEM certificate chain: serve HTTPS (TLS 1.3 only) with --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Largest webhook body.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    max_body: usize,
    /// Standard Webhooks signing secret (whsec_…): signed deliveries are then required.
    #[arg(long, env = "MOTHERGOOSE_SIGNING_SECRET", hide_env_values = true)]
    signing_secret: Option<String>,
    /// Serve the API only (run `mothergoose worker` elsewhere).
    #[arg(long)]
    no_workers: bool,
}

#[derive(Args)]
struct TokenArgs {
    /// Which token: `admin` (management endpoints) or `rift` (Rift's runner checks).
    #[arg(value_parser = ["admin", "rift"])]
    which: String,
    /// Replace the token (the old one stops working).
    #[arg(long)]
    rotate: bool,
    /// State store URL.
    #[arg(long, env = "GOSLING_STATE")]
    state: String,
}

fn settings(
    c: Common,
    listen: SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
    max_body: usize,
    signing: Option<String>,
    workers: usize,
) -> Result<Settings> {
    let objects = match c.objects {
        Some(o) => o,
        None => beside_state(&c.state, "objects", "--objects").map_err(|e| miette!("{e}"))?,
    };
    let queue = match c.queue {
        Some(q) => q,
        None => format!(
            "sqlite://{}",
            beside_state(&c.state, "queue.db", "--queue").map_err(|e| miette!("{e}"))?
        ),
    };
    let provider = match c.provider.as_str() {
        "cloud" => ProviderChoice::Cloud {
            config: c
                .providers_config
                .ok_or_else(|| miette!("--provider cloud needs --providers-config FILE"))?,
        },
        _ => {
            let dir = match c.runner_dir {
                Some(d) => d,
                None => beside_state(&c.state, "runners", "--runner-dir")
                    .map_err(|e| miette!("{e}"))?
                    .into(),
            };
            let (program, args) = runner_command(c.runner_command.as_deref())?;
            ProviderChoice::Local { dir, program, args }
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(Settings {
        state: c.state,
        objects,
        queue,
        listen,
        public_url: c
            .public_url
            .unwrap_or_else(|| format!("{scheme}://{listen}")),
        tls,
        state_key: std::env::var(gosling_state::KEY_ENV)
            .ok()
            .map(gosling_state::SecretString::new),
        state_key_file: c
            .state_key_file
            .unwrap_or_else(gosling_state::default_key_file),
        provider,
        workers,
        max_body,
        signing_secret: signing.map(gosling_state::SecretString::new),
        reconcile_interval: c.reconcile_interval,
        heartbeat_interval: c.heartbeat_interval,
        max_attempts: c.max_attempts,
        deployment_poll: Duration::from_secs(2),
        provisioning_timeout: Duration::from_secs(600),
        shutdown_grace: Duration::from_secs(30),
        lease: c.task_lease.max(Duration::from_secs(1)),
    })
}

/// `gosling runner` by default: the gosling binary beside this one, else on PATH.
fn runner_command(given: Option<&str>) -> Result<(PathBuf, Vec<String>)> {
    if let Some(cmd) = given {
        let mut words = cmd.split_whitespace().map(String::from);
        let program = words
            .next()
            .ok_or_else(|| miette!("--runner-command is empty"))?;
        return Ok((program.into(), words.collect()));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("gosling")))
        .filter(|p| p.exists());
    Ok((
        beside.unwrap_or_else(|| "gosling".into()),
        vec!["runner".into()],
    ))
}

fn default_listen() -> SocketAddr {
    match std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
    {
        Some(port) => SocketAddr::from(([0, 0, 0, 0], port)),
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
    }
}

async fn open(s: Settings) -> Result<std::sync::Arc<App>> {
    let app = App::open(s, Overrides::default())
        .await
        .map_err(|e| miette!("{e}"))?;
    if let Some(token) = app.ensure_admin_token().await.into_diagnostic()? {
        eprintln!(
            "MotherGoose admin token (shown once; only its hash is stored):\n{}",
            token.expose()
        );
    }
    Ok(app)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping: finishing in-flight requests and tasks");
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Openapi => {
            println!(
                "{}",
                mothergoose::http::ApiDoc::openapi()
                    .to_pretty_json()
                    .into_diagnostic()?
            );
            Ok(())
        }
        Command::Token(t) => {
            let store = gosling_state::open_state(&t.state, &Default::default())
                .await
                .into_diagnostic()?;
            let token = if t.which == "rift" {
                gosling_fleet::credentials::RIFT_TOKEN
            } else {
                gosling_fleet::credentials::ADMIN_TOKEN
            };
            let created = if t.rotate {
                Some(token.rotate(&*store).await.into_diagnostic()?)
            } else {
                token.ensure(&*store).await.into_diagnostic()?
            };
            match created {
                Some(v) => println!("{}", v.expose()),
                None => eprintln!(
                    "the {} token exists and cannot be shown again; --rotate replaces it",
                    t.which
                ),
            }
            Ok(())
        }
        Command::Serve(a) => {
            let listen = a.listen.unwrap_or_else(default_listen);
            let tls = a.tls_cert.zip(a.tls_key);
            let workers = if a.no_workers { 0 } else { a.common.workers };
            let s = settings(a.common, listen, tls, a.max_body, a.signing_secret, workers)?;
            let app = open(s).await?;
            let listener = std::net::TcpListener::bind(listen).into_diagnostic()?;
            let running = mothergoose::start(app, listener, true)
                .await
                .map_err(|e| miette!("{e}"))?;
            eprintln!("MotherGoose listening on {}", running.addr);
            running.stop_on(shutdown_signal()).await;
            Ok(())
        }
        Command::Worker(c) => {
            let workers = c.workers;
            let s = settings(c, default_listen(), None, 1 << 20, None, workers)?;
            let app = open(s).await?;
            let listener = std::net::TcpListener::bind("127.0.0.1:0").into_diagnostic()?;
            let running = mothergoose::start(app, listener, false)
                .await
                .map_err(|e| miette!("{e}"))?;
            running.stop_on(shutdown_signal()).await;
            Ok(())
        }
        Command::Lambda(c) => {
            let s = settings(c, default_listen(), None, 1 << 20, None, 0)?;
            let app = open(s).await?;
            mothergoose::lambda::run(app)
                .await
                .map_err(|e| miette!("{e}"))
        }
    }
}

/// glibc gives each thread that allocates its own arena (up to 8 per core), and the
/// store's blocking calls move between many threads: memory freed in one arena is not
/// reused by the others, so the process grows. Two arenas keep it near its working set
/// (the soak in BENCHMARKS.md). `MALLOC_ARENA_MAX` in the environment still decides.
fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt(3) before any other thread exists; it only sets an allocator limit.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MOTHERGOOSE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    few_malloc_arenas();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:?}");
            ExitCode::from(2)
        }
    }
}
