//! Property tests of the checker and the lowering (seed Properties 2 and 4, determinism,
//! robustness).

use fly_syntax::ast::{InterpExpr, Interpolation, Literal, Template, TemplatePart, Traversal};
use fly_syntax::{Encoding, LineIndex};
use fly_tests::arb::{self, sp};
use fly_types::schema::{self, AttrSchema, BlockSchema, Type};
use fly_types::{compile, Env, SourceFile};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A minimal valid instance of `schema` (required attributes from their examples, required
/// blocks), with `inject` (a path of block names below this one, and a `name = value` line)
/// placed in the block at the end of the path, replacing any example line of that name.
fn instance(
    b: &'static BlockSchema,
    inject: Option<(&[&'static str], &str, &str)>,
    depth: usize,
) -> String {
    let pad = "  ".repeat(depth + 1);
    let mut out = String::new();
    let labels: String = b.labels.iter().map(|_| " \"p\"").collect();
    out.push_str(&format!("{}{}{labels} {{\n", "  ".repeat(depth), b.name));
    let here = matches!(inject, Some((path, _, _)) if path.is_empty());
    for a in b.attrs.iter().filter(|a| a.required) {
        if here && inject.is_some_and(|(_, name, _)| name == a.name) {
            continue;
        }
        out.push_str(&format!("{pad}{}\n", a.example));
    }
    if let Some((path, name, value)) = inject {
        if path.is_empty() {
            out.push_str(&format!("{pad}{name} = {value}\n"));
        }
    }
    for child in b.blocks {
        let next = inject.and_then(|(path, n, v)| match path.split_first() {
            Some((first, rest)) if *first == child.name => Some((rest, n, v)),
            _ => None,
        });
        if child.required || next.is_some() {
            out.push_str(&instance(child, next, depth + 1));
        }
    }
    out.push_str(&format!("{}}}\n", "  ".repeat(depth)));
    out
}

/// Every typed attribute under the top-level blocks: (top block, path below it, attribute).
fn typed_attrs() -> Vec<(&'static BlockSchema, Vec<&'static str>, &'static AttrSchema)> {
    fn walk(
        top: &'static BlockSchema,
        b: &'static BlockSchema,
        path: Vec<&'static str>,
        out: &mut Vec<(&'static BlockSchema, Vec<&'static str>, &'static AttrSchema)>,
    ) {
        for a in b.attrs {
            if a.ty != Type::Any {
                out.push((top, path.clone(), a));
            }
        }
        for c in b.blocks {
            let mut p = path.clone();
            p.push(c.name);
            walk(top, c, p, out);
        }
    }
    let mut out = Vec::new();
    for top in [&schema::EGG, &schema::JOB, &schema::RIFT, &schema::UGLYFOX] {
        walk(top, top, Vec::new(), &mut out);
    }
    out
}

/// A value of a kind the type does not accept, with the kind's name as messages say it.
fn wrong_value(ty: Type) -> BoxedStrategy<(String, &'static str)> {
    let string = "[a-z]{1,6}"
        .prop_map(|s| (format!("\"{s}\""), "a string"))
        .boxed();
    let int = (-1000i64..1000)
        .prop_map(|i| (i.to_string(), "an integer"))
        .boxed();
    let float = (1u32..1000)
        .prop_map(|f| (format!("{f}.5"), "a float"))
        .boxed();
    let boolean = any::<bool>()
        .prop_map(|b| (b.to_string(), "a bool"))
        .boxed();
    let list = Just(("[1, 2]".to_string(), "a list")).boxed();
    let map = Just(("{ a = 1 }".to_string(), "a map")).boxed();
    match ty {
        Type::Int { .. } => prop_oneof![string, float, boolean, list, map].boxed(),
        Type::Bool => prop_oneof![string, int, float, list, map].boxed(),
        Type::Tags | Type::List(_) => prop_oneof![string, int, float, boolean, map].boxed(),
        _ => prop_oneof![int, float, boolean, list, map].boxed(),
    }
}

fn line_of(text: &str, needle: &str) -> u32 {
    text.lines()
        .position(|l| l.trim_start().starts_with(needle))
        .expect("injected line") as u32
}

fn env() -> Env {
    Env::default()
}

proptest! {
    #![proptest_config(config())]

    // Property 2: Fly Parser Type Error Detection — for any attribute and any value of a
    // kind its type does not accept, the checker reports a diagnostic on that line naming
    // the expected type and the actual one.
    #[test]
    fn property_2_type_errors_are_located_and_name_both_types(
        (top, path, attr, (value, actual)) in proptest::sample::select(typed_attrs())
            .prop_flat_map(|(top, path, attr)| wrong_value(attr.ty).prop_map(move |v| (top, path.clone(), attr, v)))
    ) {
        let text = instance(top, Some((&path, attr.name, &value)), 0);
        let compilation = compile(vec![SourceFile::new("case.fly", text.clone())], &env());
        let file = &compilation.files[0];
        let index = LineIndex::new(&text);
        let line = line_of(&text, &format!("{} = {value}", attr.name));
        let found = file.diagnostics.iter().any(|d| {
            d.code.0 == "F1005"
                && index.line_col(&text, d.span.start as usize, Encoding::Utf8).line == line
                && d.message.starts_with("expected ")
                && d.message.ends_with(&format!("found {actual}"))
        });
        prop_assert!(found, "no located type error for `{} = {}` in\n{}\n{:#?}", attr.name, value, text, file.diagnostics);
        prop_assert!(compilation.ir.is_none());
    }

    // Property 2 (the valid side): the minimal instance of every block is accepted.
    #[test]
    fn minimal_instances_are_valid((top, _, _) in proptest::sample::select(typed_attrs())) {
        let text = instance(top, None, 0);
        let compilation = compile(vec![SourceFile::new("ok.fly", text.clone())], &env());
        let errors: Vec<_> = compilation.diagnostics().filter(|(_, d)| d.is_error()).map(|(_, d)| d.message.clone()).collect();
        prop_assert!(errors.is_empty(), "{}\n{:?}", text, errors);
    }
}

/// Property 2 covers the attributes added for the executors (Rift, provisioning, runner
/// caps, scale windows, the throttle): each is among the typed attributes it draws from.
#[test]
fn typed_attributes_include_the_executor_settings() {
    let names: Vec<String> = typed_attrs()
        .iter()
        .map(|(top, path, a)| {
            let mut p = vec![top.name];
            p.extend(path);
            p.push(a.name);
            p.join(".")
        })
        .collect();
    for wanted in [
        "egg.rift",
        "egg.cloud.provisioning",
        "egg.cloud.image_id",
        "egg.cloud.security_group_id",
        "egg.runner.max_runners",
        "rift.address",
        "rift.bucket",
        "rift.tls_ca",
        "rift.docker_proxy",
        "rift.docker_address",
        "uglyfox.apex.scale.from",
        "uglyfox.apex.scale.to",
        "uglyfox.apex.scale.timezone",
        "uglyfox.nadir.scale.min_count",
        "uglyfox.throttle.create_per_pass",
        "uglyfox.throttle.terminate_per_pass",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} not in {names:?}"
        );
    }
}

fn scale_nest(zone: &str) -> String {
    format!(
        "uglyfox {{\n  apex {{\n    scale \"w\" {{\n      from      = \"0 8 * * 1-5\"\n      to        = \"0 19 * * 1-5\"\n      timezone  = \"{zone}\"\n      min_count = 1\n    }}\n  }}\n}}\n"
    )
}

fn zone_names() -> Vec<&'static str> {
    fly_types::ir::chrono_tz::TZ_VARIANTS
        .iter()
        .map(|z| z.name())
        .collect()
}

proptest! {
    #![proptest_config(config())]

    // Every IANA time zone name is a valid scale `timezone` and reaches the IR unchanged;
    // the same name in the wrong case is refused (F1018) with the right spelling offered.
    #[test]
    fn every_iana_zone_is_accepted_and_a_wrong_case_is_corrected(zone in proptest::sample::select(zone_names())) {
        let compilation = compile(vec![SourceFile::new("UF/uf.fly", scale_nest(zone))], &env());
        let diags: Vec<_> = compilation.diagnostics().map(|(_, d)| d.message.clone()).collect();
        let ir = compilation.ir.ok_or_else(|| TestCaseError::fail(format!("{zone}: {diags:?}")))?;
        let window = &ir.uglyfox.as_ref().expect("uglyfox").apex.scale[0];
        prop_assert_eq!(&window.timezone, zone);
        prop_assert!(window.time_zone().is_some());

        let lower = zone.to_lowercase();
        if lower != zone && !zone_names().contains(&lower.as_str()) {
            let compilation = compile(vec![SourceFile::new("UF/uf.fly", scale_nest(&lower))], &env());
            let found = compilation.diagnostics().any(|(_, d)| {
                d.code.0 == "F1018"
                    && d.help.as_deref().is_some_and(|h| h.contains(&format!("did you mean \"{zone}\"")))
            });
            prop_assert!(found, "{lower}: {:#?}", compilation.files[0].diagnostics);
        }
    }
}

/// A generated variable: its name, its definition (Fly text) and its expected string value.
#[derive(Clone, Debug)]
struct Var {
    name: String,
    text: String,
    value: String,
}

fn literal(s: &str) -> TemplatePart {
    TemplatePart::Literal(Literal {
        value: s.to_string(),
        span: sp(),
    })
}

fn reference(name: &str) -> TemplatePart {
    TemplatePart::Interpolation(Interpolation {
        expr: InterpExpr::Traversal(Traversal {
            root: fly_syntax::ast::Ident {
                name: "vars".into(),
                span: sp(),
            },
            path: vec![fly_syntax::ast::Ident {
                name: name.into(),
                span: sp(),
            }],
            span: sp(),
        }),
        span: sp(),
    })
}

/// Prints template parts as a quoted Fly string (escaping as the formatter does).
fn quoted(parts: Vec<TemplatePart>) -> String {
    let mut merged: Vec<TemplatePart> = Vec::new();
    for p in parts {
        match (merged.last_mut(), p) {
            (_, TemplatePart::Literal(l)) if l.value.is_empty() => {}
            (Some(TemplatePart::Literal(prev)), TemplatePart::Literal(l)) => {
                prev.value.push_str(&l.value)
            }
            (_, p) => merged.push(p),
        }
    }
    fly_fmt::print_expr(&fly_syntax::ast::Expr::String(Template {
        parts: merged,
        span: sp(),
    }))
}

/// Variables where each may refer to earlier ones; text and expected value side by side.
fn vars() -> impl Strategy<Value = Vec<Var>> {
    let piece = prop_oneof![
        arb::text().prop_map(|t| (true, t, 0usize)),
        (0usize..8).prop_map(|i| (false, String::new(), i)),
        (-50i64..50).prop_map(|n| (true, n.to_string(), 0)),
    ];
    prop::collection::vec(prop::collection::vec(piece, 0..4), 1..8).prop_map(|defs| {
        let mut out: Vec<Var> = Vec::new();
        for (i, pieces) in defs.into_iter().enumerate() {
            let mut parts = Vec::new();
            let mut value = String::new();
            for (is_text, text, r) in pieces {
                if is_text || out.is_empty() {
                    parts.push(literal(&text));
                    value.push_str(&text);
                } else {
                    let target = &out[r % out.len()];
                    parts.push(reference(&target.name));
                    value.push_str(&target.value);
                }
            }
            out.push(Var {
                name: format!("v{i}"),
                text: quoted(parts),
                value,
            });
        }
        out
    })
}

proptest! {
    #![proptest_config(config())]

    // Property 4: Fly Parser Variable Interpolation — for any variables (including ones that
    // refer to other variables, escapes and non-ASCII text) and any template over them, the
    // compiled value is the template with every reference substituted.
    #[test]
    fn property_4_interpolation_substitutes_values(vars in vars(), uses in prop::collection::vec((any::<bool>(), arb::text(), 0usize..8), 0..5), cpu in 1i64..=96) {
        let mut parts = Vec::new();
        let mut expected = String::new();
        for (is_ref, text, i) in uses {
            if is_ref {
                let v = &vars[i % vars.len()];
                parts.push(reference(&v.name));
                expected.push_str(&v.value);
            } else {
                parts.push(literal(&text));
                expected.push_str(&text);
            }
        }
        let mut src = String::from("vars {\n");
        for v in &vars {
            src.push_str(&format!("  {} = {}\n", v.name, v.text));
        }
        src.push_str(&format!("  cpu = {cpu}\n}}\n"));
        src.push_str(&format!(
            "egg \"e\" {{\n  type = \"vm\"\n  cloud {{\n    provider = \"aws\"\n    region = \"eu-west-1\"\n  }}\n  resources {{\n    cpu = \"${{vars.cpu}}\"\n  }}\n  gitlab {{\n    project_id = 1\n    token_secret = \"vault://t\"\n  }}\n  environment {{\n    VALUE = {}\n  }}\n}}\n",
            quoted(parts)
        ));
        let compilation = compile(vec![SourceFile::new("nest.fly", src.clone())], &env());
        let diags: Vec<_> = compilation.diagnostics().map(|(_, d)| d.message.clone()).collect();
        let ir = compilation.ir.ok_or_else(|| TestCaseError::fail(format!("{src}\n{diags:?}")))?;
        prop_assert_eq!(&ir.eggs[0].environment["VALUE"], &expected, "{}", src);
        prop_assert_eq!(ir.eggs[0].resources.cpu as i64, cpu);
    }

    // Lowering is deterministic: the same Nest gives byte-identical IR, whatever order its
    // files are read in.
    #[test]
    fn lowering_is_deterministic(names in prop::collection::btree_set("[a-z]{1,8}", 1..6), tags in prop::collection::vec("[a-z]{1,5}", 0..4)) {
        let files: Vec<SourceFile> = names.iter().map(|n| {
            let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
            SourceFile::new(format!("Eggs/{n}.fly"), format!(
                "egg \"{n}\" {{\n  type = \"vm\"\n  cloud {{\n    provider = \"aws\"\n    region = \"eu-west-1\"\n  }}\n  runner {{\n    tags = [{}]\n  }}\n  gitlab {{\n    project_id = 1\n    token_secret = \"vault://t\"\n  }}\n}}\n",
                tags.join(", ")
            ))
        }).collect();
        let mut reversed = files.clone();
        reversed.reverse();
        let a = compile(files.clone(), &env()).ir.expect("valid").to_json();
        let b = compile(files, &env()).ir.expect("valid").to_json();
        let c = compile(reversed, &env()).ir.expect("valid").to_json();
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &c);
    }

    // Checking never panics, whatever the tree (generated syntax trees, printed and compiled).
    #[test]
    fn checking_never_panics_on_any_tree(ast in arb::file(true)) {
        let text = fly_fmt::print(&ast);
        let _ = compile(vec![SourceFile::new("any.fly", text)], &env());
    }

    #[test]
    fn checking_never_panics_on_any_text(text in any::<String>()) {
        let _ = compile(vec![SourceFile::new("any.fly", text)], &env());
    }
}
