//! A fake `tofu` for the OpenTofu path's tests: the same command line and exit codes as
//! the real one for the commands Polar Gosling runs, with the clouds and the S3 backend
//! replaced by files under `FAKE_TOFU_HOME`.
//!
//! What it does, like the real one (only what the tests rely on):
//! - `version [-json]`;
//! - `init [-lockfile=readonly]`: needs `*.tf` files and, for the `s3` backend, AWS
//!   credentials in the environment (`AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY`, or
//!   `AWS_PROFILE`); installs each `required_providers` entry from the `filesystem_mirror`
//!   of the CLI config (`TF_CLI_CONFIG_FILE`), else from its `plugin_cache_dir`, else
//!   "downloads" it into that cache; writes `.terraform.lock.hcl` (refused with
//!   `-lockfile=readonly` when the lock file does not match the configuration);
//! - `plan -out=FILE [-destroy] [-detailed-exitcode]`: compares the `resource` blocks
//!   and a fingerprint of the configuration and of the `TF_VAR_*` values with the state,
//!   writes the plan file, exits 2 on changes with `-detailed-exitcode`;
//! - `apply FILE`: refuses a missing plan file, and a stale one (the state changed since
//!   the plan: "Saved plan is stale"); creates or destroys the planned resources, each
//!   with a cloud id (`i-…` for `aws_instance`, `fhm…` for `yandex_compute_instance`);
//!   `apply -refresh-only -auto-approve` reads each resource's status back from the
//!   "cloud" (`cloud.json`: a test may mark an id `stopped` or remove it);
//! - `destroy -auto-approve`; `show -json` (the state, as `values.root_module.resources`);
//!   `output -json` (each `output "NAME" { value = TYPE.NAME.ATTRIBUTE }` of the
//!   configuration whose resource exists).
//!
//! Every invocation appends one JSON line to `FAKE_TOFU_HOME/log.jsonl`: its arguments,
//! its whole environment, its working directory, the files in it (relative paths,
//! recursively) and what it did (`events`). `FAKE_TOFU_HOME/control.json` can make a
//! command fail: `{"fail": {"apply": {"message": "…", "times": 1, "when_config_contains":
//! "…"}}}` (`times` absent: every time), or wait first: `{"sleep": {"plan": 5}}`. The
//! state of each backend `key` is in `FAKE_TOFU_HOME/states/`.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The variable that names the fake's folder.
pub const HOME_ENV: &str = "FAKE_TOFU_HOME";

/// The fake's version.
pub const VERSION: &str = "1.8.9";

/// One logged invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// Its arguments (without the program name).
    pub args: Vec<String>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// Its whole environment.
    pub env: BTreeMap<String, String>,
    /// The files in its working directory before it ran, relative, `/`-separated, sorted.
    pub files: Vec<String>,
    /// What it did (`downloaded PROVIDER VERSION`, `mirror …`, `created ADDRESS ID`, …).
    pub events: Vec<String>,
    /// Its exit status.
    pub exit: i32,
}

impl Invocation {
    /// The command (`init`, `plan`, …).
    pub fn command(&self) -> &str {
        self.args.first().map(String::as_str).unwrap_or("")
    }
}

/// The test side of the fake: its folder, its log, its control file, its "cloud".
#[derive(Clone, Debug)]
pub struct FakeTofu {
    home: PathBuf,
}

impl FakeTofu {
    /// A fake whose files live in `home` (created).
    pub fn new(home: &Path) -> FakeTofu {
        let _ = std::fs::create_dir_all(home.join("states"));
        FakeTofu {
            home: home.to_path_buf(),
        }
    }

    /// Its folder (the value of [`HOME_ENV`]).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The `fake-tofu` executable next to the running test's directory
    /// (`target/<profile>/fake-tofu`); it is built by `cargo test -p gosling-standins`
    /// (whose own tests run it) or `cargo build -p gosling-standins --bin fake-tofu`.
    pub fn binary() -> Option<PathBuf> {
        let exe = std::env::current_exe().ok()?;
        let mut dir = exe.parent()?;
        if dir.ends_with("deps") {
            dir = dir.parent()?;
        }
        let path = dir.join(format!("fake-tofu{}", std::env::consts::EXE_SUFFIX));
        path.is_file().then_some(path)
    }

    /// Every invocation so far, oldest first.
    pub fn log(&self) -> Vec<Invocation> {
        let text = std::fs::read_to_string(self.home.join("log.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| Invocation {
                args: strings(&v["args"]),
                cwd: PathBuf::from(v["cwd"].as_str().unwrap_or("")),
                env: v["env"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                files: strings(&v["files"]),
                events: strings(&v["events"]),
                exit: v["exit"].as_i64().unwrap_or(-1) as i32,
            })
            .collect()
    }

    /// Makes `command` fail with `message` (`times`: that many times, `None`: always;
    /// `when_config_contains`: only when a `.tf` file contains that text).
    pub fn fail(
        &self,
        command: &str,
        message: &str,
        times: Option<u32>,
        when_config_contains: Option<&str>,
    ) {
        let mut control = read_json(&self.home.join("control.json"));
        let mut rule = json!({ "message": message });
        if let Some(t) = times {
            rule["times"] = json!(t);
        }
        if let Some(c) = when_config_contains {
            rule["when_config_contains"] = json!(c);
        }
        control["fail"][command] = rule;
        write_json(&self.home.join("control.json"), &control);
    }

    /// Makes `command` wait `seconds` before it does anything (a hung cloud API).
    pub fn sleep(&self, command: &str, seconds: f64) {
        let mut control = read_json(&self.home.join("control.json"));
        control["sleep"][command] = json!(seconds);
        write_json(&self.home.join("control.json"), &control);
    }

    /// Clears every failure rule.
    pub fn heal(&self) {
        let _ = std::fs::remove_file(self.home.join("control.json"));
    }

    /// The "cloud": resource id → status (`running`, `stopped`, …).
    pub fn cloud(&self) -> BTreeMap<String, String> {
        read_json(&self.home.join("cloud.json"))
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets a resource's status in the "cloud" (`None`: it is gone, as if deleted by hand).
    pub fn set_cloud(&self, id: &str, status: Option<&str>) {
        let path = self.home.join("cloud.json");
        let mut cloud = read_json(&path);
        if !cloud.is_object() {
            cloud = json!({});
        }
        match status {
            Some(s) => cloud[id] = json!(s),
            None => {
                if let Some(m) = cloud.as_object_mut() {
                    m.remove(id);
                }
            }
        }
        write_json(&path, &cloud);
    }

    /// The state stored for backend key `key`, if any.
    pub fn state(&self, key: &str) -> Option<Value> {
        let text = std::fs::read_to_string(state_path(&self.home, key)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn read_json(path: &Path) -> Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}))
}

fn write_json(path: &Path, v: &Value) {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

fn state_path(home: &Path, key: &str) -> PathBuf {
    let name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    home.join("states").join(format!("{name}.json"))
}

fn fingerprint(parts: &[String]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// A failed command: its message (printed as `Error: …`) and exit status.
struct Fail(String, i32);

fn fail<T>(msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail(msg.into(), 1))
}

/// What one invocation works with.
struct Run {
    home: PathBuf,
    cwd: PathBuf,
    args: Vec<String>,
    events: Vec<String>,
    stdout: String,
}

/// The `fake-tofu` program.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(home) = std::env::var_os(HOME_ENV).map(PathBuf::from) else {
        eprintln!("fake-tofu: {HOME_ENV} is not set");
        return ExitCode::from(125);
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let files = list_files(&cwd);
    let mut run = Run {
        home,
        cwd,
        args,
        events: Vec::new(),
        stdout: String::new(),
    };
    let code = match run.dispatch() {
        Ok(code) => code,
        Err(Fail(msg, code)) => {
            eprintln!("\nError: {msg}\n");
            code
        }
    };
    print!("{}", run.stdout);
    let env: Map<String, Value> = std::env::vars().map(|(k, v)| (k, json!(v))).collect();
    let line = json!({
        "args": run.args, "cwd": run.cwd, "env": env, "files": files,
        "events": run.events, "exit": code,
    });
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.home.join("log.jsonl"))
    {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn list_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

/// A `required_providers` entry: `name = { source = "ns/type", version = "…" }`.
#[derive(Clone, Debug)]
struct Required {
    source: String,
    constraint: String,
}

impl Required {
    fn address(&self) -> String {
        format!("registry.opentofu.org/{}", self.source)
    }

    /// The version it resolves to: the constraint's first version, padded to x.y.z.
    fn version(&self) -> String {
        let v: String = self
            .constraint
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts: Vec<&str> = v.split('.').filter(|p| !p.is_empty()).collect();
        while parts.len() < 3 {
            parts.push("0");
        }
        parts.join(".")
    }
}

/// The quoted value of `name = "…"` on `line`, if there.
fn attr(line: &str, name: &str) -> Option<String> {
    let at = line
        .find(&format!("{name} "))
        .or_else(|| line.find(&format!("{name}=")))?;
    let before = &line[..at];
    if before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let rest = line[at + name.len()..].trim_start().strip_prefix('=')?;
    let rest = rest.trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

impl Run {
    fn flag(&self, name: &str) -> bool {
        self.args
            .iter()
            .any(|a| a == name || a == &format!("{name}=true"))
    }

    fn value(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.args
            .iter()
            .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
    }

    fn positional(&self) -> Option<String> {
        self.args
            .iter()
            .skip(1)
            .find(|a| !a.starts_with('-'))
            .cloned()
    }

    fn config(&self) -> Result<String, Fail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.cwd)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "tf"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        if names.is_empty() {
            return fail(format!(
                "No configuration files\n\nthe directory {} contains no OpenTofu configuration files",
                self.cwd.display()
            ));
        }
        let mut text = String::new();
        for n in names {
            text.push_str(&std::fs::read_to_string(&n).unwrap_or_default());
            text.push('\n');
        }
        Ok(text)
    }

    fn backend_key(config: &str) -> Result<String, Fail> {
        let Some(at) = config.find("backend \"s3\"") else {
            return Ok("local".into());
        };
        let block = &config[at..];
        let end = block.find("\n  }").unwrap_or(block.len());
        let block = &block[..end];
        if !block.lines().any(|l| attr(l, "bucket").is_some()) {
            return fail("The backend \"s3\" needs a bucket");
        }
        block
            .lines()
            .find_map(|l| attr(l, "key"))
            .ok_or_else(|| Fail("The backend \"s3\" needs a key".into(), 1))
    }

    fn required(config: &str) -> Vec<Required> {
        config
            .lines()
            .filter_map(|l| {
                Some(Required {
                    source: attr(l, "source")?,
                    constraint: attr(l, "version")?,
                })
            })
            .collect()
    }

    fn resources(config: &str) -> Vec<(String, String)> {
        config
            .lines()
            .filter_map(|l| {
                let rest = l.trim_start().strip_prefix("resource \"")?;
                let (ty, rest) = rest.split_once('"')?;
                let name = rest.trim_start().strip_prefix('"')?.split('"').next()?;
                Some((ty.to_string(), name.to_string()))
            })
            .collect()
    }

    fn load_state(&self, key: &str) -> Value {
        let v = read_json(&state_path(&self.home, key));
        if v.get("lineage").is_some() {
            v
        } else {
            json!({ "lineage": fingerprint(&[key.to_string()]), "serial": 0, "resources": [], "fingerprint": "" })
        }
    }

    fn save_state(&self, key: &str, state: &Value) {
        write_json(&state_path(&self.home, key), state);
    }

    fn check_fail(&mut self, command: &str) -> Result<(), Fail> {
        let path = self.home.join("control.json");
        let mut control = read_json(&path);
        if let Some(secs) = control["sleep"][command].as_f64() {
            self.events.push(format!("slept before {command}"));
            std::thread::sleep(std::time::Duration::from_secs_f64(secs.clamp(0.0, 600.0)));
        }
        let Some(rule) = control["fail"].get(command).cloned() else {
            return Ok(());
        };
        if let Some(needle) = rule["when_config_contains"].as_str() {
            if !self.config().unwrap_or_default().contains(needle) {
                return Ok(());
            }
        }
        if let Some(times) = rule["times"].as_u64() {
            if times == 0 {
                return Ok(());
            }
            control["fail"][command]["times"] = json!(times - 1);
            write_json(&path, &control);
        }
        self.events.push(format!("injected failure of {command}"));
        fail(
            rule["message"]
                .as_str()
                .unwrap_or("injected failure")
                .to_string(),
        )
    }

    fn dispatch(&mut self) -> Result<i32, Fail> {
        let command = self.args.first().cloned().unwrap_or_default();
        match command.as_str() {
            "version" | "-version" | "--version" => {
                if self.flag("-json") {
                    self.stdout = format!(
                        "{}\n",
                        json!({"terraform_version": VERSION, "platform": "linux_amd64"})
                    );
                } else {
                    self.stdout = format!("OpenTofu v{VERSION}\non linux_amd64\n");
                }
                Ok(0)
            }
            "init" => {
                self.check_fail("init")?;
                self.init()
            }
            "plan" => {
                self.check_fail("plan")?;
                self.plan()
            }
            "apply" => {
                self.check_fail("apply")?;
                if self.flag("-refresh-only") {
                    self.refresh()
                } else {
                    self.apply()
                }
            }
            "destroy" => {
                self.check_fail("destroy")?;
                self.destroy()
            }
            "show" => self.show(),
            "output" => self.output(),
            other => fail(format!("fake-tofu does not know the command `{other}`")),
        }
    }

    fn initialized(&self) -> Result<(), Fail> {
        if self.cwd.join(".terraform").is_dir() {
            Ok(())
        } else {
            Err(Fail(
                "Backend initialization required, please run \"tofu init\"".into(),
                1,
            ))
        }
    }

    fn cli_config(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        let Some(path) = std::env::var_os("TF_CLI_CONFIG_FILE") else {
            return (None, None);
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let cache = text
            .lines()
            .find_map(|l| attr(l, "plugin_cache_dir"))
            .map(PathBuf::from);
        let mirror = text
            .find("filesystem_mirror")
            .and_then(|at| text[at..].lines().find_map(|l| attr(l, "path")))
            .map(PathBuf::from);
        (cache, mirror)
    }

    fn init(&mut self) -> Result<i32, Fail> {
        let config = self.config()?;
        let key = Self::backend_key(&config)?;
        if key != "local" {
            let has = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
            let keys = has("AWS_ACCESS_KEY_ID") && has("AWS_SECRET_ACCESS_KEY");
            if !(keys || has("AWS_PROFILE")) {
                return fail("No valid credential sources found for the S3 backend");
            }
        }
        let required = Self::required(&config);
        let lock_path = self.cwd.join(".terraform.lock.hcl");
        let lock = std::fs::read_to_string(&lock_path).ok();
        if self.flag("-lockfile=readonly") {
            let lock = lock.clone().unwrap_or_default();
            for r in &required {
                let block = format!("provider \"{}\"", r.address());
                let matches = lock.find(&block).is_some_and(|at| {
                    let rest = &lock[at..];
                    let rest = &rest[..rest.find("\n}").unwrap_or(rest.len())];
                    rest.contains(&format!("constraints = \"{}\"", r.constraint))
                });
                if !matches {
                    return fail(format!(
                        "Provider dependency changes detected: the lock file does not match the configuration for {} (run init without -lockfile=readonly)",
                        r.address()
                    ));
                }
            }
        }
        let (cache, mirror) = self.cli_config();
        let platform = "linux_amd64";
        let providers_dir = self.cwd.join(".terraform/providers");
        let mut lock_text = String::from(
            "# This file is maintained automatically by \"tofu init\".\n# Manual edits may be lost in future updates.\n",
        );
        for r in &required {
            let version = r.version();
            let (_, ty) = r.source.split_once('/').unwrap_or(("", &r.source));
            let rel = format!(
                "{}/{version}/{platform}/terraform-provider-{ty}_v{version}",
                r.address()
            );
            let content = format!("fake provider {} {version} {platform}\n", r.address());
            let from_mirror = mirror
                .as_ref()
                .map(|m| m.join(&rel))
                .filter(|p| p.is_file());
            let from_cache = cache.as_ref().map(|c| c.join(&rel)).filter(|p| p.is_file());
            if let Some(path) = &from_mirror {
                // Like the real one: a package must match the hash the lock file records.
                let recorded = lock.as_deref().and_then(|l| {
                    let at = l.find(&format!("provider \"{}\"", r.address()))?;
                    let rest = &l[at..];
                    let h = rest.find("\"h1:")?;
                    Some(rest[h + 4..].split('"').next()?.to_string())
                });
                let found = std::fs::read_to_string(path).unwrap_or_default();
                if recorded.is_some_and(|h| h != fingerprint(&[found])) {
                    return fail(format!(
                        "Failed to install provider\n\nError while installing {} v{version}: the local package for {} {version} doesn't match any of the checksums previously recorded in the dependency lock file",
                        r.address(),
                        r.address()
                    ));
                }
                self.events
                    .push(format!("mirror {} {version}", r.address()));
            } else if from_cache.is_some() {
                self.events.push(format!("cache {} {version}", r.address()));
            } else {
                self.events
                    .push(format!("downloaded {} {version}", r.address()));
                if let Some(c) = &cache {
                    let p = c.join(&rel);
                    if let Some(parent) = p.parent() {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    let _ = std::fs::write(&p, &content);
                }
            }
            let p = providers_dir.join(&rel);
            if let Some(parent) = p.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(&p, &content);
            lock_text.push_str(&format!(
                "\nprovider \"{}\" {{\n  version     = \"{version}\"\n  constraints = \"{}\"\n  hashes = [\n    \"h1:{}\",\n  ]\n}}\n",
                r.address(),
                r.constraint,
                fingerprint(&[content])
            ));
        }
        if lock.as_deref() != Some(lock_text.as_str()) && !self.flag("-lockfile=readonly") {
            let _ = std::fs::write(&lock_path, &lock_text);
        }
        let _ = std::fs::create_dir_all(self.cwd.join(".terraform"));
        let _ = std::fs::write(
            self.cwd.join(".terraform/terraform.tfstate"),
            json!({"version": 3, "backend": {"type": "s3", "config": {"key": key}}}).to_string(),
        );
        self.stdout = "\nOpenTofu has been successfully initialized!\n".into();
        Ok(0)
    }

    /// The configuration's fingerprint: its text and every `TF_VAR_*` value.
    fn desired(&self, config: &str) -> String {
        let mut parts = vec![config.to_string()];
        let mut vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("TF_VAR_"))
            .collect();
        vars.sort();
        parts.extend(vars.into_iter().map(|(k, v)| format!("{k}={v}")));
        fingerprint(&parts)
    }

    fn plan(&mut self) -> Result<i32, Fail> {
        self.initialized()?;
        let config = self.config()?;
        let key = Self::backend_key(&config)?;
        let state = self.load_state(&key);
        let in_state: Vec<String> = state["resources"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["address"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let destroy = self.flag("-destroy");
        let wanted: Vec<String> = Self::resources(&config)
            .into_iter()
            .map(|(t, n)| format!("{t}.{n}"))
            .collect();
        let fp = self.desired(&config);
        let (add, change, remove) = if destroy {
            (0, 0, in_state.len())
        } else {
            let add = wanted.iter().filter(|a| !in_state.contains(a)).count();
            let remove = in_state.iter().filter(|a| !wanted.contains(a)).count();
            let change = if state["fingerprint"].as_str() != Some(fp.as_str()) {
                wanted.iter().filter(|a| in_state.contains(a)).count()
            } else {
                0
            };
            (add, change, remove)
        };
        if let Some(out) = self.value("-out") {
            let plan = json!({
                "fake_tofu_plan": 1, "lineage": state["lineage"], "serial": state["serial"],
                "destroy": destroy, "resources": wanted, "fingerprint": fp, "key": key,
            });
            let path = self.cwd.join(out);
            std::fs::write(&path, plan.to_string())
                .map_err(|e| Fail(format!("Failed to write plan file: {e}"), 1))?;
        }
        let changes = add + change + remove > 0;
        self.stdout = if changes {
            format!("\nPlan: {add} to add, {change} to change, {remove} to destroy.\n")
        } else {
            "\nNo changes. Your infrastructure matches the configuration.\n".into()
        };
        self.events
            .push(format!("plan add={add} change={change} destroy={remove}"));
        Ok(if changes && self.flag("-detailed-exitcode") {
            2
        } else {
            0
        })
    }

    fn new_id(ty: &str, seed: &str) -> String {
        let h = fingerprint(&[
            seed.to_string(),
            format!("{:?}", std::time::SystemTime::now()),
        ]);
        match ty {
            "aws_instance" => format!("i-0{}", &h[..16]),
            "yandex_compute_instance" => format!("fhm{}", &h[..16]),
            _ => format!("{ty}-{}", &h[..12]),
        }
    }

    fn resource_values(ty: &str, id: &str, status: &str) -> Value {
        match ty {
            "aws_instance" => {
                json!({ "id": id, "instance_state": status, "private_ip": "10.0.0.10" })
            }
            "yandex_compute_instance" => {
                json!({ "id": id, "status": status, "network_interface": [{"ip_address": "10.128.0.10"}] })
            }
            _ => json!({ "id": id }),
        }
    }

    fn cloud_path(&self) -> PathBuf {
        self.home.join("cloud.json")
    }

    fn apply(&mut self) -> Result<i32, Fail> {
        self.initialized()?;
        let Some(file) = self.positional() else {
            if self.flag("-auto-approve") {
                return fail("fake-tofu only applies saved plans (apply PLANFILE)");
            }
            return fail("No saved plan given and input is disabled");
        };
        let path = self.cwd.join(&file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Fail(
                format!("Failed to load \"{file}\" as a plan file\n\nError: stat {file}: {e}"),
                1,
            )
        })?;
        let plan: Value = serde_json::from_str(&text)
            .ok()
            .filter(|p: &Value| p["fake_tofu_plan"] == 1)
            .ok_or_else(|| Fail(format!("Failed to load \"{file}\" as a plan file"), 1))?;
        let config = self.config()?;
        let key = Self::backend_key(&config)?;
        if plan["key"].as_str() != Some(key.as_str()) {
            return fail("The plan was created for a different backend");
        }
        let mut state = self.load_state(&key);
        if plan["lineage"] != state["lineage"] || plan["serial"] != state["serial"] {
            return fail(
                "Saved plan is stale\n\nThe given plan file can no longer be applied because the state was changed by another operation after the plan was created.",
            );
        }
        let mut cloud = read_json(&self.cloud_path());
        if !cloud.is_object() {
            cloud = json!({});
        }
        let old: Vec<Value> = state["resources"].as_array().cloned().unwrap_or_default();
        let mut new = Vec::new();
        let wanted = if plan["destroy"] == true {
            Vec::new()
        } else {
            strings(&plan["resources"])
        };
        for r in &old {
            let addr = r["address"].as_str().unwrap_or("");
            if wanted.iter().any(|w| w == addr) {
                new.push(r.clone());
            } else if let Some(id) = r["values"]["id"].as_str() {
                if let Some(m) = cloud.as_object_mut() {
                    m.remove(id);
                }
                self.events.push(format!("destroyed {addr} {id}"));
            }
        }
        for addr in &wanted {
            if old
                .iter()
                .any(|r| r["address"].as_str() == Some(addr.as_str()))
            {
                continue;
            }
            let (ty, name) = addr.split_once('.').unwrap_or((addr, ""));
            let id = Self::new_id(ty, addr);
            cloud[&id] = json!("running");
            self.events.push(format!("created {addr} {id}"));
            new.push(json!({
                "address": addr, "mode": "managed", "type": ty, "name": name,
                "values": Self::resource_values(ty, &id, "running"),
            }));
        }
        let destroyed = new.is_empty();
        state["resources"] = Value::Array(new);
        state["serial"] = json!(state["serial"].as_u64().unwrap_or(0) + 1);
        state["fingerprint"] = if destroyed {
            json!("")
        } else {
            plan["fingerprint"].clone()
        };
        write_json(&self.cloud_path(), &cloud);
        self.save_state(&key, &state);
        self.stdout = "\nApply complete!\n".into();
        Ok(0)
    }

    fn refresh(&mut self) -> Result<i32, Fail> {
        self.initialized()?;
        let config = self.config()?;
        let key = Self::backend_key(&config)?;
        let mut state = self.load_state(&key);
        let cloud = read_json(&self.cloud_path());
        let old: Vec<Value> = state["resources"].as_array().cloned().unwrap_or_default();
        let mut new = Vec::new();
        for mut r in old.clone() {
            let id = r["values"]["id"].as_str().unwrap_or("").to_string();
            match cloud.get(&id).and_then(Value::as_str) {
                Some(status) => {
                    let ty = r["type"].as_str().unwrap_or("").to_string();
                    r["values"] = Self::resource_values(&ty, &id, status);
                    new.push(r);
                }
                None => self.events.push(format!("refresh: {id} is gone")),
            }
        }
        if new != old {
            state["resources"] = Value::Array(new);
            state["serial"] = json!(state["serial"].as_u64().unwrap_or(0) + 1);
            self.save_state(&key, &state);
        }
        self.stdout = "\nApply complete! Resources: 0 added, 0 changed, 0 destroyed.\n".into();
        Ok(0)
    }

    fn destroy(&mut self) -> Result<i32, Fail> {
        self.initialized()?;
        let config = self.config()?;
        let key = Self::backend_key(&config)?;
        let mut state = self.load_state(&key);
        let mut cloud = read_json(&self.cloud_path());
        let old: Vec<Value> = state["resources"].as_array().cloned().unwrap_or_default();
        for r in &old {
            if let (Some(id), Some(m)) = (r["values"]["id"].as_str(), cloud.as_object_mut()) {
                m.remove(id);
                self.events.push(format!(
                    "destroyed {} {id}",
                    r["address"].as_str().unwrap_or("")
                ));
            }
        }
        if !old.is_empty() {
            state["resources"] = json!([]);
            state["fingerprint"] = json!("");
            state["serial"] = json!(state["serial"].as_u64().unwrap_or(0) + 1);
            self.save_state(&key, &state);
            write_json(&self.cloud_path(), &cloud);
        }
        self.stdout = format!("\nDestroy complete! Resources: {} destroyed.\n", old.len());
        Ok(0)
    }

    fn show(&mut self) -> Result<i32, Fail> {
        if !self.flag("-json") {
            return fail("fake-tofu only shows -json");
        }
        if let Some(file) = self.positional() {
            let text = std::fs::read_to_string(self.cwd.join(&file)).map_err(|e| {
                Fail(
                    format!("Failed to read the given file as a state or plan file: {e}"),
                    1,
                )
            })?;
            self.stdout = format!("{{\"format_version\":\"1.2\",\"fake_plan\":{text}}}\n");
            return Ok(0);
        }
        self.initialized()?;
        let config = self.config()?;
        let key = Self::backend_key(&config)?;
        let state = self.load_state(&key);
        let resources = state["resources"].as_array().cloned().unwrap_or_default();
        let out = if resources.is_empty() {
            json!({ "format_version": "1.0" })
        } else {
            json!({
                "format_version": "1.0", "terraform_version": VERSION,
                "values": { "root_module": { "resources": resources } },
            })
        };
        self.stdout = format!("{out}\n");
        Ok(0)
    }

    fn output(&mut self) -> Result<i32, Fail> {
        if !self.flag("-json") {
            return fail("fake-tofu only prints outputs with -json");
        }
        self.initialized()?;
        let config = self.config()?;
        let key = Self::backend_key(&config)?;
        let state = self.load_state(&key);
        let mut out = Map::new();
        let mut lines = config.lines();
        while let Some(line) = lines.next() {
            let Some(rest) = line.trim_start().strip_prefix("output \"") else {
                continue;
            };
            let name = rest.split('"').next().unwrap_or("").to_string();
            let Some(expr) = lines
                .by_ref()
                .take_while(|l| l.trim() != "}")
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("value")
                        .map(|v| v.trim_start().trim_start_matches('=').trim().to_string())
                })
            else {
                continue;
            };
            let mut parts = expr.splitn(3, '.');
            let (Some(ty), Some(rname), Some(attr)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let address = format!("{ty}.{rname}");
            let found = state["resources"].as_array().and_then(|a| {
                a.iter()
                    .find(|r| r["address"].as_str() == Some(address.as_str()))
                    .map(|r| r["values"][attr].clone())
            });
            if let Some(v) = found.filter(|v| !v.is_null()) {
                out.insert(
                    name,
                    json!({ "sensitive": false, "type": "string", "value": v }),
                );
            }
        }
        self.stdout = format!("{}\n", Value::Object(out));
        Ok(0)
    }
}
