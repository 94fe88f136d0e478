//! Decode: rindexer stream payloads (JSON) into typed, validated events.
//!
//! Producers disagree on encodings, so every integer accepts a JSON number, a decimal
//! string or a `0x` hex string; ids and addresses are lowercased; `event_data` may be an
//! array or a single object. A payload that cannot be read at all fails as a whole; inside
//! a readable payload each event stands or falls on its own, so one bad event never drops
//! its good neighbours.

pub mod alias;
mod fields;
mod notice;
mod prescan;

use simd_json::prelude::*;
use simd_json::value::tape::Value;
use simd_json::{BorrowedValue, ValueType};

use super::reorg::{ReorgNotice, REORG_EVENT};
use super::*;
use alias::Aliases;
use fields::Fields;
use prescan::{check_tape, needs_prescan, prescan, too_deep, TapeCheck};

/// Why an input was rejected; the text goes to the dead-letter entry as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(msg.into()))
}

/// An event of a readable payload that failed validation, ready for the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFailure {
    /// A payload holding only the failed event, in the producer's format, so it can be
    /// replayed to its stream once fixed.
    pub payload: String,
    pub error: DecodeError,
}

/// What one payload decoded into.
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<Event>,
    pub failures: Vec<EventFailure>,
    /// Reorg notices (rindexer sends one per message).
    pub notices: Vec<ReorgNotice>,
}

/// 10000-01-01T00:00:00Z: later block timestamps are not real and do not fit PostgreSQL's range comfortably.
const MAX_TIMESTAMP: i64 = 253_402_300_800;
/// Deepest JSON nesting accepted before parsing (hostile input guard).
const MAX_DEPTH: usize = 64;

/// Decode one message payload. `Err` means nothing in it could be read.
pub fn decode_payload(raw: &[u8]) -> Result<Decoded, DecodeError> {
    decode_payload_with(raw, &Aliases::default())
}

/// [`decode_payload`], reading event names through `aliases`.
pub fn decode_payload_with(raw: &[u8], aliases: &Aliases) -> Result<Decoded, DecodeError> {
    Decoder::new(aliases).decode(raw)
}

/// Decodes payloads one after another, reusing simd-json's working buffers and the copy of
/// the payload that it parses in place: with rindexer's one message per (event, block),
/// allocating them afresh was several allocations per event.
pub struct Decoder<'a> {
    aliases: &'a Aliases,
    buffers: simd_json::Buffers,
    scratch: Vec<u8>,
}

impl<'a> Decoder<'a> {
    /// A decoder reading event names through `aliases`.
    pub fn new(aliases: &'a Aliases) -> Decoder<'a> {
        Decoder { aliases, buffers: simd_json::Buffers::default(), scratch: Vec::new() }
    }

    /// Decode one message payload. `Err` means nothing in it could be read.
    pub fn decode(&mut self, raw: &[u8]) -> Result<Decoded, DecodeError> {
        if raw.starts_with(&[0xEF, 0xBB, 0xBF]) {
            return err("payload starts with a UTF-8 byte order mark (EF BB BF), which JSON does not allow");
        }
        // simd-json parses in place; the caller keeps `raw` for the dead-letter entry.
        let rewritten = if needs_prescan(raw) {
            prescan(raw)?
        } else {
            self.load(raw);
            match simd_json::to_tape_with_buffers(&mut self.scratch, &mut self.buffers) {
                Ok(tape) => match check_tape(&tape.0) {
                    TapeCheck::Plain => return decode_root(tape.as_value(), self.aliases),
                    TapeCheck::TooDeep => return too_deep(),
                    // Only the prescan tells a long integer from a float (and checks the
                    // depth the tape check stopped at); with nothing to rewrite, this tape
                    // is the payload's.
                    TapeCheck::Float => match prescan(raw)? {
                        None => return decode_root(tape.as_value(), self.aliases),
                        some => some,
                    },
                },
                Err(e) if matches!(e.error(), simd_json::ErrorType::InvalidNumber) => prescan(raw)?,
                Err(e) => return Err(json_error(e)),
            }
        };
        match rewritten {
            Some(rewritten) => self.scratch = rewritten,
            None => self.load(raw),
        }
        // A tape (one flat vector of nodes) rather than a tree of maps and vectors: building
        // and dropping the tree was a fifth of the engine's CPU (a profile of stop 16).
        let tape = simd_json::to_tape_with_buffers(&mut self.scratch, &mut self.buffers).map_err(json_error)?;
        decode_root(tape.as_value(), self.aliases)
    }

    /// `raw` into the reused buffer simd-json parses in place.
    fn load(&mut self, raw: &[u8]) {
        self.scratch.clear();
        self.scratch.extend_from_slice(raw);
    }
}

/// The events and notices of a parsed payload.
fn decode_root(root: Value, aliases: &Aliases) -> Result<Decoded, DecodeError> {
    if root.as_object().is_none() {
        return err("payload is not a JSON object");
    }
    // JSON parsers disagree on which of two equal keys wins: refuse, rather than pick one.
    let root = Fields::of(root);
    if let Some(key) = root.duplicate_key_here() {
        return err(format!("duplicate key `{key}` in the message"));
    }
    let name = match root.find("event_name").map(|v| v.into_string()) {
        Some(Some("")) => return err("`event_name` is empty"),
        Some(Some(s)) => aliases.resolve(s),
        Some(None) => return err("`event_name` is not a string"),
        None => return err("missing field `event_name`"),
    };
    let network = root.find("network").and_then(|v| v.into_string());
    let items: Vec<Value> = match root.find("event_data") {
        Some(v) => match (v.as_array(), v.value_type()) {
            (Some(a), _) if a.is_empty() => return err("`event_data` is an empty array"),
            (Some(a), _) => a.iter().collect(),
            (None, ValueType::Object) => vec![v],
            (None, ValueType::Null) => return err("`event_data` is null"),
            (None, _) => return err("`event_data` is neither an array nor an object"),
        },
        None => return err("missing field `event_data`"),
    };
    // Sized once: growing it by pushes reallocated a message's events two or three times.
    let capacity = if name == REORG_EVENT { 0 } else { items.len() };
    let mut out = Decoded { events: Vec::with_capacity(capacity), ..Decoded::default() };
    for item in items {
        if name == REORG_EVENT {
            match notice::reorg_notice(item, network) {
                Ok(n) => out.notices.push(n),
                Err(error) => {
                    out.failures.push(EventFailure { payload: single_event_payload(name, network, item), error })
                }
            }
            continue;
        }
        match decode_event(name, network, item) {
            Ok(event) => out.events.push(event),
            Err(error) => out.failures.push(EventFailure { payload: single_event_payload(name, network, item), error }),
        }
    }
    Ok(out)
}

/// A key that appears twice in one object anywhere inside `value`.
fn duplicate_key_within<'i>(value: Value<'_, 'i>) -> Option<&'i str> {
    // Most values are strings or numbers: one look at the type settles them.
    match value.value_type() {
        ValueType::Object => Fields::of(value).duplicate_key(None),
        ValueType::Array => value.as_array()?.iter().find_map(duplicate_key_within),
        _ => None,
    }
}

/// A `network` field: its string, or the envelope's when it is absent or null; `not_a_string`
/// is the error for any other value.
fn network_or_envelope(
    field: Option<Value>,
    envelope: Option<&str>,
    not_a_string: &str,
) -> Result<String, DecodeError> {
    match field.filter(|v| !is_null(v)) {
        Some(v) => v.into_string().map(str::to_owned).ok_or_else(|| DecodeError(not_a_string.into())),
        None => Ok(envelope.unwrap_or_default().to_owned()),
    }
}

/// Whether `value` is JSON `null`.
fn is_null(value: &Value) -> bool {
    value.value_type() == ValueType::Null
}

fn json_error(e: simd_json::Error) -> DecodeError {
    let hint = if matches!(e.error(), simd_json::ErrorType::InvalidNumber) {
        // Integer literals too long for 64 bits are quoted before parsing: what is left is a
        // float beyond the f64 range, or a malformed number.
        " (a number beyond the float range, or malformed)"
    } else {
        ""
    };
    DecodeError(format!("not valid JSON: {e}{hint}"))
}

fn single_event_payload(name: &str, network: Option<&str>, item: Value) -> String {
    let name = BorrowedValue::from(name).encode();
    let network = BorrowedValue::from(network.unwrap_or("")).encode();
    format!(r#"{{"event_name":{name},"network":{network},"event_data":[{}]}}"#, item.encode())
}

fn decode_event(name: &str, network: Option<&str>, item: Value) -> Result<Event, DecodeError> {
    if item.as_object().is_none() {
        return err("event is not a JSON object");
    }
    // The event's fields are listed once, for the duplicate-key check and for reading them;
    // transaction_information checks its own keys as it lists them (tx_info).
    let f = Fields::of(item);
    if let Some(key) = f.duplicate_key(Some(TX_INFO)) {
        return err(format!("duplicate key `{key}`"));
    }
    let tx = tx_info(f.find(TX_INFO), network)?;
    let kind = match name {
        "AtomCreated" => {
            let atom_data = f.bytes("atomData")?;
            let atom_data_text = utf8_text(&atom_data);
            EventKind::AtomCreated(AtomCreated {
                creator: f.address("creator")?,
                term_id: f.bytes32("termId")?,
                atom_wallet: f.address("atomWallet")?,
                atom_data,
                atom_data_text,
            })
        }
        "TripleCreated" => {
            let term_id = f.bytes32("termId")?;
            EventKind::TripleCreated(TripleCreated {
                creator: f.address("creator")?,
                counter_term_id: counter_term_id(&term_id),
                term_id,
                subject_id: f.bytes32("subjectId")?,
                predicate_id: f.bytes32("predicateId")?,
                object_id: f.bytes32("objectId")?,
            })
        }
        "Deposited" => EventKind::Deposited(Deposited {
            sender: f.address("sender")?,
            receiver: f.address("receiver")?,
            term_id: f.bytes32("termId")?,
            curve_id: f.uint("curveId")?,
            assets: f.uint("assets")?,
            assets_after_fees: f.uint("assetsAfterFees")?,
            shares: f.uint("shares")?,
            total_shares: f.uint("totalShares")?,
            vault_type: f.vault_type()?,
        }),
        "Redeemed" => EventKind::Redeemed(Redeemed {
            sender: f.address("sender")?,
            receiver: f.address("receiver")?,
            term_id: f.bytes32("termId")?,
            curve_id: f.uint("curveId")?,
            shares: f.uint("shares")?,
            total_shares: f.uint("totalShares")?,
            assets: f.uint("assets")?,
            fees: f.uint("fees")?,
            vault_type: f.vault_type()?,
        }),
        "SharePriceChanged" => EventKind::SharePriceChanged(SharePriceChanged {
            term_id: f.bytes32("termId")?,
            curve_id: f.uint("curveId")?,
            share_price: f.uint("sharePrice")?,
            total_assets: f.uint("totalAssets")?,
            total_shares: f.uint("totalShares")?,
            vault_type: f.vault_type()?,
        }),
        other => EventKind::Generic(generic(other, item)?),
    };
    Ok(Event { tx, kind, origin: None })
}

/// PostgreSQL `TEXT` and `JSONB` cannot hold NUL characters; reject rather than fail the batch.
fn generic(name: &str, item: Value) -> Result<Generic, DecodeError> {
    let event_data = item.encode();
    if name.contains('\0') || event_data.contains("\\u0000") {
        return err("unknown event holds a NUL character, which PostgreSQL text cannot store");
    }
    Ok(Generic { event_name: name.to_owned(), event_data })
}

/// The event's `transaction_information` field.
const TX_INFO: &str = "transaction_information";

fn tx_info(info: Option<Value>, envelope_network: Option<&str>) -> Result<TxInfo, DecodeError> {
    let info = match info {
        Some(v) if v.as_object().is_some() => v,
        Some(_) => return err("`transaction_information` is not an object"),
        None => return err("missing field `transaction_information`"),
    };
    let f = Fields::of(info);
    if let Some(key) = f.duplicate_key(None) {
        return err(format!("duplicate key `{key}`"));
    }
    let network =
        network_or_envelope(f.find("network"), envelope_network, "`transaction_information.network` is not a string")?;
    if network.contains('\0') {
        return err("`network` holds a NUL character");
    }
    let block_timestamp = f.optional_int64("block_timestamp")?;
    if let Some(t) = block_timestamp.filter(|t| *t >= MAX_TIMESTAMP) {
        return err(format!("field `block_timestamp`: {t} is past the year 9999"));
    }
    Ok(TxInfo {
        transaction_hash: f.bytes32("transaction_hash")?,
        log_index: f.int64("log_index")?,
        block_number: f.int64("block_number")?,
        block_hash: f.bytes32("block_hash")?,
        address: f.address("address")?,
        network,
        transaction_index: f.int64("transaction_index")?,
        block_timestamp,
    })
}

#[cfg(test)]
mod tests;
