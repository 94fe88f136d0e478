//! `/health`: 200 when PostgreSQL answers `SELECT 1` and Redis `PING` (each within two
//! seconds), 503 otherwise, with a small JSON body: the group's lag and pending totals from
//! the monitor's last observation, the outbox backlog, and the age of the last commit.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::monitor::{Monitor, Observation};
use crate::pg::{self, sql};
use crate::runtime::telemetry::LAST_COMMIT_UNIX;
use crate::stream;

/// Answers whether the process is healthy, with the body to serve.
pub type HealthCheck = Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, (bool, Value)> + Send + Sync>;

const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn health(database_url: String, redis_url: String, monitor: Monitor) -> HealthCheck {
    Arc::new(move || {
        let (database_url, redis_url, monitor) = (database_url.clone(), redis_url.clone(), monitor.clone());
        Box::pin(async move {
            let (postgres, redis) = tokio::join!(postgres_answers(&database_url), redis_answers(&redis_url));
            let observation = monitor.latest();
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let last_commit = LAST_COMMIT_UNIX.load(Ordering::Relaxed);
            let body = json!({
                "status": if postgres && redis { "ok" } else { "unavailable" },
                "postgres": postgres,
                "redis": redis,
                "lag": observation.as_ref().map(Observation::lag),
                "pending": observation.as_ref().map(Observation::pending),
                "lag_observed_unix": observation.as_ref().and_then(|o| o.at.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()),
                "last_commit_age_seconds": (last_commit > 0).then(|| (now.as_secs() as i64 - last_commit).max(0)),
                "outbox_rows": observation.as_ref().and_then(|o| o.outbox).map(|o| o.rows),
            });
            (postgres && redis, body)
        })
    })
}

async fn postgres_answers(database_url: &str) -> bool {
    let ping = async {
        let client = pg::connect_one(database_url).await.ok()?;
        client.simple_query(sql::PING).await.ok()
    };
    tokio::time::timeout(DEPENDENCY_TIMEOUT, ping).await.ok().flatten().is_some()
}

async fn redis_answers(redis_url: &str) -> bool {
    let ping = async {
        let mut con = stream::connect(redis_url).await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut con).await.ok()
    };
    tokio::time::timeout(DEPENDENCY_TIMEOUT, ping).await.ok().flatten().is_some()
}
