//! Cascade: level 2 (term rows and totals) once per batch for its distinct terms.
//! `vault.position_count` is already moved incrementally by the position merge, so the
//! cascade costs the number of terms, never the size of a vault.

use anyhow::Result;
use tokio_postgres::Transaction;

use crate::sql;

pub async fn cascade_terms(tx: &Transaction<'_>, term_ids: &[String]) -> Result<()> {
    if !term_ids.is_empty() {
        tx.execute(sql::CASCADE_TERMS, &[&term_ids]).await?;
    }
    Ok(())
}
