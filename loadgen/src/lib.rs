//! loadgen: seeded Intuition workloads in rindexer's Redis stream format, for tests and
//! benchmarks of redis-postgres-sync.
//!
//! - [`workload`]: generate a deterministic workload (events packed into messages, plus
//!   optional out-of-order delivery, duplicates and malformed messages).
//! - [`redis_out`]: XADD messages to Redis, pipelined, optionally paced.
//! - [`jsonl`]: the JSON-lines file format of `samples/mixed-encodings.jsonl`.
//! - [`eip55`]: checksummed addresses.
//! - [`bench`]: the end-to-end benchmark behind `loadgen bench`.
//! - [`admin`]: a connection to a server's `postgres` database.
//! - [`servers`]: private PostgreSQL and Redis servers that tests crash and restart.

pub mod admin;
pub mod bench;
pub mod eip55;
pub mod jsonl;
pub mod redis_out;
pub mod servers;
pub mod workload;

pub use workload::{generate, EventType, MessageKind, StreamMessage, Workload, WorkloadConfig, WorkloadStats};
