//! Generated edit sequences: any sequence of incremental edits (arbitrary ranges, non-ASCII
//! text, half-typed syntax) keeps the server's text equal to a plain model of it, and no
//! feature panics on any of the intermediate texts at any position.

use fly_lsp::features::{
    actions, completion, diagnostics, hints, hover, navigation, semantic, symbols,
};
use fly_lsp::world::{Change, World};
use fly_syntax::Encoding;
use proptest::prelude::*;
use tower_lsp_server::ls_types::Position;

const START: &str = "vars {\n  region = \"ru-central1-a\"\n}\n\negg \"app\" {\n  type = \"vm\"\n  cloud {\n    provider = \"yandex\"\n    region   = \"${vars.region}\"\n  }\n  script = <<-EOT\n    echo ${vars.region} é\n  EOT\n}\n";

/// LSP position of a byte offset, computed independently of `LineIndex` (UTF-16 units).
fn position(text: &str, offset: usize, enc: Encoding) -> Position {
    let before = &text[..offset];
    let line = before.matches('\n').count() as u32;
    let line_text = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    let character = match enc {
        Encoding::Utf16 => line_text.encode_utf16().count(),
        _ => line_text.len(),
    } as u32;
    Position { line, character }
}

fn boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[derive(Debug, Clone)]
enum Op {
    Edit {
        start: usize,
        len: usize,
        insert: String,
    },
    Query {
        at: usize,
        past_end: bool,
    },
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let insert = prop::collection::vec(
        prop_oneof![
            Just("{"),
            Just("}"),
            Just("\""),
            Just("\n"),
            Just("${"),
            Just("vars."),
            Just("="),
            Just("egg \"x\" {\n"),
            Just("<<EOT\n"),
            Just("EOT\n"),
            Just("é"),
            Just("😀"),
            Just("# c\n"),
            Just("/*"),
            Just("cpu = 2\n"),
            Just("["),
            Just("]"),
            Just(","),
            Just(" "),
            Just("\\"),
        ],
        0..4,
    )
    .prop_map(|v| v.concat());
    prop::collection::vec(
        prop_oneof![
            3 => (any::<usize>(), 0usize..12, insert).prop_map(|(start, len, insert)| Op::Edit { start, len, insert }),
            1 => (any::<usize>(), any::<bool>()).prop_map(|(at, past_end)| Op::Query { at, past_end }),
        ],
        1..25,
    )
}

fn query_everything(world: &World, id: usize, pos: Position) {
    let _ = hover::hover(world, id, pos);
    let _ = completion::complete(world, id, pos);
    let _ = navigation::definition(world, id, pos);
    let _ = navigation::references(world, id, pos, true);
    let _ = navigation::prepare_rename(world, id, pos);
    let _ = navigation::rename(world, id, pos, "renamed");
    let _ = symbols::document(world, id);
    let _ = symbols::folding(world, id);
    let _ = symbols::workspace(world, "a");
    let _ = semantic::tokens(world, id);
    let _ = hints::hints(world, id, 0, 1000);
    let diags = diagnostics::of(world, id);
    let uri = world.docs[id].uri.parse().unwrap();
    let _ = actions::quick_fixes(world, id, &uri, &diags);
    let doc = &world.docs[id];
    let _ = fly_lsp::features::formatting::format(&doc.text, &doc.index, world.encoding);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn edit_sequences_keep_the_text_and_never_panic(ops in ops(), utf8 in any::<bool>()) {
        let enc = if utf8 { Encoding::Utf8 } else { Encoding::Utf16 };
        let mut world = World::new(None, enc);
        let uri = "file:///nest/a.fly";
        world.open(uri, START.to_string(), 1);
        world.reanalyze();
        let mut model = START.to_string();
        let mut version = 1;
        for op in ops {
            match op {
                Op::Edit { start, len, insert } => {
                    let s = boundary(&model, start % (model.len() + 1));
                    let e = boundary(&model, s + len);
                    let (ps, pe) = (position(&model, s, enc), position(&model, e, enc));
                    model.replace_range(s..e, &insert);
                    version += 1;
                    let changed = world.change(uri, version, vec![Change {
                        range: Some((ps.line, ps.character, pe.line, pe.character)),
                        text: insert,
                    }]);
                    prop_assert!(changed);
                    world.reanalyze();
                    let id = world.id(uri).unwrap();
                    prop_assert_eq!(&world.docs[id].text, &model);
                }
                Op::Query { at, past_end } => {
                    let id = world.id(uri).unwrap();
                    let mut pos = position(&model, boundary(&model, at % (model.len() + 1)), enc);
                    if past_end {
                        pos.character += 1000;
                        pos.line += at as u32 % 3;
                    }
                    query_everything(&world, id, pos);
                }
            }
        }
    }
}
