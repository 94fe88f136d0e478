//! Typed access to the fields of one JSON object.

use ruint::aliases::U256;
use simd_json::prelude::*;
use simd_json::ValueType;
use smallvec::SmallVec;

use super::{duplicate_key_within, err, is_null, DecodeError, Value};
use crate::event::hex::{strip_0x, Address, Bytes32, Hex};
use crate::event::numeric::{parse_u256, Numeric};

/// Typed access to one JSON object's fields, with errors that name the field.
///
/// The object's keys and values are listed once: a lookup in the tape walks every key
/// before the one sought, skipping over their values, and an event looks up a dozen fields.
/// The list is held inline (objects here have about ten keys): a heap vector was two
/// allocations per event, about 2 % of a backfill's engine CPU.
pub(super) struct Fields<'t, 'i>(SmallVec<[(&'i str, Value<'t, 'i>); INLINE_FIELDS]>);

/// Keys of an object listed without allocating; larger objects spill to the heap.
const INLINE_FIELDS: usize = 16;

impl<'t, 'i> Fields<'t, 'i> {
    /// The fields of `object` (none if it is not an object).
    pub(super) fn of(object: Value<'t, 'i>) -> Fields<'t, 'i> {
        Fields(object.as_object().map(|o| o.iter().collect()).unwrap_or_default())
    }

    /// A key that appears twice among these fields. Objects here hold about ten keys:
    /// comparing each pair is cheaper than hashing.
    pub(super) fn duplicate_key_here(&self) -> Option<&'i str> {
        let keys = &self.0;
        (0..keys.len()).find(|&i| keys[i + 1..].iter().any(|(k, _)| *k == keys[i].0)).map(|i| keys[i].0)
    }

    /// A key that appears twice among these fields or in one object anywhere inside their
    /// values, except inside the value of field `unchecked` (whose reader checks it).
    pub(super) fn duplicate_key(&self, unchecked: Option<&str>) -> Option<&'i str> {
        self.duplicate_key_here().or_else(|| {
            self.0.iter().filter(|(k, _)| Some(*k) != unchecked).find_map(|&(_, v)| duplicate_key_within(v))
        })
    }

    /// The field's value, `None` if absent (of two equal keys, the first: decoding refuses
    /// those before it reads fields).
    pub(super) fn find(&self, name: &str) -> Option<Value<'t, 'i>> {
        self.0.iter().find(|(k, _)| *k == name).map(|&(_, v)| v)
    }

    pub(super) fn get(&self, name: &str) -> Result<Value<'t, 'i>, DecodeError> {
        match self.find(name) {
            Some(v) if !is_null(&v) => Ok(v),
            _ => err(format!("missing field `{name}`")),
        }
    }

    pub(super) fn uint_value(&self, name: &str) -> Result<U256, DecodeError> {
        let v = self.get(name)?;
        if let Some(s) = v.as_str() {
            return parse_u256(s).map_err(|e| DecodeError(format!("field `{name}`: {e}")));
        }
        match (v.value_type(), v.as_u64(), v.as_i64(), v.as_f64()) {
            (ValueType::U64 | ValueType::I64, Some(n), _, _) => Ok(U256::from(n)),
            (ValueType::I64, None, Some(n), _) => err(format!("field `{name}`: negative number {n}")),
            (ValueType::F64, _, _, Some(n)) => {
                err(format!("field `{name}`: {n:?} is not an integer (a JSON number with a fraction or an exponent)"))
            }
            _ => err(format!("field `{name}`: expected an integer (number, decimal or 0x-hex string)")),
        }
    }

    pub(super) fn uint(&self, name: &str) -> Result<Numeric, DecodeError> {
        self.uint_value(name).map(Numeric)
    }

    pub(super) fn int64(&self, name: &str) -> Result<i64, DecodeError> {
        let v = self.uint_value(name)?;
        i64::try_from(v)
            .map_err(|_| DecodeError(format!("field `{name}`: {v} does not fit in a signed 64-bit integer")))
    }

    pub(super) fn optional_int64(&self, name: &str) -> Result<Option<i64>, DecodeError> {
        match self.find(name) {
            Some(v) if !is_null(&v) => self.int64(name).map(Some),
            _ => Ok(None),
        }
    }

    pub(super) fn vault_type(&self) -> Result<i16, DecodeError> {
        match self.int64("vaultType")? {
            t @ 0..=2 => Ok(t as i16),
            t => err(format!("field `vaultType`: {t} is not 0 (atom), 1 (triple) or 2 (counter triple)")),
        }
    }

    pub(super) fn str(&self, name: &str) -> Result<&'i str, DecodeError> {
        match self.get(name)?.into_string() {
            Some(s) => Ok(s),
            None => err(format!("field `{name}`: expected a string")),
        }
    }

    /// Hex of exactly `(N - 2) / 2` bytes, `0x` optional, as canonical lowercase `0x` hex.
    pub(super) fn fixed_hex<const N: usize>(&self, name: &str) -> Result<Hex<N>, DecodeError> {
        let s = self.str(name)?;
        Hex::parse(s).ok_or_else(|| {
            let shown: String = s.chars().take(80).collect();
            DecodeError(format!("field `{name}`: expected {} bytes of hex, got {shown:?}", (N - 2) / 2))
        })
    }

    pub(super) fn bytes32(&self, name: &str) -> Result<Bytes32, DecodeError> {
        self.fixed_hex(name)
    }

    pub(super) fn address(&self, name: &str) -> Result<Address, DecodeError> {
        self.fixed_hex(name)
    }

    pub(super) fn bytes(&self, name: &str) -> Result<Vec<u8>, DecodeError> {
        let s = self.str(name)?;
        hex::decode(strip_0x(s)).map_err(|e| DecodeError(format!("field `{name}`: not hex bytes ({e})")))
    }
}
