//! `fly`: check, format and serve Fly files. All of it lives in [`fly_lsp::cli`].

fn main() -> std::process::ExitCode {
    fly_lsp::cli::main()
}
