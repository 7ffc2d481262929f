//! Checking a whole Nest: variables from every file, every block against the schema, and
//! the Nest-wide rules (unique names, one UglyFox, regions, serverless limits, pool sizes,
//! job tags some egg provides).

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
        uglyfox: None,
    };
    let mut first_uglyfox: Option<(usize, Span)> = None;
    for node in nodes {
        match node.schema.name {
            "egg" => checked.eggs.push(node),
            "job" => checked.jobs.push(node),
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
    for egg in &checked.eggs {
        egg_rules(egg, diags);
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

fn unique_names(files: &[Input<'_>], nodes: &[Node<'_>], kind: &str, diags: &mut Diags) {
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

fn pool_rules(uf: &Node<'_>, pool: &str, diags: &mut Diags) {
    let Some(node) = uf.child(pool) else { return };
    let (Some(min), Some(max)) = (
        node.typed("min_count").and_then(Typed::as_int),
        node.typed("max_count")
            .and_then(Typed::as_int)
            .or_else(|| schema_default_int(node, "max_count")),
    ) else {
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

fn schema_default_int(node: &Node<'_>, attr: &str) -> Option<i64> {
    match node.schema.attr(attr)?.default? {
        schema::Default::Int(i) => Some(i),
        _ => None,
    }
}
