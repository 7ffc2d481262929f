//! The `uglyfox` command: `plan` (what a pass would do, and why; writes nothing) and `run`
//! (passes every `check_interval`, cron Jobs, `/metrics`).

use clap::{Parser, Subcommand, ValueEnum};
use miette::{miette, IntoDiagnostic, Result};
use std::path::PathBuf;
use std::time::Duration;
use uglyfox::cron::plan_jobs;
use uglyfox::planner::{Config, Kind, Plan};
use uglyfox::settings::{self, ProviderChoice, Settings};

const EXAMPLE: &str = "Example (after `gosling deploy` in a Nest):
  uglyfox plan                       # what the next pass would do, and why
  uglyfox plan --format json
  uglyfox run --listen 127.0.0.1:9187 --provider local";

#[derive(Parser, Debug)]
#[command(name = "uglyfox", version, about = "UglyFox: runner health, pruning, Apex/Nadir pools and cron Jobs", after_help = EXAMPLE)]
struct Cli {
    /// State store URL (default: the `.gosling/state.db` of the Nest around the current folder).
    #[arg(long, env = "GOSLING_STATE", global = true)]
    state: Option<String>,
    /// Object store URL (default: `objects` beside an embedded state).
    #[arg(long, env = "GOSLING_OBJECTS", global = true)]
    objects: Option<String>,
    /// Queue URL (default: `queue.db` beside an embedded state).
    #[arg(long, env = "GOSLING_QUEUE", global = true)]
    queue: Option<String>,
    /// The state key file (else `GOSLING_STATE_KEY`, else ~/.config/gosling/state.key).
    #[arg(long, env = "GOSLING_STATE_KEY_FILE", global = true)]
    state_key_file: Option<PathBuf>,
    /// How runner machines are removed: `local` (processes in `--runners-dir`), `cloud` (with
    /// --providers-config), or a providers file.
    #[arg(long, default_value = "local", global = true)]
    provider: String,
    /// The providers file (TOML), with --provider cloud.
    #[arg(long, env = "UGLYFOX_PROVIDERS", global = true)]
    providers_config: Option<PathBuf>,
    /// Folders of local runners (default: `runners` beside an embedded state).
    #[arg(long, global = true)]
    runners_dir: Option<PathBuf>,
    /// How often runners report (`gosling runner --metrics-interval`); a runner silent for
    /// four intervals is marked failed.
    #[arg(long, default_value = "30s", value_parser = parse_duration, global = true)]
    metrics_interval: Duration,
    /// How long a runner may stay provisioning.
    #[arg(long, default_value = "15m", value_parser = parse_duration, global = true)]
    provisioning_timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show what the next pass would do, and why (writes nothing).
    Plan {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Run passes every check_interval and cron Jobs, until SIGINT/SIGTERM.
    Run {
        /// Serve `/metrics` (for the MotherGoose admin token) and `/health` here.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// One pass and one cron tick, then exit.
        #[arg(long)]
        once: bool,
        /// SMTP server for e-mail notifications: smtps://USER:PASS@HOST, smtp://HOST:PORT.
        #[arg(long, env = "UGLYFOX_SMTP_URL")]
        smtp_url: Option<String>,
        /// Sender of e-mail notifications.
        #[arg(long, env = "UGLYFOX_SMTP_FROM", default_value = "uglyfox@localhost")]
        smtp_from: String,
        /// A URL every notification is POSTed to as JSON.
        #[arg(long, env = "UGLYFOX_NOTIFY_WEBHOOK")]
        notify_webhook: Option<String>,
        /// Operators' e-mail addresses for rules with `action = "notify"` (repeatable).
        #[arg(long = "alert-to")]
        alert_to: Vec<String>,
        /// How often cron Jobs are looked at.
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        cron_every: Duration,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 30s, 5m, 1h)"))?;
    let mult = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("`{s}`: unknown unit (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

fn settings(cli: &Cli) -> Result<Settings> {
    let state = match &cli.state {
        Some(s) if !s.trim().is_empty() => s.clone(),
        _ => {
            let cwd = std::env::current_dir().into_diagnostic()?;
            settings::find_state(&cwd).ok_or_else(|| {
                miette!("no state store: give --state (or GOSLING_STATE), or run inside a Nest deployed with `gosling deploy`")
            })?
        }
    };
    let beside = |given: &Option<String>, name: &str, flag: &str| -> Result<String> {
        match given {
            Some(v) if !v.trim().is_empty() => Ok(v.clone()),
            _ => Ok(settings::beside_state(&state, name, flag)
                .map_err(|e| miette!("{e}"))?
                .display()
                .to_string()),
        }
    };
    let objects = beside(&cli.objects, "objects", "--objects")?;
    let queue = beside(&cli.queue, "queue.db", "--queue")?;
    let provider = if cli.provider == "local" {
        let dir = match &cli.runners_dir {
            Some(d) => d.clone(),
            None => settings::beside_state(&state, "runners", "--runners-dir")
                .map_err(|e| miette!("{e}"))?,
        };
        // Removal only: the program is never started here.
        ProviderChoice::Local {
            dir,
            program: "gosling".into(),
            args: vec!["runner".into()],
        }
    } else if cli.provider == "cloud" {
        ProviderChoice::Cloud {
            config: cli
                .providers_config
                .clone()
                .ok_or_else(|| miette!("--provider cloud needs --providers-config FILE"))?,
        }
    } else {
        ProviderChoice::Cloud {
            config: PathBuf::from(&cli.provider),
        }
    };
    let config = Config {
        metrics_interval: cli.metrics_interval,
        provisioning_timeout: cli.provisioning_timeout,
        request_timeout: cli.provisioning_timeout,
        ..Config::default()
    };
    let mut s = Settings {
        state,
        objects,
        queue,
        state_key: std::env::var("GOSLING_STATE_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(gosling_state::SecretString::new),
        state_key_file: cli
            .state_key_file
            .clone()
            .unwrap_or_else(settings::default_key_file),
        provider,
        smtp_url: None,
        smtp_from: "uglyfox@localhost".into(),
        notify_webhook: None,
        alert_to: Vec::new(),
        config,
        cron_every: Duration::from_secs(15),
        deployment_poll: Duration::from_secs(5),
    };
    if let Command::Run {
        smtp_url,
        smtp_from,
        notify_webhook,
        alert_to,
        cron_every,
        ..
    } = &cli.command
    {
        s.smtp_url = smtp_url.clone();
        s.smtp_from = smtp_from.clone();
        s.notify_webhook = notify_webhook.clone();
        s.alert_to = alert_to.clone();
        s.cron_every = (*cron_every).max(Duration::from_secs(1));
    }
    Ok(s)
}

fn print_text(plan: &Plan, version: Option<u64>, jobs: &[uglyfox::cron::JobDecision]) {
    match version {
        Some(v) => println!(
            "UglyFox plan at {} — deployment {v}, a pass every {} s{}",
            gosling_state::ts::format(&plan.now),
            plan.check_interval_s,
            if plan.policy {
                ""
            } else {
                " (no uglyfox block: pruning, pools and rules are off)"
            }
        ),
        None => println!(
            "UglyFox plan at {} — nothing is deployed",
            gosling_state::ts::format(&plan.now)
        ),
    }
    if !plan.pools.is_empty() {
        println!("\npools:");
        for p in &plan.pools {
            println!(
                "  {}: apex {} → {} (min {}, max {}, target {}), nadir {} → {}, busy {}, on the way {}, pending jobs {}",
                p.egg, p.apex.0, p.apex.1, p.min_apex, p.max_apex, p.target, p.nadir.0, p.nadir.1, p.busy, p.coming, p.pending
            );
        }
    }
    if plan.decisions.is_empty() {
        println!("\nno runner decisions");
    } else {
        println!("\ndecisions:");
        for d in &plan.decisions {
            let what = match d.kind {
                Kind::Hold => format!(
                    "hold {} ({})",
                    d.wanted.map_or("", |k| k.as_str()),
                    d.guard.map_or("", |g| g.as_str())
                ),
                k => k.as_str().to_string(),
            };
            let target = match (&d.runner, &d.key) {
                (Some(r), _) => format!("{r} ({})", d.egg),
                (None, Some(k)) => k.clone(),
                (None, None) => d.egg.clone(),
            };
            println!("  {what:<28} {target:<40} {}: {}", d.reason.as_str(), d.why);
        }
    }
    if !plan.skipped_rules.is_empty() {
        println!("\nrules skipped (a metric they read is missing):");
        for (rule, s) in &plan.skipped_rules {
            println!(
                "  {rule}: {} runner(s), missing {} (e.g. {})",
                s.runners,
                s.missing.join(", "),
                s.examples.join(", ")
            );
        }
    }
    if !jobs.is_empty() {
        println!("\ncron jobs:");
        for j in jobs {
            let step = serde_json::to_value(&j.step)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_str()).map(String::from))
                .unwrap_or_default();
            println!("  {step:<8} {:<24} {}", j.job, j.why);
        }
    }
}

async fn plan_cmd(s: &Settings, format: Format) -> Result<()> {
    let (store, objects) = settings::open_stores(s, true)
        .await
        .map_err(|e| miette!("{e}"))?;
    let deployed = gosling_fleet::load_current(&*store, &*objects)
        .await
        .map_err(|e| miette!("{e}"))?;
    let ir = deployed.as_ref().map(|d| &*d.ir);
    let now = chrono::Utc::now();
    let plan = uglyfox::service::plan_from_store(&*store, ir, &s.config, now)
        .await
        .map_err(|e| miette!("{e}"))?;
    let jobs = match ir {
        Some(ir) => plan_jobs(
            &store.jobs().await.map_err(|e| miette!("{e}"))?,
            ir,
            now,
            s.config.provisioning_timeout,
        ),
        None => Vec::new(),
    };
    match format {
        Format::Json => {
            let v = serde_json::json!({
                "deployment": deployed.as_ref().map(|d| d.version),
                "plan": plan,
                "jobs": jobs,
            });
            println!("{}", serde_json::to_string_pretty(&v).into_diagnostic()?);
        }
        Format::Text => print_text(&plan, deployed.as_ref().map(|d| d.version), &jobs),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn run_cmd(s: &Settings, listen: Option<std::net::SocketAddr>, once: bool) -> Result<()> {
    let opened = settings::open(s, gosling_state::system_clock(), None)
        .await
        .map_err(|e| miette!("{e}"))?;
    if once {
        let current = opened.deployed.current();
        let ir = current.as_ref().map(|d| &*d.ir);
        if let Some(ir) = ir {
            opened.fox.cron_tick(ir).await.map_err(|e| miette!("{e}"))?;
        }
        let (plan, report) = opened.fox.pass(ir).await.map_err(|e| miette!("{e}"))?;
        println!(
            "{} decision(s), {} done",
            plan.decisions.len(),
            report.done()
        );
        return Ok(());
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let server = match listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| miette!("cannot listen on {addr}: {e}"))?;
            tracing::info!("serving /metrics and /health on {addr}");
            let mut rx = rx.clone();
            Some(tokio::spawn(uglyfox::server::serve(
                l,
                opened.metrics.clone(),
                opened.fox.store.clone(),
                async move {
                    let _ = rx.wait_for(|v| *v).await;
                },
            )))
        }
        None => None,
    };
    // The loop runs on this task (its futures borrow the plan; they are not spawned).
    opened
        .fox
        .run(opened.deployed, async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        })
        .await;
    if let Some(s) = server {
        let _ = s.await;
    }
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let s = settings(&cli)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()?;
    rt.block_on(async {
        match cli.command {
            Command::Plan { format } => plan_cmd(&s, format).await,
            Command::Run { listen, once, .. } => run_cmd(&s, listen, once).await,
        }
    })
}
