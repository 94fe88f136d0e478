//! The database's schema, applied on start under one advisory lock (engines and workers
//! starting together take turns):
//!
//! 1. `migrations/versioned/` through refinery (tracked in `refinery_schema_history`): tables,
//!    types, indexes, schemas and the readers views, each file applied once, in order.
//! 2. `migrations/repeatable/`: every function, trigger and reference view, written as
//!    `CREATE OR REPLACE` (triggers: created when missing) and applied on every start, so
//!    each definition is current in exactly one file. Changing a function's signature or
//!    return type still takes a versioned migration that drops the old one.

use refinery::Migration;
use tokio_postgres::error::SqlState;
use tracing::info;

use super::error::{error_text, is_incompatible, is_refusal};
use super::pool::{connect_one, parse, ConnectError, Target};
use super::sql;
use crate::runtime::exit::{Fatal, Permanence};
use crate::runtime::redact::redact;

mod embedded {
    refinery::embed_migrations!("../migrations/versioned");
}

/// The repeatable files, in the order they are applied (later ones use earlier ones).
pub const REPEATABLE: [(&str, &str); 8] = [
    ("merge.sql", include_str!("../../../migrations/repeatable/merge.sql")),
    ("batch.sql", include_str!("../../../migrations/repeatable/batch.sql")),
    ("cascade.sql", include_str!("../../../migrations/repeatable/cascade.sql")),
    ("snapshot.sql", include_str!("../../../migrations/repeatable/snapshot.sql")),
    ("analytics.sql", include_str!("../../../migrations/repeatable/analytics.sql")),
    ("reorg.sql", include_str!("../../../migrations/repeatable/reorg.sql")),
    ("retract.sql", include_str!("../../../migrations/repeatable/retract.sql")),
    ("readers.sql", include_str!("../../../migrations/repeatable/readers.sql")),
];

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{what}: {}", error_text(.source))]
    Statement { what: String, source: tokio_postgres::Error },
    #[error("applying migrations failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error(
        "the database was created by a pre-release schema (migration V1__{0}); this version starts from a \
         squashed baseline: drop the database (or point DATABASE_URL at a new one) and start again"
    )]
    PreBaseline(String),
}

impl Permanence for SchemaError {
    fn fatal(&self, what: &str) -> Option<Fatal> {
        match self {
            SchemaError::Connect(e) => e.fatal(what),
            SchemaError::Statement { source, .. } if is_refusal(source) => {
                Some(Fatal::Refused(format!("{what}: {self}")))
            }
            SchemaError::Statement { source, .. } if is_incompatible(source) => Some(Fatal::Refused(format!(
                "{what}: {self}: the server refuses the engine's own schema (it is written for PostgreSQL 15)"
            ))),
            SchemaError::PreBaseline(_) => Some(Fatal::Refused(self.to_string())),
            SchemaError::Statement { .. } | SchemaError::Migration(_) => None,
        }
    }
}

fn statement(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> SchemaError {
    let what = what.into();
    move |source| SchemaError::Statement { what, source }
}

/// The versioned migrations this binary carries.
pub fn migrations() -> Vec<Migration> {
    embedded::migrations::runner().get_migrations().clone()
}

/// Create the database if it is missing, then apply the schema.
pub async fn prepare(database_url: &str) -> Result<(), SchemaError> {
    ensure_database(database_url).await?;
    migrate(database_url).await
}

/// Apply pending versioned migrations, then every repeatable file.
pub async fn migrate(database_url: &str) -> Result<(), SchemaError> {
    let mut client = connect_one(database_url).await?;
    client.execute(sql::LOCK_MIGRATIONS, &[]).await.map_err(statement("taking the migration lock"))?;
    let applied = apply(&mut client).await;
    let unlocked = client.execute(sql::UNLOCK_MIGRATIONS, &[]).await.map_err(statement("releasing the migration lock"));
    let applied = applied?;
    unlocked?;
    if applied > 0 {
        info!(migrations = applied, "applied versioned migrations");
    }
    Ok(())
}

/// Under the migration lock: returns how many versioned migrations were applied.
async fn apply(client: &mut tokio_postgres::Client) -> Result<usize, SchemaError> {
    let history: bool =
        client.query_one(sql::MIGRATION_HISTORY_EXISTS, &[]).await.map_err(statement("reading the catalog"))?.get(0);
    if history {
        let first = client
            .query_opt(sql::FIRST_MIGRATION, &[])
            .await
            .map_err(statement("reading refinery_schema_history"))?
            .map(|row| row.get::<_, String>(0));
        if let Some(name) = first.filter(|n| n != "baseline") {
            return Err(SchemaError::PreBaseline(name));
        }
    }
    let report = embedded::migrations::runner().run_async(client).await?;
    for (file, text) in REPEATABLE {
        client.batch_execute(text).await.map_err(statement(format!("applying migrations/repeatable/{file}")))?;
    }
    Ok(report.applied_migrations().len())
}

/// Create the target database through the `postgres` maintenance database if it is missing.
pub async fn ensure_database(database_url: &str) -> Result<(), SchemaError> {
    let Target { config, tls } = parse(database_url)?;
    let Some(name) = config.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    match config.connect(tls.clone()).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {}
        Err(source) => return Err(ConnectError::Connect { url: redact(database_url), source }.into()),
    }
    let mut maintenance = config.clone();
    maintenance.dbname("postgres");
    let (client, connection) = maintenance.connect(tls).await.map_err(|source| ConnectError::Connect {
        url: format!("{} (database postgres)", redact(database_url)),
        source,
    })?;
    tokio::spawn(connection);
    match client.batch_execute(&sql::create_database(&name)).await {
        Ok(()) => info!(database = %name, "created database"),
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => {}
        Err(source) => return Err(statement(format!("creating database {name}"))(source)),
    }
    Ok(())
}
