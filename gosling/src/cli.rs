//! The `gosling` command line.

use crate::deploy::{self, Context, DeployOutcome, Status};
use crate::gitlab::Retry;
use crate::nest;
use crate::plan;
use crate::scaffold::{self, Created, EggFlags, JobFlags, Prompter, ScaffoldError};
use crate::settings::{self, Given, Settings};
use clap::{Args, Parser, Subcommand, ValueEnum};
use fly_lsp::cli::report;
use fly_types::{compile, load_nest, Env};
use gosling_state::{open_objects, open_state, ObjectStore, OpenOptions, StateStore};
use miette::{miette, IntoDiagnostic, Result, WrapErr};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status: findings (Nest errors), as `fly check`.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit status: usage, I/O, store or network trouble.
pub const EXIT_TROUBLE: u8 = 2;

/// GitLab runners as code: create a Nest, add Eggs and Jobs, validate, deploy, roll back.
#[derive(Parser)]
#[command(
    name = "gosling",
    version,
    about,
    after_help = "Example:\n  gosling init --path my-nest && cd my-nest\n  gosling add egg my-app --provider yandex --project-id 12345\n  gosling deploy --dry-run && gosling deploy && gosling status"
)]
struct Cli {
    /// The Nest [default: the current directory or the nearest parent with Eggs/, Jobs/ or UF/].
    #[arg(long, global = true, env = "GOSLING_NEST")]
    nest: Option<PathBuf>,
    /// Config file [default: ~/.config/gosling/config.toml].
    #[arg(long, global = true, env = "GOSLING_CONFIG")]
    config: Option<PathBuf>,
    /// State store: sqlite://PATH, dynamodb://PREFIX?region=…&endpoint=…, ydb://HOST[:PORT]/DATABASE?prefix=… [default: sqlite://NEST/.gosling/state.db].
    #[arg(long, global = true, env = "GOSLING_STATE")]
    state: Option<String>,
    /// Object store: a directory or s3://BUCKET/PREFIX?region=…&endpoint=… [default: NEST/.gosling/objects].
    #[arg(long, global = true, env = "GOSLING_OBJECTS")]
    objects: Option<String>,
    /// No progress display.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a Nest: Eggs/, Jobs/, UF/, examples, .gitignore, pre-commit hooks, git.
    #[command(after_help = "Example:\n  gosling init --path my-nest")]
    Init(InitArgs),
    /// Add an Egg or a Job.
    #[command(subcommand)]
    Add(AddCommand),
    /// Check the whole Nest (the same diagnostics and exit codes as `fly check`).
    #[command(after_help = "Example:\n  gosling validate\n  gosling validate --format json")]
    Validate(ValidateArgs),
    /// Compile the Nest, show the plan, and apply it (or only show it with --dry-run).
    #[command(
        after_help = "Examples:\n  gosling deploy --dry-run\n  GOSLING_GITLAB_TOKEN=glpat-… gosling deploy --webhook-url https://mothergoose.example.com/webhooks/gitlab"
    )]
    Deploy(DeployArgs),
    /// Make an earlier deployment current again (from its stored IR).
    #[command(after_help = "Examples:\n  gosling rollback\n  gosling rollback --to 3")]
    Rollback(RollbackArgs),
    /// Show the current deployment, eggs, jobs, runners and history.
    #[command(after_help = "Examples:\n  gosling status\n  gosling status --output json")]
    Status(StatusArgs),
    /// Print the webhook secret MotherGoose checks (creating it if there is none), for
    /// setting a GitLab hook up by hand.
    #[command(
        name = "webhook-secret",
        after_help = "Example:\n  gosling webhook-secret   # paste it as the hook's Secret token in GitLab"
    )]
    WebhookSecret(KeyArgs),
    /// Keep the value of a secret reference of the Nest (e.g. the `token_secret` of an egg)
    /// encrypted in the state store, for executors that have no Vault or Lockbox.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Create the admin token for MotherGoose's management endpoints (shown once).
    #[command(
        name = "admin-token",
        after_help = "Examples:\n  gosling admin-token\n  gosling admin-token --rotate   # the old token stops working"
    )]
    AdminToken(AdminTokenArgs),
    /// Runner mode: install, configure, update and supervise the GitLab Runner agent of
    /// this runner and report its health to MotherGoose (or run one self-management job).
    #[command(
        after_help = "Examples:\n  RUNNER_ID=runner-abc123 EGG_NAME=my-app GOSLING_MOTHERGOOSE_URL=https://mothergoose.example.com GOSLING_RUNNER_CREDENTIAL=… gosling runner\n  gosling runner --runner-id runner-abc123 --egg-name my-app --metrics-interval 30s --update-check-interval 5m\n  gosling runner --config runner.json --agent-path ./gitlab-runner --work-dir ./runner   # air-gapped\n  gosling runner --runner-id job-x --job rotate-tokens"
    )]
    Runner(gosling_runner::RunnerArgs),
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Store the value of REFERENCE, read from standard input.
    #[command(
        after_help = "Example:\n  printf %s \"$GITLAB_TOKEN\" | gosling secret set vault://gitlab/runner-token"
    )]
    Set(SecretSetArgs),
}

#[derive(Args)]
struct SecretSetArgs {
    /// The reference as the Nest writes it (`vault://…`, `yc-lockbox://…`, `aws-sm://…`).
    reference: String,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args, Clone)]
struct KeyArgs {
    /// File with the state encryption key (or set GOSLING_STATE_KEY) [default: ~/.config/gosling/state.key].
    #[arg(long, env = "GOSLING_STATE_KEY_FILE")]
    state_key_file: Option<PathBuf>,
}

#[derive(Args)]
struct AdminTokenArgs {
    /// Replace the token (the old one stops working at once).
    #[arg(long)]
    rotate: bool,
}

#[derive(Args)]
struct InitArgs {
    /// Where to create the Nest.
    #[arg(long, default_value = ".")]
    path: PathBuf,
}

#[derive(Subcommand)]
enum AddCommand {
    /// Add an Egg (a runner pool) as Eggs/NAME.fly.
    #[command(
        after_help = "Example:\n  gosling add egg my-app --type vm --provider yandex --region ru-central1-a --project-id 12345 --tags docker,linux"
    )]
    Egg(AddEggArgs),
    /// Add a Job (a cron self-management task) as Jobs/NAME.fly.
    #[command(
        after_help = "Example:\n  gosling add job rotate-tokens --schedule \"0 2 * * *\" --tags docker --script \"gosling rotate-tokens --all\""
    )]
    Job(AddJobArgs),
}

#[derive(Args)]
struct AddEggArgs {
    /// The egg's name (lower-case letters, digits, `-`, `_`).
    name: String,
    /// Runner type.
    #[arg(long = "type", value_parser = ["vm", "serverless"])]
    kind: Option<String>,
    /// Cloud provider.
    #[arg(long, value_parser = ["yandex", "aws"])]
    provider: Option<String>,
    /// Region or zone [default: ru-central1-a on yandex, eu-west-1 on aws].
    #[arg(long)]
    region: Option<String>,
    /// GitLab project id.
    #[arg(long)]
    project_id: Option<u64>,
    /// GitLab URL [default: https://gitlab.com].
    #[arg(long)]
    gitlab_url: Option<String>,
    /// Where the runner-creation token is kept [default: vault://gitlab/runner-token].
    #[arg(long)]
    token_secret: Option<String>,
    /// Job tags, comma-separated [default: docker].
    #[arg(long, value_delimiter = ',')]
    tags: Option<Vec<String>>,
    /// vCPUs per runner [default: 2].
    #[arg(long)]
    cpu: Option<u32>,
    /// Memory per runner in MB [default: 4096, serverless 2048].
    #[arg(long)]
    memory: Option<u64>,
    /// Never ask; use defaults for what the flags do not say.
    #[arg(long)]
    no_input: bool,
}

#[derive(Args)]
struct AddJobArgs {
    /// The job's name.
    name: String,
    /// Cron schedule in UTC [default: "0 3 * * *"].
    #[arg(long)]
    schedule: Option<String>,
    /// Runner type the job needs.
    #[arg(long, value_parser = ["vm", "serverless"])]
    runner_type: Option<String>,
    /// Tags the job needs, comma-separated [default: docker].
    #[arg(long, value_delimiter = ',')]
    tags: Option<Vec<String>>,
    /// The script [default: echo "job NAME"].
    #[arg(long)]
    script: Option<String>,
    /// Never ask; use defaults for what the flags do not say.
    #[arg(long)]
    no_input: bool,
}

#[derive(Args)]
struct ValidateArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = report::Format::Human)]
    format: report::Format,
}

#[derive(Args, Clone)]
struct GitLabArgs {
    /// GitLab API token for registering webhooks (Maintainer on the egg projects).
    #[arg(long, env = "GOSLING_GITLAB_TOKEN", hide_env_values = true)]
    gitlab_token: Option<String>,
    /// The URL GitLab sends job events to (MotherGoose's webhook endpoint).
    #[arg(long, env = "GOSLING_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// The webhook secret [default: the stored one, or a new one stored encrypted].
    #[arg(long, env = "GOSLING_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// File with the state encryption key (or set GOSLING_STATE_KEY) [default: ~/.config/gosling/state.key].
    #[arg(long, env = "GOSLING_STATE_KEY_FILE")]
    state_key_file: Option<PathBuf>,
}

#[derive(Args)]
struct DeployArgs {
    /// Show the plan and write nothing at all.
    #[arg(long)]
    dry_run: bool,
    /// Print the plan as JSON on standard output instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    gitlab: GitLabArgs,
}

#[derive(Args)]
struct RollbackArgs {
    /// The version to make current [default: the one before the current one].
    #[arg(long)]
    to: Option<u64>,
    #[command(flatten)]
    gitlab: GitLabArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

#[derive(Args)]
struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

/// Runs `gosling` with the process's arguments; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Runner(args) = cli.command {
        // Runner mode runs on a multi-threaded runtime of its own.
        return match gosling_runner::run(args) {
            Ok(outcome) => ExitCode::from(outcome.code),
            Err(e) => {
                eprintln!("{:?}", miette!("{e}"));
                ExitCode::from(EXIT_TROUBLE)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_TROUBLE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(EXIT_TROUBLE)
        }
    }
}

struct Ui {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl Ui {
    fn new(quiet: bool) -> Ui {
        // Progress only when a person watches; piped output stays quiet and parseable.
        let watched = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let bar = (!quiet && watched).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(100));
            b
        });
        Ui { bar, quiet }
    }
    fn progress(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
        }
    }
    fn note(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.println(format!("note: {msg}")),
            None => eprintln!("note: {msg}"),
        }
    }
    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Init(a) => init(&a.path),
        Command::Add(AddCommand::Egg(a)) => add_egg(cli.nest.as_deref(), a),
        Command::Add(AddCommand::Job(a)) => add_job(cli.nest.as_deref(), a),
        Command::Validate(a) => validate(cli.nest.as_deref(), a.format),
        Command::Deploy(a) => {
            let (root, s) = settings(&cli.nest, &cli.config, &cli.state, &cli.objects, &a.gitlab)?;
            deploy_cmd(&root, &s, a.dry_run, a.json, cli.quiet).await
        }
        Command::Rollback(a) => {
            let (root, s) = settings(&cli.nest, &cli.config, &cli.state, &cli.objects, &a.gitlab)?;
            rollback_cmd(&root, &s, a.to, cli.quiet).await
        }
        Command::Status(a) => {
            let (_, s) = settings(
                &cli.nest,
                &cli.config,
                &cli.state,
                &cli.objects,
                &key_only(None),
            )?;
            status_cmd(&s, a.output).await
        }
        Command::WebhookSecret(k) => {
            let g = key_only(k.state_key_file);
            let (root, s) = settings(&cli.nest, &cli.config, &cli.state, &cli.objects, &g)?;
            webhook_secret_cmd(&root, &s, cli.quiet).await
        }
        Command::Secret(SecretCommand::Set(a)) => {
            let g = key_only(a.key.state_key_file);
            let (root, s) = settings(&cli.nest, &cli.config, &cli.state, &cli.objects, &g)?;
            secret_set_cmd(&root, &s, &a.reference, cli.quiet).await
        }
        Command::Runner(_) => Err(miette!("runner mode starts before this runtime")),
        Command::AdminToken(a) => {
            let (_, s) = settings(
                &cli.nest,
                &cli.config,
                &cli.state,
                &cli.objects,
                &key_only(None),
            )?;
            admin_token_cmd(&s, a.rotate).await
        }
    }
}

fn key_only(state_key_file: Option<PathBuf>) -> GitLabArgs {
    GitLabArgs {
        gitlab_token: None,
        webhook_url: None,
        webhook_secret: None,
        state_key_file,
    }
}

async fn webhook_secret_cmd(root: &Path, s: &Settings, quiet: bool) -> Result<ExitCode> {
    let ui = Ui::new(quiet);
    let (store, objects) = open(s, false).await?;
    let (progress, note) = (|m: &str| ui.progress(m), |m: &str| ui.note(m));
    let ctx = context(root, s, &*store, &*objects, &progress, &note);
    let secret = deploy::webhook_secret(&ctx).await.map_err(deploy_err)?;
    ui.done();
    println!("{}", secret.expose());
    Ok(ExitCode::SUCCESS)
}

async fn secret_set_cmd(
    root: &Path,
    s: &Settings,
    reference: &str,
    quiet: bool,
) -> Result<ExitCode> {
    if !["vault://", "yc-lockbox://", "aws-sm://"]
        .iter()
        .any(|p| reference.starts_with(p) && reference.len() > p.len())
    {
        return Err(miette!(
            help =
                "write it as the Nest does: vault://PATH/KEY, yc-lockbox://ID/KEY or aws-sm://NAME",
            "`{reference}` is not a secret reference"
        ));
    }
    let mut value = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut value).into_diagnostic()?;
    let value = value.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(miette!(
            help = "pipe the value in on standard input",
            "no value was given"
        ));
    }
    let ui = Ui::new(quiet);
    let (store, objects) = open(s, false).await?;
    let (progress, note) = (|m: &str| ui.progress(m), |m: &str| ui.note(m));
    let ctx = context(root, s, &*store, &*objects, &progress, &note);
    let cipher = deploy::state_cipher(&ctx).map_err(deploy_err)?;
    gosling_fleet::secrets::put_reference(
        &*store,
        &cipher,
        reference,
        &gosling_state::SecretString::new(value),
    )
    .await
    .map_err(|e| miette!("{e}"))?;
    ui.done();
    println!("stored `{reference}` encrypted in {}", store.describe());
    Ok(ExitCode::SUCCESS)
}

async fn admin_token_cmd(s: &Settings, rotate: bool) -> Result<ExitCode> {
    let (store, _objects) = open(s, false).await?;
    let admin = gosling_fleet::credentials::ADMIN_TOKEN;
    let token = if rotate {
        Some(admin.rotate(&*store).await.map_err(|e| miette!("{e}"))?)
    } else {
        admin.ensure(&*store).await.map_err(|e| miette!("{e}"))?
    };
    match token {
        Some(t) => {
            println!("{}", t.expose());
            eprintln!(
                "This is MotherGoose's admin token (`Authorization: Bearer …`). It is shown once: \
                 only its hash is stored."
            );
        }
        None => eprintln!(
            "An admin token exists already and cannot be shown again (only its hash is stored); \
             `gosling admin-token --rotate` replaces it."
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn find_nest(explicit: Option<&Path>) -> Result<PathBuf> {
    nest::find(explicit).map_err(|e| miette!("{e}"))
}

fn settings(
    nest_flag: &Option<PathBuf>,
    config: &Option<PathBuf>,
    state: &Option<String>,
    objects: &Option<String>,
    g: &GitLabArgs,
) -> Result<(PathBuf, Settings)> {
    let root = find_nest(nest_flag.as_deref())?;
    let file = settings::read_config(config.as_deref()).map_err(|e| miette!("{e}"))?;
    let given = Given {
        state: state.clone(),
        objects: objects.clone(),
        gitlab_token: g.gitlab_token.clone(),
        webhook_url: g.webhook_url.clone(),
        webhook_secret: g.webhook_secret.clone(),
        state_key_file: g.state_key_file.clone(),
        state_key: std::env::var(gosling_state::KEY_ENV).ok(),
    };
    let s = Settings::resolve(given, file, &root);
    Ok((root, s))
}

fn init(path: &Path) -> Result<ExitCode> {
    let done = scaffold::init(path).map_err(scaffold_err)?;
    let shown = path.display();
    for d in &done {
        match d {
            Created::Dir(p) | Created::File(p) => println!("created {shown}/{p}"),
            Created::Kept(p) => println!("kept    {shown}/{p} (it exists; not overwritten)"),
            Created::GitInit => println!("ran     git init in {shown}"),
            Created::NoGit => println!("skipped git init: `git` was not found"),
        }
    }
    println!(
        "\nThe Nest is ready. Next: `gosling add egg NAME --project-id ID`, `gosling validate`, `gosling deploy`."
    );
    Ok(ExitCode::SUCCESS)
}

struct Terminal;

impl Prompter for Terminal {
    fn input(&mut self, question: &str, default: &str) -> Result<String, ScaffoldError> {
        let mut input = dialoguer::Input::<String>::new().with_prompt(question);
        if !default.is_empty() {
            input = input.default(default.to_string());
        }
        input
            .interact_text()
            .map_err(|e| ScaffoldError::Prompt(e.to_string()))
    }
    fn select(
        &mut self,
        question: &str,
        options: &[&str],
        default: usize,
    ) -> Result<usize, ScaffoldError> {
        dialoguer::Select::new()
            .with_prompt(question)
            .items(options)
            .default(default)
            .interact()
            .map_err(|e| ScaffoldError::Prompt(e.to_string()))
    }
}

fn interactive(no_input: bool) -> bool {
    !no_input && std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn add_egg(nest_flag: Option<&Path>, a: AddEggArgs) -> Result<ExitCode> {
    let root = find_nest(nest_flag)?;
    let flags = EggFlags {
        kind: a.kind,
        provider: a.provider,
        region: a.region,
        project_id: a.project_id,
        gitlab_url: a.gitlab_url,
        token_secret: a.token_secret,
        tags: a.tags,
        cpu: a.cpu,
        memory: a.memory,
    };
    let mut term = Terminal;
    let prompter: Option<&mut dyn Prompter> = if interactive(a.no_input) {
        Some(&mut term)
    } else {
        None
    };
    let answers = scaffold::egg_answers(&a.name, flags, prompter).map_err(scaffold_err)?;
    let rel = scaffold::add(&root, "egg", &a.name, &scaffold::render_egg(&answers))
        .map_err(scaffold_err)?;
    println!("created {rel}");
    Ok(ExitCode::SUCCESS)
}

fn add_job(nest_flag: Option<&Path>, a: AddJobArgs) -> Result<ExitCode> {
    let root = find_nest(nest_flag)?;
    let flags = JobFlags {
        schedule: a.schedule,
        runner_type: a.runner_type,
        tags: a.tags,
        script: a.script,
    };
    let mut term = Terminal;
    let prompter: Option<&mut dyn Prompter> = if interactive(a.no_input) {
        Some(&mut term)
    } else {
        None
    };
    let answers = scaffold::job_answers(&a.name, flags, prompter).map_err(scaffold_err)?;
    let rel = scaffold::add(&root, "job", &a.name, &scaffold::render_job(&answers))
        .map_err(scaffold_err)?;
    println!("created {rel}");
    Ok(ExitCode::SUCCESS)
}

fn scaffold_err(e: ScaffoldError) -> miette::Report {
    match &e {
        ScaffoldError::Missing(flag) => miette!(
            help = format!("pass {flag}, or run in a terminal to be asked"),
            "{e}"
        ),
        ScaffoldError::Clash { .. } => miette!(
            help = "`gosling status` and the Nest's files show the names in use",
            "{e}"
        ),
        ScaffoldError::Io { .. } => miette!(help = "check that you may write there", "{e}"),
        _ => miette!("{e}"),
    }
}

fn deploy_err(e: deploy::DeployError) -> miette::Report {
    use deploy::DeployError as E;
    use gosling_state::StateError as S;
    let help = match &e {
        E::State(S::Io { .. }) | E::State(S::Sqlite { .. }) => {
            "check that you may write the store's folder, or choose another store with --state"
        }
        E::State(S::Remote { .. }) => {
            "check the store URL, the network and the AWS credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE)"
        }
        E::State(S::Crypto(_)) => {
            "set GOSLING_STATE_KEY or GOSLING_STATE_KEY_FILE to the key the secrets were stored with"
        }
        E::State(S::Conflict { .. }) => "someone else changed the state at the same time: run the command again",
        E::GitLab(_) | E::Failed { .. } => {
            "fix the cause and run `gosling deploy` again; `gosling status` shows the history"
        }
        E::Stored { .. } => "the object store lost or changed this deployment's IR; deploy again from the Nest",
        _ => "`gosling status` shows the deployments",
    };
    miette!(help = help, "{e}")
}

fn validate(nest_flag: Option<&Path>, format: report::Format) -> Result<ExitCode> {
    let root = match nest::find(nest_flag) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_TROUBLE));
        }
    };
    let files = load_nest(&root).into_diagnostic()?;
    let compilation = fly_types::check(files, &Env::from_process(false));
    let errors = report::print(&compilation, format)?;
    Ok(if errors > 0 {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::SUCCESS
    })
}

async fn open(
    s: &Settings,
    read_only: bool,
) -> Result<(Box<dyn StateStore>, Box<dyn ObjectStore>)> {
    let opts = OpenOptions {
        read_only,
        credentials: None,
    };
    let store = open_state(&s.state, &opts)
        .await
        .map_err(|e| miette!("{e}"))
        .wrap_err("cannot open the state store")?;
    let objects = open_objects(&s.objects, &opts)
        .await
        .map_err(|e| miette!("{e}"))
        .wrap_err("cannot open the object store")?;
    Ok((store, objects))
}

fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "someone".into());
    format!("gosling:{user}")
}

fn context<'a>(
    root: &Path,
    s: &Settings,
    store: &'a dyn StateStore,
    objects: &'a dyn ObjectStore,
    progress: &'a (dyn Fn(&str) + Sync),
    note: &'a (dyn Fn(&str) + Sync),
) -> Context<'a> {
    Context {
        store,
        objects,
        nest: root.to_path_buf(),
        gitlab_token: s.gitlab_token.clone(),
        webhook_url: s.webhook_url.clone(),
        webhook_secret: s.webhook_secret.clone(),
        state_key: s.state_key.clone(),
        state_key_file: s.state_key_file.clone(),
        retry: Retry::default(),
        actor: actor(),
        progress,
        note,
    }
}

async fn deploy_cmd(
    root: &Path,
    s: &Settings,
    dry_run: bool,
    json: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let ui = Ui::new(quiet || json);
    ui.progress("compiling the Nest");
    let files = load_nest(root).into_diagnostic()?;
    let compilation = compile(files, &Env::from_process(true));
    let Some(ir) = &compilation.ir else {
        ui.done();
        report::print(&compilation, report::Format::Human)?;
        eprintln!("nothing was deployed: fix the errors above (`gosling validate` shows them)");
        return Ok(ExitCode::from(EXIT_FINDINGS));
    };
    let (store, objects) = open(s, dry_run).await?;
    let progress = |m: &str| ui.progress(m);
    let note = |m: &str| ui.note(m);
    let ctx = context(root, s, &*store, &*objects, &progress, &note);
    let outcome = deploy::deploy(&ctx, ir, dry_run).await;
    ui.done();
    let outcome = outcome.map_err(deploy_err)?;
    let print_plan = |p: &plan::Plan, to: Option<u64>| {
        if json {
            println!("{}", serde_json::to_string_pretty(p).unwrap_or_default());
        } else {
            print!("{}", plan::render(p, to));
        }
    };
    match outcome {
        DeployOutcome::DryRun(p) => {
            print_plan(&p, None);
            if !json {
                println!("\nDry run: nothing was written.");
            }
        }
        DeployOutcome::NoChanges(p) => print_plan(&p, None),
        DeployOutcome::Applied {
            version,
            plan: p,
            webhooks,
        } => {
            print_plan(&p, Some(version));
            if !json {
                let (a, c, r) = p.counts();
                println!(
                    "\nApplied deployment v{version}: {a} added, {c} changed, {r} destroyed. State: {}",
                    store.describe()
                );
                if !webhooks {
                    println!(
                        "GitLab webhook registration was skipped: no GitLab settings (set GOSLING_GITLAB_TOKEN and \
                         --webhook-url or GOSLING_WEBHOOK_URL to register job-event webhooks)."
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn rollback_cmd(root: &Path, s: &Settings, to: Option<u64>, quiet: bool) -> Result<ExitCode> {
    let ui = Ui::new(quiet);
    let (store, objects) = open(s, false).await?;
    let progress = |m: &str| ui.progress(m);
    let note = |m: &str| ui.note(m);
    let ctx = context(root, s, &*store, &*objects, &progress, &note);
    let out = deploy::rollback(&ctx, to).await;
    ui.done();
    let out = out.map_err(deploy_err)?;
    print!("{}", plan::render(&out.plan, Some(out.to)));
    println!(
        "\nRolled back: v{} is current again (v{} is marked rolled_back).",
        out.to, out.from
    );
    Ok(ExitCode::SUCCESS)
}

async fn status_cmd(s: &Settings, output: OutputFormat) -> Result<ExitCode> {
    let (store, _objects) = open(s, true).await?;
    let st = deploy::status(&*store, chrono::Utc::now())
        .await
        .map_err(deploy_err)?;
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&st).into_diagnostic()?),
        OutputFormat::Table => print!("{}", render_status(&st, &store.describe())),
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt_time(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

/// The status as a table.
fn render_status(st: &Status, store: &str) -> String {
    let mut s = String::new();
    match &st.deployment {
        None => {
            s.push_str("Nothing is deployed yet. Run `gosling deploy`.\n");
            s.push_str(&format!("State: {store}\n"));
            return s;
        }
        Some(d) => s.push_str(&format!(
            "Deployment v{} (applied {}, current since {})\nState: {store}\n",
            d.version,
            fmt_time(&d.applied_at),
            fmt_time(&Some(d.current_since))
        )),
    }
    s.push_str(&format!("\nEggs ({})\n", st.eggs.len()));
    let rows: Vec<Vec<String>> = st
        .eggs
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                e.kind.clone(),
                e.provider.clone(),
                e.region.clone(),
                e.config_hash.chars().take(12).collect(),
                format!("v{}", e.deployment_version),
            ]
        })
        .collect();
    s.push_str(&table(
        &[
            "NAME",
            "TYPE",
            "PROVIDER",
            "REGION",
            "CONFIG HASH",
            "CHANGED IN",
        ],
        &rows,
    ));
    s.push_str(&format!("\nJobs ({})\n", st.jobs.len()));
    let rows: Vec<Vec<String>> = st
        .jobs
        .iter()
        .map(|j| {
            vec![
                j.name.clone(),
                j.schedule.clone(),
                fmt_time(&j.next_run),
                fmt_time(&j.last_run),
                j.status.clone(),
            ]
        })
        .collect();
    s.push_str(&table(
        &["NAME", "SCHEDULE", "NEXT RUN", "LAST RUN", "STATUS"],
        &rows,
    ));
    s.push_str("\nRunners: ");
    if st.runners.is_empty() {
        s.push_str("none yet\n");
    } else {
        let parts: Vec<String> = st.runners.iter().map(|(k, v)| format!("{v} {k}")).collect();
        s.push_str(&parts.join(", "));
        s.push('\n');
    }
    s.push_str(&crate::fleet_view::render(
        &st.fleet,
        chrono::Utc::now(),
        table,
    ));
    s.push_str("\nHistory\n");
    let rows: Vec<Vec<String>> = st
        .history
        .iter()
        .take(10)
        .map(|h| {
            vec![
                format!("v{}", h.version),
                h.status.clone(),
                fmt_time(&Some(h.created_at)),
                h.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    s.push_str(&table(&["VERSION", "STATUS", "CREATED", "ERROR"], &rows));
    s
}
