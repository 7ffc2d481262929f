//! `fake-gitlab-runner`: the fake agent of [`gosling_standins::fake_gitlab_runner`].

fn main() -> std::process::ExitCode {
    gosling_standins::fake_gitlab_runner::main()
}
