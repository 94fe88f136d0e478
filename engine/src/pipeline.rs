//! The engine loop: a reader task reads and decodes batch N+1 while the writer applies
//! batch N in one transaction, then acks it (in backfill mode once its commit is durable,
//! see [`crate::durability`]).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use tokio::sync::watch;

use crate::batch::{term_ids_of, Batch};
use crate::config::EngineConfig;
use crate::db::{self, Failure, PgPool};
use crate::durability::{Committed, DurableAcks, Released};
use crate::event::Event;
use crate::metrics as m;
use crate::outbox::{Publish, Publisher};
use crate::source::{self, DeadLetter, StreamControl, StreamReader};
use crate::{cascade, merge, outbox, sql, stage};

/// What the engine did, reported at exit.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub batches: u64,
    pub messages: u64,
    pub events: u64,
    pub dead_letters: u64,
    /// Failed attempts that were retried (or split, for data errors), by reason: the
    /// labels of `redis_postgres_sync_batch_retries_total`.
    pub retry_reasons: BTreeMap<&'static str, u64>,
    /// Sum of `retry_reasons`.
    pub retries: u64,
    /// Batches applied as several concurrent parts (see [`crate::batch::Part`]).
    pub parallel_batches: u64,
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
            retry_reasons: BTreeMap::new(),
            retries: 0,
            parallel_batches: 0,
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

    /// Count a failed attempt of a batch under `reason`, here and in the retry metric.
    pub fn count_retry(&mut self, reason: &'static str) {
        *self.retry_reasons.entry(reason).or_default() += 1;
        self.retries += 1;
        metrics::counter!(m::BATCH_RETRIES, "reason" => reason).increment(1);
    }
}

enum Work {
    Batch(Batch),
    /// A read found nothing new; everything sent before it has been handed over.
    Idle,
}

/// Once shutdown is requested, how long the batch in flight may take to commit and ack
/// before it is abandoned: dropped uncommitted (PostgreSQL rolls it back) with its entries
/// left pending for the next run. Keeps a stop bounded even when a query hangs.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Run until `shutdown` resolves, or until idle with `exit_when_idle`.
///
/// On shutdown the batch in flight finishes (commit, ack, publish) if it can; one that is
/// retrying gives up at its next backoff, and anything still running after
/// [`SHUTDOWN_GRACE`] is abandoned. Nothing is acked before it committed, so whatever was
/// left behind is redelivered and applied once by the next run.
pub async fn run(config: EngineConfig, shutdown: impl Future<Output = ()>) -> Result<RunSummary> {
    let started = Instant::now();
    let (stop_tx, stop) = watch::channel(false);
    let mut summary = RunSummary::default();
    let result = {
        let work = Engine::run(&config, stop, &mut summary);
        tokio::pin!(work);
        tokio::select! {
            result = &mut work => result,
            _ = shutdown => {
                info!("shutdown requested: finishing the batch in flight");
                let _ = stop_tx.send(true);
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut work).await {
                    Ok(result) => result,
                    Err(_) => {
                        warn!(grace = ?SHUTDOWN_GRACE, "the batch in flight did not finish in time: abandoned uncommitted, its entries stay pending");
                        Ok(())
                    }
                }
            }
        }
    };
    summary.elapsed = started.elapsed();
    result.map(|()| summary)
}

/// Entries (stream, id) this engine has read and not yet acked: handed to the writer, being
/// applied, or committed and waiting to be durable. A claim of stale entries (`XAUTOCLAIM`)
/// also returns this engine's own entries once they have waited `claim_idle`, say behind a
/// batch retrying through a PostgreSQL outage; those are already on their way and must not
/// be delivered twice (applied twice, dead-lettered twice).
#[derive(Clone, Default)]
struct InFlight {
    entries: Arc<Mutex<HashSet<(String, String)>>>,
    /// Set when the writer gives entries back unacked: the reader reads them again.
    given_back: Arc<AtomicBool>,
}

impl InFlight {
    fn add(&self, entries: &[(String, String)]) {
        self.entries.lock().expect("in-flight set").extend(entries.iter().cloned());
    }

    fn remove(&self, entries: &[(String, String)]) {
        let mut set = self.entries.lock().expect("in-flight set");
        for entry in entries {
            set.remove(entry);
        }
    }

    /// The writer will not ack these entries: they stay pending on this consumer, and the
    /// reader reads its own pending entries again to deliver them once more.
    fn give_back(&self, entries: &[(String, String)]) {
        self.remove(entries);
        self.given_back.store(true, Ordering::SeqCst);
    }

    /// Whether entries were given back since the last call.
    fn take_given_back(&self) -> bool {
        self.given_back.swap(false, Ordering::SeqCst)
    }

    /// Drop the messages already in flight.
    fn retain_new(&self, messages: &mut Vec<source::Message>) {
        let set = self.entries.lock().expect("in-flight set");
        messages.retain(|m| !set.contains(&(m.stream.clone(), m.id.clone())));
    }
}

/// Aborts a task however the engine loop ends (an abandoned shutdown included): the
/// reader, the outbox publisher.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Engine<'a> {
    config: &'a EngineConfig,
    stop: watch::Receiver<bool>,
    summary: &'a mut RunSummary,
    pool: PgPool,
    control: StreamControl,
    publisher: Publisher,
    in_flight: InFlight,
    /// Backfill mode: the acks of committed batches, held until their commits are durable.
    durable: Option<DurableAcks>,
}

impl<'a> Engine<'a> {
    async fn run(config: &'a EngineConfig, mut stop: watch::Receiver<bool>, summary: &'a mut RunSummary) -> Result<()> {
        // Start-up waits for its dependencies like any later step, so an engine started
        // during an outage comes up by itself once it ends.
        let Some(pool) = retry_until_stopped(&mut stop, "connecting to PostgreSQL", || {
            db::connect(&config.database_url, config.pool_size)
        })
        .await
        else {
            return Ok(());
        };
        let consumer = config.consumer_name();
        let Some(reader) = retry_until_stopped(&mut stop, "connecting to Redis", || async {
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
            Ok(reader)
        })
        .await
        else {
            return Ok(());
        };
        let Some(control) = retry_until_stopped(&mut stop, "connecting to Redis", || {
            StreamControl::new(&config.redis_url, &config.group)
        })
        .await
        else {
            return Ok(());
        };
        // The publisher works beside the writer: it gets a Redis connection of its own rather
        // than sharing the one the writer acks on.
        let Some(mut publishing) =
            retry_until_stopped(&mut stop, "connecting to Redis", || source::connect_managed(&config.redis_url)).await
        else {
            return Ok(());
        };
        // Whatever a previous run committed but did not publish goes out first.
        let when = if config.backfill { Publish::Durable } else { Publish::Committed };
        let mut stopping = stop.clone();
        outbox::publish_until_sent(&pool, &mut publishing, &config.term_updates_stream, when, &mut stopping).await;
        let updates = config.term_updates_stream.clone();
        let publisher = Publisher::spawn(pool.clone(), publishing, updates, when, stop.clone());
        let in_flight = InFlight::default();
        let durable = config.backfill.then(|| DurableAcks::new(&config.database_url));
        let mut engine =
            Engine { config, stop, summary, pool, control, publisher, in_flight: in_flight.clone(), durable };
        info!(consumer = %consumer, group = %config.group, streams = ?config.streams, "engine started");

        // Capacity 1: one batch decoded ahead while the writer works, never more.
        let (tx, mut rx) = mpsc::channel(1);
        let claim_idle = Duration::from_millis(config.claim_idle_ms);
        let mut read_task = AbortOnDrop(tokio::spawn(read_loop(reader, tx, claim_idle, config.parts(), in_flight)));
        let (started, mut last_report) = (Instant::now(), Instant::now());
        loop {
            let work = tokio::select! {
                biased;
                _ = engine.stop.wait_for(|s| *s) => break,
                work = rx.recv() => work,
            };
            match work {
                Some(Work::Batch(batch)) => {
                    if !engine.process(batch).await {
                        break;
                    }
                    if last_report.elapsed() >= Duration::from_secs(10) {
                        let s = &engine.summary;
                        let rate = s.events as f64 / started.elapsed().as_secs_f64().max(1e-3);
                        info!(
                            events = s.events,
                            batches = s.batches,
                            retries = s.retries,
                            rate = format!("{rate:.0}/s"),
                            "progress"
                        );
                        last_report = Instant::now();
                    }
                }
                Some(Work::Idle) => {
                    // The streams ran dry: nothing later will flush the held commits.
                    if !engine.flush_held().await {
                        break;
                    }
                    if config.exit_when_idle && engine.control.pending(&config.streams).await.unwrap_or(usize::MAX) == 0
                    {
                        info!("streams drained and nothing pending: exiting");
                        break;
                    }
                }
                None => {
                    // The reader stopped: surface its error.
                    (&mut read_task.0).await??;
                    break;
                }
            }
        }
        // On shutdown too: one barrier, one ack attempt; what fails stays pending.
        engine.flush_held().await;
        let Engine { publisher, .. } = engine;
        publisher.finish().await;
        Ok(())
    }

    /// Apply one batch and ack it (in backfill mode once its commit is durable, which may be
    /// after later batches have committed); `false` if shutdown cut it short.
    async fn process(&mut self, mut batch: Batch) -> bool {
        self.summary.stage_time.merge(&batch.times);
        // Taken before the batch's first transaction: the witness must see its commit.
        let witness = match self.durable.is_some() {
            true => match self.witness().await {
                Some(w) => Some(w),
                None => return false,
            },
            false => None,
        };
        let Some(refused) = self.apply_with_retry(&batch).await else {
            info!(messages = batch.acks.len(), "shutdown while the batch was retrying: left uncommitted and pending");
            return false;
        };
        let mut dead_letters = std::mem::take(&mut batch.dead_letters);
        dead_letters.extend(refused.iter().map(|(i, error)| batch.event_dead_letter(*i, error.clone())));
        let applied = batch.events.len() - refused.len();
        record_batch(&batch, applied, dead_letters.len(), &mut self.summary.commit_latency_us);
        outbox::crash_point("after_commit");
        let committed = Committed { acks: std::mem::take(&mut batch.acks), dead_letters, events: applied as u64 };
        // Freeing a large batch (a million small allocations) takes a core for ~0.1 s:
        // done off the writer's path, which would otherwise start the next batch that late.
        tokio::task::spawn_blocking(move || drop(batch));
        let released = match (self.durable.as_mut(), witness) {
            (Some(durable), Some(witness)) => {
                let started = Instant::now();
                let released = durable.hold(committed, witness).await;
                self.summary.stage_time.add("flush", started.elapsed());
                released
            }
            _ => Released { durable: vec![committed], unknown: Vec::new() },
        };
        self.settle(released).await
    }

    /// The durability witness for the next batch, waiting out an outage; `None` once
    /// shutdown is requested.
    async fn witness(&mut self) -> Option<u64> {
        let durable = self.durable.as_mut()?;
        let mut failures = 0;
        loop {
            match durable.witness().await {
                Ok(generation) => return Some(generation),
                Err(e) => {
                    failures += 1;
                    warn!(error = %format!("{e:#}"), attempt = failures, "connecting the durability witness failed; retrying");
                    if !backoff(&mut self.stop, failures).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Take a WAL flush barrier and ack every held batch (backfill mode); `false` if
    /// shutdown came first.
    async fn flush_held(&mut self) -> bool {
        let Some(durable) = self.durable.as_mut().filter(|d| !d.is_empty()) else {
            return true;
        };
        let started = Instant::now();
        let released = durable.barrier().await;
        self.summary.stage_time.add("flush", started.elapsed());
        self.settle(released).await
    }

    /// Ack the durable batches, in commit order, and wake the publisher; give the unknown
    /// ones back to be read again. `false` if shutdown came first.
    async fn settle(&mut self, released: Released) -> bool {
        for batch in &released.unknown {
            warn!(
                messages = batch.acks.len(),
                "PostgreSQL went away before the batch's asynchronous commit was seen flushed: left unacked, to be applied again"
            );
            self.in_flight.give_back(&batch.acks);
        }
        if released.durable.is_empty() {
            return true;
        }
        let acking = Instant::now();
        for batch in released.durable {
            if !self.finish_with_retry(&batch.acks, &batch.dead_letters).await {
                info!(
                    messages = batch.acks.len(),
                    "shutdown while acking a committed batch: it will be redelivered (a no-op)"
                );
                return false;
            }
            outbox::crash_point("after_ack");
            self.in_flight.remove(&batch.acks);
            let s = &mut self.summary;
            s.batches += 1;
            s.messages += batch.acks.len() as u64;
            s.events += batch.events;
            s.dead_letters += batch.dead_letters.len() as u64;
        }
        self.summary.stage_time.add("ack", acking.elapsed());
        self.publisher.wake();
        true
    }

    /// Apply a batch, retrying with backoff until it commits; nothing is acked before that.
    ///
    /// A batch of several parts is first applied in concurrent transactions, one per part
    /// ([`apply_parts`]); the parts that did not commit join the retries below, one by one.
    /// A transient failure (lost connection, server restart, deadlock, serialization
    /// failure) retries the same events. A failure caused by the data (SQLSTATE 22xxx or
    /// 23xxx) would fail forever, so the events are split in halves, each applied on its
    /// own (every merge is idempotent and order independent), down to the single events
    /// PostgreSQL refuses; those are returned, with the error, to be dead-lettered.
    /// `None` once shutdown is requested while retrying.
    async fn apply_with_retry(&mut self, batch: &Batch) -> Option<Vec<(usize, String)>> {
        // Ranges of events still to apply, last pushed first.
        let mut todo: Vec<Range<usize>> = if batch.parts.len() > 1 {
            self.apply_parts_once(batch).await
        } else {
            batch.parts.iter().map(|p| p.range.clone()).collect()
        };
        let mut refused = Vec::new();
        let mut failures = 0;
        while let Some(range) = todo.pop() {
            let events = &batch.events[range.clone()];
            // A whole part has its term set and encoding from the reader; a piece of a
            // split one is worked out here.
            let owned;
            let (term_ids, encoded) = match batch.parts.iter().find(|p| p.range == range) {
                Some(part) => (&part.term_ids, part.encoded.as_deref()),
                None => {
                    owned = term_ids_of(events);
                    (&owned, None)
                }
            };
            let locks = Locks::Take(term_ids);
            let result =
                apply_events(&self.pool, events, encoded, locks, self.config.backfill, &mut self.summary.stage_time)
                    .await;
            let Err(e) = result else {
                failures = 0;
                continue;
            };
            let failure = db::classify(&e);
            self.summary.count_retry(failure.reason());
            match failure {
                Failure::Data(_) if range.len() > 1 => {
                    warn!(error = %format!("{e:#}"), events = range.len(), "PostgreSQL refused the batch's data; splitting it to find the event at fault");
                    let mid = range.start + range.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
                Failure::Data(_) => {
                    let error = format!("PostgreSQL refused the event: {}", db_error_text(&e));
                    error!(%error, "dead-lettering the event");
                    refused.push((range.start, error));
                }
                Failure::Transient(reason) => {
                    failures += 1;
                    error!(error = %format!("{e:#}"), reason, attempt = failures, events = range.len(), "batch rolled back; retrying");
                    todo.push(range);
                    if !backoff(&mut self.stop, failures).await {
                        return None;
                    }
                }
            }
        }
        Some(refused)
    }

    /// One concurrent attempt at every part of `batch`; returns the ranges of the parts that
    /// did not commit (all of them if the batch's locks could not be taken).
    async fn apply_parts_once(&mut self, batch: &Batch) -> Vec<Range<usize>> {
        let outcome = apply_parts(&self.pool, batch, self.config.backfill, &mut self.summary.stage_time).await;
        let results = match outcome {
            Ok(results) => results,
            Err(e) => {
                self.summary.count_retry(db::classify(&e).reason());
                warn!(error = %format!("{e:#}"), "taking the batch's term locks failed; applying its parts one by one");
                return batch.parts.iter().map(|p| p.range.clone()).collect();
            }
        };
        self.summary.parallel_batches += 1;
        let mut failed = Vec::new();
        for (part, result) in batch.parts.iter().zip(results) {
            if let Err(e) = result {
                self.summary.count_retry(db::classify(&e).reason());
                warn!(error = %format!("{e:#}"), events = part.range.len(), "a part of the batch rolled back; retrying it on its own");
                failed.push(part.range.clone());
            }
        }
        failed
    }

    /// Dead letters, then acks, retried; `false` if shutdown came first.
    async fn finish_with_retry(&mut self, acks: &[(String, String)], dead_letters: &[DeadLetter]) -> bool {
        let mut failures = 0;
        while let Err(e) = self.control.finish(acks, dead_letters).await {
            failures += 1;
            warn!(error = %format!("{e:#}"), attempt = failures, "acking the committed batch failed; retrying");
            if !backoff(&mut self.stop, failures).await {
                return false;
            }
        }
        true
    }
}

/// The database's own message (and SQLSTATE) when there is one.
fn db_error_text(e: &anyhow::Error) -> String {
    e.chain()
        .find_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .and_then(|pg| pg.as_db_error())
        .map(|db| format!("{} (SQLSTATE {})", db.message(), db.code().code()))
        .unwrap_or_else(|| format!("{e:#}"))
}

/// Call `attempt` until it succeeds, with backoff; `None` once shutdown is requested.
async fn retry_until_stopped<T, F, Fut>(stop: &mut watch::Receiver<bool>, what: &str, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut failures = 0;
    loop {
        if *stop.borrow() {
            return None;
        }
        match attempt().await {
            Ok(v) => return Some(v),
            Err(e) => {
                failures += 1;
                warn!(error = %format!("{e:#}"), attempt = failures, "{what} failed; retrying");
                if !backoff(stop, failures).await {
                    return None;
                }
            }
        }
    }
}

/// Sleep before retry number `failures`; `false` if shutdown is requested before or during it.
pub(crate) async fn backoff(stop: &mut watch::Receiver<bool>, failures: u32) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => false,
        _ = tokio::time::sleep(backoff_delay(failures)) => true,
    }
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

async fn read_loop(
    mut reader: StreamReader,
    tx: mpsc::Sender<Work>,
    claim_idle: Duration,
    parts: usize,
    in_flight: InFlight,
) -> Result<()> {
    let claim_every = claim_idle.max(Duration::from_secs(1));
    let mut phase = Phase::OwnPending;
    let mut last_claim = Instant::now();
    let mut failures = 0u32;
    loop {
        if in_flight.take_given_back() {
            phase = Phase::OwnPending;
            reader.reread_own_pending();
        }
        let mut times = StageTimes::default();
        let read = timed(&mut times, "read", async {
            match phase {
                Phase::OwnPending => reader.read_own_pending().await,
                Phase::Claim => reader.claim_stale(claim_idle).await,
                Phase::New => reader.read_new().await,
            }
        })
        .await;
        let mut messages = match read {
            Ok(m) => {
                failures = 0;
                m
            }
            Err(e) => {
                failures += 1;
                warn!(error = %format!("{e:#}"), attempt = failures, "reading streams failed; retrying");
                if source::is_missing_group(&e) {
                    // Redis lost its data (restarted without persistence): recreate the
                    // groups from the start of the streams; redelivery is harmless.
                    if let Err(e) = reader.ensure_groups().await {
                        warn!(error = %format!("{e:#}"), "recreating the consumer groups failed");
                    }
                }
                // A read whose reply was lost with the connection left its entries delivered
                // to this consumer: read its own pending entries again (those in flight here
                // are recognised and skipped) instead of leaving them to a claim in
                // `claim_idle`.
                phase = Phase::OwnPending;
                reader.reread_own_pending();
                tokio::time::sleep(backoff_delay(failures)).await;
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
        if was != Phase::New {
            in_flight.retain_new(&mut messages);
        }
        let work = if !messages.is_empty() {
            let decode = tokio::task::spawn_blocking(move || Batch::from_messages_in_parts(messages, parts));
            let mut batch = timed(&mut times, "decode", async { Ok(decode.await?) }).await?;
            batch.times = times;
            in_flight.add(&batch.acks);
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

fn backoff_delay(failures: u32) -> Duration {
    Duration::from_millis((100u64 << failures.min(6)).min(5_000))
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
/// A part that commits stays committed whatever its siblings do: every merge
/// is idempotent, so when the batch is redelivered (nothing is acked before every part has
/// committed) the committed part's events are no-ops.
///
/// `Err` when the locks could not be taken (nothing was tried); otherwise each part's
/// outcome, in part order. Every stage's time (the parts' summed) goes into `times`.
async fn apply_parts(pool: &PgPool, batch: &Batch, backfill: bool, times: &mut StageTimes) -> Result<Vec<Result<()>>> {
    let mut holder = pool.get().await.context("no PostgreSQL connection available")?;
    let locks = holder.transaction().await?;
    let term_ids = batch.term_ids();
    timed(times, "lock", merge::lock_terms(&locks, &term_ids)).await?;
    let holder = if term_ids.is_empty() { None } else { Some(merge::backend_pid(&locks).await?) };
    if let (Some(pid), true) = (holder, outbox::fault_point("lose_lock_holder")) {
        let killer = pool.get().await.context("no PostgreSQL connection available")?;
        killer.execute(sql::TERMINATE_BACKEND, &[&pid]).await?;
    }
    let attempts = batch.parts.iter().map(|part| async move {
        let mut times = StageTimes::default();
        let events = &batch.events[part.range.clone()];
        let locks = Locks::HeldForIt { term_ids: &part.term_ids, holder };
        let result = apply_events(pool, events, part.encoded.as_deref(), locks, backfill, &mut times).await;
        if result.is_ok() {
            // One part committed, its siblings maybe not yet: the batch is not acked.
            outbox::crash_point("after_part_commit");
        }
        (times, result)
    });
    let results = futures_util::future::join_all(attempts).await;
    // Nothing was written under the holder: ending it only releases the locks (which a
    // lost connection has released already). The parts' outcomes stand either way.
    if let Err(e) = locks.rollback().await {
        warn!(error = %db::error_text(&e), "ending the batch's lock holder failed; its locks went with its connection");
    }
    Ok(results
        .into_iter()
        .map(|(part_times, result)| {
            times.merge(&part_times);
            result
        })
        .collect())
}

/// One transaction: lock → COPY → merge (triggers) → cascade → COMMIT.
async fn apply_events(
    pool: &PgPool,
    events: &[Event],
    encoded: Option<&[stage::EncodedTable]>,
    locks: Locks<'_>,
    backfill: bool,
    times: &mut StageTimes,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut conn = pool.get().await.context("no PostgreSQL connection available")?;
    let tx = conn.transaction().await?;
    if backfill {
        tx.batch_execute(sql::BACKFILL_TRANSACTION).await?;
    }
    let term_ids = match locks {
        Locks::Take(term_ids) => {
            timed(times, "lock", merge::lock_terms(&tx, term_ids)).await?;
            term_ids
        }
        Locks::HeldForIt { term_ids, .. } => term_ids,
    };
    let staged = match encoded {
        Some(tables) => timed(times, "copy", stage::copy_encoded(&tx, tables, stage::Target::Staging)).await?,
        None => timed(times, "copy", stage::stage_events(&tx, events)).await?,
    };
    outbox::crash_point("after_copy");
    timed(times, "merge", merge::merge_staged(&tx, &staged)).await?;
    outbox::crash_point("after_merge");
    let cascade_started = Instant::now();
    timed(times, "cascade", cascade::cascade_terms(&tx, term_ids)).await?;
    metrics::histogram!(m::CASCADE_SECONDS).record(cascade_started.elapsed().as_secs_f64());
    timed(times, "outbox", outbox::record(&tx, term_ids)).await?;
    if let Locks::HeldForIt { holder: Some(pid), .. } = locks {
        timed(times, "lock", merge::ensure_holder_locks(&tx, pid)).await?;
    }
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

fn record_batch(batch: &Batch, applied: usize, dead_letters: usize, latency_us: &mut Histogram<u64>) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    for (_, id) in &batch.acks {
        if let Some(added_ms) = id.split('-').next().and_then(|ms| ms.parse::<u64>().ok()) {
            let us = (now.as_micros() as u64).saturating_sub(added_ms * 1000);
            latency_us.saturating_record(us.max(1));
            metrics::histogram!(m::COMMIT_LATENCY).record(us as f64 / 1e6);
        }
    }
    LAST_COMMIT_UNIX.store(now.as_secs() as i64, Ordering::Relaxed);
    PROGRESS.events.fetch_add(applied as u64, Ordering::Relaxed);
    PROGRESS.messages.fetch_add(batch.acks.len() as u64, Ordering::Relaxed);
    PROGRESS.dead_letters.fetch_add(dead_letters as u64, Ordering::Relaxed);
    PROGRESS.batches.fetch_add(1, Ordering::Relaxed);
    metrics::gauge!(m::LAST_COMMIT).set(now.as_secs_f64());
    metrics::counter!(m::EVENTS_PROCESSED).increment(applied as u64);
    metrics::counter!(m::MESSAGES_READ).increment(batch.acks.len() as u64);
    metrics::counter!(m::EVENTS_FAILED).increment(dead_letters as u64);
    metrics::counter!(m::DEAD_LETTERS).increment(dead_letters as u64);
    metrics::histogram!(m::BATCH_EVENTS).record(applied as f64);
}
