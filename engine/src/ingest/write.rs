//! The writer: applies each batch the reader hands over, then acks it (in backfill mode
//! once its commit is durable, see [`super::durable`]) and wakes the outbox publisher.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use super::apply::apply_batch;
use super::batch::Batch;
use super::config::EngineConfig;
use super::durable::{Committed, DurableAcks, Released};
use super::outbox::Publisher;
use super::reorg;
use super::summary::RunSummary;
use crate::pg::PgPool;
use crate::runtime::faults::crash_point;
use crate::runtime::retry::until_stopped;
use crate::runtime::telemetry::{self, LAST_COMMIT_UNIX, PROGRESS};
use crate::runtime::Stop;
use crate::stream::{InFlight, StreamControl};

pub struct Writer<'a> {
    pub config: &'a EngineConfig,
    pub pool: PgPool,
    pub control: StreamControl,
    pub publisher: Publisher,
    /// Prunes reorg bases after live batches, one prune at a time.
    pub pruner: reorg::Pruner,
    /// The reader's in-flight entries: acked ones are done, unvouched ones given back.
    pub in_flight: InFlight,
    /// Backfill mode: the acks of committed batches, held until their commits are durable.
    pub durable: Option<DurableAcks>,
    pub stop: Stop,
    pub summary: &'a mut RunSummary,
}

impl Writer<'_> {
    /// Apply one batch and ack it (in backfill mode once its commit is durable, which may be
    /// after later batches have committed); `false` if a stop cut it short.
    pub async fn process(&mut self, mut batch: Batch) -> bool {
        self.summary.stage_time.merge(&batch.times);
        // Taken before the batch's first transaction: the witness must see its commit.
        let witness = match self.durable.is_some() {
            true => match self.witness().await {
                Some(w) => Some(w),
                None => return false,
            },
            false => None,
        };
        let applied = apply_batch(&self.pool, &batch, self.config.backfill, &mut self.stop, self.summary).await;
        let Some(refused) = applied else {
            info!(messages = batch.acks.len(), "shutdown while the batch was retrying: left uncommitted and pending");
            return false;
        };
        let mut dead_letters = std::mem::take(&mut batch.dead_letters);
        dead_letters.extend(refused.iter().map(|(i, error)| batch.event_dead_letter(*i, error.clone())));
        let events = batch.events.len() - refused.len();
        record_commit(&batch, events, dead_letters.len(), self.summary);
        if self.config.session_reorg_window() > 0 {
            self.pruner.after(&batch);
        }
        crash_point("after_commit");
        let committed = Committed { acks: std::mem::take(&mut batch.acks), dead_letters, events: events as u64 };
        // Freeing a large batch (a million small allocations) takes a core for ~0.1 s: done
        // off the writer's path, which would otherwise start the next batch that late.
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

    /// Take a WAL flush barrier and ack every held batch (backfill mode); `false` if a stop
    /// came first.
    pub async fn flush_held(&mut self) -> bool {
        let Some(durable) = self.durable.as_mut().filter(|d| !d.is_empty()) else {
            return true;
        };
        let started = Instant::now();
        let released = durable.barrier().await;
        self.summary.stage_time.add("flush", started.elapsed());
        self.settle(released).await
    }

    /// Whether nothing is pending for the group on any stream (every engine's work acked).
    pub async fn nothing_pending(&mut self) -> bool {
        self.control.pending(&self.config.streams).await.is_ok_and(|n| n == 0)
    }

    /// On the way out (shutdown too): one barrier and one ack attempt for what is held (what
    /// fails stays pending), then the outbox's last publication.
    pub async fn finish(mut self) {
        self.flush_held().await;
        self.publisher.finish().await;
    }

    /// The durability witness for the next batch, waiting out an outage; `None` once a stop
    /// is requested.
    async fn witness(&mut self) -> Option<u64> {
        let Writer { durable, stop, .. } = self;
        let durable = durable.as_mut()?;
        until_stopped!(stop, "connecting the durability witness", durable.witness().await)
    }

    /// Ack the durable batches, in commit order, and wake the publisher; give the unknown
    /// ones back to be read again. `false` if a stop came first.
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
            let Writer { control, stop, .. } = self;
            let acked = until_stopped!(stop, "acking the committed batch", {
                control.finish(&batch.acks, &batch.dead_letters).await
            });
            if acked.is_none() {
                info!(
                    messages = batch.acks.len(),
                    "shutdown while acking a committed batch: it will be redelivered (a no-op)"
                );
                return false;
            }
            crash_point("after_ack");
            self.in_flight.done(&batch.acks);
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
}

/// A batch committed: its latency, the process's counters and the metrics.
fn record_commit(batch: &Batch, events: usize, dead_letters: usize, summary: &mut RunSummary) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    for (_, id) in &batch.acks {
        if let Some(added_ms) = id.split('-').next().and_then(|ms| ms.parse::<u64>().ok()) {
            let us = (now.as_micros() as u64).saturating_sub(added_ms * 1000);
            summary.commit_latency_us.saturating_record(us.max(1));
            metrics::histogram!(telemetry::COMMIT_LATENCY).record(us as f64 / 1e6);
        }
    }
    LAST_COMMIT_UNIX.store(now.as_secs() as i64, Ordering::Relaxed);
    PROGRESS.events.fetch_add(events as u64, Ordering::Relaxed);
    PROGRESS.messages.fetch_add(batch.acks.len() as u64, Ordering::Relaxed);
    PROGRESS.dead_letters.fetch_add(dead_letters as u64, Ordering::Relaxed);
    PROGRESS.batches.fetch_add(1, Ordering::Relaxed);
    metrics::gauge!(telemetry::LAST_COMMIT).set(now.as_secs_f64());
    metrics::counter!(telemetry::EVENTS_PROCESSED).increment(events as u64);
    metrics::counter!(telemetry::MESSAGES_READ).increment(batch.acks.len() as u64);
    metrics::counter!(telemetry::EVENTS_FAILED).increment(dead_letters as u64);
    metrics::counter!(telemetry::DEAD_LETTERS).increment(dead_letters as u64);
    metrics::histogram!(telemetry::BATCH_EVENTS).record(events as f64);
}
