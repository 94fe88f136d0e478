//! PostgreSQL: the connection pool, database creation and migrations.

use anyhow::{Context, Result};
use bb8::{CustomizeConnection, Pool};
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::{config::Config, error::SqlState, Client, NoTls};
use tracing::info;

use crate::sql;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

pub type PgPool = Pool<PostgresConnectionManager<NoTls>>;

/// Every pooled connection gets its session-local staging tables once.
#[derive(Debug)]
struct PrepareSession;

impl CustomizeConnection<Client, tokio_postgres::Error> for PrepareSession {
    fn on_acquire<'a>(
        &'a self,
        client: &'a mut Client,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a>> {
        Box::pin(async move { client.batch_execute(sql::SESSION_SETUP).await })
    }
}

/// Create the database if missing, apply migrations, and open the pool.
pub async fn connect(database_url: &str, pool_size: u32) -> Result<PgPool> {
    ensure_database(database_url).await?;
    migrate(database_url).await?;
    let config: Config = database_url.parse().context("invalid DATABASE_URL")?;
    let manager = PostgresConnectionManager::new(config, NoTls);
    Pool::builder()
        .max_size(pool_size)
        .connection_customizer(Box::new(PrepareSession))
        .build(manager)
        .await
        .context("cannot open the PostgreSQL pool")
}

/// One plain connection (for migrations, tests and tools).
pub async fn connect_one(database_url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(database_url, NoTls)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(database_url)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("postgres connection closed: {e}");
        }
    });
    Ok(client)
}

/// Apply pending migrations. A session advisory lock serializes engines starting together.
pub async fn migrate(database_url: &str) -> Result<()> {
    let mut client = connect_one(database_url).await?;
    client.execute(sql::LOCK_MIGRATIONS, &[]).await?;
    let report = embedded::migrations::runner().run_async(&mut client).await;
    client.execute(sql::UNLOCK_MIGRATIONS, &[]).await?;
    let report = report.context("applying migrations failed")?;
    for m in report.applied_migrations() {
        info!(migration = %m, "applied migration");
    }
    Ok(())
}

/// Create the target database through the `postgres` maintenance database if it is missing.
pub async fn ensure_database(database_url: &str) -> Result<()> {
    let config: Config = database_url.parse().context("invalid DATABASE_URL")?;
    let Some(name) = config.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    match config.connect(NoTls).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot connect to PostgreSQL at {}", redact(database_url))),
    }
    let mut maintenance = config.clone();
    maintenance.dbname("postgres");
    let (client, connection) = maintenance.connect(NoTls).await.context("cannot reach the postgres database")?;
    tokio::spawn(connection);
    let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match client.batch_execute(&create).await {
        Ok(()) => info!(database = %name, "created database"),
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => {}
        Err(e) => return Err(e).context("CREATE DATABASE failed"),
    }
    Ok(())
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let user_end = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}
