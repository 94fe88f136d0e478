//! The worker's settings. Shared settings use the engine's variable names (`DATABASE_URL`,
//! `REDIS_URL`, `TERM_UPDATES_STREAM`) so one environment configures both; the worker's own
//! settings are prefixed `ANALYTICS_` so they never pick up the engine's group, batch size or
//! metrics address.

use std::time::Duration;

use clap::Args;

use crate::pg::DEFAULT_DATABASE_URL;
use crate::runtime::exit::Fatal;
use crate::runtime::redact::redact;
use crate::stream::reader::ReadBudget;
use crate::stream::{ReaderConfig, DEAD_LETTER_MAXLEN, DEFAULT_REDIS_URL, DEFAULT_TERM_UPDATES_STREAM, WORKER_GROUP};

/// The worker's default `--refresh-duty`: while caught up, it pauses three times as long as
/// its last refresh took. Refreshing after every engine batch took about a fifth more of
/// PostgreSQL's CPU at 5,000 events/s on two cores the engine needed, and a fixed pause made
/// the analytics lag of a quiet stream ten times longer (bench-results/stop24-live); a pause
/// in proportion to the refresh is long when the server is busy and short when it is not.
pub const DEFAULT_REFRESH_DUTY: f64 = 0.25;
/// The worker's default `--max-pause-ms`.
pub const DEFAULT_MAX_PAUSE_MS: u64 = 500;

/// Settings of `analytics-worker`.
#[derive(Args, Clone, Debug)]
pub struct WorkerConfig {
    /// PostgreSQL connection URL (the engine's database).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Redis connection URL.
    #[arg(long, env = "REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    pub redis_url: String,

    /// Stream the engine publishes affected term ids to.
    #[arg(long, env = "TERM_UPDATES_STREAM", default_value = DEFAULT_TERM_UPDATES_STREAM)]
    pub stream: String,

    /// Consumer group shared by every worker.
    #[arg(long, env = "ANALYTICS_GROUP", default_value = WORKER_GROUP)]
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

    /// Share of its time a caught-up worker spends refreshing: after a refresh that took t it
    /// pauses t × (1 / duty − 1) (at most --max-pause-ms), and the entries that arrive
    /// meanwhile are refreshed together, in fewer and larger transactions, leaving
    /// PostgreSQL's CPU to the engines. A worker that is behind (its read filled
    /// --batch-size) never pauses. 1 turns pausing off.
    #[arg(long, env = "ANALYTICS_REFRESH_DUTY", default_value_t = DEFAULT_REFRESH_DUTY)]
    pub refresh_duty: f64,

    /// Longest pause between two refreshes of a caught-up worker, in milliseconds: the most
    /// --refresh-duty adds to the analytics lag.
    #[arg(long, env = "ANALYTICS_MAX_PAUSE_MS", default_value_t = DEFAULT_MAX_PAUSE_MS)]
    pub max_pause_ms: u64,

    /// Exit 0 once the stream is drained and nothing is pending for the group.
    #[arg(long, env = "ANALYTICS_EXIT_WHEN_IDLE")]
    pub exit_when_idle: bool,

    /// Entries pending longer than this on another consumer are claimed (XAUTOCLAIM).
    #[arg(long, env = "ANALYTICS_CLAIM_IDLE_MS", default_value_t = 60_000)]
    pub claim_idle_ms: u64,

    /// Dead letters kept in `<stream>:dlq`; older ones are trimmed.
    #[arg(long, env = "ANALYTICS_DEAD_LETTER_MAXLEN", default_value_t = DEAD_LETTER_MAXLEN)]
    pub dead_letter_maxlen: usize,

    /// After each batch, delete the term_updates entries the group has finished with (turn
    /// it off if anything else reads the stream).
    #[arg(long, env = "ANALYTICS_TRIM_TERM_UPDATES", default_value_t = true, action = clap::ArgAction::Set)]
    pub trim_term_updates: bool,

    /// Where /metrics and /health are served, host:port (the engine uses 3030).
    #[arg(long, env = "ANALYTICS_METRICS_ADDR", default_value = "127.0.0.1:3031")]
    pub metrics_addr: String,
}

impl WorkerConfig {
    /// A worker for local services, as tests use it: drain as fast as it can (no pauses)
    /// and exit.
    pub fn local(database_url: &str, stream: &str) -> WorkerConfig {
        WorkerConfig {
            database_url: database_url.to_owned(),
            redis_url: DEFAULT_REDIS_URL.into(),
            stream: stream.to_owned(),
            group: WORKER_GROUP.into(),
            consumer: None,
            batch_size: 20,
            block_ms: 100,
            refresh_duty: 1.0,
            max_pause_ms: DEFAULT_MAX_PAUSE_MS,
            exit_when_idle: true,
            claim_idle_ms: 60_000,
            dead_letter_maxlen: DEAD_LETTER_MAXLEN,
            trim_term_updates: true,
            metrics_addr: "127.0.0.1:3031".into(),
        }
    }

    pub fn consumer_name(&self) -> String {
        self.consumer.clone().unwrap_or_else(crate::stream::default_consumer_name)
    }

    /// How long a caught-up worker pauses after a refresh that took `refresh`. Capped in
    /// floating point first: a duty near 0 makes the uncapped pause too long for a
    /// `Duration` (`mul_f64` would panic).
    pub fn pause_after(&self, refresh: Duration) -> Duration {
        let cap = Duration::from_millis(self.max_pause_ms);
        let pause = refresh.as_secs_f64() * (1.0 / self.refresh_duty - 1.0);
        Duration::from_secs_f64(pause.min(cap.as_secs_f64()))
    }

    /// How the worker reads `term_updates`.
    pub fn reader(&self) -> ReaderConfig {
        ReaderConfig {
            streams: vec![self.stream.clone()],
            group: self.group.clone(),
            consumer: self.consumer_name(),
            count: self.batch_size,
            block: Duration::from_millis(self.block_ms),
            claim_idle: Duration::from_millis(self.claim_idle_ms),
            // The engines publish to it; the worker may well start first.
            create_streams: true,
            // Entries hold up to 1,000 term ids (about 67 KB).
            budget: ReadBudget::DEFAULT,
        }
    }

    /// Settings that cannot work, refused before anything connects.
    pub fn validate(&self) -> Result<(), Fatal> {
        let config = |msg: String| Err(Fatal::Config(msg));
        for (flag, value) in [("--stream", &self.stream), ("--group", &self.group)] {
            if value.trim().is_empty() {
                return config(format!("{flag} is empty"));
            }
        }
        if !(self.refresh_duty > 0.0 && self.refresh_duty <= 1.0) {
            return config(format!("--refresh-duty {} is not in (0, 1]", self.refresh_duty));
        }
        if self.batch_size == 0 {
            return config("--batch-size must be at least 1".into());
        }
        if self.block_ms == 0 {
            return config("--block-ms 0 would block for ever on an idle stream; give at least 1".into());
        }
        crate::pg::pool::parse(&self.database_url).map_err(|e| Fatal::Config(e.to_string()))?;
        crate::stream::connect::client(&self.redis_url)
            .map_err(|e| Fatal::Config(format!("invalid Redis URL {}: {e}", redact(&self.redis_url))))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_follows_the_refresh_time_up_to_its_cap() {
        let mut c = WorkerConfig::local("postgres://localhost/x", "s");
        let ms = Duration::from_millis;
        assert_eq!(c.pause_after(ms(40)), ms(0), "local(): no pauses");
        c.refresh_duty = DEFAULT_REFRESH_DUTY;
        assert_eq!(c.pause_after(ms(40)), ms(120), "a quarter of the time refreshing");
        assert_eq!(c.pause_after(ms(900)), ms(DEFAULT_MAX_PAUSE_MS));
        c.refresh_duty = 1e-300;
        assert_eq!(c.pause_after(ms(900)), ms(DEFAULT_MAX_PAUSE_MS), "no overflow");
        c.refresh_duty = 0.0;
        assert!(c.validate().is_err());
        c.refresh_duty = 1.5;
        assert!(c.validate().is_err());
    }
}
