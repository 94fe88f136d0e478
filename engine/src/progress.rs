//! Progress: how far behind the consumer groups are, for metrics, `/health`, the backfill
//! display and `doctor`.
//!
//! A background [`Monitor`] asks Redis (`XINFO GROUPS`, `XLEN`, `XPENDING`) and, for the
//! engine, PostgreSQL (the outbox) every few seconds. Group-wide numbers come from Redis
//! rather than from this process's counters because several engines may share a group:
//! what matters is how much the group as a whole has left, not what one process did.
//! The [`Display`] combines the last observation with this process's own counters
//! ([`crate::pipeline::PROGRESS`]) so the bar moves smoothly between observations.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{HumanCount, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamInfoGroupsReply, StreamPendingReply};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::analytics::WorkerConfig;
use crate::config::EngineConfig;
use crate::metrics::{self as m, HealthCheck};
use crate::pipeline::{LAST_COMMIT_UNIX, PROGRESS};

/// How the engine shows backfill progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// With `--backfill`: a bar when stdout is a terminal, log lines otherwise. Without: none.
    Auto,
    /// A live bar on stdout (drawn only when stdout is a terminal).
    Bar,
    /// A plain log line every `--progress-interval-secs`.
    Log,
    /// No progress display (metrics and /health still report lag).
    Off,
}

/// Progress and monitoring settings of `redis-postgres-sync`.
#[derive(Args, Clone, Debug)]
pub struct ProgressArgs {
    /// Progress display: auto, bar, log or off.
    #[arg(long, env = "PROGRESS", value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// Seconds between plain progress log lines (when stdout is not a terminal).
    #[arg(long, env = "PROGRESS_INTERVAL_SECS", default_value_t = 10)]
    pub progress_interval_secs: u64,

    /// Seconds between stream lag / pending / outbox observations (metrics, /health, progress).
    #[arg(long, env = "MONITOR_INTERVAL_SECS", default_value_t = DEFAULT_MONITOR_INTERVAL.as_secs())]
    pub monitor_interval_secs: u64,
}

impl ProgressArgs {
    pub fn monitor_interval(&self) -> Duration {
        Duration::from_secs(self.monitor_interval_secs.max(1))
    }

    pub fn log_interval(&self) -> Duration {
        Duration::from_secs(self.progress_interval_secs.max(1))
    }
}

pub const DEFAULT_MONITOR_INTERVAL: Duration = Duration::from_secs(5);

/// One consumer group on one stream, as Redis sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupStatus {
    pub stream: String,
    pub group: String,
    /// Entries in the stream (XLEN); 0 when the stream does not exist.
    pub length: u64,
    pub stream_exists: bool,
    pub group_exists: bool,
    /// Entries not yet delivered to the group. `None` when Redis cannot tell (entries were
    /// deleted inside the unread range) or the server predates Redis 7.
    pub lag: Option<u64>,
    /// Entries delivered and not acked (the group's PEL, as XPENDING counts it).
    pub pending: u64,
    pub consumers: u64,
    pub last_delivered_id: String,
    /// Age of the oldest pending entry, from its id's timestamp.
    pub oldest_pending_age: Option<Duration>,
}

/// Ask Redis for `group` on `stream`. A missing stream or group is reported, not an error.
pub async fn group_status(con: &mut MultiplexedConnection, stream: &str, group: &str) -> Result<GroupStatus> {
    let mut status = GroupStatus { stream: stream.to_owned(), group: group.to_owned(), ..Default::default() };
    let (exists, length): (bool, u64) =
        redis::pipe().exists(stream).xlen(stream).query_async(con).await.with_context(|| format!("XLEN {stream}"))?;
    status.stream_exists = exists;
    status.length = length;
    if !exists {
        return Ok(status);
    }
    let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(con)
        .await
        .with_context(|| format!("XINFO GROUPS {stream}"))?;
    let Some(g) = groups.groups.into_iter().find(|g| g.name == group) else {
        return Ok(status);
    };
    status.group_exists = true;
    status.pending = g.pending as u64;
    status.consumers = g.consumers as u64;
    // Redis 7 leaves `lag` empty when it cannot compute it; a group that has been handed
    // nothing yet has the whole stream ahead of it either way.
    status.lag = g.lag.map(|l| l as u64).or((g.last_delivered_id == "0-0").then_some(length));
    status.last_delivered_id = g.last_delivered_id;
    if status.pending > 0 {
        let reply: StreamPendingReply =
            redis::cmd("XPENDING").arg(stream).arg(group).query_async(con).await.context("XPENDING")?;
        if let StreamPendingReply::Data(data) = reply {
            status.oldest_pending_age = id_age(&data.start_id);
        }
    }
    Ok(status)
}

/// How long ago a stream entry id (`<ms>-<seq>`) was generated.
pub fn id_age(id: &str) -> Option<Duration> {
    let ms: u64 = id.split('-').next()?.parse().ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(Duration::from_millis(now.saturating_sub(ms)))
}

/// Term ids committed but not yet published to `term_updates`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OutboxStatus {
    pub rows: i64,
    pub oldest_age_seconds: Option<f64>,
}

/// The outbox is emptied after every batch, so counting it is cheap unless publishing is
/// stuck, which is exactly when the number matters.
pub async fn outbox_status(client: &tokio_postgres::Client) -> Result<OutboxStatus> {
    let row = client
        .query_one(
            "SELECT count(*), extract(epoch FROM clock_timestamp() - min(committed_at))::float8 FROM term_update_outbox",
            &[],
        )
        .await
        .context("reading term_update_outbox")?;
    Ok(OutboxStatus { rows: row.get(0), oldest_age_seconds: row.get(1) })
}

/// One round of observations.
#[derive(Clone, Debug)]
pub struct Observation {
    pub groups: Vec<GroupStatus>,
    pub outbox: Option<OutboxStatus>,
    pub at: SystemTime,
    /// This process's [`PROGRESS`] message count when the observation was taken, so displays
    /// can subtract what was processed since.
    pub messages_at: u64,
}

impl Observation {
    /// Σ lag over the groups; unknown lags count as 0 (see [`Observation::lag_known`]).
    pub fn lag(&self) -> u64 {
        self.groups.iter().filter_map(|g| g.lag).sum()
    }

    pub fn lag_known(&self) -> bool {
        self.groups.iter().all(|g| g.lag.is_some())
    }

    pub fn pending(&self) -> u64 {
        self.groups.iter().map(|g| g.pending).sum()
    }

    pub fn length(&self) -> u64 {
        self.groups.iter().map(|g| g.length).sum()
    }
}

/// Gauge names for one binary.
#[derive(Clone, Copy, Debug)]
struct Gauges {
    lag: &'static str,
    pending: &'static str,
    length: &'static str,
}

const ENGINE_GAUGES: Gauges = Gauges { lag: m::STREAM_LAG, pending: m::STREAM_PENDING, length: m::STREAM_LENGTH };
const WORKER_GAUGES: Gauges =
    Gauges { lag: m::WORKER_STREAM_LAG, pending: m::WORKER_STREAM_PENDING, length: m::WORKER_STREAM_LENGTH };

/// The latest observation, shared between the monitor task, `/health` and the display.
#[derive(Clone, Default)]
pub struct Monitor {
    latest: Arc<Mutex<Option<Observation>>>,
}

impl Monitor {
    pub fn new() -> Monitor {
        Monitor::default()
    }

    pub fn latest(&self) -> Option<Observation> {
        self.latest.lock().ok().and_then(|l| l.clone())
    }

    /// Watch the engine's group on every configured stream, and the outbox. Call after the
    /// metrics recorder is installed: it also registers counters that only move on trouble
    /// (retries, dead letters) so dashboards and alerts see 0 instead of no series.
    pub fn start_engine(&self, config: &EngineConfig, interval: Duration) -> JoinHandle<()> {
        for name in [m::EVENTS_PROCESSED, m::EVENTS_FAILED, m::DEAD_LETTERS, m::BATCH_RETRIES, m::OUTBOX_PUBLISHED] {
            metrics::counter!(name).increment(0);
        }
        let targets = config.streams.iter().map(|s| (s.clone(), config.group.clone())).collect();
        self.start(config.redis_url.clone(), Some(config.database_url.clone()), targets, ENGINE_GAUGES, interval)
    }

    /// Watch the worker's group on `term_updates`.
    pub fn start_worker(&self, config: &WorkerConfig, interval: Duration) -> JoinHandle<()> {
        for name in [m::WORKER_PROCESSED, m::DEAD_LETTERS] {
            metrics::counter!(name).increment(0);
        }
        let targets = vec![(config.stream.clone(), config.group.clone())];
        self.start(config.redis_url.clone(), None, targets, WORKER_GAUGES, interval)
    }

    fn start(
        &self,
        redis_url: String,
        database_url: Option<String>,
        targets: Vec<(String, String)>,
        gauges: Gauges,
        interval: Duration,
    ) -> JoinHandle<()> {
        let latest = self.latest.clone();
        tokio::spawn(async move {
            let mut redis: Option<MultiplexedConnection> = None;
            let mut postgres: Option<tokio_postgres::Client> = None;
            let mut failing = false;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                // A hung server must not stall the loop: each round has a deadline.
                let round = observe(&redis_url, database_url.as_deref(), &targets, &mut redis, &mut postgres);
                match tokio::time::timeout(interval.max(Duration::from_secs(5)), round).await {
                    Ok(Ok(observation)) => {
                        for g in &observation.groups {
                            let stream = g.stream.clone();
                            if let Some(lag) = g.lag {
                                metrics::gauge!(gauges.lag, "stream" => stream.clone()).set(lag as f64);
                            }
                            metrics::gauge!(gauges.pending, "stream" => stream.clone()).set(g.pending as f64);
                            metrics::gauge!(gauges.length, "stream" => stream).set(g.length as f64);
                        }
                        if let Some(outbox) = observation.outbox {
                            metrics::gauge!(m::OUTBOX_BACKLOG).set(outbox.rows as f64);
                            metrics::gauge!(m::OUTBOX_OLDEST_AGE).set(outbox.oldest_age_seconds.unwrap_or(0.0));
                        }
                        if let Ok(mut l) = latest.lock() {
                            *l = Some(observation);
                        }
                        if failing {
                            info!("stream monitor recovered");
                            failing = false;
                        }
                    }
                    outcome => {
                        // Reconnect next round; say so once per outage, not every round.
                        redis = None;
                        postgres = None;
                        if !failing {
                            let why = match outcome {
                                Ok(Err(e)) => format!("{e:#}"),
                                _ => "timed out".into(),
                            };
                            warn!(error = %why, "stream monitor cannot observe lag; retrying");
                            failing = true;
                        }
                    }
                }
            }
        })
    }
}

async fn observe(
    redis_url: &str,
    database_url: Option<&str>,
    targets: &[(String, String)],
    redis: &mut Option<MultiplexedConnection>,
    postgres: &mut Option<tokio_postgres::Client>,
) -> Result<Observation> {
    let messages_at = PROGRESS.messages.load(Ordering::Relaxed);
    if redis.is_none() {
        *redis = Some(crate::source::connect(redis_url).await?);
    }
    let con = redis.as_mut().expect("connected above");
    let mut groups = Vec::with_capacity(targets.len());
    for (stream, group) in targets {
        groups.push(group_status(con, stream, group).await?);
    }
    // The outbox is secondary: before the engine has created the database and applied its
    // migrations there is none, and a PostgreSQL outage shows in /health already.
    let outbox = match database_url {
        None => None,
        Some(url) => {
            if postgres.as_ref().is_none_or(|c| c.is_closed()) {
                *postgres = crate::db::connect_one(url).await.ok();
            }
            match postgres.as_ref() {
                Some(client) => outbox_status(client).await.ok(),
                None => None,
            }
        }
    };
    Ok(Observation { groups, outbox, at: SystemTime::now(), messages_at })
}

/// `/health`: the dependency check of [`m::dependency_health`], plus the group's lag and
/// pending totals from the last observation and the age of the last commit.
pub fn health(database_url: String, redis_url: String, monitor: Monitor) -> HealthCheck {
    let dependencies = m::dependency_health(database_url, redis_url);
    Arc::new(move || {
        let (dependencies, monitor) = (dependencies.clone(), monitor.clone());
        Box::pin(async move {
            let (ok, mut body) = dependencies().await;
            let observation = monitor.latest();
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
            let last_commit = LAST_COMMIT_UNIX.load(Ordering::Relaxed);
            if let Some(fields) = body.as_object_mut() {
                fields.insert("lag".into(), serde_json::json!(observation.as_ref().map(Observation::lag)));
                fields.insert("pending".into(), serde_json::json!(observation.as_ref().map(Observation::pending)));
                fields.insert(
                    "lag_observed_unix".into(),
                    serde_json::json!(observation
                        .as_ref()
                        .and_then(|o| o.at.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_secs())),
                );
                fields.insert(
                    "last_commit_age_seconds".into(),
                    serde_json::json!((last_commit > 0).then(|| (now - last_commit).max(0))),
                );
                if let Some(outbox) = observation.as_ref().and_then(|o| o.outbox) {
                    fields.insert("outbox_rows".into(), serde_json::json!(outbox.rows));
                }
            }
            (ok, body)
        })
    })
}

// Log lines must not tear the bar: while one is drawn, writes go through `suspend`.
static BAR: RwLock<Option<ProgressBar>> = RwLock::new(None);

/// A `tracing_subscriber` writer (`.with_writer(rps::progress::log_writer)`) that prints
/// to stdout and keeps the progress bar intact.
pub fn log_writer() -> LogWriter {
    LogWriter
}

pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.read().ok().and_then(|b| b.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stdout().lock().write_all(buf))?,
            None => std::io::stdout().lock().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// Where a backfill stands, from the last observation and this process's counters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Messages in the streams (the group started at their beginning).
    pub total: u64,
    pub done: u64,
    /// Not yet delivered plus delivered and not acked, group-wide.
    pub remaining: u64,
    pub lag: u64,
    pub pending: u64,
    pub events_per_second: f64,
    pub messages_per_second: f64,
    pub eta: Option<Duration>,
}

/// Throughput over a sliding window of this process's counters.
struct Rates {
    samples: VecDeque<(Instant, u64, u64)>,
    window: Duration,
}

impl Rates {
    fn new(window: Duration) -> Rates {
        Rates { samples: VecDeque::new(), window }
    }

    /// Record the counters now; returns (events/s, messages/s) over the window.
    fn sample(&mut self) -> (f64, f64) {
        let now = Instant::now();
        let events = PROGRESS.events.load(Ordering::Relaxed);
        let messages = PROGRESS.messages.load(Ordering::Relaxed);
        self.samples.push_back((now, events, messages));
        while self.samples.len() > 2 && now.duration_since(self.samples[0].0) > self.window {
            self.samples.pop_front();
        }
        let (t0, e0, m0) = self.samples[0];
        let secs = now.duration_since(t0).as_secs_f64();
        if secs < 0.5 {
            return (0.0, 0.0);
        }
        ((events - e0) as f64 / secs, (messages - m0) as f64 / secs)
    }
}

/// Combine an observation with what this process has done since it was taken.
pub fn estimate(
    observation: &Observation,
    messages_now: u64,
    events_per_second: f64,
    messages_per_second: f64,
) -> Estimate {
    let since = messages_now.saturating_sub(observation.messages_at);
    let remaining = (observation.lag() + observation.pending()).saturating_sub(since);
    let total = observation.length().max(remaining);
    let eta = (messages_per_second > 0.0).then(|| Duration::from_secs_f64(remaining as f64 / messages_per_second));
    Estimate {
        total,
        done: total - remaining,
        remaining,
        lag: observation.lag(),
        pending: observation.pending(),
        events_per_second,
        messages_per_second,
        eta,
    }
}

/// The backfill progress display, drawn until [`Display::finish`].
pub struct Display {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Display {
    /// Start the display `mode` asks for (see [`ProgressMode::Auto`]); `None` when off.
    pub fn start(mode: ProgressMode, backfill: bool, monitor: Monitor, log_every: Duration) -> Option<Display> {
        let terminal = std::io::stdout().is_terminal();
        let mode = match mode {
            ProgressMode::Auto if !backfill => return None,
            ProgressMode::Auto if terminal => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Log,
            ProgressMode::Off => return None,
            other => other,
        };
        let (stop, stopped) = watch::channel(false);
        let task = match mode {
            ProgressMode::Bar => tokio::spawn(draw_bar(monitor, stopped)),
            _ => tokio::spawn(log_lines(monitor, stopped, log_every)),
        };
        Some(Display { stop, task })
    }

    /// Stop drawing and clear the bar, so the final summary line prints cleanly.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn draw_bar(monitor: Monitor, mut stopped: watch::Receiver<bool>) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner:.green} {elapsed_precise} [{bar:24.cyan/blue}] {percent:>3}% {wide_msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    if let Ok(mut b) = BAR.write() {
        *b = Some(bar.clone());
    }
    let mut rates = Rates::new(Duration::from_secs(10));
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => break,
        }
        let (events_per_second, messages_per_second) = rates.sample();
        let messages_now = PROGRESS.messages.load(Ordering::Relaxed);
        match monitor.latest() {
            Some(o) => {
                let e = estimate(&o, messages_now, events_per_second, messages_per_second);
                bar.set_length(e.total.max(1));
                bar.set_position(e.done);
                bar.set_message(format!(
                    "{}/{} msgs | {} events/s | lag {} | pending {} | ETA {}",
                    HumanCount(e.done),
                    HumanCount(e.total),
                    HumanCount(events_per_second as u64),
                    HumanCount(e.lag),
                    HumanCount(e.pending),
                    e.eta.map(|d| HumanDuration(d).to_string()).unwrap_or_else(|| "-".into())
                ));
            }
            None => bar.set_message(format!(
                "{} events | {}/s | waiting for the first lag observation",
                HumanCount(PROGRESS.events.load(Ordering::Relaxed)),
                HumanCount(events_per_second as u64)
            )),
        }
        bar.tick();
    }
    if let Ok(mut b) = BAR.write() {
        *b = None;
    }
    bar.finish_and_clear();
}

async fn log_lines(monitor: Monitor, mut stopped: watch::Receiver<bool>, every: Duration) {
    let mut rates = Rates::new(every.max(Duration::from_secs(10)));
    rates.sample();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => return,
        }
        let (events_per_second, messages_per_second) = rates.sample();
        let Some(o) = monitor.latest() else { continue };
        let e = estimate(&o, PROGRESS.messages.load(Ordering::Relaxed), events_per_second, messages_per_second);
        let percent = if e.total == 0 { 100.0 } else { 100.0 * e.done as f64 / e.total as f64 };
        info!(
            messages = format!("{}/{}", e.done, e.total),
            percent = format!("{percent:.1}"),
            events = PROGRESS.events.load(Ordering::Relaxed),
            rate = format!("{events_per_second:.0} events/s"),
            lag = e.lag,
            pending = e.pending,
            eta = e.eta.map(|d| HumanDuration(d).to_string()).unwrap_or_else(|| "-".into()),
            "backfill progress"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(lag: u64, pending: u64, length: u64, messages_at: u64) -> Observation {
        let g = GroupStatus { lag: Some(lag), pending, length, ..Default::default() };
        Observation { groups: vec![g], outbox: None, at: SystemTime::now(), messages_at }
    }

    #[test]
    fn estimate_subtracts_work_done_since_the_observation() {
        let o = observation(900, 100, 2000, 50);
        let e = estimate(&o, 250, 5000.0, 100.0);
        assert_eq!(e.remaining, 800);
        assert_eq!((e.done, e.total), (1200, 2000));
        assert_eq!(e.eta, Some(Duration::from_secs(8)));
    }

    #[test]
    fn estimate_never_goes_negative_or_past_the_total() {
        let o = observation(10, 0, 5, 0);
        let e = estimate(&o, 100, 0.0, 0.0);
        assert_eq!((e.remaining, e.done, e.total), (0, 5, 5));
        assert_eq!(e.eta, None);
        let e = estimate(&o, 0, 0.0, 0.0);
        assert_eq!((e.remaining, e.done, e.total), (10, 0, 10));
    }

    #[test]
    fn id_age_reads_the_millisecond_part() {
        assert!(id_age("0-1").unwrap() > Duration::from_secs(1_000_000));
        assert_eq!(id_age("garbage"), None);
    }
}
