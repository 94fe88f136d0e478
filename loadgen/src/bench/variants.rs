//! SQL variants at scale (`--scale-sql-variant`): the measured batches applied to copies of
//! one preloaded database, once with the current definitions and once per variant (its SQL
//! applied to the copy first), in alternating order over a few rounds. A change to a merge,
//! the cascade or a table's storage is then judged at 20M stored events from one preload,
//! by ratios measured in the same run, instead of one full bench per candidate.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::measure::{engine_run, EngineRun, Services};
use super::scaling::{settle, VariantPlan};
use super::scratch::Scratch;
use crate::workload::Workload;

/// The name of the runs without a variant's SQL.
pub const CURRENT: &str = "current";

/// A variant: SQL applied to a copy of the preloaded database before the measured batches.
#[derive(Clone, Debug)]
pub struct Variant {
    /// The file's stem.
    pub name: String,
    /// Statements run one by one (each may hold several commands, in one implicit
    /// transaction); a line `-- statement` separates them, so that commands that refuse a
    /// transaction block (VACUUM FULL, CREATE INDEX CONCURRENTLY) can be variants too.
    pub statements: Vec<String>,
}

impl Variant {
    pub fn load(path: &Path) -> Result<Variant> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
        anyhow::ensure!(name != CURRENT, "{}: a variant may not be named {CURRENT:?}", path.display());
        let statements =
            text.split("\n-- statement\n").map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        Ok(Variant { name, statements })
    }
}

/// One run of the measured batches on a copy.
#[derive(Clone, Debug, Serialize)]
pub struct VariantRun {
    /// The variant's name, or [`CURRENT`].
    pub variant: String,
    pub round: usize,
    /// Applying the variant's SQL to the copy (not part of the measured run).
    pub prepare_seconds: f64,
    pub events_per_sec: f64,
    pub cascade_wall_seconds: f64,
    pub merge_wall_seconds: f64,
    /// PostgreSQL's core-seconds per event, µs; `None` if its CPU could not be read.
    pub postgres_us_per_event: Option<f64>,
    pub wal_bytes_per_event: f64,
}

/// A copy of `s`'s database as it is now, to compare the variants on later.
pub struct Pristine {
    name: String,
}

pub async fn keep_copy(svc: &Services, s: &Scratch) -> Result<Pristine> {
    let name = format!("rps_bench_{}_pristine", svc.run_id);
    copy_database(svc, &s.name, &name).await?;
    Ok(Pristine { name })
}

/// Every variant and the current definitions, `plan.rounds` times, each on a fresh copy of
/// `pristine` (dropped afterwards); the order reverses every other round so that neither
/// side always runs first.
pub async fn compare(
    svc: &Services,
    pristine: Pristine,
    measured: &Workload,
    batch_size: usize,
    plan: &VariantPlan<'_>,
) -> Result<Vec<VariantRun>> {
    let current = Variant { name: CURRENT.to_owned(), statements: Vec::new() };
    let mut all: Vec<&Variant> = std::iter::once(&current).chain(plan.variants).collect();
    let mut runs = Vec::new();
    for round in 1..=plan.rounds.max(1) {
        for (i, variant) in all.iter().enumerate() {
            let tag = format!("variant{round}_{i}");
            eprintln!("bench: variant {} on a copy, round {round}", variant.name);
            copy_database(svc, &pristine.name, &format!("rps_bench_{}_{tag}", svc.run_id)).await?;
            runs.push(run_on_copy(svc, &tag, variant, round, measured, batch_size).await?);
        }
        all.reverse();
    }
    crate::admin::connect(&svc.pg_base)
        .await?
        .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", pristine.name))
        .await?;
    Ok(runs)
}

/// FILE_COPY: PostgreSQL 15's default strategy would write the whole database to the WAL.
async fn copy_database(svc: &Services, from: &str, to: &str) -> Result<()> {
    crate::admin::connect(&svc.pg_base)
        .await?
        .batch_execute(&format!("CREATE DATABASE \"{to}\" TEMPLATE \"{from}\" STRATEGY FILE_COPY"))
        .await
        .with_context(|| format!("copying database {from}"))
}

/// The measured batches on the copy made for `tag` (a scratch space of that tag), after
/// the variant's SQL.
async fn run_on_copy(
    svc: &Services,
    tag: &str,
    variant: &Variant,
    round: usize,
    measured: &Workload,
    batch_size: usize,
) -> Result<VariantRun> {
    let copy = svc.scratch(tag).await?;
    let prepare = Instant::now();
    for statement in &variant.statements {
        copy.client().await?.batch_execute(statement).await.with_context(|| format!("variant {}", variant.name))?;
    }
    let prepare_seconds = prepare.elapsed().as_secs_f64();
    settle(&copy).await?;
    let EngineRun { summary, cpu, wal_bytes_per_event, .. } = engine_run(svc, &copy, measured, batch_size).await?;
    svc.done(copy).await?;
    let wall = |stage| summary.stage_time.wall.get(stage).copied().unwrap_or(Duration::ZERO).as_secs_f64();
    let events = summary.events.max(1) as f64;
    Ok(VariantRun {
        variant: variant.name.clone(),
        round,
        prepare_seconds,
        events_per_sec: events / summary.elapsed.as_secs_f64().max(1e-9),
        cascade_wall_seconds: wall("cascade"),
        merge_wall_seconds: wall("merge"),
        postgres_us_per_event: cpu.and_then(|c| c.postgres).map(|p| p * 1e6 / events),
        wal_bytes_per_event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_is_named_by_its_file_and_split_at_statement_lines() {
        let dir = std::env::temp_dir().join(format!("rps-variant-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fillfactor85.sql");
        std::fs::write(&path, "ALTER TABLE term SET (fillfactor = 85);\nSELECT 1;\n-- statement\nVACUUM FULL term;\n")
            .unwrap();
        let v = Variant::load(&path).unwrap();
        assert_eq!(v.name, "fillfactor85");
        assert_eq!(v.statements, ["ALTER TABLE term SET (fillfactor = 85);\nSELECT 1;", "VACUUM FULL term;"]);

        let current = dir.join("current.sql");
        std::fs::write(&current, "SELECT 1").unwrap();
        let err = Variant::load(&current).unwrap_err().to_string();
        assert!(err.contains("may not be named \"current\""), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }
}
