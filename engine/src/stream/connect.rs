//! Connections to Redis. Neither kind has a response timeout: reads block for `BLOCK ms`.
//!
//! TLS: a `rediss://` URL connects over TLS, the server's certificate verified against the
//! system's roots, or against the PEM file a `cacert=` query parameter names (as
//! `redis-cli --cacert`); `#insecure` at the end skips verification.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, RedisResult, TlsCertificates};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for `redis_url`, with the roots its `cacert=` parameter names, if any.
pub fn client(redis_url: &str) -> RedisResult<Client> {
    let Some(path) = ca_file(redis_url) else {
        return Client::open(redis_url);
    };
    let pem = std::fs::read(&path).map_err(|e| {
        RedisError::from((ErrorKind::InvalidClientConfig, "cannot read the cacert file", format!("{path}: {e}")))
    })?;
    Client::build_with_tls(redis_url, TlsCertificates { client_tls: None, root_cert: Some(pem) })
}

/// The value of a `cacert=` query parameter.
pub(super) fn ca_file(redis_url: &str) -> Option<String> {
    let query = redis_url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| pair.strip_prefix("cacert=")).map(str::to_owned)
}

/// One multiplexed connection (for tools, monitors and tests).
pub async fn connect(redis_url: &str) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new().set_response_timeout(None).set_connection_timeout(Some(CONNECT_TIMEOUT));
    client(redis_url)?.get_multiplexed_async_connection_with_config(&config).await
}

/// A connection that reconnects by itself after Redis restarts or the link drops. Its own
/// reconnection retries are few and short: callers retry with their own backoff, which also
/// watches for shutdown.
pub async fn connect_managed(redis_url: &str) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_with_config(client(redis_url)?, config).await
}
