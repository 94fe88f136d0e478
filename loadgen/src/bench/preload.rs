//! Filling a scaling run's database with millions of events, in bounded memory.
//!
//! The preload streams: it is generated, decoded, encoded and COPYed in slices of
//! `slice_events` events, so memory is bounded by a few slices whatever the size (the whole
//! 5M-event workload at once took 16 GB). A producer thread generates, decodes and encodes
//! the next slice while this task COPYs the current one (at most one slice waits between
//! them), with triggers off. The derived tables are then built once, from their reference
//! views, and the database is vacuumed and analysed.
//!
//! Each slice is a chain segment of its own: its blocks come strictly after the previous
//! slice's, and it creates its own atoms and triples (numbered after the earlier slices'
//! atoms, so every term is new, see [`generate_slice`]) and its own accounts; its deposits
//! and redeems reference only its own terms. So the universe grows with the size (about 2,000
//! atoms, 5,000 triples and 1,000 accounts per 250k-event slice) instead of one universe
//! spanning the whole preload; a term's vault activity stays within one slice.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rps::ingest::copy::EncodedTable;
use rps::ops::verify::DERIVED_TABLES;
use serde::Serialize;
use tokio::sync::mpsc;

use super::measure::{copy_raw, decode_all, encode_chunks, set_triggers};
use super::scratch::Scratch;
use crate::workload::{generate_slice, Workload, WorkloadConfig};

/// Events per slice unless `--preload-slice-events` says otherwise: about 1 GB of memory
/// per slice in flight (JSON, decoded and encoded forms).
pub const DEFAULT_SLICE_EVENTS: usize = 250_000;

/// Events per COPY transaction of the preload.
const EVENTS_PER_TRANSACTION: usize = 100_000;

/// Events per message of the preload (as the backfill workload).
const EVENTS_PER_MESSAGE: usize = 50;

/// What to preload.
#[derive(Clone, Copy, Debug)]
pub struct PreloadPlan {
    pub events: usize,
    /// Slice `i` is generated with seed `seed + i`.
    pub seed: u64,
    pub slice_events: usize,
    /// Through the engine ([`super::grow`]) rather than by COPY.
    pub through_engine: bool,
}

/// How the preload went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Preloaded {
    pub events: u64,
    pub slices: usize,
    /// The last block of the preload (0 when empty); the measured events come later.
    pub last_block: u64,
    /// Wall time of the whole preload: slices (generation overlapping the COPY), derived
    /// tables, VACUUM ANALYZE.
    pub seconds: f64,
    /// Of which COPY transactions.
    pub copy_seconds: f64,
    /// Of which waiting for the generator (the first slice, or a generator slower than COPY).
    pub generate_wait_seconds: f64,
    /// Of which building the derived tables from the reference views and VACUUM ANALYZE
    /// (through the engine: the level-3 tables only).
    pub derive_seconds: f64,
    /// Written by the engine, slice by slice (`--preload-through-engine`, [`super::grow`]),
    /// rather than COPYed.
    pub through_engine: bool,
    /// Of `seconds`, the engine's runs (through the engine only; the rest is generating
    /// the slices, XADDing them and trimming the streams).
    pub engine_seconds: f64,
}

/// One slice, ready to COPY.
struct Slice {
    chunks: Vec<Vec<EncodedTable>>,
    events: u64,
    last_block: u64,
}

/// Preload `plan.events` events into `s`'s database (see the module doc).
pub async fn preload(s: &Scratch, plan: PreloadPlan) -> Result<Preloaded> {
    let mut out = Preloaded::default();
    if plan.events == 0 {
        return Ok(out);
    }
    let started = Instant::now();
    let mut client = s.client().await?;
    client.batch_execute(rps::pg::sql::SESSION_SETUP).await?;
    set_triggers(&client, false).await?;
    let (tx, mut rx) = mpsc::channel::<Slice>(1);
    let producer = tokio::task::spawn_blocking(move || produce(plan, tx));
    let mut copy = Duration::ZERO;
    loop {
        let waiting = Instant::now();
        let Some(slice) = rx.recv().await else { break };
        out.generate_wait_seconds += waiting.elapsed().as_secs_f64();
        copy += copy_raw(&mut client, &slice.chunks).await?;
        out.events += slice.events;
        out.slices += 1;
        out.last_block = out.last_block.max(slice.last_block);
    }
    producer.await.context("the preload generator panicked")?;
    anyhow::ensure!(out.events == plan.events as u64, "preloaded {} of {} events", out.events, plan.events);
    out.copy_seconds = copy.as_secs_f64();
    set_triggers(&client, true).await?;
    let derive = Instant::now();
    derive_from_views(&client, &DERIVED_TABLES).await?;
    out.derive_seconds = derive.elapsed().as_secs_f64();
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// Fill `tables` from their reference views, then vacuum and analyse the database: what a
/// preload does after its events are stored.
pub(super) async fn derive_from_views(client: &tokio_postgres::Client, tables: &[&str]) -> Result<()> {
    for t in tables {
        client.batch_execute(&format!("INSERT INTO public.{t} SELECT * FROM snapshot.{t}")).await?;
    }
    client.batch_execute("VACUUM ANALYZE").await?;
    Ok(())
}

/// Generate, decode and encode every slice in turn; stops early when the receiver is gone.
fn produce(plan: PreloadPlan, tx: mpsc::Sender<Slice>) {
    for workload in SliceWorkloads::new(plan) {
        let last_block = workload.stats.last_block;
        let batch = decode_all(&workload);
        drop(workload);
        let slice = Slice {
            chunks: encode_chunks(&batch, EVENTS_PER_TRANSACTION),
            events: batch.events.len() as u64,
            last_block,
        };
        drop(batch);
        if tx.blocking_send(slice).is_err() {
            return;
        }
    }
}

/// The slices of a plan as workloads, generated one at a time, in chain order: each slice's
/// blocks follow the previous slice's, its atoms are numbered after theirs.
pub(super) struct SliceWorkloads {
    plan: PreloadPlan,
    sizes: std::iter::Enumerate<std::vec::IntoIter<usize>>,
    next_block: u64,
    atoms: usize,
}

impl SliceWorkloads {
    pub(super) fn new(plan: PreloadPlan) -> SliceWorkloads {
        let sizes: Vec<usize> = slice_sizes(plan.events, plan.slice_events).collect();
        SliceWorkloads {
            plan,
            sizes: sizes.into_iter().enumerate(),
            next_block: WorkloadConfig::default().start_block,
            atoms: 0,
        }
    }
}

impl Iterator for SliceWorkloads {
    type Item = Workload;

    fn next(&mut self) -> Option<Workload> {
        let (i, events) = self.sizes.next()?;
        let workload = slice_workload(events, self.plan.seed + i as u64, self.next_block, self.atoms);
        self.next_block = workload.stats.last_block + 1;
        self.atoms += workload.stats.atoms;
        Some(workload)
    }
}

/// Sizes of the slices of `total` events: full slices, then the rest.
fn slice_sizes(total: usize, slice: usize) -> impl Iterator<Item = usize> {
    let slice = slice.max(1);
    (0..total.div_ceil(slice)).map(move |i| slice.min(total - i * slice))
}

/// One slice's workload, from `start_block` on, its atoms numbered from `first_atom`; its
/// clock continues the first slice's (block time per block since the default start).
fn slice_workload(events: usize, seed: u64, start_block: u64, first_atom: usize) -> Workload {
    let mut config = super::workload_config(events, seed, EVENTS_PER_MESSAGE, start_block);
    let d = WorkloadConfig::default();
    config.start_timestamp = d.start_timestamp + start_block.saturating_sub(d.start_block) * d.block_time_secs;
    generate_slice(&config, first_atom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_total() {
        assert_eq!(slice_sizes(0, 10).collect::<Vec<_>>(), Vec::<usize>::new());
        assert_eq!(slice_sizes(25, 10).collect::<Vec<_>>(), [10, 10, 5]);
        assert_eq!(slice_sizes(20, 10).collect::<Vec<_>>(), [10, 10]);
        assert_eq!(slice_sizes(3, 0).collect::<Vec<_>>(), [1, 1, 1]);
    }

    /// Consecutive slices are consecutive chain segments.
    #[test]
    fn slices_follow_each_other_on_chain() {
        let a = slice_workload(2_000, 1, 100, 0);
        let b = slice_workload(2_000, 2, a.stats.last_block + 1, a.stats.atoms);
        assert_eq!(a.stats.first_block, 100);
        assert_eq!(b.stats.first_block, a.stats.last_block + 1);
        assert_eq!(a.stats.events + b.stats.events, 4_000);
    }
}
