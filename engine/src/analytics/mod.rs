//! The analytics worker: keeps the level 3 tables (`triple_vault`, `triple_term`,
//! `predicate_object`, `subject_predicate`) up to date from the term ids the engine publishes
//! to `term_updates` after each ack (see `ingest::outbox`).
//!
//! One batch: read entries (the shared [`GroupReader`]) → validate and deduplicate their term
//! ids ([`updates`]) → `refresh_analytics` in READ COMMITTED transactions ([`refresh`]) →
//! commit → dead letters and XACK. Nothing is acked before its refresh committed, and a
//! refresh is a recompute from committed level 1-2 rows, so redelivery is harmless. Several
//! workers may share the group: migrations/repeatable/analytics.sql explains why they
//! neither deadlock nor lose updates.

pub mod config;
pub mod refresh;
pub mod updates;

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use tracing::info;

pub use config::WorkerConfig;

use crate::pg;
use crate::runtime::exit::Fatal;
use crate::runtime::retry::until_stopped;
use crate::runtime::shutdown::with_grace;
use crate::runtime::telemetry::{WORKER_BATCH_SIZE, WORKER_DEAD_LETTERS, WORKER_LAG, WORKER_PROCESSED};
use crate::runtime::Stop;
use crate::stream::{GroupReader, InFlight, Read, StreamControl};
use refresh::{Refresher, IDS_PER_TRANSACTION};
use updates::UpdateBatch;

/// What a worker did, reported at exit.
#[derive(Debug, Default, Clone)]
pub struct WorkerSummary {
    pub batches: u64,
    /// Entries read and acked, dead-lettered ones included.
    pub entries: u64,
    /// Distinct term ids refreshed, summed over batches.
    pub term_ids: u64,
    /// Triples refreshed, summed over batches.
    pub triples: u64,
    pub dead_letters: u64,
    /// Failed reads, refreshes or acks that were retried (a deadlock would show here).
    pub retries: u64,
    pub elapsed: Duration,
}

/// Run until `shutdown` resolves, or until idle with `exit_when_idle`. Shutdown lets the
/// batch in flight finish (or abandons it unacked while it is retrying), so stopping never
/// leaves an ack without a commit.
pub async fn run(config: WorkerConfig, shutdown: impl Future<Output = ()>) -> Result<WorkerSummary> {
    config.validate()?;
    let started = Instant::now();
    let mut summary = WorkerSummary::default();
    let outcome = with_grace(shutdown, |stop| async {
        // Start-up waits out an outage of PostgreSQL or Redis like any later step, and ends
        // at once on an error no wait can fix.
        if let Some(mut worker) = Worker::start(&config, stop, &mut summary).await? {
            worker.run().await;
        }
        Ok::<_, Fatal>(())
    })
    .await;
    summary.elapsed = started.elapsed();
    outcome.unwrap_or(Ok(()))?;
    Ok(summary)
}

struct Worker<'a> {
    config: &'a WorkerConfig,
    reader: GroupReader,
    in_flight: InFlight,
    control: StreamControl,
    refresher: Refresher,
    stop: Stop,
    summary: &'a mut WorkerSummary,
    /// How long to pause before the next read: set after a batch that did not fill the read
    /// (the worker is caught up), from how long that batch took (`WorkerConfig::pause_after`).
    pause: Duration,
}

/// How a step ended.
enum Step {
    Applied,
    Idle,
    Stopped,
}

impl<'a> Worker<'a> {
    /// Migrate and connect, retrying with backoff; `Ok(None)` if asked to stop first, `Err`
    /// on an error no retry can fix.
    async fn start(
        config: &'a WorkerConfig,
        mut stop: Stop,
        summary: &'a mut WorkerSummary,
    ) -> Result<Option<Worker<'a>>, Fatal> {
        let (url, redis) = (&config.database_url, &config.redis_url);
        // Same schema as the engine, so either may start first.
        let Some(()) = until_stopped!(&mut stop, "preparing the database", pg::schema::prepare(url).await, fail_fast)?
        else {
            return Ok(None);
        };
        let reader_config = config.reader();
        let Some(reader) = until_stopped!(
            &mut stop,
            "connecting to Redis",
            GroupReader::connect(redis, reader_config.clone()).await,
            fail_fast
        )?
        else {
            return Ok(None);
        };
        let Some(control) = until_stopped!(
            &mut stop,
            "connecting to Redis",
            StreamControl::new(redis, &config.group, config.dead_letter_maxlen).await,
            fail_fast
        )?
        else {
            return Ok(None);
        };
        info!(consumer = %reader_config.consumer, group = %config.group, stream = %config.stream, "analytics worker started");
        let in_flight = reader.in_flight();
        let refresher = Refresher::new(url);
        Ok(Some(Worker { config, reader, in_flight, control, refresher, stop, summary, pause: Duration::ZERO }))
    }

    /// Never fails: every error is retried, and input errors are dead letters.
    async fn run(&mut self) {
        while !self.stop.requested() {
            match self.step().await {
                Step::Applied => {}
                Step::Stopped => break,
                Step::Idle => {
                    // Nothing waits: the age of the oldest unprocessed update is zero.
                    metrics::gauge!(WORKER_LAG).set(0.0);
                    if self.config.exit_when_idle && self.nothing_pending().await {
                        info!("term_updates drained and nothing pending: exiting");
                        break;
                    }
                }
            }
        }
    }

    async fn step(&mut self) -> Step {
        if !self.stop.sleep(std::mem::take(&mut self.pause)).await {
            return Step::Stopped;
        }
        let Worker { reader, stop, summary, .. } = self;
        let read = until_stopped!(stop, "reading term_updates", {
            let read = reader.next().await;
            summary.retries += u64::from(read.is_err());
            read
        });
        let entries = match read {
            Some(Read::Entries(entries)) => entries,
            Some(Read::Idle) => return Step::Idle,
            None => return Step::Stopped,
        };
        let started = Instant::now();
        let batch = UpdateBatch::from_entries(&entries);
        let Some(triples) = self.refresh(&batch.term_ids).await else {
            return Step::Stopped;
        };
        if !self.finish(&batch).await {
            return Step::Stopped;
        }
        self.in_flight.done(&batch.acks);
        if self.config.trim_term_updates {
            // Best effort: what is not trimmed now is trimmed after the next batch.
            if let Err(e) = self.control.trim_processed(&self.config.stream).await {
                tracing::debug!(error = %e, "trimming term_updates failed");
            }
        }
        self.record(&batch, triples);
        if entries.len() < self.config.batch_size {
            self.pause = self.config.pause_after(started.elapsed());
        }
        Step::Applied
    }

    /// Refresh every chunk of the batch, each retried until it commits; `None` if asked to
    /// stop first (the batch stays unacked and will be redelivered).
    async fn refresh(&mut self, term_ids: &[String]) -> Option<u64> {
        let Worker { refresher, stop, summary, .. } = self;
        let mut triples = 0;
        for chunk in term_ids.chunks(IDS_PER_TRANSACTION) {
            let refreshed = until_stopped!(stop, "the analytics refresh", {
                let refreshed = refresher.refresh(chunk).await;
                summary.retries += u64::from(refreshed.is_err());
                refreshed
            })?;
            triples += refreshed as u64;
        }
        Some(triples)
    }

    /// Dead letters, then acks, retried; `false` if asked to stop first.
    async fn finish(&mut self, batch: &UpdateBatch) -> bool {
        let Worker { control, stop, summary, .. } = self;
        let acked = until_stopped!(stop, "acking term_updates", {
            let acked = control.finish(&batch.acks, &batch.dead_letters).await;
            summary.retries += u64::from(acked.is_err());
            acked
        });
        acked.is_some()
    }

    fn record(&mut self, batch: &UpdateBatch, triples: u64) {
        metrics::counter!(WORKER_PROCESSED).increment(batch.applied_entries);
        metrics::counter!(WORKER_DEAD_LETTERS).increment(batch.dead_letters.len() as u64);
        metrics::histogram!(WORKER_BATCH_SIZE).record(batch.term_ids.len() as f64);
        if let Some(oldest) = batch.oldest_committed_ms {
            metrics::gauge!(WORKER_LAG).set(lag_seconds(oldest));
        }
        let s = &mut self.summary;
        s.batches += 1;
        s.entries += batch.acks.len() as u64;
        s.term_ids += batch.term_ids.len() as u64;
        s.triples += triples;
        s.dead_letters += batch.dead_letters.len() as u64;
    }

    async fn nothing_pending(&mut self) -> bool {
        let stream = std::slice::from_ref(&self.config.stream);
        self.control.pending(stream).await.is_ok_and(|n| n == 0)
    }
}

/// Seconds from the engine commit at `committed_ms` until now.
fn lag_seconds(committed_ms: i64) -> f64 {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(committed_ms);
    (now_ms - committed_ms).max(0) as f64 / 1000.0
}
