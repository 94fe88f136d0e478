//! Telemetry every layer records into: the Prometheus metric names (one list, so dashboards,
//! alerts and code agree) and the process's running counters. Recording goes through the
//! `metrics` facade, a no-op until a binary installs the exporter (ops::http), so tests that
//! run several engines in one process need no global state.

use std::sync::atomic::{AtomicI64, AtomicU64};

// Engine (the seed's names first).
pub const EVENTS_PROCESSED: &str = "redis_postgres_sync_events_processed_total";
pub const EVENTS_FAILED: &str = "redis_postgres_sync_events_failed_total";
pub const CASCADE_SECONDS: &str = "redis_postgres_sync_cascade_duration_seconds";
pub const STAGE_SECONDS: &str = "redis_postgres_sync_batch_stage_duration_seconds";
pub const BATCH_EVENTS: &str = "redis_postgres_sync_batch_events";
pub const MESSAGES_READ: &str = "redis_postgres_sync_messages_read_total";
pub const DEAD_LETTERS: &str = "redis_postgres_sync_dead_letters_total";
pub const BATCH_RETRIES: &str = "redis_postgres_sync_batch_retries_total";
pub const LAST_COMMIT: &str = "redis_postgres_sync_last_commit_timestamp_seconds";
pub const COMMIT_LATENCY: &str = "redis_postgres_sync_commit_latency_seconds";
pub const OUTBOX_PUBLISHED: &str = "redis_postgres_sync_outbox_terms_published_total";
// Chain reorganizations (README -> Chain reorganizations).
pub const REORGS: &str = "redis_postgres_sync_reorgs_total";
pub const REORG_NOTICES: &str = "redis_postgres_sync_reorg_notices_total";
pub const REORG_DEPTH: &str = "redis_postgres_sync_reorg_depth_blocks";
pub const EVENTS_RETRACTED: &str = "redis_postgres_sync_events_retracted_total";
pub const EVENTS_ORPHANED: &str = "redis_postgres_sync_events_orphaned_total";
// Observed by the stream monitor (ops::monitor), per stream of the engine's group.
pub const STREAM_LAG: &str = "redis_postgres_sync_stream_lag";
pub const STREAM_PENDING: &str = "redis_postgres_sync_stream_pending";
pub const STREAM_LENGTH: &str = "redis_postgres_sync_stream_length";
pub const OUTBOX_BACKLOG: &str = "redis_postgres_sync_outbox_backlog_rows";
pub const OUTBOX_OLDEST_AGE: &str = "redis_postgres_sync_outbox_oldest_age_seconds";
// Observed in PostgreSQL by the monitor: the whole database, whichever engine retracted.
pub const REORG_UNBASED_SEARCHES: &str = "redis_postgres_sync_reorg_unbased_searches";
pub const REORG_BASES: &str = "redis_postgres_sync_reorg_bases";

/// The `stage` label values of [`STAGE_SECONDS`], in pipeline order. `idle` is the time a
/// read waited for entries to arrive; `publish` is the outbox publisher's, beside the
/// pipeline.
pub const STAGES: [&str; 12] =
    ["read", "idle", "decode", "lock", "copy", "merge", "cascade", "outbox", "commit", "flush", "ack", "publish"];

// Analytics worker.
pub const WORKER_DEAD_LETTERS: &str = "analytics_worker_dead_letters_total";
pub const WORKER_PROCESSED: &str = "analytics_worker_term_updates_processed_total";
pub const WORKER_BATCH_SIZE: &str = "analytics_worker_batch_size";
pub const WORKER_LAG: &str = "analytics_worker_lag_seconds";
pub const WORKER_STREAM_LAG: &str = "analytics_worker_stream_lag";
pub const WORKER_STREAM_PENDING: &str = "analytics_worker_stream_pending";
pub const WORKER_STREAM_LENGTH: &str = "analytics_worker_stream_length";

/// Register every name's help text (with the exporter).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(EVENTS_PROCESSED, "Valid events applied (committed), redeliveries included");
    describe_counter!(EVENTS_FAILED, "Messages or events rejected and dead-lettered");
    describe_histogram!(CASCADE_SECONDS, Unit::Seconds, "Level 2 cascade time per batch");
    describe_histogram!(STAGE_SECONDS, Unit::Seconds, "Time per batch in each pipeline stage (label stage)");
    describe_histogram!(BATCH_EVENTS, "Events per applied batch");
    describe_counter!(MESSAGES_READ, "Stream entries read");
    describe_counter!(DEAD_LETTERS, "Entries written to dead-letter streams");
    describe_counter!(BATCH_RETRIES, "Batches rolled back and retried (label reason)");
    describe_gauge!(LAST_COMMIT, Unit::Seconds, "Unix time of the last committed batch");
    describe_histogram!(COMMIT_LATENCY, Unit::Seconds, "From XADD (entry id time) to the commit of the entry's batch");
    describe_counter!(OUTBOX_PUBLISHED, "Term ids published to term_updates");
    describe_counter!(REORGS, "Chain reorganizations applied (one per reorg, whatever its copies)");
    describe_counter!(REORG_NOTICES, "Copies of rindexer reorg notices read (every stream, every indexed event)");
    describe_histogram!(REORG_DEPTH, "Depth of each reorg as its notice reports it (unreliable: logged, not used)");
    describe_counter!(EVENTS_RETRACTED, "Logged events removed because their block was orphaned");
    describe_counter!(EVENTS_ORPHANED, "Events read but never applied because their block was orphaned");
    describe_gauge!(STREAM_LAG, "Stream entries not yet delivered to the engine's group (XINFO GROUPS lag)");
    describe_gauge!(STREAM_PENDING, "Stream entries delivered to the engine's group and not acked (XPENDING)");
    describe_gauge!(STREAM_LENGTH, "Entries in the stream (XLEN)");
    describe_gauge!(OUTBOX_BACKLOG, "term_update_outbox rows committed and not yet published");
    describe_gauge!(OUTBOX_OLDEST_AGE, Unit::Seconds, "Age of the oldest unpublished outbox row (0 when empty)");
    describe_gauge!(
        REORG_UNBASED_SEARCHES,
        "Keys whose retraction found no reorg base and read the log down (sum over the database's reorgs)"
    );
    describe_gauge!(REORG_BASES, "Reorg bases kept (reorg_base rows)");
    describe_gauge!(WORKER_STREAM_LAG, "term_updates entries not yet delivered to the worker's group");
    describe_gauge!(WORKER_STREAM_PENDING, "term_updates entries delivered to the worker's group and not acked");
    describe_gauge!(WORKER_STREAM_LENGTH, "Entries in the term_updates stream (XLEN)");
    describe_counter!(WORKER_DEAD_LETTERS, "term_updates entries written to the dead-letter stream");
    describe_counter!(WORKER_PROCESSED, "term_updates entries applied by the analytics worker");
    describe_histogram!(WORKER_BATCH_SIZE, "Distinct term ids per analytics batch");
    describe_gauge!(WORKER_LAG, Unit::Seconds, "Age of the oldest update in the last analytics batch");
}

/// Create every engine series at its starting value, so dashboards and alerts see zeros
/// rather than nothing before the first event (and while nothing happens): counters at 0,
/// histograms empty, one series per stage and per retry reason (`retry_reasons`: the labels
/// the caller can record), and the last commit at 0 until the first. The stream gauges come
/// from the monitor's first observation.
pub fn register_engine(retry_reasons: &[&'static str]) {
    for name in [
        EVENTS_PROCESSED,
        EVENTS_FAILED,
        MESSAGES_READ,
        DEAD_LETTERS,
        OUTBOX_PUBLISHED,
        REORGS,
        REORG_NOTICES,
        EVENTS_RETRACTED,
        EVENTS_ORPHANED,
    ] {
        metrics::counter!(name).increment(0);
    }
    for &reason in retry_reasons {
        metrics::counter!(BATCH_RETRIES, "reason" => reason).increment(0);
    }
    for name in [CASCADE_SECONDS, BATCH_EVENTS, COMMIT_LATENCY, REORG_DEPTH] {
        let _ = metrics::histogram!(name);
    }
    for stage in STAGES {
        let _ = metrics::histogram!(STAGE_SECONDS, "stage" => stage);
    }
    metrics::gauge!(LAST_COMMIT).set(0.0);
}

/// The same for the analytics worker; its stream gauges come from its monitor.
pub fn register_worker() {
    for name in [WORKER_PROCESSED, WORKER_DEAD_LETTERS] {
        metrics::counter!(name).increment(0);
    }
    let _ = metrics::histogram!(WORKER_BATCH_SIZE);
    metrics::gauge!(WORKER_LAG).set(0.0);
}

/// Running totals of the engines in this process, for progress displays and health.
#[derive(Debug, Default)]
pub struct Progress {
    pub events: AtomicU64,
    pub messages: AtomicU64,
    pub dead_letters: AtomicU64,
    pub batches: AtomicU64,
}

pub static PROGRESS: Progress = Progress {
    events: AtomicU64::new(0),
    messages: AtomicU64::new(0),
    dead_letters: AtomicU64::new(0),
    batches: AtomicU64::new(0),
};

/// Unix seconds of the last commit, for `/health` (0 before the first).
pub static LAST_COMMIT_UNIX: AtomicI64 = AtomicI64::new(0);
