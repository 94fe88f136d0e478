//! Past one machine, on existing servers (README → "Scaling out"): readers on a PostgreSQL
//! hot standby, and the engine on a Redis Cluster node with one network's streams under one
//! hash tag. Both on private servers started here, so the shared ones are never reconfigured.

use std::time::{Duration, Instant};

use integration_tests::env::LOGICAL_STREAMS;
use integration_tests::faults::{feed_workload, logged_events, noisy_workload, PrivatePostgres, PrivateRedis};
use integration_tests::TestEnv;
use loadgen::redis_out::{write_messages, WriteOptions};
use rps::ops::verify::{compare_all, STRONG_TABLES};

/// md5 of one view's rows, ordered.
async fn view_digest(client: &tokio_postgres::Client, view: &str) -> (i64, String) {
    let sql =
        format!("SELECT count(*), coalesce(md5(string_agg(r::text, ',' ORDER BY r::text)), '') FROM readers.{view} r");
    let row = client.query_one(&sql, &[]).await.unwrap_or_else(|e| panic!("reading readers.{view}: {e}"));
    (row.get(0), row.get(1))
}

/// Wait until the standby has replayed everything the primary has written so far.
async fn wait_replayed(primary: &tokio_postgres::Client, standby: &tokio_postgres::Client) {
    let target: String = primary.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap().get(0);
    let started = Instant::now();
    loop {
        let caught_up: bool = standby
            .query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&target])
            .await
            .expect("pg_last_wal_replay_lsn on the standby")
            .get(0);
        if caught_up {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the standby did not replay {target} within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_and_verify_work_on_a_hot_standby() {
    let primary = PrivatePostgres::start("primary", &[]).await.expect("a private primary");
    let env = TestEnv::on(&primary.base_url(), "standby").await;
    let standby = PrivatePostgres::standby_of(&primary, "standby").await.expect("a hot standby of it");
    let work = noisy_workload(3_000, 71);
    feed_workload(&env, integration_tests::env::REDIS, &work).await;
    let summary = env.run(env.config()).await;
    assert!(summary.events > 0);

    let on_primary = env.client().await;
    let on_standby = rps::pg::connect_one(&standby.url(&env.name)).await.expect("connect to the standby");
    wait_replayed(&on_primary, &on_standby).await;
    let in_recovery: bool = on_standby.query_one("SELECT pg_is_in_recovery()", &[]).await.unwrap().get(0);
    assert!(in_recovery, "the second server is a standby");

    // Applications read `readers.*` on the standby: the same rows as on the primary.
    let views: Vec<String> = on_primary.query_one("SELECT reader_tables()", &[]).await.unwrap().get(0);
    assert_eq!(views.len(), 9, "one reader view per derived table");
    for view in &views {
        let (primary_rows, primary_digest) = view_digest(&on_primary, view).await;
        assert_eq!(view_digest(&on_standby, view).await, (primary_rows, primary_digest), "readers.{view}");
    }
    let positions: i64 = on_standby.query_one("SELECT count(*) FROM readers.position", &[]).await.unwrap().get(0);
    assert!(positions > 0, "the workload opened positions");

    // `verify` is read-only: it runs on the standby and finds the tables equal to the views.
    let diffs = compare_all(&on_standby, &STRONG_TABLES).await.expect("verify's comparison on the standby");
    assert!(diffs.iter().all(|d| d.matches()), "standby tables differ from the reference views: {diffs:?}");

    // Switching the readers (rollback) writes, so it belongs to the primary.
    let refused = on_standby.batch_execute("SELECT use_reference_views()").await.expect_err("read-only");
    let state = refused.as_db_error().map(|e| e.code().clone());
    assert_eq!(state, Some(tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION), "{refused}");
    env.cleanup().await;
}

/// A Redis Cluster of one node holding every slot: it enforces what a cluster of many does
/// for one connection's keys (a script's keys must share a hash slot), without resharding.
async fn one_node_cluster() -> PrivateRedis {
    let args: Vec<String> =
        ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"].map(String::from).into();
    let redis = PrivateRedis::start_with("cluster", &args, false).await.expect("redis-server --cluster-enabled");
    let mut con = rps::stream::connect(&redis.url()).await.expect("connect");
    let _: () = redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(0).arg(16383).query_async(&mut con).await.unwrap();
    let started = Instant::now();
    loop {
        let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(&mut con).await.unwrap();
        if info.contains("cluster_state:ok") {
            return redis;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the cluster did not become ok: {info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_drains_a_redis_cluster_node_with_one_hash_tag_per_network() {
    let redis = one_node_cluster().await;
    let env = TestEnv::new("cluster").await;
    // `{network}` as the hash tag: every stream of the network, its dead letters and its
    // term updates hash to one slot, so the engine's multi-stream read script is allowed.
    let tag = format!("{{{}}}", env.name);
    let streams: Vec<String> = LOGICAL_STREAMS.iter().map(|s| format!("{tag}:intuition_{s}")).collect();
    let mut slots = std::collections::BTreeSet::new();
    let mut con = rps::stream::connect(&redis.url()).await.expect("connect");
    for key in streams.iter().cloned().chain([format!("{tag}:term_updates"), format!("{}:dlq", streams[0])]) {
        let slot: i64 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key).query_async(&mut con).await.unwrap();
        slots.insert(slot);
    }
    assert_eq!(slots.len(), 1, "one hash tag, one slot");

    let work = noisy_workload(3_000, 72);
    let options = WriteOptions { stream_prefix: format!("{tag}:"), ..WriteOptions::default() };
    write_messages(&mut con, &work.messages, &options).await.expect("XADD the workload");
    let mut config = env.config();
    config.redis_url = redis.url();
    config.streams = streams.clone();
    config.term_updates_stream = format!("{tag}:term_updates");
    env.run(config).await;
    assert_eq!(logged_events(&env).await as usize, work.stats.events, "every distinct event logged once");
    env.assert_matches_reference().await;
    let published: usize = redis::cmd("XLEN").arg(format!("{tag}:term_updates")).query_async(&mut con).await.unwrap();
    assert!(published > 0, "term updates published on the cluster");

    // Without a common tag the streams spread over slots, and the cluster would refuse every
    // read that names them together: the engine says so at start instead of retrying.
    let mut untagged = env.config();
    untagged.redis_url = redis.url();
    untagged.streams = LOGICAL_STREAMS.iter().map(|s| format!("{}:intuition_{s}", env.name)).collect();
    let refused = rps::run(untagged, std::future::pending()).await.expect_err("streams in several slots");
    let message = format!("{refused:#}");
    assert!(message.contains("must share a hash slot") && message.contains("hash tag"), "{message}");
    env.cleanup().await;
}
