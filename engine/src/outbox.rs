//! Outbox: hand the terms each batch touched to the analytics tier without ever losing
//! them. Rows are written inside the batch's transaction ([`record`]); [`publish`] moves
//! them to the `term_updates` stream in a transaction of its own that deletes exactly the
//! rows it sent, so a crash anywhere leaves them to be sent again (at-least-once; the
//! analytics worker's recompute is idempotent).

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use redis::aio::ConnectionLike;
use tokio_postgres::Transaction;

use crate::db::PgPool;
use crate::sql;

/// Term ids per published entry, so one entry stays well under a megabyte.
pub const IDS_PER_ENTRY: usize = 1000;
/// Outbox rows drained per publish transaction.
const ROWS_PER_PUBLISH: i64 = 500;

/// Write the batch's term ids to the outbox, inside the batch's transaction.
pub async fn record(tx: &Transaction<'_>, term_ids: &[String]) -> Result<()> {
    if !term_ids.is_empty() {
        tx.execute(sql::OUTBOX_INSERT, &[&term_ids]).await?;
    }
    Ok(())
}

/// Publish everything in the outbox; returns the number of distinct term ids sent.
pub async fn publish(pool: &PgPool, redis: &mut (impl ConnectionLike + Send), stream: &str) -> Result<usize> {
    let mut sent = 0;
    loop {
        let n = publish_some(pool, redis, stream).await?;
        if n == 0 {
            return Ok(sent);
        }
        sent += n;
    }
}

async fn publish_some(pool: &PgPool, redis: &mut (impl ConnectionLike + Send), stream: &str) -> Result<usize> {
    let mut conn = pool.get().await.context("no PostgreSQL connection available")?;
    let tx = conn.transaction().await?;
    // SKIP LOCKED: engines publishing at once each take different rows.
    let rows = tx.query(sql::OUTBOX_CLAIM, &[&ROWS_PER_PUBLISH]).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut terms = BTreeSet::new();
    let mut oldest_ms = i64::MAX;
    for row in &rows {
        ids.push(row.get::<_, i64>(0));
        terms.extend(row.get::<_, Vec<String>>(1));
        oldest_ms = oldest_ms.min(row.get::<_, i64>(2));
    }
    let terms: Vec<String> = terms.into_iter().collect();
    let mut pipe = redis::pipe();
    for chunk in terms.chunks(IDS_PER_ENTRY) {
        let json = serde_json::to_string(chunk)?;
        pipe.xadd(stream, "*", &[("term_ids", json.as_str()), ("committed_at_ms", &oldest_ms.to_string())]).ignore();
    }
    let _: () = pipe.query_async(redis).await?;
    tx.execute(sql::OUTBOX_DELETE, &[&ids]).await?;
    tx.commit().await?;
    Ok(terms.len())
}

/// Test-only crash points: `RPS_CRASH_POINT=<name>` aborts the process there, so tests
/// can prove that what committed before a crash is not lost.
pub fn crash_point(name: &str) {
    if std::env::var("RPS_CRASH_POINT").is_ok_and(|v| v == name) {
        eprintln!("RPS_CRASH_POINT={name}: aborting");
        std::process::abort();
    }
}
