//! The analytics worker: keeps the level 3 tables (`triple_vault`, `triple_term`,
//! `predicate_object`, `subject_predicate`) up to date from the term ids the engine
//! publishes to `term_updates` after each commit (see [`crate::outbox`]).
//!
//! One batch: read entries ([`reader`]) → validate and deduplicate their term ids
//! ([`updates`]) → `refresh_analytics` in READ COMMITTED transactions ([`refresh`]) →
//! commit → dead letters and XACK. Nothing is acked before its refresh committed, and a
//! refresh is a recompute from committed level 1-2 rows, so redelivery is harmless.
//! Several workers may share the group: migrations/V7 explains why they neither deadlock
//! nor lose updates.

mod reader;
mod refresh;
pub mod updates;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::Args;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::metrics::{DEAD_LETTERS, WORKER_BATCH_SIZE, WORKER_LAG, WORKER_PROCESSED};
use crate::source::StreamControl;
use crate::{config, db};
use reader::{Read, UpdateReader};
use refresh::{Refresher, IDS_PER_TRANSACTION};
use updates::UpdateBatch;

/// Settings of `analytics-worker`. Shared settings use the engine's variable names
/// (`DATABASE_URL`, `REDIS_URL`, `TERM_UPDATES_STREAM`) so one environment configures
/// both; the worker's own settings are prefixed `ANALYTICS_` so they never pick up the
/// engine's group, batch size or metrics address.
#[derive(Args, Clone, Debug)]
pub struct WorkerConfig {
    /// PostgreSQL connection URL (the engine's database).
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/intuition")]
    pub database_url: String,

    /// Redis connection URL.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// Stream the engine publishes affected term ids to.
    #[arg(long, env = "TERM_UPDATES_STREAM", default_value = "term_updates")]
    pub stream: String,

    /// Consumer group shared by every worker.
    #[arg(long, env = "ANALYTICS_GROUP", default_value = "analytics-worker")]
    pub group: String,

    /// Consumer name, unique per process (default: <hostname>-<pid>).
    #[arg(long, env = "ANALYTICS_CONSUMER")]
    pub consumer: Option<String>,

    /// Entries read per XREADGROUP; their distinct term ids are refreshed together.
    #[arg(long, env = "ANALYTICS_BATCH_SIZE", default_value_t = 20)]
    pub batch_size: usize,

    /// How long one XREADGROUP blocks waiting for new entries, in milliseconds.
    #[arg(long, env = "ANALYTICS_BLOCK_MS", default_value_t = 1000)]
    pub block_ms: u64,

    /// Exit 0 once the stream is drained and nothing is pending for the group.
    #[arg(long, env = "ANALYTICS_EXIT_WHEN_IDLE")]
    pub exit_when_idle: bool,

    /// Entries pending longer than this on another consumer are claimed (XAUTOCLAIM).
    #[arg(long, env = "ANALYTICS_CLAIM_IDLE_MS", default_value_t = 60_000)]
    pub claim_idle_ms: u64,

    /// Where /metrics and /health are served (the engine uses 3030).
    #[arg(long, env = "ANALYTICS_METRICS_ADDR", default_value = "127.0.0.1:3031")]
    pub metrics_addr: SocketAddr,
}

impl WorkerConfig {
    /// A worker for local services, as tests use it: drain and exit.
    pub fn local(database_url: &str, stream: &str) -> WorkerConfig {
        WorkerConfig {
            database_url: database_url.to_owned(),
            redis_url: "redis://127.0.0.1:6379".into(),
            stream: stream.to_owned(),
            group: "analytics-worker".into(),
            consumer: None,
            batch_size: 20,
            block_ms: 100,
            exit_when_idle: true,
            claim_idle_ms: 60_000,
            metrics_addr: "127.0.0.1:3031".parse().expect("valid address"),
        }
    }

    pub fn consumer_name(&self) -> String {
        self.consumer.clone().unwrap_or_else(config::default_consumer_name)
    }
}

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
/// leaves a half-read reply or an ack without a commit.
pub async fn run(config: WorkerConfig, shutdown: impl Future<Output = ()>) -> Result<WorkerSummary> {
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut summary = WorkerSummary::default();
    {
        let work = async {
            // Start-up waits out an outage of PostgreSQL or Redis like any later step.
            if let Some(mut worker) = Worker::start(config, stop_rx).await {
                worker.run().await;
                summary = worker.summary.clone();
            }
        };
        tokio::pin!(work);
        tokio::select! {
            () = &mut work => {}
            _ = shutdown => {
                info!("shutdown requested: finishing the batch in flight");
                let _ = stop_tx.send(true);
                if tokio::time::timeout(crate::pipeline::SHUTDOWN_GRACE, &mut work).await.is_err() {
                    warn!("the batch in flight did not finish in time: abandoned unacked");
                }
            }
        }
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

struct Worker {
    config: WorkerConfig,
    reader: UpdateReader,
    control: StreamControl,
    refresher: Refresher,
    stop: watch::Receiver<bool>,
    summary: WorkerSummary,
}

/// How a step ended.
enum Step {
    Applied,
    Idle,
    Stopped,
}

impl Worker {
    /// Connect and migrate, retrying with backoff; `None` if asked to stop first.
    async fn start(config: WorkerConfig, mut stop: watch::Receiver<bool>) -> Option<Worker> {
        let consumer = config.consumer_name();
        let mut failures = 0;
        loop {
            match Self::connect(&config, &consumer).await {
                Ok((reader, control)) => {
                    let refresher = Refresher::new(&config.database_url);
                    info!(consumer = %consumer, group = %config.group, stream = %config.stream, "analytics worker started");
                    let summary = WorkerSummary::default();
                    return Some(Worker { config, reader, control, refresher, stop, summary });
                }
                Err(e) => {
                    failures += 1;
                    warn!(error = %format!("{e:#}"), attempt = failures, "starting the analytics worker failed; retrying");
                    if !sleep_unless_stopped(&mut stop, failures).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn connect(config: &WorkerConfig, consumer: &str) -> Result<(UpdateReader, StreamControl)> {
        // Same migrations as the engine, so either may start first.
        db::ensure_database(&config.database_url).await?;
        db::migrate(&config.database_url).await?;
        let mut reader = UpdateReader::new(
            &config.redis_url,
            &config.stream,
            &config.group,
            consumer,
            config.batch_size,
            Duration::from_millis(config.block_ms),
            Duration::from_millis(config.claim_idle_ms),
        )
        .await?;
        reader.ensure_group().await?;
        let control = StreamControl::new(&config.redis_url, &config.group).await?;
        Ok((reader, control))
    }

    /// Never fails: every error is retried, and input errors are dead letters.
    async fn run(&mut self) {
        while !self.stopping() {
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
        let entries = match self.read().await {
            Some(Read::Entries(entries)) => entries,
            Some(Read::Idle) => return Step::Idle,
            None => return Step::Stopped,
        };
        let batch = UpdateBatch::from_entries(&self.config.stream, &entries);
        let Some(triples) = self.refresh(&batch.term_ids).await else {
            return Step::Stopped;
        };
        if !self.finish(&batch).await {
            return Step::Stopped;
        }
        self.record(&batch, triples);
        Step::Applied
    }

    /// Read with retry; `None` once stopping.
    async fn read(&mut self) -> Option<Read> {
        let mut failures = 0;
        loop {
            match self.reader.next().await {
                Ok(read) => return Some(read),
                Err(e) => {
                    failures += 1;
                    warn!(error = %format!("{e:#}"), attempt = failures, "reading term_updates failed; retrying");
                    if crate::source::is_missing_group(&e) {
                        // Redis lost the group (restarted without persistence): recreate it.
                        let _ = self.reader.ensure_group().await;
                    }
                    if !self.backoff(failures).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Refresh every chunk of the batch, each retried until it commits; `None` if asked to
    /// stop first (the batch stays unacked and will be redelivered).
    async fn refresh(&mut self, term_ids: &[String]) -> Option<u64> {
        let mut triples = 0;
        for chunk in term_ids.chunks(IDS_PER_TRANSACTION) {
            let mut failures = 0;
            loop {
                match self.refresher.refresh(chunk).await {
                    Ok(n) => {
                        triples += n as u64;
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        error!(error = %format!("{e:#}"), attempt = failures, ids = chunk.len(), "analytics refresh rolled back; retrying");
                        if !self.backoff(failures).await {
                            return None;
                        }
                    }
                }
            }
        }
        Some(triples)
    }

    /// Dead letters, then acks, retried; `false` if asked to stop first.
    async fn finish(&mut self, batch: &UpdateBatch) -> bool {
        let mut failures = 0;
        while let Err(e) = self.control.finish(&batch.acks, &batch.dead_letters).await {
            failures += 1;
            warn!(error = %format!("{e:#}"), attempt = failures, "acking term_updates failed; retrying");
            if !self.backoff(failures).await {
                return false;
            }
        }
        true
    }

    fn record(&mut self, batch: &UpdateBatch, triples: u64) {
        metrics::counter!(WORKER_PROCESSED).increment(batch.applied_entries);
        metrics::counter!(DEAD_LETTERS).increment(batch.dead_letters.len() as u64);
        metrics::histogram!(WORKER_BATCH_SIZE).record(batch.term_ids.len() as f64);
        if let Some(oldest) = batch.oldest_committed_ms {
            metrics::gauge!(WORKER_LAG).set(lag_seconds(oldest));
        }
        self.summary.batches += 1;
        self.summary.entries += batch.acks.len() as u64;
        self.summary.term_ids += batch.term_ids.len() as u64;
        self.summary.triples += triples;
        self.summary.dead_letters += batch.dead_letters.len() as u64;
    }

    async fn nothing_pending(&mut self) -> bool {
        let stream = std::slice::from_ref(&self.config.stream);
        self.control.pending(stream).await.is_ok_and(|n| n == 0)
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleep before retry number `failures`; `false` if asked to stop meanwhile.
    async fn backoff(&mut self, failures: u32) -> bool {
        self.summary.retries += 1;
        sleep_unless_stopped(&mut self.stop, failures).await
    }
}

/// Sleep before retry number `failures`; `false` if asked to stop before or meanwhile.
async fn sleep_unless_stopped(stop: &mut watch::Receiver<bool>, failures: u32) -> bool {
    if *stop.borrow() {
        return false;
    }
    let delay = Duration::from_millis((100u64 << failures.min(6)).min(5_000));
    tokio::select! {
        biased;
        _ = stop.wait_for(|stop| *stop) => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// Seconds from the engine commit at `committed_ms` until now.
fn lag_seconds(committed_ms: i64) -> f64 {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(committed_ms);
    (now_ms - committed_ms).max(0) as f64 / 1000.0
}
