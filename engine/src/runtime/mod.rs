//! The lowest layer: mechanics every other layer uses, knowing nothing of Redis, PostgreSQL
//! or events. Retrying with backoff until stopped ([`retry`]), shutdown and the grace a run
//! gets ([`shutdown`]), task guards ([`task`]), stage timing ([`timing`]), test-only crash
//! and fault points ([`faults`]), metric names and the process's counters ([`telemetry`]),
//! connection strings without their secrets ([`redact`]), the rustls pieces both TLS clients
//! share ([`tls`]), and the errors that end a run at
//! once with their exit codes ([`exit`]), and the allocator's one setting ([`allocator`]).

pub mod allocator;
pub mod exit;
pub mod faults;
pub mod redact;
pub mod retry;
pub mod shutdown;
pub mod task;
pub mod telemetry;
pub mod timing;
pub mod tls;

pub use retry::{Backoff, Retry};
pub use shutdown::Stop;
pub use task::TaskGuard;
pub use timing::StageTimes;
