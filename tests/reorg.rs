//! Chain reorganizations end to end (README → Chain reorganizations): rindexer's real reorg
//! notice, copied to every stream, retracts the orphaned events from the log and from every
//! derived table; nothing reaches a dead-letter stream; old-chain events read after their
//! stream's notice, and late copies of orphaned blocks, are never applied.

use std::collections::BTreeSet;

use integration_tests::analytics;
use integration_tests::env::{LOGICAL_STREAMS, REDIS};
use integration_tests::faults::{crash_or_kill, feed_workload, Proc};
use integration_tests::forks::{self, ForkParams, ForkWorkload};
use integration_tests::TestEnv;
use loadgen::workload::{generate, MessageKind, WorkloadConfig};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// The messages captured from rindexer v0.41.0 (`samples/`), as (stream index, payload).
fn real_messages() -> Vec<(usize, Value)> {
    include_str!("../samples/rindexer-v0.41-real-messages.jsonl")
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let stream = LOGICAL_STREAMS.iter().position(|s| v["stream"].as_str().unwrap().ends_with(s)).unwrap();
            (stream, v["payload"].clone())
        })
        .collect()
}

fn name(payload: &Value) -> &str {
    payload["event_name"].as_str().unwrap()
}

/// The same events in a block of another fork: new block hash, new amounts.
fn on_new_fork(payload: &Value) -> Value {
    let mut p = payload.clone();
    for (i, e) in p["event_data"].as_array_mut().unwrap().iter_mut().enumerate() {
        e["transaction_information"]["block_hash"] = Value::from(format!("0x{:064x}", 0xf0f0));
        e["sharePrice"] = Value::from(format!("{}", 2_000_000_000_000_000_000u128 + i as u128));
    }
    p
}

/// The capture's reorg (fork 102) as rindexer sends it: every stream gets `copies` copies of
/// the notice after its old-chain events; then the share price stream gets the new chain's
/// block 102, and a late copy of the orphaned block 102.
async fn feed_reorg(env: &mut TestEnv, copies: usize) -> (usize, usize) {
    let messages = real_messages();
    let notice = messages.iter().find(|(_, p)| name(p) == "__rindexer_reorg").unwrap().1.to_string();
    let orphaned = messages.iter().find(|(_, p)| name(p) == "SharePriceChanged").unwrap().1.clone();
    for (stream, payload) in messages.iter().filter(|(_, p)| name(p) != "__rindexer_reorg") {
        env.xadd(*stream, payload.to_string().as_bytes()).await;
    }
    for _ in 0..copies {
        for stream in 0..LOGICAL_STREAMS.len() {
            env.xadd(stream, notice.as_bytes()).await;
        }
    }
    let prices = LOGICAL_STREAMS.iter().position(|s| *s == "share_price_changed").unwrap();
    let new_fork = on_new_fork(&orphaned);
    env.xadd(prices, new_fork.to_string().as_bytes()).await;
    env.xadd(prices, orphaned.to_string().as_bytes()).await;
    (orphaned["event_data"].as_array().unwrap().len(), new_fork["event_data"].as_array().unwrap().len())
}

async fn assert_reorg_applied(env: &mut TestEnv, old: usize, new: usize) {
    for stream in 0..LOGICAL_STREAMS.len() {
        assert_eq!(env.dead_letters(stream).await, vec![], "no dead letters on stream {stream}");
    }
    // Block 102 holds only the new fork's events; everything below the fork stays.
    let at_fork = "SELECT count(*) FROM share_price_changed_events WHERE block_number >= 102";
    assert_eq!(env.count(at_fork).await, new as i64);
    let new_hash = "SELECT count(*) FROM share_price_changed_events WHERE block_hash LIKE '0x0000%f0f%'";
    assert_eq!(env.count(new_hash).await, new as i64);
    assert!(env.count("SELECT count(*) FROM deposited_events").await > 0);
    let reorg = "SELECT count(*) FROM reorg WHERE network = 'intuition_local' AND fork_block = 102";
    assert_eq!(env.count(reorg).await, 1, "one reorg, however many copies");
    let orphaned = "SELECT count(*) FROM retracted_block WHERE block_number = 102 AND block_hash NOT LIKE '0x0000%'";
    assert_eq!(env.count(orphaned).await, 1);
    assert!(old > 0);
    env.assert_matches_reference().await;
}

/// One read per message and stream: the old block is applied first, then retracted by the
/// first copy; the late copy of the orphaned block is known retracted and dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_reorg_notice_retracts_an_applied_block() {
    let mut env = TestEnv::new("reorg_applied").await;
    let (old, new) = feed_reorg(&mut env, 5).await;
    let mut config = env.config();
    config.batch_size = 1;
    let summary = env.run(config).await;
    assert_eq!(summary.dead_letters, 0);
    assert_retracted_count(&env, old).await;
    assert_reorg_applied(&mut env, old, new).await;
    let (_, doctor) = env.engine_subcommand(&["doctor"]).await;
    let expected = format!("1 applied: {old} logged events retracted, 1 orphaned blocks known");
    assert!(doctor.contains(&expected) && doctor.contains("fork_block 102"), "{doctor}");
    env.cleanup().await;
}

async fn assert_retracted_count(env: &TestEnv, old: usize) {
    assert_eq!(env.count("SELECT events_retracted FROM reorg").await, old as i64);
}

/// Everything in one batch: the notices are recorded before the batch's events, whose
/// old-chain block (before its stream's copy) is dropped unapplied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_chain_events_read_with_their_notice_are_never_applied() {
    let mut env = TestEnv::new("reorg_one_batch").await;
    let (old, new) = feed_reorg(&mut env, 2).await;
    let summary = env.run(env.config()).await;
    assert_eq!(summary.dead_letters, 0);
    assert_eq!(env.count("SELECT events_retracted FROM reorg").await, 0, "nothing was logged to retract");
    assert_reorg_applied(&mut env, old, new).await;
    env.cleanup().await;
}

/// Every event key in the log: (block_number, log_index, block_hash).
async fn logged_keys(env: &TestEnv) -> BTreeSet<(i64, i64, String)> {
    let sql = "SELECT block_number, log_index, block_hash FROM logged_events";
    let rows = env.client().await.query(sql, &[]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
}

/// The log holds exactly the canonical chain's events, and every level 1-3 table equals its
/// reference view over them. The workload goes in two halves, the analytics worker running
/// after each, so that later reorgs retract triples whose level 3 rows exist.
async fn fork_case(p: ForkParams, batch_size: usize, engines: usize) -> ForkWorkload {
    let mut env = TestEnv::new("forks").await;
    let w = forks::generate(&p);
    let mut config = env.config();
    config.batch_size = batch_size;
    let (first, second) = w.messages.split_at(w.messages.len() / 2);
    for half in [first, second] {
        env.xadd_all_at(half).await;
        let runs = env.run_concurrently(config.clone(), engines).await;
        assert_eq!(runs.iter().map(|r| r.dead_letters).sum::<u64>(), 0, "no dead letters");
        analytics::run_workers(&analytics::worker_config(&env), 1, None).await;
    }
    let logged = logged_keys(&env).await;
    let orphans: Vec<_> = logged.difference(&w.canonical).take(5).collect();
    let missing: Vec<_> = w.canonical.difference(&logged).take(5).collect();
    assert!(
        orphans.is_empty() && missing.is_empty(),
        "orphaned events kept: {orphans:?}; canonical missing: {missing:?}"
    );
    assert_eq!(env.count("SELECT count(*) FROM reorg").await, w.reorgs as i64, "one reorg per fork");
    env.assert_matches_reference().await;
    analytics::assert_analytics_match(&env).await;
    env.cleanup().await;
    w
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]

    /// Forks of depth 1 to 64 at random, notices copied to every stream (some with a
    /// fork_block one too high), streams interleaved and read at different speeds, messages
    /// published twice; one or two engines on the group (which can apply a stream's notice
    /// after the entries that follow it). The two-engine cases it found run below as
    /// regressions.
    #[test]
    fn any_sequence_of_forks_leaves_the_canonical_chain(
        seed in any::<u64>(),
        blocks in 10usize..120,
        fork_rate in 0.02f64..0.25,
        max_depth in 1usize..64,
        copies in 1usize..4,
        too_high_rate in 0.0f64..0.6,
        duplicate_rate in 0.0f64..0.2,
        batch_size in 1usize..20,
        engines in 1usize..3,
    ) {
        let p = ForkParams { seed, blocks, fork_rate, max_depth, copies, too_high_rate, duplicate_rate };
        runtime().block_on(fork_case(p, batch_size, engines));
    }
}

/// A reorg that orphans a triple the analytics worker has already counted: its triple_term
/// and triple_vault rows go, and its pair rows lose it (a pair left without triples goes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retracted_triple_leaves_level_3() {
    let mut env = TestEnv::new("reorg_level3").await;
    let (messages, triples) = analytics::shared_pair_messages();
    env.xadd_all(&messages).await;
    env.run(env.config()).await;
    analytics::run_workers(&analytics::worker_config(&env), 1, None).await;
    analytics::assert_analytics_match(&env).await;
    assert_eq!(env.count("SELECT triple_count FROM predicate_object").await, 2);
    // The second triple's block (101) is orphaned, and the new chain has nothing there.
    let notice = forks::notice(101, 1);
    env.xadd_all(&(0..LOGICAL_STREAMS.len()).map(|s| (s, notice.clone())).collect::<Vec<_>>()).await;
    env.run(env.config()).await;
    analytics::run_workers(&analytics::worker_config(&env), 1, None).await;
    env.assert_matches_reference().await;
    analytics::assert_analytics_match(&env).await;
    assert_eq!(env.count("SELECT triple_count FROM predicate_object").await, 1);
    let gone = format!("SELECT count(*) FROM triple_term WHERE term_id = '{}'", triples[1]);
    assert_eq!(env.count(&gone).await, 0);
    env.cleanup().await;
}

/// Cases the property test found: two engines, notices one block too high (the engines
/// recorded reorgs out of publication order; a tie between two blocks was settled before
/// the reorg that tells them apart was known; a block below a too-high fork arrived while
/// its notice was still unrecorded, so only the notice could settle it; a late duplicate of
/// an orphaned block made it rank as new).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regressions_with_two_engines_and_fork_blocks_too_high() {
    let cases = [
        (15312418152599542316, 50, 0.1336821956782333, 57, 3, 0.46957297093747397, 0.003195893587341106, 5),
        (2416083616244425987, 45, 0.03806269418296228, 22, 1, 0.3134476122418882, 0.1891513447054911, 1),
        (9693965113875668676, 63, 0.11169281139252288, 17, 3, 0.46985435358410155, 0.10711110723651945, 7),
        (8414792880983925465, 110, 0.10680439494052014, 33, 2, 0.16421273184259058, 0.15466776169327326, 10),
        (5803379958024520424, 92, 0.17182390102585088, 45, 2, 0.46376698601920463, 0.1189816327063547, 17),
        (11213758879655992373, 73, 0.12081778374858525, 13, 1, 0.09830427069201475, 0.153333150708766, 7),
    ];
    for (seed, blocks, fork_rate, max_depth, copies, too_high_rate, duplicate_rate, batch_size) in cases {
        let p = ForkParams { seed, blocks, fork_rate, max_depth, copies, too_high_rate, duplicate_rate };
        fork_case(p, batch_size, 2).await;
    }
}

/// Engines killed at any moment (kill -9, and aborts at the crash points between COPY,
/// merge, commit and ack) while forks arrive, restarted under the same consumer name: the
/// notices' and the batches' transactions commit whole or not at all and redelivery is a
/// no-op, so the log still ends as exactly the canonical chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_engines_mid_reorg_leave_the_canonical_chain() {
    let mut env = TestEnv::new("reorg_kills").await;
    let p = ForkParams {
        seed: 11,
        blocks: 160,
        fork_rate: 0.15,
        max_depth: 20,
        copies: 3,
        too_high_rate: 0.3,
        duplicate_rate: 0.1,
    };
    let w = forks::generate(&p);
    assert!(w.reorgs >= 5, "the workload has forks: {}", w.reorgs);
    let slices: Vec<_> = w.messages.chunks(w.messages.len() / 10 + 1).collect();
    let points = ["after_copy", "after_merge", "after_commit", "after_ack"];
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for (i, slice) in slices.iter().enumerate() {
        env.xadd_all_at(slice).await;
        let batch = rng.gen_range(1..8).to_string();
        let mut vars = vec![("BATCH_SIZE", batch.as_str())];
        let point = (i % 3 == 1).then(|| points[(i / 3) % points.len()]);
        if let Some(p) = point {
            vars.push(("RPS_CRASH_POINT", p));
        }
        let mut engine = Proc::engine(&env, REDIS, "crashing", &vars);
        crash_or_kill(&mut engine, point, &mut rng).await;
    }
    let reorgs_before_the_drain = env.count("SELECT count(*) FROM reorg").await;
    // The after_commit abort commits one batch at least (events, notices or both); a debug
    // engine killed after 100-600 ms may not get further.
    let progress = reorgs_before_the_drain > 0 || !logged_keys(&env).await.is_empty();
    assert!(progress, "the killed engines made progress");
    let mut config = env.config();
    config.consumer = Some("crashing".into());
    config.batch_size = 3;
    env.run(config).await;
    analytics::run_workers(&analytics::worker_config(&env), 1, None).await;
    let logged = logged_keys(&env).await;
    assert_eq!(logged, w.canonical, "the log is the canonical chain");
    assert_eq!(env.count("SELECT count(*) FROM reorg").await, w.reorgs as i64);
    env.assert_matches_reference().await;
    analytics::assert_analytics_match(&env).await;
    for stream in 0..LOGICAL_STREAMS.len() {
        assert_eq!(env.dead_letters(stream).await, vec![], "no dead letters on stream {stream}");
    }
    env.cleanup().await;
}

/// `loadgen generate --reorg-rate --reorg-depth`'s workload (the realistic generator's events
/// as the canonical chain, rindexer's exact format, orphaned versions of recent blocks with
/// other amounts, missing events and atoms of their own, notices on every stream, some one
/// block too high) with delivery noise and bad input, through two engines: the log ends as
/// exactly the canonical events and every table matches, and only the bad input is
/// dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_generator_workload_with_forks_leaves_the_canonical_chain() {
    let mut env = TestEnv::new("loadgen_forks").await;
    let config = WorkloadConfig {
        events: 4_000,
        seed: 23,
        atoms: 120,
        triples: 200,
        accounts: 60,
        reorg_rate: 0.05,
        reorg_depth: 8,
        duplicate_rate: 0.05,
        shuffle_window: 16,
        malformed_rate: 0.01,
        ..WorkloadConfig::default()
    };
    let w = generate(&config);
    assert!(w.stats.forks.reorgs >= 5 && w.stats.forks.orphaned_events > 50, "{:?}", w.stats.forks);
    let canonical: BTreeSet<(i64, i64, String)> = w
        .messages
        .iter()
        .filter(|m| m.kind == MessageKind::Original)
        .flat_map(|m| rps::event::decode::decode_payload(m.payload.as_bytes()).unwrap().events)
        .map(|e| (e.tx.block_number, e.tx.log_index, e.tx.block_hash.to_string()))
        .collect();
    assert_eq!(canonical.len(), w.stats.events);
    let (first, second) = w.messages.split_at(w.messages.len() / 2);
    let mut config = env.config();
    config.batch_size = 20;
    for half in [first, second] {
        let part = loadgen::workload::Workload { messages: half.to_vec(), stats: w.stats.clone() };
        feed_workload(&env, REDIS, &part).await;
        env.run_concurrently(config.clone(), 2).await;
        analytics::run_workers(&analytics::worker_config(&env), 1, None).await;
    }
    let logged = logged_keys(&env).await;
    let orphans: Vec<_> = logged.difference(&canonical).take(5).collect();
    let missing: Vec<_> = canonical.difference(&logged).take(5).collect();
    assert!(
        orphans.is_empty() && missing.is_empty(),
        "orphaned events kept: {orphans:?}; canonical missing: {missing:?}"
    );
    assert_eq!(env.count("SELECT count(*) FROM reorg").await, w.stats.forks.reorgs as i64);
    env.assert_matches_reference().await;
    analytics::assert_analytics_match(&env).await;
    let mut dead = 0;
    for stream in 0..LOGICAL_STREAMS.len() {
        let letters = env.dead_letters(stream).await;
        assert!(letters.iter().all(|l| !l.1.contains("__rindexer_reorg")), "a notice was dead-lettered");
        dead += letters.len();
    }
    assert_eq!(dead, w.stats.malformed, "one dead letter per malformed message, nothing else");
    env.cleanup().await;
}

/// Reorgs within the window, read as a live engine reads them (a block's messages per read
/// and stream): every key a retraction touches has a base, so no search reads the log below
/// the window (`reorg.unbased_searches`), and every table still equals its reference view.
/// The same workload through `--backfill` (which keeps no bases) is retracted as exactly,
/// by searching further down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_within_the_window_are_retracted_through_bases() {
    let config = WorkloadConfig {
        events: 1_500,
        seed: 31,
        atoms: 60,
        triples: 80,
        accounts: 30,
        reorg_rate: 0.05,
        reorg_depth: 8,
        ..WorkloadConfig::default()
    };
    let w = generate(&config);
    assert!(w.stats.forks.reorgs >= 3, "{:?}", w.stats.forks);
    for backfill in [false, true] {
        let env = TestEnv::new("reorg_bases").await;
        feed_workload(&env, REDIS, &w).await;
        let mut engine = env.config();
        engine.batch_size = 1;
        engine.backfill = backfill;
        env.run(engine).await;
        env.assert_matches_reference().await;
        assert_eq!(env.count("SELECT count(*) FROM reorg").await, w.stats.forks.reorgs as i64);
        let unbased = env.count("SELECT sum(unbased_searches)::bigint FROM reorg").await;
        let bases = env.count("SELECT count(*) FROM reorg_base").await;
        if backfill {
            assert!(unbased > 0 && bases == 0, "--backfill keeps no bases: {unbased} unbased searches, {bases} bases");
        } else {
            assert_eq!(unbased, 0, "a key touched by a reorg within the window had no base");
        }
        env.cleanup().await;
    }
}
