//! Scaling: the same measured batches applied on top of 0, millions, tens of millions of
//! events already stored (preloaded by COPY, [`super::preload`], or through the engine,
//! [`super::grow`]), with what the seed's design
//! would have paid instead (one full recompute of every reference view) where affordable.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{ensure, Result};
use rps::ops::verify::DERIVED_TABLES;
use serde::Serialize;

use super::cpu::CpuSeconds;
use super::grow::{grow, GrowthSlice};
use super::measure::{
    drain_analytics, engine_run, strong_tables_match, throughput, AnalyticsDrain, EngineRun, Services, Throughput,
};
use super::preload::{preload, PreloadPlan, Preloaded};
use super::scratch::Scratch;
use super::statements::{self, Statement};
use super::storage::{sizes, Sizes};
use super::variants::{self, Variant, VariantRun};
use crate::workload::Workload;

#[derive(Clone, Debug, Serialize)]
pub struct Scale {
    pub preloaded_events: u64,
    /// Wall time of the preload (see [`Preloaded::seconds`]).
    pub preload_seconds: f64,
    pub preload: Preloaded,
    /// The preload's slices as the engine applied them (`--preload-through-engine`; empty
    /// after a COPY preload).
    pub growth: Vec<GrowthSlice>,
    /// The CHECKPOINT before the measured batches, seconds (see [`settle`]); `None` if the
    /// server refused it (a role without `pg_checkpoint`).
    pub checkpoint_seconds: Option<f64>,
    /// The measured batches on copies of the preloaded database, with and without each SQL
    /// variant (`--scale-sql-variant`; empty without).
    pub variants: Vec<VariantRun>,
    pub engine: Throughput,
    /// The tables were compared with the reference views after the run (up to
    /// `--verify-scale-up-to`); `engine.matches_reference` is only meaningful then.
    pub verified: bool,
    /// One full recompute of each reference view (`CREATE TABLE AS SELECT * FROM snapshot.x`),
    /// the seed's "refresh all materialized views", seconds; `None` above
    /// `--refresh-scale-up-to` (not measured).
    pub snapshot_refresh_seconds: Option<BTreeMap<String, f64>>,
    pub snapshot_refresh_total_seconds: Option<f64>,
    /// Core-seconds of the engine run: the engine, PostgreSQL, Redis.
    pub cpu: Option<CpuSeconds>,
    /// WAL the server wrote during the engine run, per event.
    pub wal_bytes_per_event: f64,
    /// Table and index sizes after the run.
    pub sizes: Sizes,
    /// The analytics worker draining what the measured batches published, after the engine
    /// run (level 3 compared with the reference views when `verified`).
    pub analytics: AnalyticsDrain,
    /// PostgreSQL's top statements during the engine run (`--statement-profile`); `None`
    /// when not asked for or `pg_stat_statements` is not loaded.
    pub statements: Option<Vec<Statement>>,
}

/// What to check besides the engine run.
#[derive(Clone, Copy, Debug)]
pub struct ScaleChecks {
    /// Compare the tables with the reference views afterwards.
    pub verify: bool,
    /// Time one full recompute of every reference view afterwards.
    pub refresh: bool,
}

/// SQL variants to compare at each size, and how many alternating rounds.
pub struct VariantPlan<'a> {
    pub variants: &'a [Variant],
    pub rounds: usize,
    /// Run the rounds on copies even without variants (`--scale-repeat-on-copies`).
    pub repeat_current: bool,
}

impl VariantPlan<'_> {
    /// Whether each size's batches also run on copies of its preload.
    pub fn uses_copies(&self) -> bool {
        !self.variants.is_empty() || self.repeat_current
    }
}

/// The same measured batches on top of a preload of `plan.events` events.
pub async fn scaling(
    svc: &Services,
    plan: PreloadPlan,
    measured: &Workload,
    batch_size: usize,
    checks: ScaleChecks,
    variant_plan: &VariantPlan<'_>,
) -> Result<Scale> {
    let s = svc.scratch(&format!("scale_{}", plan.events)).await?;
    let (preloaded, growth) = if plan.through_engine {
        grow(svc, &s, plan, batch_size).await?
    } else {
        (preload(&s, plan).await?, Vec::new())
    };
    // On chain no two logs share a block: the measured events come after every preloaded one.
    ensure!(
        measured.messages.is_empty() || preloaded.last_block < measured.stats.first_block,
        "the preload reaches block {}, past the measured workload's first block {}",
        preloaded.last_block,
        measured.stats.first_block
    );

    // The variants run on copies of the preload as it is, after the main run has changed it.
    let pristine = if variant_plan.uses_copies() { Some(variants::keep_copy(svc, &s).await?) } else { None };
    let checkpoint_seconds = settle(&s).await?;
    let profiling = svc.statement_profile && statements::reset(&s).await?;
    let EngineRun { summary, cpu, wal_bytes_per_event, .. } = engine_run(svc, &s, measured, batch_size).await?;
    let statements = if profiling { Some(statements::top(&s).await?) } else { None };
    let analytics = drain_analytics(svc, &s, checks.verify).await?;
    let sizes = sizes(&s.client().await?).await?;
    let matches = if checks.verify { strong_tables_match(&s).await? } else { false };
    let refresh = if checks.refresh { Some(refresh_snapshots(&s).await?) } else { None };
    svc.done(s).await?;
    let variants = match pristine {
        Some(p) => variants::compare(svc, p, measured, batch_size, variant_plan).await?,
        None => Vec::new(),
    };
    Ok(Scale {
        preloaded_events: preloaded.events,
        preload_seconds: preloaded.seconds,
        preload: preloaded,
        growth,
        checkpoint_seconds,
        variants,
        engine: throughput(&summary, matches),
        verified: checks.verify,
        snapshot_refresh_total_seconds: refresh.as_ref().map(|r| r.values().sum()),
        snapshot_refresh_seconds: refresh,
        cpu,
        wal_bytes_per_event,
        sizes,
        analytics,
        statements,
    })
}

/// A CHECKPOINT before the measured batches. The preload writes gigabytes in minutes, where
/// a backfill that reached the same size spread those writes over hours; without it the
/// measured batches share the machine with the server still writing the preload out, and
/// measure that instead of the engine (bench-results/stop18-settle: the same engine code at
/// 20M with and without it). Every size gets it, the empty database too, so that all start
/// alike: right after a checkpoint, paying the full-page images of their first writes.
/// `None` if the server refused (a role without `pg_checkpoint`); the run goes on.
pub(super) async fn settle(s: &Scratch) -> Result<Option<f64>> {
    let started = Instant::now();
    match s.client().await?.batch_execute("CHECKPOINT").await {
        Ok(()) => Ok(Some(started.elapsed().as_secs_f64())),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            eprintln!("bench: CHECKPOINT refused ({e}); measuring without it");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_run_with_variants_or_when_asked() {
        let some = [Variant { name: "fillfactor85".into(), statements: vec!["SELECT 1".into()] }];
        let plan = |variants, repeat_current| VariantPlan { variants, rounds: 2, repeat_current };
        assert!(!plan(&[], false).uses_copies());
        assert!(plan(&[], true).uses_copies());
        assert!(plan(&some, false).uses_copies());
    }
}
