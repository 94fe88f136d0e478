//! Ids, hashes and addresses held inline as their canonical text (`0x` + lowercase hex).
//!
//! An event carries four to seven of them. As `String`s each was a heap allocation made on
//! a decode thread and freed on the writer's, about ten per event: a profile of a 1.5M-event
//! backfill put a third of the engine's CPU in malloc, free and dropping batches. Inline
//! arrays cost nothing to create or drop, still read as `&str` everywhere (`Deref`; the COPY
//! encoder writes that text into `TEXT` columns), and are ordered and hashed as that text.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// `0x` followed by `LEN - 2` lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hex<const LEN: usize>([u8; LEN]);

/// A bytes32 value (term ids, transaction and block hashes): 66 characters.
pub type Bytes32 = Hex<66>;
/// A 20-byte address: 42 characters.
pub type Address = Hex<42>;

impl<const LEN: usize> Hex<LEN> {
    /// From hex digits without the `0x` (any case); `None` unless there are exactly
    /// `LEN - 2` of them.
    pub fn from_digits(digits: &[u8]) -> Option<Self> {
        if digits.len() != LEN - 2 {
            return None;
        }
        // One pass without an early exit, which the compiler vectorizes: setting bit 0x20
        // lowercases `A`-`F` and leaves `0`-`9` as they are, so the lowercased byte is also
        // what the validity check looks at.
        let mut out = [0u8; LEN];
        out[..2].copy_from_slice(b"0x");
        let mut valid = true;
        for (o, &d) in out[2..].iter_mut().zip(digits) {
            let lower = d | 0x20;
            valid &= d.is_ascii_digit() | (b'a'..=b'f').contains(&lower);
            *o = lower;
        }
        valid.then_some(Hex(out))
    }

    /// From text with or without `0x`, any case.
    pub fn parse(text: &str) -> Option<Self> {
        Self::from_digits(strip_0x(text).as_bytes())
    }

    /// From raw bytes (`LEN - 2` must be twice their number).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() * 2 != LEN - 2 {
            return None;
        }
        let mut out = [0u8; LEN];
        out[..2].copy_from_slice(b"0x");
        hex::encode_to_slice(bytes, &mut out[2..]).ok()?;
        Some(Hex(out))
    }

    pub fn as_str(&self) -> &str {
        debug_assert!(self.0.is_ascii());
        // SAFETY: every constructor stores `0x` and hex digits only (checked in
        // `from_digits`, written by `hex::encode_to_slice` in `from_bytes`), and the field
        // is private, so the bytes are ASCII and hence UTF-8. Checking them again on every
        // read cost 3.6 % of a backfill's engine CPU (sorting a batch compares block hashes
        // as text; a profile of stop 16).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

/// `text` without its `0x` (or `0X`) prefix, if it has one.
pub fn strip_0x(text: &str) -> &str {
    text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text)
}

impl<const LEN: usize> Deref for Hex<LEN> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Hashes as its text, so that a set of `Hex` can be searched with a `&str`.
impl<const LEN: usize> Hash for Hex<LEN> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl<const LEN: usize> Borrow<str> for Hex<LEN> {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl<const LEN: usize> fmt::Display for Hex<LEN> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const LEN: usize> fmt::Debug for Hex<LEN> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const LEN: usize> PartialEq<str> for Hex<LEN> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const LEN: usize> PartialEq<&str> for Hex<LEN> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl<const LEN: usize> PartialEq<String> for Hex<LEN> {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl<const LEN: usize> serde::Serialize for Hex<LEN> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_from_any_case_with_or_without_prefix() {
        let a = Address::parse("0xAbCdEf0123456789aBcDeF0123456789AbCdEf01").unwrap();
        assert_eq!(a, "0xabcdef0123456789abcdef0123456789abcdef01");
        assert_eq!(Address::parse("abcdef0123456789abcdef0123456789abcdef01"), Some(a));
        assert_eq!(Address::from_bytes(&hex::decode(&a[2..]).unwrap()), Some(a));
    }

    #[test]
    fn wrong_length_or_digits_are_refused() {
        assert_eq!(Address::parse("0xabc"), None);
        assert_eq!(Address::parse(&format!("0x{}", "g".repeat(40))), None);
        assert_eq!(Bytes32::parse(&format!("0x{}", "a".repeat(40))), None);
        assert_eq!(Bytes32::from_bytes(&[0; 20]), None);
        // Bytes that become hex digits once bit 0x20 is set are still refused.
        for near in [0x10u8, b'G', b'g', 0x01, 0xC1, b'@', b'`'] {
            let mut digits = [b'a'; 40];
            digits[17] = near;
            assert_eq!(Address::from_digits(&digits), None, "byte {near:#x}");
        }
    }

    #[test]
    fn ordered_and_hashed_as_text() {
        use std::collections::HashSet;
        let (lo, hi) = (Bytes32::parse(&"0".repeat(64)).unwrap(), Bytes32::parse(&"f".repeat(64)).unwrap());
        assert_eq!(lo.cmp(&hi), lo.as_str().cmp(hi.as_str()));
        let set: HashSet<Bytes32> = [lo].into();
        assert!(set.contains(lo.as_str()));
        assert!(!set.contains(hi.as_str()));
    }
}
