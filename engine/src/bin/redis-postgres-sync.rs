use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rps::ops::verify::{compare_all, ANALYTICS_TABLES, STRONG_TABLES};
use rps::ops::{cli, doctor, health, http, monitor, progress, readers};
use rps::runtime::exit::{Permanence, EXIT_FAILED};
use rps::runtime::redact::scrub;
use rps::EngineConfig;

/// Keep PostgreSQL in sync with the Intuition events rindexer publishes to Redis streams.
/// Without a subcommand it runs the sync engine.
#[derive(Parser)]
#[command(name = "redis-postgres-sync", version, about)]
struct Cli {
    #[command(flatten)]
    engine: EngineConfig,

    /// Where to serve Prometheus `/metrics` and `/health`, host:port (e.g. 0.0.0.0:3030 in a
    /// container).
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:3030")]
    metrics_addr: String,

    #[command(flatten)]
    progress: progress::ProgressArgs,

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
    /// Check and print what the runbook asks for: migrations, triggers, readers, table sizes,
    /// blocking locks, consumer-group lag and pending, dead letters, outbox backlog. Read
    /// only. Exits 1 when something is wrong (missing or disabled trigger, pending migration,
    /// unreachable dependency).
    Doctor(doctor::DoctorArgs),
    /// Switch the views in the `readers` schema between the maintained tables and the
    /// `snapshot` reference views (the rollback path; the event log is never touched).
    /// Without --to, print where each view reads from.
    Rollback {
        #[arg(long, value_enum)]
        to: Option<readers::ReaderSource>,
        /// Only these tables, comma separated (default: all nine).
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        /// Switch back to the maintained tables without first checking that they equal
        /// the reference views.
        #[arg(long)]
        no_verify: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init(&[&cli.engine.database_url, &cli.engine.redis_url]);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => cli::fail(e),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => {
            cli.engine.validate()?;
            let addr = cli::listen_addr("--metrics-addr", &cli.metrics_addr).await?;
            let monitor = monitor::Monitor::new();
            let health = health::health(cli.engine.database_url.clone(), cli.engine.redis_url.clone(), monitor.clone());
            http::serve(addr, health).await?;
            monitor.start_engine(&cli.engine, cli.progress.monitor_interval());
            let display = progress::Display::start(
                cli.progress.progress,
                cli.engine.backfill,
                monitor,
                cli.progress.log_interval(),
            );
            sync(cli.engine, display).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Verify { analytics }) => verify(&cli.engine.database_url, analytics).await,
        Some(Command::Doctor(args)) => {
            let report = doctor::run(&cli.engine, &args).await;
            println!("{}", scrub(&report.to_string()));
            Ok(if report.healthy() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
        }
        Some(Command::Rollback { to, tables, no_verify }) => {
            rollback(&cli.engine.database_url, to, &tables, no_verify).await
        }
    }
}

/// One connection for a tool; a refusal no retry can fix ends with its exit code.
async fn connect(database_url: &str) -> anyhow::Result<tokio_postgres::Client> {
    rps::pg::connect_one(database_url).await.map_err(|e| match e.fatal("connecting to PostgreSQL") {
        Some(fatal) => fatal.into(),
        None => e.into(),
    })
}

async fn sync(config: EngineConfig, display: Option<progress::Display>) -> anyhow::Result<()> {
    let summary = rps::run(config, rps::runtime::shutdown::signal()).await;
    if let Some(display) = display {
        display.finish().await;
    }
    let summary = summary?;
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

async fn verify(database_url: &str, analytics: bool) -> anyhow::Result<ExitCode> {
    let client = connect(database_url).await?;
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
    Ok(if strong_ok { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
}

async fn rollback(
    database_url: &str,
    to: Option<readers::ReaderSource>,
    tables: &[String],
    no_verify: bool,
) -> anyhow::Result<ExitCode> {
    use readers::ReaderSource;
    let client = connect(database_url).await?;
    if to == Some(ReaderSource::Maintained) && !no_verify {
        let diffs = readers::check_maintained(&client, tables).await?;
        let bad: Vec<String> = diffs.iter().filter(|d| !d.matches()).map(|d| d.to_string()).collect();
        if !bad.is_empty() {
            eprintln!("the maintained tables differ from the reference views; readers stay where they are:");
            for line in bad {
                eprintln!("  {line}");
            }
            eprintln!("(level 3 tables lag while analytics-worker catches up; --no-verify switches anyway)");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    }
    if let Some(to) = to {
        let mode = readers::switch(&client, to, tables).await?;
        println!("readers mode: {mode}");
    } else {
        println!("readers mode: {}", readers::mode(&client).await?);
    }
    for (table, source) in readers::sources(&client).await? {
        let meaning = match source.as_str() {
            "public" => "maintained table",
            "snapshot" => "reference view",
            _ => "missing",
        };
        println!("  readers.{table:<18} <- {source}.{table} ({meaning})");
    }
    Ok(ExitCode::SUCCESS)
}
