//! Decode: rindexer stream payloads (JSON) into typed, validated events.
//!
//! Producers disagree on encodings, so every integer accepts a JSON number, a decimal
//! string or a `0x` hex string; ids and addresses are lowercased; `event_data` may be an
//! array or a single object. A payload that cannot be read at all fails as a whole; inside
//! a readable payload each event stands or falls on its own, so one bad event never drops
//! its good neighbours.

use std::sync::OnceLock;

use ruint::aliases::U256;
use sha3::{Digest, Keccak256};
use simd_json::prelude::*;
use simd_json::{BorrowedValue as Value, StaticNode};

use crate::event::*;
use crate::numeric::{parse_u256, Numeric};

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
}

/// Largest payload accepted; rindexer chunks its messages at about 75 KB.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;
/// 10000-01-01T00:00:00Z: later block timestamps are not real and do not fit PostgreSQL's range comfortably.
const MAX_TIMESTAMP: i64 = 253_402_300_800;
/// Deepest JSON nesting accepted before parsing (hostile input guard).
const MAX_DEPTH: usize = 64;

/// Decode one message payload. `Err` means nothing in it could be read.
pub fn decode_payload(raw: &[u8]) -> Result<Decoded, DecodeError> {
    if raw.len() > MAX_PAYLOAD_BYTES {
        return err(format!("payload of {} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit", raw.len()));
    }
    prescan(raw)?;
    // simd-json parses in place; the caller keeps `raw` for the dead-letter entry.
    let mut buf = raw.to_vec();
    let root = simd_json::to_borrowed_value(&mut buf).map_err(json_error)?;
    let Value::Object(envelope) = &root else {
        return err("payload is not a JSON object");
    };
    let name = match envelope.get("event_name") {
        Some(Value::String(s)) if !s.is_empty() => s.as_ref(),
        Some(Value::String(_)) => return err("`event_name` is empty"),
        Some(_) => return err("`event_name` is not a string"),
        None => return err("missing field `event_name`"),
    };
    let network = match envelope.get("network") {
        Some(Value::String(s)) => Some(s.as_ref()),
        _ => None,
    };
    let items: Vec<&Value> = match envelope.get("event_data") {
        Some(Value::Array(a)) if a.is_empty() => return err("`event_data` is an empty array"),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        Some(Value::Static(StaticNode::Null)) => return err("`event_data` is null"),
        Some(_) => return err("`event_data` is neither an array nor an object"),
        None => return err("missing field `event_data`"),
    };
    let mut out = Decoded::default();
    for item in items {
        match decode_event(name, network, item) {
            Ok(event) => out.events.push(event),
            Err(error) => out.failures.push(EventFailure { payload: single_event_payload(name, network, item), error }),
        }
    }
    Ok(out)
}

fn json_error(e: simd_json::Error) -> DecodeError {
    let hint = if matches!(e.error(), simd_json::ErrorType::InvalidNumber) {
        // simd-json holds numbers in 64 bits: a larger integer literal fails the whole
        // payload. Producers send uint256 values as strings for that reason.
        " (a number beyond 64 bits or the float range; send big integers as decimal or 0x-hex strings)"
    } else {
        ""
    };
    DecodeError(format!("not valid JSON: {e}{hint}"))
}

/// Checks made on the raw bytes before parsing: nesting depth (a hostile input guard), and
/// `\u` escapes of lone UTF-16 surrogates, which simd-json would silently turn into a NUL
/// character instead of rejecting.
fn prescan(raw: &[u8]) -> Result<(), DecodeError> {
    let (mut depth, mut in_str, mut i) = (0usize, false, 0usize);
    while i < raw.len() {
        let b = raw[i];
        if in_str {
            // Skip to the string's next quote or backslash: ids and hashes are long runs
            // of plain characters.
            match memchr::memchr2(b'"', b'\\', &raw[i..]) {
                Some(skip) => i += skip,
                None => break,
            }
            match raw[i] {
                b'\\' if raw.get(i + 1) == Some(&b'u') => {
                    if let Some(unit) = utf16_escape(raw, i) {
                        if (0xDC00..0xE000).contains(&unit) {
                            return err(lone_surrogate(unit, i));
                        }
                        if (0xD800..0xDC00).contains(&unit) {
                            match utf16_escape(raw, i + 6) {
                                Some(low) if (0xDC00..0xE000).contains(&low) => i += 6,
                                _ => return err(lone_surrogate(unit, i)),
                            }
                        }
                    }
                    i += 6;
                    continue;
                }
                b'\\' => i += 1,
                b'"' => in_str = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return err(format!("JSON nested deeper than {MAX_DEPTH} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The code unit of a `\uXXXX` escape starting at `at`, if well formed.
fn utf16_escape(raw: &[u8], at: usize) -> Option<u32> {
    let esc = raw.get(at..at + 6)?;
    if &esc[..2] != b"\\u" {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(&esc[2..]).ok()?, 16).ok()
}

fn lone_surrogate(unit: u32, at: usize) -> String {
    format!("not valid JSON: \\u{unit:04x} at byte {at} is a lone UTF-16 surrogate (not a Unicode character)")
}

fn single_event_payload(name: &str, network: Option<&str>, item: &Value) -> String {
    let name = Value::from(name).encode();
    let network = Value::from(network.unwrap_or("")).encode();
    format!(r#"{{"event_name":{name},"network":{network},"event_data":[{}]}}"#, item.encode())
}

fn decode_event(name: &str, network: Option<&str>, item: &Value) -> Result<Event, DecodeError> {
    let Value::Object(_) = item else {
        return err("event is not a JSON object");
    };
    let tx = tx_info(item, network)?;
    let f = Fields(item);
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
    Ok(Event { tx, kind })
}

/// PostgreSQL `TEXT` and `JSONB` cannot hold NUL characters; reject rather than fail the batch.
fn generic(name: &str, item: &Value) -> Result<Generic, DecodeError> {
    let event_data = item.encode();
    if name.contains('\0') || event_data.contains("\\u0000") {
        return err("unknown event holds a NUL character, which PostgreSQL text cannot store");
    }
    Ok(Generic { event_name: name.to_owned(), event_data })
}

fn tx_info(item: &Value, envelope_network: Option<&str>) -> Result<TxInfo, DecodeError> {
    let info = match item.get("transaction_information") {
        Some(v @ Value::Object(_)) => v,
        Some(_) => return err("`transaction_information` is not an object"),
        None => return err("missing field `transaction_information`"),
    };
    let f = Fields(info);
    let network = match info.get("network") {
        Some(Value::String(s)) => s.to_string(),
        Some(Value::Static(StaticNode::Null)) | None => envelope_network.unwrap_or_default().to_owned(),
        Some(_) => return err("`transaction_information.network` is not a string"),
    };
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

/// Typed access to one JSON object's fields, with errors that name the field.
struct Fields<'a, 'v>(&'a Value<'v>);

impl<'a, 'v> Fields<'a, 'v> {
    fn get(&self, name: &str) -> Result<&'a Value<'v>, DecodeError> {
        match self.0.get(name) {
            Some(Value::Static(StaticNode::Null)) | None => err(format!("missing field `{name}`")),
            Some(v) => Ok(v),
        }
    }

    fn uint_value(&self, name: &str) -> Result<U256, DecodeError> {
        match self.get(name)? {
            Value::Static(StaticNode::U64(n)) => Ok(U256::from(*n)),
            Value::Static(StaticNode::I64(n)) if *n >= 0 => Ok(U256::from(*n as u64)),
            Value::Static(StaticNode::I64(n)) => err(format!("field `{name}`: negative number {n}")),
            Value::Static(StaticNode::F64(n)) => err(format!("field `{name}`: {n} is not an integer")),
            Value::String(s) => parse_u256(s).map_err(|e| DecodeError(format!("field `{name}`: {e}"))),
            _ => err(format!("field `{name}`: expected an integer (number, decimal or 0x-hex string)")),
        }
    }

    fn uint(&self, name: &str) -> Result<Numeric, DecodeError> {
        self.uint_value(name).map(Numeric)
    }

    fn int64(&self, name: &str) -> Result<i64, DecodeError> {
        let v = self.uint_value(name)?;
        i64::try_from(v)
            .map_err(|_| DecodeError(format!("field `{name}`: {v} does not fit in a signed 64-bit integer")))
    }

    fn optional_int64(&self, name: &str) -> Result<Option<i64>, DecodeError> {
        match self.0.get(name) {
            Some(Value::Static(StaticNode::Null)) | None => Ok(None),
            Some(_) => self.int64(name).map(Some),
        }
    }

    fn vault_type(&self) -> Result<i16, DecodeError> {
        match self.int64("vaultType")? {
            t @ 0..=2 => Ok(t as i16),
            t => err(format!("field `vaultType`: {t} is not 0 (atom), 1 (triple) or 2 (counter triple)")),
        }
    }

    fn str(&self, name: &str) -> Result<&'a str, DecodeError> {
        match self.get(name)? {
            Value::String(s) => Ok(s.as_ref()),
            _ => err(format!("field `{name}`: expected a string")),
        }
    }

    /// Hex of exactly `len` bytes, `0x` optional, returned as lowercase `0x` hex.
    fn fixed_hex(&self, name: &str, len: usize) -> Result<String, DecodeError> {
        let s = self.str(name)?;
        let digits = strip_0x(s).as_bytes();
        if digits.len() != len * 2 || !digits.iter().all(u8::is_ascii_hexdigit) {
            let shown: String = s.chars().take(80).collect();
            return err(format!("field `{name}`: expected {len} bytes of hex, got {shown:?}"));
        }
        // One allocation and a byte loop the compiler vectorizes: this runs for four or
        // five ids per event (pushing `char`s one by one cost a tenth of the engine's CPU).
        let mut out = Vec::with_capacity(2 + digits.len());
        out.extend_from_slice(b"0x");
        out.extend(digits.iter().map(u8::to_ascii_lowercase));
        let out = String::from_utf8(out).expect("ASCII hex digits are UTF-8");
        Ok(out)
    }

    fn bytes32(&self, name: &str) -> Result<String, DecodeError> {
        self.fixed_hex(name, 32)
    }

    fn address(&self, name: &str) -> Result<String, DecodeError> {
        self.fixed_hex(name, 20)
    }

    fn bytes(&self, name: &str) -> Result<Vec<u8>, DecodeError> {
        let s = self.str(name)?;
        hex::decode(strip_0x(s)).map_err(|e| DecodeError(format!("field `{name}`: not hex bytes ({e})")))
    }
}

fn strip_0x(s: &str) -> &str {
    s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s)
}

/// Atom data as text, or `None` when it is not valid UTF-8 or holds a NUL byte
/// (PostgreSQL `TEXT` cannot store NUL); the bytes are then kept in `raw_data`.
pub fn utf8_text(bytes: &[u8]) -> Option<String> {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains('\0') => Some(s.to_owned()),
        _ => None,
    }
}

/// One event back in the producer's format, alone in its message: what a dead letter
/// holds for an event refused after decoding, ready to be fixed and replayed.
pub fn encode_payload(event: &Event) -> String {
    use serde_json::{json, Value as J};
    let t = &event.tx;
    let tx = json!({
        "transaction_hash": t.transaction_hash, "log_index": t.log_index, "block_number": t.block_number,
        "block_hash": t.block_hash, "address": t.address, "network": t.network,
        "transaction_index": t.transaction_index, "block_timestamp": t.block_timestamp,
    });
    let n = |v: &Numeric| J::String(v.to_string());
    let (name, mut body): (&str, J) = match &event.kind {
        EventKind::AtomCreated(e) => (
            "AtomCreated",
            json!({
                "creator": e.creator, "termId": e.term_id, "atomWallet": e.atom_wallet,
                "atomData": format!("0x{}", hex::encode(&e.atom_data)),
            }),
        ),
        EventKind::TripleCreated(e) => (
            "TripleCreated",
            json!({
                "creator": e.creator, "termId": e.term_id, "subjectId": e.subject_id,
                "predicateId": e.predicate_id, "objectId": e.object_id,
            }),
        ),
        EventKind::Deposited(e) => (
            "Deposited",
            json!({
                "sender": e.sender, "receiver": e.receiver, "termId": e.term_id, "curveId": n(&e.curve_id),
                "assets": n(&e.assets), "assetsAfterFees": n(&e.assets_after_fees), "shares": n(&e.shares),
                "totalShares": n(&e.total_shares), "vaultType": e.vault_type,
            }),
        ),
        EventKind::Redeemed(e) => (
            "Redeemed",
            json!({
                "sender": e.sender, "receiver": e.receiver, "termId": e.term_id, "curveId": n(&e.curve_id),
                "shares": n(&e.shares), "totalShares": n(&e.total_shares), "assets": n(&e.assets),
                "fees": n(&e.fees), "vaultType": e.vault_type,
            }),
        ),
        EventKind::SharePriceChanged(e) => (
            "SharePriceChanged",
            json!({
                "termId": e.term_id, "curveId": n(&e.curve_id), "sharePrice": n(&e.share_price),
                "totalAssets": n(&e.total_assets), "totalShares": n(&e.total_shares), "vaultType": e.vault_type,
            }),
        ),
        EventKind::Generic(e) => {
            (e.event_name.as_str(), serde_json::from_str(&e.event_data).unwrap_or(J::String(e.event_data.clone())))
        }
    };
    // A generic event's JSON already holds its original transaction_information.
    if let J::Object(fields) = &mut body {
        fields.entry("transaction_information").or_insert(tx);
    }
    json!({ "event_name": name, "network": t.network, "block_number": t.block_number, "event_data": [body] })
        .to_string()
}

/// `keccak256(keccak256("COUNTER_SALT") || term_id)`, as lowercase `0x` hex.
/// `term_id` must be canonical (`0x` + 64 hex digits).
pub fn counter_term_id(term_id: &str) -> String {
    static SALT: OnceLock<[u8; 32]> = OnceLock::new();
    let salt = SALT.get_or_init(|| Keccak256::digest(b"COUNTER_SALT").into());
    let mut id = [0u8; 32];
    hex::decode_to_slice(strip_0x(term_id), &mut id).expect("canonical term id");
    let mut h = Keccak256::new();
    h.update(salt);
    h.update(id);
    format!("0x{}", hex::encode(h.finalize()))
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
