//! The engine's settings: every flag can also come from the environment.

use std::time::Duration;

use clap::Args;

pub const DEFAULT_STREAMS: &str =
    "intuition_atom_created,intuition_triple_created,intuition_deposited,intuition_redeemed,intuition_share_price_changed";

/// Messages per stream per read. At rindexer's ~50 events per message and five streams a
/// full read is up to ~250,000 events; larger batches amortise per-batch planning and
/// locking (see README → Performance).
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// Pooled connections the engine needs besides one per part: the batch's lock holder and
/// two for the outbox publisher (its transaction, and in backfill mode a WAL flush barrier
/// beside it, see [`super::outbox`]).
const CONNECTIONS_BESIDE_PARTS: usize = 3;

#[derive(Args, Clone, Debug)]
pub struct EngineConfig {
    /// PostgreSQL connection URL. The database is created if it does not exist.
    #[arg(long, env = "DATABASE_URL", global = true, default_value = "postgres://postgres@127.0.0.1:5432/intuition")]
    pub database_url: String,

    /// Redis connection URL.
    #[arg(long, env = "REDIS_URL", global = true, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// Streams to consume, comma separated. Events are routed by `event_name`, not stream.
    #[arg(long, env = "STREAMS", global = true, value_delimiter = ',', default_value = DEFAULT_STREAMS)]
    pub streams: Vec<String>,

    /// Consumer group shared by every engine process.
    #[arg(long, env = "CONSUMER_GROUP", global = true, default_value = "redis-postgres-sync")]
    pub group: String,

    /// Consumer name, unique per process (default: <hostname>-<pid>).
    #[arg(long, env = "CONSUMER_NAME")]
    pub consumer: Option<String>,

    /// Messages read per stream per XREADGROUP (rindexer packs many events per message).
    #[arg(long, env = "BATCH_SIZE", default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,

    /// How long one XREADGROUP blocks waiting for new messages, in milliseconds.
    #[arg(long, env = "BLOCK_MS", default_value_t = 1000)]
    pub block_ms: u64,

    /// Exit 0 once every stream is drained and nothing is pending for the group.
    #[arg(long, env = "EXIT_WHEN_IDLE")]
    pub exit_when_idle: bool,

    /// Backfill mode: large batches committed with `synchronous_commit = off`; their entries
    /// are acked once a WAL flush covers their commit (nothing acked is lost in a crash).
    #[arg(long, env = "BACKFILL")]
    pub backfill: bool,

    /// Messages pending longer than this on another consumer are claimed (XAUTOCLAIM).
    #[arg(long, env = "CLAIM_IDLE_MS", default_value_t = 60_000)]
    pub claim_idle_ms: u64,

    /// Stream the outbox publishes affected term ids to (read by analytics-worker).
    #[arg(long, env = "TERM_UPDATES_STREAM", global = true, default_value = "term_updates")]
    pub term_updates_stream: String,

    /// PostgreSQL connections in the pool (backfill mode opens one more beside it, see
    /// README → Reliability).
    #[arg(long, env = "PG_POOL_SIZE", default_value_t = 5)]
    pub pool_size: u32,

    /// Concurrent transactions a large batch is applied in (term-disjoint parts, see
    /// README → Performance). Each needs a pooled connection, besides one that holds the
    /// batch's term locks and two for the outbox publisher.
    #[arg(long, env = "APPLY_PARTS", default_value_t = 2)]
    pub apply_parts: usize,
}

impl EngineConfig {
    pub fn consumer_name(&self) -> String {
        self.consumer.clone().unwrap_or_else(crate::stream::default_consumer_name)
    }

    /// Parts a large batch is cut into: `apply_parts`, as far as the pool has connections
    /// for them beside the lock holder and the publisher.
    pub fn parts(&self) -> usize {
        self.apply_parts.min((self.pool_size as usize).saturating_sub(CONNECTIONS_BESIDE_PARTS)).max(1)
    }

    /// Apply large batches in `parts` parts, with a pool large enough for them.
    pub fn with_parts(mut self, parts: usize) -> Self {
        self.apply_parts = parts;
        self.pool_size = self.pool_size.max((parts + CONNECTIONS_BESIDE_PARTS) as u32);
        self
    }

    pub fn block(&self) -> Duration {
        Duration::from_millis(self.block_ms)
    }

    /// A config for local services with the given database and streams, as tests use it.
    pub fn local(database_url: &str, streams: &[String]) -> Self {
        EngineConfig {
            database_url: database_url.to_owned(),
            redis_url: "redis://127.0.0.1:6379".into(),
            streams: streams.to_vec(),
            group: "redis-postgres-sync".into(),
            consumer: None,
            batch_size: 1000,
            block_ms: 200,
            exit_when_idle: true,
            backfill: false,
            claim_idle_ms: 60_000,
            term_updates_stream: "term_updates".into(),
            pool_size: 5,
            apply_parts: 2,
        }
    }
}
