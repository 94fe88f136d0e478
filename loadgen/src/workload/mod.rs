//! Seeded, realistic Intuition workloads in rindexer's Redis message format.
//!
//! [`generate`] plays a chain forward: atoms are created first, then triples over them,
//! then deposits and redeems by Zipf-distributed accounts into Zipf-distributed vaults,
//! each followed by the vault's SharePriceChanged. A small vault simulation keeps every
//! amount consistent with the ones before it. The events are packed into messages per
//! event type, like rindexer does, and then delivery noise is applied: out-of-order
//! windows, re-sent messages and extra malformed messages.
//!
//! The good events depend only on the seed and the workload shape (events, atoms, triples,
//! accounts, events per message, chain shape); each kind of noise draws from its own
//! random stream. So a noisy workload carries exactly the events of the clean one with the
//! same seed, and both must leave the database in the same state.

mod atoms;
mod chain;
mod delivery;
mod encode;

pub use encode::Encoding;
pub use forks::{notice, ForkStats};
mod events;
mod forks;
mod generator;
mod malformed;
mod pack;
mod vaults;

use std::sync::OnceLock;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha3::{Digest, Keccak256};

/// What to generate. `Default` gives a mid-sized clean workload.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadConfig {
    /// Good (distinct, valid) events to generate, exactly.
    pub events: usize,
    pub seed: u64,
    /// Atoms to create; capped at a quarter of `events` (at least one atom is created
    /// whenever `events > 0`, and one more may be added to make the total come out exact).
    pub atoms: usize,
    /// Triples to create; capped at a quarter of `events` and by the distinct
    /// (subject, predicate, object) combinations the atoms allow.
    pub triples: usize,
    /// Distinct accounts acting (at least one).
    pub accounts: usize,
    /// Most events of one type in one message (with rindexer's encoding a message also
    /// holds one block only, and at most about 75 KB of events).
    pub events_per_message: usize,
    /// How values are spelled and messages cut: rindexer's exact format, or mixed.
    pub encoding: Encoding,
    /// Messages are delivered out of order within sliding windows of this many messages
    /// (0 or 1: in order).
    pub shuffle_window: usize,
    /// Fraction of messages sent a second time, later, with the same payload.
    pub duplicate_rate: f64,
    /// Extra malformed messages, as a fraction of the good messages.
    pub malformed_rate: f64,
    /// Share of vault operations that are redeems (when some position has shares).
    pub redeem_ratio: f64,
    /// Zipf exponent of account and vault popularity.
    pub zipf_exponent: f64,
    /// Share of triples whose object or subject is one of the few shared atoms (the
    /// predicates): on Intuition a few (predicate, object) and (subject, predicate) pairs
    /// hold most triples, and across the slices of a large workload those pairs keep growing.
    pub hot_pair_rate: f64,
    pub start_block: u64,
    /// Unix time of `start_block`.
    pub start_timestamp: u64,
    pub block_time_secs: u64,
    /// Intuition transactions per block are drawn from `1..=max_txs_per_block`.
    pub max_txs_per_block: u32,
    /// Chance that the chain reorganizes after a block (see `forks`): the workload's events
    /// stay the canonical chain, orphaned versions of recent blocks and rindexer's notices
    /// are added. Needs rindexer's encoding (one block per message).
    pub reorg_rate: f64,
    /// Deepest reorg, in blocks with events (each is 1 to this many).
    pub reorg_depth: usize,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            events: 100_000,
            seed: 42,
            atoms: 2_000,
            triples: 5_000,
            accounts: 1_000,
            events_per_message: 50,
            encoding: Encoding::Rindexer,
            shuffle_window: 0,
            duplicate_rate: 0.0,
            malformed_rate: 0.0,
            redeem_ratio: 0.3,
            zipf_exponent: 1.1,
            hot_pair_rate: 0.2,
            start_block: 8_092_571,
            start_timestamp: 1_750_085_142,
            block_time_secs: 2,
            max_txs_per_block: 6,
            reorg_rate: 0.0,
            reorg_depth: 8,
        }
    }
}

/// The MultiVault events a workload contains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    AtomCreated,
    TripleCreated,
    Deposited,
    Redeemed,
    SharePriceChanged,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::AtomCreated,
        EventType::TripleCreated,
        EventType::Deposited,
        EventType::Redeemed,
        EventType::SharePriceChanged,
    ];

    /// The `event_name` of the envelope.
    pub fn name(self) -> &'static str {
        match self {
            EventType::AtomCreated => "AtomCreated",
            EventType::TripleCreated => "TripleCreated",
            EventType::Deposited => "Deposited",
            EventType::Redeemed => "Redeemed",
            EventType::SharePriceChanged => "SharePriceChanged",
        }
    }

    /// The logical stream: `atom_created`, `triple_created`, `deposited`, `redeemed`,
    /// `share_price_changed`.
    pub fn stream(self) -> &'static str {
        match self {
            EventType::AtomCreated => "atom_created",
            EventType::TripleCreated => "triple_created",
            EventType::Deposited => "deposited",
            EventType::Redeemed => "redeemed",
            EventType::SharePriceChanged => "share_price_changed",
        }
    }

    /// The canonical Solidity signature (MultiVault v2; enums are `uint8` in the ABI).
    pub fn signature(self) -> &'static str {
        match self {
            EventType::AtomCreated => "AtomCreated(address,bytes32,bytes,address)",
            EventType::TripleCreated => "TripleCreated(address,bytes32,bytes32,bytes32,bytes32)",
            EventType::Deposited => "Deposited(address,address,bytes32,uint256,uint256,uint256,uint256,uint256,uint8)",
            EventType::Redeemed => "Redeemed(address,address,bytes32,uint256,uint256,uint256,uint256,uint256,uint8)",
            EventType::SharePriceChanged => "SharePriceChanged(bytes32,uint256,uint256,uint256,uint256,uint8)",
        }
    }

    /// `event_signature_hash`: the log's topic 0, keccak256 of [`signature`](Self::signature).
    pub fn signature_hash(self) -> &'static str {
        static HASHES: OnceLock<[String; 5]> = OnceLock::new();
        let hashes = HASHES.get_or_init(|| {
            EventType::ALL.map(|t| format!("0x{}", hex::encode(Keccak256::digest(t.signature().as_bytes()))))
        });
        &hashes[self as usize]
    }
}

/// Why a message is in the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// First delivery of good events.
    Original,
    /// A later copy of an `Original`, byte for byte.
    Duplicate,
    /// Extra bad input; holds no good event.
    Malformed,
    /// Events of an orphaned block, published before the reorg notice; none is canonical.
    Orphaned,
    /// A copy of rindexer's reorg notice; holds no event.
    Reorg,
}

/// One message as rindexer would XADD it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMessage {
    /// Logical stream (`atom_created`, …); the Redis stream is `<prefix>intuition_<stream>`.
    pub stream: String,
    /// The JSON text of the `payload` field (not necessarily valid JSON when malformed).
    pub payload: String,
    pub kind: MessageKind,
    /// Event objects in the payload (for pacing by events per second).
    pub events: usize,
    /// The entry id to XADD it under, `<ms>-<seq>` (its publication time); `None` lets
    /// Redis choose. Set in workloads with reorgs, where the time between two notices matters.
    pub entry_id: Option<String>,
}

/// What a workload holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadStats {
    /// Good distinct events: the sum of the five counts below.
    pub events: usize,
    pub atoms: usize,
    pub triples: usize,
    pub deposits: usize,
    pub redeems: usize,
    pub share_price_changes: usize,
    /// All messages: originals + duplicates + malformed + orphaned + notices.
    pub messages: usize,
    pub original_messages: usize,
    pub duplicates: usize,
    pub malformed: usize,
    /// Block range of the good events (0 when there are none).
    pub first_block: u64,
    pub last_block: u64,
    /// Reorganizations: notices, orphaned blocks and their events (not in `events`).
    pub forks: ForkStats,
}

#[derive(Clone, Debug)]
pub struct Workload {
    /// In delivery order.
    pub messages: Vec<StreamMessage>,
    pub stats: WorkloadStats,
}

/// Random streams of one seed; each concern draws from its own so that changing one knob
/// does not reshuffle the rest.
#[derive(Clone, Copy)]
enum RngStream {
    Content = 0,
    Shuffle = 1,
    Duplicates = 2,
    Malformed = 3,
    Packing = 4,
    Forks = 5,
}

fn rng_for(seed: u64, stream: RngStream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

/// Generate the workload `config` describes. Deterministic: the same config gives the same
/// messages, byte for byte.
pub fn generate(config: &WorkloadConfig) -> Workload {
    generate_slice(config, 0)
}

/// [`generate`] for one slice of a workload made in slices (the bench's preload of millions
/// of events, which would not fit in memory at once). Atom data is numbered from
/// `first_atom`: give each slice the count of atoms the slices before it created
/// (`stats.atoms`), and its atoms, hence its triples and vaults, are new terms, distinct from
/// every earlier slice's (otherwise fixed data such as the predicates would be created again,
/// which a chain never does). With `first_atom` 0 this is exactly [`generate`]; above 0 the
/// slice's triples use the first slice's predicates (and, at `hot_pair_rate`, its shared
/// atoms as subjects or objects), which it does not create: generate the first slice first.
/// Otherwise each slice is a universe of its own: its vault activity references its own terms only.
pub fn generate_slice(config: &WorkloadConfig, first_atom: usize) -> Workload {
    let rng = rng_for(config.seed, RngStream::Content);
    let packing = rng_for(config.seed, RngStream::Packing);
    let (originals, mut stats) = generator::good_messages_from(config, rng, packing, first_atom);
    stats.original_messages = originals.len();
    let mut messages = originals;
    if config.reorg_rate > 0.0 && config.encoding == Encoding::Rindexer {
        let mut rng = rng_for(config.seed, RngStream::Forks);
        let (forked, forks) = forks::add_forks(messages, config.reorg_rate, config.reorg_depth, &mut rng);
        messages = forked;
        stats.forks = forks;
    }
    delivery::shuffle_windows(&mut messages, config.shuffle_window, &mut rng_for(config.seed, RngStream::Shuffle));
    let max_delay = 64 + 2 * config.shuffle_window;
    let mut rng = rng_for(config.seed, RngStream::Duplicates);
    let (mut messages, duplicates) = delivery::add_duplicates(messages, config.duplicate_rate, max_delay, &mut rng);
    let mut rng = rng_for(config.seed, RngStream::Malformed);
    let count = malformed_count(config, stats.original_messages);
    let bad = malformed::messages(&mut rng, config.encoding, count, stats.original_messages);
    stats.malformed = bad.len();
    messages = delivery::scatter(messages, bad, &mut rng);
    if stats.forks.reorgs > 0 {
        forks::publication_times(&mut messages, config);
    }
    stats.duplicates = duplicates;
    stats.messages = messages.len();
    Workload { messages, stats }
}

fn malformed_count(config: &WorkloadConfig, good_messages: usize) -> usize {
    let rate = if config.malformed_rate.is_finite() { config.malformed_rate.max(0.0) } else { 0.0 };
    (rate * good_messages as f64).round() as usize
}

/// A probability from a user-supplied rate: NaN would make `gen_bool` panic.
pub(crate) fn probability(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests;
