use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rps::ops::cli::{self, DatabaseArgs, HealthArgs, LogArgs};
use rps::ops::verify::{compare_all, ANALYTICS_TABLES, STRONG_TABLES};
use rps::ops::{doctor, health, http, monitor, progress, readers};
use rps::pg::error::RETRY_REASONS;
use rps::runtime::allocator;
use rps::runtime::exit::{Permanence, EXIT_FAILED};
use rps::runtime::redact::scrub;
use rps::runtime::telemetry;
use rps::EngineConfig;

/// mimalloc rather than the system allocator: a batch is built on the reader's threads and
/// dropped on the writer's, a few allocations per message, and glibc's malloc and free were
/// about a fifth of a backfill's engine CPU (a profile of stop 16). `main` sets how long it
/// keeps freed memory (`runtime::allocator`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keep PostgreSQL in sync with the Intuition events rindexer publishes to Redis streams.
/// Without a subcommand it runs the sync engine; each subcommand takes only its own flags.
#[derive(Parser)]
#[command(name = "redis-postgres-sync", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    engine: EngineConfig,

    /// Where to serve Prometheus `/metrics` and `/health`, host:port (e.g. 0.0.0.0:3030 in a
    /// container).
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:3030")]
    metrics_addr: String,

    #[command(flatten)]
    progress: progress::ProgressArgs,

    #[command(flatten)]
    log: LogArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Compare the maintained tables with the `snapshot` reference views (full recompute
    /// from the event log). Exits 1 on any mismatch it prints.
    Verify {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Also compare the level 3 analytics tables (kept by analytics-worker, so equal only
        /// once it has caught up).
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
        #[command(flatten)]
        database: DatabaseArgs,
        /// Where the readers views should read from.
        #[arg(long, value_enum)]
        to: Option<readers::ReaderSource>,
        /// Only these tables, comma separated [default: all nine].
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        /// Switch back to the maintained tables without first checking that they equal
        /// the reference views.
        #[arg(long)]
        no_verify: bool,
    },
    /// Ask a running engine's /health: exit 0 when it answers 200, 1 otherwise (the
    /// containers' HEALTHCHECK).
    Health(HealthArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    allocator::keep_freed_memory(allocator::KEEP_FREED);
    let cli = Cli::parse();
    let secrets = match &cli.command {
        None => vec![cli.engine.database_url.as_str(), cli.engine.redis_url.as_str()],
        Some(Command::Verify { database, .. } | Command::Rollback { database, .. }) => {
            vec![database.database_url.as_str()]
        }
        Some(Command::Doctor(args)) => vec![args.database_url.as_str(), args.redis_url.as_str()],
        Some(Command::Health(_)) => vec![],
    };
    cli::init(cli.log.log_format, &secrets);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => cli::fail(e),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => {
            engine(cli.engine, &cli.metrics_addr, cli.progress).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Verify { database, analytics }) => verify(&database.database_url, analytics).await,
        Some(Command::Doctor(args)) => {
            let report = doctor::run(&args).await;
            println!("{}", scrub(&report.to_string()));
            Ok(if report.healthy() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
        }
        Some(Command::Rollback { database, to, tables, no_verify }) => {
            rollback(&database.database_url, to, &tables, no_verify).await
        }
        Some(Command::Health(args)) => Ok(cli::health(&args.url(&cli.metrics_addr)).await),
    }
}

/// Run the engine, with its metrics (every series created before /metrics answers), health
/// and progress display.
async fn engine(config: EngineConfig, metrics_addr: &str, progress: progress::ProgressArgs) -> anyhow::Result<()> {
    config.validate()?;
    let addr = cli::listen_addr("--metrics-addr", metrics_addr).await?;
    let metrics = http::install()?;
    let reasons: Vec<&'static str> = RETRY_REASONS.into_iter().chain(rps::ingest::apply::RETRY_REASONS).collect();
    telemetry::register_engine(&reasons);
    let monitor = monitor::Monitor::new();
    monitor.start_engine(&config, progress.monitor_interval()).await;
    let health = health::health(config.database_url.clone(), config.redis_url.clone(), monitor.clone());
    http::serve(addr, metrics, health).await?;
    let display = progress::Display::start(progress.progress, config.backfill, monitor, progress.log_interval());
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
    tracing::info!(
        "time per stage (summed over the concurrent parts of a batch; wall: counted once; read, idle and decode \
         overlap the rest): {}",
        summary.stage_time
    );
    Ok(())
}

/// One connection for a tool; a refusal no retry can fix ends with its exit code.
async fn connect(database_url: &str) -> anyhow::Result<tokio_postgres::Client> {
    rps::pg::connect_one(database_url).await.map_err(|e| match e.fatal("connecting to PostgreSQL") {
        Some(fatal) => fatal.into(),
        None => e.into(),
    })
}

async fn verify(database_url: &str, analytics: bool) -> anyhow::Result<ExitCode> {
    let client = connect(database_url).await?;
    let tables: Vec<&str> =
        STRONG_TABLES.iter().chain(if analytics { &ANALYTICS_TABLES[..] } else { &[] }).copied().collect();
    let mut all_match = true;
    for diff in compare_all(&client, &tables).await? {
        all_match &= diff.matches();
        println!("{diff}");
    }
    Ok(if all_match { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_flag_is_described_with_its_default() {
        rps::ops::cli::assert_help_complete(super::Cli::command());
    }
}
