//! Reliability under faults and bad input, against real PostgreSQL and Redis: kill -9 at
//! any moment, SIGTERM, PostgreSQL and Redis outages, several engines and workers at once,
//! lock conflicts, poison messages. After each, once everything drains, the nine
//! maintained tables equal the reference views row for row and every distinct event is
//! logged exactly once: nothing lost, nothing counted twice.
//!
//! The process tests run the real binaries (`scripts/test.sh` builds them first).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration_tests::analytics::{assert_analytics_match, run_workers, wait_until_drained, worker_config};
use integration_tests::env::REDIS;
use integration_tests::faults::{
    allow_connections, crash_or_kill, feed_workload, free_port, http_get, logged_events, noisy_workload,
    terminate_backends, wait_drained, PrivateRedis, Proc,
};
use integration_tests::poison::{self, corpus};
use integration_tests::workload::{self, Params};
use integration_tests::TestEnv;
use loadgen::workload::Workload;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

/// How long a SIGTERM may take to end a process (the engine's own limit is 8 s).
const EXIT_LIMIT: Duration = Duration::from_secs(10);

/// Everything a run must end with: level 1-2 and level 3 tables equal the reference views,
/// and each distinct good event is in the log once.
async fn assert_all_nine_tables_match(env: &TestEnv, distinct_events: usize) {
    env.assert_matches_reference().await;
    assert_analytics_match(env).await;
    assert_eq!(logged_events(env).await as usize, distinct_events, "each distinct event is logged exactly once");
}

/// Drain what is left with one engine (under `consumer`, so it takes back that name's
/// pending entries) and one worker, in process.
async fn drain(env: &TestEnv, consumer: &str) -> rps::RunSummary {
    let mut config = env.config();
    config.consumer = Some(consumer.to_owned());
    config.claim_idle_ms = 0; // entries of other dead consumers too
    let summary = env.run(config).await;
    let mut worker = worker_config(env);
    worker.claim_idle_ms = 0;
    run_workers(&worker, 1, None).await;
    summary
}

/// A shutdown future for an in-process engine or worker: resolves once `stop` turns true.
fn on_stop(stop: &watch::Sender<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = stop.subscribe();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

// ----------------------------------------------------------------------------------------
// Crash at any moment

/// kill -9 at random moments and at every crash point of a batch (inside the transaction
/// after COPY and after the merge, between COMMIT and XACK, between XACK and the outbox
/// publish, after it), 20 times, restarting under the same consumer name; the analytics
/// worker is killed too. Then drain and compare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_any_moment_loses_nothing_and_counts_nothing_twice() {
    let env = TestEnv::new("crash").await;
    let work = noisy_workload(30_000, 5);
    // The producer keeps writing while the engine is killed: a slice before each round, the
    // last one only for the drain.
    let mut slices = work
        .messages
        .chunks(work.messages.len() / 21 + 1)
        .map(|m| Workload { messages: m.to_vec(), stats: Default::default() });
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let points = ["after_copy", "after_merge", "after_commit", "after_ack", "after_publish"];
    let mut worker = Proc::worker(&env, REDIS, "crash-worker", &[]);
    let (mut kills, mut crash_points) = (0, 0);
    for i in 0..20 {
        let batch = rng.gen_range(2..40).to_string();
        let point = (i % 4 == 3).then(|| points[(i / 4) % points.len()]);
        feed_workload(&env, REDIS, &slices.next().expect("a slice per round")).await;
        let mut vars = vec![("BATCH_SIZE", batch.as_str())];
        if let Some(p) = point {
            vars.push(("RPS_CRASH_POINT", p));
        }
        let mut engine = Proc::engine(&env, REDIS, "crashing", &vars);
        if point.is_none() {
            assert!(engine.is_running(), "iteration {i}: the engine runs until killed");
        }
        crash_or_kill(&mut engine, point, &mut rng).await;
        crash_points += point.is_some() as usize;
        kills += 1;
        if i % 3 == 2 {
            worker.kill9();
            worker = Proc::worker(&env, REDIS, "crash-worker", &[]);
        }
    }
    worker.kill9();
    assert_eq!((kills, crash_points), (20, 5));
    assert!(logged_events(&env).await > 0, "the killed engines made progress");
    for rest in slices {
        feed_workload(&env, REDIS, &rest).await;
    }
    // The same consumer name takes back its own pending entries; the worker's name too.
    let mut config = env.config();
    config.consumer = Some("crashing".into());
    env.run(config).await;
    // run_workers suffixes the name, so the dead worker's entries are claimed instead.
    let mut w = worker_config(&env);
    w.claim_idle_ms = 0;
    run_workers(&w, 1, None).await;

    assert_all_nine_tables_match(&env, work.stats.events).await;
    env.cleanup().await;
}

// ----------------------------------------------------------------------------------------
// Graceful shutdown

/// SIGTERM under load: both binaries exit 0 within the limit; the tables are consistent at
/// that moment (each batch committed whole or not at all), and a restart completes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_cleanly_and_a_restart_completes_the_work() {
    let env = TestEnv::new("sigterm").await;
    let work = noisy_workload(20_000, 6);
    feed_workload(&env, REDIS, &work).await;
    let mut engine = Proc::engine(&env, REDIS, "stopping", &[("BATCH_SIZE", "5")]);
    let mut worker = Proc::worker(&env, REDIS, "stopping-worker", &[("ANALYTICS_BATCH_SIZE", "2")]);
    let started = Instant::now();
    while logged_events(&env).await < 2_000 {
        assert!(started.elapsed() < Duration::from_secs(30), "the engine makes progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.signal("TERM");
    worker.signal("TERM");
    for p in [&mut engine, &mut worker] {
        let (status, took) = p.wait_for(EXIT_LIMIT).unwrap_or_else(|| panic!("{} ignored SIGTERM", p.name));
        assert!(status.success(), "{} exited with {status}", p.name);
        assert!(took < EXIT_LIMIT, "{} took {took:?}", p.name);
    }
    let stopped_at = logged_events(&env).await as usize;
    assert!(stopped_at < work.stats.events, "stopped mid-load");
    env.assert_matches_reference().await;
    drain(&env, "stopping").await;
    assert_all_nine_tables_match(&env, work.stats.events).await;
    env.cleanup().await;
}

/// SIGTERM while every batch is failing (PostgreSQL refuses connections): the retrying
/// batch gives up, stays pending, and the processes still exit 0 within the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_retrying_gives_up_and_exits_promptly() {
    let env = TestEnv::new("sigterm_stuck").await;
    let work = noisy_workload(5_000, 7);
    feed_workload(&env, REDIS, &work).await;
    let mut engine = Proc::engine(&env, REDIS, "stuck", &[("BATCH_SIZE", "2")]);
    let mut worker = Proc::worker(&env, REDIS, "stuck-worker", &[]);
    let started = Instant::now();
    while logged_events(&env).await == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the engine makes progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    allow_connections(&env, false).await;
    terminate_backends(&env).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(engine.is_running() && worker.is_running(), "an outage is retried, not fatal");
    engine.signal("TERM");
    worker.signal("TERM");
    for p in [&mut engine, &mut worker] {
        let (status, took) = p.wait_for(EXIT_LIMIT).unwrap_or_else(|| panic!("{} ignored SIGTERM", p.name));
        assert!(status.success(), "{} exited with {status}", p.name);
        assert!(took < EXIT_LIMIT, "{} took {took:?}", p.name);
    }
    allow_connections(&env, true).await;
    drain(&env, "stuck").await;
    assert_all_nine_tables_match(&env, work.stats.events).await;
    env.cleanup().await;
}

// ----------------------------------------------------------------------------------------
// Outages

/// PostgreSQL goes away under the running binaries: backends terminated again and again,
/// then new connections refused for a few seconds. The engine retries (counted by reason in
/// its metrics), the worker retries, both resume by themselves, and the tables match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outages_are_retried_and_survived() {
    let env = TestEnv::new("pg_outage").await;
    let work = noisy_workload(20_000, 8);
    feed_workload(&env, REDIS, &work).await;
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut engine =
        Proc::engine(&env, REDIS, "outage", &[("BATCH_SIZE", "5"), ("METRICS_ADDR", metrics_addr.as_str())]);
    let mut worker = Proc::worker(&env, REDIS, "outage-worker", &[("ANALYTICS_BATCH_SIZE", "2")]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut terminated = 0;
    for _ in 0..20 {
        terminated += terminate_backends(&env).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    allow_connections(&env, false).await;
    terminated += terminate_backends(&env).await;
    let reachable = can_connect(&env).await;
    // Longer than the pool's checkout timeout, so the batch in flight fails and is retried.
    tokio::time::sleep(Duration::from_secs(6)).await;
    allow_connections(&env, true).await;
    assert!(terminated > 0, "backends were terminated");
    assert!(!reachable, "nobody can connect during the outage");
    assert!(engine.is_running() && worker.is_running(), "outages are retried, not fatal");

    wait_drained(REDIS, &env.streams, "redis-postgres-sync", Duration::from_secs(90)).await;
    wait_until_drained(&env, "analytics-worker").await;
    let metrics = http_get(metrics_port, "/metrics").expect("scrape /metrics");
    let retries: Vec<&str> =
        metrics.lines().filter(|l| l.starts_with("redis_postgres_sync_batch_retries_total{reason=")).collect();
    assert!(!retries.is_empty(), "failed batches are counted by reason:\n{metrics}");
    engine.signal("TERM");
    worker.signal("TERM");
    for p in [&mut engine, &mut worker] {
        assert!(p.wait_for(EXIT_LIMIT).is_some_and(|(s, _)| s.success()), "{} exits cleanly", p.name);
    }
    // Entries published while the worker was down or retrying are all applied.
    run_workers(&worker_config(&env), 1, None).await;
    assert_all_nine_tables_match(&env, work.stats.events).await;
    eprintln!("retried batches: {}", retries.join(", "));
    env.cleanup().await;
}

async fn can_connect(env: &TestEnv) -> bool {
    rps::pg::connect_one(&env.database_url).await.is_ok()
}

/// Redis (a private one, persisting every write) is killed and restarted mid-run. Engine
/// and worker reconnect by themselves; nothing is lost or applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_survived() {
    let env = TestEnv::new("redis_restart").await;
    let mut redis = PrivateRedis::start("restart").await.expect("a private redis-server");
    let url = redis.url();
    let work = noisy_workload(15_000, 9);
    feed_workload(&env, &url, &work).await;
    let mut config = env.config();
    config.redis_url = url.clone();
    config.batch_size = 5;
    config.exit_when_idle = false;
    let mut wconfig = worker_config(&env);
    wconfig.redis_url = url.clone();
    wconfig.exit_when_idle = false;
    let (stop, _) = watch::channel(false);
    let engine = tokio::spawn(rps::run(config, on_stop(&stop)));
    let worker = tokio::spawn(rps::analytics::run(wconfig, on_stop(&stop)));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = logged_events(&env).await as usize;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.restart().await.expect("redis-server restarts");
    assert!(before > 0 && before < work.stats.events, "Redis went down mid-run ({before} events)");
    wait_drained(&url, &env.streams, "redis-postgres-sync", Duration::from_secs(90)).await;
    let updates = vec![env.term_updates_stream()];
    wait_drained(&url, &updates, "analytics-worker", Duration::from_secs(60)).await;
    stop.send(true).unwrap();
    let summary = engine.await.unwrap().expect("engine run");
    let wsummary = worker.await.unwrap().expect("worker run");
    assert!(wsummary.entries > 0);
    assert_eq!(summary.retry_reasons.get("data"), None);
    assert_all_nine_tables_match(&env, work.stats.events).await;
    env.cleanup().await;
}

// ----------------------------------------------------------------------------------------
// Many processes, lock conflicts

/// Four engines on one consumer group and two workers, all at once, under shuffled and
/// duplicated delivery. Lock ordering keeps them from deadlocking; the retry counters
/// would show any deadlock or serialization failure PostgreSQL still reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_engines_and_two_workers_agree_under_out_of_order_load() {
    let env = TestEnv::new("many").await;
    let work = noisy_workload(20_000, 10);
    feed_workload(&env, REDIS, &work).await;
    let mut config = env.config();
    config.batch_size = 8;
    let mut wconfig = worker_config(&env);
    wconfig.exit_when_idle = false;
    wconfig.batch_size = 3;
    let (stop, _) = watch::channel(false);
    let mut second = wconfig.clone();
    second.consumer = Some(format!("{}-b", wconfig.consumer_name()));
    let workers = {
        let (first, s1, s2) = (wconfig.clone(), on_stop(&stop), on_stop(&stop));
        tokio::spawn(async move {
            let (x, y) = tokio::join!(rps::analytics::run(first, s1), rps::analytics::run(second, s2));
            vec![x.expect("worker run"), y.expect("worker run")]
        })
    };
    let engines = env.run_concurrently(config, 4).await;
    wait_until_drained(&env, &wconfig.group).await;
    stop.send(true).unwrap();
    let workers = workers.await.unwrap();
    let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &engines {
        for (r, n) in &e.retry_reasons {
            *reasons.entry(r).or_default() += n;
        }
    }
    eprintln!(
        "engine retries by reason: {reasons:?}; worker retries: {}",
        workers.iter().map(|w| w.retries).sum::<u64>()
    );
    assert!(engines.iter().filter(|e| e.batches > 0).count() >= 3, "the engines shared the work");
    assert_eq!(reasons.get("deadlock"), None, "ordered locking: no deadlock");
    assert_eq!(reasons.get("data"), None);
    assert_eq!(engines.iter().map(|e| e.dead_letters).sum::<u64>() as usize, dead_letters_expected(&env).await);
    assert_all_nine_tables_match(&env, work.stats.events).await;
    env.cleanup().await;
}

/// Entries in the engine's dead-letter streams.
async fn dead_letters_expected(env: &TestEnv) -> usize {
    let mut con = env.redis.clone();
    let mut n = 0;
    for s in &env.streams {
        let len: usize =
            redis::cmd("XLEN").arg(rps::stream::dead_letter_stream(s)).query_async(&mut con).await.unwrap();
        n += len;
    }
    n
}

/// A real deadlock, forced: another session holds a vault row the engine's batch must
/// update and then waits for the advisory lock the batch holds. PostgreSQL aborts the
/// batch (40P01); it is rolled back, retried once the other session is gone, counted
/// under reason "deadlock", and the result is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_is_retried_and_counted() {
    let mut env = TestEnv::new("deadlock").await;
    let term = poison::term(1, 0);
    let deposit = |log: u64| deposit_message(&term, 100 + log, log);
    env.xadd(2, deposit(0).as_bytes()).await;
    env.run(env.config()).await;
    assert_eq!(env.count("SELECT count(*) FROM vault").await, 1);

    let mut other = env.client().await;
    let tx = other.transaction().await.unwrap();
    // Only the engine's deadlock check may find the cycle, so the engine is the victim.
    tx.batch_execute("SET LOCAL deadlock_timeout = '60s'").await.unwrap();
    tx.query("SELECT * FROM vault WHERE term_id = $1 FOR UPDATE", &[&term]).await.unwrap();
    env.xadd(2, deposit(1).as_bytes()).await;
    let engine = {
        let config = env.config();
        tokio::spawn(async move { rps::run(config, std::future::pending()).await.expect("engine run") })
    };
    // Wait until the engine's batch blocks on the vault row, holding its term's advisory lock.
    let observer = env.client().await;
    let started = Instant::now();
    loop {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' \
                 AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the engine blocks on the locked vault row");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.query_one("SELECT pg_advisory_xact_lock(term_lock_key($1))", &[&term]).await.unwrap();
    tx.rollback().await.unwrap();
    let summary = engine.await.unwrap();
    assert_eq!(summary.retry_reasons.get("deadlock"), Some(&1), "{:?}", summary.retry_reasons);
    assert_eq!(summary.events, 1, "applied once, after the retry");
    env.assert_matches_reference().await;
    assert_eq!(env.count("SELECT count(*) FROM deposited_events").await, 2);
    env.cleanup().await;
}

fn deposit_message(term: &str, block: u64, log: u64) -> String {
    let account = "0x7fc73719c543e39651b0f6188f9b7341e163e7ce";
    serde_json::json!({
        "event_name": "Deposited", "network": "intuition", "block_number": block,
        "event_data": [{
            "sender": account, "receiver": account, "termId": term, "curveId": 1,
            "assets": 1000, "assetsAfterFees": 990, "shares": 10, "totalShares": 10 * (log + 1), "vaultType": 0,
            "transaction_information": {
                "address": "0x6e35cf57a41fa15ea0eae9c33e751b01a784fe7e", "block_hash": term, "block_number": block,
                "block_timestamp": null, "log_index": log, "network": "intuition",
                "transaction_hash": format!("0x{:064x}", block), "transaction_index": 0,
            }
        }]
    })
    .to_string()
}

/// A crash the moment the first part of a batch applied in parts has committed, its sibling
/// maybe not: nothing was acked, so the whole batch is redelivered to the restarted engine;
/// the committed part's events are no-ops and the rest is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_commits_of_a_batchs_parts_loses_and_doubles_nothing() {
    let env = TestEnv::new("crash_parts").await;
    let work = noisy_workload(12_000, 8);
    feed_workload(&env, REDIS, &work).await;
    let vars = [("BATCH_SIZE", "1000"), ("RPS_CRASH_POINT", "after_part_commit")];
    let mut engine = Proc::engine(&env, REDIS, "crashing", &vars);
    let (status, _) = engine.wait_for(Duration::from_secs(60)).expect("the crash point is reached");
    assert!(!status.success(), "the engine must abort after a part's commit");
    // At least the part that reached the crash point is in (its sibling may have committed
    // in the same instant: the batch is still unacked either way).
    assert!(logged_events(&env).await > 0, "a part committed before the crash");
    assert!(
        integration_tests::faults::pending_on(REDIS, &env.streams, "redis-postgres-sync").await > 0,
        "the batch was not acked"
    );
    let summary = drain(&env, "crashing").await;
    assert!(summary.parallel_batches > 0, "the redelivered batch is applied in parts again: {summary:?}");
    assert_all_nine_tables_match(&env, work.stats.events).await;
    env.cleanup().await;
}

/// The transaction holding a batch's locks dies while the batch's parts run (its backend
/// terminated; its locks go with it): every part notices just before its COMMIT and rolls
/// back, the batch is applied again part by part under the parts' own locks, and nothing is
/// lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_roll_back_when_the_batchs_lock_holder_is_lost() {
    let env = TestEnv::new("holder").await;
    let work = noisy_workload(12_000, 9);
    feed_workload(&env, REDIS, &work).await;
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let vars = [("BATCH_SIZE", "1000"), ("RPS_FAULT_POINT", "lose_lock_holder"), ("METRICS_ADDR", &metrics_addr)];
    let mut engine = Proc::engine(&env, REDIS, "holder", &vars);
    wait_drained(REDIS, &env.streams, "redis-postgres-sync", Duration::from_secs(90)).await;
    let metrics = http_get(metrics_port, "/metrics").expect("scrape /metrics");
    let lost: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("redis_postgres_sync_batch_retries_total{reason=\"lock_holder_lost\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(lost >= 2.0, "every part of a batch notices that its lock holder is gone (retries: {lost}):\n{metrics}");
    engine.signal("TERM");
    assert!(engine.wait_for(EXIT_LIMIT).is_some_and(|(s, _)| s.success()), "the engine exits cleanly");
    drain(&env, "holder").await;
    assert_all_nine_tables_match(&env, work.stats.events).await;
    env.cleanup().await;
}

/// Entries left pending on a consumer name (its process died after reading them) are read
/// back by the next process under that name and applied, dead-lettered and acked once each:
/// reading its own pending entries again while the first read of them is still in flight
/// must not deliver them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_entries_of_a_dead_process_are_handled_once() {
    let mut env = TestEnv::new("own_pending").await;
    let p = Params { seed: 31, events: 3_000, max_per_message: 4, duplicate_rate: 0.0, streams: 5 };
    let (traffic, distinct) = workload::messages(&p);
    env.xadd_all(&traffic).await;
    env.xadd_field(3, "payload", b"not json").await;
    // A process named "heir" reads everything and dies before applying or acking any of it.
    let streams: Vec<usize> = (0..env.streams.len()).collect();
    assert_eq!(env.read_and_abandon("heir", &streams, traffic.len() + 1).await, traffic.len() + 1);
    let mut config = env.config();
    config.consumer = Some("heir".to_owned());
    config.batch_size = 20; // several reads of its own pending entries
    let summary = env.run(config).await;
    assert_eq!(summary.messages as usize, traffic.len() + 1, "each pending entry is read once");
    assert_eq!(summary.dead_letters, 1);
    assert_eq!(env.dead_letters(3).await.len(), 1, "the bad message is dead-lettered once");
    assert_eq!(logged_events(&env).await as usize, distinct);
    env.assert_matches_reference().await;
    env.cleanup().await;
}

/// A PostgreSQL outage longer than `claim_idle` holds batches in the engine's pipeline; the
/// next periodic claim of stale entries (`XAUTOCLAIM`) then returns the engine's own entries
/// still waiting there. They must not be delivered twice: every poison message is
/// dead-lettered once, every event applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_entries_in_flight_are_not_claimed_again() {
    let mut env = TestEnv::new("inflight_claim").await;
    // Enough work that the outage always finds the engine mid-run, even on a loaded machine.
    let p = Params { seed: 41, events: 15_000, max_per_message: 3, duplicate_rate: 0.0, streams: 5 };
    let (traffic, distinct) = workload::messages(&p);
    let mut poison = 0;
    for (i, chunk) in traffic.chunks(50).enumerate() {
        env.xadd_all(chunk).await;
        env.xadd_field(i % env.streams.len(), "payload", b"not json").await;
        poison += 1;
    }
    let mut config = env.config();
    config.batch_size = 10;
    config.claim_idle_ms = 100;
    let engine = tokio::spawn(rps::run(config, std::future::pending()));
    let started = Instant::now();
    while logged_events(&env).await == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the engine makes progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logged_at_the_outage = logged_events(&env).await;
    allow_connections(&env, false).await;
    terminate_backends(&env).await;
    // The writer now waits for a connection (or retries) while the reader's entries age.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    allow_connections(&env, true).await;
    let summary = engine.await.unwrap().expect("engine run");
    let mut dead = 0;
    for s in 0..env.streams.len() {
        dead += env.dead_letters(s).await.len();
    }
    assert_eq!((dead, summary.dead_letters as usize), (poison, poison), "each poison message dead-lettered once");
    assert_eq!(logged_events(&env).await as usize, distinct);
    assert!((logged_at_the_outage as usize) < distinct, "the outage came before the end of the run");
    env.assert_matches_reference().await;
    env.cleanup().await;
}

// ----------------------------------------------------------------------------------------
// Poison input

/// The corpus mixed into valid traffic: every bad message or event is dead-lettered with
/// its precise reason and its origin, acked, and counted; every good event is applied; the
/// engine never stops. A dead letter fixed and replayed to its stream is then applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_input_is_dead_lettered_precisely_and_good_input_applied() {
    let mut env = TestEnv::new("poison").await;
    let cases = corpus();
    assert!(cases.len() >= 30, "a corpus of {} cases", cases.len());
    let p = Params { seed: 12, events: 400, max_per_message: 4, duplicate_rate: 0.2, streams: 5 };
    let (traffic, distinct) = workload::messages(&p);
    let mut ids = Vec::new();
    let mut chunks = traffic.chunks(traffic.len() / cases.len() + 1);
    for (i, case) in cases.iter().enumerate() {
        if let Some(good) = chunks.next() {
            env.xadd_all(good).await;
        }
        let stream = i % env.streams.len();
        let id: String = redis::cmd("XADD")
            .arg(&env.streams[stream])
            .arg("*")
            .arg(case.field)
            .arg(case.payload.as_slice())
            .query_async(&mut env.redis)
            .await
            .expect("XADD");
        ids.push((stream, id));
    }
    assert!(chunks.next().is_none(), "all the valid traffic was sent");
    assert_eq!(ids.len(), cases.len());
    let summary = env.run(env.config()).await;

    let mut dlq = Vec::new();
    for s in 0..env.streams.len() {
        dlq.extend(env.dead_letters(s).await);
    }
    for (case, (stream, id)) in cases.iter().zip(&ids) {
        // Entry ids are per stream: match the origin by both.
        let mine: Vec<_> = dlq.iter().filter(|d| &d.3 == id && d.2 == env.streams[*stream]).collect();
        let mut reasons: Vec<&str> = mine.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(reasons.len(), case.dead.len(), "{}: dead letters {reasons:?}", case.name);
        for want in &case.dead {
            let at = reasons.iter().position(|r| r.contains(want.as_str()));
            let at = at.unwrap_or_else(|| panic!("{}: no dead letter says {want:?}; got {reasons:?}", case.name));
            reasons.remove(at);
        }
    }
    let expected: usize = cases.iter().map(|c| c.dead.len()).sum();
    assert_eq!(summary.dead_letters as usize, expected, "dead letters counted");
    assert_eq!(dlq.len(), expected);
    // Raw payloads are kept whole, but of one over the per-entry limit only its first KiB.
    let oversized: Vec<_> = dlq.iter().filter(|d| d.0.contains("exceeds the 16777216-byte limit")).collect();
    assert_eq!(oversized.len(), 1);
    assert_eq!(oversized[0].1.len(), 1024, "the dead letter of the 20 MB payload keeps its first KiB");
    assert!(dlq.iter().all(|d| d.1.len() < 1024 * 1024), "no dead letter carries a large payload");
    let good: usize = cases.iter().map(|c| c.good).sum();
    assert_eq!(logged_events(&env).await as usize, distinct + good, "every good event applied");
    let c = |n: usize| poison::term(1000 + n, 0);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM atom WHERE term_id = '{}' AND data IS NULL AND raw_data = '\\xff00fe41'",
            c(42)
        ))
        .await,
        1
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM atom WHERE term_id = '{}' AND data IS NULL AND raw_data = '\\x610062'",
            c(43)
        ))
        .await,
        1
    );
    assert_eq!(env.count(&format!("SELECT count(*) FROM atom WHERE term_id = '{}' AND data = ''", c(44))).await, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM generic_events WHERE event_name = 'Robert''); DROP TABLE term;--'").await,
        1
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM generic_events WHERE event_data->>'comment' LIKE 'Robert''); DROP TABLE atom;%'"
        )
        .await,
        1
    );
    env.assert_matches_reference().await;
    assert_eq!(
        integration_tests::faults::pending_on(REDIS, &env.streams, "redis-postgres-sync").await,
        0,
        "dead-lettered entries are acked"
    );

    // Replay: fix the bad event of the mixed message and XADD it back where it came from.
    let bad = dlq.iter().find(|d| d.0.contains("`vaultType`: 9")).expect("the mixed message's bad event");
    let fixed = bad.1.replace("\"vaultType\":9", "\"vaultType\":0");
    let _: String =
        redis::cmd("XADD").arg(&bad.2).arg("*").arg("payload").arg(&fixed).query_async(&mut env.redis).await.unwrap();
    let replay = env.run(env.config()).await;
    assert_eq!((replay.events, replay.dead_letters), (1, 0));
    assert_eq!(logged_events(&env).await as usize, distinct + good + 1);
    env.assert_matches_reference().await;
    env.cleanup().await;
}

/// `deposits` deposits (block `200 + log / 100`, over `terms` terms) of which the one at
/// `refused_log` breaks a CHECK constraint, all in one batch: it must be isolated and
/// dead-lettered with PostgreSQL's reason, the rest committed and the batch acked.
async fn one_refused_deposit_case(env: &mut TestEnv, deposits: u64, terms: u64, refused_log: u64) -> rps::RunSummary {
    let refused_shares = 10 * (refused_log + 1); // deposit_message's totalShares
    env.client()
        .await
        .batch_execute(&format!(
            "ALTER TABLE deposited_events ADD CONSTRAINT poison CHECK (total_shares <> {refused_shares})"
        ))
        .await
        .unwrap();
    for log in 0..deposits {
        let term = poison::term(2, (log % terms) as usize);
        env.xadd(2, deposit_message(&term, 200 + log / 100, log).as_bytes()).await;
    }
    let mut config = env.config();
    config.batch_size = deposits as usize;
    let summary = env.run(config).await;
    assert_eq!((summary.batches, summary.events, summary.dead_letters), (1, deposits - 1, 1), "{summary:?}");
    assert!(summary.retry_reasons.get("data").is_some_and(|n| *n >= 3), "{:?}", summary.retry_reasons);
    let dlq = env.dead_letters(2).await;
    assert_eq!(dlq.len(), 1);
    assert!(dlq[0].0.starts_with("PostgreSQL refused the event:"), "{}", dlq[0].0);
    assert!(dlq[0].0.contains("\"poison\"") && dlq[0].0.contains("SQLSTATE 23514"), "{}", dlq[0].0);
    // The dead letter holds the event alone, in the producer's format, ready to replay.
    let payload: serde_json::Value = serde_json::from_str(&dlq[0].1).unwrap();
    assert_eq!(payload["event_name"], "Deposited");
    assert_eq!(payload["event_data"][0]["totalShares"], refused_shares.to_string());
    assert_eq!(env.count("SELECT count(*) FROM deposited_events").await as u64, deposits - 1);
    env.assert_matches_reference().await;
    assert_eq!(
        integration_tests::faults::pending_on(REDIS, &env.streams, "redis-postgres-sync").await,
        0,
        "the whole batch is acked"
    );
    summary
}

/// An event that passes decoding but that PostgreSQL refuses (simulated by a CHECK
/// constraint on its value) must not wedge the engine: the batch is split until the event
/// is isolated; it is dead-lettered with PostgreSQL's reason and the rest commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_refused_event_is_isolated_and_dead_lettered() {
    let mut env = TestEnv::new("bisect").await;
    one_refused_deposit_case(&mut env, 10, 10, 3).await;
    env.cleanup().await;
}

/// The same inside a batch large enough to be applied as concurrent term-disjoint parts:
/// the part holding the refused event rolls back and is split until the event is isolated,
/// while the other part commits on its own; the batch is acked once everything is in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_in_one_part_leaves_the_other_part_committed() {
    let mut env = TestEnv::new("bisect_parts").await;
    let summary = one_refused_deposit_case(&mut env, 5000, 40, 1233).await;
    assert_eq!(summary.parallel_batches, 1, "the batch was applied in parts");
    env.cleanup().await;
}
