//! `gosling init` and `gosling add`: new Nests and new Egg and Job files.
//!
//! Answers come from flags, from prompts, or from defaults — in that order — and the file is
//! a pure function of the answers, so the same answers give the same bytes however they
//! were given (Property 7).

use crate::nest::NEST_DIRS;
use fly_types::{check, load_nest, Env, SourceFile};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Why scaffolding failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// A file could not be read or written.
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The Nest could not be read.
    #[error(transparent)]
    Load(#[from] fly_types::LoadError),
    /// The name is already taken.
    #[error("{kind} \"{name}\" already exists ({where_}); choose another name")]
    Clash {
        /// `egg` or `job`.
        kind: &'static str,
        /// The name.
        name: String,
        /// Where the existing one is.
        where_: String,
    },
    /// A value that cannot be used.
    #[error("invalid {what} `{value}`: {why}")]
    Invalid {
        /// Which answer.
        what: &'static str,
        /// The value.
        value: String,
        /// Why.
        why: String,
    },
    /// A required answer is missing and there is no terminal to ask.
    #[error("{0} is required (or run in a terminal to be asked)")]
    Missing(&'static str),
    /// The generated file would not pass `fly check`.
    #[error("the new file would not pass `fly check`:\n{0}")]
    Check(String),
    /// A prompt failed.
    #[error("prompt failed: {0}")]
    Prompt(String),
}

/// Asks questions (a terminal, or a script in tests).
pub trait Prompter {
    /// A free-text answer; an empty answer takes `default`.
    fn input(&mut self, question: &str, default: &str) -> Result<String, ScaffoldError>;
    /// One of `options`.
    fn select(
        &mut self,
        question: &str,
        options: &[&str],
        default: usize,
    ) -> Result<usize, ScaffoldError>;
}

// ---------------------------------------------------------------- init

/// One thing `init` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// A directory was created.
    Dir(String),
    /// A file was created.
    File(String),
    /// A file existed and was left alone.
    Kept(String),
    /// `git init` ran.
    GitInit,
    /// `git` is not installed; the directory is not a repository yet.
    NoGit,
}

const EXAMPLE_EGG: &str = r#"# An Egg is a pool of GitLab runners. This one runs small VMs on Yandex Cloud.
# Add more with `gosling add egg NAME`; check them with `gosling validate`.
egg "example" {
  type = "vm" // or "serverless" (jobs under 60 minutes)

  cloud {
    provider = "yandex" // or "aws"
    region   = "ru-central1-a"
  }

  resources {
    cpu    = 2
    memory = 4096 // MB
    disk   = 20 // GB
  }

  runner {
    tags       = ["docker", "linux"]
    concurrent = 2
  }

  gitlab {
    project_id   = 12345
    token_secret = "vault://gitlab/runner-token" // where the token is kept, never the token
  }
}
"#;

const EXAMPLE_JOB: &str = r#"# A Job is a cron self-management task; it runs on an egg that has all of its tags.
# Add more with `gosling add job NAME --schedule "0 3 * * *"`.
job "example-cleanup" {
  schedule = "0 3 * * *" // every day at 03:00 UTC

  runner {
    type = "vm"
    tags = ["docker"]
  }

  script = <<-EOT
    #!/bin/sh
    echo "nothing to clean up yet"
  EOT
}
"#;

const EXAMPLE_UGLYFOX: &str = r#"# UglyFox prunes runners and keeps the Apex (hot) and Nadir (cold) pools in size.
uglyfox {
  pruning {
    failed_threshold = 3
    max_age          = "24h"
    check_interval   = "5m"
  }

  apex {
    max_count = 10
    min_count = 1
  }

  nadir {
    max_count    = 5
    idle_timeout = "30m"
  }

  policies {
    rule "terminate_failing" {
      condition = "failed_count >= 3"
      action    = "terminate"
    }
  }
}
"#;

const GITIGNORE: &str =
    "# gosling's local state (the embedded store and deployment objects)\n.gosling/\n";

const PRE_COMMIT: &str = r#"# Check every commit with the Fly toolchain (https://pre-commit.com):
# `pre-commit install` once, after installing `fly` (cargo install --path . in polar-gosling).
# Or use the hooks from the polar-gosling repository itself:
#   - repo: <polar-gosling repository>
#     rev: <tag>
#     hooks:
#       - id: fly-fmt
#       - id: fly-check
repos:
  - repo: local
    hooks:
      - id: fly-fmt
        name: fly fmt
        entry: fly fmt
        language: system
        files: \.fly$
      - id: fly-check
        name: fly check
        entry: fly check
        language: system
        files: \.fly$
        pass_filenames: false
"#;

fn formatted(text: &str) -> String {
    fly_fmt::format(text).unwrap_or_else(|_| text.to_string())
}

/// The files `init` writes, relative to the Nest root, formatted.
pub fn init_files() -> Vec<(&'static str, String)> {
    vec![
        ("Eggs/example.fly", formatted(EXAMPLE_EGG)),
        ("Jobs/example.fly", formatted(EXAMPLE_JOB)),
        ("UF/uglyfox.fly", formatted(EXAMPLE_UGLYFOX)),
        (".gitignore", GITIGNORE.to_string()),
        (".pre-commit-config.yaml", PRE_COMMIT.to_string()),
    ]
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScaffoldError + '_ {
    move |source| ScaffoldError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates a Nest at `root` (Property 5): `Eggs/`, `Jobs/`, `UF/`, example files, a
/// `.gitignore`, a `.pre-commit-config.yaml`, and a git repository when `root` is not in
/// one. Never overwrites a file; returns what it did.
pub fn init(root: &Path) -> Result<Vec<Created>, ScaffoldError> {
    let mut done = Vec::new();
    if !root.exists() {
        std::fs::create_dir_all(root).map_err(io(root))?;
    }
    for d in NEST_DIRS {
        let p = root.join(d);
        if !p.is_dir() {
            std::fs::create_dir_all(&p).map_err(io(&p))?;
            done.push(Created::Dir(format!("{d}/")));
        }
    }
    for (rel, text) in init_files() {
        let p = root.join(rel);
        match write_new(&p, &text) {
            Ok(()) => done.push(Created::File(rel.to_string())),
            Err(ScaffoldError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                done.push(Created::Kept(rel.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    let in_repo = std::process::Command::new("git")
        .args(["rev-parse", "--is-inside-work-tree"])
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match in_repo {
        Ok(s) if s.success() => {}
        Ok(_) => {
            let ok = std::process::Command::new("git")
                .args(["init", "--quiet"])
                .current_dir(root)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            done.push(if ok { Created::GitInit } else { Created::NoGit });
        }
        Err(_) => done.push(Created::NoGit),
    }
    Ok(done)
}

/// Writes a new file; fails with `AlreadyExists` rather than overwrite.
pub fn write_new(path: &Path, text: &str) -> Result<(), ScaffoldError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io(path))?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io(path))
}

// ---------------------------------------------------------------- answers

/// VM or serverless.
pub const TYPES: [&str; 2] = ["vm", "serverless"];
/// Cloud providers.
pub const PROVIDERS: [&str; 2] = ["yandex", "aws"];

/// What `gosling add egg` was told by flags (each `None` is asked or defaulted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EggFlags {
    /// `--type`
    pub kind: Option<String>,
    /// `--provider`
    pub provider: Option<String>,
    /// `--region`
    pub region: Option<String>,
    /// `--project-id`
    pub project_id: Option<u64>,
    /// `--gitlab-url`
    pub gitlab_url: Option<String>,
    /// `--token-secret`
    pub token_secret: Option<String>,
    /// `--tags`
    pub tags: Option<Vec<String>>,
    /// `--cpu`
    pub cpu: Option<u32>,
    /// `--memory`
    pub memory: Option<u64>,
}

/// The complete answers for a new egg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EggAnswers {
    /// The egg's name (and file name).
    pub name: String,
    /// `vm` or `serverless`.
    pub kind: String,
    /// `yandex` or `aws`.
    pub provider: String,
    /// Region or zone.
    pub region: String,
    /// GitLab project id.
    pub project_id: u64,
    /// GitLab URL (`None`: gitlab.com).
    pub gitlab_url: Option<String>,
    /// Secret reference of the runner-creation token.
    pub token_secret: String,
    /// Job tags.
    pub tags: Vec<String>,
    /// vCPUs.
    pub cpu: u32,
    /// Memory in MB.
    pub memory: u64,
}

impl EggAnswers {
    /// The same answers as flags.
    pub fn as_flags(&self) -> EggFlags {
        EggFlags {
            kind: Some(self.kind.clone()),
            provider: Some(self.provider.clone()),
            region: Some(self.region.clone()),
            project_id: Some(self.project_id),
            gitlab_url: self.gitlab_url.clone(),
            token_secret: Some(self.token_secret.clone()),
            tags: Some(self.tags.clone()),
            cpu: Some(self.cpu),
            memory: Some(self.memory),
        }
    }
}

/// The default region of a provider.
pub fn default_region(provider: &str) -> &'static str {
    if provider == "aws" {
        "eu-west-1"
    } else {
        "ru-central1-a"
    }
}

/// Checks a name for an egg or job: lower-case letters, digits, `-` and `_`, starting with a
/// letter or digit (it is also the file name).
pub fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ScaffoldError::Invalid {
            what: "name",
            value: name.into(),
            why: "use lower-case letters, digits, `-` and `_` (at most 63), starting with a letter or digit".into(),
        })
    }
}

fn check_text(what: &'static str, value: &str) -> Result<(), ScaffoldError> {
    if value.is_empty() || value.contains(['"', '\\', '\n', '\r']) || value.contains("${") {
        return Err(ScaffoldError::Invalid {
            what,
            value: value.into(),
            why: "it must be non-empty, on one line, without `\"`, `\\` or `${`".into(),
        });
    }
    Ok(())
}

fn one_of(what: &'static str, value: &str, options: &[&str]) -> Result<(), ScaffoldError> {
    if options.contains(&value) {
        Ok(())
    } else {
        Err(ScaffoldError::Invalid {
            what,
            value: value.into(),
            why: format!("expected one of {}", options.join(", ")),
        })
    }
}

fn split_tags(s: &str) -> Vec<String> {
    s.split([',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn pick(
    p: &mut Option<&mut dyn Prompter>,
    question: &str,
    options: &[&str],
    flag: Option<String>,
    default: usize,
) -> Result<String, ScaffoldError> {
    if let Some(v) = flag {
        return Ok(v);
    }
    match p {
        Some(p) => {
            Ok(options[p.select(question, options, default)?.min(options.len() - 1)].to_string())
        }
        None => Ok(options[default].to_string()),
    }
}

fn ask(
    p: &mut Option<&mut dyn Prompter>,
    question: &str,
    flag: Option<String>,
    default: &str,
) -> Result<String, ScaffoldError> {
    // Flags are normalised as prompt answers are, so both give the same file (Property 7).
    if let Some(v) = flag {
        return Ok(v.trim().to_string());
    }
    match p {
        Some(p) => {
            let a = p.input(question, default)?;
            Ok(if a.trim().is_empty() {
                default.to_string()
            } else {
                a.trim().to_string()
            })
        }
        None => Ok(default.to_string()),
    }
}

fn ask_number<T: std::str::FromStr + ToString>(
    p: &mut Option<&mut dyn Prompter>,
    what: &'static str,
    question: &str,
    flag: Option<T>,
    default: Option<T>,
) -> Result<T, ScaffoldError> {
    if let Some(v) = flag {
        return Ok(v);
    }
    let Some(p) = p else {
        return default.ok_or(ScaffoldError::Missing(what));
    };
    // A wrong answer is asked again (three times at most).
    let mut last = String::new();
    for _ in 0..3 {
        let d = default
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let a = p.input(question, &d)?;
        let a = if a.trim().is_empty() { d } else { a };
        if a.trim().is_empty() {
            return Err(ScaffoldError::Missing(what));
        }
        match a.trim().parse::<T>() {
            Ok(v) => return Ok(v),
            Err(_) => last = a,
        }
    }
    Err(ScaffoldError::Invalid {
        what,
        value: last,
        why: "expected a number".into(),
    })
}

/// Completes the egg answers: flags first, then the prompter (when there is a terminal),
/// then defaults.
pub fn egg_answers(
    name: &str,
    flags: EggFlags,
    mut prompter: Option<&mut dyn Prompter>,
) -> Result<EggAnswers, ScaffoldError> {
    check_name(name)?;
    let p = &mut prompter;
    let kind = pick(p, "Runner type", &TYPES, flags.kind, 0)?;
    one_of("type", &kind, &TYPES)?;
    let provider = pick(p, "Cloud provider", &PROVIDERS, flags.provider, 0)?;
    one_of("provider", &provider, &PROVIDERS)?;
    let region = ask(p, "Region or zone", flags.region, default_region(&provider))?;
    check_text("region", &region)?;
    let project_id = ask_number(
        p,
        "--project-id",
        "GitLab project id",
        flags.project_id,
        None,
    )?;
    let gitlab_url = match flags.gitlab_url {
        Some(u) => Some(u.trim().to_string()),
        None => {
            let u = ask(p, "GitLab URL", None, "https://gitlab.com")?;
            (u != "https://gitlab.com").then_some(u)
        }
    };
    if let Some(u) = &gitlab_url {
        check_text("GitLab URL", u)?;
    }
    let token_secret = ask(
        p,
        "Where the runner-creation token is kept (vault://, yc-lockbox://, aws-sm://)",
        flags.token_secret,
        "vault://gitlab/runner-token",
    )?;
    check_text("token secret", &token_secret)?;
    let tags = match flags.tags {
        Some(t) => split_tags(&t.join(",")),
        None => split_tags(&ask(p, "Job tags (comma-separated)", None, "docker")?),
    };
    for t in &tags {
        check_text("tag", t)?;
    }
    let serverless = kind == "serverless";
    let cpu = ask_number(p, "--cpu", "vCPUs per runner", flags.cpu, Some(2))?;
    let memory = ask_number(
        p,
        "--memory",
        "Memory per runner (MB)",
        flags.memory,
        Some(if serverless { 2048 } else { 4096 }),
    )?;
    Ok(EggAnswers {
        name: name.into(),
        kind,
        provider,
        region,
        project_id,
        gitlab_url,
        token_secret,
        tags,
        cpu,
        memory,
    })
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|t| format!("\"{t}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The egg file for `a`, formatted.
pub fn render_egg(a: &EggAnswers) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "egg \"{}\" {{\n  type = \"{}\"\n\n  cloud {{\n    provider = \"{}\"\n    region = \"{}\"\n  }}\n\n  resources {{\n    cpu = {}\n    memory = {}\n  }}\n\n  runner {{\n    tags = {}\n  }}\n\n  gitlab {{\n",
        a.name, a.kind, a.provider, a.region, a.cpu, a.memory, list(&a.tags)
    );
    if let Some(u) = &a.gitlab_url {
        let _ = writeln!(s, "    url = \"{u}\"");
    }
    let _ = write!(
        s,
        "    project_id = {}\n    token_secret = \"{}\"\n  }}\n}}\n",
        a.project_id, a.token_secret
    );
    formatted(&s)
}

/// What `gosling add job` was told by flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFlags {
    /// `--schedule`
    pub schedule: Option<String>,
    /// `--runner-type`
    pub runner_type: Option<String>,
    /// `--tags`
    pub tags: Option<Vec<String>>,
    /// `--script`
    pub script: Option<String>,
}

/// The complete answers for a new job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobAnswers {
    /// The job's name.
    pub name: String,
    /// Cron expression.
    pub schedule: String,
    /// `vm` or `serverless`.
    pub runner_type: String,
    /// Tags the job needs.
    pub tags: Vec<String>,
    /// The script.
    pub script: String,
}

impl JobAnswers {
    /// The same answers as flags.
    pub fn as_flags(&self) -> JobFlags {
        JobFlags {
            schedule: Some(self.schedule.clone()),
            runner_type: Some(self.runner_type.clone()),
            tags: Some(self.tags.clone()),
            script: Some(self.script.clone()),
        }
    }
}

/// Completes the job answers: flags, then prompts, then defaults.
pub fn job_answers(
    name: &str,
    flags: JobFlags,
    mut prompter: Option<&mut dyn Prompter>,
) -> Result<JobAnswers, ScaffoldError> {
    check_name(name)?;
    let p = &mut prompter;
    let schedule = ask(p, "Schedule (cron, UTC)", flags.schedule, "0 3 * * *")?;
    check_text("schedule", &schedule)?;
    fly_ir::Schedule::parse(&schedule).map_err(|e| ScaffoldError::Invalid {
        what: "schedule",
        value: schedule.clone(),
        why: e.message,
    })?;
    let runner_type = pick(p, "Runner type", &TYPES, flags.runner_type, 0)?;
    one_of("runner type", &runner_type, &TYPES)?;
    let tags = match flags.tags {
        Some(t) => t,
        None => split_tags(&ask(
            p,
            "Tags the job needs (comma-separated)",
            None,
            "docker",
        )?),
    };
    for t in &tags {
        check_text("tag", t)?;
    }
    let default_script = format!("echo \"job {name}\"");
    let script = ask(
        p,
        "Script (one line; edit the file for more)",
        flags.script,
        &default_script,
    )?;
    if script.trim().is_empty() || script.lines().any(|l| l.trim() == "EOT") {
        return Err(ScaffoldError::Invalid {
            what: "script",
            value: script,
            why: "it must not be empty nor contain a line `EOT`".into(),
        });
    }
    Ok(JobAnswers {
        name: name.into(),
        schedule,
        runner_type,
        tags,
        script,
    })
}

/// The job file for `a`, formatted.
pub fn render_job(a: &JobAnswers) -> String {
    let mut s = format!(
        "job \"{}\" {{\n  schedule = \"{}\"\n\n  runner {{\n    type = \"{}\"\n    tags = {}\n  }}\n\n  script = <<-EOT\n",
        a.name,
        a.schedule,
        a.runner_type,
        list(&a.tags)
    );
    for line in a.script.lines() {
        let _ = writeln!(s, "    {line}");
    }
    s.push_str("  EOT\n}\n");
    formatted(&s)
}

// ---------------------------------------------------------------- adding

/// Where an egg or job of this name is already defined in the Nest, if anywhere.
pub fn find_existing(files: &[SourceFile], kind: &str, name: &str) -> Option<String> {
    for f in files {
        let parse = fly_syntax::parse(&f.text);
        for item in &parse.file.items {
            if let fly_syntax::ast::Item::Block(b) = item {
                if b.kind.name == kind && b.labels.first().is_some_and(|l| l.value == name) {
                    return Some(f.path.clone());
                }
            }
        }
    }
    None
}

/// Adds `text` as `DIR/NAME.fly` to the Nest at `root` after checking that the name is free
/// and that the Nest with the new file passes `fly check` (errors in the new file refuse it;
/// existing problems elsewhere are left to `gosling validate`). Returns the relative path.
pub fn add(
    root: &Path,
    kind: &'static str,
    name: &str,
    text: &str,
) -> Result<String, ScaffoldError> {
    let dir = if kind == "egg" { "Eggs" } else { "Jobs" };
    let rel = format!("{dir}/{name}.fly");
    let path = root.join(&rel);
    let files = load_nest(root)?;
    if let Some(at) = find_existing(&files, kind, name) {
        return Err(ScaffoldError::Clash {
            kind,
            name: name.into(),
            where_: at,
        });
    }
    if path.exists() {
        return Err(ScaffoldError::Clash {
            kind,
            name: name.into(),
            where_: format!("the file {rel} exists"),
        });
    }
    let mut all = files;
    all.push(SourceFile::new(rel.clone(), text));
    let c = check(all, &Env::from_process(false));
    if let Some(new) = c.files.iter().find(|f| f.path == rel) {
        let errors: Vec<String> = new
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| format!("  {rel}: {}", d.message))
            .collect();
        if !errors.is_empty() {
            return Err(ScaffoldError::Check(errors.join("\n")));
        }
    }
    write_new(&path, text)?;
    Ok(rel)
}
