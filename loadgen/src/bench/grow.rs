//! The preload through the engine (`--preload-through-engine`): a scaling size's stored
//! events written the way a backfill writes them. Each slice of [`super::preload`]'s plan
//! (the same chain segments, seeds and universe) is XADDed to the scratch streams and drained
//! by the engine, then the streams are trimmed so that Redis holds one slice at a time.
//!
//! Why, when the COPY preload is there: the COPY preload builds the state tables from their
//! reference views in one `INSERT … SELECT` each, so an index whose key a view happens to
//! emit in order comes out packed, while a backfill grows every random-keyed index by random
//! inserts (leaves about 70 % full) and leaves dead row versions behind; this preload leaves
//! the database as a backfill does. And its slices are themselves a figure a mainnet backfill
//! cares about: the engine's throughput while the database grows, with the checkpoints a
//! long backfill meets on the way (bench-results/stop27-growth). Their workload has the
//! preload's locality: each slice's deposits touch its own new terms.

use std::time::Instant;

use anyhow::{Context, Result};
use rps::ops::verify::ANALYTICS_TABLES;
use serde::Serialize;

use super::measure::{engine_run, EngineRun, Services};
use super::preload::{derive_from_views, PreloadPlan, Preloaded, SliceWorkloads};
use super::scratch::Scratch;

/// One slice of the preload, as the engine applied it.
#[derive(Clone, Debug, Serialize)]
pub struct GrowthSlice {
    /// Events stored before this slice.
    pub stored_before: u64,
    pub events: u64,
    /// The engine's run, from its start to its exit when the streams were drained.
    pub engine_seconds: f64,
    /// The engine's and PostgreSQL's core-seconds over the run; `None` where unreadable.
    pub engine_cpu_seconds: Option<f64>,
    pub postgres_cpu_seconds: Option<f64>,
    pub wal_bytes: f64,
}

/// Fill `s`'s database with `plan.events` events through the engine, slice by slice;
/// the level-3 tables are then built from their reference views (the analytics worker's
/// work, which the measured runs do not include) and the database is vacuumed and analysed,
/// as after the COPY preload.
pub async fn grow(
    svc: &Services,
    s: &Scratch,
    plan: PreloadPlan,
    batch_size: usize,
) -> Result<(Preloaded, Vec<GrowthSlice>)> {
    let mut out = Preloaded { through_engine: true, ..Preloaded::default() };
    let mut slices = Vec::new();
    if plan.events == 0 {
        return Ok((out, slices));
    }
    let started = Instant::now();
    let mut workloads = SliceWorkloads::new(plan);
    loop {
        let generating = Instant::now();
        let (rest, next) = tokio::task::spawn_blocking(move || {
            let next = workloads.next();
            (workloads, next)
        })
        .await
        .context("the preload generator panicked")?;
        workloads = rest;
        let Some(workload) = next else { break };
        out.generate_wait_seconds += generating.elapsed().as_secs_f64();
        let EngineRun { summary, cpu, wal_bytes_per_event, .. } = engine_run(svc, s, &workload, batch_size).await?;
        anyhow::ensure!(
            summary.events == workload.stats.events as u64 && summary.dead_letters == 0,
            "preload slice {}: the engine applied {} of {} events ({} dead letters)",
            slices.len(),
            summary.events,
            workload.stats.events,
            summary.dead_letters
        );
        slices.push(GrowthSlice {
            stored_before: out.events,
            events: summary.events,
            engine_seconds: summary.elapsed.as_secs_f64(),
            engine_cpu_seconds: cpu.map(|c| c.this_process),
            postgres_cpu_seconds: cpu.and_then(|c| c.postgres),
            wal_bytes: wal_bytes_per_event * summary.events as f64,
        });
        out.engine_seconds += summary.elapsed.as_secs_f64();
        out.events += summary.events;
        out.slices += 1;
        out.last_block = workload.stats.last_block;
        trim_streams(s).await?;
    }
    let derive = Instant::now();
    derive_from_views(&s.client().await?, &ANALYTICS_TABLES).await?;
    out.derive_seconds = derive.elapsed().as_secs_f64();
    out.seconds = started.elapsed().as_secs_f64();
    Ok((out, slices))
}

/// Empty the scratch streams (the event streams and the term-updates stream) of what the
/// engine has acked, keeping the keys and their consumer groups: Redis then holds one slice
/// at a time, and the analytics drain after the measured batches sees only theirs.
async fn trim_streams(s: &Scratch) -> Result<()> {
    let mut redis = s.redis.clone();
    for key in s.streams().into_iter().chain([s.term_updates()]) {
        let _: () = redis::cmd("XTRIM").arg(&key).arg("MAXLEN").arg(0).query_async(&mut redis).await?;
    }
    Ok(())
}
