//! The rendered configuration: real HCL (every file parsed with hcl-edit), snapshots for a
//! Yandex and an AWS egg, no secret in any file, and escaping of any value (proptest).

mod common;

use common::*;
use gosling_tofu::{render, render_tofurc, RenderError, RenderOptions};
use hcl_edit::expr::{Expression, ObjectKey};
use hcl_edit::structure::{Block, Body};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

fn all(files: &BTreeMap<String, String>) -> String {
    files
        .iter()
        .map(|(name, text)| format!("### {name}\n{text}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every file parsed, as one body.
fn parse(files: &BTreeMap<String, String>) -> Body {
    let mut body = Body::new();
    for (name, text) in files {
        let b = hcl_edit::parser::parse_body(text)
            .unwrap_or_else(|e| panic!("{name} is not valid HCL: {e}\n{text}"));
        for s in b.into_iter() {
            body.push(s);
        }
    }
    body
}

fn block<'a>(body: &'a Body, ident: &str, labels: &[&str]) -> &'a Block {
    body.blocks()
        .find(|b| b.has_ident(ident) && b.has_exact_labels(labels))
        .unwrap_or_else(|| panic!("no block {ident} {labels:?}"))
}

fn string<'a>(body: &'a Body, attr: &str) -> &'a str {
    body.get_attribute(attr)
        .and_then(|a| a.value.as_str())
        .unwrap_or_else(|| panic!("no string attribute {attr}"))
}

/// A map written as an object of quoted keys and string values.
fn object(body: &Body, attr: &str) -> BTreeMap<String, String> {
    let Some(Expression::Object(o)) = body.get_attribute(attr).map(|a| &a.value) else {
        panic!("no object attribute {attr}");
    };
    o.iter()
        .map(|(k, v)| {
            let key = match k {
                ObjectKey::Expression(e) => e.as_str().unwrap_or_default().to_string(),
                ObjectKey::Ident(i) => i.to_string(),
            };
            (key, v.expr().as_str().unwrap_or_default().to_string())
        })
        .collect()
}

fn no_secret(files: &BTreeMap<String, String>) {
    for (name, text) in files {
        assert!(
            !text.contains(CREDENTIAL),
            "{name} holds the runner's credential"
        );
    }
}

#[test]
fn yandex_vm_snapshot() {
    let r = render(
        &spec(
            "runner-1",
            egg("my-app", fly_ir::Provider::Yandex, fly_ir::RunnerKind::Vm),
        ),
        &settings(true),
        RenderOptions::default(),
    )
    .unwrap();
    let body = parse(&r.files);
    no_secret(&r.files);
    assert!(!r.user_data.as_ref().unwrap().is_empty());
    let vm = &block(&body, "resource", &["yandex_compute_instance", "runner"]).body;
    assert_eq!(string(vm, "zone"), "ru-central1-a");
    assert_eq!(object(vm, "labels")["egg"], "my-app");
    let backend = &block(&block(&body, "terraform", &[]).body, "backend", &["s3"]).body;
    assert_eq!(
        string(backend, "key"),
        "tofu-states/my-app/runner-1/terraform.tfstate"
    );
    assert_eq!(
        object(backend, "endpoints")["s3"],
        "https://storage.yandexcloud.net"
    );
    assert_eq!(r.address, "yandex_compute_instance.runner");
    insta::assert_snapshot!("yandex_vm", all(&r.files));
}

#[test]
fn aws_vm_snapshot() {
    let mut e = egg("my-app", fly_ir::Provider::Aws, fly_ir::RunnerKind::Vm);
    e.cloud.preemptible = true;
    let r = render(
        &spec("runner-1", e.clone()),
        &settings(false),
        RenderOptions::default(),
    )
    .unwrap();
    let body = parse(&r.files);
    no_secret(&r.files);
    let vm = &block(&body, "resource", &["aws_instance", "runner"]).body;
    assert_eq!(string(vm, "instance_type"), "c6i.large");
    assert_eq!(string(vm, "iam_instance_profile"), "gosling-runner");
    assert!(vm.has_blocks("instance_market_options"));
    assert_eq!(object(vm, "tags")["gosling:runner"], "runner-1");
    insta::assert_snapshot!("aws_vm", all(&r.files));
    // The on-demand fallback drops the spot request and nothing else.
    let od = render(
        &spec("runner-1", e),
        &settings(false),
        RenderOptions { on_demand: true },
    )
    .unwrap();
    let body = parse(&od.files);
    assert!(!block(&body, "resource", &["aws_instance", "runner"])
        .body
        .has_blocks("instance_market_options"));
}

#[test]
fn aws_serverless_renders_the_task_definition() {
    let r = render(
        &spec(
            "runner-1",
            egg(
                "my-app",
                fly_ir::Provider::Aws,
                fly_ir::RunnerKind::Serverless,
            ),
        ),
        &settings(false),
        RenderOptions::default(),
    )
    .unwrap();
    let body = parse(&r.files);
    let td = &block(&body, "resource", &["aws_ecs_task_definition", "runner"]).body;
    assert_eq!(string(td, "family"), "gosling-my-app");
    assert!(r.user_data.is_none());
    insta::assert_snapshot!("aws_serverless", all(&r.files));
}

#[test]
fn yandex_serverless_is_refused() {
    let err = render(
        &spec(
            "runner-1",
            egg(
                "my-app",
                fly_ir::Provider::Yandex,
                fly_ir::RunnerKind::Serverless,
            ),
        ),
        &settings(true),
        RenderOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, RenderError::Unsupported(_)), "{err}");
}

#[test]
fn missing_settings_are_named() {
    let mut s = settings(false);
    s.aws = None;
    let err = render(
        &spec("r", egg("e", fly_ir::Provider::Aws, fly_ir::RunnerKind::Vm)),
        &s,
        RenderOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("[aws]"), "{err}");
    let mut s = settings(true);
    s.yandex.as_mut().unwrap().subnet_id = None;
    let err = render(
        &spec(
            "r",
            egg("e", fly_ir::Provider::Yandex, fly_ir::RunnerKind::Vm),
        ),
        &s,
        RenderOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("subnet_id"), "{err}");
}

#[test]
fn tofurc_is_hcl() {
    let text = render_tofurc(
        Path::new("/ws/a \"b\"/.tofu/plugin-cache"),
        Path::new("/ws/.providers/x"),
        &["hashicorp/aws".into()],
        Some("https://terraform-mirror.yandexcloud.net/"),
    )
    .unwrap();
    let body = hcl_edit::parser::parse_body(&text).unwrap();
    assert_eq!(
        string(&body, "plugin_cache_dir"),
        "/ws/a \"b\"/.tofu/plugin-cache"
    );
    let pi = &block(&body, "provider_installation", &[]).body;
    assert_eq!(
        string(&block(pi, "filesystem_mirror", &[]).body, "path"),
        "/ws/.providers/x"
    );
    assert!(pi.has_blocks("network_mirror"));
    insta::assert_snapshot!("tofurc", text);
}

/// Strings with what HCL treats specially, or anything at all.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z\"\\\\${}%~\n\r\t\u{0}\u{7f}\u{2028} é]{0,16}",
        Just("${var.user_data}".to_string()),
        Just("%{ if true }x%{ endif }".to_string()),
        Just("$${".to_string()),
        Just("\\\"".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_value_renders_to_hcl_that_round_trips(
        name in nasty(),
        tag_key in nasty(),
        tag_value in nasty(),
        subnet in nasty(),
        image in nasty(),
        folder in nasty(),
    ) {
        let mut s = settings(false);
        s.extra_tags.insert(format!("x-{tag_key}"), tag_value.clone());
        // AWS: the egg name and labels land in tags verbatim.
        let mut e = egg(&name, fly_ir::Provider::Aws, fly_ir::RunnerKind::Vm);
        e.cloud.subnet_id = Some(subnet.clone());
        e.cloud.image_id = Some(image.clone());
        let r = render(&spec("runner-1", e), &s, RenderOptions::default()).unwrap();
        let body = parse(&r.files);
        prop_assert_eq!(string(&block(&body, "locals", &[]).body, "egg_name"), name.as_str());
        let vm = &block(&body, "resource", &["aws_instance", "runner"]).body;
        let tags = object(vm, "tags");
        prop_assert_eq!(tags["gosling:egg"].as_str(), name.as_str());
        prop_assert_eq!(tags[&format!("x-{tag_key}")].as_str(), tag_value.as_str());
        if subnet.is_empty() {
            // An empty subnet is no subnet (the default VPC's).
            prop_assert!(!vm.has_attribute("subnet_id"));
        } else {
            prop_assert_eq!(string(vm, "subnet_id"), subnet.as_str());
        }
        prop_assert_eq!(string(vm, "ami"), image.as_str());
        // Yandex: ids verbatim, the name in the description.
        let mut e = egg(&name, fly_ir::Provider::Yandex, fly_ir::RunnerKind::Vm);
        e.cloud.subnet_id = Some(subnet.clone());
        e.cloud.image_id = Some(image.clone());
        e.cloud.folder_id = Some(folder.clone());
        let r = render(&spec("runner-1", e), &settings(true), RenderOptions::default()).unwrap();
        let body = parse(&r.files);
        let vm = &block(&body, "resource", &["yandex_compute_instance", "runner"]).body;
        prop_assert_eq!(string(vm, "folder_id"), folder.as_str());
        let description: String = format!("Gosling runner runner-1 of egg {name}").chars().take(256).collect();
        prop_assert_eq!(string(vm, "description"), description.as_str());
        let disk = &block(&block(vm, "boot_disk", &[]).body, "initialize_params", &[]).body;
        prop_assert_eq!(string(disk, "image_id"), image.as_str());
        prop_assert_eq!(string(&block(vm, "network_interface", &[]).body, "subnet_id"), subnet.as_str());
    }
}
