//! The language specification stays true: its formatting example is what `fly fmt` does,
//! its reference to the design document's examples holds, and its Rift and scale-window
//! examples check.

fn fly_blocks_after(doc: &str, marker: &str) -> String {
    let at = doc
        .find(marker)
        .unwrap_or_else(|| panic!("no `{marker}` in the spec"));
    let rest = &doc[at..];
    let start = rest.find("```fly\n").expect("a fly block follows") + "```fly\n".len();
    let end = rest[start..].find("```").expect("closed block");
    rest[start..start + end].to_string()
}

#[test]
fn formatting_example_matches_the_formatter() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/fly-language.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let before = fly_blocks_after(&doc, "Before:");
    let after = fly_blocks_after(&doc, "After `fly fmt`:");
    assert_eq!(fly_fmt::format(&before).unwrap(), after);
}

/// The Rift and scale-window examples of the specification check without a diagnostic.
#[test]
fn rift_and_scale_examples_check() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/fly-language.md");
    let doc = std::fs::read_to_string(path).unwrap();
    for marker in ["### Rift", "### Pool sizes over the day"] {
        let example = fly_blocks_after(&doc, marker);
        let out = fly_types::compile(
            vec![fly_types::SourceFile::new("example.fly", example.clone())],
            &fly_types::Env::default(),
        );
        let diags: Vec<String> = out
            .diagnostics()
            .map(|(_, d)| format!("{} {}", d.code, d.message))
            .collect();
        assert!(diags.is_empty(), "{marker}:\n{example}\n{diags:#?}");
        assert!(out.ir.is_some(), "{marker}");
        assert_eq!(fly_fmt::format(&example).unwrap(), example, "{marker}");
    }
}
