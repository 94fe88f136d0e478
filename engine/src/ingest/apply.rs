//! Apply: a batch's events into PostgreSQL, in one transaction (lock → COPY → merge →
//! cascade → outbox row → COMMIT), or a large batch in concurrent transactions over its
//! term-disjoint parts; retried until it commits, and split to isolate events PostgreSQL
//! refuses.

use std::ops::Range;
use std::time::Instant;

use tokio_postgres::error::SqlState;
use tokio_postgres::Transaction;
use tracing::{error, warn};

use super::batch::{term_ids_of, Batch};
use super::copy::{self, EncodedTable};
use super::outbox;
use super::reorg;
use super::summary::RunSummary;
use crate::event::Event;
use crate::pg::error::{error_text, PoolError};
use crate::pg::{sql, Failure, PgError, PgPool};
use crate::runtime::faults::{crash_point, fault_point};
use crate::runtime::timing::timed;
use crate::runtime::{telemetry, Retry, StageTimes, Stop};

/// Why a batch's transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Postgres(#[from] PgError),
    /// A part found the transaction holding its batch's locks gone (its connection lost):
    /// another engine may since have locked the same terms, so the part must not commit.
    #[error("the batch's lock holder (backend {pid}) no longer holds its locks; the part rolls back")]
    LockHolderLost { pid: i32 },
    /// Screening found stored blocks orphaned by newer ones at their heights: they are
    /// retracted first, then the events are applied again.
    #[error("{} stored block(s) proven orphaned by a newer block at the same height", .0.len())]
    OrphanProof(Vec<reorg::Block>),
}

/// The retry reasons of the batch's own making (beside PostgreSQL's, `pg::error::RETRY_REASONS`):
/// `reason` label values of the retry metric, created at 0 before any batch.
pub const RETRY_REASONS: [&str; 2] = [LOCK_HOLDER_LOST, ORPHAN_PROOF];
const LOCK_HOLDER_LOST: &str = "lock_holder_lost";
const ORPHAN_PROOF: &str = "orphan_proof";

impl ApplyError {
    pub fn failure(&self) -> Failure {
        match self {
            ApplyError::Postgres(e) => e.failure(),
            ApplyError::LockHolderLost { .. } => Failure::Transient(LOCK_HOLDER_LOST),
            ApplyError::OrphanProof(_) => Failure::Transient(ORPHAN_PROOF),
        }
    }

    /// The reason a dead letter gives: PostgreSQL's own message and SQLSTATE when there is one.
    fn refusal(&self) -> String {
        match self {
            ApplyError::Postgres(PgError::Statement(e)) => error_text(e),
            other => other.to_string(),
        }
    }
}

impl From<tokio_postgres::Error> for ApplyError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApplyError::Postgres(e.into())
    }
}

impl From<PoolError> for ApplyError {
    fn from(e: PoolError) -> Self {
        ApplyError::Postgres(e.into())
    }
}

/// Apply `batch`, retrying with backoff until it commits; nothing is acked before that.
///
/// A batch of several parts is first applied in concurrent transactions, one per part
/// (`apply_parts`); the parts that did not commit join the retries below, one by one. A
/// transient failure (lost connection, server restart, deadlock, serialization failure)
/// retries the same events. A failure caused by the data would fail forever, so the events
/// are split in halves, each applied on its own (every merge is idempotent and order
/// independent), down to the single events PostgreSQL refuses; those are returned, with the
/// reason, to be dead-lettered. `None` once a stop is requested while retrying.
pub async fn apply_batch(
    pool: &PgPool,
    batch: &Batch,
    backfill: bool,
    stop: &mut Stop,
    summary: &mut RunSummary,
) -> Option<Vec<(usize, String)>> {
    // Notices first: a batch's events are screened against every reorg recorded before them.
    let mut retry = Retry::new();
    while let Err(e) = reorg::record_notices(pool, batch).await {
        let failure = e.failure();
        summary.count_retry(failure.reason());
        error!(error = %e, "recording the batch's reorg notices failed; retrying");
        if !retry.wait(stop).await {
            return None;
        }
    }
    // Ranges of events still to apply, last pushed first.
    let mut todo: Vec<Range<usize>> = if batch.parts.len() > 1 {
        apply_parts_once(pool, batch, backfill, summary).await
    } else {
        batch.parts.iter().map(|p| p.range.clone()).collect()
    };
    let mut refused = Vec::new();
    while let Some(range) = todo.pop() {
        let events = &batch.events[range.clone()];
        // A whole part has its term set and encoding from the reader; a piece of a split one
        // is worked out here.
        let owned;
        let (term_ids, encoded) = match batch.parts.iter().find(|p| p.range == range) {
            Some(part) => (&part.term_ids, Some(part.encoded.as_slice())),
            None => {
                owned = term_ids_of(events);
                (&owned, None)
            }
        };
        let locks = Locks::Take(term_ids);
        let Err(e) = apply_events(pool, batch, range.clone(), encoded, locks, backfill, &mut summary.stage_time).await
        else {
            retry.succeeded();
            continue;
        };
        let failure = e.failure();
        summary.count_retry(failure.reason());
        if let ApplyError::OrphanProof(blocks) = &e {
            if let Err(e) = reorg::retract_blocks(pool, blocks).await {
                error!(error = %e, "retracting blocks proven orphaned failed; retrying");
                if !retry.wait(stop).await {
                    return None;
                }
            }
            todo.push(range);
            continue;
        }
        match failure {
            Failure::Data(_) if range.len() > 1 => {
                warn!(error = %e, events = range.len(), "PostgreSQL refused the batch's data; splitting it to find the event at fault");
                let mid = range.start + range.len() / 2;
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
            Failure::Data(_) => {
                let reason = format!("PostgreSQL refused the event: {}", e.refusal());
                error!(%reason, "dead-lettering the event");
                refused.push((range.start, reason));
            }
            Failure::Transient(reason) => {
                error!(error = %e, reason, attempt = retry.failures() + 1, events = range.len(), "batch rolled back; retrying");
                todo.push(range);
                if !retry.wait(stop).await {
                    return None;
                }
            }
        }
    }
    Some(refused)
}

/// One concurrent attempt at every part of `batch`; returns the ranges of the parts that did
/// not commit (all of them if the batch's locks could not be taken).
async fn apply_parts_once(pool: &PgPool, batch: &Batch, backfill: bool, summary: &mut RunSummary) -> Vec<Range<usize>> {
    let results = match apply_parts(pool, batch, backfill, &mut summary.stage_time).await {
        Ok(results) => results,
        Err(e) => {
            summary.count_retry(e.failure().reason());
            warn!(error = %e, "taking the batch's term locks failed; applying its parts one by one");
            return batch.parts.iter().map(|p| p.range.clone()).collect();
        }
    };
    summary.parallel_batches += 1;
    let mut failed = Vec::new();
    for (part, result) in batch.parts.iter().zip(results) {
        if let Err(e) = result {
            summary.count_retry(e.failure().reason());
            warn!(error = %e, events = part.range.len(), "a part of the batch rolled back; retrying it on its own");
            failed.push(part.range.clone());
        }
    }
    failed
}

/// Whose advisory locks cover a transaction's terms.
#[derive(Clone, Copy)]
enum Locks<'a> {
    /// The transaction takes them, on these term ids.
    Take(&'a [String]),
    /// Another transaction of this engine, on backend `holder`, holds the whole batch's
    /// locks until this one ends (`None`: the batch has no term, so there are none).
    HeldForIt { term_ids: &'a [String], holder: Option<i32> },
}

/// Apply every part of a batch at once, each in its own transaction, while one more
/// transaction holds the term locks of the whole batch until all parts have ended.
///
/// The parts share no term, so no row, and need no locks among themselves; the lock holder
/// keeps other engines serialized with the batch as a whole, exactly as if it were one
/// transaction. (The parts cannot each lock their own terms: locks are taken on 512 stripes
/// of the term space, and two parts of a few thousand terms each cover nearly every stripe,
/// so they would run one after the other; tried, the lock wait was 3.3 s per 300k events.)
/// A part that commits stays committed whatever its siblings do: every merge is idempotent,
/// so when the batch is redelivered (nothing is acked before every part has committed) the
/// committed part's events are no-ops.
///
/// `Err` when the locks could not be taken (nothing was tried); otherwise each part's
/// outcome, in part order. Every stage's time goes into `times`, summed over the parts and
/// as wall time (the longest part).
async fn apply_parts(
    pool: &PgPool,
    batch: &Batch,
    backfill: bool,
    times: &mut StageTimes,
) -> Result<Vec<Result<(), ApplyError>>, ApplyError> {
    let mut holder = pool.get().await?;
    let locks = holder.transaction().await?;
    let term_ids = batch.term_ids();
    timed(times, "lock", locks.execute(sql::LOCK_TERMS, &[&term_ids])).await?;
    let holder = if term_ids.is_empty() { None } else { Some(locks.query_one(sql::BACKEND_PID, &[]).await?.get(0)) };
    if let (Some(pid), true) = (holder, fault_point("lose_lock_holder")) {
        pool.get().await?.execute(sql::TERMINATE_BACKEND, &[&pid]).await?;
    }
    let attempts = batch.parts.iter().map(|part| async move {
        let mut times = StageTimes::default();
        let locks = Locks::HeldForIt { term_ids: &part.term_ids, holder };
        let encoded = Some(part.encoded.as_slice());
        let result = apply_events(pool, batch, part.range.clone(), encoded, locks, backfill, &mut times).await;
        if result.is_ok() {
            // One part committed, its siblings maybe not yet: the batch is not acked.
            crash_point("after_part_commit");
        }
        (times, result)
    });
    let results = futures_util::future::join_all(attempts).await;
    // Nothing was written under the holder: ending it only releases the locks (which a lost
    // connection has released already). The parts' outcomes stand either way.
    if let Err(e) = locks.rollback().await {
        warn!(error = %error_text(&e), "ending the batch's lock holder failed; its locks went with its connection");
    }
    times.merge_concurrent(results.iter().map(|(part_times, _)| part_times));
    Ok(results.into_iter().map(|(_, result)| result).collect())
}

/// One transaction over `batch.events[range]`: lock → screen (reorgs) → COPY → merge
/// (triggers) → cascade → outbox row → COMMIT.
async fn apply_events(
    pool: &PgPool,
    batch: &Batch,
    range: Range<usize>,
    encoded: Option<&[EncodedTable]>,
    locks: Locks<'_>,
    backfill: bool,
    times: &mut StageTimes,
) -> Result<(), ApplyError> {
    if range.is_empty() {
        return Ok(());
    }
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    if backfill {
        tx.batch_execute(sql::BACKFILL_TRANSACTION).await?;
    }
    let (term_ids, take) = match locks {
        Locks::Take(term_ids) => (term_ids, true),
        Locks::HeldForIt { term_ids, .. } => (term_ids, false),
    };
    // The term locks and the reorg screening's first query go out together (tokio-postgres
    // pipelines them on the connection, in this order): one round trip, not two.
    let lock = async {
        match take {
            true => tx.execute(sql::LOCK_TERMS, &[&term_ids]).await.map(drop),
            false => Ok(()),
        }
    };
    let screen = reorg::screen(&tx, batch, range.clone());
    let (locked, screened) = timed(times, "lock", futures_util::future::join(lock, screen)).await;
    locked?;
    let screened = screened?;
    if !screened.retract.is_empty() {
        return Err(ApplyError::OrphanProof(screened.retract));
    }
    let (events, encoded) = match &screened.kept {
        None => (&batch.events[range], encoded),
        Some(kept) => (kept.as_slice(), None),
    };
    if !events.is_empty() {
        log_events(&tx, events, encoded, times).await?;
    }
    crash_point("after_merge");
    if !term_ids.is_empty() {
        let started = Instant::now();
        timed(times, "cascade", tx.execute(sql::CASCADE_TERMS, &[&term_ids])).await?;
        metrics::histogram!(telemetry::CASCADE_SECONDS).record(started.elapsed().as_secs_f64());
    }
    timed(times, "outbox", outbox::record(&tx, term_ids)).await?;
    if let Locks::HeldForIt { holder: Some(pid), .. } = locks {
        timed(times, "lock", ensure_holder_locks(&tx, pid)).await?;
    }
    timed(times, "commit", tx.commit()).await?;
    metrics::counter!(telemetry::EVENTS_ORPHANED).increment(screened.orphaned as u64);
    Ok(())
}

/// Write the events into the log, whose statement-level triggers merge level 1.
///
/// First straight into the event tables with COPY, each table's triggers firing as its COPY
/// ends: a batch of new events, nearly every batch of a backfill, is written once. Should an
/// event already be in the log (a redelivery), its COPY fails on the key; the transaction goes
/// back to before the first COPY and takes the staging path instead: COPY into the session's
/// staging tables, then `INSERT … ON CONFLICT DO NOTHING`, which keeps the logged events out
/// of the merges. The two paths merge the same rows in the same table order. Measured in
/// `psql` on one 300k-event transaction, six runs each: 5.0–7.0 s straight, 5.4–8.3 s staged.
/// The direct path's time counts as "merge" (its COPY and merges are one statement per table).
async fn log_events(
    tx: &Transaction<'_>,
    events: &[Event],
    encoded: Option<&[EncodedTable]>,
    times: &mut StageTimes,
) -> Result<(), ApplyError> {
    let owned;
    let tables = match encoded {
        Some(tables) => tables,
        None => {
            owned = copy::encode_events(events);
            &owned
        }
    };
    tx.batch_execute(sql::SAVEPOINT_DIRECT).await?;
    let direct = timed(times, "merge", copy::copy_encoded(tx, tables, copy::Target::EventTables)).await;
    match direct {
        Ok(_) => {
            crash_point("after_copy");
            return Ok(());
        }
        Err(e) if e.code() != Some(&SqlState::UNIQUE_VIOLATION) => return Err(e.into()),
        Err(_) => tx.batch_execute(sql::ROLLBACK_TO_DIRECT).await?,
    }
    let staged = timed(times, "copy", copy::copy_encoded(tx, tables, copy::Target::Staging)).await?;
    crash_point("after_copy");
    if !staged.is_empty() {
        timed(times, "merge", tx.execute(sql::MERGE_STAGED, &[&staged])).await?;
    }
    Ok(())
}

/// Checked by each part just before its commit: the locks die with the holder's connection,
/// so this narrows the time a part could commit unprotected from its whole run to the instant
/// between this check and its COMMIT.
async fn ensure_holder_locks(tx: &Transaction<'_>, holder: i32) -> Result<(), ApplyError> {
    let holds: bool = tx.query_one(sql::HOLDS_ADVISORY_LOCKS, &[&holder]).await?.get(0);
    if holds {
        Ok(())
    } else {
        Err(ApplyError::LockHolderLost { pid: holder })
    }
}
