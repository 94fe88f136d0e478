use clap::Parser;
use rps::analytics::{self, WorkerConfig};
use rps::ops::{health, http, monitor};
use tracing_subscriber::EnvFilter;

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
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let config = Cli::parse().worker;
    // Healthy when PostgreSQL and Redis answer; the body adds the group's lag on term_updates.
    let monitor = monitor::Monitor::new();
    let health = health::health(config.database_url.clone(), config.redis_url.clone(), monitor.clone());
    http::serve(config.metrics_addr, health).await?;
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
