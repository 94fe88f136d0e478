//! Test-only hooks, inert unless their environment variable names them.

/// `RPS_CRASH_POINT=<name>` aborts the process at the point of that name, so tests can prove
/// that what committed before a crash is not lost.
pub fn crash_point(name: &str) {
    if std::env::var("RPS_CRASH_POINT").is_ok_and(|v| v == name) {
        eprintln!("RPS_CRASH_POINT={name}: aborting");
        std::process::abort();
    }
}

/// `RPS_FAULT_POINT=<name>` makes the code at that point act as if the fault named had
/// happened (see its callers).
pub fn fault_point(name: &str) -> bool {
    std::env::var("RPS_FAULT_POINT").is_ok_and(|v| v == name)
}
