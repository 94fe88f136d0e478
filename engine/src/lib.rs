//! redis-postgres-sync: rindexer events from Redis streams into PostgreSQL, one batch per
//! transaction.
//!
//! The folders are the layers; each uses only the ones listed before it:
//!
//! - [`runtime`]: retry with backoff until stopped, shutdown, task guards, stage timing,
//!   crash and fault points, metric names and counters, redaction.
//! - [`event`]: typed events, rindexer's JSON decoded into them, uint256 numbers.
//! - [`stream`] (Redis) and [`pg`] (PostgreSQL): connections, the group reader, acks and dead
//!   letters; the pool, the schema, typed errors, every SQL statement, WAL primitives.
//! - [`ingest`] (the engine: read → batch → copy → apply → write → outbox) and [`analytics`]
//!   (the level 3 worker), side by side.
//! - [`ops`]: metrics and health endpoint, monitor, progress display, doctor, readers, verify.
//!
//! The binaries (`src/bin/`) sit on top.

pub mod analytics;
pub mod event;
pub mod ingest;
pub mod ops;
pub mod pg;
pub mod runtime;
pub mod stream;

pub use ingest::{run, EngineConfig, RunSummary};
