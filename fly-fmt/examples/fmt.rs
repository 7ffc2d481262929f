//! Formats a file to stdout: `cargo run -p fly-fmt --example fmt -- FILE`.
fn main() {
    let path = std::env::args().nth(1).expect("usage: fmt FILE");
    let src = std::fs::read_to_string(path).expect("readable file");
    match fly_fmt::format(&src) {
        Ok(out) => print!("{out}"),
        Err(e) => eprintln!("{e}"),
    }
}
