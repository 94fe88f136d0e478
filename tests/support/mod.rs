//! Shared pieces of the integration tests: an isolated environment per test (its own
//! database and stream names on the local PostgreSQL and Redis) and a randomized workload
//! generator built to provoke ordering, duplication and packing bugs.

pub mod analytics;
pub mod env;
pub mod workload;

pub use env::TestEnv;
