//! Connections to Redis. Neither has a response timeout: reads block for `BLOCK ms`.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisResult};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One multiplexed connection (for tools, monitors and tests).
pub async fn connect(redis_url: &str) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new().set_response_timeout(None).set_connection_timeout(Some(CONNECT_TIMEOUT));
    Client::open(redis_url)?.get_multiplexed_async_connection_with_config(&config).await
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
    ConnectionManager::new_with_config(Client::open(redis_url)?, config).await
}
