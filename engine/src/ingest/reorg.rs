//! Chain reorganizations in the engine (README → Chain reorganizations): a batch's reorg
//! notices are recorded before its events (the first copy of a reorg retracts the orphaned
//! events, see `migrations/repeatable/reorg.sql`), and every batch transaction screens its
//! events for orphaned blocks before writing them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Transaction;
use tracing::{debug, info, warn};

use super::batch::{entry_position, Batch};
use super::copy::{table_of, EVENT_TABLES};
use crate::event::{stream_key, Event, TxInfo};
use crate::pg::{sql, PgError, PgPool};
use crate::runtime::telemetry;

/// Record every notice copy of `batch`, in the order read, in one transaction under the
/// exclusive reorg lock. Idempotent: a redelivered copy is recognised by its entry id.
pub async fn record_notices(pool: &PgPool, batch: &Batch) -> Result<(), PgError> {
    if batch.notices.is_empty() {
        return Ok(());
    }
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let mut applied = Vec::new();
    for (notice, origin) in &batch.notices {
        let (stream, id) = &batch.acks[*origin as usize];
        let (ms, seq) = entry_position(id);
        let row = tx
            .query_one(
                sql::RECORD_REORG_NOTICE,
                &[
                    &notice.network,
                    stream,
                    &ms,
                    &seq,
                    &stream_key(stream),
                    &notice.fork_block,
                    &notice.depth,
                    &notice.events_deleted,
                    &notice.fingerprint,
                    &notice.body,
                ],
            )
            .await?;
        let (reorg_id, is_new, retracted): (i64, bool, i64) = (row.get(0), row.get(1), row.get(2));
        applied.push((notice, stream, reorg_id, is_new, retracted));
    }
    tx.commit().await?;
    for (notice, stream, reorg_id, is_new, retracted) in applied {
        metrics::counter!(telemetry::REORG_NOTICES).increment(1);
        metrics::counter!(telemetry::EVENTS_RETRACTED).increment(retracted as u64);
        if is_new {
            info!(
                reorg_id, network = %notice.network, fork_block = notice.fork_block, depth = notice.depth,
                events_retracted = retracted, %stream,
                "chain reorganization: retracted the network's events from the fork on"
            );
            metrics::counter!(telemetry::REORGS).increment(1);
            metrics::histogram!(telemetry::REORG_DEPTH).record(notice.depth as f64);
        } else {
            debug!(reorg_id, %stream, events_retracted = retracted, "another copy of a reorg notice");
        }
    }
    Ok(())
}

/// What screening left of a transaction's events.
pub struct Screened {
    /// The events to write, when some were dropped (`None`: all of them).
    pub kept: Option<Vec<Event>>,
    pub orphaned: usize,
    /// Stored blocks proven orphaned by a newer block at their height: the transaction must
    /// not go on; they are retracted ([`retract_blocks`]) and it is tried again.
    pub retract: Vec<Block>,
}

/// A block of a network: (network, number, hash, reorg id it is blamed on).
pub type Block = (String, i64, String, i64);

/// One reorg barrier of one stream (see `reorg_screening` in reorg.sql).
struct Barrier {
    reorg_id: i64,
    network: String,
    fork_block: i64,
    stream: String,
    before: (i64, i64),
    /// When the notice was published (its first copy's entry time): what ranks blocks.
    notice_ms: i64,
}

impl Barrier {
    /// Whether an event at `height` read from `stream` at `position` lies at or above the
    /// fork and precedes this barrier: it belongs to the old chain.
    fn holds_back(&self, network: &str, height: i64, stream: &str, position: (i64, i64)) -> bool {
        self.network == network && height >= self.fork_block && self.stream == stream && position < self.before
    }
}

/// Screen `batch.events[range]` for orphaned blocks (README → Chain reorganizations), under
/// the reorg lock taken in shared mode for the rest of `tx` (no notice is recorded between
/// this screening and the commit):
///  1. events of blocks already retracted are dropped, and so is an event at or above a
///     reorg's fork that precedes its own stream's copy of the notice (the old chain);
///  2. near a recent fork (from one block below it, since rindexer's fork_block can be one
///     too high), a height held under two block hashes is an orphan proof: the block of
///     lower rank loses (see [`Reorgs::rank`]); a stored block that loses comes back in
///     [`Screened::retract`], for the caller to retract before trying again;
///  3. later copies of the blocks dropped here are dropped too.
///
/// Blocks dropped here are recorded, so that a later copy of their events is dropped too.
pub async fn screen(tx: &Transaction<'_>, batch: &Batch, range: Range<usize>) -> Result<Screened, PgError> {
    let events = &batch.events[range.clone()];
    let min = events.iter().map(|e| e.tx.block_number).min().unwrap_or(0);
    let max = events.iter().map(|e| e.tx.block_number).max().unwrap_or(0);
    let rows = tx.query(sql::REORG_BARRIERS, &[&batch.streams, &batch.oldest_entry_ms, &min, &max]).await?;
    let reorgs = Reorgs::from_rows(&rows);
    if reorgs.barriers.is_empty() && reorgs.retracted.is_empty() {
        return Ok(Screened { kept: None, orphaned: 0, retract: Vec::new() });
    }
    let (barriers, retracted) = (&reorgs.barriers, &reorgs.retracted);
    let origins: Vec<(&str, (i64, i64))> = range.map(|i| batch.origin_of(i)).collect();
    let mut dropped = vec![false; events.len()];
    let mut orphans: BTreeSet<Block> = BTreeSet::new();
    for (i, e) in events.iter().enumerate() {
        let (stream, position) = origins[i];
        let t = &e.tx;
        if retracted.contains(&(t.network.clone(), t.block_number, t.block_hash.to_string())) {
            dropped[i] = true;
        } else if let Some(b) = barriers.iter().find(|b| b.holds_back(&t.network, t.block_number, stream, position)) {
            dropped[i] = true;
            orphans.insert((t.network.clone(), t.block_number, t.block_hash.to_string(), b.reorg_id));
        }
    }
    let mut retract = orphan_proofs(tx, events, &origins, &reorgs, &mut dropped, &mut orphans).await?;
    // A block is orphaned whole: copies of its events that another engine applied already
    // (they came after their stream's copy of the notice, as duplicates) are retracted too.
    retract.extend(stored_among(tx, &orphans).await?);
    let mut kept = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let t = &e.tx;
        let orphan = orphans.iter().any(|o| o.1 == t.block_number && o.2 == t.block_hash.as_str() && o.0 == t.network);
        if !dropped[i] && !orphan {
            kept.push(e.clone());
        }
    }
    let orphaned = events.len() - kept.len();
    let orphans: Vec<Block> = orphans.into_iter().collect();
    record_orphaned_blocks(tx, &orphans).await?;
    if orphaned > 0 {
        warn!(orphaned, blocks = orphans.len(), "dropping events of orphaned blocks (read after their reorg)");
    }
    Ok(Screened { kept: (orphaned > 0).then_some(kept), orphaned, retract })
}

/// What `reorg_screening` returned: the recent reorgs' barriers, the blocks already
/// retracted, and what ranks blocks besides the barriers.
#[derive(Default)]
struct Reorgs {
    barriers: Vec<Barrier>,
    retracted: HashSet<(String, i64, String)>,
    /// Older reorgs every entry of the batch passed: (network, fork_block, notice time).
    passed: Vec<(String, i64, i64)>,
    /// Per network, the notice time of the latest older reorg covering every height.
    baseline: HashMap<String, i64>,
}

impl Reorgs {
    fn from_rows(rows: &[tokio_postgres::Row]) -> Reorgs {
        let mut r = Reorgs::default();
        for row in rows {
            match row.get::<_, &str>(0) {
                "retracted" => drop(r.retracted.insert((row.get(2), row.get(3), row.get(4)))),
                "passed" => r.passed.push((row.get(2), row.get(3), row.get(8))),
                "baseline" => drop(r.baseline.insert(row.get(2), row.get(8))),
                _ => r.barriers.push(Barrier {
                    reorg_id: row.get(1),
                    network: row.get(2),
                    fork_block: row.get(3),
                    stream: row.get(5),
                    before: (row.get(6), row.get(7)),
                    notice_ms: row.get(8),
                }),
            }
        }
        r
    }

    /// An event's rank near forks: the notice time of the latest reorg whose fork_block is
    /// at most one above its height and that its own stream had passed when it was read (0:
    /// none), as `stored_blocks` (reorg.sql) ranks logged blocks. Of two blocks at one
    /// height, the higher rank was published after a later reorg: it is the newer chain.
    /// Notice times, not reorg ids: several engines can record notices out of order.
    fn rank(&self, t: &TxInfo, (stream, position): (&str, (i64, i64))) -> i64 {
        let covers = |network: &str, fork: i64| network == t.network && t.block_number >= fork - 1;
        let recent = self
            .barriers
            .iter()
            .filter(|b| b.stream == stream && covers(&b.network, b.fork_block) && position >= b.before)
            .map(|b| b.notice_ms);
        let older = self.passed.iter().filter(|(n, fork, _)| covers(n, *fork)).map(|(_, _, id)| *id);
        let baseline = self.baseline.get(&t.network).copied();
        recent.chain(older).chain(baseline).max().unwrap_or(0)
    }
}

/// Step 2 of [`screen`]. Marks the events that lose in `dropped` (their blocks into
/// `orphans`) and returns the stored blocks that lose.
async fn orphan_proofs(
    tx: &Transaction<'_>,
    events: &[Event],
    origins: &[(&str, (i64, i64))],
    reorgs: &Reorgs,
    dropped: &mut [bool],
    orphans: &mut BTreeSet<Block>,
) -> Result<Vec<Block>, PgError> {
    let barriers = &reorgs.barriers;
    let near = |t: &TxInfo| barriers.iter().find(|b| b.network == t.network && t.block_number >= b.fork_block - 1);
    let candidates: Vec<usize> = (0..events.len()).filter(|&i| !dropped[i] && near(&events[i].tx).is_some()).collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // Every hash at each candidate height: (rank, stored), from the batch and the log.
    let mut heights: HashMap<(String, i64), BTreeMap<String, (i64, bool)>> = HashMap::new();
    for &i in &candidates {
        let t = &events[i].tx;
        let r = reorgs.rank(t, origins[i]);
        let slot = heights.entry((t.network.clone(), t.block_number)).or_default();
        // A block ranks as its earliest-ranked event: later copies are duplicates.
        let entry = slot.entry(t.block_hash.to_string()).or_insert((r, false));
        entry.0 = entry.0.min(r);
    }
    let networks: BTreeSet<String> = heights.keys().map(|(n, _)| n.clone()).collect();
    for network in networks {
        let wanted: Vec<i64> = heights.keys().filter(|(n, _)| *n == network).map(|(_, h)| *h).collect();
        for row in tx.query(sql::STORED_BLOCKS, &[&network, &wanted]).await? {
            let (height, hash, r): (i64, String, i64) = (row.get(0), row.get(1), row.get(2));
            let entry = heights.entry((network.clone(), height)).or_default().entry(hash).or_insert((r, true));
            *entry = (entry.0.min(r), true);
        }
    }
    let mut retract = BTreeSet::new();
    for i in candidates {
        let t = &events[i].tx;
        let reorg_id = near(t).map_or(0, |b| b.reorg_id);
        let hashes = &heights[&(t.network.clone(), t.block_number)];
        let mine = hashes[t.block_hash.as_str()].0;
        let others = hashes.iter().filter(|(h, _)| h.as_str() != t.block_hash.as_str());
        if others.clone().any(|(_, (r, _))| *r > mine) {
            dropped[i] = true;
            orphans.insert((t.network.clone(), t.block_number, t.block_hash.to_string(), reorg_id));
            continue;
        }
        // A tie is left alone: no reorg known yet tells the two apart. With several engines
        // that reorg's notice can still be on its way, and its retraction then takes the
        // block that preceded it; without notices both stay (README → Limits).
        for (hash, _) in others.filter(|(_, (r, stored))| *stored && *r < mine) {
            retract.insert((t.network.clone(), t.block_number, hash.clone(), reorg_id));
        }
    }
    Ok(retract.into_iter().collect())
}

/// Those of `blocks` that the log holds.
async fn stored_among(tx: &Transaction<'_>, blocks: &BTreeSet<Block>) -> Result<Vec<Block>, PgError> {
    let mut stored = Vec::new();
    let networks: BTreeSet<&String> = blocks.iter().map(|b| &b.0).collect();
    for network in networks {
        let heights: Vec<i64> = blocks.iter().filter(|b| &b.0 == network).map(|b| b.1).collect();
        for row in tx.query(sql::STORED_BLOCKS, &[network, &heights]).await? {
            let (height, hash): (i64, String) = (row.get(0), row.get(1));
            if let Some(b) = blocks.iter().find(|b| &b.0 == network && b.1 == height && b.2 == hash) {
                stored.push(b.clone());
            }
        }
    }
    Ok(stored)
}

/// Retract stored blocks an orphan proof found, each in its own transaction under the
/// exclusive reorg lock.
pub async fn retract_blocks(pool: &PgPool, blocks: &[Block]) -> Result<(), PgError> {
    let mut conn = pool.get().await?;
    for (network, height, hash, reorg_id) in blocks {
        let tx = conn.transaction().await?;
        let n: i64 = tx.query_one(sql::RETRACT_ORPHANED_BLOCK, &[network, height, hash, reorg_id]).await?.get(0);
        tx.commit().await?;
        info!(%network, block = height, %hash, events_retracted = n, "orphan proof: a newer block at the same height retracted this one");
        metrics::counter!(telemetry::EVENTS_RETRACTED).increment(n as u64);
    }
    Ok(())
}

/// Least time between the starts of two prunes. A prune costs about as much whether it
/// removes anything or not (it is planned and looks at the old bases each time: 4 ms on a
/// slow 2-core VM), and a base only becomes prunable a window of blocks after its key's
/// last event, so pruning after every one of 25 live batches a second spent PostgreSQL CPU
/// the batches needed, for bases that could as well go a second later.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Prunes reorg bases (`retract.sql`) after live batches, in the background, in a
/// transaction of its own that the next batch's transactions never wait for long; one prune
/// at a time, at most one per [`PRUNE_EVERY`]. A prune spawned after every batch whatever
/// the last one was doing could pile up behind a busy server, each waiting for a pooled
/// connection ahead of the writer's next batch. A batch whose prune is skipped loses
/// nothing: the next prune removes whatever it would have (and a failure leaves them for
/// later), and correctness never needs a base.
pub struct Pruner {
    pool: PgPool,
    running: Arc<AtomicBool>,
    last_started: Option<Instant>,
}

impl Pruner {
    pub fn new(pool: PgPool) -> Pruner {
        Pruner { pool, running: Arc::new(AtomicBool::new(false)), last_started: None }
    }

    /// Prune after `batch`, unless a prune is still running or one started less than
    /// [`PRUNE_EVERY`] ago.
    pub fn after(&mut self, batch: &Batch) {
        if self.last_started.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return;
        }
        // The highest block per event table: each stream runs at its own pace.
        let mut tops = [None; EVENT_TABLES.len()];
        for e in &batch.events {
            let top = &mut tops[table_of(&e.kind)];
            *top = Some(top.map_or(e.tx.block_number, |t: i64| t.max(e.tx.block_number)));
        }
        let (tables, tops): (Vec<&str>, Vec<i64>) =
            EVENT_TABLES.iter().zip(tops).filter_map(|(table, top)| Some((*table, top?))).unzip();
        if tables.is_empty() || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.last_started = Some(Instant::now());
        let (pool, running) = (self.pool.clone(), Running(self.running.clone()));
        tokio::spawn(async move {
            let _running = running;
            let pruned = async {
                Ok::<_, PgError>(pool.get().await?.query_one(sql::PRUNE_REORG_BASES, &[&tables, &tops]).await?)
            };
            match pruned.await {
                Ok(row) => debug!(pruned = row.get::<_, i64>(0), "reorg bases pruned"),
                Err(e) => warn!(error = %e, "pruning reorg bases failed; left for a later batch"),
            }
        });
    }
}

/// Marks the prune finished when dropped, however its task ends.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Record orphaned blocks (network, number, hash, reorg id).
async fn record_orphaned_blocks(tx: &Transaction<'_>, blocks: &[Block]) -> Result<(), PgError> {
    if blocks.is_empty() {
        return Ok(());
    }
    let networks: Vec<&str> = blocks.iter().map(|b| b.0.as_str()).collect();
    let numbers: Vec<i64> = blocks.iter().map(|b| b.1).collect();
    let hashes: Vec<&str> = blocks.iter().map(|b| b.2.as_str()).collect();
    let fourth: Vec<i64> = blocks.iter().map(|b| b.3).collect();
    tx.execute(sql::RECORD_ORPHANED_BLOCKS, &[&networks, &numbers, &hashes, &fourth]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prune's task that ends, even by panicking, lets the next batch prune again.
    #[test]
    fn a_finished_or_failed_prune_lets_the_next_one_run() {
        let running = Arc::new(AtomicBool::new(true));
        drop(Running(running.clone()));
        assert!(!running.load(Ordering::Acquire), "a finished prune still counted as running");
        running.store(true, Ordering::Release);
        let guard = Running(running.clone());
        let panicked = std::panic::catch_unwind(move || {
            let _guard = guard;
            panic!("the prune's task failed");
        });
        assert!(panicked.is_err());
        assert!(!running.load(Ordering::Acquire), "a panicked prune still counted as running");
    }
}
