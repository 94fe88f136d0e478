//! Connections: the pool the engine's batches run on, and single connections for tools,
//! witnesses and the analytics worker.

use std::time::Duration;

use bb8::{CustomizeConnection, Pool};
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::{config::Config, Client};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::{error_text, is_refusal};
use super::{sql, tls};
use crate::runtime::exit::{Fatal, Permanence};
use crate::runtime::redact::redact;

pub type PgPool = Pool<PostgresConnectionManager<MakeRustlsConnect>>;

/// While PostgreSQL is unreachable, a checkout fails after this long, so that the caller's
/// backoff (and its shutdown check) runs instead of a 30 s wait inside the pool.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid PostgreSQL URL {url}: {source}")]
    InvalidUrl { url: String, source: tokio_postgres::Error },
    #[error("PostgreSQL URL {url}: {reason}")]
    InvalidTls { url: String, reason: String },
    #[error("cannot connect to PostgreSQL at {url}: {}", error_text(.source))]
    Connect { url: String, source: tokio_postgres::Error },
}

impl Permanence for ConnectError {
    fn fatal(&self, what: &str) -> Option<Fatal> {
        match self {
            ConnectError::InvalidUrl { .. } | ConnectError::InvalidTls { .. } => Some(Fatal::Config(self.to_string())),
            ConnectError::Connect { source, .. } if is_refusal(source) => {
                Some(Fatal::Refused(format!("{what}: {self}")))
            }
            ConnectError::Connect { .. } => None,
        }
    }
}

impl ConnectError {
    /// The server's SQLSTATE, when it answered with one (a wrong password, say).
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            ConnectError::InvalidUrl { .. } | ConnectError::InvalidTls { .. } => None,
            ConnectError::Connect { source, .. } => source.code(),
        }
    }
}

/// A parsed connection string: what tokio-postgres reads, and the TLS connector its
/// `sslmode` and `sslrootcert` call for (see [`tls`]).
pub(crate) struct Target {
    pub config: Config,
    pub tls: MakeRustlsConnect,
}

pub(crate) fn parse(database_url: &str) -> Result<Target, ConnectError> {
    let normalized = encode_userinfo_at(database_url);
    let invalid_tls = |reason| ConnectError::InvalidTls { url: redact(database_url), reason };
    let (driver, params) = tls::split(&normalized).map_err(invalid_tls)?;
    let config = driver.parse().map_err(|source| ConnectError::InvalidUrl { url: redact(database_url), source })?;
    let tls = tls::connector(&params).map_err(invalid_tls)?;
    Ok(Target { config, tls })
}

/// A URL's userinfo runs to its last `@` (as WHATWG URLs and redis-rs read it), while
/// tokio-postgres stops at the first: an unencoded `@` in a password is percent-encoded.
fn encode_userinfo_at(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.into() };
    match url[start..].rfind('@').map(|i| start + i) {
        Some(last) if url[start..last].contains('@') => {
            format!("{}{}{}", &url[..start], url[start..last].replace('@', "%40"), &url[last..]).into()
        }
        _ => url.into(),
    }
}

/// The engine's pool. Every connection gets its session setup once ([`sql::SESSION_SETUP`],
/// [`sql::DURABLE_COMMITS`], the reorg window); a connection found dead on checkout (backend
/// terminated, server restarted) is replaced, not used.
pub async fn connect_pool(database_url: &str, size: u32, reorg_window: u64) -> Result<PgPool, ConnectError> {
    let Target { config, tls } = parse(database_url)?;
    let manager = PostgresConnectionManager::new(config, tls);
    Ok(Pool::builder()
        .max_size(size)
        .test_on_check_out(true)
        .connection_timeout(CHECKOUT_TIMEOUT)
        .error_sink(Box::new(LogErrors))
        .connection_customizer(Box::new(PrepareSession { reorg_window }))
        .build_unchecked(manager))
}

#[derive(Debug)]
struct PrepareSession {
    reorg_window: u64,
}

impl CustomizeConnection<Client, tokio_postgres::Error> for PrepareSession {
    fn on_acquire<'a>(
        &'a self,
        client: &'a mut Client,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a>> {
        Box::pin(async move {
            client.batch_execute(sql::SESSION_SETUP).await?;
            client.batch_execute(&sql::reorg_window_setting(self.reorg_window)).await?;
            client.batch_execute(sql::DURABLE_COMMITS).await
        })
    }
}

/// The pool opens connections in the background; say why they fail, or an outage shows only
/// as checkout timeouts.
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

/// One plain connection, its connection task spawned.
pub async fn connect_one(database_url: &str) -> Result<Client, ConnectError> {
    let Target { config, tls } = parse(database_url)?;
    let (client, connection) =
        config.connect(tls).await.map_err(|source| ConnectError::Connect { url: redact(database_url), source })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("postgres connection closed: {e}");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unencoded_at_in_a_password_stays_in_the_password() {
        let config = super::parse("postgres://app:p@ss@db.example:5433/x").unwrap().config;
        assert_eq!(config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(config.get_user(), Some("app"));
        assert_eq!(super::encode_userinfo_at("host=db password=a@b"), "host=db password=a@b");
    }
}
