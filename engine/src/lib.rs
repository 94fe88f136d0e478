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
pub mod durability;
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
