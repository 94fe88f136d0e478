//! Metrics: Prometheus names shared by the binaries, and the HTTP endpoint serving them.
//!
//! Library code records through the `metrics` facade, which is a no-op until a binary
//! installs the exporter with [`serve`]; tests that run several engines in one process
//! therefore need no global state.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// Engine (the seed's names first).
pub const EVENTS_PROCESSED: &str = "redis_postgres_sync_events_processed_total";
pub const EVENTS_FAILED: &str = "redis_postgres_sync_events_failed_total";
pub const CASCADE_SECONDS: &str = "redis_postgres_sync_cascade_duration_seconds";
pub const STAGE_SECONDS: &str = "redis_postgres_sync_batch_stage_duration_seconds";
pub const BATCH_EVENTS: &str = "redis_postgres_sync_batch_events";
pub const MESSAGES_READ: &str = "redis_postgres_sync_messages_read_total";
pub const DEAD_LETTERS: &str = "redis_postgres_sync_dead_letters_total";
pub const BATCH_RETRIES: &str = "redis_postgres_sync_batch_retries_total";
pub const LAST_COMMIT: &str = "redis_postgres_sync_last_commit_timestamp_seconds";
pub const COMMIT_LATENCY: &str = "redis_postgres_sync_commit_latency_seconds";
pub const OUTBOX_PUBLISHED: &str = "redis_postgres_sync_outbox_terms_published_total";
// Observed by the stream monitor (crate::progress), per stream of the engine's group.
pub const STREAM_LAG: &str = "redis_postgres_sync_stream_lag";
pub const STREAM_PENDING: &str = "redis_postgres_sync_stream_pending";
pub const STREAM_LENGTH: &str = "redis_postgres_sync_stream_length";
pub const OUTBOX_BACKLOG: &str = "redis_postgres_sync_outbox_backlog_rows";
pub const OUTBOX_OLDEST_AGE: &str = "redis_postgres_sync_outbox_oldest_age_seconds";

// Analytics worker.
pub const WORKER_PROCESSED: &str = "analytics_worker_term_updates_processed_total";
pub const WORKER_BATCH_SIZE: &str = "analytics_worker_batch_size";
pub const WORKER_LAG: &str = "analytics_worker_lag_seconds";
pub const WORKER_STREAM_LAG: &str = "analytics_worker_stream_lag";
pub const WORKER_STREAM_PENDING: &str = "analytics_worker_stream_pending";
pub const WORKER_STREAM_LENGTH: &str = "analytics_worker_stream_length";

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(EVENTS_PROCESSED, "Valid events applied (committed), redeliveries included");
    describe_counter!(EVENTS_FAILED, "Messages or events rejected and dead-lettered");
    describe_histogram!(CASCADE_SECONDS, Unit::Seconds, "Level 2 cascade time per batch");
    describe_histogram!(STAGE_SECONDS, Unit::Seconds, "Time per batch in each pipeline stage (label stage)");
    describe_histogram!(BATCH_EVENTS, "Events per applied batch");
    describe_counter!(MESSAGES_READ, "Stream entries read");
    describe_counter!(DEAD_LETTERS, "Entries written to dead-letter streams");
    describe_counter!(BATCH_RETRIES, "Batches rolled back and retried (label reason)");
    describe_gauge!(LAST_COMMIT, Unit::Seconds, "Unix time of the last committed batch");
    describe_histogram!(COMMIT_LATENCY, Unit::Seconds, "From XADD (entry id time) to the commit of the entry's batch");
    describe_counter!(OUTBOX_PUBLISHED, "Term ids published to term_updates");
    describe_gauge!(STREAM_LAG, "Stream entries not yet delivered to the engine's group (XINFO GROUPS lag)");
    describe_gauge!(STREAM_PENDING, "Stream entries delivered to the engine's group and not acked (XPENDING)");
    describe_gauge!(STREAM_LENGTH, "Entries in the stream (XLEN)");
    describe_gauge!(OUTBOX_BACKLOG, "term_update_outbox rows committed and not yet published");
    describe_gauge!(OUTBOX_OLDEST_AGE, Unit::Seconds, "Age of the oldest unpublished outbox row (0 when empty)");
    describe_gauge!(WORKER_STREAM_LAG, "term_updates entries not yet delivered to the worker's group");
    describe_gauge!(WORKER_STREAM_PENDING, "term_updates entries delivered to the worker's group and not acked");
    describe_gauge!(WORKER_STREAM_LENGTH, "Entries in the term_updates stream (XLEN)");
    describe_counter!(WORKER_PROCESSED, "term_updates entries applied by the analytics worker");
    describe_histogram!(WORKER_BATCH_SIZE, "Distinct term ids per analytics batch");
    describe_gauge!(WORKER_LAG, Unit::Seconds, "Age of the oldest update in the last analytics batch");
}

/// Buckets from 100 µs to ~100 s for durations; powers of 4 for sizes.
fn recorder() -> Result<PrometheusHandle> {
    let seconds = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 100.0];
    let sizes: Vec<f64> = (0..12).map(|i| 4f64.powi(i)).collect();
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)?
        .set_buckets_for_metric(Matcher::Full(BATCH_EVENTS.into()), &sizes)?
        .set_buckets_for_metric(Matcher::Full(WORKER_BATCH_SIZE.into()), &sizes)?
        .install_recorder()
        .context("installing the metrics recorder")?;
    describe();
    Ok(handle)
}

/// Something that answers whether the process's dependencies are reachable, with a small
/// JSON body. `/health` returns 200 when it says healthy, 503 otherwise.
pub type HealthCheck =
    Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, (bool, serde_json::Value)> + Send + Sync>;

/// Install the recorder and serve `/metrics` and `/health` on `addr` in the background.
pub async fn serve(addr: SocketAddr, health: HealthCheck) -> Result<()> {
    let handle = recorder()?;
    let app = Router::new().route("/metrics", get(move || std::future::ready(handle.render()))).route(
        "/health",
        get(move || {
            let check = health.clone();
            async move {
                let (ok, body) = check().await;
                let status = if ok { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
                (status, axum::Json(body))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "serving /metrics and /health");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    Ok(())
}

/// The usual health check: PostgreSQL answers `SELECT 1` and Redis answers `PING`, each
/// within two seconds; the body adds the last commit time of this process's engine.
pub fn dependency_health(database_url: String, redis_url: String) -> HealthCheck {
    Arc::new(move || {
        let (database_url, redis_url) = (database_url.clone(), redis_url.clone());
        Box::pin(async move {
            let limit = std::time::Duration::from_secs(2);
            let postgres = tokio::time::timeout(limit, async {
                let client = crate::db::connect_one(&database_url).await.ok()?;
                client.simple_query("SELECT 1").await.ok()
            })
            .await
            .ok()
            .flatten()
            .is_some();
            let redis = tokio::time::timeout(limit, async {
                let mut con = crate::source::connect(&redis_url).await.ok()?;
                redis::cmd("PING").query_async::<String>(&mut con).await.ok()
            })
            .await
            .ok()
            .flatten()
            .is_some();
            let last_commit = crate::pipeline::LAST_COMMIT_UNIX.load(std::sync::atomic::Ordering::Relaxed);
            let body = serde_json::json!({
                "status": if postgres && redis { "ok" } else { "unavailable" },
                "postgres": postgres,
                "redis": redis,
                "last_commit_unix": (last_commit > 0).then_some(last_commit),
            });
            (postgres && redis, body)
        })
    })
}
