//! Lowering checked blocks to the deployment IR: defaults applied, durations in seconds,
//! tags sorted, content hashes computed, a source map kept. Deterministic by construction:
//! every list is sorted or in source order, every map is a `BTreeMap`.

use crate::check::{Node, Typed};
use crate::duration::parse_duration;
use crate::nest::Checked;
use crate::schema::{self, BlockSchema, Default, Type};
use crate::Input;
use fly_ir::*;
use fly_syntax::{Encoding, LineIndex};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) fn lower(files: &[Input<'_>], checked: &Checked<'_>) -> Deployment {
    let indexes: Vec<LineIndex> = files.iter().map(|f| LineIndex::new(f.text)).collect();
    let mut source_map = BTreeMap::new();
    let mut locate = |key: String, node: &Node<'_>| {
        let text = files[node.file].text;
        let line = indexes[node.file]
            .line_col(text, node.block.span.start as usize, Encoding::Utf8)
            .line
            + 1;
        source_map.insert(
            key,
            SourceLocation {
                file: files[node.file].path.to_string(),
                line,
            },
        );
    };
    let mut eggs: Vec<Egg> = checked
        .eggs
        .iter()
        .map(|n| {
            locate(format!("egg.{}", n.label()), n);
            egg(n)
        })
        .collect();
    eggs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut jobs: Vec<Job> = checked
        .jobs
        .iter()
        .map(|n| {
            locate(format!("job.{}", n.label()), n);
            job(n)
        })
        .collect();
    jobs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rifts: Vec<Rift> = checked
        .rifts
        .iter()
        .map(|n| {
            locate(format!("rift.{}", n.label()), n);
            rift(n)
        })
        .collect();
    rifts.sort_by(|a, b| a.name.cmp(&b.name));
    let uglyfox = checked.uglyfox.as_ref().map(|n| {
        locate("uglyfox".into(), n);
        if let Some(p) = n.child("policies") {
            for r in p.children_named("rule") {
                locate(format!("rule.{}", r.label()), r);
            }
        }
        uglyfox(n)
    });
    Deployment {
        ir_version: IR_VERSION,
        eggs,
        jobs,
        uglyfox,
        rifts,
        source_map,
    }
}

/// The value of `attr` in `node` (of schema `schema`), or its default.
fn get(node: Option<&Node<'_>>, schema: &'static BlockSchema, attr: &str) -> Option<Typed> {
    if let Some(t) = node.and_then(|n| n.typed(attr)) {
        return Some(t.clone());
    }
    let a = schema.attr(attr)?;
    Some(match a.default? {
        Default::Int(i) => Typed::Int(i),
        Default::Bool(b) => Typed::Bool(b),
        Default::EmptyList => Typed::List(Vec::new()),
        Default::Str(s) => match a.ty {
            Type::Duration { .. } => {
                Typed::Seconds(parse_duration(s).expect("schema defaults are valid"))
            }
            _ => Typed::Str(s.to_string()),
        },
    })
}

fn int(node: Option<&Node<'_>>, schema: &'static BlockSchema, attr: &str) -> i64 {
    get(node, schema, attr)
        .and_then(|t| t.as_int())
        .unwrap_or(0)
}

fn secs(node: Option<&Node<'_>>, schema: &'static BlockSchema, attr: &str) -> Option<u64> {
    get(node, schema, attr).and_then(|t| t.as_seconds())
}

fn string(node: Option<&Node<'_>>, schema: &'static BlockSchema, attr: &str) -> Option<String> {
    get(node, schema, attr).and_then(|t| t.as_str().map(str::to_string))
}

fn boolean(node: Option<&Node<'_>>, schema: &'static BlockSchema, attr: &str) -> bool {
    get(node, schema, attr)
        .and_then(|t| t.as_bool())
        .unwrap_or(false)
}

fn sorted_tags(node: Option<&Node<'_>>, schema: &'static BlockSchema) -> Vec<String> {
    let set: BTreeSet<String> = get(node, schema, "tags")
        .map(|t| t.as_strings())
        .unwrap_or_default()
        .into_iter()
        .collect();
    set.into_iter().collect()
}

fn environment(node: Option<&Node<'_>>) -> BTreeMap<String, String> {
    node.map(|n| {
        n.attrs
            .iter()
            .filter_map(|(k, (t, _))| t.as_str().map(|v| (k.clone(), v.to_string())))
            .collect()
    })
    .unwrap_or_default()
}

fn kind(s: Option<String>) -> RunnerKind {
    match s.as_deref() {
        Some("serverless") => RunnerKind::Serverless,
        _ => RunnerKind::Vm,
    }
}

/// sha256 of the canonical JSON of `value` (with an empty `config_hash`).
fn hash<T: serde::Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).expect("IR values serialise");
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn egg(n: &Node<'_>) -> Egg {
    let cloud = n.child("cloud");
    let res = n.child("resources");
    let runner = n.child("runner");
    let gitlab = n.child("gitlab");
    let mut egg = Egg {
        name: n.label().to_string(),
        kind: kind(string(Some(n), &schema::EGG, "type")),
        cloud: Cloud {
            provider: match string(cloud, &schema::CLOUD, "provider").as_deref() {
                Some("aws") => Provider::Aws,
                _ => Provider::Yandex,
            },
            region: string(cloud, &schema::CLOUD, "region").unwrap_or_default(),
            folder_id: string(cloud, &schema::CLOUD, "folder_id"),
            subnet_id: string(cloud, &schema::CLOUD, "subnet_id"),
            preemptible: boolean(cloud, &schema::CLOUD, "preemptible"),
            provisioning: match string(cloud, &schema::CLOUD, "provisioning").as_deref() {
                Some("tofu") => Provisioning::Tofu,
                _ => Provisioning::Sdk,
            },
            image_id: string(cloud, &schema::CLOUD, "image_id"),
            security_group_id: string(cloud, &schema::CLOUD, "security_group_id"),
        },
        resources: Resources {
            cpu: int(res, &schema::RESOURCES, "cpu") as u32,
            memory_mb: int(res, &schema::RESOURCES, "memory") as u64,
            disk_gb: int(res, &schema::RESOURCES, "disk") as u64,
        },
        runner: RunnerSettings {
            tags: sorted_tags(runner, &schema::EGG_RUNNER),
            concurrent: int(runner, &schema::EGG_RUNNER, "concurrent") as u32,
            idle_timeout_s: secs(runner, &schema::EGG_RUNNER, "idle_timeout").unwrap_or(0),
            timeout_s: secs(runner, &schema::EGG_RUNNER, "timeout").unwrap_or(0),
            image: string(runner, &schema::EGG_RUNNER, "image").unwrap_or_default(),
            privileged: boolean(runner, &schema::EGG_RUNNER, "privileged"),
            run_untagged: boolean(runner, &schema::EGG_RUNNER, "run_untagged"),
            max_runners: int(runner, &schema::EGG_RUNNER, "max_runners") as u32,
        },
        gitlab: GitLab {
            url: string(gitlab, &schema::GITLAB, "url").unwrap_or_default(),
            project_id: int(gitlab, &schema::GITLAB, "project_id") as u64,
            token_secret: string(gitlab, &schema::GITLAB, "token_secret").unwrap_or_default(),
        },
        environment: environment(n.child("environment")),
        rift: string(Some(n), &schema::EGG, "rift"),
        config_hash: String::new(),
    };
    egg.config_hash = hash(&egg);
    egg
}

fn rift(n: &Node<'_>) -> Rift {
    let address = string(Some(n), &schema::RIFT, "address").unwrap_or_default();
    let docker_proxy = boolean(Some(n), &schema::RIFT, "docker_proxy");
    let docker_address = docker_proxy.then(|| {
        string(Some(n), &schema::RIFT, "docker_address")
            .unwrap_or_else(|| format!("tcp://{}:2375", crate::nest::url_host(&address)))
    });
    let mut rift = Rift {
        name: n.label().to_string(),
        address,
        bucket: string(Some(n), &schema::RIFT, "bucket").unwrap_or_default(),
        tls_ca: string(Some(n), &schema::RIFT, "tls_ca"),
        docker_proxy,
        docker_address,
        config_hash: String::new(),
    };
    rift.config_hash = hash(&rift);
    rift
}

fn job(n: &Node<'_>) -> Job {
    let runner = n.child("runner");
    let on_failure = n.child("on_failure");
    let schedule = match n.typed("schedule") {
        Some(Typed::Schedule(s)) => s.clone(),
        _ => Schedule::parse("@daily").expect("valid"),
    };
    let mut job = Job {
        name: n.label().to_string(),
        schedule,
        runner: JobRunner {
            kind: kind(string(runner, &schema::JOB_RUNNER, "type")),
            tags: sorted_tags(runner, &schema::JOB_RUNNER),
        },
        script: string(Some(n), &schema::JOB, "script").unwrap_or_default(),
        timeout_s: secs(Some(n), &schema::JOB, "timeout").unwrap_or(0),
        on_failure: OnFailure {
            notify: get(on_failure, &schema::ON_FAILURE, "notify")
                .map(|t| t.as_strings())
                .unwrap_or_default(),
            retry: int(on_failure, &schema::ON_FAILURE, "retry") as u32,
        },
        environment: environment(n.child("environment")),
        config_hash: String::new(),
    };
    job.config_hash = hash(&job);
    job
}

fn pool(n: Option<&Node<'_>>, schema: &'static BlockSchema) -> Pool {
    Pool {
        max_count: int(n, schema, "max_count") as u32,
        min_count: int(n, schema, "min_count") as u32,
        idle_timeout_s: secs(n, schema, "idle_timeout"),
        scale: n
            .map(|p| {
                p.children_named("scale")
                    .map(|w| {
                        let schedule = |attr: &str| match w.typed(attr) {
                            Some(Typed::Schedule(s)) => s.clone(),
                            _ => Schedule::parse("@daily").expect("valid"),
                        };
                        ScaleWindow {
                            name: w.label().to_string(),
                            from: schedule("from"),
                            to: schedule("to"),
                            timezone: string(Some(w), &schema::SCALE, "timezone")
                                .unwrap_or_else(|| "UTC".into()),
                            min_count: int(Some(w), &schema::SCALE, "min_count") as u32,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn uglyfox(n: &Node<'_>) -> UglyFox {
    let pruning = n.child("pruning");
    let throttle = n.child("throttle");
    let policies = n
        .child("policies")
        .map(|p| {
            p.children_named("rule")
                .filter_map(|r| {
                    let Some(Typed::Condition(condition, source)) = r.typed("condition") else {
                        return None;
                    };
                    let action = match string(Some(r), &schema::RULE, "action").as_deref() {
                        Some("terminate") => Action::Terminate,
                        Some("demote_to_nadir") => Action::DemoteToNadir,
                        Some("promote_to_apex") => Action::PromoteToApex,
                        Some("restart") => Action::Restart,
                        _ => Action::Notify,
                    };
                    Some(Rule {
                        name: r.label().to_string(),
                        condition_source: source.clone(),
                        condition: condition.clone(),
                        action,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    UglyFox {
        pruning: Pruning {
            failed_threshold: int(pruning, &schema::PRUNING, "failed_threshold") as u32,
            max_age_s: secs(pruning, &schema::PRUNING, "max_age").unwrap_or(0),
            check_interval_s: secs(pruning, &schema::PRUNING, "check_interval").unwrap_or(0),
        },
        apex: pool(n.child("apex"), &schema::APEX),
        nadir: pool(n.child("nadir"), &schema::NADIR),
        policies,
        throttle: Throttle {
            create_per_pass: int(throttle, &schema::THROTTLE, "create_per_pass") as u32,
            terminate_per_pass: int(throttle, &schema::THROTTLE, "terminate_per_pass") as u32,
        },
    }
}
