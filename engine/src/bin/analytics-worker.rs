use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rps::analytics::{self, WorkerConfig};
use rps::ops::cli::{self, HealthArgs, LogArgs};
use rps::ops::{health, http, monitor};
use rps::runtime::telemetry;

/// Keep the level 3 analytics tables (triple_vault, triple_term, predicate_object,
/// subject_predicate) up to date from the term ids the engine publishes to `term_updates`.
/// Run as many as you like on the same consumer group. Without a subcommand it runs the
/// worker.
#[derive(Parser)]
#[command(name = "analytics-worker", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    worker: WorkerConfig,

    #[command(flatten)]
    log: LogArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Ask a running worker's /health: exit 0 when it answers 200, 1 otherwise (the
    /// containers' HEALTHCHECK).
    Health(HealthArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Health(args)) => {
            cli::init(cli.log.log_format, &[]);
            cli::health(&args.url(&cli.worker.metrics_addr)).await
        }
        None => {
            let config = cli.worker;
            cli::init(cli.log.log_format, &[&config.database_url, &config.redis_url]);
            match run(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => cli::fail(e),
            }
        }
    }
}

async fn run(config: WorkerConfig) -> anyhow::Result<()> {
    config.validate()?;
    let addr = cli::listen_addr("--metrics-addr", &config.metrics_addr).await?;
    let metrics = http::install()?;
    telemetry::register_worker();
    // Healthy when PostgreSQL and Redis answer; the body adds the group's lag on term_updates.
    let monitor = monitor::Monitor::new();
    monitor.start_worker(&config, monitor::DEFAULT_MONITOR_INTERVAL).await;
    let health = health::health(config.database_url.clone(), config.redis_url.clone(), monitor.clone());
    http::serve(addr, metrics, health).await?;
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_flag_is_described_with_its_default() {
        rps::ops::cli::assert_help_complete(super::Cli::command());
    }
}
