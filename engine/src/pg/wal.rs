//! The write-ahead log's positions, and a barrier that flushes it: what proves an
//! asynchronous commit durable (see `ingest::durable`).

use postgres_types::PgLsn;
use tokio_postgres::Client;

use super::sql;

/// A position past every commit made so far (the insert position), and the position flushed
/// to disk.
pub async fn positions(client: &Client) -> Result<(PgLsn, PgLsn), tokio_postgres::Error> {
    let row = client.query_one(sql::WAL_POSITIONS, &[]).await?;
    Ok((row.get(0), row.get(1)))
}

/// Flush every commit made so far on this server: a synchronous commit of a transaction that
/// writes WAL (one that writes none is not flushed however it commits).
pub async fn barrier(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(sql::WAL_BARRIER).await
}
