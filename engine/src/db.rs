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

/// Every pooled connection gets its session-local staging tables and durable commits once.
#[derive(Debug)]
struct PrepareSession;

impl CustomizeConnection<Client, tokio_postgres::Error> for PrepareSession {
    fn on_acquire<'a>(
        &'a self,
        client: &'a mut Client,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a>> {
        Box::pin(async move {
            client.batch_execute(sql::SESSION_SETUP).await?;
            client.batch_execute(sql::DURABLE_COMMITS).await
        })
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
        // A connection whose backend was terminated or whose server restarted is closed
        // but still pooled: checking it out tests it, so a dead one is replaced, not used.
        .test_on_check_out(true)
        // While PostgreSQL is unreachable, fail a checkout soon so the caller's backoff
        // (and its shutdown check) runs, instead of waiting 30 s inside the pool.
        .connection_timeout(POOL_CHECKOUT_TIMEOUT)
        .error_sink(Box::new(LogErrors))
        .connection_customizer(Box::new(PrepareSession))
        .build(manager)
        .await
        .context("cannot open the PostgreSQL pool")
}

const POOL_CHECKOUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The pool opens connections in the background; say why they fail, or an outage shows
/// only as checkout timeouts.
#[derive(Debug, Clone, Copy)]
struct LogErrors;

impl bb8::ErrorSink<tokio_postgres::Error> for LogErrors {
    fn sink(&self, e: tokio_postgres::Error) {
        tracing::warn!(error = %error_text(&e), "cannot open a PostgreSQL connection");
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<tokio_postgres::Error>> {
        Box::new(*self)
    }
}

/// A PostgreSQL error with the server's message and SQLSTATE, when it has them (the
/// plain `Display` of a server error is only "db error").
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code()),
        None => std::error::Error::source(e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}")),
    }
}

/// What a failed transaction tells about retrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying as is: the connection or server went away, a lock conflict
    /// (deadlock, serialization failure), a resource limit. Label for metrics.
    Transient(&'static str),
    /// The data itself was refused (SQLSTATE class 22 data exception, 23 integrity
    /// constraint violation, 54 program limit): the same rows fail again however often
    /// they are retried.
    Data(&'static str),
}

impl Failure {
    /// Label for the `reason` of the retry metric.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Transient(r) | Failure::Data(r) => r,
        }
    }
}

/// Classify an error from a batch transaction by its SQLSTATE, or by what failed when
/// there is none (a pool timeout, an I/O error, a closed connection).
pub fn classify(e: &anyhow::Error) -> Failure {
    for cause in e.chain() {
        if let Some(pg) = cause.downcast_ref::<tokio_postgres::Error>() {
            let Some(code) = pg.code() else {
                // No SQLSTATE: the connection broke or closed underneath.
                return Failure::Transient("connection");
            };
            return classify_sqlstate(code.code());
        }
        if let Some(run) = cause.downcast_ref::<bb8::RunError<tokio_postgres::Error>>() {
            return match run {
                bb8::RunError::User(pg) => {
                    pg.code().map_or(Failure::Transient("connection"), |c| classify_sqlstate(c.code()))
                }
                bb8::RunError::TimedOut => Failure::Transient("connection"),
            };
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return Failure::Transient("connection");
        }
        if cause.downcast_ref::<crate::merge::LockHolderLost>().is_some() {
            return Failure::Transient("lock_holder_lost");
        }
    }
    Failure::Transient("other")
}

/// By SQLSTATE class (PostgreSQL's errcodes appendix).
pub fn classify_sqlstate(code: &str) -> Failure {
    match code {
        "40P01" => Failure::Transient("deadlock"),
        "40001" => Failure::Transient("serialization"),
        "55P03" => Failure::Transient("lock_timeout"),
        "57014" => Failure::Transient("canceled"),
        _ => match code.get(..2) {
            Some("08") => Failure::Transient("connection"),
            // admin_shutdown, crash_shutdown, cannot_connect_now, database_dropped
            Some("57") => Failure::Transient("server_shutdown"),
            Some("53") => Failure::Transient("resources"),
            // 54: a program limit (a value or a statement too large), which splitting the
            // batch either isolates or resolves.
            Some("22") | Some("23") | Some("54") => Failure::Data("data"),
            _ => Failure::Transient("other"),
        },
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified_for_retry() {
        assert_eq!(classify_sqlstate("40P01"), Failure::Transient("deadlock"));
        assert_eq!(classify_sqlstate("40001"), Failure::Transient("serialization"));
        assert_eq!(classify_sqlstate("57P01"), Failure::Transient("server_shutdown"));
        assert_eq!(classify_sqlstate("08006"), Failure::Transient("connection"));
        assert_eq!(classify_sqlstate("22P02"), Failure::Data("data"));
        assert_eq!(classify_sqlstate("23505"), Failure::Data("data"));
        assert_eq!(classify_sqlstate("54000"), Failure::Data("data"));
        assert_eq!(classify_sqlstate("42P01"), Failure::Transient("other"));
        let io = anyhow::Error::from(std::io::Error::other("reset")).context("COPY");
        assert_eq!(classify(&io), Failure::Transient("connection"));
        let timeout = anyhow::Error::from(bb8::RunError::<tokio_postgres::Error>::TimedOut);
        assert_eq!(classify(&timeout), Failure::Transient("connection"));
    }
}
