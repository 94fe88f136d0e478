//! The individual measurements. Each one runs in its own scratch database and streams.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use hdrhistogram::Histogram;
use rps::ingest::batch::Batch;
use rps::ingest::copy::{copy_encoded, encode_events, Target, EVENT_TABLES};
use rps::ingest::message::Message;
use rps::ops::verify::{compare_all, ANALYTICS_TABLES, DERIVED_TABLES, STRONG_TABLES};
use serde::Serialize;
use tokio::sync::oneshot;

use super::cpu::{CpuMark, CpuSeconds};
use super::scratch::Scratch;
use super::storage::{sizes, Sizes, WalMark};
use crate::redis_out::{write_entries, write_messages, Entry, WriteOptions, DEFAULT_PIPELINE};
use crate::workload::{MessageKind, Workload};

/// The analytics worker's default consumer group.
const ANALYTICS_GROUP: &str = "analytics-worker";

/// Where the scratch spaces live.
#[derive(Clone, Debug)]
pub struct Services {
    pub pg_base: String,
    pub redis_url: String,
    pub run_id: String,
    /// The engine's `--apply-parts` for every engine run.
    pub apply_parts: usize,
}

impl Services {
    async fn scratch(&self, tag: &str) -> Result<Scratch> {
        Scratch::new(&self.pg_base, &self.redis_url, &self.run_id, tag, self.apply_parts).await
    }

    async fn done(&self, s: Scratch) -> Result<()> {
        s.drop(&self.pg_base).await
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub events: u64,
    pub messages: u64,
    pub batches: u64,
    /// Batches applied as concurrent term-disjoint parts (their stage times are summed over
    /// the parts).
    pub parallel_batches: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    /// Mean wall time per batch, milliseconds.
    pub mean_batch_ms: f64,
    /// Seconds per pipeline stage over the run (read/decode overlap the rest).
    pub stage_seconds: BTreeMap<String, f64>,
    /// The same with concurrent parts counted once (the longest): the time each stage held
    /// batches up.
    pub stage_wall_seconds: BTreeMap<String, f64>,
    /// Level 1-2 tables equal the reference views after the run.
    pub matches_reference: bool,
}

fn throughput(s: &rps::RunSummary, matches_reference: bool) -> Throughput {
    let seconds = s.elapsed.as_secs_f64();
    Throughput {
        events: s.events,
        messages: s.messages,
        batches: s.batches,
        parallel_batches: s.parallel_batches,
        seconds,
        events_per_sec: s.events_per_second(),
        mean_batch_ms: seconds * 1000.0 / s.batches.max(1) as f64,
        stage_seconds: s.stage_time.summed.iter().map(|(k, v)| (k.to_string(), v.as_secs_f64())).collect(),
        stage_wall_seconds: s.stage_time.wall.iter().map(|(k, v)| (k.to_string(), v.as_secs_f64())).collect(),
        matches_reference,
    }
}

async fn strong_tables_match(s: &Scratch) -> Result<bool> {
    let diffs = compare_all(&s.client().await?, &STRONG_TABLES).await?;
    Ok(diffs.iter().all(|d| d.matches()))
}

async fn analytics_tables_match(s: &Scratch) -> Result<bool> {
    let diffs = compare_all(&s.client().await?, &ANALYTICS_TABLES).await?;
    Ok(diffs.iter().all(|d| d.matches()))
}

/// Backfill: the whole workload is in the streams before the engine starts.
#[derive(Clone, Debug, Serialize)]
pub struct Backfill {
    /// The median run (by events/s) when the backfill was measured several times.
    pub engine: Throughput,
    /// events/s of every run, in the order they ran.
    pub runs_events_per_sec: Vec<f64>,
    pub xadd_events_per_sec: f64,
    pub analytics: Option<AnalyticsDrain>,
    /// Core-seconds of the median run: the engine, PostgreSQL, Redis.
    pub cpu: Option<CpuSeconds>,
    /// WAL the server wrote during the engine run, per event.
    pub wal_bytes_per_event: f64,
}

impl Backfill {
    /// The median of several runs, with every run's rate and the one analytics drain.
    pub fn median(mut runs: Vec<Backfill>) -> Backfill {
        let analytics = runs.iter_mut().find_map(|b| b.analytics.take());
        let (mut median, rates) = take_median(runs, |b| b.engine.events_per_sec);
        median.runs_events_per_sec = rates;
        median.analytics = analytics;
        median
    }
}

/// The element with the median `key` (the upper one of an even count), and every run's
/// `key` in run order.
fn take_median<T>(mut runs: Vec<T>, key: impl Fn(&T) -> f64) -> (T, Vec<f64>) {
    assert!(!runs.is_empty(), "at least one run");
    let keys = runs.iter().map(&key).collect();
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = runs.len() / 2;
    (runs.swap_remove(middle), keys)
}

#[derive(Clone, Debug, Serialize)]
pub struct AnalyticsDrain {
    pub seconds: f64,
    pub term_ids: u64,
    pub triples: u64,
    pub term_ids_per_sec: f64,
    pub matches_reference: bool,
}

pub async fn backfill(
    svc: &Services,
    tag: &str,
    workload: &Workload,
    batch_size: usize,
    analytics: bool,
) -> Result<Backfill> {
    let s = svc.scratch(tag).await?;
    let mut redis = s.redis.clone();
    let options = WriteOptions { stream_prefix: s.prefix.clone(), rate: None, pipeline: DEFAULT_PIPELINE };
    let written = write_messages(&mut redis, &workload.messages, &options).await?;
    let client = s.client().await?;
    let wal = WalMark::now(&client).await?;
    let mark = CpuMark::now(&mut redis).await;
    let summary = rps::run(s.engine_config(batch_size, true), std::future::pending()).await?;
    let cpu = mark.since(&mut redis).await;
    let wal_bytes_per_event = wal.bytes_since(&client).await? as f64 / summary.events.max(1) as f64;
    let engine = throughput(&summary, strong_tables_match(&s).await?);
    let analytics = if analytics { Some(drain_analytics(&s).await?) } else { None };
    drop(client);
    svc.done(s).await?;
    let runs_events_per_sec = vec![engine.events_per_sec];
    let xadd_events_per_sec = written.events_per_sec();
    Ok(Backfill { engine, runs_events_per_sec, xadd_events_per_sec, analytics, cpu, wal_bytes_per_event })
}

/// The analytics worker drains what the backfill published.
async fn drain_analytics(s: &Scratch) -> Result<AnalyticsDrain> {
    let mut config = rps::analytics::WorkerConfig::local(&s.database_url, &s.term_updates());
    config.redis_url = s.redis_url.clone();
    config.block_ms = 50;
    let w = rps::analytics::run(config, std::future::pending()).await?;
    let seconds = w.elapsed.as_secs_f64();
    Ok(AnalyticsDrain {
        seconds,
        term_ids: w.term_ids,
        triples: w.triples,
        term_ids_per_sec: w.term_ids as f64 / seconds.max(1e-9),
        matches_reference: analytics_tables_match(s).await?,
    })
}

/// The seed's per-event path: one event per message, one message per batch, one stream.
pub async fn per_event(svc: &Services, workload: &Workload) -> Result<Throughput> {
    let s = svc.scratch("per_event").await?;
    let stream = format!("{}intuition_all", s.prefix);
    let entries: Vec<Entry> =
        workload.messages.iter().map(|m| Entry { key: &stream, payload: &m.payload, events: m.events }).collect();
    let mut redis = s.redis.clone();
    write_entries(&mut redis, &entries, None, DEFAULT_PIPELINE).await?;
    let mut config = s.engine_config(1, true);
    config.streams = vec![stream.clone()];
    let summary = rps::run(config, std::future::pending()).await?;
    let result = throughput(&summary, strong_tables_match(&s).await?);
    svc.done(s).await?;
    Ok(result)
}

/// Decode a workload exactly as the engine does (dead letters dropped), in chain order.
fn decode_all(workload: &Workload) -> Batch {
    let messages = workload
        .messages
        .iter()
        .filter(|m| m.kind != MessageKind::Malformed)
        .enumerate()
        .map(|(i, m)| Message {
            stream: m.stream.clone(),
            id: format!("0-{i}"),
            payload: Ok(m.payload.clone().into_bytes()),
        })
        .collect();
    Batch::from_messages(messages)
}

async fn set_triggers(client: &tokio_postgres::Client, enabled: bool) -> Result<()> {
    let verb = if enabled { "ENABLE" } else { "DISABLE" };
    for t in EVENT_TABLES {
        client.batch_execute(&format!("ALTER TABLE {t} {verb} TRIGGER USER")).await?;
    }
    Ok(())
}

/// The events in binary COPY format, `per_batch` per transaction. Encoding happens before
/// the clock starts, as the engine encodes on its reader task.
fn encode_chunks(batch: &Batch, per_batch: usize) -> Result<Vec<Vec<rps::ingest::copy::EncodedTable>>> {
    Ok(batch.events.chunks(per_batch.max(1)).map(encode_events).collect::<Result<_, _>>()?)
}

/// COPY encoded events straight into the event tables, one transaction per chunk.
async fn copy_raw(
    client: &mut tokio_postgres::Client,
    chunks: &[Vec<rps::ingest::copy::EncodedTable>],
) -> Result<Duration> {
    let started = Instant::now();
    for tables in chunks {
        let tx = client.transaction().await?;
        tx.batch_execute(rps::pg::sql::BACKFILL_TRANSACTION).await?;
        copy_encoded(&tx, tables, Target::EventTables).await?;
        tx.commit().await?;
    }
    Ok(started.elapsed())
}

#[derive(Clone, Debug, Serialize)]
pub struct RawFloor {
    pub events: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub events_per_transaction: usize,
    /// simd-json decode of the same payloads, events/s (one thread).
    pub decode_events_per_sec: f64,
    /// events/s of every run, in the order they ran (the fields above are the median run).
    pub runs_events_per_sec: Vec<f64>,
    /// Core-seconds of the median run: the COPY client (this process), PostgreSQL, Redis.
    pub cpu: Option<CpuSeconds>,
    /// WAL the server wrote during the COPY, per event.
    pub wal_bytes_per_event: f64,
}

impl RawFloor {
    pub fn median(runs: Vec<RawFloor>) -> RawFloor {
        let (mut median, rates) = take_median(runs, |f| f.events_per_sec);
        median.runs_events_per_sec = rates;
        median
    }
}

/// The raw-ingest floor: binary COPY of the same events into the event tables alone, in
/// transactions of the engine's mean batch size, no staging, no triggers, no derived rows.
pub async fn raw_floor(svc: &Services, workload: &Workload, per_batch: usize) -> Result<RawFloor> {
    let s = svc.scratch("raw_floor").await?;
    let decode_started = Instant::now();
    let batch = decode_all(workload);
    let decode = decode_started.elapsed();
    let mut client = s.client().await?;
    client.batch_execute(rps::pg::sql::SESSION_SETUP).await?;
    set_triggers(&client, false).await?;
    let chunks = encode_chunks(&batch, per_batch)?;
    let mut redis = s.redis.clone();
    let wal = WalMark::now(&client).await?;
    let mark = CpuMark::now(&mut redis).await;
    let took = copy_raw(&mut client, &chunks).await?;
    let cpu = mark.since(&mut redis).await;
    let events = batch.events.len() as u64;
    let wal_bytes_per_event = wal.bytes_since(&client).await? as f64 / events.max(1) as f64;
    drop(client);
    svc.done(s).await?;
    let events_per_sec = events as f64 / took.as_secs_f64().max(1e-9);
    Ok(RawFloor {
        events,
        seconds: took.as_secs_f64(),
        events_per_sec,
        runs_events_per_sec: vec![events_per_sec],
        events_per_transaction: per_batch,
        decode_events_per_sec: events as f64 / decode.as_secs_f64().max(1e-9),
        cpu,
        wal_bytes_per_event,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct Live {
    pub offered_events_per_sec: f64,
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
    wait_until(Duration::from_secs(120), || {
        rps::runtime::telemetry::PROGRESS.events.load(Ordering::Relaxed) - before >= written.events as u64
    })
    .await
    .context("engine did not keep up")?;
    wait_for_analytics(&mut redis, &s.term_updates()).await?;
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
    Ok(Live {
        offered_events_per_sec: rate,
        events: summary.events,
        seconds,
        runs_p99_ms: vec![latency_ms.p99],
        latency_ms,
        analytics_lag_s: percentiles(&lag, 1000.0),
        matches_reference: matches,
    })
}

async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while !done() {
        ensure!(started.elapsed() < limit, "timed out after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn wait_for_analytics(redis: &mut redis::aio::MultiplexedConnection, stream: &str) -> Result<()> {
    let started = Instant::now();
    while oldest_unprocessed_ms(redis, stream).await?.is_some() {
        ensure!(started.elapsed() < Duration::from_secs(120), "analytics worker did not catch up");
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

#[derive(Clone, Debug, Serialize)]
pub struct Scale {
    pub preloaded_events: u64,
    pub preload_seconds: f64,
    pub engine: Throughput,
    /// One full recompute of each reference view (`CREATE TABLE AS SELECT * FROM snapshot.x`),
    /// the seed's "refresh all materialized views", seconds.
    pub snapshot_refresh_seconds: BTreeMap<String, f64>,
    pub snapshot_refresh_total_seconds: f64,
    /// Core-seconds of the engine run: the engine, PostgreSQL, Redis.
    pub cpu: Option<CpuSeconds>,
    /// WAL the server wrote during the engine run, per event.
    pub wal_bytes_per_event: f64,
    /// Table and index sizes after the run.
    pub sizes: Sizes,
}

/// The same measured batches on top of `preload` events already in the database.
pub async fn scaling(
    svc: &Services,
    preload: &Workload,
    measured: &Workload,
    batch_size: usize,
    verify: bool,
) -> Result<Scale> {
    let events = preload.stats.events;
    let s = svc.scratch(&format!("scale_{events}")).await?;
    let started = Instant::now();
    preload_database(&s, preload).await?;
    let preload_seconds = started.elapsed().as_secs_f64();

    let mut redis = s.redis.clone();
    let options = WriteOptions { stream_prefix: s.prefix.clone(), rate: None, pipeline: DEFAULT_PIPELINE };
    write_messages(&mut redis, &measured.messages, &options).await?;
    let client = s.client().await?;
    let wal = WalMark::now(&client).await?;
    let mark = CpuMark::now(&mut redis).await;
    let summary = rps::run(s.engine_config(batch_size, true), std::future::pending()).await?;
    let cpu = mark.since(&mut redis).await;
    let wal_bytes_per_event = wal.bytes_since(&client).await? as f64 / summary.events.max(1) as f64;
    let sizes = sizes(&client).await?;
    drop(client);
    let matches = if verify { strong_tables_match(&s).await? } else { true };
    let refresh = refresh_snapshots(&s).await?;
    svc.done(s).await?;
    Ok(Scale {
        preloaded_events: events as u64,
        preload_seconds,
        engine: throughput(&summary, matches),
        snapshot_refresh_total_seconds: refresh.values().sum(),
        snapshot_refresh_seconds: refresh,
        cpu,
        wal_bytes_per_event,
        sizes,
    })
}

/// Fill a database fast: COPY the events with triggers off, then build every derived
/// table from its reference view (the definition), then turn the triggers back on.
async fn preload_database(s: &Scratch, workload: &Workload) -> Result<()> {
    if workload.messages.is_empty() {
        return Ok(());
    }
    let mut client = s.client().await?;
    client.batch_execute(rps::pg::sql::SESSION_SETUP).await?;
    set_triggers(&client, false).await?;
    copy_raw(&mut client, &encode_chunks(&decode_all(workload), 100_000)?).await?;
    set_triggers(&client, true).await?;
    for t in DERIVED_TABLES {
        client.batch_execute(&format!("INSERT INTO public.{t} SELECT * FROM snapshot.{t}")).await?;
    }
    client.batch_execute("VACUUM ANALYZE").await?;
    Ok(())
}

async fn refresh_snapshots(s: &Scratch) -> Result<BTreeMap<String, f64>> {
    let client = s.client().await?;
    client.batch_execute("SET work_mem = '64MB'; SET jit = off").await?;
    let mut out = BTreeMap::new();
    for t in DERIVED_TABLES {
        let started = Instant::now();
        client.batch_execute(&format!("CREATE TEMP TABLE refresh_{t} AS SELECT * FROM snapshot.{t}")).await?;
        out.insert(t.to_string(), started.elapsed().as_secs_f64());
    }
    Ok(out)
}
