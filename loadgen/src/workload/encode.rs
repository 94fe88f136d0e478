//! JSON text for events: rindexer's exact encodings (the default), or the mixed encodings
//! of other producers and older rindexer versions, which the engine must take too.
//!
//! Every helper draws the same random numbers whichever the encoding, so a workload's
//! events do not depend on it: the same seed gives the same events in both.
//!
//! Events are kept as ordered `(key, raw JSON value)` lists rather than `serde_json`
//! values: the key order then matches rindexer's (ABI order), the malformed-message maker
//! can remove or replace a single field, and millions of events render without building
//! a DOM first.

use rand::Rng;
use ruint::aliases::U256;

use crate::eip55::checksum_address;

/// How values are spelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// As rindexer v0.41 writes them (from its source and a captured run): keys in
    /// alphabetical order; bytes32 and bytes as lowercase hex without `0x`; addresses
    /// lowercase with `0x`; uint256 as decimal strings; `vaultType` a number;
    /// `block_number`, `transaction_index`, `chain_id` numbers, `log_index` and
    /// `block_timestamp` hex strings; `event_data` always an array; one message per
    /// (event, block), chunked at about 75 KB.
    #[default]
    Rindexer,
    /// Several spellings of each value at random (numbers as JSON numbers, decimal or hex
    /// strings; ids with and without `0x`, some upper case; EIP-55 addresses), messages
    /// spanning blocks: what other producers send.
    Mixed,
}

impl Encoding {
    /// rindexer renders objects from a sorted map.
    pub(crate) fn order(self, fields: &mut Fields) {
        if self == Encoding::Rindexer {
            fields.sort_by_key(|(key, _)| *key);
        }
    }
}

/// An object's fields in output order: key and the value's JSON text.
pub(crate) type Fields = Vec<(&'static str, String)>;

pub(crate) fn object(fields: &[(&'static str, String)]) -> String {
    let len = fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>() + 2;
    let mut out = String::with_capacity(len);
    out.push('{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(key);
        out.push_str("\":");
        out.push_str(value);
    }
    out.push('}');
    out
}

/// A JSON string literal; escapes only matter for the malformed messages' free text.
pub(crate) fn string(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialize")
}

/// Replace a field's value in place, or append it if absent.
pub(crate) fn set(fields: &mut Fields, key: &'static str, value: String) {
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => fields.push((key, value)),
    }
}

pub(crate) fn remove(fields: &mut Fields, key: &str) {
    fields.retain(|(k, _)| *k != key);
}

/// An integer rindexer writes as a JSON number (`block_number`, `transaction_index`).
/// Mixed: a JSON number, a decimal string or a `0x` string, as producers disagree.
pub(crate) fn int(rng: &mut impl Rng, enc: Encoding, v: u64) -> String {
    match (enc, rng.gen_range(0..4)) {
        (Encoding::Rindexer, _) | (_, 0 | 1) => v.to_string(),
        (_, 2) => format!("\"{v}\""),
        _ => format!("\"{v:#x}\""),
    }
}

/// An integer rindexer writes as a `0x` string (`log_index`, `block_timestamp`).
pub(crate) fn hex_int(rng: &mut impl Rng, enc: Encoding, v: u64) -> String {
    match enc {
        Encoding::Rindexer => {
            rng.gen_range(0..4);
            format!("\"{v:#x}\"")
        }
        Encoding::Mixed => int(rng, enc, v),
    }
}

/// A uint8 enumeration (`vaultType`): rindexer writes a number; mixed mostly numbers or
/// decimal strings.
pub(crate) fn small(rng: &mut impl Rng, enc: Encoding, v: u64) -> String {
    match (enc, rng.gen_range(0..10)) {
        (Encoding::Rindexer, _) | (_, 0..=4) => v.to_string(),
        (_, 5..=8) => format!("\"{v}\""),
        _ => format!("\"{v:#x}\""),
    }
}

/// A small uint256 (`curveId`): rindexer writes every uint256 as a decimal string.
pub(crate) fn small_uint256(rng: &mut impl Rng, enc: Encoding, v: u64) -> String {
    match enc {
        Encoding::Rindexer => {
            rng.gen_range(0..10);
            format!("\"{v}\"")
        }
        Encoding::Mixed => small(rng, enc, v),
    }
}

/// A uint256 amount: rindexer's decimal string. Mixed: usually a decimal string, sometimes
/// hex, and a JSON number when it fits in 64 bits (as ethers-style producers emit small
/// values).
pub(crate) fn amount(rng: &mut impl Rng, enc: Encoding, v: U256) -> String {
    let roll = rng.gen_range(0..100);
    match (enc, u64::try_from(v)) {
        (Encoding::Rindexer, _) => format!("\"{v}\""),
        (_, Ok(small)) if roll < 15 => small.to_string(),
        _ if roll < 40 => format!("\"{v:#x}\""),
        _ => format!("\"{v}\""),
    }
}

/// A 32-byte id: rindexer's lowercase hex without `0x`. Mixed: `0x`-prefixed, a few in
/// upper case so id canonicalisation gets exercised.
pub(crate) fn bytes32(rng: &mut impl Rng, enc: Encoding, id: &[u8; 32]) -> String {
    let digits = hex::encode(id);
    match (enc, rng.gen_ratio(3, 100)) {
        (Encoding::Rindexer, _) => format!("\"{digits}\""),
        (_, true) => format!("\"0x{}\"", digits.to_ascii_uppercase()),
        (_, false) => format!("\"0x{digits}\""),
    }
}

/// Arbitrary bytes as hex: rindexer's without `0x`; mixed usually `0x`-prefixed.
pub(crate) fn bytes(rng: &mut impl Rng, enc: Encoding, data: &[u8]) -> String {
    let prefix = if rng.gen_ratio(9, 10) && enc == Encoding::Mixed { "0x" } else { "" };
    format!("\"{prefix}{}\"", hex::encode(data))
}

/// An account with both spellings precomputed: hashing for EIP-55 on every event would
/// dominate generation time.
#[derive(Clone, Debug)]
pub(crate) struct Address {
    lower: String,
    checksum: String,
}

impl Address {
    pub fn new(bytes: [u8; 20]) -> Self {
        Address {
            lower: format!("\"0x{}\"", hex::encode(bytes)),
            checksum: format!("\"{}\"", checksum_address(&bytes)),
        }
    }

    pub fn random(rng: &mut impl Rng) -> Self {
        Address::new(rng.gen())
    }

    /// rindexer: lowercase. Mixed: mostly EIP-55, sometimes lowercase (older samples show
    /// both, even for one account).
    pub fn json(&self, rng: &mut impl Rng, enc: Encoding) -> String {
        if rng.gen_ratio(4, 5) && enc == Encoding::Mixed {
            self.checksum.clone()
        } else {
            self.lower.clone()
        }
    }
}

/// A uniformly random value with exactly `bits` significant bits (`1..=256`).
pub(crate) fn random_bits(rng: &mut impl Rng, bits: usize) -> U256 {
    let mut v = U256::from_limbs(rng.gen::<[u64; 4]>());
    v.set_bit(255, true);
    v >> (256 - bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn object_keeps_field_order() {
        let fields: Fields = vec![("b", "1".into()), ("a", string("x\"y"))];
        assert_eq!(object(&fields), r#"{"b":1,"a":"x\"y"}"#);
    }

    #[test]
    fn random_bits_has_requested_width() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for bits in [1, 60, 96, 200, 256] {
            assert_eq!(random_bits(&mut rng, bits).bit_len(), bits);
        }
    }

    #[test]
    fn amounts_round_trip_through_every_encoding() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for v in [U256::ZERO, U256::from(7u64), U256::from(u64::MAX), U256::MAX] {
            for _ in 0..20 {
                let text = amount(&mut rng, Encoding::Mixed, v);
                let parsed = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                    Some(s) => rps::event::numeric::parse_u256(s).unwrap(),
                    None => U256::from(text.parse::<u64>().unwrap()),
                };
                assert_eq!(parsed, v);
            }
        }
    }
}
