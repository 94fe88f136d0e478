//! Chain reorganizations in the engine (README → Chain reorganizations): a batch's reorg
//! notices are recorded before its events (the first copy of a reorg retracts the orphaned
//! events, see `migrations/repeatable/reorg.sql`), and every batch transaction screens its
//! events for orphaned blocks before writing them.

use std::collections::HashSet;
use std::ops::Range;

use tokio_postgres::Transaction;
use tracing::{debug, info, warn};

use super::batch::{entry_position, Batch};
use crate::event::Event;
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
        if is_new {
            info!(
                reorg_id, network = %notice.network, fork_block = notice.fork_block, depth = notice.depth,
                events_retracted = retracted, %stream,
                "chain reorganization: retracted the network's events from the fork on"
            );
            metrics::counter!(telemetry::REORGS).increment(1);
            metrics::counter!(telemetry::EVENTS_RETRACTED).increment(retracted as u64);
            metrics::histogram!(telemetry::REORG_DEPTH).record(notice.depth as f64);
        } else {
            debug!(reorg_id, %stream, "another copy of a reorg notice");
        }
    }
    Ok(())
}

/// What screening left of a transaction's events.
pub struct Screened {
    /// The events to write, when some were dropped (`None`: all of them).
    pub kept: Option<Vec<Event>>,
    pub orphaned: usize,
}

/// One reorg barrier of one stream (see `reorg_barriers` in reorg.sql).
struct Barrier {
    reorg_id: i64,
    network: String,
    fork_block: i64,
    stream: String,
    before: (i64, i64),
}

/// Drop the events of `batch.events[range]` that belong to orphaned blocks: those of a block
/// already retracted, and those that precede their own stream's copy of a reorg notice while
/// lying at or above its fork. Takes the reorg lock in shared mode for the rest of `tx`, so
/// no notice is recorded between this screening and the commit. Blocks found orphaned here
/// are recorded, so a later copy of their events is dropped too.
pub async fn screen(tx: &Transaction<'_>, batch: &Batch, range: Range<usize>) -> Result<Screened, PgError> {
    let events = &batch.events[range.clone()];
    let min = events.iter().map(|e| e.tx.block_number).min().unwrap_or(0);
    let max = events.iter().map(|e| e.tx.block_number).max().unwrap_or(0);
    let rows = tx.query(sql::REORG_BARRIERS, &[&batch.streams, &batch.oldest_entry_ms, &min, &max]).await?;
    if rows.is_empty() {
        return Ok(Screened { kept: None, orphaned: 0 });
    }
    let mut barriers = Vec::new();
    let mut retracted: HashSet<(String, i64, String)> = HashSet::new();
    for row in &rows {
        let kind: &str = row.get(0);
        if kind == "retracted" {
            retracted.insert((row.get(2), row.get(3), row.get(4)));
        } else {
            let before = (row.get(6), row.get(7));
            barriers.push(Barrier {
                reorg_id: row.get(1),
                network: row.get(2),
                fork_block: row.get(3),
                stream: row.get(5),
                before,
            });
        }
    }
    let mut kept = Vec::with_capacity(events.len());
    let mut orphaned_blocks: Vec<(String, i64, String, i64)> = Vec::new();
    for (i, e) in range.zip(events) {
        let (stream, position) = batch.origin_of(i);
        let t = &e.tx;
        let barrier = barriers.iter().find(|b| {
            b.network == t.network && t.block_number >= b.fork_block && b.stream == stream && position < b.before
        });
        if let Some(b) = barrier {
            orphaned_blocks.push((t.network.clone(), t.block_number, t.block_hash.to_string(), b.reorg_id));
        } else if !retracted.contains(&(t.network.clone(), t.block_number, t.block_hash.to_string())) {
            kept.push(e.clone());
        }
    }
    let orphaned = events.len() - kept.len();
    if orphaned == 0 {
        return Ok(Screened { kept: None, orphaned });
    }
    orphaned_blocks.sort();
    orphaned_blocks.dedup();
    record_orphaned_blocks(tx, &orphaned_blocks).await?;
    warn!(orphaned, blocks = orphaned_blocks.len(), "dropping events of orphaned blocks (read after their reorg)");
    Ok(Screened { kept: Some(kept), orphaned })
}

async fn record_orphaned_blocks(tx: &Transaction<'_>, blocks: &[(String, i64, String, i64)]) -> Result<(), PgError> {
    if blocks.is_empty() {
        return Ok(());
    }
    let networks: Vec<&str> = blocks.iter().map(|b| b.0.as_str()).collect();
    let numbers: Vec<i64> = blocks.iter().map(|b| b.1).collect();
    let hashes: Vec<&str> = blocks.iter().map(|b| b.2.as_str()).collect();
    let reorgs: Vec<i64> = blocks.iter().map(|b| b.3).collect();
    tx.execute(sql::RECORD_ORPHANED_BLOCKS, &[&networks, &numbers, &hashes, &reorgs]).await?;
    Ok(())
}
