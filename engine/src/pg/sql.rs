//! Every statement the crate sends to PostgreSQL. The logic lives in `migrations/` as
//! functions and triggers; the statements here call it, and read catalogs and statistics for
//! the operator tools.

// Sessions and schema ---------------------------------------------------------------------

/// Session setup for a pooled connection (with [`DURABLE_COMMITS`]): its temporary staging
/// tables, and planner settings for batch work. JIT compiles expressions of every large
/// statement anew (batch statements are planned per batch), costing far more than it saves
/// here; sorts and hashes of a 100,000-event batch should stay in memory.
pub const SESSION_SETUP: &str = "SET jit = off; SET work_mem = '64MB'; SELECT create_staging_tables()";

/// Commits durable when COMMIT returns, whatever the server's or role's default: what is
/// acked after a commit must survive a crash. Only `off` is raised (to `on`); `local`,
/// `remote_write` and stronger settings are kept.
pub const DURABLE_COMMITS: &str =
    "SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'";

/// Serializes the schema work of processes that start at the same time (a session lock).
pub const LOCK_MIGRATIONS: &str = "SELECT pg_advisory_lock(4242424201)";
pub const UNLOCK_MIGRATIONS: &str = "SELECT pg_advisory_unlock(4242424201)";

pub fn create_database(name: &str) -> String {
    format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""))
}

pub const MIGRATION_HISTORY_EXISTS: &str = "SELECT to_regclass('refinery_schema_history') IS NOT NULL";
/// Name of the first versioned migration applied (requires [`MIGRATION_HISTORY_EXISTS`]).
pub const FIRST_MIGRATION: &str = "SELECT name FROM refinery_schema_history WHERE version = 1";
pub const APPLIED_MIGRATIONS: &str =
    "SELECT version::bigint, name, checksum FROM refinery_schema_history ORDER BY version";

// A batch ------------------------------------------------------------------------------------

// Chain reorganizations (migrations/repeatable/reorg.sql) ------------------------------------

/// The reorg barriers and orphaned blocks that concern a batch, under the shared reorg lock.
pub const REORG_BARRIERS: &str = "SELECT kind, reorg_id, network, block_number, block_hash, stream, barrier_ms, \
     barrier_seq, notice_ms FROM reorg_screening($1::text[], $2::bigint, $3::bigint, $4::bigint)";

/// Blocks whose events a batch dropped as orphaned.
pub const RECORD_ORPHANED_BLOCKS: &str =
    "SELECT record_orphaned_blocks($1::text[], $2::bigint[], $3::text[], $4::bigint[])";

/// Block hashes the log holds at some heights of a network.
pub const STORED_BLOCKS: &str = "SELECT block_number, block_hash, rank FROM stored_blocks($1, $2::bigint[])";

/// Retract one block proven orphaned, under the exclusive reorg lock.
pub const RETRACT_ORPHANED_BLOCK: &str = "SELECT retract_orphaned_block($1, $2, $3, $4)";

/// For `doctor`: reorgs applied, events they retracted, orphaned blocks known, the latest
/// (the bases come from [`REORG_STATUS`]).
pub const REORG_SUMMARY: &str = "SELECT count(*), coalesce(sum(events_retracted), 0)::bigint, \
     (SELECT count(*) FROM retracted_block), \
     (SELECT format('network %s, fork_block %s, depth %s (as reported), %s events retracted, at %s', \
             network, fork_block, depth, events_retracted, applied_at) \
        FROM reorg ORDER BY id DESC LIMIT 1) \
     FROM reorg";

/// For the monitor's gauges and `doctor`: keys searched without a reorg base (over every
/// reorg), bases kept.
pub const REORG_STATUS: &str =
    "SELECT coalesce(sum(unbased_searches), 0)::bigint, (SELECT count(*) FROM reorg_base) FROM reorg";

/// One copy of a reorg notice, under the exclusive reorg lock; the first copy retracts.
pub const RECORD_REORG_NOTICE: &str = "SELECT reorg_id, is_new, events_retracted FROM \
     record_reorg_notice($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb)";

/// Backfill mode commits asynchronously; its acks wait for the WAL flush (`ingest::durable`).
pub const BACKFILL_TRANSACTION: &str = "SET LOCAL synchronous_commit = off";

/// How many blocks below a batch's highest block its keys keep reorg bases
/// (`retract.sql`); unset, a session keeps none.
pub fn reorg_window_setting(blocks: u64) -> String {
    format!("SET rps.reorg_window = {blocks}")
}

/// Reorg bases that can go after a live batch: event tables $1, the batch's highest block in
/// each $2 (`retract.sql`).
pub const PRUNE_REORG_BASES: &str = "SELECT prune_reorg_bases($1, $2)";

/// Advisory locks on the batch's terms, in sorted key order.
pub const LOCK_TERMS: &str = "SELECT lock_terms($1::text[])";

pub const BACKEND_PID: &str = "SELECT pg_backend_pid()";

/// Whether a backend (a batch's lock holder) still holds advisory locks.
pub const HOLDS_ADVISORY_LOCKS: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND locktype = 'advisory' AND granted)";

/// Test-only fault: end a batch's lock holder while its parts run.
pub const TERMINATE_BACKEND: &str = "SELECT pg_terminate_backend($1)";

/// `COPY` into a staging table in PostgreSQL's binary format.
pub fn copy_into_stage(table: &str) -> String {
    format!("COPY pg_temp.stage_{table} FROM STDIN (FORMAT binary)")
}

/// `COPY` straight into an event table: a batch's first try (its triggers merge level 1 as
/// each COPY ends), and the benchmarks' raw-ingest floor (triggers disabled).
pub fn copy_into_event_table(table: &str) -> String {
    format!("COPY public.{table} FROM STDIN (FORMAT binary)")
}

/// Where a batch goes back to when an event it COPYed straight into the log was logged already.
pub const SAVEPOINT_DIRECT: &str = "SAVEPOINT direct_copy";
pub const ROLLBACK_TO_DIRECT: &str = "ROLLBACK TO SAVEPOINT direct_copy";

/// Move staged rows into the event log; the statement-level triggers merge level 1.
pub const MERGE_STAGED: &str = "SELECT merge_staged_events($1::text[])";

/// Level 2 for the batch's distinct terms.
pub const CASCADE_TERMS: &str = "SELECT cascade_terms($1::text[])";

// Durability ----------------------------------------------------------------------------------

/// A WAL position past every commit made so far, and the position flushed to disk.
pub const WAL_POSITIONS: &str = "SELECT pg_current_wal_insert_lsn(), pg_current_wal_flush_lsn()";

/// A transaction that writes WAL (a logical decoding message, which no table sees) and
/// commits synchronously: when it returns, every earlier commit is on disk.
pub const WAL_BARRIER: &str = "BEGIN; SET LOCAL synchronous_commit = on; \
     SELECT pg_logical_emit_message(true, 'redis-postgres-sync', 'WAL flush barrier'); COMMIT";

// Outbox --------------------------------------------------------------------------------------

/// The batch's term ids for the analytics tier (same transaction as the batch).
pub const OUTBOX_INSERT: &str = "INSERT INTO term_update_outbox (term_ids) VALUES ($1::text[])";

/// Oldest outbox rows not being published by someone else, locked until published.
pub const OUTBOX_CLAIM: &str = "SELECT id, term_ids, (extract(epoch FROM committed_at) * 1000)::bigint \
     FROM term_update_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED";

pub const OUTBOX_DELETE: &str = "DELETE FROM term_update_outbox WHERE id = ANY($1::bigint[])";

/// Rows committed and not yet published, and the age of the oldest. The outbox is emptied
/// after every batch, so counting it is cheap unless publishing is stuck, which is exactly
/// when the number matters.
pub const OUTBOX_STATUS: &str =
    "SELECT count(*), extract(epoch FROM clock_timestamp() - min(committed_at))::float8 FROM term_update_outbox";

// Analytics worker ----------------------------------------------------------------------------

pub const REFRESH_ANALYTICS: &str = "SELECT refresh_analytics($1::text[])";

// Verify, readers ------------------------------------------------------------------------------

/// Rows that differ between a maintained table and its reference view, each way.
pub const COMPARE: &str = "SELECT only_in_table, only_in_view FROM snapshot.compare($1)";

pub fn count_rows(table: &str) -> String {
    format!("SELECT count(*) FROM public.\"{}\"", table.replace('"', "\"\""))
}

pub const READER_TABLES: &str = "SELECT reader_tables()";
pub const READERS_FUNCTIONS_EXIST: &str = "SELECT to_regprocedure('readers_mode()') IS NOT NULL";
pub const READERS_MODE: &str = "SELECT readers_mode()";
pub const READERS_SOURCES: &str = "SELECT table_name, coalesce(source, 'missing') FROM readers_sources()";
pub const USE_REFERENCE_VIEWS: &str = "SELECT use_reference_views($1::text[])";
pub const USE_MAINTAINED_TABLES: &str = "SELECT use_maintained_tables($1::text[])";

// Health and doctor ----------------------------------------------------------------------------

pub const PING: &str = "SELECT 1";

pub fn set_application_name(name: &str) -> String {
    format!("SET application_name = '{}'", name.replace('\'', "''"))
}

/// Doctor is run when something is stuck, often behind a lock: it must report that, not
/// queue behind it.
pub const DOCTOR_SESSION: &str = "SET lock_timeout = '2s'; SET application_name = 'redis-postgres-sync doctor'";

/// Each named trigger: the table it is on and whether it fires (`tgenabled`).
pub const TRIGGER_STATUS: &str = "SELECT n.name, c.relname::text, t.tgenabled::text
       FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i)
       LEFT JOIN pg_trigger t ON t.tgname = n.name AND NOT t.tgisinternal
            AND t.tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
       LEFT JOIN pg_class c ON c.oid = t.tgrelid
      ORDER BY n.i";

/// Each named table: whether it exists, and its estimated row count.
pub const TABLE_STATS: &str = "SELECT n.name, c.oid IS NOT NULL, coalesce(s.n_live_tup, 0)
       FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i)
       LEFT JOIN pg_class c ON c.relname = n.name AND c.relnamespace = 'public'::regnamespace
       LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
      ORDER BY n.i";

pub const TABLE_SIZE: &str = "SELECT pg_total_relation_size(format('public.%I', $1::text)::regclass)";

pub const BLOCKED_SESSIONS: &str = "SELECT pid, coalesce(usename::text, ''), pg_blocking_pids(pid),
            extract(epoch FROM clock_timestamp() - coalesce(query_start, xact_start))::float8,
            left(regexp_replace(coalesce(query, ''), '\\s+', ' ', 'g'), 100)
       FROM pg_stat_activity
      WHERE datname = current_database() AND cardinality(pg_blocking_pids(pid)) > 0
      ORDER BY query_start";

pub const IDLE_IN_TRANSACTION: &str = "SELECT pid, extract(epoch FROM clock_timestamp() - xact_start)::float8
       FROM pg_stat_activity
      WHERE datname = current_database() AND state LIKE 'idle in transaction%'
        AND xact_start < clock_timestamp() - interval '1 minute'";

pub const DEADLOCKS_AND_ADVISORY_LOCKS: &str =
    "SELECT (SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()),
            (SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
              WHERE l.locktype = 'advisory' AND d.datname = current_database())";
