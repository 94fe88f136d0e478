//! The domain: typed, validated Intuition events, and their input format. [`decode`] turns
//! rindexer's JSON into them, [`encode`] turns one back (for dead letters); [`numeric`] holds
//! uint256 amounts. Depends on nothing else in the crate.
//!
//! Every id, hash and address here is already canonical (lowercase `0x` hex of the right
//! length), every amount a uint256.

pub mod decode;
pub mod encode;
pub mod hex;
pub mod numeric;
pub mod reorg;

use std::sync::OnceLock;

use sha3::{Digest, Keccak256};

pub use hex::{Address, Bytes32};
pub use numeric::Numeric;

/// The `transaction_information` every rindexer event carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxInfo {
    pub transaction_hash: Bytes32,
    pub log_index: i64,
    pub block_number: i64,
    pub block_hash: Bytes32,
    pub address: Address,
    pub network: String,
    pub transaction_index: i64,
    /// Seconds since the Unix epoch; rindexer sends null when it does not know.
    pub block_timestamp: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtomCreated {
    pub creator: Address,
    pub term_id: Bytes32,
    pub atom_wallet: Address,
    pub atom_data: Vec<u8>,
    /// `atom_data` as text when it is valid UTF-8 without NUL bytes.
    pub atom_data_text: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TripleCreated {
    pub creator: Address,
    pub term_id: Bytes32,
    pub subject_id: Bytes32,
    pub predicate_id: Bytes32,
    pub object_id: Bytes32,
    pub counter_term_id: Bytes32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deposited {
    pub sender: Address,
    pub receiver: Address,
    pub term_id: Bytes32,
    pub curve_id: Numeric,
    pub assets: Numeric,
    pub assets_after_fees: Numeric,
    pub shares: Numeric,
    pub total_shares: Numeric,
    pub vault_type: i16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redeemed {
    pub sender: Address,
    pub receiver: Address,
    pub term_id: Bytes32,
    pub curve_id: Numeric,
    pub shares: Numeric,
    pub total_shares: Numeric,
    pub assets: Numeric,
    pub fees: Numeric,
    pub vault_type: i16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharePriceChanged {
    pub term_id: Bytes32,
    pub curve_id: Numeric,
    pub share_price: Numeric,
    pub total_assets: Numeric,
    pub total_shares: Numeric,
    pub vault_type: i16,
}

/// An event whose name the engine does not model; kept whole in `generic_events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generic {
    pub event_name: String,
    /// The event object as JSON text.
    pub event_data: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    AtomCreated(AtomCreated),
    TripleCreated(TripleCreated),
    Deposited(Deposited),
    Redeemed(Redeemed),
    SharePriceChanged(SharePriceChanged),
    Generic(Generic),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub tx: TxInfo,
    pub kind: EventKind,
    /// Where the event was read: logged with it, so that a reorg retracts exactly the
    /// events that precede their own stream's copy of its notice (`None` outside a stream).
    pub origin: Option<Position>,
}

/// A stream entry, as the event log keeps it: the stream's key and the entry id packed in
/// one integer that orders like the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub stream_key: i32,
    pub entry: i64,
}

impl Position {
    /// Bits of the packed entry that hold the id's sequence number; `reorg.sql` packs the
    /// same way (`entry_ms << 22`).
    pub const SEQ_BITS: u32 = 22;

    /// The stream's key (see [`stream_key`]) and the entry `(ms, seq)` packed as
    /// `ms << 22 | seq` (a sequence past 2^22 - 1 within one millisecond is clamped: only
    /// order within that millisecond could be lost).
    pub fn new(stream_key: i32, (ms, seq): (i64, i64)) -> Position {
        Position { stream_key, entry: (ms << Self::SEQ_BITS) | seq.clamp(0, (1 << Self::SEQ_BITS) - 1) }
    }
}

/// A stream's 32-bit key in the event log (see [`Position`]).
pub fn stream_key(stream: &str) -> i32 {
    let digest = Keccak256::digest(stream.as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

impl Event {
    /// Chain order, and the event's identity: the event tables' key. On chain a log is
    /// `(block_hash, log_index)`; the block number leads so that chain order is key order.
    /// Two deliveries of one event have the same key; events of two forks of a block differ
    /// by their block hash.
    pub fn order_key(&self) -> (i64, i64, &str) {
        (self.tx.block_number, self.tx.log_index, self.tx.block_hash.as_str())
    }

    /// Term ids whose level 1-2 rows this event can change (a triple also changes its
    /// counter term).
    pub fn term_ids(&self) -> impl Iterator<Item = &str> {
        let (a, b): (Option<&str>, Option<&str>) = match &self.kind {
            EventKind::AtomCreated(e) => (Some(e.term_id.as_str()), None),
            EventKind::TripleCreated(e) => (Some(e.term_id.as_str()), Some(e.counter_term_id.as_str())),
            EventKind::Deposited(e) => (Some(e.term_id.as_str()), None),
            EventKind::Redeemed(e) => (Some(e.term_id.as_str()), None),
            EventKind::SharePriceChanged(e) => (Some(e.term_id.as_str()), None),
            EventKind::Generic(_) => (None, None),
        };
        a.into_iter().chain(b)
    }
}

/// Atom data as text, or `None` when it is not valid UTF-8 or holds a NUL byte
/// (PostgreSQL `TEXT` cannot store NUL); the bytes are then kept in `raw_data`.
pub fn utf8_text(bytes: &[u8]) -> Option<String> {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains('\0') => Some(s.to_owned()),
        _ => None,
    }
}

/// `keccak256(keccak256("COUNTER_SALT") || term_id)`, as lowercase `0x` hex.
/// `term_id` must be canonical (`0x` + 64 hex digits).
pub fn counter_term_id(term_id: &str) -> Bytes32 {
    static SALT: OnceLock<[u8; 32]> = OnceLock::new();
    let salt = SALT.get_or_init(|| Keccak256::digest(b"COUNTER_SALT").into());
    let mut id = [0u8; 32];
    ::hex::decode_to_slice(term_id.strip_prefix("0x").unwrap_or(term_id), &mut id).expect("canonical term id");
    let mut h = Keccak256::new();
    h.update(salt);
    h.update(id);
    Bytes32::from_bytes(&h.finalize()).expect("a keccak256 digest is 32 bytes")
}
