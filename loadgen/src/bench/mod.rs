//! `loadgen bench`: one command that measures the engine on realistic workloads, with the
//! baselines beside it in the same run, and writes a markdown + JSON report.
//!
//! Every figure comes from its own scratch database and streams (see [`scratch`]), so the
//! numbers are comparable and a developer's data is never touched. Sizes are flags, so CI
//! can run the whole thing small. `--pg-cluster` chooses the server (see [`cluster`]);
//! `both` runs the whole bench once per mode and writes one report per mode.

mod cluster;
mod cpu;
mod grow;
mod live;
mod machine;
mod measure;
mod preload;
mod report;
mod scaling;
mod scratch;
mod statements;
mod storage;
mod variants;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

pub use cluster::ClusterMode;
pub use measure::Services;
pub use report::Report;

use crate::workload::{generate, Encoding, Workload, WorkloadConfig};
use cluster::Cluster;
use preload::PreloadPlan;
use scaling::ScaleChecks;

#[derive(Args, Clone, Debug)]
pub struct BenchConfig {
    /// PostgreSQL URL without a database name; scratch databases are created under it
    /// (`--pg-cluster default`).
    #[arg(long, env = "BENCH_PG_URL", default_value = "postgres://postgres@127.0.0.1:5432")]
    pub pg_url: String,
    /// Redis URL; the bench writes only to keys of its own (`rps_bench_<run>_<tag>:…`, with
    /// databases of the same names) and deletes them.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Events in the backfill workload (also used for the raw-ingest floor).
    #[arg(long, default_value_t = 300_000)]
    pub events: usize,
    /// Random seed of the workloads (the same seed, the same events).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How many times the backfill and the raw-ingest floor (alternately, so drift on a
    /// shared machine hits both alike) and each live rate are measured; the report quotes
    /// the median run (by events/s, or by p99 latency) and lists every run.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Engine batch size (messages per stream per read) for backfill and scaling runs.
    #[arg(long, default_value_t = rps::ingest::config::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// The engine's `--apply-parts`: concurrent transactions per large batch (1 measures
    /// the single-transaction path).
    #[arg(long, default_value_t = 2)]
    pub apply_parts: usize,
    /// Events pushed through the per-event path (batch size 1, one event per message).
    #[arg(long, default_value_t = 5_000)]
    pub per_event_events: usize,
    /// Offered rates for the live-latency runs, events/s.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    pub live_rates: Vec<f64>,
    /// Seconds of traffic per live run.
    #[arg(long, default_value_t = 10.0)]
    pub live_seconds: f64,
    /// Events already in the database for the scaling runs (preloaded in slices, so memory
    /// stays bounded whatever the size).
    #[arg(long, value_delimiter = ',', default_value = "0,5000000,20000000")]
    pub scale_sizes: Vec<usize>,
    /// Events applied on top of each scaling size.
    #[arg(long, default_value_t = 100_000)]
    pub scale_events: usize,
    /// Compare tables with the reference views after scaling runs up to this preload size
    /// (a full recompute is slow on millions of events).
    #[arg(long, default_value_t = 1_000_000)]
    pub verify_scale_up_to: usize,
    /// Time one full refresh of every reference view (the seed's design) after scaling runs
    /// up to this preload size (above it the report says "not measured").
    #[arg(long, default_value_t = 5_000_000)]
    pub refresh_scale_up_to: usize,
    /// Events per slice of a scaling preload: generated, decoded, encoded and COPYed one
    /// slice at a time, so memory is bounded by the slice (about 1 GB per 250k events).
    #[arg(long, default_value_t = preload::DEFAULT_SLICE_EVENTS)]
    pub preload_slice_events: usize,
    /// Preload the scaling sizes through the engine, slice by slice, as a backfill writes
    /// them, instead of COPYing the events and building the state tables from the reference
    /// views: slower (the engine's own pace), but every index ends as a backfill leaves it,
    /// and the report adds the backfill's throughput as the database grows.
    #[arg(long)]
    pub preload_through_engine: bool,
    /// PostgreSQL server to measure: `default` (the one at --pg-url, as configured),
    /// `tuned` (a private cluster initdb'd under the temp dir with production-like
    /// settings, removed afterwards) or `both` (the whole bench once per mode, a report
    /// each; the tuned one's files end in `-tuned`).
    #[arg(long, value_enum, default_value_t = ClusterMode::Default)]
    pub pg_cluster: ClusterMode,
    /// Profile PostgreSQL's statements during each scaling run (`pg_stat_statements`,
    /// nested statements included) and list the top ones in the report. The tuned cluster
    /// loads the library for it; the default server must already load it. Off by default:
    /// the tracking costs CPU.
    #[arg(long)]
    pub statement_profile: bool,
    /// SQL to compare at every scale size (repeatable): the measured batches run on copies of
    /// the preloaded database, with the current definitions and with each file's SQL applied
    /// first (a line `-- statement` separates statements that must run on their own).
    #[arg(long = "scale-sql-variant")]
    pub scale_sql_variants: Vec<PathBuf>,
    /// Rounds of the variant comparison (the order alternates between rounds).
    #[arg(long, default_value_t = 2)]
    pub scale_variant_rounds: usize,
    /// Run each scaling size's batches on copies of its preload also without
    /// `--scale-sql-variant`: `--scale-variant-rounds` runs of the current definitions per
    /// size, where the main scaling table has one (one run is within about 14 % of another).
    #[arg(long)]
    pub scale_repeat_on_copies: bool,
    /// Directory for the reports.
    #[arg(long, default_value = "bench-results")]
    pub out_dir: PathBuf,
    /// Workload format: `rindexer` (its exact spellings, one message per event and block)
    /// or `mixed` (several spellings per value, 50-event messages spanning blocks, as in
    /// the reports before stop 15).
    #[arg(long, value_enum, default_value_t = Encoding::Rindexer)]
    pub encoding: Encoding,
}

impl Default for BenchConfig {
    /// The command-line defaults.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: BenchConfig,
        }
        <Defaults as clap::Parser>::parse_from(["bench"]).config
    }
}

/// Run every measurement and write the report; returns it. With `--pg-cluster both`, once
/// per mode: returns the last report, whose `written` lists every file written.
pub async fn run(config: &BenchConfig) -> Result<Report> {
    let runs = async {
        let mut written = Vec::new();
        let mut last = None;
        for mode in config.pg_cluster.runs() {
            let report = run_mode(config, mode).await?;
            written.extend(report.written.iter().cloned());
            last = Some(report);
        }
        let mut report: Report = last.expect("at least one mode");
        report.written = written;
        Ok(report)
    };
    // Interrupted: dropping the run stops and removes a private cluster.
    tokio::select! {
        result = runs => result,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    }
}

/// The whole bench against one server. A private cluster is removed on return, error or not.
async fn run_mode(config: &BenchConfig, mode: ClusterMode) -> Result<Report> {
    let started = Instant::now();
    let cluster = Cluster::start(mode, &config.pg_url, config.statement_profile).await?;
    // Unique per run, also for runs of one process started within the same second (tests).
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let run_id = format!("{}_{}_{run}", chrono_stamp(), std::process::id());
    let svc = Services {
        pg_base: cluster.base_url.clone(),
        redis_url: config.redis_url.clone(),
        run_id,
        apply_parts: config.apply_parts,
        processes: cluster.processes,
        statement_profile: config.statement_profile,
    };
    eprintln!("bench: PostgreSQL cluster {} at {}", mode.name(), svc.pg_base);
    let mut report = Report::for_cluster(config, &cluster).await?;

    let workload = make_workload(config, config.events, config.seed, 50);
    let (mut backfills, mut floors) = (Vec::new(), Vec::new());
    for run in 1..=config.repeat.max(1) {
        eprintln!("bench: backfill of {} events (batch size {}), run {run}", config.events, config.batch_size);
        // The analytics drain is measured once, after the first run.
        let backfill = measure::backfill(&svc, "backfill", &workload, config.batch_size, run == 1).await?;
        let per_batch = (backfill.engine.events / backfill.engine.batches.max(1)) as usize;
        eprintln!("bench: raw-ingest floor ({per_batch} events per transaction), run {run}");
        floors.push(measure::raw_floor(&svc, &workload, per_batch).await?);
        backfills.push(backfill);
    }
    report.backfill = Some(measure::Backfill::median(backfills));
    report.raw_floor = Some(measure::RawFloor::median(floors));
    drop(workload);

    eprintln!("bench: per-event path ({} events, batch size 1)", config.per_event_events);
    report.per_event =
        Some(measure::per_event(&svc, &make_workload(config, config.per_event_events, config.seed + 1, 1)).await?);

    for &rate in &config.live_rates {
        let events = (rate * config.live_seconds).round() as usize;
        let workload = make_workload(config, events, config.seed + 2, 1);
        let mut runs = Vec::new();
        for run in 1..=config.repeat.max(1) {
            eprintln!("bench: live at {rate} events/s for {} s, run {run}", config.live_seconds);
            runs.push(live::live(&svc, &workload, rate).await?);
        }
        report.live.push(live::Live::median(runs));
    }

    // Later blocks than any preload: on chain no two logs share (block, log_index).
    let measured = make_workload_from(config, config.scale_events, config.seed + 3, 50, LATER_BLOCKS);
    let variants = config.scale_sql_variants.iter().map(|p| variants::Variant::load(p)).collect::<Result<Vec<_>>>()?;
    let variant_plan = scaling::VariantPlan {
        variants: &variants,
        rounds: config.scale_variant_rounds,
        repeat_current: config.scale_repeat_on_copies,
    };
    for &size in &config.scale_sizes {
        eprintln!("bench: {} events on top of {size}", config.scale_events);
        let plan = PreloadPlan {
            events: size,
            seed: config.seed + 4,
            slice_events: config.preload_slice_events,
            through_engine: config.preload_through_engine,
        };
        let checks =
            ScaleChecks { verify: size <= config.verify_scale_up_to, refresh: size <= config.refresh_scale_up_to };
        report.scaling.push(scaling::scaling(&svc, plan, &measured, config.batch_size, checks, &variant_plan).await?);
    }
    report.total_seconds = started.elapsed().as_secs_f64();
    report.write(&config.out_dir)?;
    Ok(report)
}

/// Start block of the scaling runs' measured workload, past any preload: a block holds at
/// least one event and the chain skips at most 20 blocks at a time, so a preload of up to
/// about 24M events ends below it (the scaling run checks it does).
const LATER_BLOCKS: u64 = 500_000_000;

fn make_workload(config: &BenchConfig, events: usize, seed: u64, events_per_message: usize) -> Workload {
    make_workload_from(config, events, seed, events_per_message, WorkloadConfig::default().start_block)
}

fn make_workload_from(
    config: &BenchConfig,
    events: usize,
    seed: u64,
    events_per_message: usize,
    start_block: u64,
) -> Workload {
    if events == 0 {
        return Workload { messages: Vec::new(), stats: Default::default() };
    }
    let shape = workload_config(events, seed, events_per_message, start_block);
    generate(&WorkloadConfig { encoding: config.encoding, ..shape })
}

/// The bench's workload shape: the universe scales with the workload so that small runs
/// stay dense and large ones sparse.
fn workload_config(events: usize, seed: u64, events_per_message: usize, start_block: u64) -> WorkloadConfig {
    let defaults = WorkloadConfig::default();
    WorkloadConfig {
        events,
        seed,
        events_per_message,
        atoms: defaults.atoms.max(events / 150),
        triples: defaults.triples.max(events / 60),
        accounts: defaults.accounts.max(events / 300),
        start_block,
        ..defaults
    }
}

/// UTC timestamp for file and database names: 20261125T171400.
fn chrono_stamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_417), (2025, 11, 25));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
