//! Writes a generated benchmark input to stdout:
//! `cargo run --release -p fly-tests --example generate -- [large|nest] BYTES > big.fly`.
fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "large".into());
    let bytes: usize = args
        .next()
        .and_then(|b| b.parse().ok())
        .unwrap_or(10 * 1024 * 1024);
    let text = match kind.as_str() {
        "nest" => fly_tests::generate::nest_source(bytes),
        _ => fly_tests::generate::large_source(bytes),
    };
    print!("{text}");
}
