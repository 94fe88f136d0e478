//! The HTTP endpoint of both binaries: Prometheus `/metrics` and `/health`.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::health::HealthCheck;
use crate::runtime::telemetry::{self, BATCH_EVENTS, WORKER_BATCH_SIZE};

/// Install the metrics recorder (before anything records) with every name's help text.
/// Buckets from 100 µs to ~100 s for durations; powers of 4 for sizes.
pub fn install() -> Result<PrometheusHandle> {
    let seconds = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 100.0];
    let sizes: Vec<f64> = (0..12).map(|i| 4f64.powi(i)).collect();
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)?
        .set_buckets_for_metric(Matcher::Full(BATCH_EVENTS.into()), &sizes)?
        .set_buckets_for_metric(Matcher::Full(WORKER_BATCH_SIZE.into()), &sizes)?
        .install_recorder()
        .context("installing the metrics recorder")?;
    telemetry::describe();
    Ok(handle)
}

/// Serve `/metrics` (from the installed recorder's `handle`) and `/health` on `addr` in the
/// background.
pub async fn serve(addr: SocketAddr, handle: PrometheusHandle, health: HealthCheck) -> Result<()> {
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
    // Port 0 picks a free port: say which.
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!("serving http://{addr}/metrics and /health");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    Ok(())
}
