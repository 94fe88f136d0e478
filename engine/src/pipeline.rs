//! The engine loop: a reader task reads and decodes batch N+1 while the writer applies
//! batch N in one transaction, then acks it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::batch::Batch;
use crate::config::EngineConfig;
use crate::db::{self, PgPool};
use crate::metrics as m;
use crate::source::{StreamControl, StreamReader};
use crate::{cascade, merge, outbox, sql, stage};

/// What the engine did, reported at exit.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub batches: u64,
    pub messages: u64,
    pub events: u64,
    pub dead_letters: u64,
    pub elapsed: Duration,
    /// Per message, from XADD (the entry id's millisecond timestamp, so up to 1 ms
    /// pessimistic) to the commit of its batch, in microseconds.
    pub commit_latency_us: Histogram<u64>,
    /// Wall time spent in each pipeline stage, summed over batches (read and decode
    /// overlap the database stages).
    pub stage_time: StageTimes,
}

/// Time per pipeline stage; every addition is also recorded in the stage histogram.
#[derive(Debug, Default, Clone)]
pub struct StageTimes(pub BTreeMap<&'static str, Duration>);

impl StageTimes {
    pub fn add(&mut self, stage: &'static str, took: Duration) {
        *self.0.entry(stage).or_default() += took;
        metrics::histogram!(m::STAGE_SECONDS, "stage" => stage).record(took.as_secs_f64());
    }

    pub fn merge(&mut self, other: &StageTimes) {
        for (stage, took) in &other.0 {
            *self.0.entry(stage).or_default() += *took;
        }
    }
}

impl Default for RunSummary {
    fn default() -> Self {
        RunSummary {
            batches: 0,
            messages: 0,
            events: 0,
            dead_letters: 0,
            elapsed: Duration::ZERO,
            commit_latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"),
            stage_time: StageTimes::default(),
        }
    }
}

impl RunSummary {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

enum Work {
    Batch(Batch),
    /// A read found nothing new; everything sent before it has been handed over.
    Idle,
}

/// Run until `shutdown` resolves, or until idle with `exit_when_idle`.
pub async fn run(config: EngineConfig, shutdown: impl Future<Output = ()>) -> Result<RunSummary> {
    let started = Instant::now();
    let pool = db::connect(&config.database_url, config.pool_size).await?;
    let consumer = config.consumer_name();
    let mut reader = StreamReader::new(
        &config.redis_url,
        &config.streams,
        &config.group,
        &consumer,
        config.batch_size,
        config.block(),
    )
    .await?;
    reader.ensure_groups().await?;
    let mut control = StreamControl::new(&config.redis_url, &config.group).await?;
    // Whatever a previous run committed but did not publish goes out first.
    let mut publisher = crate::source::connect(&config.redis_url).await?;
    publish_with_retry(&pool, &mut publisher, &config.term_updates_stream).await;
    info!(consumer = %consumer, group = %config.group, streams = ?config.streams, "engine started");

    // Capacity 1: one batch decoded ahead while the writer works, never more.
    let (tx, mut rx) = mpsc::channel(1);
    let claim_idle = Duration::from_millis(config.claim_idle_ms);
    let mut read_task = tokio::spawn(async move { read_loop(&mut reader, tx, claim_idle).await });

    let mut summary = RunSummary::default();
    let mut last_report = Instant::now();
    tokio::pin!(shutdown);
    loop {
        let work = tokio::select! {
            biased;
            _ = &mut shutdown => { info!("shutdown requested"); break; }
            work = rx.recv() => work,
        };
        match work {
            Some(Work::Batch(batch)) => {
                summary.stage_time.merge(&batch.times);
                apply_with_retry(&pool, &batch, config.backfill, &mut summary.stage_time).await;
                record_batch(&batch, &mut summary.commit_latency_us);
                outbox::crash_point("after_commit");
                finish_with_retry(&mut control, &batch).await;
                outbox::crash_point("after_ack");
                publish_with_retry(&pool, &mut publisher, &config.term_updates_stream).await;
                summary.batches += 1;
                summary.messages += batch.acks.len() as u64;
                summary.events += batch.events.len() as u64;
                summary.dead_letters += batch.dead_letters.len() as u64;
                if last_report.elapsed() >= Duration::from_secs(10) {
                    summary.elapsed = started.elapsed();
                    info!(events = summary.events, rate = format!("{:.0}/s", summary.events_per_second()), "progress");
                    last_report = Instant::now();
                }
            }
            Some(Work::Idle) => {
                if config.exit_when_idle && control.pending(&config.streams).await.unwrap_or(usize::MAX) == 0 {
                    info!("streams drained and nothing pending: exiting");
                    break;
                }
            }
            None => {
                // The reader stopped: surface its error.
                (&mut read_task).await??;
                break;
            }
        }
    }
    read_task.abort();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Where the reader is in its cycle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Entries this consumer name was given before a restart; `>` never returns them.
    OwnPending,
    /// Entries other consumers left pending too long (they died).
    Claim,
    New,
}

async fn read_loop(reader: &mut StreamReader, tx: mpsc::Sender<Work>, claim_idle: Duration) -> Result<()> {
    let claim_every = claim_idle.max(Duration::from_secs(1));
    let mut phase = Phase::OwnPending;
    let mut last_claim = Instant::now();
    let mut failures = 0u32;
    loop {
        let mut times = StageTimes::default();
        let read = timed(&mut times, "read", async {
            match phase {
                Phase::OwnPending => reader.read_own_pending().await,
                Phase::Claim => reader.claim_stale(claim_idle).await,
                Phase::New => reader.read_new().await,
            }
        })
        .await;
        let messages = match read {
            Ok(m) => {
                failures = 0;
                m
            }
            Err(e) => {
                failures += 1;
                warn!(error = %format!("{e:#}"), attempt = failures, "reading streams failed; retrying");
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
        };
        let was = phase;
        phase = match phase {
            Phase::OwnPending if messages.is_empty() => Phase::Claim,
            Phase::OwnPending => Phase::OwnPending,
            Phase::Claim => {
                last_claim = Instant::now();
                Phase::New
            }
            Phase::New if last_claim.elapsed() >= claim_every => Phase::Claim,
            Phase::New => Phase::New,
        };
        let work = if !messages.is_empty() {
            let decode = tokio::task::spawn_blocking(move || Batch::from_messages(messages));
            let mut batch = timed(&mut times, "decode", async { Ok(decode.await?) }).await?;
            batch.times = times;
            Work::Batch(batch)
        } else if was == Phase::New {
            Work::Idle
        } else {
            continue;
        };
        if tx.send(work).await.is_err() {
            return Ok(());
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis((100u64 << failures.min(6)).min(5_000))
}

/// Apply a batch, retrying with backoff until it commits. Nothing is acked before that.
async fn apply_with_retry(pool: &PgPool, batch: &Batch, backfill: bool, times: &mut StageTimes) {
    let mut failures = 0;
    while let Err(e) = apply(pool, batch, backfill, times).await {
        failures += 1;
        error!(error = %format!("{e:#}"), attempt = failures, events = batch.events.len(), "batch rolled back; retrying");
        metrics::counter!(m::BATCH_RETRIES).increment(1);
        tokio::time::sleep(backoff(failures)).await;
    }
}

/// One transaction: lock → COPY → merge (triggers) → cascade → COMMIT.
pub async fn apply(pool: &PgPool, batch: &Batch, backfill: bool, times: &mut StageTimes) -> Result<()> {
    if batch.events.is_empty() {
        return Ok(());
    }
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    if backfill {
        tx.batch_execute(sql::BACKFILL_TRANSACTION).await?;
    }
    timed(times, "lock", merge::lock_terms(&tx, &batch.term_ids)).await?;
    let staged = timed(times, "copy", stage::stage_events(&tx, &batch.events)).await?;
    timed(times, "merge", merge::merge_staged(&tx, &staged)).await?;
    let cascade_started = Instant::now();
    timed(times, "cascade", cascade::cascade_terms(&tx, &batch.term_ids)).await?;
    metrics::histogram!(m::CASCADE_SECONDS).record(cascade_started.elapsed().as_secs_f64());
    timed(times, "outbox", outbox::record(&tx, &batch.term_ids)).await?;
    timed(times, "commit", async { Ok(tx.commit().await?) }).await?;
    Ok(())
}

/// Await one pipeline stage and record how long it took.
async fn timed<T>(times: &mut StageTimes, stage: &'static str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let out = fut.await;
    times.add(stage, started.elapsed());
    out
}

/// Unix seconds of the last commit, for `/health` (0 before the first).
pub static LAST_COMMIT_UNIX: AtomicI64 = AtomicI64::new(0);

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

fn record_batch(batch: &Batch, latency_us: &mut Histogram<u64>) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    for (_, id) in &batch.acks {
        if let Some(added_ms) = id.split('-').next().and_then(|ms| ms.parse::<u64>().ok()) {
            let us = (now.as_micros() as u64).saturating_sub(added_ms * 1000);
            latency_us.saturating_record(us.max(1));
            metrics::histogram!(m::COMMIT_LATENCY).record(us as f64 / 1e6);
        }
    }
    LAST_COMMIT_UNIX.store(now.as_secs() as i64, Ordering::Relaxed);
    PROGRESS.events.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
    PROGRESS.messages.fetch_add(batch.acks.len() as u64, Ordering::Relaxed);
    PROGRESS.dead_letters.fetch_add(batch.dead_letters.len() as u64, Ordering::Relaxed);
    PROGRESS.batches.fetch_add(1, Ordering::Relaxed);
    metrics::gauge!(m::LAST_COMMIT).set(now.as_secs_f64());
    metrics::counter!(m::EVENTS_PROCESSED).increment(batch.events.len() as u64);
    metrics::counter!(m::MESSAGES_READ).increment(batch.acks.len() as u64);
    metrics::counter!(m::EVENTS_FAILED).increment(batch.dead_letters.len() as u64);
    metrics::counter!(m::DEAD_LETTERS).increment(batch.dead_letters.len() as u64);
    metrics::histogram!(m::BATCH_EVENTS).record(batch.events.len() as f64);
}

async fn publish_with_retry(pool: &PgPool, redis: &mut redis::aio::MultiplexedConnection, stream: &str) {
    let mut failures = 0;
    loop {
        match outbox::publish(pool, redis, stream).await {
            Ok(sent) => {
                metrics::counter!(m::OUTBOX_PUBLISHED).increment(sent as u64);
                return;
            }
            Err(e) => {
                failures += 1;
                warn!(error = %format!("{e:#}"), attempt = failures, "publishing the outbox failed; retrying");
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

async fn finish_with_retry(control: &mut StreamControl, batch: &Batch) {
    let mut failures = 0;
    while let Err(e) = control.finish(&batch.acks, &batch.dead_letters).await {
        failures += 1;
        warn!(error = %format!("{e:#}"), attempt = failures, "acking the committed batch failed; retrying");
        tokio::time::sleep(backoff(failures)).await;
    }
}
