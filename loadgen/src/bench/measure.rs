//! The throughput measurements (backfill, raw-ingest floor, per-event path) and what every
//! measurement shares: scratch spaces, decoding and COPY helpers, medians. Live latency is
//! in [`super::live`], scaling in [`super::scaling`]. Each one runs in its own scratch
//! database and streams.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use rps::ingest::batch::Batch;
use rps::ingest::copy::{copy_encoded, encode_events, Target, EVENT_TABLES};
use rps::ingest::message::Message;
use rps::ops::verify::{compare_all, ANALYTICS_TABLES, STRONG_TABLES};
use serde::Serialize;

use super::cpu::{CpuMark, CpuSeconds, PgProcesses};
use super::scratch::Scratch;
use super::storage::WalMark;
use crate::redis_out::{write_entries, write_messages, Entry, WriteOptions, DEFAULT_PIPELINE};
use crate::workload::{MessageKind, Workload};

/// Where the scratch spaces live.
#[derive(Clone, Debug)]
pub struct Services {
    pub pg_base: String,
    pub redis_url: String,
    pub run_id: String,
    /// The engine's `--apply-parts` for every engine run.
    pub apply_parts: usize,
    /// The PostgreSQL processes whose CPU time is counted.
    pub processes: PgProcesses,
    /// Profile the statements of scaling runs (`--statement-profile`).
    pub statement_profile: bool,
}

impl Services {
    pub(super) async fn scratch(&self, tag: &str) -> Result<Scratch> {
        Scratch::new(&self.pg_base, &self.redis_url, &self.run_id, tag, self.apply_parts).await
    }

    pub(super) async fn done(&self, s: Scratch) -> Result<()> {
        s.drop(&self.pg_base).await
    }

    pub(super) async fn cpu_mark(&self, redis: &mut redis::aio::MultiplexedConnection) -> CpuMark {
        CpuMark::now(redis, self.processes).await
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

pub(super) fn throughput(s: &rps::RunSummary, matches_reference: bool) -> Throughput {
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

pub(super) async fn strong_tables_match(s: &Scratch) -> Result<bool> {
    let diffs = compare_all(&s.client().await?, &STRONG_TABLES).await?;
    Ok(diffs.iter().all(|d| d.matches()))
}

pub(super) async fn analytics_tables_match(s: &Scratch) -> Result<bool> {
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
pub(super) fn take_median<T>(mut runs: Vec<T>, key: impl Fn(&T) -> f64) -> (T, Vec<f64>) {
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
    /// Level 3 tables = reference views afterwards; `None` where not checked (a full
    /// recompute of the reference views is slow on millions of events).
    pub matches_reference: Option<bool>,
    /// Core-seconds of the drain: the worker (this process), PostgreSQL, Redis.
    pub cpu: Option<CpuSeconds>,
    /// Triples of the largest (predicate, object) and (subject, predicate) pairs afterwards:
    /// what a refresh that recomputed a whole pair would have to read.
    pub largest_pairs: [i64; 2],
}

pub async fn backfill(
    svc: &Services,
    tag: &str,
    workload: &Workload,
    batch_size: usize,
    analytics: bool,
) -> Result<Backfill> {
    let s = svc.scratch(tag).await?;
    let run = engine_run(svc, &s, workload, batch_size).await?;
    let engine = throughput(&run.summary, strong_tables_match(&s).await?);
    let analytics = if analytics { Some(drain_analytics(svc, &s, true).await?) } else { None };
    svc.done(s).await?;
    let runs_events_per_sec = vec![engine.events_per_sec];
    let (cpu, wal_bytes_per_event) = (run.cpu, run.wal_bytes_per_event);
    Ok(Backfill {
        engine,
        runs_events_per_sec,
        xadd_events_per_sec: run.xadd_events_per_sec,
        analytics,
        cpu,
        wal_bytes_per_event,
    })
}

/// One backfill run of the engine over a workload XADDed first, with what it cost.
pub(super) struct EngineRun {
    pub summary: rps::RunSummary,
    pub xadd_events_per_sec: f64,
    pub cpu: Option<CpuSeconds>,
    pub wal_bytes_per_event: f64,
}

/// XADD `workload` to `s`'s streams, then drain them with the engine in backfill mode,
/// counting CPU and WAL from the engine's start to its end only.
pub(super) async fn engine_run(
    svc: &Services,
    s: &Scratch,
    workload: &Workload,
    batch_size: usize,
) -> Result<EngineRun> {
    let mut redis = s.redis.clone();
    let options = WriteOptions { stream_prefix: s.prefix.clone(), rate: None, pipeline: DEFAULT_PIPELINE };
    let written = write_messages(&mut redis, &workload.messages, &options).await?;
    let client = s.client().await?;
    let wal = WalMark::now(&client).await?;
    let mark = svc.cpu_mark(&mut redis).await;
    let summary = rps::run(s.engine_config(batch_size, true), std::future::pending()).await?;
    let cpu = mark.since(&mut redis).await;
    let wal_bytes_per_event = wal.bytes_since(&client).await? as f64 / summary.events.max(1) as f64;
    Ok(EngineRun { summary, xadd_events_per_sec: written.events_per_sec(), cpu, wal_bytes_per_event })
}

/// The analytics worker drains what the engine published, from start to idle; `verify`
/// compares the level 3 tables with the reference views afterwards.
pub(super) async fn drain_analytics(svc: &Services, s: &Scratch, verify: bool) -> Result<AnalyticsDrain> {
    let mut config = rps::analytics::WorkerConfig::local(&s.database_url, &s.term_updates());
    config.redis_url = s.redis_url.clone();
    config.block_ms = 50;
    let mut redis = s.redis.clone();
    let mark = svc.cpu_mark(&mut redis).await;
    let w = rps::analytics::run(config, std::future::pending()).await?;
    let cpu = mark.since(&mut redis).await;
    let seconds = w.elapsed.as_secs_f64();
    let client = s.client().await?;
    let largest = |table: &str| format!("SELECT coalesce(max(triple_count), 0) FROM {table}");
    let mut largest_pairs = [0; 2];
    for (slot, table) in largest_pairs.iter_mut().zip(["predicate_object", "subject_predicate"]) {
        *slot = client.query_one(&largest(table), &[]).await?.get(0);
    }
    Ok(AnalyticsDrain {
        seconds,
        term_ids: w.term_ids,
        triples: w.triples,
        term_ids_per_sec: w.term_ids as f64 / seconds.max(1e-9),
        matches_reference: if verify { Some(analytics_tables_match(s).await?) } else { None },
        cpu,
        largest_pairs,
    })
}

/// The seed's per-event path: one event per message, one message per batch, one stream.
pub async fn per_event(svc: &Services, workload: &Workload) -> Result<Throughput> {
    let s = svc.scratch("per_event").await?;
    let stream = format!("{}intuition_all", s.prefix);
    let entries: Vec<Entry> = workload
        .messages
        .iter()
        .map(|m| Entry { key: &stream, id: "*", payload: &m.payload, events: m.events })
        .collect();
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
pub(super) fn decode_all(workload: &Workload) -> Batch {
    let messages = workload
        .messages
        .iter()
        .filter(|m| m.kind != MessageKind::Malformed)
        .enumerate()
        .map(|(i, m)| Message { stream: m.stream.clone(), id: format!("0-{i}"), payload: Ok(m.payload.clone().into()) })
        .collect();
    Batch::from_messages(messages)
}

pub(super) async fn set_triggers(client: &tokio_postgres::Client, enabled: bool) -> Result<()> {
    let verb = if enabled { "ENABLE" } else { "DISABLE" };
    for t in EVENT_TABLES {
        client.batch_execute(&format!("ALTER TABLE {t} {verb} TRIGGER USER")).await?;
    }
    Ok(())
}

/// The events in binary COPY format, `per_batch` per transaction. Encoding happens before
/// the clock starts, as the engine encodes on its reader task.
pub(super) fn encode_chunks(batch: &Batch, per_batch: usize) -> Vec<Vec<rps::ingest::copy::EncodedTable>> {
    batch.events.chunks(per_batch.max(1)).map(encode_events).collect()
}

/// COPY encoded events straight into the event tables, one transaction per chunk.
pub(super) async fn copy_raw(
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
    let chunks = encode_chunks(&batch, per_batch);
    let mut redis = s.redis.clone();
    let wal = WalMark::now(&client).await?;
    let mark = svc.cpu_mark(&mut redis).await;
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
