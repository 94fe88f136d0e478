//! The analytics tier end to end against real PostgreSQL and Redis: whatever the workload,
//! the number of workers, or whether the engine is still writing while they run, once
//! everything drains the level 3 tables equal their reference views row for row; a crash
//! between commit and publish loses no update; malformed term_updates entries are
//! dead-lettered without stopping the worker or blocking their good neighbours.

use std::process::Command;
use std::time::Duration;

use integration_tests::analytics::{
    assert_analytics_match, counter_vault_messages, engine_binary, id32, many_triples_of_one_pair, pending,
    published_term_ids, run_workers, shared_pair_messages, stream_len, wait_until_drained, worker_config,
};
use integration_tests::env::REDIS;
use integration_tests::workload::{self, Params};
use integration_tests::TestEnv;
use proptest::prelude::*;
use tokio::sync::watch;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn feed(env: &mut TestEnv, p: &Params) {
    let (messages, _) = workload::messages(p);
    env.xadd_all(&messages).await;
}

async fn feed_samples(env: &mut TestEnv) {
    for line in include_str!("../samples/mixed-encodings.jsonl").lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let stream = integration_tests::env::LOGICAL_STREAMS
            .iter()
            .position(|s| v["stream"].as_str().unwrap().ends_with(s))
            .expect("known stream");
        env.xadd(stream, v["payload"].to_string().as_bytes()).await;
    }
}

/// Engine drained first (small batches, so many term_updates entries), then `workers`
/// workers drain term_updates together.
async fn drained_in_sequence(p: Params, engine_batch: usize, workers: usize, worker_batch: usize) {
    let mut env = TestEnv::new("an_seq").await;
    feed(&mut env, &p).await;
    let mut engine = env.config();
    engine.batch_size = engine_batch;
    env.run(engine).await;
    let mut config = worker_config(&env);
    config.batch_size = worker_batch;
    let runs = run_workers(&config, workers, None).await;
    let entries: u64 = runs.iter().map(|r| r.entries).sum();
    assert!(entries >= stream_len(&env, &env.term_updates_stream()).await as u64, "every entry is processed");
    assert_eq!(runs.iter().map(|r| r.dead_letters).sum::<u64>(), 0);
    assert_eq!(runs.iter().map(|r| r.retries).sum::<u64>(), 0, "no refresh failed (no deadlock)");
    assert_eq!(pending(&env, &env.term_updates_stream(), &config.group).await, 0);
    env.assert_matches_reference().await;
    assert_analytics_match(&env).await;
    env.cleanup().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    /// Shuffled, duplicated random workloads; one worker or three.
    #[test]
    fn random_workloads_match_reference(
        seed in any::<u64>(),
        events in 20usize..400,
        duplicate_rate in 0.0f64..0.5,
        engine_batch in 1usize..30,
        three_workers in any::<bool>(),
        worker_batch in 1usize..5,
    ) {
        let p = Params { seed, events, max_per_message: 4, duplicate_rate, streams: 5 };
        let workers = if three_workers { 3 } else { 1 };
        runtime().block_on(drained_in_sequence(p, engine_batch, workers, worker_batch));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_after_the_engine() {
    let p = Params { seed: 21, events: 800, max_per_message: 5, duplicate_rate: 0.3, streams: 5 };
    drained_in_sequence(p, 10, 1, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_after_the_engine() {
    let p = Params { seed: 22, events: 2_000, max_per_message: 5, duplicate_rate: 0.3, streams: 5 };
    drained_in_sequence(p, 10, 3, 1).await;
}

/// The workload in rounds, engine then workers each time: every refresh after the first
/// must catch what changed since, through whichever term (pro or counter vault) changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_of_updates_keep_matching() {
    let mut env = TestEnv::new("an_rounds").await;
    let (messages, _) =
        workload::messages(&Params { seed: 25, events: 1_500, max_per_message: 3, duplicate_rate: 0.2, streams: 5 });
    let mut config = worker_config(&env);
    config.batch_size = 2;
    for round in messages.chunks(messages.len() / 12 + 1) {
        env.xadd_all(round).await;
        env.run(env.config()).await;
        run_workers(&config, 2, None).await;
        assert_analytics_match(&env).await;
    }
    env.cleanup().await;
}

/// Two engines and three workers at the same time: workers refresh while vaults keep
/// changing under them. Each worker stops only once the group has acked everything the
/// engines published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_and_workers_running_together() {
    let mut env = TestEnv::new("an_live").await;
    feed(&mut env, &Params { seed: 23, events: 2_000, max_per_message: 3, duplicate_rate: 0.3, streams: 5 }).await;
    let mut engine = env.config();
    engine.batch_size = 3;
    let mut config = worker_config(&env);
    config.batch_size = 2;
    config.exit_when_idle = false;
    let (stop_tx, stop_rx) = watch::channel(false);
    let workers = {
        let config = config.clone();
        tokio::spawn(async move { run_workers(&config, 3, Some(stop_rx)).await })
    };
    let engines = env.run_concurrently(engine, 2).await;
    assert!(engines.iter().map(|e| e.batches).sum::<u64>() > 10, "many engine batches");
    wait_until_drained(&env, &config.group).await;
    stop_tx.send(true).unwrap();
    let runs = workers.await.unwrap();
    assert!(runs.iter().filter(|r| r.batches > 0).count() >= 2, "the work was shared: {runs:?}");
    assert_eq!(runs.iter().map(|r| r.retries).sum::<u64>(), 0, "no refresh failed (no deadlock)");
    env.assert_matches_reference().await;
    assert_analytics_match(&env).await;
    env.cleanup().await;
}

/// Run the real engine binary until the crash point aborts it.
fn crash_engine(env: &TestEnv, crash_point: &str) {
    let status = Command::new(engine_binary())
        .env("DATABASE_URL", &env.database_url)
        .env("REDIS_URL", REDIS)
        .env("STREAMS", env.streams.join(","))
        .env("TERM_UPDATES_STREAM", env.term_updates_stream())
        .env("CONSUMER_NAME", "crashing")
        .env("BLOCK_MS", "100")
        .env("EXIT_WHEN_IDLE", "true")
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .env("RPS_CRASH_POINT", crash_point)
        .status()
        .expect("spawn the engine binary");
    assert!(!status.success(), "the engine must abort at {crash_point}, got {status}");
}

/// The engine dies after COMMIT and before publishing; its term ids wait in the outbox
/// and reach term_updates (and then the analytics tables) when an engine starts again.
async fn crash_between_commit_and_publish(crash_point: &str) {
    let mut env = TestEnv::new("an_crash").await;
    feed(&mut env, &Params { seed: 24, events: 400, max_per_message: 4, duplicate_rate: 0.2, streams: 5 }).await;
    crash_engine(&env, crash_point);
    assert!(env.count("SELECT count(*) FROM term_update_outbox").await > 0, "the batch committed its outbox rows");
    assert_eq!(stream_len(&env, &env.term_updates_stream()).await, 0, "nothing was published");
    let client = env.client().await;
    let waiting: Vec<String> = client
        .query("SELECT DISTINCT unnest(term_ids) FROM term_update_outbox", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    let mut restart = env.config();
    restart.consumer = Some("crashing".into()); // takes back its unacked entries, if any
    env.run(restart).await;
    assert_eq!(env.count("SELECT count(*) FROM term_update_outbox").await, 0);
    let published = published_term_ids(&env).await;
    for id in &waiting {
        assert!(published.contains(id), "term {id} from the outbox was never published");
    }
    run_workers(&worker_config(&env), 1, None).await;
    env.assert_matches_reference().await;
    assert_analytics_match(&env).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_commit_loses_no_update() {
    crash_between_commit_and_publish("after_commit").await;
}

/// After the ack nothing is redelivered, so only the outbox can bring the updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_ack_loses_no_update() {
    crash_between_commit_and_publish("after_ack").await;
}

const TERM: &str = "0x221c4e003f9931ee3af27f802dc5fd3d9974d75b333824fe61790134676b1b69";

async fn xadd_update(env: &mut TestEnv, fields: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(env.term_updates_stream()).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query_async(&mut env.redis).await.expect("XADD")
}

/// Entries of `<term_updates>:dlq` as (error, payload, origin stream, origin id).
async fn worker_dead_letters(env: &mut TestEnv) -> Vec<(String, String, String, String)> {
    let key = rps::stream::dead_letter_stream(&env.term_updates_stream());
    let reply: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut env.redis).await.expect("XRANGE");
    let field = |e: &redis::streams::StreamId, k: &str| e.get::<String>(k).unwrap_or_default();
    reply.ids.iter().map(|e| (field(e, "error"), field(e, "payload"), field(e, "stream"), field(e, "id"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_updates_are_dead_lettered_and_good_ones_applied() {
    let mut env = TestEnv::new("an_dlq").await;
    feed_samples(&mut env).await;
    env.run(env.config()).await;
    let good = stream_len(&env, &env.term_updates_stream()).await;
    assert!(good > 0);
    let bad_ids = format!(r#"["0x12", 7, "{TERM}"]"#);
    let mut origin = vec![
        xadd_update(&mut env, &[("payload", "{}")]).await,
        xadd_update(&mut env, &[("term_ids", "not json"), ("committed_at_ms", "1")]).await,
        xadd_update(&mut env, &[("term_ids", r#"{"ids": []}"#)]).await,
        xadd_update(&mut env, &[("term_ids", &bad_ids)]).await,
    ];
    let mut config = worker_config(&env);
    config.batch_size = 100;
    let runs = run_workers(&config, 1, None).await;
    assert_eq!(runs[0].batches, 1, "good and bad entries were in one batch");
    assert_eq!(runs[0].dead_letters, 4);
    assert_eq!(runs[0].entries as usize, good + 4);

    let mut dlq = worker_dead_letters(&mut env).await;
    dlq.sort_by(|a, b| a.3.cmp(&b.3));
    origin.sort();
    assert_eq!(dlq.iter().map(|d| d.3.clone()).collect::<Vec<_>>(), origin);
    assert!(dlq.iter().all(|d| d.2 == env.term_updates_stream()));
    assert_eq!(dlq[0].0, r#"no term_ids field (found fields ["payload"])"#);
    assert!(dlq[1].0.starts_with("term_ids is not valid JSON"), "{}", dlq[1].0);
    assert!(dlq[1].1.contains(r#""term_ids":"not json""#), "the entry is kept: {}", dlq[1].1);
    assert_eq!(dlq[2].0, "term_ids is not a JSON array of strings: got an object");
    assert!(dlq[3].0.contains(r#"term_ids[0] = "0x12" is not a term id"#), "{}", dlq[3].0);
    assert!(dlq[3].0.contains("term_ids[1] is a number, not a string"), "{}", dlq[3].0);
    assert!(dlq[3].0.ends_with("the entry's 1 valid ids were refreshed"), "{}", dlq[3].0);
    assert_eq!(pending(&env, &env.term_updates_stream(), &config.group).await, 0, "dead letters are acked");
    assert_analytics_match(&env).await;
    env.cleanup().await;
}

/// A worker stopped while idle exits promptly and cleanly, and a restarted one resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_prompt_and_work_resumes() {
    let mut env = TestEnv::new("an_stop").await;
    let mut config = worker_config(&env);
    config.exit_when_idle = false;
    let (stop_tx, stop_rx) = watch::channel(false);
    let idle = tokio::spawn({
        let config = config.clone();
        async move { run_workers(&config, 1, Some(stop_rx)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(true).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), idle).await.expect("prompt").unwrap();
    assert_eq!(stopped[0].batches, 0);
    feed_samples(&mut env).await;
    env.run(env.config()).await;
    run_workers(&worker_config(&env), 1, None).await;
    assert_analytics_match(&env).await;
    env.cleanup().await;
}

/// The lost update the pair locks exist for: refresh A (triple 1) has written its rows but
/// not committed when refresh B (triple 2, same predicate_object pair) starts. Without the
/// lock B would sum the pair from a snapshot missing A's triple_term row and, once A
/// commits, overwrite A's pair row with that sum. With it, B waits on the advisory lock
/// and then reads A's committed rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_waits_for_a_concurrent_refresh_of_the_same_pair() {
    let mut env = TestEnv::new("an_lock").await;
    let (messages, [t1, t2]) = shared_pair_messages();
    env.xadd_all(&messages).await;
    env.run(env.config()).await;
    let mut a = env.client().await;
    let tx = a.transaction().await.unwrap();
    tx.query_one("SELECT refresh_analytics($1)", &[&vec![t1]]).await.unwrap();

    let b = env.client().await;
    let b_pid: i32 = b.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let b_refresh = tokio::spawn(async move { b.query_one("SELECT refresh_analytics($1)", &[&vec![t2]]).await });
    let observer = env.client().await;
    let mut waits_on_advisory_lock = false;
    for _ in 0..100 {
        let row = observer
            .query_one("SELECT coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = $1", &[&b_pid])
            .await
            .unwrap();
        waits_on_advisory_lock = row.get::<_, String>(0) == "advisory";
        if waits_on_advisory_lock {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(waits_on_advisory_lock, "refresh B must wait for A's pair lock");
    assert!(!b_refresh.is_finished());
    tx.commit().await.unwrap();
    b_refresh.await.unwrap().unwrap();

    // Both triples are refreshed, so their pair (it has no other triple) must be exact.
    let exact = env
        .count(
            "SELECT count(*) FROM predicate_object po JOIN snapshot.predicate_object s USING (predicate_id, object_id) \
             WHERE (po.*)::text = (s.*)::text AND po.triple_count = 2 AND po.total_position_count = 2",
        )
        .await;
    assert_eq!(exact, 1, "the pair row includes both triples");
    env.assert_matches_reference().await;
    assert_analytics_match(&env).await;
    env.cleanup().await;
}

/// Rows of a refreshed triple that the reference no longer has (a curve without vaults, a
/// triple_term row without a triple) are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_deletes_rows_that_no_longer_exist() {
    let mut env = TestEnv::new("an_delete").await;
    let (messages, [t1, _]) = shared_pair_messages();
    env.xadd_all(&messages).await;
    env.run(env.config()).await;
    run_workers(&worker_config(&env), 1, None).await;
    assert_analytics_match(&env).await;
    let ghost = id32(0x99);
    let client = env.client().await;
    client
        .execute(
            "INSERT INTO triple_vault SELECT term_id, counter_term_id, 999, 1, 1, 1, 1 FROM triple_vault WHERE term_id = $1",
            &[&t1],
        )
        .await
        .unwrap();
    client.execute("INSERT INTO triple_term VALUES ($1, $1, 1, 1, 1)", &[&ghost]).await.unwrap();
    let refreshed: i32 =
        client.query_one("SELECT refresh_analytics($1)", &[&vec![t1, ghost.clone()]]).await.unwrap().get(0);
    assert_eq!(refreshed, 2, "the triple and the ghost");
    assert_analytics_match(&env).await;
    assert_eq!(env.count("SELECT count(*) FROM triple_vault WHERE curve_id = 999").await, 0);
    env.cleanup().await;
}

/// A refresh costs what changed, not what its pairs hold: refreshing one triple of a pair of
/// 2,000 reads a handful of `triple` and `triple_term` rows (a pair recompute would read all
/// 2,000 of each), and a deposit into it then moves the pair rows by exactly its change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_reads_its_triples_not_their_pairs() {
    let mut env = TestEnv::new("an_delta").await;
    let (messages, triples) = many_triples_of_one_pair(2_000);
    env.xadd_all(&messages).await;
    env.run(env.config()).await;
    run_workers(&worker_config(&env), 1, None).await;
    assert_analytics_match(&env).await;
    let pair_size = "SELECT triple_count FROM predicate_object WHERE predicate_id = $1";
    let client = env.client().await;
    client.batch_execute("ANALYZE").await.unwrap();
    assert_eq!(client.query_one(pair_size, &[&id32(0xa3)]).await.unwrap().get::<_, i64>(0), 2_000);

    env.xadd_all(&counter_vault_messages(&rps::event::counter_term_id(&triples[7]), 1, 5_000)).await;
    env.run(env.config()).await;
    let mut client = env.client().await;
    refresh_one_reading_few_rows(&mut client, &triples[7]).await;
    // The stream still holds the update the refresh above already applied: a second refresh
    // of an unchanged row moves nothing.
    run_workers(&worker_config(&env), 1, None).await;
    assert_analytics_match(&env).await;
    let position_count = "SELECT total_position_count FROM predicate_object WHERE predicate_id = $1";
    assert_eq!(client.query_one(position_count, &[&id32(0xa3)]).await.unwrap().get::<_, i64>(0), 1);
    env.cleanup().await;
}

/// Refresh one triple in a transaction and check that it read only a handful of rows of each
/// table it looks up (`pg_stat_xact_user_tables` counts this transaction's reads).
async fn refresh_one_reading_few_rows(client: &mut tokio_postgres::Client, triple: &str) {
    let tx = client.transaction().await.unwrap();
    let refreshed: i32 = tx.query_one("SELECT refresh_analytics($1)", &[&vec![triple]]).await.unwrap().get(0);
    assert_eq!(refreshed, 1);
    let read = "SELECT relname, seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables \
                WHERE relname IN ('triple', 'triple_term', 'triple_vault', 'vault') ORDER BY relname";
    let rows = tx.query(read, &[]).await.unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        let (table, rows): (String, i64) = (row.get(0), row.get(1));
        assert!(rows < 20, "a refresh of one triple read {rows} rows of {table}");
    }
    tx.commit().await.unwrap();
}

/// Without column statistics (a new database until autovacuum's first ANALYZE, or one a
/// backfill has just grown) a refresh still probes its own rows: the planner's default guess
/// for a non-unique key (vault.term_id, triple.counter_term_id, triple_vault.term_id) once
/// made it scan those tables whole on every refresh (2,002 rows of triple_vault here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_without_statistics_reads_its_triples_only() {
    let mut env = TestEnv::new("an_nostats").await;
    // Tables of a few thousand rows: smaller ones are read whole by any plan (a scan of a
    // few pages costs less than index probes).
    let (mut messages, triples) = many_triples_of_one_pair(2_000);
    for (i, triple) in triples.iter().enumerate() {
        messages.extend(counter_vault_messages(&rps::event::counter_term_id(triple), 1, 3_000 + i as u64));
    }
    env.xadd_all(&messages).await;
    env.run(env.config()).await;
    run_workers(&worker_config(&env), 1, None).await;
    let mut client = env.client().await;
    // Whatever autovacuum may have analyzed by now is forgotten: the planner sees what it
    // sees before the first ANALYZE.
    let forget = "DELETE FROM pg_statistic WHERE starelid = ANY('{triple,vault,triple_vault,triple_term}'::regclass[])";
    client.batch_execute(forget).await.unwrap();
    refresh_one_reading_few_rows(&mut client, &triples[11]).await;
    refresh_one_reading_few_rows(&mut client, &rps::event::counter_term_id(&triples[12])).await;
    assert_analytics_match(&env).await;
    env.cleanup().await;
}

/// V3 re-sums the pair rows from the triple_term rows once. The recompute it replaced also
/// counted a triple that had no triple_term row yet (created, not yet refreshed); a delta adds
/// that triple when its refresh comes, so without V3 it would be counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_v3_resums_pair_rows_the_recompute_wrote() {
    let mut env = TestEnv::new("an_v3").await;
    let (messages, triples) = many_triples_of_one_pair(2);
    env.xadd_all(&messages).await;
    env.run(env.config()).await;
    let client = env.client().await;
    client.query_one("SELECT refresh_analytics($1)", &[&vec![&triples[0]]]).await.unwrap();
    // What the recompute wrote for the pair: both of its triples, one not refreshed yet.
    client.execute("UPDATE predicate_object SET triple_count = 2", &[]).await.unwrap();
    // Forget V3 (and the later, idempotent ones) in refinery's history: the next start runs it.
    client.execute("DELETE FROM refinery_schema_history WHERE version >= 3", &[]).await.unwrap();
    rps::pg::schema::migrate(&env.database_url).await.unwrap();
    let pair_size = "SELECT triple_count FROM predicate_object WHERE predicate_id = $1";
    assert_eq!(client.query_one(pair_size, &[&id32(0xa3)]).await.unwrap().get::<_, i64>(0), 1);
    client.query_one("SELECT refresh_analytics($1)", &[&vec![&triples[1]]]).await.unwrap();
    assert_eq!(client.query_one(pair_size, &[&id32(0xa3)]).await.unwrap().get::<_, i64>(0), 2);
    assert_analytics_match(&env).await;
    env.cleanup().await;
}

/// A change to a counter vault alone (the triple's own term untouched) refreshes the
/// triple: its triple_vault rows (a new curve appears), triple_term and both pairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_vault_change_refreshes_its_triple() {
    let mut env = TestEnv::new("an_counter").await;
    let (messages, [t1, _]) = shared_pair_messages();
    env.xadd_all(&messages).await;
    env.run(env.config()).await;
    run_workers(&worker_config(&env), 1, None).await;
    assert_analytics_match(&env).await;
    let counter = rps::event::counter_term_id(&t1);
    env.xadd_all(&counter_vault_messages(&counter, 2, 200)).await;
    env.run(env.config()).await;
    assert_eq!(published_term_ids(&env).await.iter().filter(|id| **id == t1).count(), 1, "only via its counter");
    run_workers(&worker_config(&env), 1, None).await;
    assert_eq!(env.count("SELECT count(*) FROM triple_vault WHERE curve_id = 2").await, 1);
    assert_analytics_match(&env).await;
    env.cleanup().await;
}

/// While caught up, a worker pauses after each refresh: entries that arrive meanwhile wait
/// and are refreshed together (without the pause each of the four below, 200 ms apart, is
/// its own batch). A tiny duty makes every pause the longest, 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_arriving_during_a_pause_are_refreshed_together() {
    let mut env = TestEnv::new("an_pace").await;
    let mut config = worker_config(&env);
    config.exit_when_idle = false;
    config.refresh_duty = 0.0001;
    config.max_pause_ms = 3_000;
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = tokio::spawn({
        let config = config.clone();
        async move { run_workers(&config, 1, Some(stop_rx)).await }
    });
    let update = |i: u32| serde_json::to_string(&[format!("0x{i:064x}")]).unwrap();
    xadd_update(&mut env, &[("term_ids", &update(0)), ("committed_at_ms", "1")]).await;
    wait_until_drained(&env, &config.group).await;
    // The first batch is acked: the worker pauses 3 s from about now.
    for i in 1..=4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        xadd_update(&mut env, &[("term_ids", &update(i)), ("committed_at_ms", "1")]).await;
    }
    wait_until_drained(&env, &config.group).await;
    stop_tx.send(true).unwrap();
    let runs = worker.await.unwrap();
    assert_eq!((runs[0].batches, runs[0].entries, runs[0].term_ids), (2, 5, 5));
    env.cleanup().await;
}

/// A worker that is behind (each read fills its batch) reads on at once, however long its
/// pauses: it pauses only once it has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_behind_does_not_pause() {
    let mut env = TestEnv::new("an_behind").await;
    for i in 0..6u32 {
        let ids = serde_json::to_string(&[format!("0x{i:064x}")]).unwrap();
        xadd_update(&mut env, &[("term_ids", &ids), ("committed_at_ms", "1")]).await;
    }
    let mut config = worker_config(&env);
    config.batch_size = 2;
    config.refresh_duty = 0.0001;
    config.max_pause_ms = 60_000;
    let runs = tokio::time::timeout(Duration::from_secs(30), run_workers(&config, 1, None))
        .await
        .expect("three full reads, then idle: no pause of a minute");
    assert_eq!((runs[0].batches, runs[0].entries), (3, 6));
    env.cleanup().await;
}

/// One batch with more distinct ids than one refresh transaction takes is refreshed in
/// several transactions, all before the ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_is_refreshed_in_chunks() {
    let mut env = TestEnv::new("an_chunks").await;
    let (messages, [t1, t2]) = shared_pair_messages();
    env.xadd_all(&messages).await;
    env.run(env.config()).await;
    let _: () = redis::cmd("DEL").arg(env.term_updates_stream()).query_async(&mut env.redis).await.unwrap();
    // Unknown ids around the two triples, in two entries of one batch.
    let filler = |from: u32| (from..from + 700).map(|i| format!("0x{i:064x}")).collect::<Vec<_>>();
    let (mut first, mut second) = (filler(0), filler(10_000));
    first.push(t1);
    second.push(rps::event::counter_term_id(&t2).to_string());
    for ids in [first, second] {
        xadd_update(&mut env, &[("term_ids", &serde_json::to_string(&ids).unwrap()), ("committed_at_ms", "1")]).await;
    }
    let runs = run_workers(&worker_config(&env), 1, None).await;
    assert_eq!((runs[0].batches, runs[0].term_ids, runs[0].triples), (1, 1402, 2));
    assert_analytics_match(&env).await;
    env.cleanup().await;
}
