//! Checking a whole Nest: variables from every file, every block against the schema, and
//! the Nest-wide rules (unique names, one UglyFox, regions, serverless limits, pool sizes
//! and scale windows, job tags some egg provides, Rift declarations and the eggs that use
//! them).

use crate::check::{Checker, Node, Typed};
use crate::eval::{Env, Evaluator, VarDef};
use crate::schema::{self, ROOT};
use crate::VarInfo;
use crate::{codes, Diags, Input};
use fly_syntax::ast::Item;
use fly_syntax::{Diagnostic, Span};
use std::collections::{BTreeMap, HashMap};

/// The checked blocks of a Nest, by kind.
pub(crate) struct Checked<'a> {
    pub eggs: Vec<Node<'a>>,
    pub jobs: Vec<Node<'a>>,
    pub rifts: Vec<Node<'a>>,
    pub uglyfox: Option<Node<'a>>,
}

pub(crate) fn check<'a>(
    files: &'a [Input<'a>],
    env: &'a Env,
    diags: &mut Diags,
) -> (Checked<'a>, BTreeMap<String, VarInfo>) {
    // Variables from every `vars` block of the Nest.
    let mut vars: HashMap<String, VarDef<'a>> = HashMap::new();
    for (file, parse) in files.iter().map(|f| f.parse).enumerate() {
        for item in &parse.file.items {
            let Item::Block(b) = item else { continue };
            if b.kind.name != "vars" {
                continue;
            }
            for item in &b.items {
                let Item::Attribute(a) = item else { continue };
                if let Some(first) = vars.get(a.name.name.as_str()) {
                    let d = Diagnostic::error(
                        codes::DUPLICATE_VARIABLE,
                        a.name.span,
                        format!("variable `{}` is defined twice", a.name.name),
                    )
                    .with_help("each variable is defined once in the whole Nest");
                    let d = if first.file == file {
                        d.with_secondary(first.name_span, "first defined here")
                    } else {
                        d.with_secondary_in(
                            files[first.file].path,
                            first.name_span,
                            "first defined here",
                        )
                    };
                    diags.push(file, d);
                    continue;
                }
                vars.insert(
                    a.name.name.to_string(),
                    VarDef {
                        file,
                        expr: &a.value,
                        name_span: a.name.span,
                    },
                );
            }
        }
    }
    let mut eval = Evaluator::new(vars, env);
    let mut nodes: Vec<Node<'a>> = Vec::new();
    {
        let mut checker = Checker {
            eval: &mut eval,
            diags,
        };
        for (file, parse) in files.iter().map(|f| f.parse).enumerate() {
            let (_, children) = checker.items(file, &ROOT, &parse.file.items, None);
            nodes.extend(children);
        }
    }
    let mut checked = Checked {
        eggs: Vec::new(),
        jobs: Vec::new(),
        rifts: Vec::new(),
        uglyfox: None,
    };
    let mut first_uglyfox: Option<(usize, Span)> = None;
    for node in nodes {
        match node.schema.name {
            "egg" => checked.eggs.push(node),
            "job" => checked.jobs.push(node),
            "rift" => checked.rifts.push(node),
            "uglyfox" => {
                if let Some((file, span)) = first_uglyfox {
                    let d = Diagnostic::error(
                        codes::DUPLICATE_BLOCK,
                        node.block.kind.span,
                        "the Nest has more than one `uglyfox` block",
                    )
                    .with_help("keep one `uglyfox` block, usually in `UF/`");
                    diags.push(
                        node.file,
                        secondary(d, files, node.file, file, span, "the first one"),
                    );
                } else {
                    first_uglyfox = Some((node.file, node.block.kind.span));
                    checked.uglyfox = Some(node);
                }
            }
            _ => {}
        }
    }
    let vars = eval.resolve_all();
    unique_names(files, &checked.eggs, "egg", diags);
    unique_names(files, &checked.jobs, "job", diags);
    unique_names(files, &checked.rifts, "rift", diags);
    for rift in &checked.rifts {
        rift_rules(rift, diags);
    }
    for egg in &checked.eggs {
        egg_rules(egg, diags);
        egg_rift(egg, &checked.rifts, diags);
    }
    for job in &checked.jobs {
        job_rules(job, &checked.eggs, diags);
    }
    if let Some(uf) = &checked.uglyfox {
        for pool in ["apex", "nadir"] {
            pool_rules(uf, pool, diags);
        }
    }
    (checked, vars)
}

fn secondary(
    d: Diagnostic,
    files: &[Input<'_>],
    here: usize,
    there: usize,
    span: Span,
    msg: &str,
) -> Diagnostic {
    if here == there {
        d.with_secondary(span, msg)
    } else {
        d.with_secondary_in(files[there].path, span, msg)
    }
}

fn unique_names<'n, 'a: 'n>(
    files: &[Input<'_>],
    nodes: impl IntoIterator<Item = &'n Node<'a>>,
    kind: &str,
    diags: &mut Diags,
) {
    let mut seen: HashMap<&str, (usize, Span)> = HashMap::new();
    for n in nodes {
        let name = n.label();
        let span = n
            .block
            .labels
            .first()
            .map(|l| l.span)
            .unwrap_or(n.block.kind.span);
        match seen.get(name) {
            Some(&(file, first)) => {
                let d = Diagnostic::error(
                    codes::DUPLICATE_NAME,
                    span,
                    format!("{kind} \"{name}\" is defined twice in the Nest"),
                )
                .with_help(format!(
                    "{kind} names are unique across the Nest; rename one of them"
                ));
                diags.push(
                    n.file,
                    secondary(d, files, n.file, file, first, "first defined here"),
                );
            }
            None => {
                seen.insert(name, (n.file, span));
            }
        }
    }
}

fn egg_rules(egg: &Node<'_>, diags: &mut Diags) {
    if let Some(cloud) = egg.child("cloud") {
        if let (Some(provider), Some(region)) = (
            cloud.typed("provider").and_then(Typed::as_str),
            cloud.typed("region").and_then(Typed::as_str),
        ) {
            let known = schema::known_regions(provider);
            if !known.contains(&region) {
                let help = match crate::suggest(region, known.iter().copied()) {
                    Some(s) => format!("did you mean \"{s}\"?"),
                    None => format!("known {provider} regions: {}", known.join(", ")),
                };
                diags.push(
                    egg.file,
                    Diagnostic::warning(
                        codes::UNKNOWN_REGION,
                        cloud.attr_span("region").unwrap_or(cloud.block.kind.span),
                        format!("\"{region}\" is not a known {provider} region"),
                    )
                    .with_help(help),
                );
            }
        }
    }
    if egg.typed("type").and_then(Typed::as_str) != Some("serverless") {
        return;
    }
    let name = egg.label();
    let provider = egg
        .child("cloud")
        .and_then(|c| c.typed("provider"))
        .and_then(Typed::as_str)
        .unwrap_or("yandex");
    // Yandex Serverless Containers: ≤ 4 cores, ≤ 8 GB; AWS Fargate: ≤ 16 vCPU, ≤ 120 GB.
    let (max_cpu, max_mem) = if provider == "aws" {
        (16, 122_880)
    } else {
        (4, 8192)
    };
    if let Some(res) = egg.child("resources") {
        for (attr, max, unit) in [("cpu", max_cpu, " vCPUs"), ("memory", max_mem, " MB")] {
            if let Some(v) = res.typed(attr).and_then(Typed::as_int) {
                if v > max {
                    diags.push(
                        egg.file,
                        Diagnostic::error(
                            codes::SERVERLESS_LIMIT,
                            res.attr_span(attr).unwrap_or(res.block.kind.span),
                            format!("serverless egg \"{name}\" asks for {v}{unit}; serverless runners on {provider} allow at most {max}{unit}"),
                        )
                        .with_help("lower it, or use `type = \"vm\"`"),
                    );
                }
            }
        }
    }
    if let Some(runner) = egg.child("runner") {
        if let Some(t) = runner.typed("timeout").and_then(Typed::as_seconds) {
            if t > 3600 {
                diags.push(
                    egg.file,
                    Diagnostic::error(
                        codes::SERVERLESS_LIMIT,
                        runner.attr_span("timeout").unwrap_or(runner.block.kind.span),
                        format!("serverless runners stop at 60 minutes, but egg \"{name}\" allows jobs {}", crate::duration::format_duration(t)),
                    )
                    .with_help("use `type = \"vm\"` for jobs longer than 60 minutes"),
                );
            }
        }
    }
}

fn job_rules(job: &Node<'_>, eggs: &[Node<'_>], diags: &mut Diags) {
    let runner = job.child("runner");
    let kind = runner
        .and_then(|r| r.typed("type"))
        .and_then(Typed::as_str)
        .unwrap_or("vm");
    if kind == "serverless" {
        if let Some(t) = job.typed("timeout").and_then(Typed::as_seconds) {
            if t > 3600 {
                diags.push(
                    job.file,
                    Diagnostic::error(
                        codes::SERVERLESS_LIMIT,
                        job.attr_span("timeout").unwrap_or(job.block.kind.span),
                        format!(
                            "job \"{}\" runs on a serverless runner, which stops at 60 minutes",
                            job.label()
                        ),
                    )
                    .with_help("shorten `timeout` or use `type = \"vm\"`"),
                );
            }
        }
    }
    let Some(runner) = runner else { return };
    let wanted = runner
        .typed("tags")
        .map(Typed::as_strings)
        .unwrap_or_default();
    if wanted.is_empty() {
        return;
    }
    let served = eggs.iter().any(|egg| {
        let tags = egg
            .child("runner")
            .and_then(|r| r.typed("tags"))
            .map(Typed::as_strings)
            .unwrap_or_default();
        wanted.iter().all(|t| tags.contains(t))
    });
    if !served {
        diags.push(
            job.file,
            Diagnostic::warning(
                codes::UNSERVED_TAGS,
                runner.attr_span("tags").unwrap_or(runner.block.kind.span),
                format!(
                    "no egg provides all of the tags [{}] that job \"{}\" needs",
                    wanted.join(", "),
                    job.label()
                ),
            )
            .with_help(
                "add the tags to an egg's `runner { tags = [...] }`, or change the job's tags",
            ),
        );
    }
}

/// An egg's `rift` names a declared Rift.
fn egg_rift(egg: &Node<'_>, rifts: &[Node<'_>], diags: &mut Diags) {
    let Some(name) = egg.typed("rift").and_then(Typed::as_str) else {
        return;
    };
    if rifts.iter().any(|r| r.label() == name) {
        return;
    }
    let help = if rifts.is_empty() {
        format!(
            "the Nest declares no rift; declare it, for example:\n\
             rift \"{name}\" {{\n  address = \"https://rift.internal:9443\"\n}}"
        )
    } else {
        match crate::suggest(name, rifts.iter().map(|r| r.label())) {
            Some(near) => format!("did you mean \"{near}\"?"),
            None => {
                let mut names: Vec<String> =
                    rifts.iter().map(|r| format!("\"{}\"", r.label())).collect();
                names.sort();
                names.dedup();
                format!("rifts of the Nest: {}", names.join(", "))
            }
        }
    };
    diags.push(
        egg.file,
        Diagnostic::error(
            codes::UNKNOWN_RIFT,
            egg.attr_span("rift").unwrap_or(egg.block.kind.span),
            format!(
                "egg \"{}\" uses rift \"{name}\", which the Nest does not declare",
                egg.label()
            ),
        )
        .with_help(help),
    );
}

/// A Rift's settings fit together and are ones Rift accepts.
fn rift_rules(rift: &Node<'_>, diags: &mut Diags) {
    let at = |attr: &str| rift.attr_span(attr).unwrap_or(rift.block.kind.span);
    let docker_proxy = rift.typed("docker_proxy").and_then(Typed::as_bool) == Some(true);
    if let Some(address) = rift.typed("docker_address").and_then(Typed::as_str) {
        if !docker_proxy {
            diags.push(
                rift.file,
                Diagnostic::warning(
                    codes::RIFT_SETTING_UNUSED,
                    at("docker_address"),
                    format!(
                        "rift \"{}\" sets `docker_address` without `docker_proxy = true`, so runners do not use it",
                        rift.label()
                    ),
                )
                .with_help("add `docker_proxy = true`, or remove `docker_address`"),
            );
        }
        if docker_host(address).is_none() {
            diags.push(
                rift.file,
                Diagnostic::error(
                    codes::INVALID_URL,
                    at("docker_address"),
                    format!("\"{address}\" is not a Docker address `tcp://HOST:PORT`"),
                )
                .with_help("for example \"tcp://rift.internal:2375\""),
            );
        }
    }
    if let (Some(_), Some(address)) = (
        rift.typed("tls_ca"),
        rift.typed("address").and_then(Typed::as_str),
    ) {
        if !address.starts_with("https://") {
            diags.push(
                rift.file,
                Diagnostic::warning(
                    codes::RIFT_SETTING_UNUSED,
                    at("tls_ca"),
                    format!(
                        "rift \"{}\" has a plain http address, so runners do not use `tls_ca`",
                        rift.label()
                    ),
                )
                .with_help(
                    "use an https:// address (Rift with tls_cert and tls_key), or remove `tls_ca`",
                ),
            );
        }
    }
    if let Some(bucket) = rift.typed("bucket").and_then(Typed::as_str) {
        let valid = !bucket.is_empty()
            && !bucket.starts_with('.')
            && bucket.len() <= 255
            && bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !valid {
            diags.push(
                rift.file,
                Diagnostic::error(
                    codes::INVALID_BUCKET,
                    at("bucket"),
                    format!("\"{bucket}\" is not a bucket name Rift accepts"),
                )
                .with_help(
                    "bucket names are 1–255 letters, digits, `.`, `-` and `_`, not starting with `.`",
                ),
            );
        }
    }
}

/// `tcp://HOST:PORT` → `Some(HOST)`.
pub(crate) fn docker_host(address: &str) -> Option<&str> {
    let rest = address.strip_prefix("tcp://")?;
    let (host, port) = rest.rsplit_once(':')?;
    let host_ok = !host.is_empty()
        && !host.contains(['/', ' ', '@'])
        && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    (host_ok && port_ok).then_some(host)
}

/// The host of an http(s) URL (an IPv6 address keeps its brackets).
pub(crate) fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return host_port.find(']').map_or(host_port, |i| &host_port[..=i]);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

fn pool_rules(uf: &Node<'_>, pool: &str, diags: &mut Diags) {
    let Some(node) = uf.child(pool) else { return };
    let Some(max) = node
        .typed("max_count")
        .and_then(Typed::as_int)
        .or_else(|| schema_default_int(node, "max_count"))
    else {
        return;
    };
    scale_rules(uf, node, pool, max, diags);
    let Some(min) = node.typed("min_count").and_then(Typed::as_int) else {
        return;
    };
    if min > max {
        diags.push(
            uf.file,
            Diagnostic::error(
                codes::POOL_SIZES,
                node.attr_span("min_count").unwrap_or(node.block.kind.span),
                format!("{pool} min_count ({min}) is greater than max_count ({max})"),
            )
            .with_help("min_count must not exceed max_count"),
        );
    }
}

/// Scale windows: names unique in the pool, `min_count` within the pool's `max_count`.
fn scale_rules(uf: &Node<'_>, node: &Node<'_>, pool: &str, max: i64, diags: &mut Diags) {
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for w in node.children_named("scale") {
        let label = w.block.labels.first().map_or(w.block.kind.span, |l| l.span);
        if let Some(first) = seen.get(w.label()) {
            diags.push(
                uf.file,
                Diagnostic::error(
                    codes::DUPLICATE_NAME,
                    label,
                    format!("{pool} has two scale windows named \"{}\"", w.label()),
                )
                .with_secondary(*first, "first defined here")
                .with_help("rename one of them"),
            );
        } else {
            seen.insert(w.label(), label);
        }
        if let Some(min) = w.typed("min_count").and_then(Typed::as_int) {
            if min > max {
                diags.push(
                    uf.file,
                    Diagnostic::error(
                        codes::POOL_SIZES,
                        w.attr_span("min_count").unwrap_or(w.block.kind.span),
                        format!(
                            "scale \"{}\" asks for min_count {min}, more than the {pool} max_count ({max})",
                            w.label()
                        ),
                    )
                    .with_help(format!("lower min_count, or raise the {pool} max_count")),
                );
            }
        }
    }
}

fn schema_default_int(node: &Node<'_>, attr: &str) -> Option<i64> {
    match node.schema.attr(attr)?.default? {
        schema::Default::Int(i) => Some(i),
        _ => None,
    }
}
