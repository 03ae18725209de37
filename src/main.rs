//! The `redis-autopilot` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    redis_autopilot::cli::run()
}
