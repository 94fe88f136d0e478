//! `/health`: 200 when PostgreSQL answers `SELECT 1` and Redis `PING` (each within two
//! seconds), 503 otherwise, with a small JSON body: the group's lag and pending totals from
//! the monitor's last observation, the outbox backlog, and the age of the last commit.
//!
//! However often it is called, it holds at most one connection to each dependency (reused,
//! replaced when it breaks; named `rps-health-<pid>` on both servers), checks at
//! most once a second (callers in between get the last answer), and one check at a time.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::monitor::{Monitor, Observation};
use crate::pg::{self, sql};
use crate::runtime::telemetry::LAST_COMMIT_UNIX;
use crate::stream;

/// Answers whether the process is healthy, with the body to serve.
pub type HealthCheck = Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, (bool, Value)> + Send + Sync>;

const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an answer is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);
/// How this process's health connections name themselves: `application_name` in
/// PostgreSQL, the client name in Redis.
pub fn connection_name() -> String {
    format!("rps-health-{}", std::process::id())
}

#[derive(Default)]
struct Probe {
    postgres: Option<tokio_postgres::Client>,
    redis: Option<MultiplexedConnection>,
    /// When the last check ran, and what it found (PostgreSQL, Redis).
    last: Option<(Instant, bool, bool)>,
}

pub fn health(database_url: String, redis_url: String, monitor: Monitor) -> HealthCheck {
    let probe = Arc::new(Mutex::new(Probe::default()));
    let urls = Arc::new((database_url, redis_url));
    Arc::new(move || {
        let (probe, urls, monitor) = (probe.clone(), urls.clone(), monitor.clone());
        Box::pin(async move {
            let (postgres, redis) = probe.lock().await.check(&urls.0, &urls.1).await;
            let observation = monitor.latest();
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let last_commit = LAST_COMMIT_UNIX.load(Ordering::Relaxed);
            let observed = observation.as_ref().and_then(|o| o.at.duration_since(UNIX_EPOCH).ok());
            let body = json!({
                "status": if postgres && redis { "ok" } else { "unavailable" },
                "postgres": postgres,
                "redis": redis,
                "lag": observation.as_ref().map(Observation::lag),
                "pending": observation.as_ref().map(Observation::pending),
                "lag_observed_unix": observed.map(|d| d.as_secs()),
                "last_commit_age_seconds": (last_commit > 0).then(|| (now.as_secs() as i64 - last_commit).max(0)),
                "outbox_rows": observation.as_ref().and_then(|o| o.outbox).map(|o| o.rows),
            });
            (postgres && redis, body)
        })
    })
}

impl Probe {
    async fn check(&mut self, database_url: &str, redis_url: &str) -> (bool, bool) {
        if let Some((_, postgres, redis)) = self.last.filter(|(at, ..)| at.elapsed() < CACHE_FOR) {
            return (postgres, redis);
        }
        let postgres =
            tokio::time::timeout(DEPENDENCY_TIMEOUT, self.postgres_answers(database_url)).await.unwrap_or(false);
        let redis = tokio::time::timeout(DEPENDENCY_TIMEOUT, self.redis_answers(redis_url)).await.unwrap_or(false);
        if !postgres {
            self.postgres = None;
        }
        if !redis {
            self.redis = None;
        }
        self.last = Some((Instant::now(), postgres, redis));
        (postgres, redis)
    }

    async fn postgres_answers(&mut self, database_url: &str) -> bool {
        if self.postgres.as_ref().is_none_or(|c| c.is_closed()) {
            let Ok(client) = pg::connect_one(database_url).await else { return false };
            if client.batch_execute(&sql::set_application_name(&connection_name())).await.is_err() {
                return false;
            }
            self.postgres = Some(client);
        }
        let client = self.postgres.as_ref().expect("connected above");
        client.simple_query(sql::PING).await.is_ok()
    }

    async fn redis_answers(&mut self, redis_url: &str) -> bool {
        if self.redis.is_none() {
            let Ok(mut con) = stream::connect(redis_url).await else { return false };
            let named: redis::RedisResult<()> =
                redis::cmd("CLIENT").arg("SETNAME").arg(connection_name()).query_async(&mut con).await;
            if named.is_err() {
                return false;
            }
            self.redis = Some(con);
        }
        let con = self.redis.as_mut().expect("connected above");
        redis::cmd("PING").query_async::<String>(con).await.is_ok()
    }
}
