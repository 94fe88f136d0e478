//! Merge: staged events into the event log under the batch's term locks. The
//! statement-level triggers (migrations/V3) fold the truly new events into level 1.

use anyhow::Result;
use postgres_types::ToSql;
use tokio_postgres::Transaction;

use crate::sql;

/// Take the advisory locks of every term the batch touches, in one global order, so
/// concurrent engines serialize on shared terms instead of deadlocking.
pub async fn lock_terms<T: ToSql + Sync>(tx: &Transaction<'_>, term_ids: &[T]) -> Result<()> {
    tx.execute(sql::LOCK_TERMS, &[&term_ids]).await?;
    Ok(())
}

/// `INSERT … SELECT … ON CONFLICT DO NOTHING` from each staged table into its event table.
pub async fn merge_staged(tx: &Transaction<'_>, tables: &[&str]) -> Result<()> {
    if !tables.is_empty() {
        tx.execute(sql::MERGE_STAGED, &[&tables]).await?;
    }
    Ok(())
}
