//! The engine's settings: every flag can also come from the environment.

use std::time::Duration;

use clap::Args;

use crate::event::decode::alias::Aliases;
use crate::pg::DEFAULT_DATABASE_URL;
use crate::runtime::exit::Fatal;
use crate::runtime::redact::redact;
use crate::stream::reader::{ReadBudget, ReaderConfig};
use crate::stream::{DEAD_LETTER_MAXLEN, DEFAULT_REDIS_URL, DEFAULT_TERM_UPDATES_STREAM, ENGINE_GROUP};

pub const DEFAULT_STREAMS: &str =
    "intuition_atom_created,intuition_triple_created,intuition_deposited,intuition_redeemed,intuition_share_price_changed";

/// Messages per stream per read. rindexer sends one message per event and block (a few
/// events each on a chain like Intuition's), so a read of five streams is some tens of
/// thousands of events; larger batches amortise per-batch planning and locking (measured:
/// 1,000 gave 24-26k events/s, 10,000 31-34k, README → Performance). Memory is bounded by
/// `--max-read-bytes`, not by this.
pub const DEFAULT_BATCH_SIZE: usize = 10_000;

/// Blocks below a live batch's highest block whose keys keep reorg bases: the deepest fork
/// the tests generate. A deeper reorg is still retracted exactly, by reading the log.
pub const DEFAULT_REORG_WINDOW: u64 = 64;

/// Pooled connections the engine needs besides one per part: the batch's lock holder and
/// two for the outbox publisher (its transaction, and in backfill mode a WAL flush barrier
/// beside it, see [`super::outbox`]).
const CONNECTIONS_BESIDE_PARTS: usize = 3;

#[derive(Args, Clone, Debug)]
pub struct EngineConfig {
    /// PostgreSQL connection URL. The database is created if it does not exist.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Redis connection URL.
    #[arg(long, env = "REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    pub redis_url: String,

    /// Streams to consume, comma separated. Events are routed by `event_name`, not stream.
    #[arg(long, env = "STREAMS", value_delimiter = ',', default_value = DEFAULT_STREAMS)]
    pub streams: Vec<String>,

    /// Bytes of entries one read brings in at most (the first entry of a read always comes):
    /// with the batch that is applied meanwhile, what bounds the engine's memory whatever
    /// the input (README → Limits).
    #[arg(long, env = "MAX_READ_BYTES", default_value_t = ReadBudget::DEFAULT.read_bytes)]
    pub max_read_bytes: u64,

    /// Largest entry accepted, in bytes; a larger one is dead-lettered with its size, its
    /// SHA-1 and its first KiB, and never read whole.
    #[arg(long, env = "MAX_ENTRY_BYTES", default_value_t = ReadBudget::DEFAULT.entry_bytes)]
    pub max_entry_bytes: u64,

    /// Dead letters kept per dead-letter stream (`<stream>:dlq`); older ones are trimmed.
    #[arg(long, env = "DEAD_LETTER_MAXLEN", default_value_t = DEAD_LETTER_MAXLEN)]
    pub dead_letter_maxlen: usize,

    /// Consumer group shared by every engine process.
    #[arg(long, env = "CONSUMER_GROUP", default_value = ENGINE_GROUP)]
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

    /// Create missing streams (empty) at start instead of refusing to start; without it a
    /// stream that does not exist yet is reported as a likely typo.
    #[arg(long, env = "CREATE_STREAMS")]
    pub create_streams: bool,

    /// Backfill mode: large batches committed with `synchronous_commit = off`; their entries
    /// are acked once a WAL flush covers their commit (nothing acked is lost in a crash).
    #[arg(long, env = "BACKFILL")]
    pub backfill: bool,

    /// Reorg window, in blocks: the keys a live batch touches within this many blocks of its
    /// highest block keep what a retraction needs to stop searching the log (README → Chain
    /// reorganizations). A deeper reorg is still retracted exactly, by reading further down
    /// the log. --backfill keeps none: history that far behind the chain's head is final.
    #[arg(long, env = "REORG_WINDOW", default_value_t = DEFAULT_REORG_WINDOW)]
    pub reorg_window: u64,

    /// Messages pending longer than this on another consumer are claimed (XAUTOCLAIM).
    #[arg(long, env = "CLAIM_IDLE_MS", default_value_t = 60_000)]
    pub claim_idle_ms: u64,

    /// Stream the outbox publishes affected term ids to (read by analytics-worker).
    #[arg(long, env = "TERM_UPDATES_STREAM", default_value = DEFAULT_TERM_UPDATES_STREAM)]
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

    /// rindexer event aliases, `ALIAS=EventName`, repeatable or comma separated: an event
    /// given `alias: ALIAS` in rindexer's manifest is published under that name.
    #[arg(long = "event-alias", env = "EVENT_ALIASES", value_delimiter = ',')]
    pub event_aliases: Vec<String>,
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

    /// The parsed `--event-alias` pairs (checked by [`EngineConfig::validate`]).
    pub fn aliases(&self) -> Aliases {
        Aliases::parse(&self.event_aliases).unwrap_or_default()
    }

    pub fn read_budget(&self) -> ReadBudget {
        ReadBudget { read_bytes: self.max_read_bytes, entry_bytes: self.max_entry_bytes, ..ReadBudget::DEFAULT }
    }

    /// What the engine's group reader reads, as whom, and how much at a time.
    pub fn reader(&self) -> ReaderConfig {
        ReaderConfig {
            streams: self.streams.clone(),
            group: self.group.clone(),
            consumer: self.consumer_name(),
            count: self.batch_size,
            block: self.block(),
            claim_idle: Duration::from_millis(self.claim_idle_ms),
            create_streams: self.create_streams,
            budget: self.read_budget(),
        }
    }

    /// The reorg window the engine's sessions use: none in backfill mode.
    pub fn session_reorg_window(&self) -> u64 {
        if self.backfill {
            0
        } else {
            self.reorg_window
        }
    }

    /// Settings that cannot work, refused before anything connects.
    pub fn validate(&self) -> Result<(), Fatal> {
        let config = |msg: String| Err(Fatal::Config(msg));
        if self.streams.is_empty() || self.streams.iter().any(|s| s.trim().is_empty()) {
            return config(format!("--streams {:?}: give one or more non-empty stream names", self.streams.join(",")));
        }
        if let Some(twice) = self.streams.iter().enumerate().find(|(i, s)| self.streams[..*i].contains(s)) {
            return config(format!("--streams names `{}` twice", twice.1));
        }
        if self.streams.contains(&self.term_updates_stream) {
            return config(format!("--term-updates-stream `{}` is also an input stream", self.term_updates_stream));
        }
        for (flag, value) in [("--group", &self.group), ("--term-updates-stream", &self.term_updates_stream)] {
            if value.trim().is_empty() {
                return config(format!("{flag} is empty"));
            }
        }
        if self.consumer.as_ref().is_some_and(|c| c.trim().is_empty()) {
            return config("--consumer is empty".into());
        }
        if self.batch_size == 0 || self.apply_parts == 0 {
            return config("--batch-size and --apply-parts must be at least 1".into());
        }
        if self.max_entry_bytes < 1024 || self.max_entry_bytes > self.max_read_bytes {
            return config(format!(
                "--max-entry-bytes {} must be at least 1024 and at most --max-read-bytes ({})",
                self.max_entry_bytes, self.max_read_bytes
            ));
        }
        if self.block_ms == 0 {
            return config(
                "--block-ms 0 would block for ever on an idle stream (no idle check, no claims); give at least 1"
                    .into(),
            );
        }
        let least = (CONNECTIONS_BESIDE_PARTS + 1) as u32;
        if self.pool_size < least {
            return config(format!(
                "--pool-size {} is too small: at least {least} (a connection per part, one for the batch's lock holder, two for the outbox publisher)",
                self.pool_size
            ));
        }
        Aliases::parse(&self.event_aliases).map_err(|e| Fatal::Config(format!("--event-alias: {e}")))?;
        crate::pg::pool::parse(&self.database_url).map_err(|e| Fatal::Config(e.to_string()))?;
        crate::stream::connect::client(&self.redis_url)
            .map_err(|e| Fatal::Config(format!("invalid Redis URL {}: {e}", redact(&self.redis_url))))?;
        Ok(())
    }

    /// A config for local services with the given database and streams, as tests use it.
    pub fn local(database_url: &str, streams: &[String]) -> Self {
        EngineConfig {
            database_url: database_url.to_owned(),
            redis_url: DEFAULT_REDIS_URL.into(),
            streams: streams.to_vec(),
            max_read_bytes: ReadBudget::DEFAULT.read_bytes,
            max_entry_bytes: ReadBudget::DEFAULT.entry_bytes,
            dead_letter_maxlen: DEAD_LETTER_MAXLEN,
            group: ENGINE_GROUP.into(),
            consumer: None,
            batch_size: 1000,
            block_ms: 200,
            exit_when_idle: true,
            create_streams: true,
            backfill: false,
            reorg_window: DEFAULT_REORG_WINDOW,
            claim_idle_ms: 60_000,
            term_updates_stream: DEFAULT_TERM_UPDATES_STREAM.into(),
            pool_size: 5,
            apply_parts: 2,
            event_aliases: Vec::new(),
        }
    }
}
