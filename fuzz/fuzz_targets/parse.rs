//! Fuzz target `parse`: arbitrary bytes through the parser and the formatter.
//!
//! * `fly_syntax::parse` never panics, and every diagnostic span (and every same-file
//!   secondary label span) lies within the text, on char boundaries;
//! * when `fly_fmt::format` succeeds, its output is a fixed point of the formatter and
//!   parses to the same tree (spans erased) as the input.
#![no_main]

use fly_syntax::ast::EraseSpans;
use fly_syntax::Span;
use libfuzzer_sys::fuzz_target;

fn check_span(text: &str, span: Span, what: &str) {
    let (start, end) = (span.start as usize, span.end as usize);
    assert!(
        start <= end && end <= text.len(),
        "{what} span {start}..{end} outside the text (len {})",
        text.len()
    );
    assert!(
        text.is_char_boundary(start) && text.is_char_boundary(end),
        "{what} span {start}..{end} not on char boundaries"
    );
}

fn tree(src: &str) -> fly_syntax::ast::File {
    let mut file = fly_syntax::parse(src).file;
    file.erase_spans();
    file
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;

    let parse = fly_syntax::parse(text);
    for d in &parse.diagnostics {
        check_span(text, d.span, &format!("diagnostic {}", d.code));
        for l in d.secondary.iter().filter(|l| l.file.is_none()) {
            check_span(text, l.span, &format!("secondary label of {}", d.code));
        }
    }

    if let Ok(out) = fly_fmt::format(text) {
        match fly_fmt::format(&out) {
            Ok(again) => assert_eq!(again, out, "formatting is not idempotent"),
            Err(e) => panic!("formatter output does not format again: {e}\noutput:\n{out}"),
        }
        assert_eq!(tree(&out), tree(text), "formatting changed the syntax tree");
    }
});
