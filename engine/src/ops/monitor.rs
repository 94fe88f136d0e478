//! The monitor: how far behind the consumer groups are, observed every few seconds, for the
//! metrics, `/health`, the backfill display and `doctor`.
//!
//! It asks Redis (`XINFO GROUPS`, `XLEN`, `XPENDING`) and, for the engine, PostgreSQL (the
//! outbox, and how retractions found their reorg bases). Group-wide numbers come from Redis
//! and PostgreSQL rather than from this process's counters because several engines may share
//! a group: what matters is how much the group as a whole has left, not what one process did.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use redis::aio::MultiplexedConnection;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::analytics::WorkerConfig;
use crate::ingest::EngineConfig;
use crate::pg::{self, sql};
use crate::runtime::telemetry::{self as m, PROGRESS};
use crate::stream;
use crate::stream::status::{group_status, GroupStatus};

pub const DEFAULT_MONITOR_INTERVAL: Duration = Duration::from_secs(5);

/// Term ids committed but not yet published to `term_updates`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OutboxStatus {
    pub rows: i64,
    pub oldest_age_seconds: Option<f64>,
}

pub async fn outbox_status(client: &tokio_postgres::Client) -> Result<OutboxStatus, tokio_postgres::Error> {
    let row = client.query_one(sql::OUTBOX_STATUS, &[]).await?;
    Ok(OutboxStatus { rows: row.get(0), oldest_age_seconds: row.get(1) })
}

/// How the database's retractions have gone: keys searched without a reorg base, bases kept.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReorgStatus {
    pub unbased_searches: i64,
    pub bases: i64,
}

pub async fn reorg_status(client: &tokio_postgres::Client) -> Result<ReorgStatus, tokio_postgres::Error> {
    let row = client.query_one(sql::REORG_STATUS, &[]).await?;
    Ok(ReorgStatus { unbased_searches: row.get(0), bases: row.get(1) })
}

/// One round of observations.
#[derive(Clone, Debug)]
pub struct Observation {
    pub groups: Vec<GroupStatus>,
    pub outbox: Option<OutboxStatus>,
    pub reorgs: Option<ReorgStatus>,
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

    /// Watch the engine's group on every configured stream, and the outbox. Returns once
    /// the first round is done (or failed), so the gauges exist before /metrics is served.
    pub async fn start_engine(&self, config: &EngineConfig, interval: Duration) -> JoinHandle<()> {
        let targets = config.streams.iter().map(|s| (s.clone(), config.group.clone())).collect();
        let watch = Watch::new(config.redis_url.clone(), Some(config.database_url.clone()), targets, ENGINE_GAUGES);
        self.start(watch, interval).await
    }

    /// Watch the worker's group on `term_updates`; returns after the first round.
    pub async fn start_worker(&self, config: &WorkerConfig, interval: Duration) -> JoinHandle<()> {
        let targets = vec![(config.stream.clone(), config.group.clone())];
        self.start(Watch::new(config.redis_url.clone(), None, targets, WORKER_GAUGES), interval).await
    }

    async fn start(&self, mut watch: Watch, interval: Duration) -> JoinHandle<()> {
        // A hung server must not stall the loop: each round has a deadline.
        let deadline = interval.max(Duration::from_secs(5));
        watch.round(&self.latest, deadline).await;
        let latest = self.latest.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                watch.round(&latest, deadline).await;
            }
        })
    }
}

/// What one monitor observes, its connections, and whether the last round failed.
struct Watch {
    redis_url: String,
    database_url: Option<String>,
    targets: Vec<(String, String)>,
    gauges: Gauges,
    redis: Option<MultiplexedConnection>,
    postgres: Option<tokio_postgres::Client>,
    failing: bool,
}

impl Watch {
    fn new(redis_url: String, database_url: Option<String>, targets: Vec<(String, String)>, gauges: Gauges) -> Watch {
        Watch { redis_url, database_url, targets, gauges, redis: None, postgres: None, failing: false }
    }

    /// Observe once: set the gauges and the latest observation, or note the failure.
    async fn round(&mut self, latest: &Mutex<Option<Observation>>, deadline: Duration) {
        let Watch { redis_url, database_url, targets, redis, postgres, .. } = self;
        let round = observe(redis_url, database_url.as_deref(), targets, redis, postgres);
        match tokio::time::timeout(deadline, round).await {
            Ok(Ok(observation)) => {
                self.record(&observation);
                if let Ok(mut l) = latest.lock() {
                    *l = Some(observation);
                }
                if self.failing {
                    info!("stream monitor recovered");
                    self.failing = false;
                }
            }
            outcome => {
                // Reconnect next round; say so once per outage, not every round.
                self.redis = None;
                self.postgres = None;
                if !self.failing {
                    let why = match outcome {
                        Ok(Err(e)) => format!("{e:#}"),
                        _ => "timed out".into(),
                    };
                    warn!(error = %why, "stream monitor cannot observe lag; retrying");
                    self.failing = true;
                }
            }
        }
    }

    fn record(&self, observation: &Observation) {
        let gauges = self.gauges;
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
        if let Some(reorgs) = observation.reorgs {
            metrics::gauge!(m::REORG_UNBASED_SEARCHES).set(reorgs.unbased_searches as f64);
            metrics::gauge!(m::REORG_BASES).set(reorgs.bases as f64);
        }
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
        *redis = Some(stream::connect(redis_url).await?);
    }
    let con = redis.as_mut().expect("connected above");
    let mut groups = Vec::with_capacity(targets.len());
    for (stream, group) in targets {
        let mut status = group_status(con, stream, group).await?;
        // A group not created yet will be, at the start of its stream (GroupReader): the
        // whole stream is ahead of it.
        if !status.group_exists {
            status.lag = Some(status.length);
        }
        groups.push(status);
    }
    // PostgreSQL's part is secondary: before the engine has created the database and applied
    // its migrations there is no outbox, and a PostgreSQL outage shows in /health already.
    let client = match database_url {
        None => None,
        Some(url) => {
            if postgres.as_ref().is_none_or(|c| c.is_closed()) {
                *postgres = pg::connect_one(url).await.ok();
            }
            postgres.as_ref()
        }
    };
    let (outbox, reorgs) = match client {
        Some(client) => (outbox_status(client).await.ok(), reorg_status(client).await.ok()),
        None => (None, None),
    };
    Ok(Observation { groups, outbox, reorgs, at: SystemTime::now(), messages_at })
}
