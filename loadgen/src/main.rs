//! `loadgen generate`: a seeded Intuition workload to Redis streams and/or a JSON-lines file.
//! `loadgen feed`: XADD the messages of a JSON-lines file (like the samples).
//! `loadgen bench`: the end-to-end benchmark report.
//! `loadgen chaos`: the long fault-injection run (kills, outages, bad input) with a verdict.

mod chaos;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use loadgen::jsonl::{read_jsonl, write_jsonl};
use loadgen::redis_out::{self, Entry, WriteOptions, DEFAULT_PIPELINE};
use loadgen::workload::{generate, Encoding, WorkloadConfig};

const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The engine binary's allocator: `bench` and `chaos` run the engine in this process, so its
/// CPU figures are the shipped engine's only with the same allocator and setting.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "loadgen", version, about = "Intuition workloads in rindexer's Redis stream format")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a deterministic workload and write it to Redis and/or a file.
    Generate(GenerateArgs),
    /// XADD every line of a JSON-lines file ({"stream": …, "payload": {…}}) to <prefix><stream>.
    Feed(FeedArgs),
    /// Measure the engine end to end (backfill, raw-ingest floor, batch size 1, live
    /// latency, scaling) in scratch databases and write a report under bench-results/.
    Bench(loadgen::bench::BenchConfig),
    /// Fault injection at scale: a large noisy workload through several engines and
    /// workers killed at random and PostgreSQL outages, then a check of all nine tables
    /// against the reference views. Writes bench-results/chaos-<timestamp>.md.
    Chaos(chaos::ChaosArgs),
}

#[derive(Args)]
struct GenerateArgs {
    /// Good events to generate (exactly).
    #[arg(long, env = "LOADGEN_EVENTS", default_value_t = WorkloadConfig::default().events)]
    events: usize,
    /// Random seed: the same seed and settings give the same workload, byte for byte.
    #[arg(long, env = "LOADGEN_SEED", default_value_t = WorkloadConfig::default().seed)]
    seed: u64,
    /// Atoms to create (at most a quarter of --events).
    #[arg(long, env = "LOADGEN_ATOMS", default_value_t = WorkloadConfig::default().atoms)]
    atoms: usize,
    /// Triples to create (at most a quarter of --events).
    #[arg(long, env = "LOADGEN_TRIPLES", default_value_t = WorkloadConfig::default().triples)]
    triples: usize,
    /// Distinct depositing accounts (receivers of positions).
    #[arg(long, env = "LOADGEN_ACCOUNTS", default_value_t = WorkloadConfig::default().accounts)]
    accounts: usize,
    /// Most events of one type per stream message (with `--encoding rindexer` a message
    /// also holds one block only, chunked at about 75 KB, as rindexer sends them).
    #[arg(long, env = "LOADGEN_EVENTS_PER_MESSAGE", default_value_t = WorkloadConfig::default().events_per_message)]
    events_per_message: usize,
    /// Value spellings: `rindexer` (exactly as rindexer v0.41 writes them) or `mixed`
    /// (several spellings per value, messages spanning blocks, as other producers send).
    #[arg(long, env = "LOADGEN_ENCODING", value_enum, default_value_t = Encoding::Rindexer)]
    encoding: Encoding,
    /// Deliver messages out of order within sliding windows of this many messages.
    #[arg(long, env = "LOADGEN_SHUFFLE_WINDOW", default_value_t = WorkloadConfig::default().shuffle_window)]
    shuffle_window: usize,
    /// Fraction of messages re-sent later with the same payload.
    #[arg(long, env = "LOADGEN_DUPLICATE_RATE", default_value_t = WorkloadConfig::default().duplicate_rate)]
    duplicate_rate: f64,
    /// Extra malformed messages, as a fraction of the good messages.
    #[arg(long, env = "LOADGEN_MALFORMED_RATE", default_value_t = WorkloadConfig::default().malformed_rate)]
    malformed_rate: f64,
    /// Share of vault operations that are redeems.
    #[arg(long, env = "LOADGEN_REDEEM_RATIO", default_value_t = WorkloadConfig::default().redeem_ratio)]
    redeem_ratio: f64,
    /// Share of triples whose subject or object is one of the few shared atoms (the
    /// predicates), so that a few pairs hold many triples, as on a real graph.
    #[arg(long, env = "LOADGEN_HOT_PAIR_RATE", default_value_t = WorkloadConfig::default().hot_pair_rate)]
    hot_pair_rate: f64,
    /// Chance that the chain reorganizes after a block: rindexer-style forks (orphaned
    /// versions of the last blocks, then its reorg notice on every stream, then the new
    /// chain, which is the workload's events); 0 for none. Needs --encoding rindexer.
    #[arg(long, env = "LOADGEN_REORG_RATE", default_value_t = WorkloadConfig::default().reorg_rate)]
    reorg_rate: f64,
    /// Deepest reorg, in blocks with events (each fork orphans 1 to this many).
    #[arg(long, env = "LOADGEN_REORG_DEPTH", default_value_t = WorkloadConfig::default().reorg_depth)]
    reorg_depth: usize,
    /// Block number of the first event; blocks advance with the events.
    #[arg(long, env = "LOADGEN_START_BLOCK", default_value_t = WorkloadConfig::default().start_block)]
    start_block: u64,
    /// Also (or, without an explicit --redis-url, only) write the workload to this
    /// JSON-lines file, in the format of samples/mixed-encodings.jsonl.
    #[arg(long, env = "LOADGEN_OUT")]
    out: Option<PathBuf>,
    #[command(flatten)]
    redis: RedisArgs,
}

#[derive(Args)]
struct FeedArgs {
    /// JSON-lines file to send.
    #[arg(long, env = "LOADGEN_FILE")]
    file: PathBuf,
    #[command(flatten)]
    redis: RedisArgs,
}

#[derive(Args)]
struct RedisArgs {
    /// Redis URL [env: REDIS_URL] [default: redis://127.0.0.1:6379]. (For `generate`, the
    /// environment is read only without --out, so `--out f` alone never touches Redis.)
    #[arg(long)]
    redis_url: Option<String>,
    /// Prepended to every stream name (generate writes to <prefix>intuition_<event stream>).
    #[arg(long, env = "LOADGEN_STREAM_PREFIX", default_value = "")]
    stream_prefix: String,
    /// Events per second (live mode); unlimited when absent (backfill).
    #[arg(long, env = "LOADGEN_RATE")]
    rate: Option<f64>,
    /// XADD commands per pipeline.
    #[arg(long, env = "LOADGEN_PIPELINE", default_value_t = DEFAULT_PIPELINE)]
    pipeline: usize,
}

impl RedisArgs {
    fn url_or_env(&self) -> String {
        self.redis_url
            .clone()
            .or_else(|| std::env::var("REDIS_URL").ok())
            .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    rps::runtime::allocator::keep_freed_memory(rps::runtime::allocator::KEEP_FREED);
    // Whatever connection strings it was given, by flag or environment, are never printed.
    let env_urls = ["REDIS_URL", "BENCH_PG_URL", "CHAOS_PG_URL"].into_iter().filter_map(|k| std::env::var(k).ok());
    for given in std::env::args().chain(env_urls) {
        rps::runtime::redact::register(&given);
    }
    let outcome = match Cli::parse().command {
        Command::Generate(args) => run_generate(args).await,
        Command::Feed(args) => run_feed(args).await,
        Command::Bench(config) => run_bench(config).await,
        Command::Chaos(args) => chaos::run(args).await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => rps::ops::cli::fail(e),
    }
}

async fn run_bench(config: loadgen::bench::BenchConfig) -> anyhow::Result<()> {
    let report = loadgen::bench::run(&config).await?;
    println!("{}", report.markdown());
    for path in &report.written {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

async fn run_generate(args: GenerateArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    if args.reorg_rate > 0.0 && args.encoding != Encoding::Rindexer {
        anyhow::bail!("--reorg-rate needs --encoding rindexer: forks are published per block, as rindexer does");
    }
    let workload = generate(&config(&args));
    let generated = start.elapsed();
    let mut targets = Vec::new();
    if let Some(path) = &args.out {
        write_jsonl(path, &workload.messages)?;
        targets.push(path.display().to_string());
    }
    let url = match (&args.redis.redis_url, &args.out) {
        (Some(url), _) => Some(url.clone()),
        (None, None) => Some(args.redis.url_or_env()),
        (None, Some(_)) => None,
    };
    if let Some(url) = url {
        let mut con = redis_out::connect(&url).await?;
        let options = WriteOptions {
            stream_prefix: args.redis.stream_prefix.clone(),
            rate: args.redis.rate,
            pipeline: args.redis.pipeline,
        };
        redis_out::write_messages(&mut con, &workload.messages, &options).await?;
        targets.push(url);
    }
    let s = &workload.stats;
    println!(
        "loadgen generate: events={} messages={} duplicates={} malformed={} reorgs={} orphaned_events={} {} \
         generate_seconds={:.3} -> {}",
        s.events,
        s.messages,
        s.duplicates,
        s.malformed,
        s.forks.reorgs,
        s.forks.orphaned_events,
        timing(s.events, start.elapsed()),
        generated.as_secs_f64(),
        targets.join(", ")
    );
    Ok(())
}

fn config(args: &GenerateArgs) -> WorkloadConfig {
    WorkloadConfig {
        events: args.events,
        seed: args.seed,
        atoms: args.atoms,
        triples: args.triples,
        accounts: args.accounts,
        events_per_message: args.events_per_message,
        shuffle_window: args.shuffle_window,
        duplicate_rate: args.duplicate_rate,
        malformed_rate: args.malformed_rate,
        redeem_ratio: args.redeem_ratio,
        hot_pair_rate: args.hot_pair_rate,
        start_block: args.start_block,
        encoding: args.encoding,
        reorg_rate: args.reorg_rate,
        reorg_depth: args.reorg_depth,
        ..WorkloadConfig::default()
    }
}

async fn run_feed(args: FeedArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let messages = read_jsonl(&args.file)?;
    let keys: Vec<String> = messages.iter().map(|m| format!("{}{}", args.redis.stream_prefix, m.stream)).collect();
    let entries: Vec<Entry> = messages
        .iter()
        .zip(&keys)
        .map(|(m, key)| Entry { key, id: "*", payload: &m.payload, events: m.events })
        .collect();
    let url = args.redis.url_or_env();
    let mut con = redis_out::connect(&url).await?;
    let summary = redis_out::write_entries(&mut con, &entries, args.redis.rate, args.redis.pipeline)
        .await
        .with_context(|| format!("feeding {}", args.file.display()))?;
    println!(
        "loadgen feed: events={} messages={} {} -> {}",
        summary.events,
        summary.messages,
        timing(summary.events, start.elapsed()),
        url
    );
    Ok(())
}

fn timing(events: usize, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    format!("seconds={secs:.3} events_per_sec={:.0}", events as f64 / secs.max(1e-9))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_flag_is_described_with_its_default() {
        rps::ops::cli::assert_help_complete(super::Cli::command());
    }
}
