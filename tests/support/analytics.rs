//! Helpers for the analytics-worker tests: worker settings for a [`TestEnv`], running
//! several workers in-process, reading `term_updates`, and the level 3 oracle check.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use redis::streams::StreamRangeReply;
use rps::analytics::{WorkerConfig, WorkerSummary};
use rps::ops::verify::{compare_all, ANALYTICS_TABLES};
use tokio::sync::watch;

use crate::TestEnv;

/// Worker settings for this environment: its term_updates stream, drain and exit.
pub fn worker_config(env: &TestEnv) -> WorkerConfig {
    let mut c = WorkerConfig::local(&env.database_url, &env.term_updates_stream());
    c.consumer = Some(format!("{}-worker", env.name));
    c
}

/// Run `n` workers at once on the same group, each until idle or until `stop` turns true.
pub async fn run_workers(config: &WorkerConfig, n: usize, stop: Option<watch::Receiver<bool>>) -> Vec<WorkerSummary> {
    let runs: Vec<_> = (0..n)
        .map(|i| {
            let mut c = config.clone();
            c.consumer = Some(format!("{}-{i}", config.consumer_name()));
            let stop = stop.clone();
            tokio::spawn(async move {
                let shutdown = async move {
                    match stop {
                        Some(mut rx) => drop(rx.wait_for(|s| *s).await),
                        None => std::future::pending().await,
                    }
                };
                rps::analytics::run(c, shutdown).await.expect("worker run")
            })
        })
        .collect();
    let mut out = Vec::new();
    for r in runs {
        out.push(r.await.expect("worker task"));
    }
    out
}

/// Wait until the group has been handed every entry of the stream and acked them all.
pub async fn wait_until_drained(env: &TestEnv, group: &str) {
    let mut con = env.redis.clone();
    let stream = env.term_updates_stream();
    for _ in 0..1200 {
        let info: redis::streams::StreamInfoStreamReply =
            redis::cmd("XINFO").arg("STREAM").arg(&stream).query_async(&mut con).await.expect("XINFO STREAM");
        let groups: redis::streams::StreamInfoGroupsReply =
            redis::cmd("XINFO").arg("GROUPS").arg(&stream).query_async(&mut con).await.expect("XINFO GROUPS");
        let drained = groups
            .groups
            .iter()
            .any(|g| g.name == group && g.pending == 0 && g.last_delivered_id == info.last_generated_id);
        if drained {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{stream} was not drained by {group} within a minute");
}

/// Every id published to the environment's term_updates stream.
pub async fn published_term_ids(env: &TestEnv) -> BTreeSet<String> {
    let mut con = env.redis.clone();
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(env.term_updates_stream())
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .expect("XRANGE");
    reply
        .ids
        .iter()
        .flat_map(|e| serde_json::from_str::<Vec<String>>(&e.get::<String>("term_ids").expect("term_ids")).unwrap())
        .collect()
}

pub async fn stream_len(env: &TestEnv, stream: &str) -> usize {
    let mut con = env.redis.clone();
    redis::cmd("XLEN").arg(stream).query_async(&mut con).await.expect("XLEN")
}

pub async fn pending(env: &TestEnv, stream: &str, group: &str) -> usize {
    let mut con = env.redis.clone();
    let reply: redis::streams::StreamPendingReply =
        redis::cmd("XPENDING").arg(stream).arg(group).query_async(&mut con).await.expect("XPENDING");
    reply.count()
}

/// The four level 3 tables equal their reference views row for row, and are not empty.
pub async fn assert_analytics_match(env: &TestEnv) {
    let client = env.client().await;
    let diffs = compare_all(&client, &ANALYTICS_TABLES).await.expect("compare");
    let bad: Vec<String> = diffs.iter().filter(|d| !d.matches()).map(|d| d.to_string()).collect();
    assert!(bad.is_empty(), "analytics tables differ from the snapshot views:\n{}", bad.join("\n"));
    let triples: i64 = client.query_one("SELECT count(*) FROM snapshot.triple", &[]).await.unwrap().get(0);
    let rows: i64 = client.query_one("SELECT count(*) FROM triple_term", &[]).await.unwrap().get(0);
    assert_eq!(rows, triples, "one triple_term row per triple");
}

/// The engine binary (see [`crate::faults::binary`]).
pub fn engine_binary() -> PathBuf {
    crate::faults::binary("redis-postgres-sync")
}

/// `0x` + 64 hex digits made of `byte`.
pub fn id32(byte: u8) -> String {
    format!("0x{}", hex::encode([byte; 32]))
}

/// Two triples with the same (predicate, object) pair, each with a priced vault holding a
/// position, as (stream index, payload) for [`TestEnv::xadd_all`]. Returns the triples' ids.
pub fn shared_pair_messages() -> (Vec<(usize, String)>, [String; 2]) {
    let (predicate, object) = (id32(0xa1), id32(0xa2));
    let triples = [id32(0xb1), id32(0xb2)];
    let account = format!("0x{}", hex::encode([0xcc; 20]));
    let mut messages = Vec::new();
    for (i, term) in triples.iter().enumerate() {
        let block = 100 + i as u64;
        let subject = id32(0xd0 + i as u8);
        let triple = serde_json::json!({ "creator": account, "termId": term, "subjectId": subject,
            "predicateId": predicate, "objectId": object });
        let deposit = serde_json::json!({ "sender": account, "receiver": account, "termId": term, "curveId": 1,
            "assets": 1000, "assetsAfterFees": 990, "shares": 10 + i, "totalShares": 10 + i, "vaultType": 1 });
        let price = serde_json::json!({ "termId": term, "curveId": 1, "sharePrice": "2000000000000000000",
            "totalAssets": 500 + i, "totalShares": 10 + i, "vaultType": 1 });
        messages.push((1, message("TripleCreated", triple, block, 0)));
        messages.push((2, message("Deposited", deposit, block, 1)));
        messages.push((4, message("SharePriceChanged", price, block, 2)));
    }
    (messages, triples)
}

/// `n` triples of one (predicate, object) pair, each with its own subject, created one per
/// block from block 1000 on, without vaults. Returns the triples' ids.
pub fn many_triples_of_one_pair(n: usize) -> (Vec<(usize, String)>, Vec<String>) {
    let (predicate, object) = (id32(0xa3), id32(0xa4));
    let account = format!("0x{}", hex::encode([0xce; 20]));
    let id = |kind: u64, i: usize| format!("0x{:064x}", (kind << 32) + i as u64);
    let mut messages = Vec::new();
    let mut triples = Vec::new();
    for i in 0..n {
        let term = id(0xb0, i);
        let triple = serde_json::json!({ "creator": account, "termId": term, "subjectId": id(0xd0, i),
            "predicateId": predicate, "objectId": object });
        messages.push((1, message("TripleCreated", triple, 1000 + i as u64, 0)));
        triples.push(term);
    }
    (messages, triples)
}

/// A deposit into `term`'s vault on `curve` and a price for it (vault type
/// CounterTriple), at `block`, as (stream index, payload) messages.
pub fn counter_vault_messages(term: &str, curve: u64, block: u64) -> Vec<(usize, String)> {
    let account = format!("0x{}", hex::encode([0xcd; 20]));
    let deposit = serde_json::json!({ "sender": account, "receiver": account, "termId": term, "curveId": curve,
        "assets": 77, "assetsAfterFees": 70, "shares": 5, "totalShares": 5, "vaultType": 2 });
    let price = serde_json::json!({ "termId": term, "curveId": curve, "sharePrice": "3000000000000000000",
        "totalAssets": 70, "totalShares": 5, "vaultType": 2 });
    vec![(2, message("Deposited", deposit, block, 0)), (4, message("SharePriceChanged", price, block, 1))]
}

fn message(name: &str, mut event: serde_json::Value, block: u64, log: u64) -> String {
    event["transaction_information"] = serde_json::json!({
        "address": "0x6e35cf57a41fa15ea0eae9c33e751b01a784fe7e", "block_hash": id32(0xee),
        "block_number": block, "block_timestamp": null, "log_index": log, "network": "intuition",
        "transaction_hash": id32(block as u8), "transaction_index": 0,
    });
    serde_json::json!({ "event_name": name, "network": "intuition", "block_number": block, "event_data": [event] })
        .to_string()
}
