//! What a measurement costs in storage: WAL written (server-wide, so the bench should run
//! alone on its server) and the size of the tables afterwards.

use anyhow::Result;
use serde::Serialize;
use tokio_postgres::Client;

use rps::ingest::copy::EVENT_TABLES;
use rps::ops::verify::DERIVED_TABLES;

/// The server's WAL position at the start of a measurement.
pub struct WalMark(String);

impl WalMark {
    pub async fn now(client: &Client) -> Result<WalMark> {
        Ok(WalMark(client.query_one("SELECT pg_current_wal_lsn()::text", &[]).await?.get(0)))
    }

    /// WAL bytes written since the mark (by everyone on the server).
    pub async fn bytes_since(&self, client: &Client) -> Result<u64> {
        let row = client
            .query_one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint", &[&self.0])
            .await?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }
}

/// Sizes after a measurement, MiB.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Sizes {
    /// The event log's heap (with TOAST).
    pub event_tables_mib: f64,
    /// The event log's indexes (its keys).
    pub event_indexes_mib: f64,
    /// Levels 1-3, heap and indexes.
    pub state_mib: f64,
}

pub async fn sizes(client: &Client) -> Result<Sizes> {
    let sum = |tables: &[&str], what: &str| {
        let list = tables.iter().map(|t| format!("{what}('public.{t}')")).collect::<Vec<_>>().join(" + ");
        format!("({list})::float8 / 1048576")
    };
    let sql = format!(
        "SELECT {}, {}, {}",
        sum(&EVENT_TABLES, "pg_table_size"),
        sum(&EVENT_TABLES, "pg_indexes_size"),
        sum(&DERIVED_TABLES, "pg_total_relation_size")
    );
    let row = client.query_one(&sql, &[]).await?;
    Ok(Sizes { event_tables_mib: row.get(0), event_indexes_mib: row.get(1), state_mib: row.get(2) })
}
