//! Real server crashes while the engine drains: a private PostgreSQL cluster stopped with
//! `pg_ctl stop -m immediate` (every server process quits at once, no checkpoint: WAL still
//! in shared memory is lost and the next start runs crash recovery), and a private Redis
//! (append-only file, fsync at every write) killed with SIGKILL. Several crashes per run, in
//! live and in `--backfill` mode, with batches applied in parts too, the engine and the
//! analytics worker running as real processes throughout. Afterwards every event sent is in
//! the log exactly once and all nine tables equal the reference views.
//!
//! Each crash comes the moment the engine's consumer group acks more entries. In backfill
//! mode (`synchronous_commit = off`) that is when a batch's commit is most likely still only
//! in PostgreSQL's WAL buffers: an engine that acks before the commit is flushed loses those
//! events for good, and these tests catch it.

use std::time::{Duration, Instant};

use integration_tests::analytics::assert_analytics_match;
use integration_tests::env::REDIS;
use integration_tests::faults::{feed_workload, logged_events, noisy_workload, wait_drained, Proc};
use integration_tests::faults::{PrivatePostgres, PrivateRedis};
use integration_tests::TestEnv;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ENGINE_GROUP: &str = "redis-postgres-sync";
const WORKER_GROUP: &str = "analytics-worker";
/// How long a run may take to drain after its last crash.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);

/// One crash scenario.
struct Run {
    tag: &'static str,
    backfill: bool,
    /// The engine's BATCH_SIZE (messages per stream per read); 100 makes batches of about
    /// 5,000 events, which are applied in two parts.
    batch_size: usize,
    events: usize,
    crashes: usize,
    seed: u64,
}

impl Run {
    fn engine_vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![("BATCH_SIZE", self.batch_size.to_string()), ("EXIT_WHEN_IDLE", "true".into())];
        if self.backfill {
            vars.push(("BACKFILL", "true".into()));
        }
        vars
    }
}

/// Entries the engine's group has acked over `streams`: delivered minus pending.
async fn acked_entries(redis_url: &str, streams: &[String]) -> usize {
    let Ok(mut con) = rps::stream::connect(redis_url).await else { return 0 };
    let mut acked = 0;
    for stream in streams {
        let groups: redis::RedisResult<redis::streams::StreamInfoGroupsReply> =
            redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(&mut con).await;
        if let Some(g) = groups.ok().and_then(|r| r.groups.into_iter().find(|g| g.name == ENGINE_GROUP)) {
            acked += g.entries_read.unwrap_or(0).saturating_sub(g.pending);
        }
    }
    acked
}

/// Wait until the group acks more than `before` entries; the number acked then.
async fn next_ack(redis_url: &str, streams: &[String], before: usize, engine: &mut Proc) -> usize {
    let started = Instant::now();
    loop {
        let acked = acked_entries(redis_url, streams).await;
        if acked > before {
            return acked;
        }
        assert!(engine.is_running(), "the engine finished before the crash: the workload is too small");
        assert!(started.elapsed() < Duration::from_secs(90), "no ack within 90 s ({before} acked)");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Every distinct good event logged once, level 1-2 and level 3 equal to the reference views.
async fn assert_exactly_once(env: &TestEnv, distinct_events: usize) {
    assert_eq!(logged_events(env).await as usize, distinct_events, "every event sent is logged exactly once");
    env.assert_matches_reference().await;
    assert_analytics_match(env).await;
}

/// Stop a process with SIGTERM and check it exits cleanly.
fn stop(p: &mut Proc) {
    p.signal("TERM");
    let (status, _) = p.wait_for(Duration::from_secs(15)).unwrap_or_else(|| panic!("{} ignored SIGTERM", p.name));
    assert!(status.success(), "{} exited with {status}", p.name);
}

/// The server a run crashes.
enum Victim {
    /// `pg_ctl stop -m immediate`; the engine and worker use the shared Redis.
    Postgres(PrivatePostgres),
    /// SIGKILL of a Redis with AOF and fsync always; the shared PostgreSQL is used.
    Redis(PrivateRedis),
}

impl Victim {
    async fn start(postgres: bool, tag: &str) -> Victim {
        if postgres {
            Victim::Postgres(PrivatePostgres::start(tag, &[]).await.expect("a private PostgreSQL cluster"))
        } else {
            Victim::Redis(PrivateRedis::start(tag).await.expect("a private redis-server"))
        }
    }

    async fn env(&self, tag: &str) -> TestEnv {
        match self {
            Victim::Postgres(pg) => TestEnv::on(&pg.base_url(), tag).await,
            Victim::Redis(_) => TestEnv::new(tag).await,
        }
    }

    fn redis_url(&self) -> String {
        match self {
            Victim::Postgres(_) => REDIS.to_owned(),
            Victim::Redis(redis) => redis.url(),
        }
    }

    /// Crash it, leave it down for a while, and start it again.
    async fn crash_and_restart(&mut self, down: Duration) {
        match self {
            Victim::Postgres(pg) => pg.crash().await.expect("pg_ctl stop -m immediate"),
            Victim::Redis(redis) => redis.kill(),
        }
        tokio::time::sleep(down).await;
        match self {
            Victim::Postgres(pg) => pg.start_again().await.expect("PostgreSQL restarts after the crash"),
            Victim::Redis(redis) => redis.restart().await.expect("redis-server restarts"),
        }
    }
}

/// Crash a private server right after acks, `run.crashes` times, while the engine and the
/// worker drain a noisy workload; then check that nothing was lost or doubled.
async fn crash_while_draining(postgres: bool, run: Run) {
    let mut victim = Victim::start(postgres, run.tag).await;
    let env = victim.env(run.tag).await;
    let redis = victim.redis_url();
    let work = noisy_workload(run.events, run.seed);
    feed_workload(&env, &redis, &work).await;
    let vars = run.engine_vars();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut engine = Proc::engine(&env, &redis, "crashed-engine", &vars);
    let mut worker = Proc::worker(&env, &redis, "crashed-worker", &[]);
    let mut rng = ChaCha8Rng::seed_from_u64(run.seed);
    let mut acked = 0;
    let mut acked_at_crash = Vec::new();
    for _ in 0..run.crashes {
        acked = next_ack(&redis, &env.streams, acked, &mut engine).await;
        acked_at_crash.push(acked);
        victim.crash_and_restart(Duration::from_millis(rng.gen_range(200..1500))).await;
    }
    let (status, took) = engine.wait_for(DRAIN_LIMIT).expect("the engine drains and exits after the crashes");
    assert!(status.success(), "the engine exited with {status}");
    wait_drained(&redis, &[env.term_updates_stream()], WORKER_GROUP, Duration::from_secs(90)).await;
    stop(&mut worker);
    eprintln!(
        "{}: {} events, {} entries, crashed after {acked_at_crash:?} acked entries; drained {took:?} after the last restart",
        run.tag,
        work.stats.events,
        work.messages.len()
    );
    assert_exactly_once(&env, work.stats.events).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_loses_nothing_when_postgres_crashes() {
    let run = Run { tag: "pgcrash_backfill", backfill: true, batch_size: 10, events: 40_000, crashes: 4, seed: 61 };
    crash_while_draining(true, run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_loses_nothing_when_postgres_crashes() {
    let run = Run { tag: "pgcrash_live", backfill: false, batch_size: 10, events: 30_000, crashes: 3, seed: 62 };
    crash_while_draining(true, run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_parts_lose_nothing_when_postgres_crashes() {
    let run = Run { tag: "pgcrash_parts", backfill: true, batch_size: 100, events: 60_000, crashes: 3, seed: 63 };
    crash_while_draining(true, run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_loses_nothing_when_redis_is_killed() {
    let run = Run { tag: "rediskill_backfill", backfill: true, batch_size: 10, events: 30_000, crashes: 3, seed: 64 };
    crash_while_draining(false, run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_loses_nothing_when_redis_is_killed() {
    let run = Run { tag: "rediskill_live", backfill: false, batch_size: 10, events: 30_000, crashes: 3, seed: 65 };
    crash_while_draining(false, run).await;
}

/// The durability module on its own: a barrier flushes every earlier commit; a held batch is
/// released once a flush covers it, and handed back as unknown when its witness was lost
/// (a reconnected witness cannot vouch for commits made before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_acks_are_released_only_under_the_witness_that_saw_them() {
    use rps::ingest::durable::{Committed, DurableAcks};
    use rps::pg::wal::barrier;
    let env = TestEnv::new("witness").await;
    let client = env.client().await;
    let lsn = |row: tokio_postgres::Row| row.get::<_, tokio_postgres::types::PgLsn>(0);
    let inserted = lsn(client.query_one("SELECT pg_current_wal_insert_lsn()", &[]).await.unwrap());
    barrier(&client).await.expect("barrier");
    let flushed = lsn(client.query_one("SELECT pg_current_wal_flush_lsn()", &[]).await.unwrap());
    assert!(flushed >= inserted, "the barrier flushed everything inserted before it");

    let batch = |id: &str| Committed { acks: vec![("s".into(), id.into())], ..Committed::default() };
    let mut acks = DurableAcks::new(&env.database_url);
    let first = acks.witness().await.expect("witness");
    let ids = |v: &[Committed]| v.iter().map(|b| b.acks[0].1.clone()).collect::<Vec<_>>();
    // Released by the hold itself if the flush already passed it, else by the barrier.
    let held = acks.hold(batch("1-0"), first).await;
    assert!(held.unknown.is_empty());
    let mut durable = ids(&held.durable);
    durable.extend(ids(&acks.barrier().await.durable));
    durable.extend(ids(&acks.barrier().await.durable));
    assert_eq!(durable, ["1-0"], "released once");
    assert!(acks.is_empty());

    // The witness dies (as in a server restart) while a batch is held: it cannot be vouched for.
    let mut outcome = acks.hold(batch("2-0"), first).await;
    let killed: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1, "the witness was terminated");
    let released = acks.hold(batch("3-0"), first).await;
    outcome.durable.extend(released.durable);
    outcome.unknown.extend(released.unknown);
    assert!(acks.is_empty());
    // 2-0 may have been seen flushed while the witness lived; 3-0 cannot have been.
    assert_eq!(ids(&outcome.unknown).last().map(String::as_str), Some("3-0"));
    let mut all = ids(&outcome.durable);
    all.extend(ids(&outcome.unknown));
    all.sort();
    assert_eq!(all, ["2-0", "3-0"], "each batch released once, durable or handed back");
    // A new witness vouches only for batches that began under it.
    let second = acks.witness().await.expect("a new witness");
    assert_ne!(second, first);
    let stale = acks.hold(batch("4-0"), first).await;
    assert_eq!(ids(&stale.unknown), ["4-0"], "begun under the lost witness");
    let mut durable = ids(&acks.hold(batch("5-0"), second).await.durable);
    durable.extend(ids(&acks.barrier().await.durable));
    assert_eq!(durable, ["5-0"], "vouched for by the new witness");
    env.cleanup().await;
}
