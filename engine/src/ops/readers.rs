//! Readers: which relations the `readers` schema's views read, the maintained tables or the
//! `snapshot` reference views (migrations/repeatable/readers.sql). This is the rollback path:
//! applications query `readers.*`, and an operator flips them to the full-recompute views
//! when the maintained tables are in doubt, then back once they are trusted again. Neither
//! direction touches the event log or stops the engine.

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use tokio_postgres::Client;

use super::verify::{self, TableDiff};
use crate::pg::sql;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReaderSource {
    /// The `snapshot` reference views: recomputed from the event log on every query.
    Reference,
    /// The incrementally maintained tables (normal operation).
    Maintained,
}

/// Where each reader view reads from now, as (table, "public" | "snapshot" | "missing").
pub async fn sources(client: &Client) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(sql::READERS_SOURCES, &[])
        .await
        .context("reading readers_sources() (has the engine been started on this database?)")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// "maintained", "reference" or "mixed".
pub async fn mode(client: &Client) -> Result<String> {
    Ok(client.query_one(sql::READERS_MODE, &[]).await.context("readers_mode()")?.get(0))
}

/// Point `tables` (all when empty) at `to` in one transaction; returns the new mode.
pub async fn switch(client: &Client, to: ReaderSource, tables: &[String]) -> Result<String> {
    let tables: Option<Vec<String>> = (!tables.is_empty()).then(|| tables.to_vec());
    let statement = match to {
        ReaderSource::Reference => sql::USE_REFERENCE_VIEWS,
        ReaderSource::Maintained => sql::USE_MAINTAINED_TABLES,
    };
    let row = client.query_one(statement, &[&tables]).await.with_context(|| format!("{statement} failed"))?;
    Ok(row.get(0))
}

/// Before readers go back to the maintained tables: those tables must equal their reference
/// views, or the switch would hand readers the very state that caused the rollback.
pub async fn check_maintained(client: &Client, tables: &[String]) -> Result<Vec<TableDiff>> {
    let all = all_tables(client).await?;
    let selected: Vec<&str> = if tables.is_empty() {
        all.iter().map(String::as_str).collect()
    } else {
        for t in tables {
            if !all.contains(t) {
                bail!("unknown reader table {t}; expected some of {}", all.join(", "));
            }
        }
        tables.iter().map(String::as_str).collect()
    };
    Ok(verify::compare_all(client, &selected).await?)
}

async fn all_tables(client: &Client) -> Result<Vec<String>> {
    Ok(client.query_one(sql::READER_TABLES, &[]).await.context("reader_tables()")?.get(0))
}
