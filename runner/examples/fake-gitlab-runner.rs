//! The fake agent of `gosling-standins` (the `fake-gitlab-runner` binary), built here so
//! that runner mode's tests always run the current one.

fn main() -> std::process::ExitCode {
    gosling_standins::fake_gitlab_runner::main()
}
