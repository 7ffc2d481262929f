//! Property tests of the front end and the formatter (seed design document, Properties 1
//! and 3, plus formatter and robustness properties).

use fly_syntax::ast::*;
use fly_syntax::parse;
use fly_tests::arb::*;
use proptest::prelude::*;

const CASES: u32 = 256;

fn parsed_tree(src: &str) -> File {
    let parse = parse(src);
    assert!(
        parse.diagnostics.is_empty(),
        "diagnostics for\n{src}\n{:#?}",
        parse.diagnostics
    );
    let mut file = parse.file;
    file.erase_spans();
    file
}

/// The block hierarchy of a tree: kinds and labels, children in order.
#[derive(Debug, PartialEq)]
struct Shape(String, Vec<String>, Vec<Shape>);

fn shape(items: &[Item]) -> Vec<Shape> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Block(b) => Some(Shape(
                b.kind.name.to_string(),
                b.labels.iter().map(|l| l.value.clone()).collect(),
                shape(&b.items),
            )),
            _ => None,
        })
        .collect()
}

fn nested_blocks() -> impl Strategy<Value = Vec<Item>> {
    let leaf = block_with(prop::collection::vec(attribute(false), 0..2));
    let tree = leaf.prop_recursive(8, 64, 3, |inner| {
        block_with(prop::collection::vec(inner, 0..3))
    });
    prop::collection::vec(tree, 1..4)
}

// ----- A random layout of a tree, with comments, for the formatter properties. -----

/// Lays a tree out as source text with arbitrary spacing, blank lines and comments.
struct Layout<'a> {
    choices: &'a [u8],
    at: usize,
    comments: usize,
    out: String,
}

impl Layout<'_> {
    fn pick(&mut self, n: u8) -> u8 {
        let c = self.choices.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        c % n
    }
    fn space(&mut self) {
        let s = [" ", "  ", "\t", " "][self.pick(4) as usize];
        self.out.push_str(s);
    }
    fn maybe_space(&mut self) {
        if self.pick(2) == 0 {
            self.space();
        }
    }
    fn line_comment(&mut self) {
        self.comments += 1;
        let marker = if self.pick(2) == 0 { "#" } else { "//" };
        self.out
            .push_str(&format!("{marker} note {}", self.comments));
    }
    fn block_comment(&mut self) {
        self.comments += 1;
        self.out.push_str(&format!("/* note {} */", self.comments));
    }
    fn indent(&mut self, depth: usize) {
        match self.pick(3) {
            0 => {}
            1 => self.out.push_str(&"\t".repeat(depth)),
            _ => self.out.push_str(&"  ".repeat(depth)),
        }
    }
    fn body(&mut self, items: &[Item], depth: usize) {
        for item in items {
            match self.pick(5) {
                0 => self.out.push('\n'),
                1 => {
                    self.indent(depth);
                    self.line_comment();
                    self.out.push('\n');
                }
                2 => {
                    self.indent(depth);
                    self.block_comment();
                    self.out.push('\n');
                    self.out.push('\n');
                }
                _ => {}
            }
            self.indent(depth);
            let heredoc = self.item(item, depth);
            if !heredoc && self.pick(3) == 0 {
                self.maybe_space();
                self.out.push(' ');
                self.line_comment();
            }
            self.out.push('\n');
        }
        if self.pick(4) == 0 {
            self.indent(depth);
            self.line_comment();
            self.out.push('\n');
        }
    }
    /// Returns true when the item ended with a heredoc marker (nothing may follow it).
    fn item(&mut self, item: &Item, depth: usize) -> bool {
        match item {
            Item::Attribute(a) => {
                self.out.push_str(&a.name.name);
                self.maybe_space();
                self.out.push('=');
                self.space();
                if self.pick(4) == 0 {
                    self.block_comment();
                    self.out.push(' ');
                }
                self.expr(&a.value, depth);
                matches!(a.value, Expr::Heredoc(_))
            }
            Item::Block(b) => {
                self.out.push_str(&b.kind.name);
                for l in &b.labels {
                    self.space();
                    self.out
                        .push_str(&fly_fmt::print_expr(&Expr::String(Template {
                            parts: vec![TemplatePart::Literal(Literal {
                                value: l.value.clone(),
                                span: sp(),
                            })],
                            span: sp(),
                        })));
                }
                self.maybe_space();
                self.out.push('{');
                if self.pick(3) == 0 {
                    self.out.push(' ');
                    self.line_comment();
                }
                self.out.push('\n');
                self.body(&b.items, depth + 1);
                self.indent(depth);
                self.out.push('}');
                false
            }
            Item::Error(_) => unreachable!("generated trees have no errors"),
        }
    }
    fn expr(&mut self, e: &Expr, depth: usize) {
        match e {
            Expr::List(l) if self.pick(2) == 0 => {
                self.out.push('[');
                for (i, el) in l.elems.iter().enumerate() {
                    self.out.push('\n');
                    self.indent(depth + 1);
                    if self.pick(3) == 0 {
                        self.line_comment();
                        self.out.push('\n');
                        self.indent(depth + 1);
                    }
                    self.expr(el, depth + 1);
                    if i + 1 < l.elems.len() || self.pick(2) == 0 {
                        self.out.push(',');
                    }
                    if self.pick(3) == 0 {
                        self.out.push(' ');
                        self.line_comment();
                    }
                }
                self.out.push('\n');
                self.indent(depth);
                self.out.push(']');
            }
            Expr::Map(m) if self.pick(2) == 0 => {
                self.out.push('{');
                if self.pick(3) == 0 {
                    self.out.push(' ');
                    self.line_comment();
                }
                self.out.push('\n');
                for entry in &m.entries {
                    self.indent(depth + 1);
                    self.out.push_str(&match &entry.key {
                        MapKey::Ident(i) => i.name.to_string(),
                        MapKey::String(s) => fly_fmt::print_expr(&Expr::String(Template {
                            parts: vec![TemplatePart::Literal(Literal {
                                value: s.value.clone(),
                                span: sp(),
                            })],
                            span: sp(),
                        })),
                    });
                    self.out.push_str(" = ");
                    self.expr(&entry.value, depth + 1);
                    if self.pick(2) == 0 {
                        self.out.push(',');
                    }
                    if self.pick(3) == 0 {
                        self.out.push(' ');
                        self.line_comment();
                    }
                    self.out.push('\n');
                }
                self.indent(depth);
                self.out.push('}');
            }
            other => self.out.push_str(&fly_fmt::print_expr(other)),
        }
    }
}

fn comment_texts(src: &str) -> Vec<String> {
    parse(src)
        .comments
        .iter()
        .map(|c| src[c.span.range()].trim_end().to_string())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    // Property 1: Fly Parser Round-Trip Consistency — printing any valid AST and parsing
    // the text gives an equal AST (spans aside).
    #[test]
    fn property_1_print_then_parse_round_trips(ast in file(true)) {
        let printed = fly_fmt::print(&ast);
        prop_assert_eq!(parsed_tree(&printed), ast, "printed:\n{}", printed);
    }

    // Property 3: Fly Parser Nested Block Support — any nesting of blocks keeps its
    // hierarchy (kinds, labels, order) through printing and parsing.
    #[test]
    fn property_3_nested_blocks_keep_their_hierarchy(items in nested_blocks()) {
        let ast = File { items, span: sp() };
        let printed = fly_fmt::print(&ast);
        let parsed = parsed_tree(&printed);
        prop_assert_eq!(shape(&parsed.items), shape(&ast.items));
    }

    // Formatting any layout of a valid tree is idempotent, keeps the AST and keeps every
    // comment, in order.
    #[test]
    fn formatting_is_idempotent_and_lossless(ast in file(false), choices in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut layout = Layout { choices: &choices, at: 0, comments: 0, out: String::new() };
        layout.body(&ast.items, 0);
        let src = layout.out;
        let once = fly_fmt::format(&src).map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
        let twice = fly_fmt::format(&once).map_err(|e| TestCaseError::fail(format!("{e}\n{once}")))?;
        prop_assert_eq!(&twice, &once, "not idempotent; source:\n{}", src);
        prop_assert_eq!(parsed_tree(&once), parsed_tree(&src), "AST changed:\n{}\n---\n{}", src, once);
        prop_assert_eq!(comment_texts(&once), comment_texts(&src), "comments changed:\n{}\n---\n{}", src, once);
        prop_assert!(once.ends_with('\n') || once.is_empty());
        prop_assert!(!once.lines().any(|l| l.ends_with(' ') || l.ends_with('\t')), "trailing whitespace:\n{}", once);
        prop_assert!(!once.contains("\n\n\n"), "blank lines not collapsed:\n{}", once);
    }

    // Robustness: arbitrary text never panics the lexer, parser or formatter, and whatever
    // the formatter accepts it formats idempotently without changing the AST.
    #[test]
    fn arbitrary_text_never_panics(src in any::<String>()) {
        check_robust(&src)?;
    }

    #[test]
    fn fly_like_token_soup_never_panics(parts in prop::collection::vec(prop_oneof![
        Just("egg"), Just("\"a\""), Just("{"), Just("}"), Just("["), Just("]"), Just("("),
        Just("="), Just(","), Just("."), Just("\n"), Just(" "), Just("${"), Just("\""),
        Just("<<EOT\n"), Just("<<-EOT\n"), Just("EOT\n"), Just("  EOT\n"), Just("# c\n"),
        Just("/*"), Just("*/"), Just("1"), Just("-"), Just("1.5e3"), Just("vars"),
        Just("$${"), Just("\\"), Just("\\u00e9"), Just("é"), Just("true"), Just("x"),
    ], 0..40)) {
        check_robust(&parts.concat())?;
    }
}

fn check_robust(src: &str) -> Result<(), TestCaseError> {
    let parse = parse(src);
    for d in &parse.diagnostics {
        prop_assert!(d.span.end as usize <= src.len());
        prop_assert!(src.is_char_boundary(d.span.start as usize));
        prop_assert!(src.is_char_boundary(d.span.end as usize));
    }
    if let Ok(once) = fly_fmt::format(src) {
        prop_assert_eq!(fly_fmt::format(&once).ok(), Some(once.clone()));
        prop_assert_eq!(parsed_tree(&once), parsed_tree(src));
    }
    Ok(())
}
