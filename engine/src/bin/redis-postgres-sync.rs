use clap::Parser;
use rps::EngineConfig;
use tracing_subscriber::EnvFilter;

/// Keep PostgreSQL in sync with the Intuition events rindexer publishes to Redis streams.
#[derive(Parser)]
#[command(name = "redis-postgres-sync", version, about)]
struct Cli {
    #[command(flatten)]
    engine: EngineConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
    let summary = rps::run(cli.engine, shutdown_signal()).await?;
    tracing::info!(
        batches = summary.batches,
        messages = summary.messages,
        events = summary.events,
        dead_letters = summary.dead_letters,
        seconds = format!("{:.2}", summary.elapsed.as_secs_f64()),
        rate = format!("{:.0} events/s", summary.events_per_second()),
        "done"
    );
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
