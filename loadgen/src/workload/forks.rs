//! Chain reorganizations, published the way rindexer publishes them (README → Chain
//! reorganizations; DESIGN.md §2): when the chain forks at block F, every stream has already
//! received the old chain's events from F on; then rindexer XADDs its reorg notice to every
//! stream (one copy per indexed event), then the new chain's events from F on, with new block
//! hashes.
//!
//! The workload's own events are the canonical chain. A fork takes the last few blocks
//! published so far and publishes an *orphaned* version of each first: the same messages with
//! a new block hash and new transaction hashes, amounts changed, some events missing and some
//! atoms that the canonical chain never creates. So after the engine has read everything, the
//! log must hold exactly the canonical events and every table must be what they imply.
//!
//! Works on messages in rindexer's encoding (one block per message): the orphaned copies
//! are the canonical messages edited as JSON.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::Rng;
use ruint::aliases::U256;
use serde_json::{json, Value};

use super::chain::NETWORK;
use super::{EventType, MessageKind, StreamMessage};

/// Copies of a notice per stream: rindexer sends one per indexed event (five here).
const COPIES: usize = 5;
/// Share of notices whose `fork_block` is one too high, as rindexer reports when it had not
/// tracked the first orphaned block.
const TOO_HIGH_RATE: f64 = 0.25;
/// Share of an orphaned block's events that the old chain had.
const KEPT_RATE: f64 = 0.8;
/// Share of an orphaned block's atoms that are not the canonical chain's.
const FOREIGN_ATOM_RATE: f64 = 0.3;
/// The numbers an orphaned event changes.
const AMOUNTS: [&str; 7] = ["assets", "assetsAfterFees", "shares", "totalShares", "fees", "sharePrice", "totalAssets"];

/// What the forks added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForkStats {
    pub reorgs: usize,
    /// Events of orphaned blocks (published, then retracted by the notice or by a proof).
    pub orphaned_events: usize,
    /// Notice messages: copies × streams × reorgs.
    pub notices: usize,
    /// Every orphaned block, (number, hash): none of their events may stay in the log.
    pub orphaned_blocks: Vec<(u64, String)>,
}

/// One fork: the blocks `blocks[first..end]` (indexes into the workload's distinct
/// blocks) were first published in an orphaned version.
struct Fork {
    first: usize,
    end: usize,
}

/// Insert forks into `messages` (canonical, in rindexer's encoding, in publication order):
/// after each block, with chance `rate`, a fork of 1 to `max_depth` blocks (the fork block
/// past the previous fork's, so that each notice is told apart by its `fork_block`).
pub(crate) fn add_forks(
    messages: Vec<StreamMessage>,
    rate: f64,
    max_depth: usize,
    rng: &mut impl Rng,
) -> (Vec<StreamMessage>, ForkStats) {
    let rate = super::probability(rate);
    let blocks_of: Vec<u64> = messages.iter().map(|m| envelope_block(&m.payload)).collect();
    let mut blocks = blocks_of.clone();
    blocks.sort_unstable();
    blocks.dedup();
    let forks = plan(&blocks, rate, max_depth.max(1), rng);
    let mut stats = ForkStats::default();
    if forks.is_empty() {
        return (messages, stats);
    }
    let mut out = Vec::with_capacity(messages.len() * 11 / 10);
    let mut next = 0;
    for (i, message) in messages.iter().enumerate() {
        while next < forks.len() && blocks_of[i] >= blocks[forks[next].first] {
            let fork = &forks[next];
            out.extend(publish_fork(&messages, &blocks_of, &blocks[fork.first..fork.end], rng, &mut stats));
            next += 1;
        }
        out.push(message.clone());
    }
    (out, stats)
}

/// Where the forks go: each after block `end - 1`, covering `first..end`.
fn plan(blocks: &[u64], rate: f64, max_depth: usize, rng: &mut impl Rng) -> Vec<Fork> {
    let mut forks: Vec<Fork> = Vec::new();
    for end in 1..blocks.len() {
        if !rng.gen_bool(rate) {
            continue;
        }
        let depth = rng.gen_range(1..=max_depth);
        // Two blocks past the previous fork's first, so that no two notices report the same
        // fork_block (one may be one too high).
        let after_previous = forks.last().map_or(0, |f| f.first + 2);
        let first = end.saturating_sub(depth).max(after_previous);
        if first < end {
            forks.push(Fork { first, end });
        }
    }
    forks
}

/// The orphaned version of `orphaned` (block numbers) on every stream, then the notice:
/// streams in a random order, each stream's orphaned messages before its notice copies.
fn publish_fork(
    messages: &[StreamMessage],
    blocks_of: &[u64],
    orphaned: &[u64],
    rng: &mut impl Rng,
    stats: &mut ForkStats,
) -> Vec<StreamMessage> {
    let (low, high) = (orphaned[0], *orphaned.last().expect("a fork has a block"));
    let hashes: HashMap<u64, String> =
        orphaned.iter().map(|&b| (b, format!("0x{}", hex::encode(rng.gen::<[u8; 32]>())))).collect();
    stats.orphaned_blocks.extend(orphaned.iter().map(|b| (*b, hashes[b].clone())));
    let mut tx_hashes = HashMap::new();
    let mut streams: Vec<&str> = EventType::ALL.iter().map(|t| t.stream()).collect();
    streams.shuffle(rng);
    let true_depth = high - low + 1;
    let reported_fork = low + u64::from(rng.gen_bool(TOO_HIGH_RATE));
    let reported_depth = (true_depth as i64 + rng.gen_range(-2..=3)).max(0);
    let mut out = Vec::new();
    for stream in streams {
        for (m, _) in messages.iter().zip(blocks_of).filter(|(m, b)| m.stream == stream && (low..=high).contains(*b)) {
            if let Some(orphan) = orphan_message(m, &hashes, &mut tx_hashes, rng) {
                stats.orphaned_events += orphan.events;
                out.push(orphan);
            }
        }
        for _ in 0..COPIES {
            out.push(StreamMessage {
                stream: stream.to_owned(),
                payload: notice(reported_fork, reported_depth),
                kind: MessageKind::Reorg,
                events: 0,
                entry_id: None,
            });
            stats.notices += 1;
        }
    }
    stats.reorgs += 1;
    out
}

/// rindexer v0.41's notice (as captured) for a fork reported at `fork_block`.
pub fn notice(fork_block: u64, depth: i64) -> String {
    json!({
        "block_number": 0,
        "event_data": [{ "affected_events": [], "affected_tx_hashes": [], "depth": depth, "events_deleted": 0,
                         "fork_block": fork_block, "network": NETWORK, "type": "reorg" }],
        "event_name": "__rindexer_reorg",
        "event_signature_hash": format!("0x{}", "0".repeat(64)),
        "message_id": format!("rindexer_stream__-reorg_{NETWORK}_{fork_block}-chunk-0"),
        "network": NETWORK,
    })
    .to_string()
}

/// The old chain's version of a canonical message, or `None` if it had none of its events.
fn orphan_message(
    m: &StreamMessage,
    hashes: &HashMap<u64, String>,
    tx_hashes: &mut HashMap<String, String>,
    rng: &mut impl Rng,
) -> Option<StreamMessage> {
    let mut payload: Value = serde_json::from_str(&m.payload).expect("the generator's messages are JSON");
    let events = payload["event_data"].as_array_mut().expect("rindexer's event_data is an array");
    events.retain(|_| rng.gen_bool(KEPT_RATE));
    for event in events.iter_mut() {
        orphan_event(event, hashes, tx_hashes, rng);
    }
    let count = events.len();
    (count > 0).then(|| StreamMessage {
        stream: m.stream.clone(),
        payload: payload.to_string(),
        kind: MessageKind::Orphaned,
        events: count,
        entry_id: None,
    })
}

fn orphan_event(
    event: &mut Value,
    hashes: &HashMap<u64, String>,
    tx_hashes: &mut HashMap<String, String>,
    rng: &mut impl Rng,
) {
    let tx = &mut event["transaction_information"];
    let block = tx["block_number"].as_u64().expect("rindexer's block_number is a number");
    tx["block_hash"] = Value::from(hashes[&block].clone());
    let old_tx = tx["transaction_hash"].as_str().unwrap_or_default().to_owned();
    let new_tx = tx_hashes.entry(old_tx).or_insert_with(|| format!("0x{}", hex::encode(rng.gen::<[u8; 32]>())));
    tx["transaction_hash"] = Value::from(new_tx.clone());
    for key in AMOUNTS {
        if let Some(v) = event.get(key).and_then(Value::as_str).and_then(|s| U256::from_str_radix(s, 10).ok()) {
            let scaled = v * U256::from(rng.gen_range(50u64..=150)) / U256::from(100u64);
            event[key] = Value::from(scaled.to_string());
        }
    }
    if event.get("atomData").is_some() && rng.gen_bool(FOREIGN_ATOM_RATE) {
        event["termId"] = Value::from(hex::encode(rng.gen::<[u8; 32]>()));
        event["atomData"] = Value::from(hex::encode(format!("orphaned atom {}", rng.gen::<u32>())));
    }
}

/// The `fork_block` a notice reports.
fn notice_fork(payload: &str) -> Option<u64> {
    let notice: Value = serde_json::from_str(payload).ok()?;
    notice["event_data"][0]["fork_block"].as_u64()
}

/// The block a message in rindexer's encoding is about (its envelope says so).
fn envelope_block(payload: &str) -> u64 {
    #[derive(serde::Deserialize)]
    struct Envelope {
        block_number: u64,
    }
    serde_json::from_str::<Envelope>(payload).map(|e| e.block_number).unwrap_or(0)
}

/// Give every message its publication time as its entry id, as a live chain would: a
/// canonical block's messages when the block is mined (`block_time_secs` apart), never
/// earlier than the message before them; each reorg one block time after what precedes it,
/// all its copies at the same millisecond on every stream (rindexer writes them together). So two reorgs
/// are never published within the same moment, and a reorg's copies are never far apart,
/// which is what the engine reads from the entry ids (README → Chain reorganizations).
/// The times end now, so the ids come after those of any stream written before.
pub(crate) fn publication_times(messages: &mut [StreamMessage], config: &super::WorkloadConfig) {
    let block_ms = config.block_time_secs.max(1) * 1_000;
    let mut times = Vec::with_capacity(messages.len());
    let mut notices: HashMap<u64, u64> = HashMap::new();
    let mut clock = 0u64;
    for m in messages.iter() {
        match m.kind {
            MessageKind::Reorg => {
                let fork = notice_fork(&m.payload).expect("the generator's notices name their fork");
                clock = clock.max(*notices.entry(fork).or_insert(clock + block_ms));
            }
            MessageKind::Original => {
                let mined = envelope_block(&m.payload).saturating_sub(config.start_block) * block_ms;
                clock = clock.max(mined);
            }
            // An orphaned block's messages go out just before its notice, a re-sent or bad
            // message whenever it comes: none moves the clock, so that all copies of a
            // notice keep one time.
            _ => {}
        }
        times.push(clock);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let base = now.saturating_sub(clock + 1);
    let mut last: HashMap<String, (u64, u64)> = HashMap::new();
    for (m, t) in messages.iter_mut().zip(times) {
        let ms = base + t;
        let id = match last.get(&m.stream) {
            Some(&(prev, seq)) if prev >= ms => (prev, seq + 1),
            _ => (ms, 0),
        };
        last.insert(m.stream.clone(), id);
        m.entry_id = Some(format!("{}-{}", id.0, id.1));
    }
}
