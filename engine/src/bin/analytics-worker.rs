use std::process::ExitCode;

use clap::Parser;
use rps::analytics::{self, WorkerConfig};
use rps::ops::{cli, health, http, monitor};

/// Keep the level 3 analytics tables (triple_vault, triple_term, predicate_object,
/// subject_predicate) up to date from the term ids the engine publishes to `term_updates`.
/// Run as many as you like on the same consumer group.
#[derive(Parser)]
#[command(name = "analytics-worker", version)]
struct Cli {
    #[command(flatten)]
    worker: WorkerConfig,
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Cli::parse().worker;
    cli::init(&[&config.database_url, &config.redis_url]);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::fail(e),
    }
}

async fn run(config: WorkerConfig) -> anyhow::Result<()> {
    config.validate()?;
    let addr = cli::listen_addr("--metrics-addr", &config.metrics_addr).await?;
    // Healthy when PostgreSQL and Redis answer; the body adds the group's lag on term_updates.
    let monitor = monitor::Monitor::new();
    let health = health::health(config.database_url.clone(), config.redis_url.clone(), monitor.clone());
    http::serve(addr, health).await?;
    monitor.start_worker(&config, monitor::DEFAULT_MONITOR_INTERVAL);
    let summary = analytics::run(config, rps::runtime::shutdown::signal()).await?;
    tracing::info!(
        batches = summary.batches,
        entries = summary.entries,
        term_ids = summary.term_ids,
        triples = summary.triples,
        dead_letters = summary.dead_letters,
        seconds = format!("{:.2}", summary.elapsed.as_secs_f64()),
        "done"
    );
    Ok(())
}
