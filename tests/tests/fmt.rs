//! Formatter tests as data: every fixture under `fixtures/fmt` and every valid syntax
//! fixture is formatted; the output is a snapshot and must be a fixed point that keeps the
//! syntax tree and every comment.

use fly_syntax::ast::EraseSpans;
use fly_tests::{fixtures, fly_files};

fn tree(src: &str) -> fly_syntax::ast::File {
    let mut file = fly_syntax::parse(src).file;
    file.erase_spans();
    file
}

fn comments(src: &str) -> Vec<String> {
    fly_syntax::parse(src)
        .comments
        .iter()
        .map(|c| src[c.span.range()].trim_end().to_string())
        .collect()
}

#[test]
fn formatter_fixtures() {
    let mut files = fly_files(&fixtures().join("fmt"));
    files.extend(fly_files(&fixtures().join("syntax").join("valid")));
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(&path).unwrap();
        let out = fly_fmt::format(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            fly_fmt::format(&out).unwrap(),
            out,
            "{name}: not idempotent"
        );
        assert_eq!(tree(&out), tree(&src), "{name}: tree changed");
        assert_eq!(comments(&out), comments(&src), "{name}: comments changed");
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path("snapshots/fmt");
        settings.set_prepend_module_to_snapshot(false);
        settings.set_input_file(&path);
        settings.bind(|| insta::assert_snapshot!(name, out));
    }
}

#[test]
fn files_with_syntax_errors_are_not_formatted() {
    for path in fly_files(&fixtures().join("syntax").join("invalid")) {
        let src = std::fs::read_to_string(&path).unwrap();
        match fly_fmt::format(&src) {
            Err(fly_fmt::FormatError::Syntax(diags)) => assert!(!diags.is_empty()),
            other => panic!("{}: {other:?}", path.display()),
        }
    }
}

#[test]
fn heredoc_bodies_are_untouched() {
    let src = "job \"j\" {\n      script = <<-EOT\n      keep   this   \n    exactly\n\n  EOT\n}\n";
    let out = fly_fmt::format(src).unwrap();
    assert!(
        out.contains("  script = <<-EOT\n      keep   this   \n    exactly\n\n  EOT\n"),
        "{out}"
    );
}
