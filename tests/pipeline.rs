//! The engine end to end against real PostgreSQL and Redis: whatever the delivery order,
//! duplication, packing, batch size or number of engines, every level 1-2 table must equal
//! its reference view (a full recompute from the event log) row for row.

use integration_tests::workload::{self, Params};
use integration_tests::TestEnv;
use proptest::prelude::*;
use ruint::aliases::U256;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn feed_samples(env: &mut TestEnv) {
    let samples = include_str!("../samples/mixed-encodings.jsonl");
    for line in samples.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let stream = integration_tests::env::LOGICAL_STREAMS
            .iter()
            .position(|s| v["stream"].as_str().unwrap().ends_with(s))
            .expect("known stream");
        env.xadd(stream, v["payload"].to_string().as_bytes()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_sync_and_match_reference() {
    let mut env = TestEnv::new("samples").await;
    feed_samples(&mut env).await;
    let summary = env.run(env.config()).await;
    assert_eq!(summary.messages, 10);
    assert_eq!(summary.dead_letters, 0);
    env.assert_matches_reference().await;
    assert_eq!(env.count("SELECT count(*) FROM atom").await, 3);
    assert_eq!(env.count("SELECT count(*) FROM triple").await, 2);
    assert!(env.count("SELECT count(*) FROM position").await > 0);
    // Every term of an atom, triple, counter triple or vault has a row.
    assert_eq!(env.count("SELECT count(*) FROM term").await, env.count("SELECT count(*) FROM snapshot.term").await);
    env.cleanup().await;
}

/// Every event table is keyed by the event's identity in chain order, so that a batch
/// applied in chain order appends at the right edge of each index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_tables_are_keyed_in_chain_order() {
    let env = TestEnv::new("event_keys").await;
    let keys = env
        .client()
        .await
        .query(
            "SELECT c.conrelid::regclass::text, array_agg(a.attname::text ORDER BY k.n)
               FROM pg_constraint c
               CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
              WHERE c.contype = 'p' AND c.conrelid::regclass::text LIKE '%_events'
              GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let keys: Vec<(String, Vec<String>)> = keys.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(keys.len(), rps::ingest::copy::EVENT_TABLES.len(), "{keys:?}");
    for (table, key) in keys {
        assert_eq!(key, ["block_number", "log_index", "block_hash"], "{table}");
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_messages_change_nothing() {
    let mut env = TestEnv::new("redeliver").await;
    feed_samples(&mut env).await;
    env.run(env.config()).await;
    let state = "SELECT md5(string_agg(p::text, ',' ORDER BY account_id, term_id, curve_id)) FROM position p";
    let client = env.client().await;
    let before: String = client.query_one(state, &[]).await.unwrap().get(0);
    // The producer sends everything again: sums must not grow.
    feed_samples(&mut env).await;
    let summary = env.run(env.config()).await;
    assert_eq!(summary.messages, 10);
    let after: String = client.query_one(state, &[]).await.unwrap().get(0);
    assert_eq!(before, after);
    assert_eq!(env.count("SELECT count(*) FROM deposited_events").await, 4);
    env.assert_matches_reference().await;
    env.cleanup().await;
}

/// A batch of new events goes straight into the log with COPY; one that repeats logged events
/// fails that COPY on the key and takes the staging path (`INSERT … ON CONFLICT DO NOTHING`),
/// applying exactly its new events. The staging path is the only one timed as "copy".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_repeating_logged_events_applies_only_its_new_ones() {
    let mut env = TestEnv::new("mixed_batch").await;
    let p = Params { seed: 11, events: 400, max_per_message: 8, duplicate_rate: 0.0, streams: 5 };
    let (messages, distinct) = workload::messages(&p);
    let half = messages.len() / 2;
    env.xadd_all(&messages[..half]).await;
    let first = env.run(env.config()).await;
    assert_eq!(first.stage_time.summed("copy"), std::time::Duration::ZERO, "new events only: straight COPY");
    env.xadd_all(&messages).await;
    let second = env.run(env.config()).await;
    assert!(second.stage_time.summed("copy") > std::time::Duration::ZERO, "logged events again: the staging path");
    assert_eq!(second.dead_letters, 0);
    let logged = logged_events(&env).await;
    assert_eq!(logged as usize, distinct, "each distinct event is logged exactly once");
    env.assert_matches_reference().await;
    env.cleanup().await;
}

/// Events in the log, all six tables.
async fn logged_events(env: &TestEnv) -> i64 {
    env.count(
        "SELECT (SELECT count(*) FROM atom_created_events) + (SELECT count(*) FROM triple_created_events) \
         + (SELECT count(*) FROM deposited_events) + (SELECT count(*) FROM redeemed_events) \
         + (SELECT count(*) FROM share_price_changed_events) + (SELECT count(*) FROM generic_events)",
    )
    .await
}

async fn random_workload_case(p: Params, batch_size: usize, engines: usize) -> Vec<rps::RunSummary> {
    let mut env = TestEnv::new("prop").await;
    let (messages, distinct) = workload::messages(&p);
    env.xadd_all(&messages).await;
    let mut config = env.config();
    config.batch_size = batch_size;
    let runs = env.run_concurrently(config, engines).await;
    let read: u64 = runs.iter().map(|r| r.messages).sum();
    assert!(read >= messages.len() as u64, "every message is read at least once");
    assert_eq!(runs.iter().map(|r| r.dead_letters).sum::<u64>(), 0);
    let logged = logged_events(&env).await;
    assert_eq!(logged as usize, distinct, "each distinct event is logged exactly once");
    env.assert_matches_reference().await;
    env.cleanup().await;
    runs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]

    /// Shuffled, duplicated, randomly packed and batched workloads, one to three engines.
    #[test]
    fn random_workloads_match_reference(
        seed in any::<u64>(),
        events in 20usize..400,
        max_per_message in 1usize..8,
        duplicate_rate in 0.0f64..0.5,
        batch_size in 1usize..40,
        engines in 1usize..4,
    ) {
        let p = Params { seed, events, max_per_message, duplicate_rate, streams: 5 };
        runtime().block_on(random_workload_case(p, batch_size, engines));
    }
}

/// A bigger workload through three engines sharing the group, default batch size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_engines_on_a_larger_workload() {
    let p = Params { seed: 7, events: 5_000, max_per_message: 20, duplicate_rate: 0.2, streams: 5 };
    random_workload_case(p, 50, 3).await;
}

/// Batches large enough to be cut into term-disjoint parts applied in concurrent
/// transactions (one engine, then two sharing the group): the parts must add up to what
/// one transaction would have written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_applied_as_concurrent_parts() {
    for engines in [1, 2] {
        let p =
            Params { seed: 23 + engines as u64, events: 12_000, max_per_message: 20, duplicate_rate: 0.2, streams: 5 };
        let runs = random_workload_case(p, 2_000, engines).await;
        assert!(runs.iter().map(|r| r.parallel_batches).sum::<u64>() > 0, "no batch was applied in parts: {runs:?}");
    }
}

/// Batch size 1 is the seed's per-event path; it must agree too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_per_batch() {
    let p = Params { seed: 11, events: 300, max_per_message: 1, duplicate_rate: 0.3, streams: 5 };
    random_workload_case(p, 1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_payload_field_names_are_accepted() {
    let mut env = TestEnv::new("fields").await;
    let samples: Vec<serde_json::Value> =
        include_str!("../samples/mixed-encodings.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let atoms: Vec<&serde_json::Value> = samples.iter().filter(|v| v["stream"] == "intuition_atom_created").collect();
    env.xadd_field(0, "event_data", atoms[0]["payload"].to_string().as_bytes()).await;
    env.xadd_field(0, "data", atoms[1]["payload"].to_string().as_bytes()).await;
    let summary = env.run(env.config()).await;
    assert_eq!((summary.events, summary.dead_letters), (2, 0));
    assert_eq!(env.count("SELECT count(*) FROM atom").await, 2);
    env.cleanup().await;
}

/// Entries a consumer received and never acked (it crashed) are applied by its successor
/// under the same name, and by any consumer once they are idle long enough (XAUTOCLAIM).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_entries_are_recovered() {
    let mut env = TestEnv::new("pending").await;
    feed_samples(&mut env).await;
    let config = env.config();
    // "dead" reads one deposit message and dies without acking.
    assert_eq!(env.read_and_abandon("dead", &[2], 1).await, 1);
    let mut live = config.clone();
    live.consumer = Some("live".into());
    live.claim_idle_ms = 0;
    let summary = env.run(live).await;
    assert_eq!(summary.messages, 10, "the dead consumer's entry was claimed and applied");
    env.assert_matches_reference().await;
    assert_eq!(env.count("SELECT count(*) FROM deposited_events").await, 4);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_dead_lettered_and_good_input_applied() {
    let mut env = TestEnv::new("dlq").await;
    feed_samples(&mut env).await;
    let term = "0x221c4e003f9931ee3af27f802dc5fd3d9974d75b333824fe61790134676b1b69";
    let tx = |log: u32| {
        format!(
            r#"{{"address":"0x6e35cf57a41fa15ea0eae9c33e751b01a784fe7e","block_hash":"{term}","block_number":9000000,"block_timestamp":null,"log_index":{log},"network":"intuition","transaction_hash":"{term}","transaction_index":1}}"#
        )
    };
    let spc = |log: u32, vault_type: &str| {
        format!(
            r#"{{"termId":"{term}","curveId":1,"sharePrice":"2000000000000000000","totalAssets":5,"totalShares":7,"vaultType":{vault_type},"transaction_information":{}}}"#,
            tx(log)
        )
    };
    let mixed = format!(r#"{{"event_name":"SharePriceChanged","event_data":[{},{}]}}"#, spc(1, "0"), spc(2, "7"));
    env.xadd(4, b"this is not json").await;
    env.xadd(4, br#"{"event_name":"Deposited","event_data":[]}"#).await;
    env.xadd(4, mixed.as_bytes()).await;
    env.xadd_field(4, "body", b"{}").await;
    let summary = env.run(env.config()).await;
    assert_eq!(summary.dead_letters, 4);

    let mut dlq = env.dead_letters(4).await;
    dlq.sort();
    let errors: Vec<&str> = dlq.iter().map(|d| d.0.as_str()).collect();
    assert!(errors.iter().any(|e| e.starts_with("not valid JSON")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("empty array")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("`vaultType`: 7")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("no payload field")), "{errors:?}");
    for (_, payload, stream, id) in &dlq {
        assert_eq!(stream, &env.streams[4]);
        assert!(id.contains('-'), "origin id {id}");
        if payload.contains("\"vaultType\":7") {
            assert!(!payload.contains("\"log_index\":1"), "only the bad event is dead-lettered");
        }
    }
    // The good event of the mixed message landed; its bad neighbour did not.
    assert_eq!(env.count("SELECT count(*) FROM share_price_changed_events WHERE block_number = 9000000").await, 1);
    env.assert_matches_reference().await;
    let mut con = env.redis.clone();
    let pending: redis::streams::StreamPendingReply =
        redis::AsyncCommands::xpending(&mut con, &env.streams[4], "redis-postgres-sync").await.unwrap();
    assert_eq!(pending.count(), 0, "dead-lettered entries are acked");
    env.cleanup().await;
}

/// The binary NUMERIC encoding used by COPY, read back by PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_round_trips_through_postgres() {
    let env = TestEnv::new("numeric").await;
    let client = env.client().await;
    let ten18 = U256::from(10u64).pow(U256::from(18u64));
    for v in
        [U256::ZERO, U256::from(1u64), U256::from(10_000u64), U256::from(12_345u64), ten18, ten18 * ten18, U256::MAX]
    {
        let back: String =
            client.query_one("SELECT $1::numeric::text", &[&rps::event::numeric::Numeric(v)]).await.unwrap().get(0);
        assert_eq!(back, v.to_string());
    }
    env.cleanup().await;
}

/// Every committed batch's terms reach `term_updates`, and the outbox is left empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_publishes_every_touched_term() {
    let mut env = TestEnv::new("outbox").await;
    feed_samples(&mut env).await;
    env.run(env.config()).await;
    assert_eq!(env.count("SELECT count(*) FROM term_update_outbox").await, 0);
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(env.term_updates_stream())
        .arg("-")
        .arg("+")
        .query_async(&mut env.redis)
        .await
        .unwrap();
    let mut published = std::collections::BTreeSet::new();
    for entry in &reply.ids {
        let ids: Vec<String> = serde_json::from_str(&entry.get::<String>("term_ids").unwrap()).unwrap();
        assert!(entry.get::<i64>("committed_at_ms").unwrap() > 0);
        published.extend(ids);
    }
    // Every term row (atoms, triples, counter terms, vault terms) was announced.
    let terms: Vec<String> =
        env.client().await.query("SELECT id FROM term", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert!(!terms.is_empty());
    for t in terms {
        assert!(published.contains(&t), "term {t} was never published");
    }
    env.cleanup().await;
}

/// The reader's binary COPY encoding stores every column as decoded: ids lowercased, 64-bit
/// integers, a timestamp (hex seconds, and null), uint256 amounts past 64 bits, the vault type,
/// atom bytes with and without a text form, and an unknown event's JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_is_stored_as_decoded() {
    let mut env = TestEnv::new("columns").await;
    let term = "0x221c4e003f9931ee3af27f802dc5fd3d9974d75b333824fe61790134676b1b69";
    let other = "0x00000000000000000000000000000000000000000000000000000000000000aa";
    let tx = |log: u32, timestamp: &str| {
        format!(
            r#"{{"address":"0x6E35cF57A41fA15eA0EaE9C33e751b01A784Fe7e","block_hash":"{term}","block_number":9000001,"block_timestamp":{timestamp},"log_index":{log},"network":"intuition","transaction_hash":"0x{log:064x}","transaction_index":3}}"#
        )
    };
    let atom = |log: u32, id: &str, data: &str, timestamp: &str| {
        format!(
            r#"{{"event_name":"AtomCreated","event_data":[{{"creator":"0xAbCdEf0123456789aBcDeF0123456789AbCdEf01","termId":"{id}","atomWallet":"0x00000000000000000000000000000000000000b0","atomData":"{data}","transaction_information":{}}}]}}"#,
            tx(log, timestamp)
        )
    };
    env.xadd(0, atom(1, term, "0x68656c6c6f", r#""0x6553f100""#).as_bytes()).await;
    env.xadd(0, atom(2, other, "0xff00", "null").as_bytes()).await;
    let deposit = format!(
        r#"{{"event_name":"Deposited","event_data":[{{"sender":"0x00000000000000000000000000000000000000c1","receiver":"0x00000000000000000000000000000000000000c1","termId":"{term}","curveId":1,"assets":"123456789012345678901234567890","assetsAfterFees":"0x10","shares":"16","totalShares":"16","vaultType":0,"transaction_information":{}}}]}}"#,
        tx(3, "1700000000")
    );
    env.xadd(2, deposit.as_bytes()).await;
    let generic = format!(
        r#"{{"event_name":"Upgraded","event_data":[{{"implementation":"0x00000000000000000000000000000000000000d1","n":[1,2.5,"x"],"transaction_information":{}}}]}}"#,
        tx(4, "null")
    );
    env.xadd(4, generic.as_bytes()).await;
    let summary = env.run(env.config()).await;
    assert_eq!(summary.dead_letters, 0);

    let tx_columns =
        "block_number = 9000001 AND block_hash = '0x221c4e003f9931ee3af27f802dc5fd3d9974d75b333824fe61790134676b1b69' \
        AND address = '0x6e35cf57a41fa15ea0eae9c33e751b01a784fe7e' AND network = 'intuition' AND transaction_index = 3";
    let one = |table: &str, log: u32, columns: &str| {
        format!("SELECT count(*) FROM {table} WHERE log_index = {log} AND transaction_hash = '0x{log:064x}' AND {tx_columns} AND {columns}")
    };
    let checks = [
        one(
            "atom_created_events",
            1,
            "block_timestamp = to_timestamp(1700000000) AND creator = '0xabcdef0123456789abcdef0123456789abcdef01' \
             AND atom_wallet = '0x00000000000000000000000000000000000000b0' AND atom_data = '\\x68656c6c6f' AND atom_data_text = 'hello'",
        ),
        one("atom_created_events", 2, "block_timestamp IS NULL AND atom_data = '\\xff00' AND atom_data_text IS NULL"),
        one(
            "deposited_events",
            3,
            "block_timestamp = to_timestamp(1700000000) AND sender = '0x00000000000000000000000000000000000000c1' \
             AND curve_id = 1 AND assets = 123456789012345678901234567890 AND assets_after_fees = 16 AND shares = 16 \
             AND total_shares = 16 AND vault_type = 0",
        ),
        one(
            "generic_events",
            4,
            "block_timestamp IS NULL AND event_name = 'Upgraded' \
             AND event_data->>'implementation' = '0x00000000000000000000000000000000000000d1' \
             AND event_data->'n' = '[1, 2.5, \"x\"]'::jsonb",
        ),
    ];
    for sql in &checks {
        assert_eq!(env.count(sql).await, 1, "{sql}");
    }
    env.cleanup().await;
}
