//! Plans: the rendered text (insta snapshot) and Property 24 (a dry run writes nothing).

mod support;

use fly_ir::Deployment;
use gosling::deploy::{self, Context, DeployOutcome};
use gosling::gitlab::Retry;
use gosling::plan::{self, HookTarget, Registered};
use gosling_state::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

fn compile(files: &[(&str, &str)]) -> Deployment {
    support::ir_of(
        files
            .iter()
            .map(|(p, t)| fly_types::SourceFile::new(*p, *t))
            .collect(),
    )
}

fn egg(name: &str, cpu: u32, tags: &str, project: u64) -> String {
    format!(
        "egg \"{name}\" {{\n  type = \"vm\"\n  cloud {{\n    provider = \"yandex\"\n    region = \"ru-central1-a\"\n  }}\n  resources {{\n    cpu = {cpu}\n  }}\n  runner {{\n    tags = [{tags}]\n  }}\n  gitlab {{\n    project_id = {project}\n    token_secret = \"vault://gitlab/t\"\n  }}\n}}\n"
    )
}

const JOB_V1: &str =
    "job \"rotate\" {\n  schedule = \"0 2 * * *\"\n  script = \"gosling rotate-tokens --all\"\n}\n";
const JOB_V2: &str = "job \"rotate\" {\n  schedule = \"30 4 * * 1\"\n  script = \"gosling rotate-tokens --all\"\n}\n";
const UF: &str = "uglyfox {\n  apex {\n    max_count = 10\n  }\n}\n";

#[test]
fn plan_text() {
    let (keep, change, gone) = (
        egg("keep", 2, "\"docker\"", 1),
        egg("web", 2, "\"docker\"", 1),
        egg("old", 2, "\"docker\"", 2),
    );
    let old = compile(&[
        ("a.fly", &keep),
        ("b.fly", &change),
        ("c.fly", &gone),
        ("j.fly", JOB_V1),
        ("u.fly", UF),
    ]);
    let (changed, added) = (
        egg("web", 4, "\"docker\", \"linux\"", 1),
        egg("new", 1, "\"gpu\"", 3),
    );
    let new = compile(&[
        ("a.fly", &keep),
        ("b.fly", &changed),
        ("d.fly", &added),
        ("j.fly", JOB_V2),
        ("u.fly", UF),
    ]);
    let registered = Registered {
        target: Some("https://mg.example.com/hook".into()),
        projects: vec![
            HookTarget {
                gitlab_url: "https://gitlab.com".into(),
                project_id: 1,
            },
            HookTarget {
                gitlab_url: "https://gitlab.com".into(),
                project_id: 2,
            },
        ],
    };
    let p = plan::compute(
        Some(4),
        Some(&old),
        &registered,
        &new,
        Some("https://mg.example.com/hook"),
    );
    assert_eq!(p.counts(), (1, 2, 1));
    assert_eq!(p.unchanged, 2);
    insta::assert_snapshot!("plan_with_webhooks", plan::render(&p, Some(5)));
    let local = plan::compute(None, None, &Registered::default(), &new, None);
    insta::assert_snapshot!("first_plan_without_webhooks", plan::render(&local, Some(1)));
    let same = plan::compute(Some(5), Some(&new), &registered, &new, None);
    assert!(same.is_empty());
    assert_eq!(
        plan::render(&same, None),
        "No changes. The deployment v5 matches the Nest.\n"
    );
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn generated(eggs: usize, files: usize) -> Deployment {
    let files: Vec<(String, String)> = fly_tests::generate::nest_files(eggs, files);
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    compile(&refs)
}

fn quiet(_: &str) {}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    // Property 24: Dry-Run Non-Modification — whatever is deployed and whatever the Nest
    // holds, `deploy --dry-run` leaves every byte of the store and the objects as it was.
    #[test]
    fn property_24_dry_run_writes_nothing(deployed in proptest::option::of(1usize..12), next in 1usize..12, files in 1usize..4) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".gosling");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let open = |ro: bool| {
                let root = root.clone();
                async move {
                    let o = OpenOptions { read_only: ro, credentials: None };
                    let s = open_state(&format!("sqlite://{}", root.join("state.db").display()), &o).await.unwrap();
                    let b = open_objects(&root.join("objects").display().to_string(), &o).await.unwrap();
                    (s, b)
                }
            };
            let ctx = |s: &'static dyn StateStore, o: &'static dyn ObjectStore| Context {
                store: s,
                objects: o,
                nest: dir.path().to_path_buf(),
                gitlab_token: None,
                webhook_url: None,
                webhook_secret: None,
                state_key: Some(gosling_state::SecretString::new(gosling_state::Cipher::generate_key())),
                state_key_file: dir.path().join("key"),
                retry: Retry::default(),
                actor: "test".into(),
                progress: &quiet,
                note: &quiet,
            };
            if let Some(n) = deployed {
                let (s, o) = open(false).await;
                let (s, o): (&'static dyn StateStore, &'static dyn ObjectStore) = (Box::leak(s), Box::leak(o));
                let out = deploy::deploy(&ctx(s, o), &generated(n, files), false).await.unwrap();
                let applied = matches!(out, DeployOutcome::Applied { .. });
                prop_assert!(applied);
            }
            let before = snapshot(&root);
            let (s, o) = open(true).await;
            let (s, o): (&'static dyn StateStore, &'static dyn ObjectStore) = (Box::leak(s), Box::leak(o));
            let out = deploy::deploy(&ctx(s, o), &generated(next, files), true).await.unwrap();
            let DeployOutcome::DryRun(plan) = out else { panic!("not a dry run") };
            let (a, _, r) = plan.counts();
            if deployed.is_none() { prop_assert_eq!(r, 0); prop_assert!(a >= next); }
            prop_assert_eq!(snapshot(&root), before);
            Ok(())
        })?;
    }
}
