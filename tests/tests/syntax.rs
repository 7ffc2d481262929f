//! Tests as data: every fixture under `fixtures/syntax` is parsed; the tree and the
//! rendered diagnostics are snapshots. Files under `valid/` must have no diagnostics and
//! files under `invalid/` at least one error.

use fly_tests::{dump, fixtures, fly_files, render};

fn snapshot_dir(kind: &str) {
    let dir = fixtures().join("syntax").join(kind);
    let files = fly_files(&dir);
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let parse = fly_syntax::parse(&text);
        let diags = render(&format!("{name}.fly"), &text, &parse.diagnostics);
        match kind {
            "valid" => assert!(parse.diagnostics.is_empty(), "{name}:\n{diags}"),
            _ => assert!(parse.has_errors(), "{name} should have errors"),
        }
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path("snapshots/syntax");
        settings.set_prepend_module_to_snapshot(false);
        settings.set_input_file(&path);
        settings.bind(|| {
            insta::assert_snapshot!(
                format!("{kind}-{name}"),
                format!("{}\n{diags}", dump(&parse.file))
            );
        });
    }
}

#[test]
fn valid_fixtures() {
    snapshot_dir("valid");
}

#[test]
fn invalid_fixtures() {
    snapshot_dir("invalid");
}

/// The design document's three examples parse exactly as written, into the expected shape.
#[test]
fn design_document_examples_parse() {
    let dir = fixtures().join("syntax").join("valid");
    for (file, kind, label, children) in [
        ("seed-egg.fly", "egg", Some("my-app"), 6),
        ("seed-job.fly", "job", Some("rotate-secrets"), 4),
        ("seed-uglyfox.fly", "uglyfox", None, 4),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let parse = fly_syntax::parse(&text);
        assert!(
            parse.diagnostics.is_empty(),
            "{file}: {:?}",
            parse.diagnostics
        );
        let [fly_syntax::ast::Item::Block(block)] = parse.file.items.as_slice() else {
            panic!("{file}: expected one top-level block");
        };
        assert_eq!(block.kind.name, kind);
        assert_eq!(block.labels.first().map(|l| l.value.as_str()), label);
        assert_eq!(block.items.len(), children, "{file}");
    }
}

/// One file with several mistakes reports each of them and still yields the rest of the tree.
#[test]
fn recovery_reports_every_error_and_keeps_the_tree() {
    let text = std::fs::read_to_string(fixtures().join("syntax/invalid/many-errors.fly")).unwrap();
    let parse = fly_syntax::parse(&text);
    let errors: Vec<_> = parse.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert!(errors.len() >= 4, "{errors:#?}");
    let kinds: Vec<&str> = parse
        .file
        .items
        .iter()
        .filter_map(|i| match i {
            fly_syntax::ast::Item::Block(b) => Some(b.kind.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["egg", "job"]);
    let fly_syntax::ast::Item::Block(egg) = &parse.file.items[0] else {
        unreachable!()
    };
    let disk = egg
        .items
        .iter()
        .any(|i| matches!(i, fly_syntax::ast::Item::Attribute(a) if a.name.name == "disk"));
    assert!(disk, "the attribute after the errors is still in the tree");
}

/// Unterminated constructs point at where they were opened.
#[test]
fn unterminated_constructs_point_at_their_opening() {
    for (src, code, opener) in [
        ("a = \"abc\nb = 1\n", "F0002", "\""),
        ("a = <<EOT\nabc\n", "F0003", "<<EOT"),
        ("egg \"x\" {\n  a = 1\n", "F0004", "{"),
        ("a = [1, 2\n", "F0004", "["),
        ("a = 1 /* open\n", "F0009", "/*"),
    ] {
        let parse = fly_syntax::parse(src);
        let d = parse
            .diagnostics
            .iter()
            .find(|d| d.code.0 == code)
            .unwrap_or_else(|| panic!("{src:?}: no {code} in {:?}", parse.diagnostics));
        assert_eq!(&src[d.span.range()], opener, "{src:?}");
    }
}

/// Nesting beyond the limit is reported once, and absurd depths neither panic nor overflow.
#[test]
fn nesting_depth_is_bounded() {
    let limit = fly_syntax::lexer::MAX_DEPTH;
    let ok = format!("a = {}{}\n", "[".repeat(limit - 1), "]".repeat(limit - 1));
    assert!(fly_syntax::parse(&ok).diagnostics.is_empty());
    for n in [limit + 1, 100_000] {
        for (open, close) in [("[", "]"), ("{", "}"), ("b {\n", "}\n")] {
            let src = format!("a = {}{}\n", open.repeat(n), close.repeat(n));
            let parse = fly_syntax::parse(&src);
            let deep: Vec<_> = parse
                .diagnostics
                .iter()
                .filter(|d| d.code.0 == "F0012")
                .collect();
            assert_eq!(deep.len(), 1, "{open} x {n}");
        }
    }
}

/// Inputs the fuzzer once crashed on: no panic, sane spans, and errors reported.
#[test]
fn fuzz_regressions() {
    for path in fly_files(&fixtures().join("fuzz-regressions")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let parse = fly_syntax::parse(&text);
        for d in &parse.diagnostics {
            assert!(
                d.span.start <= d.span.end && d.span.end as usize <= text.len(),
                "{}",
                path.display()
            );
        }
        let _ = fly_fmt::format(&text);
    }
}
