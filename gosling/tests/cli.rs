//! End-to-end runs of the `gosling` binary on the embedded store in temporary directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn nest(&self) -> PathBuf {
        self.dir.path().join("nest")
    }
    /// Runs gosling in `cwd` with a clean environment (HOME and config inside the temp dir).
    fn run_in(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gosling"));
        cmd.args(args)
            .current_dir(cwd)
            .env("HOME", self.dir.path().join("home"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("home/.config"))
            .env("NO_COLOR", "1");
        for (k, _) in std::env::vars() {
            if k.starts_with("GOSLING_") {
                cmd.env_remove(k);
            }
        }
        cmd.output().expect("gosling runs")
    }
    fn run(&self, args: &[&str]) -> Output {
        self.run_in(&self.nest(), args)
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "gosling {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }
    fn init(&self) {
        let out = self.run_in(self.dir.path(), &["init", "--path", "nest"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn init_creates_the_nest_and_never_overwrites() {
    // Property 5: Nest Initialization Structure.
    let env = Env::new();
    let out = env.run_in(env.dir.path(), &["init", "--path", "nest"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for d in ["Eggs", "Jobs", "UF"] {
        assert!(env.nest().join(d).is_dir(), "{d}/ missing");
        assert!(stdout.contains(&format!("created nest/{d}/")), "{stdout}");
    }
    for f in [
        "Eggs/example.fly",
        "Jobs/example.fly",
        "UF/uglyfox.fly",
        ".gitignore",
        ".pre-commit-config.yaml",
    ] {
        assert!(env.nest().join(f).is_file(), "{f} missing");
    }
    let hooks = std::fs::read_to_string(env.nest().join(".pre-commit-config.yaml")).unwrap();
    assert!(hooks.contains("id: fly-fmt") && hooks.contains("id: fly-check"));
    assert!(std::fs::read_to_string(env.nest().join(".gitignore"))
        .unwrap()
        .contains(".gosling/"));
    if Command::new("git").arg("--version").output().is_ok() {
        assert!(env.nest().join(".git").is_dir(), "git init did not run");
    }
    // The examples pass the checker.
    let v = env.run(&["validate"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
    assert!(text(&v.stderr).contains("checked 3 files: 0 errors, 0 warnings"));

    // A second init keeps what exists.
    std::fs::write(env.nest().join("Eggs/example.fly"), "# mine\n").unwrap();
    let again = env.run_in(env.dir.path(), &["init", "--path", "nest"]);
    assert!(again.status.success());
    assert!(text(&again.stdout).contains("kept    nest/Eggs/example.fly"));
    assert_eq!(
        std::fs::read_to_string(env.nest().join("Eggs/example.fly")).unwrap(),
        "# mine\n"
    );
}

#[test]
fn add_writes_checked_files_and_refuses_clashes() {
    let env = Env::new();
    env.init();
    let out = env.ok(&[
        "add",
        "egg",
        "my-app",
        "--type",
        "serverless",
        "--provider",
        "aws",
        "--project-id",
        "77",
        "--tags",
        "docker,small",
        "--memory",
        "1024",
    ]);
    assert_eq!(out.trim(), "created Eggs/my-app.fly");
    env.ok(&[
        "add",
        "job",
        "nightly",
        "--schedule",
        "0 1 * * *",
        "--tags",
        "small",
    ]);
    let v = env.run(&["validate"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));

    let clash = env.run(&["add", "egg", "my-app", "--project-id", "1", "--no-input"]);
    assert_eq!(clash.status.code(), Some(2));
    assert!(text(&clash.stderr).contains("egg \"my-app\" already exists"));
    let clash = env.run(&["add", "egg", "example", "--project-id", "1", "--no-input"]);
    assert!(text(&clash.stderr).contains("already exists (Eggs/example.fly)"));
    let clash = env.run(&["add", "job", "example-cleanup", "--no-input"]);
    assert!(text(&clash.stderr).contains("already exists"));

    let missing = env.run(&["add", "egg", "other", "--no-input"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("--project-id is required"));
    let bad = env.run(&["add", "egg", "Bad Name", "--project-id", "1", "--no-input"]);
    assert!(text(&bad.stderr).contains("invalid name"));
    let bad = env.run(&["add", "job", "j", "--schedule", "61 * * * *", "--no-input"]);
    assert!(
        text(&bad.stderr).contains("invalid schedule"),
        "{}",
        text(&bad.stderr)
    );
    // A serverless egg too big for serverless fails the checker: nothing is written.
    let big = env.run(&[
        "add",
        "egg",
        "huge",
        "--type",
        "serverless",
        "--cpu",
        "16",
        "--project-id",
        "1",
        "--no-input",
    ]);
    assert_eq!(big.status.code(), Some(2));
    assert!(
        text(&big.stderr).contains("would not pass `fly check`"),
        "{}",
        text(&big.stderr)
    );
    assert!(!env.nest().join("Eggs/huge.fly").exists());
}

#[test]
fn validate_matches_fly_check() {
    // Property 6: invalid configuration is rejected, exactly as `fly check` rejects it.
    let env = Env::new();
    env.init();
    std::fs::write(
        env.nest().join("Eggs/bad.fly"),
        "egg \"bad\" {\n  type = \"spaceship\"\n  cpu 2\n}\n",
    )
    .unwrap();
    let g = env.run(&["validate"]);
    assert_eq!(g.status.code(), Some(1));
    let fly = Path::new(env!("CARGO_BIN_EXE_gosling")).with_file_name("fly");
    assert!(
        fly.exists(),
        "the `fly` binary is built by `cargo test --workspace` (or `cargo build --bin fly`)"
    );
    let f = Command::new(&fly)
        .arg("check")
        .current_dir(env.nest())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(f.status.code(), g.status.code());
    assert_eq!(text(&f.stderr), text(&g.stderr));
    assert_eq!(text(&f.stdout), text(&g.stdout));
    let gj = env.run(&["validate", "--format", "json"]);
    let fj = Command::new(&fly)
        .args(["check", "--format", "json"])
        .current_dir(env.nest())
        .output()
        .unwrap();
    assert_eq!(text(&fj.stdout), text(&gj.stdout));
    assert!(text(&gj.stdout).contains("\"severity\""));

    // From a subdirectory, the Nest is found above.
    let sub = env.run_in(&env.nest().join("Eggs"), &["validate"]);
    assert_eq!(sub.status.code(), Some(1));

    // Outside a Nest.
    let out = env.run_in(env.dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("Run 'gosling init' first"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run_in(env.dir.path(), &["deploy"]);
    assert!(text(&out.stderr).contains("Run 'gosling init' first"));
}

#[test]
fn init_add_deploy_status_rollback() {
    let env = Env::new();
    env.init();
    let state = env.nest().join(".gosling");

    // Property 24: a dry run of the first deployment creates nothing at all.
    let dry = env.ok(&["deploy", "--dry-run"]);
    assert!(dry.contains("Plan: 3 to add"), "{dry}");
    assert!(dry.contains("Dry run: nothing was written."));
    assert!(!state.exists(), "dry run created {}", state.display());

    env.ok(&[
        "add",
        "egg",
        "my-app",
        "--provider",
        "yandex",
        "--project-id",
        "12345",
        "--no-input",
    ]);
    let out = env.ok(&["deploy"]);
    assert!(out.contains("Applied deployment v1: 4 added"), "{out}");
    assert!(out.contains("webhook registration was skipped"), "{out}");
    let status = env.ok(&["status"]);
    assert!(status.starts_with("Deployment v1"), "{status}");
    assert!(
        status.contains("my-app") && status.contains("example-cleanup"),
        "{status}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "--output", "json"])).unwrap();
    assert_eq!(json["deployment"]["version"], 1);
    assert_eq!(json["eggs"].as_array().unwrap().len(), 2);
    assert_eq!(json["jobs"][0]["name"], "example-cleanup");
    assert!(json["jobs"][0]["next_run"].is_string());
    assert_eq!(json["eggs"][1]["config_hash"].as_str().unwrap().len(), 64);

    // Nothing changed: no new version.
    assert!(env.ok(&["deploy"]).contains("No changes"));

    // Change an egg; the dry run shows it and leaves the store byte-identical.
    let egg = env.nest().join("Eggs/my-app.fly");
    let text_before = std::fs::read_to_string(&egg).unwrap();
    std::fs::write(&egg, text_before.replace("cpu    = 2", "cpu    = 4")).unwrap();
    let before = snapshot(&state);
    let dry = env.ok(&["deploy", "--dry-run"]);
    assert!(dry.contains("~ egg \"my-app\""), "{dry}");
    assert!(dry.contains("~ resources.cpu = 2 -> 4"), "{dry}");
    assert_eq!(snapshot(&state), before, "the dry run changed the store");
    let plan_json: serde_json::Value =
        serde_json::from_str(&env.ok(&["deploy", "--dry-run", "--json"])).unwrap();
    assert_eq!(plan_json["items"][0]["action"], "change");
    assert_eq!(snapshot(&state), before);

    let out = env.ok(&["deploy"]);
    assert!(
        out.contains("Applied deployment v2: 0 added, 1 changed"),
        "{out}"
    );

    // Property 25: rollback restores v1 from its stored IR, even with the Nest broken.
    std::fs::write(env.nest().join("Eggs/broken.fly"), "egg {").unwrap();
    let out = env.ok(&["rollback"]);
    assert!(out.contains("v1 is current again"), "{out}");
    assert!(out.contains("~ resources.cpu = 4 -> 2"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "--output", "json"])).unwrap();
    assert_eq!(json["deployment"]["version"], 1);
    assert_eq!(json["history"][0]["status"], "rolled_back");
    let hash_v1 = json["eggs"][1]["config_hash"].clone();

    // A broken Nest is not deployed.
    let bad = env.run(&["deploy"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("nothing was deployed"));
    std::fs::remove_file(env.nest().join("Eggs/broken.fly")).unwrap();

    // Forward again to v2, then errors.
    assert!(env
        .ok(&["rollback", "--to", "2"])
        .contains("v2 is current again"));
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "--output", "json"])).unwrap();
    assert_ne!(json["eggs"][1]["config_hash"], hash_v1);
    let again = env.run(&["rollback", "--to", "2"]);
    assert!(text(&again.stderr).contains("already current"));
    let none = env.run(&["rollback", "--to", "9"]);
    assert!(text(&none.stderr).contains("there is no deployment 000009"));
}

#[test]
fn every_command_has_an_example_in_its_help() {
    let env = Env::new();
    for args in [
        vec!["--help"],
        vec!["init", "--help"],
        vec!["add", "egg", "--help"],
        vec!["add", "job", "--help"],
        vec!["validate", "--help"],
        vec!["deploy", "--help"],
        vec!["rollback", "--help"],
        vec!["status", "--help"],
    ] {
        let out = env.run_in(env.dir.path(), &args);
        let help = text(&out.stdout);
        assert!(
            help.contains("Example"),
            "no example in `gosling {}`",
            args.join(" ")
        );
    }
    // Secrets given through the environment are not shown by --help.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gosling"));
    let out = cmd
        .args(["deploy", "--help"])
        .env("GOSLING_GITLAB_TOKEN", "glpat-supersecret")
        .output()
        .unwrap();
    assert!(!text(&out.stdout).contains("supersecret"));
}

#[test]
fn settings_come_from_flags_env_and_config_file() {
    let env = Env::new();
    env.init();
    let elsewhere = env.dir.path().join("elsewhere");
    let cfg = env.dir.path().join("gosling.toml");
    std::fs::write(
        &cfg,
        format!(
            "state = \"sqlite://{}/state.db\"\nobjects = \"{}/objects\"\n",
            elsewhere.display(),
            elsewhere.display()
        ),
    )
    .unwrap();
    let out = env.ok(&["--config", cfg.to_str().unwrap(), "deploy"]);
    assert!(
        out.contains(&format!("State: sqlite://{}/state.db", elsewhere.display())),
        "{out}"
    );
    assert!(elsewhere.join("state.db").exists());
    assert!(!env.nest().join(".gosling").exists());
    // A flag wins over the file.
    let flag_db = env.dir.path().join("flag.db");
    let out = env.ok(&[
        "--config",
        cfg.to_str().unwrap(),
        "--state",
        &format!("sqlite://{}", flag_db.display()),
        "status",
    ]);
    assert!(out.contains("Nothing is deployed yet"), "{out}");
    // The native YDB adapter is built in; with no YDB there, deploy says where it tried.
    #[cfg(feature = "ydb")]
    {
        let bad = env.run(&[
            "--state",
            "ydb://127.0.0.1:1/local?secure=false&timeout=1",
            "deploy",
        ]);
        assert!(!bad.status.success());
        assert!(
            text(&bad.stderr).contains("connecting to grpc://127.0.0.1:1/local"),
            "{}",
            text(&bad.stderr)
        );
    }
}

#[test]
fn deploy_registers_webhooks_through_the_binary() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/api/v4/projects/4242/hooks"))
            .and(header("PRIVATE-TOKEN", "glpat-e2e"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/v4/projects/4242/hooks"))
            .and(header("PRIVATE-TOKEN", "glpat-e2e"))
            .respond_with(
                ResponseTemplate::new(201).set_body_json(serde_json::json!({"id": 1, "url": "x"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        server
    });
    let env = Env::new();
    std::fs::create_dir_all(env.nest().join("Eggs")).unwrap();
    env.ok(&[
        "add",
        "egg",
        "hooked",
        "--project-id",
        "4242",
        "--gitlab-url",
        &server.uri(),
        "--no-input",
    ]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gosling"));
    let out = cmd
        .args(["deploy", "--webhook-url", "https://mg.example.com/hook"])
        .current_dir(env.nest())
        .env("HOME", env.dir.path().join("home"))
        .env("XDG_CONFIG_HOME", env.dir.path().join("home/.config"))
        .env("GOSLING_GITLAB_TOKEN", "glpat-e2e")
        .env_remove("GOSLING_STATE_KEY")
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("+ webhook on project 4242"), "{stdout}");
    assert!(!stdout.contains("skipped"), "{stdout}");
    // No key was configured: one is created outside the Nest, readable by its owner only.
    let key = env.dir.path().join("home/.config/gosling/state.key");
    assert!(key.is_file(), "{stderr}");
    assert!(
        stderr.contains("created the state encryption key"),
        "{stderr}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(!stdout.contains("glpat-e2e") && !stderr.contains("glpat-e2e"));
    let reqs = rt.block_on(server.received_requests()).unwrap();
    assert_eq!(
        reqs.iter().filter(|r| r.method.as_str() == "POST").count(),
        1
    );
}

#[test]
fn deploy_status_rollback_on_dynamodb_and_s3() {
    let moto = gosling_standins::Moto::start();
    let state = format!(
        "dynamodb://gosling?endpoint={}&region=us-east-1",
        moto.endpoint
    );
    let objects = format!(
        "s3://gosling-objects/nest?endpoint={}&region=us-east-1",
        moto.endpoint
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opts = gosling_state::OpenOptions {
            read_only: false,
            credentials: Some(gosling_standins::Moto::credentials()),
        };
        let s3 = gosling_state::open_s3(&objects, &opts)
            .await
            .unwrap()
            .unwrap();
        s3.create_bucket().await.unwrap();
    });
    let env = Env::new();
    env.init();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gosling"));
        let out = cmd
            .args(["--state", &state, "--objects", &objects])
            .args(args)
            .current_dir(env.nest())
            .env("HOME", env.dir.path().join("home"))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gosling {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    assert!(run(&["deploy", "--dry-run"]).contains("Plan: 3 to add"));
    assert!(run(&["deploy"]).contains("Applied deployment v1"));
    env.ok(&["add", "egg", "second", "--project-id", "9", "--no-input"]);
    assert!(run(&["deploy"]).contains("Applied deployment v2: 1 added"));
    let status = run(&["status"]);
    assert!(
        status.starts_with("Deployment v2") && status.contains("second"),
        "{status}"
    );
    assert!(run(&["rollback"]).contains("v1 is current again"));
    let json: serde_json::Value =
        serde_json::from_str(&run(&["status", "--output", "json"])).unwrap();
    assert_eq!(json["deployment"]["version"], 1);
    assert_eq!(json["eggs"].as_array().unwrap().len(), 1);
    assert!(
        !env.nest().join(".gosling").exists(),
        "nothing local with remote stores"
    );
}
