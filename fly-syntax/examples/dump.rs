//! Prints the parse of a file: `cargo run -p fly-syntax --example dump -- FILE`.
fn main() {
    let path = std::env::args().nth(1).expect("usage: dump FILE");
    let src = std::fs::read_to_string(path).expect("readable file");
    let parse = fly_syntax::parse(&src);
    println!("{:#?}", parse.file);
    for d in &parse.diagnostics {
        println!("{:?} {} {} {:?}", d.severity, d.code, d.message, d.span);
    }
}
