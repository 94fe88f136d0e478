//! Where PostgreSQL's time goes inside an engine run: `pg_stat_statements` with
//! `track = all`, so the statements the merge and cascade triggers and the batch functions
//! run are counted each on its own, not only the engine's top-level calls. Asked for with
//! `--statement-profile`; the tuned private cluster then loads the library. Off by default:
//! tracking every nested statement costs CPU the headline figures should not pay.

use anyhow::Result;
use serde::Serialize;

use super::scratch::Scratch;

/// What the tuned cluster adds to its `postgresql.conf` for a statement profile.
pub const PROFILE_SETTINGS: [(&str, &str); 2] =
    [("shared_preload_libraries", "pg_stat_statements"), ("pg_stat_statements.track", "all")];

/// Statements kept per profile, by total execution time.
const TOP: i64 = 12;

/// One statement of a profile.
#[derive(Clone, Debug, Serialize)]
pub struct Statement {
    /// The normalized text, whitespace collapsed, cut at 160 characters.
    pub query: String,
    /// Run from inside a function or trigger (`toplevel` false), or by the engine itself.
    pub nested: bool,
    pub calls: i64,
    pub total_ms: f64,
    pub rows: i64,
    /// Shared buffers read from outside the buffer pool (the OS cache or disk).
    pub blocks_read: i64,
    pub blocks_hit: i64,
    pub wal_bytes: f64,
}

/// Reset the counters of `s`'s database; false (nothing done) when `pg_stat_statements` is
/// not loaded.
pub async fn reset(s: &Scratch) -> Result<bool> {
    let client = s.client().await?;
    let loaded: bool = client
        .query_one(
            "SELECT 'pg_stat_statements' = ANY(regexp_split_to_array(current_setting('shared_preload_libraries'), '\\s*,\\s*'))",
            &[],
        )
        .await?
        .get(0);
    if !loaded {
        return Ok(false);
    }
    client.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await?;
    client
        .execute(
            "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
            &[],
        )
        .await?;
    Ok(true)
}

/// The top statements of `s`'s database since [`reset`], by total execution time. Nested
/// statements are also inside their caller's time, so the times do not add up.
pub async fn top(s: &Scratch) -> Result<Vec<Statement>> {
    let client = s.client().await?;
    let rows = client
        .query(
            "SELECT regexp_replace(query, '\\s+', ' ', 'g'), NOT toplevel, calls, total_exec_time, rows,
                    shared_blks_read, shared_blks_hit, wal_bytes::float8
               FROM pg_stat_statements
              WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND query NOT LIKE '%pg_stat_statements%'
              ORDER BY total_exec_time DESC LIMIT $1",
            &[&TOP],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Statement {
            query: r.get::<_, String>(0).chars().take(160).collect(),
            nested: r.get(1),
            calls: r.get(2),
            total_ms: r.get(3),
            rows: r.get(4),
            blocks_read: r.get(5),
            blocks_hit: r.get(6),
            wal_bytes: r.get(7),
        })
        .collect())
}
