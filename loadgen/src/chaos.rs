//! `loadgen chaos`: the long fault-injection run, as one command.
//!
//! A large noisy workload (duplicates, out-of-order delivery, malformed messages) is fed
//! to Redis while several engines and analytics workers run as real processes. Meanwhile
//! processes are killed with SIGKILL at random moments (some restarted with a crash point,
//! so they die at a precise step of their next batch, some stopped with SIGTERM), and
//! PostgreSQL goes away for the test database (backends terminated, or connections refused
//! for a few seconds). When the load is in, the chaos stops, a last engine and worker drain
//! what is left, and all nine maintained tables are compared with the reference views.
//! The figures are printed and written to `bench-results/chaos-<timestamp>.md`.

use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use loadgen::redis_out::{self, stream_keys, WriteOptions};
use loadgen::workload::{generate, Workload, WorkloadConfig};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rps::ops::verify::{compare_all, TableDiff, ANALYTICS_TABLES, STRONG_TABLES};

#[derive(Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Good (distinct) events in the workload.
    #[arg(long, default_value_t = 500_000)]
    events: usize,
    /// Random seed of the workload, the kills and the outages.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Engine processes sharing the consumer group.
    #[arg(long, default_value_t = 4)]
    engines: usize,
    /// Analytics worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Messages per stream per engine read.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Fraction of messages delivered twice.
    #[arg(long, default_value_t = 0.05)]
    duplicate_rate: f64,
    /// Extra malformed messages, as a fraction of the good ones.
    #[arg(long, default_value_t = 0.01)]
    malformed_rate: f64,
    /// Out-of-order delivery within windows of this many messages (never across a reorg
    /// notice: rindexer keeps each stream in order).
    #[arg(long, default_value_t = 200)]
    shuffle_window: usize,
    /// Chance that the chain reorganizes after a block (rindexer-style forks, see `loadgen
    /// generate --reorg-rate`); the check then also requires that no orphaned event is left.
    #[arg(long, default_value_t = 0.0005)]
    reorg_rate: f64,
    /// Deepest reorg, in blocks with events.
    #[arg(long, default_value_t = 16)]
    reorg_depth: usize,
    /// Shortest time between two kills (milliseconds); each wait is drawn between this and
    /// --kill-max-ms.
    #[arg(long, default_value_t = 300)]
    kill_min_ms: u64,
    /// Longest time between two kills (milliseconds).
    #[arg(long, default_value_t = 2_500)]
    kill_max_ms: u64,
    /// Time between two PostgreSQL outages (milliseconds).
    #[arg(long, default_value_t = 10_000)]
    outage_every_ms: u64,
    /// How long connections are refused in a refusal outage (milliseconds).
    #[arg(long, default_value_t = 3_000)]
    outage_ms: u64,
    /// The workload is written in this many slices, one every --feed-interval-ms, so
    /// processes die while the load is still arriving.
    #[arg(long, default_value_t = 120)]
    feed_slices: usize,
    /// Milliseconds between two slices of the workload.
    #[arg(long, default_value_t = 1_000)]
    feed_interval_ms: u64,
    /// PostgreSQL server (without a database name); the run uses a fresh database on it.
    #[arg(long, env = "CHAOS_PG_URL", default_value = "postgres://postgres@127.0.0.1:5432")]
    pg_url: String,
    /// Redis URL; the run uses keys of its own (`rps_chaos_<time>:…`, and a database of that
    /// name) and deletes them unless --keep.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Where redis-postgres-sync and analytics-worker are (default: next to loadgen).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the markdown report goes.
    #[arg(long, default_value = "bench-results")]
    out_dir: PathBuf,
    /// Keep the database and streams afterwards (for inspection).
    #[arg(long)]
    keep: bool,
    /// Give up if the run has not drained after this many seconds.
    #[arg(long, default_value_t = 3_600)]
    timeout_s: u64,
}

const CRASH_POINTS: [&str; 5] = ["after_copy", "after_merge", "after_commit", "after_ack", "after_publish"];
const ENGINE_GROUP: &str = "redis-postgres-sync";
const WORKER_GROUP: &str = "analytics-worker";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Engine,
    Worker,
}

struct Proc {
    role: Role,
    name: String,
    child: Child,
}

/// Everything the run counts.
#[derive(Default, Debug)]
struct Figures {
    sigkills: u64,
    crash_point_aborts: u64,
    sigterms: u64,
    unexpected_exits: u64,
    terminations: u64,
    backends_terminated: i64,
    refusals: u64,
    dead_letters: usize,
    logged_events: i64,
    /// Logged events of orphaned blocks (must be 0).
    orphans_left: i64,
}

struct Run {
    args: ChaosArgs,
    name: String,
    database_url: String,
    streams: Vec<String>,
    term_updates: String,
    bin_dir: PathBuf,
    log_dir: PathBuf,
    rng: ChaCha8Rng,
    figures: Figures,
}

pub async fn run(args: ChaosArgs) -> Result<()> {
    let started = Instant::now();
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let name = format!("rps_chaos_{stamp}");
    let prefix = format!("{name}:");
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?.parent().context("loadgen has no directory")?.to_path_buf(),
    };
    for bin in ["redis-postgres-sync", "analytics-worker"] {
        if !bin_dir.join(bin).is_file() {
            bail!("{bin} not found in {}: build the workspace (cargo build --release) first", bin_dir.display());
        }
    }
    let log_dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&log_dir)?;
    let database_url = format!("{}/{name}", args.pg_url.trim_end_matches('/'));
    rps::pg::schema::ensure_database(&database_url).await?;
    rps::pg::schema::migrate(&database_url).await?;
    let mut run = Run {
        streams: stream_keys(&prefix),
        term_updates: format!("{prefix}term_updates"),
        rng: ChaCha8Rng::seed_from_u64(args.seed ^ 0xc4a05),
        args: args.clone(),
        name,
        database_url,
        bin_dir,
        log_dir,
        figures: Figures::default(),
    };

    let workload = generate(&WorkloadConfig {
        events: args.events,
        seed: args.seed,
        duplicate_rate: args.duplicate_rate,
        malformed_rate: args.malformed_rate,
        shuffle_window: args.shuffle_window,
        reorg_rate: args.reorg_rate,
        reorg_depth: args.reorg_depth,
        ..WorkloadConfig::default()
    });
    let s = &workload.stats;
    println!(
        "chaos {}: {} events in {} messages ({} duplicates, {} malformed); {} engines, {} workers; logs in {}",
        run.name,
        s.events,
        s.messages,
        s.duplicates,
        s.malformed,
        args.engines,
        args.workers,
        run.log_dir.display()
    );
    let feeder = tokio::spawn(feed(workload.clone(), args.redis_url.clone(), prefix.clone(), args.clone()));

    let mut procs = Vec::new();
    for i in 0..args.engines {
        procs.push(run.spawn(Role::Engine, &format!("chaos-engine-{i}"), None, false)?);
    }
    for i in 0..args.workers {
        procs.push(run.spawn(Role::Worker, &format!("chaos-worker-{i}"), None, false)?);
    }

    let deadline = started + Duration::from_secs(args.timeout_s);
    let mut next_outage = Instant::now() + Duration::from_millis(args.outage_every_ms);
    let mut refuse_next = false;
    loop {
        let pause = run.rng.gen_range(args.kill_min_ms..=args.kill_max_ms.max(args.kill_min_ms));
        tokio::time::sleep(Duration::from_millis(pause)).await;
        run.reap(&mut procs)?;
        if feeder.is_finished() && run.drained(&args.redis_url).await {
            break;
        }
        if Instant::now() > deadline {
            bail!("not drained after {} s", args.timeout_s);
        }
        if Instant::now() >= next_outage {
            run.outage(refuse_next).await?;
            refuse_next = !refuse_next;
            next_outage = Instant::now() + Duration::from_millis(args.outage_every_ms);
            continue;
        }
        run.strike(&mut procs).await?;
    }
    feeder.await??;

    // The load is in and was drained under fire: stop everyone, then one clean drain
    // (claiming whatever a killed process left pending) before comparing.
    for p in &procs {
        signal(p.child.id(), "TERM");
    }
    for p in &mut procs {
        wait_exit(&mut p.child, Duration::from_secs(15)).await;
    }
    let mut last = vec![
        run.spawn(Role::Engine, "chaos-drain-engine", None, true)?,
        run.spawn(Role::Worker, "chaos-drain-worker", None, true)?,
    ];
    for p in &mut last {
        let status = wait_exit(&mut p.child, Duration::from_secs(600)).await;
        if !status.is_some_and(|s| s.success()) {
            bail!("the final {} did not drain cleanly ({status:?}); see {}", p.name, run.log_dir.display());
        }
    }

    let client = rps::pg::connect_one(&run.database_url).await?;
    let mut diffs = compare_all(&client, &STRONG_TABLES).await?;
    diffs.extend(compare_all(&client, &ANALYTICS_TABLES).await?);
    run.figures.logged_events = client
        .query_one(
            "SELECT (SELECT count(*) FROM atom_created_events) + (SELECT count(*) FROM triple_created_events) \
             + (SELECT count(*) FROM deposited_events) + (SELECT count(*) FROM redeemed_events) \
             + (SELECT count(*) FROM share_price_changed_events) + (SELECT count(*) FROM generic_events)",
            &[],
        )
        .await?
        .get(0);
    run.figures.orphans_left = orphans_left(&client, &workload).await?;
    run.figures.dead_letters = run.dead_letters(&args.redis_url).await?;
    let report = run.report(&workload, &diffs, started.elapsed());
    println!("{report}");
    std::fs::create_dir_all(&args.out_dir)?;
    let path = args.out_dir.join(format!("chaos-{stamp}.md"));
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    println!("report written to {}", path.display());
    let mismatches = mismatches(&diffs, &run.figures, workload.stats.events);
    if !args.keep {
        run.cleanup(&args.redis_url).await?;
    }
    if mismatches > 0 {
        bail!("{mismatches} mismatches against the reference views");
    }
    Ok(())
}

/// Rows that differ over the nine tables, plus the difference in logged events and the
/// orphaned events left. The log holds only canonical and orphaned events, so with no
/// orphan left and the canonical count it is exactly the canonical chain.
fn mismatches(diffs: &[TableDiff], figures: &Figures, expected: usize) -> i64 {
    let rows = diffs.iter().map(|d| d.only_in_table + d.only_in_view).sum::<i64>();
    rows + (figures.logged_events - expected as i64).abs() + figures.orphans_left
}

/// Logged events of the workload's orphaned blocks.
async fn orphans_left(client: &tokio_postgres::Client, workload: &Workload) -> Result<i64> {
    let blocks = &workload.stats.forks.orphaned_blocks;
    let numbers: Vec<i64> = blocks.iter().map(|(b, _)| *b as i64).collect();
    let hashes: Vec<&str> = blocks.iter().map(|(_, h)| h.as_str()).collect();
    let sql = "SELECT count(*) FROM logged_events l \
               JOIN unnest($1::bigint[], $2::text[]) AS o(b, h) ON l.block_number = o.b AND l.block_hash = o.h";
    Ok(client.query_one(sql, &[&numbers, &hashes]).await?.get(0))
}

/// Write the workload in slices, so the kills happen while load is still arriving.
async fn feed(workload: Workload, redis_url: String, prefix: String, args: ChaosArgs) -> Result<()> {
    let mut con = redis_out::connect(&redis_url).await?;
    let options = WriteOptions { stream_prefix: prefix, ..WriteOptions::default() };
    let slice = workload.messages.len() / args.feed_slices.max(1) + 1;
    for part in workload.messages.chunks(slice) {
        redis_out::write_messages(&mut con, part, &options).await?;
        tokio::time::sleep(Duration::from_millis(args.feed_interval_ms)).await;
    }
    Ok(())
}

impl Run {
    fn spawn(&mut self, role: Role, name: &str, crash_point: Option<&str>, drain: bool) -> Result<Proc> {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.log_dir.join(format!("{name}.log")))?;
        let mut cmd = match role {
            Role::Engine => {
                let mut c = Command::new(self.bin_dir.join("redis-postgres-sync"));
                c.env("STREAMS", self.streams.join(","))
                    // The workload is fed while engines start: a stream may not exist yet.
                    .env("CREATE_STREAMS", "true")
                    .env("CONSUMER_NAME", name)
                    .env("BATCH_SIZE", self.args.batch_size.to_string())
                    .env("METRICS_ADDR", "127.0.0.1:0")
                    .env("CLAIM_IDLE_MS", if drain { "0" } else { "5000" });
                if drain {
                    c.env("EXIT_WHEN_IDLE", "true");
                }
                c
            }
            Role::Worker => {
                let mut c = Command::new(self.bin_dir.join("analytics-worker"));
                c.env("ANALYTICS_CONSUMER", name)
                    .env("ANALYTICS_METRICS_ADDR", "127.0.0.1:0")
                    .env("ANALYTICS_CLAIM_IDLE_MS", if drain { "0" } else { "5000" });
                if drain {
                    c.env("ANALYTICS_EXIT_WHEN_IDLE", "true");
                }
                c
            }
        };
        cmd.env("DATABASE_URL", &self.database_url)
            .env("REDIS_URL", &self.args.redis_url)
            .env("TERM_UPDATES_STREAM", &self.term_updates)
            .env("RUST_LOG", "warn")
            .env_remove("RPS_CRASH_POINT")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(point) = crash_point {
            cmd.env("RPS_CRASH_POINT", point);
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Proc { role, name: name.to_owned(), child })
    }

    /// Restart whatever exited by itself: crash-point aborts, expected; anything else is
    /// counted as unexpected.
    fn reap(&mut self, procs: &mut [Proc]) -> Result<()> {
        for p in procs.iter_mut() {
            if let Some(status) = p.child.try_wait()? {
                // A crash point aborts (SIGABRT); any other exit was not asked for.
                if status.signal() == Some(6) {
                    self.figures.crash_point_aborts += 1;
                } else {
                    self.figures.unexpected_exits += 1;
                    eprintln!("chaos: {} exited by itself ({status}); restarting", p.name);
                }
                let (role, name) = (p.role, p.name.clone());
                *p = self.spawn(role, &name, None, false)?;
            }
        }
        Ok(())
    }

    /// Kill one process at random and start it again under the same name; one restart in
    /// four carries a crash point, one stop in six is a SIGTERM instead.
    async fn strike(&mut self, procs: &mut [Proc]) -> Result<()> {
        let Some(p) = procs.choose_mut(&mut self.rng) else {
            return Ok(());
        };
        if self.rng.gen_ratio(1, 6) {
            signal(p.child.id(), "TERM");
            wait_exit(&mut p.child, Duration::from_secs(15)).await;
            self.figures.sigterms += 1;
        } else {
            let _ = p.child.kill();
            let _ = p.child.wait();
            self.figures.sigkills += 1;
        }
        let point = (p.role == Role::Engine && self.rng.gen_ratio(1, 4))
            .then(|| *CRASH_POINTS.choose(&mut self.rng).expect("non-empty"));
        let (role, name) = (p.role, p.name.clone());
        *p = self.spawn(role, &name, point, false)?;
        Ok(())
    }

    /// Terminate every backend of the run's database; with `refuse`, also refuse new
    /// connections for --outage-ms first.
    async fn outage(&mut self, refuse: bool) -> Result<()> {
        let admin = loadgen::admin::connect(&self.args.pg_url).await?;
        let alter = |allow: bool| format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {allow}", self.name);
        if refuse {
            admin.batch_execute(&alter(false)).await?;
        }
        let terminate = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                         WHERE datname = $1 AND pid <> pg_backend_pid()";
        let n: i64 = admin.query_one(terminate, &[&self.name]).await?.get(0);
        self.figures.backends_terminated += n;
        if refuse {
            tokio::time::sleep(Duration::from_millis(self.args.outage_ms)).await;
            admin.batch_execute(&alter(true)).await?;
            self.figures.refusals += 1;
        } else {
            self.figures.terminations += 1;
        }
        Ok(())
    }

    /// The engines' group has every entry and acked it all, the outbox is empty, and the
    /// workers' group has every term update.
    async fn drained(&self, redis_url: &str) -> bool {
        let outbox_empty = async {
            let client = rps::pg::connect_one(&self.database_url).await.ok()?;
            let row = client.query_one("SELECT count(*) FROM term_update_outbox", &[]).await.ok()?;
            Some(row.get::<_, i64>(0) == 0)
        };
        group_drained(redis_url, &self.streams, ENGINE_GROUP).await
            && outbox_empty.await == Some(true)
            && group_drained(redis_url, std::slice::from_ref(&self.term_updates), WORKER_GROUP).await
    }

    async fn dead_letters(&self, redis_url: &str) -> Result<usize> {
        let mut con = redis_out::connect(redis_url).await?;
        let mut n = 0;
        for s in &self.streams {
            let len: usize = redis::cmd("XLEN").arg(rps::stream::dead_letter_stream(s)).query_async(&mut con).await?;
            n += len;
        }
        Ok(n)
    }

    async fn cleanup(&self, redis_url: &str) -> Result<()> {
        let mut con = redis_out::connect(redis_url).await?;
        let mut keys: Vec<String> = self.streams.clone();
        keys.extend(self.streams.iter().map(|s| rps::stream::dead_letter_stream(s)));
        keys.push(self.term_updates.clone());
        keys.push(rps::stream::dead_letter_stream(&self.term_updates));
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut con).await?;
        let admin = loadgen::admin::connect(&self.args.pg_url).await?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).await?;
        let _ = std::fs::remove_dir_all(&self.log_dir);
        Ok(())
    }

    fn report(&self, workload: &Workload, diffs: &[TableDiff], took: Duration) -> String {
        let (a, f, s) = (&self.args, &self.figures, &workload.stats);
        let mismatches = mismatches(diffs, f, s.events);
        let kills = f.sigkills + f.crash_point_aborts;
        let mut out = String::new();
        let _ = writeln!(out, "# Chaos run {}\n", self.name);
        let _ = writeln!(
            out,
            "`loadgen chaos --events {} --seed {} --engines {} --workers {} --batch-size {} --reorg-rate {} \
             --reorg-depth {}` on {} cores, {:.0} s.\n",
            a.events,
            a.seed,
            a.engines,
            a.workers,
            a.batch_size,
            a.reorg_rate,
            a.reorg_depth,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            took.as_secs_f64()
        );
        let _ = writeln!(out, "| figure | value |\n|---|---|");
        let rows = [
            ("events under load (distinct good events)", s.events.to_string()),
            ("messages delivered (incl. duplicates and malformed)", s.messages.to_string()),
            ("duplicate messages", s.duplicates.to_string()),
            (
                "chain reorganizations (orphaned events published / notice copies)",
                format!("{} ({} / {})", s.forks.reorgs, s.forks.orphaned_events, s.forks.notices),
            ),
            ("orphaned events left in the log", f.orphans_left.to_string()),
            (
                "kills survived (SIGKILL at random + crash-point aborts)",
                format!("{kills} ({} + {})", f.sigkills, f.crash_point_aborts),
            ),
            ("graceful stops (SIGTERM) survived", f.sigterms.to_string()),
            (
                "PostgreSQL outages survived (backends terminated / connections refused)",
                format!(
                    "{} ({} + {}, {} backends terminated)",
                    f.terminations + f.refusals,
                    f.terminations,
                    f.refusals,
                    f.backends_terminated
                ),
            ),
            ("bad inputs tried (malformed messages)", s.malformed.to_string()),
            ("dead letters written (at least one per bad input)", f.dead_letters.to_string()),
            ("events in the log", f.logged_events.to_string()),
            ("unexpected exits", f.unexpected_exits.to_string()),
            (
                "**mismatches** (rows differing over the nine tables + logged-event difference + orphans left)",
                format!("**{mismatches}**"),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        let _ = writeln!(out, "\nPer table, against the `snapshot` reference views:\n\n```");
        for d in diffs {
            let _ = writeln!(out, "{d}");
        }
        let _ = writeln!(out, "```");
        out
    }
}

/// Whether `group` has been handed every entry of `streams` and acked them all.
async fn group_drained(redis_url: &str, streams: &[String], group: &str) -> bool {
    let Ok(mut con) = redis_out::connect(redis_url).await else {
        return false;
    };
    for stream in streams {
        let info: redis::RedisResult<redis::streams::StreamInfoStreamReply> =
            redis::cmd("XINFO").arg("STREAM").arg(stream).query_async(&mut con).await;
        let groups: redis::RedisResult<redis::streams::StreamInfoGroupsReply> =
            redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(&mut con).await;
        let (Ok(info), Ok(groups)) = (info, groups) else {
            return false;
        };
        if !groups
            .groups
            .iter()
            .any(|g| g.name == group && g.pending == 0 && g.last_delivered_id == info.last_generated_id)
        {
            return false;
        }
    }
    true
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// Wait for a child to exit, SIGKILL it after `limit`.
async fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
