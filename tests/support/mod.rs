//! Shared pieces of the integration tests: an isolated environment per test (its own
//! database and stream names on the local PostgreSQL and Redis) and a randomized workload
//! generator built to provoke ordering, duplication and packing bugs; fault injection
//! (processes, a restartable Redis, PostgreSQL outages) and a poison-input corpus for the
//! reliability tests.

pub mod analytics;
pub mod env;
pub mod faults;
pub mod forks;
pub mod poison;
pub mod tls;
pub mod workload;

pub use env::TestEnv;
