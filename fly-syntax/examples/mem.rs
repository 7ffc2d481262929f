//! Peak memory of lexing and parsing a file: `cargo run --release -p fly-syntax --example mem -- FILE`.
fn main() {
    let path = std::env::args().nth(1).expect("usage: mem FILE");
    let src = std::fs::read_to_string(path).expect("readable file");
    let rss = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmHWM"))
            .unwrap_or("")
            .to_string()
    };
    println!("after read: {}", rss());
    {
        use fly_syntax::ast::*;
        use std::mem::size_of;
        println!(
            "sizes: Item {} Attribute {} Block {} Expr {} Template {} TemplatePart {} Ident {} Number {}",
            size_of::<Item>(),
            size_of::<Attribute>(),
            size_of::<Block>(),
            size_of::<Expr>(),
            size_of::<Template>(),
            size_of::<TemplatePart>(),
            size_of::<Ident>(),
            size_of::<Number>()
        );
    }
    let parse = fly_syntax::parse(&src);
    println!("items: {}; after parse: {}", parse.file.items.len(), rss());
}
