//! `gosling`: GitLab runners as code. All of it lives in [`gosling::cli`].

fn main() -> std::process::ExitCode {
    gosling::cli::main()
}
