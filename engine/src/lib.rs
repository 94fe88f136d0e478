//! redis-postgres-sync: rindexer events from Redis streams into PostgreSQL, one batch per
//! transaction.
//!
//! Stages, in the order a batch meets them:
//! [`source`] (XREADGROUP) → [`decode`] (simd-json → typed [`event`]s) → [`batch`] (sort,
//! dedup, term set) → [`stage`] (binary COPY) → [`merge`] (event log + statement-level
//! triggers) → [`cascade`] (level 2) + [`outbox`] → commit → ack → publish to `term_updates`. [`pipeline`] drives them.

pub mod analytics;
pub mod batch;
pub mod cascade;
pub mod config;
pub mod db;
pub mod decode;
pub mod doctor;
pub mod event;
pub mod merge;
pub mod metrics;
pub mod numeric;
pub mod outbox;
pub mod pipeline;
pub mod progress;
pub mod readers;
pub mod source;
pub mod sql;
pub mod stage;
pub mod verify;

pub use config::EngineConfig;
pub use pipeline::{run, RunSummary};

/// Resolves on SIGTERM or SIGINT: the shutdown future both binaries hand to their run loop.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Every binary linking the engine (the engine, the analytics worker, loadgen's in-process
/// bench) allocates with jemalloc, which keeps freed pages for reuse. Each batch allocates
/// and frees tens of megabytes (events, staging buffers); glibc returned them to the kernel
/// only to fault them in again, zeroed, for the next batch (about a quarter of the engine's
/// CPU in backfill).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
