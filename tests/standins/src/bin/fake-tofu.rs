//! `fake-tofu`: the fake OpenTofu of [`gosling_standins::fake_tofu`].

fn main() -> std::process::ExitCode {
    gosling_standins::fake_tofu::main()
}
