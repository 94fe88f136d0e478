//! Live latency: the engine and the analytics worker running, events arriving at an offered
//! rate, one event per message, as from a live chain. The latency of an event is XADD (its
//! entry id's clock) → commit of its batch, so a writer that falls behind its schedule would
//! hide load: the achieved offered rate is measured and reported beside the target.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::oneshot;

use super::measure::{analytics_tables_match, strong_tables_match, take_median, Services};
use crate::redis_out::{write_messages, WriteOptions, DEFAULT_PIPELINE};
use crate::workload::Workload;

/// The analytics worker's default consumer group.
const ANALYTICS_GROUP: &str = "analytics-worker";

/// The paced writer sends one pipeline per slice of this length (`redis_out`'s 20 slices per
/// second); the last slice's pipeline leaves one slice before the schedule's end.
const PACING_SLICE_SECS: f64 = 0.05;

#[derive(Clone, Debug, Serialize)]
pub struct Live {
    /// The target rate.
    pub offered_events_per_sec: f64,
    /// The rate the writer actually offered: events over the time it took to XADD them
    /// (plus its last pacing slice). Below the target when Redis or this process's writer
    /// could not keep the schedule.
    pub achieved_offered_events_per_sec: f64,
    pub events: u64,
    pub seconds: f64,
    /// XADD → commit of the event's batch, milliseconds (entry ids have millisecond
    /// resolution, so each sample is up to 1 ms pessimistic).
    pub latency_ms: Percentiles,
    /// Age of the oldest term update the analytics worker had not yet applied, sampled
    /// every 50 ms during the run, seconds.
    pub analytics_lag_s: Percentiles,
    pub matches_reference: bool,
    /// p99 latency of every run, in the order they ran (the fields above are the run with
    /// the median p99).
    pub runs_p99_ms: Vec<f64>,
}

impl Live {
    pub fn median(runs: Vec<Live>) -> Live {
        let (mut median, p99s) = take_median(runs, |l| l.latency_ms.p99);
        median.runs_p99_ms = p99s;
        median
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: u64,
}

fn percentiles(h: &Histogram<u64>, scale: f64) -> Percentiles {
    let q = |x: f64| h.value_at_quantile(x) as f64 / scale;
    Percentiles { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: h.max() as f64 / scale, samples: h.len() }
}

/// Live mode: engine and worker running, events arriving at `rate` per second.
pub async fn live(svc: &Services, workload: &Workload, rate: f64) -> Result<Live> {
    let s = svc.scratch(&format!("live_{}", rate as u64)).await?;
    let mut engine_config = s.engine_config(1000, false);
    engine_config.exit_when_idle = false;
    engine_config.block_ms = 1000;
    let (stop_engine, engine_stopped) = oneshot::channel::<()>();
    let engine = tokio::spawn(rps::run(engine_config, async move {
        engine_stopped.await.ok();
    }));
    let mut worker_config = rps::analytics::WorkerConfig::local(&s.database_url, &s.term_updates());
    worker_config.redis_url = s.redis_url.clone();
    worker_config.exit_when_idle = false;
    // As deployed: the live worker pauses between refreshes (local() drains flat out).
    worker_config.refresh_duty = rps::analytics::config::DEFAULT_REFRESH_DUTY;
    let (stop_worker, worker_stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(rps::analytics::run(worker_config, async move {
        worker_stopped.await.ok();
    }));
    tokio::time::sleep(Duration::from_millis(500)).await; // both are reading before traffic starts

    let (stop_sampler, mut sampler_stopped) = oneshot::channel::<()>();
    let sampler = tokio::spawn(sample_analytics_lag(s.redis.clone(), s.term_updates(), async move {
        (&mut sampler_stopped).await.ok();
    }));
    let before = rps::runtime::telemetry::PROGRESS.events.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut redis = s.redis.clone();
    let options = WriteOptions { stream_prefix: s.prefix.clone(), rate: Some(rate), pipeline: DEFAULT_PIPELINE };
    let written = write_messages(&mut redis, &workload.messages, &options).await?;
    wait_until("engine did not keep up", async || {
        Ok(rps::runtime::telemetry::PROGRESS.events.load(Ordering::Relaxed) - before >= written.events as u64)
    })
    .await?;
    // The engine counts an event at its commit and publishes its term ids after the ack: an
    // empty outbox means every update is on the stream, where the worker's progress shows.
    let client = s.client().await?;
    wait_until("the engine did not publish its outbox", async || {
        Ok(!client.query_one("SELECT EXISTS (SELECT 1 FROM term_update_outbox)", &[]).await?.get::<_, bool>(0))
    })
    .await?;
    let term_updates = s.term_updates();
    wait_until("analytics worker did not catch up", async || {
        Ok(oldest_unprocessed_ms(&mut redis, &term_updates).await?.is_none())
    })
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    stop_sampler.send(()).ok();
    let lag = sampler.await??;
    stop_engine.send(()).ok();
    stop_worker.send(()).ok();
    let summary = engine.await??;
    worker.await??;
    let matches = strong_tables_match(&s).await? && analytics_tables_match(&s).await?;
    svc.done(s).await?;
    let latency_ms = percentiles(&summary.commit_latency_us, 1000.0);
    let writer_seconds = written.elapsed.as_secs_f64() + PACING_SLICE_SECS;
    Ok(Live {
        offered_events_per_sec: rate,
        achieved_offered_events_per_sec: written.events as f64 / writer_seconds,
        events: summary.events,
        seconds,
        runs_p99_ms: vec![latency_ms.p99],
        latency_ms,
        analytics_lag_s: percentiles(&lag, 1000.0),
        matches_reference: matches,
    })
}

/// Poll `done` every 20 ms until it holds; after two minutes, fail with `timeout`.
async fn wait_until(timeout: &str, mut done: impl AsyncFnMut() -> Result<bool>) -> Result<()> {
    let started = Instant::now();
    while !done().await? {
        ensure!(started.elapsed() < Duration::from_secs(120), "{timeout} within two minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Sample the analytics lag (milliseconds) every 50 ms until `stop` resolves.
async fn sample_analytics_lag(
    mut redis: redis::aio::MultiplexedConnection,
    stream: String,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Histogram<u64>> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)?;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(h),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let now = now_ms();
        let age = oldest_unprocessed_ms(&mut redis, &stream).await?.map_or(0, |t| now.saturating_sub(t));
        h.saturating_record(age.max(1));
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn id_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

/// XADD time of the oldest `term_updates` entry the analytics group has not acked:
/// pending (delivered, not acked) or not yet delivered.
async fn oldest_unprocessed_ms(redis: &mut redis::aio::MultiplexedConnection, stream: &str) -> Result<Option<u64>> {
    let group = ANALYTICS_GROUP;
    let pending: redis::Value =
        redis::cmd("XPENDING").arg(stream).arg(group).query_async(redis).await.unwrap_or(redis::Value::Nil);
    if let redis::Value::Array(parts) = &pending {
        if let Some(redis::Value::BulkString(smallest)) = parts.get(1) {
            return Ok(id_ms(&String::from_utf8_lossy(smallest)));
        }
    }
    let groups: Vec<std::collections::HashMap<String, redis::Value>> =
        redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(redis).await.unwrap_or_default();
    let last =
        groups.iter().find(|g| matches!(g.get("name"), Some(redis::Value::BulkString(n)) if n == group.as_bytes()));
    let last_delivered = match last.and_then(|g| g.get("last-delivered-id")) {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => "0-0".to_owned(),
    };
    let next: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg(format!("({last_delivered}"))
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(redis)
        .await?;
    Ok(next.ids.first().and_then(|e| id_ms(&e.id)))
}
