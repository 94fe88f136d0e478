//! Every statement the engine sends. The logic lives in `migrations/` as functions and
//! triggers; the engine only calls it.

/// Session setup for a pooled connection (with [`DURABLE_COMMITS`]): its temporary staging
/// tables, and planner settings for batch work. JIT compiles expressions of every large statement
/// anew (batch statements are planned per batch), costing far more than it saves here;
/// sorts and hashes of a 100,000-event batch should stay in memory.
pub const SESSION_SETUP: &str = "SET jit = off; SET work_mem = '64MB'; SELECT create_staging_tables()";

/// Commits durable when COMMIT returns, whatever the server's or role's default: what is
/// acked after a commit must survive a crash. Only `off` is raised (to `on`); `local`,
/// `remote_write` and stronger settings are kept.
pub const DURABLE_COMMITS: &str =
    "SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'";

/// Backfill mode commits asynchronously; its acks wait for the WAL flush (see
/// [`crate::durability`]).
pub const BACKFILL_TRANSACTION: &str = "SET LOCAL synchronous_commit = off";

/// A WAL position past every commit made so far, and the position flushed to disk.
pub const WAL_POSITIONS: &str = "SELECT pg_current_wal_insert_lsn(), pg_current_wal_flush_lsn()";

/// A transaction that writes WAL (a logical decoding message, which no table sees) and
/// commits synchronously: when it returns, every earlier commit is on disk.
pub const WAL_BARRIER: &str = "BEGIN; SET LOCAL synchronous_commit = on; \
     SELECT pg_logical_emit_message(true, 'redis-postgres-sync', 'WAL flush barrier'); COMMIT";

/// Advisory locks on the batch's terms, in sorted key order.
pub const LOCK_TERMS: &str = "SELECT lock_terms($1::text[])";

pub const BACKEND_PID: &str = "SELECT pg_backend_pid()";

/// Whether a backend (a batch's lock holder) still holds advisory locks.
pub const HOLDS_ADVISORY_LOCKS: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND locktype = 'advisory' AND granted)";

/// Test-only fault: end a batch's lock holder while its parts run.
pub const TERMINATE_BACKEND: &str = "SELECT pg_terminate_backend($1)";

/// Move staged rows into the event log; the statement-level triggers merge level 1.
pub const MERGE_STAGED: &str = "SELECT merge_staged_events($1::text[])";

/// Level 2 for the batch's distinct terms.
pub const CASCADE_TERMS: &str = "SELECT cascade_terms($1::text[])";

/// The batch's term ids for the analytics tier (same transaction as the batch).
pub const OUTBOX_INSERT: &str = "INSERT INTO term_update_outbox (term_ids) VALUES ($1::text[])";

/// Oldest outbox rows not being published by someone else, locked until published.
pub const OUTBOX_CLAIM: &str = "SELECT id, term_ids, (extract(epoch FROM committed_at) * 1000)::bigint \
     FROM term_update_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED";

pub const OUTBOX_DELETE: &str = "DELETE FROM term_update_outbox WHERE id = ANY($1::bigint[])";

/// Serializes migration runs of engines that start at the same time (a session lock).
pub const LOCK_MIGRATIONS: &str = "SELECT pg_advisory_lock(4242424201)";
pub const UNLOCK_MIGRATIONS: &str = "SELECT pg_advisory_unlock(4242424201)";

/// `COPY` into a staging table in PostgreSQL's binary format.
pub fn copy_into_stage(table: &str) -> String {
    format!("COPY pg_temp.stage_{table} FROM STDIN (FORMAT binary)")
}

/// `COPY` straight into an event table (benchmarks' raw-ingest floor).
pub fn copy_into_event_table(table: &str) -> String {
    format!("COPY public.{table} FROM STDIN (FORMAT binary)")
}
