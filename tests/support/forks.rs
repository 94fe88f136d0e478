//! Workloads with chain reorganizations, published the way rindexer publishes them: one
//! stream per event, one message per (event, block); on a fork, every stream gets its
//! old-chain events, then copies of the reorg notice, then the new chain's events (new block
//! hashes) from the fork on. The streams' publications are interleaved at random (and so
//! are read at different speeds), and some messages are published twice. The generator
//! knows the canonical chain: the tables must equal the reference views over exactly its
//! events.

use std::collections::BTreeSet;

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::env::LOGICAL_STREAMS;
use crate::workload::{hex32, tx_info, World};

/// rindexer's notice (as captured from v0.41): the load generator's.
pub use loadgen::workload::notice;

pub const NETWORK: &str = "intuition";
/// Milliseconds between blocks (Ethereum's 12 s: rindexer's notices of two reorgs are then
/// further apart than the copy spread, see README → Chain reorganizations).
const BLOCK_MS: u64 = 12_000;

#[derive(Clone, Debug)]
pub struct ForkParams {
    pub seed: u64,
    /// Blocks published in all, orphaned ones included.
    pub blocks: usize,
    /// Chance that a reorg happens before a block.
    pub fork_rate: f64,
    pub max_depth: usize,
    /// Copies of each notice per stream (rindexer: one per indexed event).
    pub copies: usize,
    /// Share of notices whose `fork_block` is one too high (the new chain then has events
    /// at the true fork height: every block has some).
    pub too_high_rate: f64,
    /// Share of messages published a second time, later in their stream.
    pub duplicate_rate: f64,
}

pub struct ForkWorkload {
    /// (stream index, entry id, payload) in publication order; the ids carry publication
    /// times a block time apart, as a live chain's would (XADD them as given).
    pub messages: Vec<(usize, String, String)>,
    /// The canonical events' keys: (block_number, log_index, block_hash).
    pub canonical: BTreeSet<(i64, i64, String)>,
    pub reorgs: usize,
}

struct Block {
    number: u64,
    hash: String,
    events: Vec<(&'static str, Value)>,
}

pub fn generate(p: &ForkParams) -> ForkWorkload {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let world = World::new(&mut rng, p.blocks * 40);
    let mut queues: Vec<Vec<(u64, String)>> = vec![Vec::new(); LOGICAL_STREAMS.len()];
    let mut chain: Vec<Block> = Vec::new();
    let mut reorgs = 0;
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
        - (p.blocks as u64 + 1) * BLOCK_MS;
    for step in 0..p.blocks {
        let now = start + step as u64 * BLOCK_MS;
        if !chain.is_empty() && rng.gen_bool(p.fork_rate) {
            let depth = rng.gen_range(1..=p.max_depth.min(chain.len()));
            let fork = chain[chain.len() - depth].number;
            chain.truncate(chain.len() - depth);
            let reported = (depth as i64 + rng.gen_range(-2..=3)).max(0);
            let notice = notice(fork + rng.gen_bool(p.too_high_rate) as u64, reported);
            for queue in queues.iter_mut() {
                queue.extend(std::iter::repeat_n((now, notice.clone()), p.copies));
            }
            reorgs += 1;
        }
        let number = chain.last().map_or(100, |b| b.number + 1);
        let events = (0..rng.gen_range(1..=4)).map(|_| world.event(&mut rng)).collect();
        let block = Block { number, hash: hex32(&mut rng), events };
        publish(&mut rng, &block, now + 1, &mut queues);
        chain.push(block);
    }
    for queue in queues.iter_mut() {
        duplicate(&mut rng, queue, p.duplicate_rate);
    }
    let canonical = chain
        .iter()
        .flat_map(|b| (0..b.events.len()).map(move |i| (b.number as i64, i as i64, b.hash.clone())))
        .collect();
    let queues = queues.into_iter().map(with_ids).collect();
    ForkWorkload { messages: interleave(&mut rng, queues), canonical, reorgs }
}

/// One message per event type of the block, to that event's stream (unknown events to a
/// random one); `log_index` numbers the block's events.
fn publish(rng: &mut ChaCha8Rng, block: &Block, at: u64, queues: &mut [Vec<(u64, String)>]) {
    let mut by_name: Vec<(&str, Vec<Value>)> = Vec::new();
    for (log, (name, body)) in block.events.iter().enumerate() {
        let mut body = body.clone();
        let mut tx = tx_info(rng, block.number, log as u64);
        tx["block_hash"] = Value::from(block.hash.clone());
        tx["network"] = Value::from(NETWORK);
        body["transaction_information"] = tx;
        match by_name.iter_mut().find(|(n, _)| n == name) {
            Some((_, bodies)) => bodies.push(body),
            None => by_name.push((name, vec![body])),
        }
    }
    for (name, bodies) in by_name {
        let stream = LOGICAL_STREAMS
            .iter()
            .position(|s| s.replace('_', "") == name.to_ascii_lowercase())
            .unwrap_or_else(|| rng.gen_range(0..LOGICAL_STREAMS.len()));
        let payload = json!({
            "event_name": name, "event_signature_hash": "0x00", "network": NETWORK,
            "block_number": block.number, "message_id": format!("rindexer_stream__{}", rng.gen::<u32>()),
            "event_data": bodies,
        });
        queues[stream].push((at, payload.to_string()));
    }
}

/// Publish some event messages again, later in the same stream (a notice published again
/// later would be another reorg).
fn duplicate(rng: &mut ChaCha8Rng, queue: &mut Vec<(u64, String)>, rate: f64) {
    for i in 0..queue.len() {
        if !queue[i].1.contains("__rindexer_reorg") && rng.gen_bool(rate) {
            let at = rng.gen_range(i + 1..=queue.len());
            // Published when the entry it lands after was.
            let copy = (queue[at - 1].0, queue[i].1.clone());
            queue.insert(at, copy);
        }
    }
}

/// Entry ids from publication times: `<ms>-<n>`, increasing along the stream.
fn with_ids(queue: Vec<(u64, String)>) -> Vec<(String, String)> {
    let mut last = (0, 0);
    queue
        .into_iter()
        .map(|(ms, payload)| {
            last = if ms > last.0 { (ms, 0) } else { (last.0, last.1 + 1) };
            (format!("{}-{}", last.0, last.1), payload)
        })
        .collect()
}

/// Merge the streams' publications in a random order that keeps each stream's own order;
/// each stream gets its own publishing speed.
fn interleave(rng: &mut ChaCha8Rng, queues: Vec<Vec<(String, String)>>) -> Vec<(usize, String, String)> {
    let weights: Vec<f64> = queues.iter().map(|_| rng.gen_range(0.1..1.0)).collect();
    let mut heads: Vec<std::vec::IntoIter<(String, String)>> = queues.into_iter().map(Vec::into_iter).collect();
    let mut left: Vec<usize> = heads.iter().map(|h| h.len()).collect();
    let mut out = Vec::new();
    while left.iter().any(|&n| n > 0) {
        let total: f64 = (0..heads.len()).filter(|&s| left[s] > 0).map(|s| weights[s]).sum();
        let mut roll = rng.gen_range(0.0..total);
        let stream = (0..heads.len())
            .filter(|&s| left[s] > 0)
            .find(|&s| {
                roll -= weights[s];
                roll < 0.0
            })
            .unwrap_or_else(|| (0..heads.len()).rfind(|&s| left[s] > 0).unwrap());
        let (id, payload) = heads[stream].next().unwrap();
        out.push((stream, id, payload));
        left[stream] -= 1;
    }
    out
}
