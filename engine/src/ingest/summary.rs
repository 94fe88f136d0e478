//! What an engine run did, reported at exit.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::runtime::telemetry;
use crate::runtime::StageTimes;

#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Batches acked.
    pub batches: u64,
    /// Entries acked, dead-lettered ones included.
    pub messages: u64,
    /// Events applied (redeliveries included).
    pub events: u64,
    pub dead_letters: u64,
    /// Failed attempts that were retried (or split, for data errors), by reason: the labels
    /// of `redis_postgres_sync_batch_retries_total`.
    pub retry_reasons: BTreeMap<&'static str, u64>,
    /// Sum of `retry_reasons`.
    pub retries: u64,
    /// Batches applied as several concurrent parts (see [`super::batch::Part`]).
    pub parallel_batches: u64,
    pub elapsed: Duration,
    /// Per entry, from XADD (the entry id's millisecond timestamp, so up to 1 ms
    /// pessimistic) to the commit of its batch, in microseconds.
    pub commit_latency_us: Histogram<u64>,
    /// Wall time in each pipeline stage, summed over batches; the parts of a batch run
    /// concurrently and their times add up, and read and decode overlap the database stages.
    pub stage_time: StageTimes,
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
        metrics::counter!(telemetry::BATCH_RETRIES, "reason" => reason).increment(1);
    }
}
