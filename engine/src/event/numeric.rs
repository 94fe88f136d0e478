//! uint256 amounts: parsing every encoding producers use, and PostgreSQL's binary
//! `NUMERIC` wire format for COPY.
//!
//! `NUMERIC` travels as `ndigits, weight, sign, dscale` (four big-endian i16/u16) followed
//! by `ndigits` base-10000 digits, most significant first. A uint256 needs up to 20 of them.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};
use ruint::aliases::U256;

/// A uint256 that binds to a PostgreSQL `NUMERIC` parameter or COPY column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Numeric(pub U256);

impl Numeric {
    pub const ZERO: Numeric = Numeric(U256::ZERO);

    /// Base-10000 digits, least significant first, without trailing (high) zeros, in
    /// `digits`; returns how many. 2^256 has 78 decimal digits: 20 base-10000 ones.
    ///
    /// Values below 2^128 (every amount an 18-decimal token realistically carries) take
    /// the fast path: two 128-bit divisions into 10^16 chunks, then 64-bit arithmetic.
    /// The generic 256-bit conversion costs about ten times more, and the encoder runs it
    /// for five numbers per vault event.
    fn base10000_le(&self, digits: &mut [i16; 20]) -> usize {
        const CHUNK: u128 = 10_000_000_000_000_000; // 10^16: four base-10000 digits
        let mut n = 0;
        if let Ok(mut v) = u128::try_from(self.0) {
            while v > 0 {
                let mut chunk = (v % CHUNK) as u64;
                v /= CHUNK;
                for _ in 0..4 {
                    digits[n] = (chunk % 10_000) as i16;
                    chunk /= 10_000;
                    n += 1;
                }
            }
        } else {
            for d in self.0.to_base_le(10_000) {
                digits[n] = d as i16;
                n += 1;
            }
        }
        while n > 0 && digits[n - 1] == 0 {
            n -= 1;
        }
        n
    }

    /// Append the binary `NUMERIC` encoding of this value.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut buf = [0i16; 20];
        let len = self.base10000_le(&mut buf);
        let digits = &buf[..len];
        // Low-order zero digits carry no information; PostgreSQL strips them too.
        let skip = digits.iter().take_while(|d| **d == 0).count();
        let significant = &digits[skip..];
        let weight = digits.len() as i16 - 1;
        out.put_i16(significant.len() as i16);
        out.put_i16(if significant.is_empty() { 0 } else { weight });
        out.put_u16(0x0000); // positive
        out.put_u16(0); // display scale: integers
        for d in significant.iter().rev() {
            out.put_i16(*d);
        }
    }
}

impl std::fmt::Display for Numeric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u64> for Numeric {
    fn from(v: u64) -> Self {
        Numeric(U256::from(v))
    }
}

impl ToSql for Numeric {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        self.encode(out);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

/// Why a string could not be read as a uint256.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("empty number")]
    Empty,
    #[error("negative number {0:?}")]
    Negative(String),
    #[error("not an integer: {0:?}")]
    NotInteger(String),
    #[error("number {0:?} does not fit in 256 bits")]
    Overflow(String),
}

/// Parse a decimal or `0x`-prefixed hexadecimal string into a uint256.
pub fn parse_u256(s: &str) -> Result<U256, NumberError> {
    let clip = |s: &str| s.chars().take(90).collect::<String>();
    if s.is_empty() {
        return Err(NumberError::Empty);
    }
    if s.starts_with('-') {
        return Err(NumberError::Negative(clip(s)));
    }
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    let valid = !digits.is_empty() && digits.bytes().all(|b| char::from(b).is_digit(radix));
    if !valid {
        return Err(NumberError::NotInteger(clip(s)));
    }
    // Most amounts fit 128 bits (38 decimal or 32 hex digits): two native 64-bit parses are
    // several times faster than the generic 256-bit one (and twice as fast as u128's).
    if let Some(v) = parse_u128_halves(digits.as_bytes(), radix) {
        return Ok(U256::from(v));
    }
    U256::from_str_radix(digits, radix as u64).map_err(|_| NumberError::Overflow(clip(s)))
}

/// `digits` (already checked to be digits of `radix`, 10 or 16) as a u128, parsed as two
/// halves that each fit 64 bits; `None` when there are more than two halves' worth.
fn parse_u128_halves(digits: &[u8], radix: u32) -> Option<u128> {
    // Digits per half: 10^19 - 1 and 16^16 - 1 fit a u64.
    let (half, scale) = if radix == 10 { (19, 10u128.pow(19)) } else { (16, 1u128 << 64) };
    if digits.len() > 2 * half {
        return None;
    }
    let split = digits.len().saturating_sub(half);
    let (high, low) = digits.split_at(split);
    Some(u128::from(parse_u64(high, radix)) * scale + u128::from(parse_u64(low, radix)))
}

/// At most one half's digits (see [`parse_u128_halves`]); empty is zero.
fn parse_u64(digits: &[u8], radix: u32) -> u64 {
    digits.iter().fold(0, |n, &d| n * u64::from(radix) + u64::from((d as char).to_digit(radix).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 128-bit fast path gives the digits of the generic 256-bit conversion, at the
    /// chunk edges and across the whole range.
    #[test]
    fn fast_path_digits_match_the_generic_conversion() {
        let mut values: Vec<u128> = vec![0, 1, 9_999, 10_000, u64::MAX as u128, u128::MAX, 10u128.pow(38)];
        for e in [16u32, 32] {
            let p = 10u128.pow(e);
            values.extend([p - 1, p, p + 1, p * 9_999]);
        }
        values.extend(spread_u128s(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834));
        for v in values {
            let mut buf = [0i16; 20];
            let n = Numeric(U256::from(v)).base10000_le(&mut buf);
            let generic: Vec<i16> = U256::from(v).to_base_le(10_000).map(|d| d as i16).collect();
            assert_eq!(&buf[..n], &generic[..], "{v}");
        }
    }

    /// 2,000 pseudo-random u128s from `seed` (xorshift), shifted so that every bit length
    /// from 0 to 128 occurs.
    fn spread_u128s(seed: u128) -> Vec<u128> {
        let mut x = seed;
        (0..2_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x >> (x % 128)
            })
            .collect()
    }

    fn encoded(v: U256) -> Vec<u8> {
        let mut b = BytesMut::new();
        Numeric(v).encode(&mut b);
        b.to_vec()
    }

    #[test]
    fn zero_has_no_digits() {
        assert_eq!(encoded(U256::ZERO), vec![0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn ten_thousand_strips_low_zero_digit() {
        // 10000 = [1][0000]: one significant digit with weight 1.
        assert_eq!(encoded(U256::from(10_000u64)), vec![0, 1, 0, 1, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn twelve_thousand_three_hundred_forty_five() {
        // 12345 = [1][2345]
        assert_eq!(encoded(U256::from(12_345u64)), vec![0, 2, 0, 1, 0, 0, 0, 0, 0, 1, 0x09, 0x29]);
    }

    #[test]
    fn parses_every_encoding() {
        assert_eq!(parse_u256("1000").unwrap(), U256::from(1000u64));
        assert_eq!(parse_u256("0x3e8").unwrap(), U256::from(1000u64));
        assert_eq!(parse_u256("0X3E8").unwrap(), U256::from(1000u64));
        assert_eq!(parse_u256(&U256::MAX.to_string()).unwrap(), U256::MAX);
    }

    /// The two-halves parse reads every u128, in both radixes, with and without leading
    /// zeros, on both sides of the split between the halves.
    #[test]
    fn halves_parse_every_u128() {
        let mut values: Vec<u128> = vec![0, 1, 10u128.pow(19) - 1, 10u128.pow(19), 10u128.pow(19) + 1];
        values.extend([u64::MAX as u128, u64::MAX as u128 + 1, 10u128.pow(38) - 1, u128::MAX]);
        values.extend(spread_u128s(0x2545_f491_4f6c_dd1d_9e37_79b9_7f4a_7c15));
        for v in values {
            for text in [v.to_string(), format!("0x{v:x}"), format!("{v:040}"), format!("0x{v:032X}")] {
                assert_eq!(parse_u256(&text), Ok(U256::from(v)), "{text}");
            }
        }
    }

    /// The 128-bit parse and the generic one agree on both sides of the fast path's edge.
    #[test]
    fn parses_at_the_128_bit_edge() {
        for s in [
            "99999999999999999999999999999999999999",
            "999999999999999999999999999999999999999",
            "340282366920938463463374607431768211455",
            "340282366920938463463374607431768211456",
            "0xffffffffffffffffffffffffffffffff",
            "0x100000000000000000000000000000000",
            "+1",
        ] {
            let generic = match s.strip_prefix("0x") {
                Some(hex) => U256::from_str_radix(hex, 16),
                None => U256::from_str_radix(s, 10),
            };
            match parse_u256(s) {
                Ok(v) => assert_eq!(Ok(v), generic, "{s}"),
                Err(e) => assert!(matches!(e, NumberError::NotInteger(_)) && s.starts_with('+'), "{s}: {e:?}"),
            }
        }
    }

    #[test]
    fn rejects_bad_numbers() {
        assert_eq!(parse_u256(""), Err(NumberError::Empty));
        assert!(matches!(parse_u256("-1"), Err(NumberError::Negative(_))));
        assert!(matches!(parse_u256("1.5"), Err(NumberError::NotInteger(_))));
        assert!(matches!(parse_u256("1e18"), Err(NumberError::NotInteger(_))));
        assert!(matches!(parse_u256("0x"), Err(NumberError::NotInteger(_))));
        assert!(matches!(parse_u256(" 1"), Err(NumberError::NotInteger(_))));
        let too_big = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert!(matches!(parse_u256(too_big), Err(NumberError::Overflow(_))));
    }
}
