//! Verify: compare every maintained table with its reference view in the `snapshot`
//! schema (a full recompute from the event log). Used by tests, benchmarks and operators.

use tokio_postgres::Client;

use crate::pg::sql;

/// Level 1-2 tables, kept exact inside each batch's transaction.
pub const STRONG_TABLES: [&str; 5] = ["atom", "triple", "position", "vault", "term"];
/// Level 3 tables, kept by the analytics worker (eventually consistent).
pub const ANALYTICS_TABLES: [&str; 4] = ["triple_vault", "triple_term", "predicate_object", "subject_predicate"];
/// Every table with a reference view: levels 1-2, then level 3.
pub const DERIVED_TABLES: [&str; 9] = [
    "atom",
    "triple",
    "position",
    "vault",
    "term",
    "triple_vault",
    "triple_term",
    "predicate_object",
    "subject_predicate",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDiff {
    pub table: String,
    pub rows: i64,
    pub only_in_table: i64,
    pub only_in_view: i64,
}

impl TableDiff {
    pub fn matches(&self) -> bool {
        self.only_in_table == 0 && self.only_in_view == 0
    }
}

impl std::fmt::Display for TableDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.matches() { "ok" } else { "MISMATCH" };
        write!(
            f,
            "{:<18} {:>10} rows  {:>6} only in table  {:>6} only in view  {verdict}",
            self.table, self.rows, self.only_in_table, self.only_in_view
        )
    }
}

pub async fn compare(client: &Client, table: &str) -> Result<TableDiff, tokio_postgres::Error> {
    let row = client.query_one(sql::COMPARE, &[&table]).await?;
    let rows: i64 = client.query_one(&sql::count_rows(table), &[]).await?.get(0);
    Ok(TableDiff { table: table.to_owned(), rows, only_in_table: row.get(0), only_in_view: row.get(1) })
}

pub async fn compare_all(client: &Client, tables: &[&str]) -> Result<Vec<TableDiff>, tokio_postgres::Error> {
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        out.push(compare(client, t).await?);
    }
    Ok(out)
}
