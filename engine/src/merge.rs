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

/// A part of a batch found the transaction holding the batch's locks gone (its connection
/// lost): another engine may since have locked the same terms, so the part must not commit.
#[derive(Debug, thiserror::Error)]
#[error("the batch's lock holder (backend {pid}) no longer holds its locks; the part rolls back")]
pub struct LockHolderLost {
    pub pid: i32,
}

/// The backend of the transaction that will hold a batch's locks.
pub async fn backend_pid(tx: &Transaction<'_>) -> Result<i32> {
    Ok(tx.query_one(sql::BACKEND_PID, &[]).await?.get(0))
}

/// Checked by each part just before its commit: `Err(LockHolderLost)` unless backend
/// `holder` still holds advisory locks. The locks die with the holder's connection, so this
/// narrows the time a part could commit unprotected from its whole run to the instant
/// between this check and its COMMIT.
pub async fn ensure_holder_locks(tx: &Transaction<'_>, holder: i32) -> Result<()> {
    let holds: bool = tx.query_one(sql::HOLDS_ADVISORY_LOCKS, &[&holder]).await?.get(0);
    if holds {
        Ok(())
    } else {
        Err(LockHolderLost { pid: holder }.into())
    }
}

/// `INSERT … SELECT … ON CONFLICT DO NOTHING` from each staged table into its event table.
pub async fn merge_staged(tx: &Transaction<'_>, tables: &[&str]) -> Result<()> {
    if !tables.is_empty() {
        tx.execute(sql::MERGE_STAGED, &[&tables]).await?;
    }
    Ok(())
}
