//! Redis streams: connections ([`connect`]), the consumer-group reader the engine and the
//! analytics worker share ([`reader`]), acks and dead letters ([`control`]), what Redis
//! says about a group ([`status`]), the one-slot rule of a Redis Cluster ([`cluster`]), and
//! the connection whose replies the reader reads itself ([`socket`]). Depends only on
//! [`crate::runtime`].
//!
//! Reads of new entries block on a connection of their own ([`socket`]: its replies are
//! parsed by the reader, piece by piece, to bound what a read holds); acks, dead letters,
//! the reader's scripted reads and bookkeeping use [`redis::aio::ConnectionManager`]s: a
//! plain multiplexed connection stays dead after Redis restarts, while a manager reconnects
//! in the background after an I/O error, so the caller's retry picks up a fresh connection on
//! its next attempt. The reader's own connection is opened again at its next read.

pub mod cluster;
pub mod connect;
pub mod control;
pub mod entry;
pub mod error;
pub mod reader;
pub mod socket;
pub mod status;

pub use connect::{connect, connect_managed};
pub use control::{StreamControl, DEAD_LETTER_MAXLEN};

/// The Redis every binary uses unless told otherwise.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Where the engine publishes the term ids its batches touched, for the analytics worker.
pub const DEFAULT_TERM_UPDATES_STREAM: &str = "term_updates";
/// The consumer groups of the engine and of the analytics worker.
pub const ENGINE_GROUP: &str = "redis-postgres-sync";
pub const WORKER_GROUP: &str = "analytics-worker";
pub use entry::{dead_letter_stream, DeadLetter, Entry, EntryFields, EntryKey, Oversized};
pub use error::StreamError;
pub use reader::{default_consumer_name, GroupReader, InFlight, Read, ReadBudget, ReaderConfig};
