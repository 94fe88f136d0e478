use clap::{Parser, Subcommand};
use rps::verify::{compare_all, ANALYTICS_TABLES, STRONG_TABLES};
use rps::EngineConfig;
use tracing_subscriber::EnvFilter;

/// Keep PostgreSQL in sync with the Intuition events rindexer publishes to Redis streams.
/// Without a subcommand it runs the sync engine.
#[derive(Parser)]
#[command(name = "redis-postgres-sync", version, about)]
struct Cli {
    #[command(flatten)]
    engine: EngineConfig,

    /// Where to serve Prometheus `/metrics` and `/health` (e.g. 0.0.0.0:3030 in a container).
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:3030")]
    metrics_addr: std::net::SocketAddr,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Compare the maintained tables with the `snapshot` reference views (full recompute
    /// from the event log). Exits 1 on any mismatch in the level 1-2 tables.
    Verify {
        /// Also compare the level 3 analytics tables (kept by analytics-worker).
        #[arg(long)]
        analytics: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
    match cli.command {
        None => {
            let health = rps::metrics::dependency_health(cli.engine.database_url.clone(), cli.engine.redis_url.clone());
            rps::metrics::serve(cli.metrics_addr, health).await?;
            sync(cli.engine).await
        }
        Some(Command::Verify { analytics }) => verify(&cli.engine.database_url, analytics).await,
    }
}

async fn sync(config: EngineConfig) -> anyhow::Result<()> {
    let summary = rps::run(config, shutdown_signal()).await?;
    tracing::info!(
        batches = summary.batches,
        messages = summary.messages,
        events = summary.events,
        dead_letters = summary.dead_letters,
        seconds = format!("{:.2}", summary.elapsed.as_secs_f64()),
        rate = format!("{:.0} events/s", summary.events_per_second()),
        "done"
    );
    let stages: Vec<String> =
        summary.stage_time.0.iter().map(|(stage, took)| format!("{stage}={:.2}s", took.as_secs_f64())).collect();
    tracing::info!("time per stage: {}", stages.join(" "));
    Ok(())
}

async fn verify(database_url: &str, analytics: bool) -> anyhow::Result<()> {
    let client = rps::db::connect_one(database_url).await?;
    let mut strong_ok = true;
    for diff in compare_all(&client, &STRONG_TABLES).await? {
        strong_ok &= diff.matches();
        println!("{diff}");
    }
    if analytics {
        for diff in compare_all(&client, &ANALYTICS_TABLES).await? {
            println!("{diff}");
        }
    }
    if !strong_ok {
        std::process::exit(1);
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
