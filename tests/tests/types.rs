//! The checker's corpus, as data: every `.fly` file under `fixtures/types` (and every
//! directory there, checked as one multi-file Nest) carries its expected diagnostics as
//! annotations. `#~ F1005: text` expects a diagnostic with code F1005 whose message
//! contains `text`, on the nearest line above that is not an annotation. Every diagnostic
//! must be expected and every expectation met.

use fly_tests::{fixtures, fly_files};
use fly_types::{compile, Env, SourceFile};
use std::path::Path;

#[derive(Debug, PartialEq, Eq, Clone)]
struct Expect {
    file: String,
    line: u32,
    code: String,
    text: String,
}

fn expectations(file: &SourceFile) -> Vec<Expect> {
    let mut out = Vec::new();
    let mut target = 0u32;
    for (i, line) in file.text.lines().enumerate() {
        match line.trim_start().strip_prefix("#~") {
            Some(rest) => {
                let (code, text) = rest.trim().split_once(':').expect("`#~ CODE: text`");
                out.push(Expect {
                    file: file.path.clone(),
                    line: target,
                    code: code.trim().to_string(),
                    text: text.trim().to_string(),
                });
            }
            None => target = i as u32 + 1,
        }
    }
    out
}

fn env() -> Env {
    Env {
        vars: [("FLY_TEST_HOME".to_string(), "/home/fly".to_string())].into(),
        unset_is_error: false,
    }
}

fn check_case(name: &str, files: Vec<SourceFile>) -> String {
    let mut expected: Vec<Expect> = files.iter().flat_map(expectations).collect();
    let checked = fly_types::check(files.clone(), &env());
    let compilation = compile(files, &env());
    // Diagnostics only: the same findings, never an IR.
    assert!(checked.ir.is_none(), "{name}: check built an IR");
    let findings = |c: &fly_types::Compilation| -> Vec<String> {
        c.diagnostics()
            .map(|(path, d)| format!("{path}:{}:{} {}", d.span.start, d.code.0, d.message))
            .collect()
    };
    assert_eq!(findings(&checked), findings(&compilation), "{name}");
    let mut unexpected = Vec::new();
    let mut rendered = String::new();
    let mut sources = fly_syntax::render::Sources::new();
    let ids: Vec<_> = compilation
        .files
        .iter()
        .map(|f| sources.add(f.path.clone(), f.text.clone()))
        .collect();
    for (f, id) in compilation.files.iter().zip(ids) {
        let index = fly_syntax::LineIndex::new(&f.text);
        for d in &f.diagnostics {
            rendered.push_str(&sources.render_plain(id, d));
        }
        for d in &f.diagnostics {
            let line = index
                .line_col(&f.text, d.span.start as usize, fly_syntax::Encoding::Utf8)
                .line
                + 1;
            let hit = expected.iter().position(|e| {
                e.file == f.path
                    && e.line == line
                    && e.code == d.code.0
                    && d.message.contains(&e.text)
            });
            match hit {
                Some(i) => {
                    expected.remove(i);
                }
                None => unexpected.push(format!("{}:{line}: {} {}", f.path, d.code, d.message)),
            }
        }
    }
    assert!(
        unexpected.is_empty() && expected.is_empty(),
        "{name}:\nunexpected diagnostics:\n  {}\nexpectations not met:\n  {}",
        unexpected.join("\n  "),
        expected
            .iter()
            .map(|e| format!("{}:{}: {} {}", e.file, e.line, e.code, e.text))
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    assert!(compilation.ir.is_none() || !compilation.has_errors());
    rendered
}

fn load_dir(dir: &Path) -> Vec<SourceFile> {
    fly_types::load_nest(dir).unwrap()
}

#[test]
fn corpus() {
    let root = fixtures().join("types");
    let mut cases: Vec<(String, Vec<SourceFile>)> = fly_files(&root)
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&p).unwrap();
            (name.clone(), vec![SourceFile::new(name, text)])
        })
        .collect();
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            cases.push((
                path.file_name().unwrap().to_string_lossy().to_string(),
                load_dir(&path),
            ));
        }
    }
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(cases.len() >= 6);
    for (name, files) in cases {
        let rendered = check_case(&name, files);
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path("snapshots/types");
        settings.set_prepend_module_to_snapshot(false);
        settings
            .bind(|| insta::assert_snapshot!(name.trim_end_matches(".fly").to_string(), rendered));
    }
}

/// The example Nest compiles without a diagnostic, to a snapshotted IR.
#[test]
fn example_nest_ir() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/nest");
    let compilation = compile(load_dir(&root), &env());
    let diags: Vec<String> = compilation
        .diagnostics()
        .map(|(p, d)| format!("{p}: {}", d.message))
        .collect();
    assert!(diags.is_empty(), "{diags:#?}");
    let ir = compilation.ir.expect("IR");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots/types");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("example-nest-ir", ir.to_json()));
    // Executors read it back.
    assert_eq!(
        fly_types::ir::Deployment::from_json(&ir.to_json()).unwrap(),
        ir
    );
}

/// An IR of another version is refused with a clear error.
#[test]
fn ir_version_is_checked() {
    let err = fly_types::ir::Deployment::from_json(r#"{"ir_version": 99}"#).unwrap_err();
    assert!(
        err.to_string().contains("version 99 is not supported"),
        "{err}"
    );
}

fn check_generated(path: &str, actual: &str) {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&full, actual).unwrap();
    }
    let committed = std::fs::read_to_string(&full).unwrap_or_default();
    assert!(
        committed == actual,
        "{path} is stale: run `UPDATE_GENERATED=1 cargo test -p fly-tests --test types` and commit it"
    );
}

/// docs/reference.md is generated from the schema and committed.
#[test]
fn reference_page_is_current() {
    check_generated("docs/reference.md", &fly_types::reference::markdown());
}

/// The IR's JSON Schema is generated and committed.
#[test]
fn ir_json_schema_is_current() {
    check_generated(
        "fly-types/ir/ir.schema.json",
        &fly_types::ir::Deployment::json_schema(),
    );
}

/// Rift declarations, the egg settings for executors, scale windows and the throttle reach
/// the IR resolved: defaults applied, the Docker proxy address derived, rifts sorted.
#[test]
fn executor_settings_are_lowered() {
    let files = vec![
        SourceFile::new(
            "rift.fly",
            r#"
rift "zeta" {
  address      = "https://[fd00::5]:9443/"
  docker_proxy = true
}
rift "alpha" {
  address        = "http://user@rift.internal:9000/base"
  bucket         = "ci.cache_1"
  docker_address = "tcp://10.0.0.9:2376"
}
rift "beta" {
  address        = "https://rift.internal"
  docker_proxy   = true
  docker_address = "tcp://docker.internal:2376"
  tls_ca         = "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n"
}
"#,
        ),
        SourceFile::new(
            "Eggs/app.fly",
            r#"
egg "app" {
  type = "vm"
  rift = "zeta"
  cloud {
    provider          = "aws"
    region            = "eu-west-1"
    provisioning      = "tofu"
    image_id          = "ami-0123456789abcdef0"
    security_group_id = "sg-1"
  }
  runner {
    max_runners = 3
  }
  gitlab {
    project_id   = 1
    token_secret = "vault://t"
  }
}
egg "plain" {
  type = "vm"
  cloud {
    provider = "yandex"
    region   = "ru-central1-a"
  }
  gitlab {
    project_id   = 2
    token_secret = "vault://t"
  }
}
"#,
        ),
        SourceFile::new(
            "UF/uf.fly",
            r#"
uglyfox {
  apex {
    scale "b" {
      from      = "0 8 * * 1-5"
      to        = "0 19 * * 1-5"
      timezone  = "Europe/Berlin"
      min_count = 4
    }
    scale "a" {
      from      = "0 12 * * 5"
      to        = "0 14 * * 5"
      min_count = 7
    }
  }
  throttle {
    terminate_per_pass = 0
  }
}
"#,
        ),
    ];
    let compilation = compile(files, &env());
    let diags: Vec<String> = compilation
        .diagnostics()
        .map(|(p, d)| format!("{p}: {} {}", d.code, d.message))
        .collect();
    // `alpha` sets docker_address without docker_proxy: a warning, and no proxy.
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert!(diags[0].contains("F1035"), "{diags:#?}");
    let ir = compilation.ir.expect("IR");
    let names: Vec<&str> = ir.rifts.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta", "zeta"]);
    let alpha = ir.rift("alpha").unwrap();
    assert_eq!(alpha.address, "http://user@rift.internal:9000/base");
    assert_eq!(alpha.bucket, "ci.cache_1");
    assert!(!alpha.docker_proxy && !alpha.tls());
    assert_eq!(alpha.docker_address, None);
    let beta = ir.rift("beta").unwrap();
    assert_eq!(beta.bucket, "runner-cache");
    assert_eq!(
        beta.docker_address.as_deref(),
        Some("tcp://docker.internal:2376")
    );
    assert_eq!(
        beta.tls_ca.as_deref(),
        Some("-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n")
    );
    let zeta = ir.rift("zeta").unwrap();
    assert_eq!(zeta.address, "https://[fd00::5]:9443");
    assert_eq!(zeta.docker_address.as_deref(), Some("tcp://[fd00::5]:2375"));
    assert_eq!(zeta.config_hash.len(), 64);
    assert_ne!(zeta.config_hash, beta.config_hash);
    assert_eq!(ir.source_map["rift.zeta"].file, "rift.fly");
    assert_eq!(ir.source_map["rift.zeta"].line, 2);

    let app = ir.egg("app").unwrap();
    assert_eq!(app.rift.as_deref(), Some("zeta"));
    assert_eq!(ir.rift_of(app).map(|r| r.name.as_str()), Some("zeta"));
    assert_eq!(app.cloud.provisioning, fly_types::ir::Provisioning::Tofu);
    assert_eq!(app.cloud.image_id.as_deref(), Some("ami-0123456789abcdef0"));
    assert_eq!(app.cloud.security_group_id.as_deref(), Some("sg-1"));
    assert_eq!(app.runner.max_runners, 3);
    let plain = ir.egg("plain").unwrap();
    assert_eq!(plain.rift, None);
    assert_eq!(ir.rift_of(plain), None);
    assert_eq!(plain.cloud.provisioning, fly_types::ir::Provisioning::Sdk);
    assert_eq!(plain.runner.max_runners, 10);

    let uf = ir.uglyfox.as_ref().unwrap();
    let windows: Vec<(&str, &str, u32)> = uf
        .apex
        .scale
        .iter()
        .map(|w| (w.name.as_str(), w.timezone.as_str(), w.min_count))
        .collect();
    assert_eq!(windows, [("b", "Europe/Berlin", 4), ("a", "UTC", 7)]);
    assert!(uf.nadir.scale.is_empty());
    assert_eq!(uf.throttle.create_per_pass, 10);
    assert_eq!(uf.throttle.terminate_per_pass, 0);
    assert_eq!(
        fly_types::ir::Deployment::from_json(&ir.to_json()).unwrap(),
        ir
    );
}
