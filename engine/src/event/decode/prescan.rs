//! Checks on a payload's raw bytes before it is parsed, and the cheaper check of the parsed
//! tape that replaces them for most payloads.
//!
//! Scanning every byte of every payload before parsing was about 7 % of a backfill's engine
//! CPU (a profile of stop 19), for three things that real payloads almost never hold: `\u`
//! escapes, integer literals beyond 64 bits and deep nesting. A payload without `\u` is
//! parsed as it is and its tape checked instead ([`check_tape`]); only one the tape check
//! sends back, or one with an escape, pays for [`prescan`] and a second parse.

use simd_json::value::tape::Node;
use simd_json::StaticNode;

use super::{err, DecodeError, MAX_DEPTH};

/// Whether `raw` must go through [`prescan`] before parsing: it holds a `\u` escape, which
/// might be a lone surrogate that simd-json would turn into a NUL character.
pub(super) fn needs_prescan(raw: &[u8]) -> bool {
    memchr::memmem::find(raw, b"\\u").is_some()
}

/// What a tape parsed without [`prescan`] says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TapeCheck {
    /// Nothing to fix: decode it.
    Plain,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A number simd-json read as a float, which may be an integer literal too long for 64
    /// bits: [`prescan`] and parse again.
    Float,
}

/// Nesting depth and floats of a parsed tape, in one pass over its nodes.
pub(super) fn check_tape(nodes: &[Node]) -> TapeCheck {
    // Where each open object or array ends (node index), innermost last: `depth` of them.
    let mut ends = [0usize; MAX_DEPTH];
    let mut depth = 0;
    for (i, node) in nodes.iter().enumerate() {
        while depth > 0 && i >= ends[depth - 1] {
            depth -= 1;
        }
        match node {
            Node::Object { count, .. } | Node::Array { count, .. } => {
                if depth == MAX_DEPTH {
                    return TapeCheck::TooDeep;
                }
                ends[depth] = i + 1 + count;
                depth += 1;
            }
            Node::Static(StaticNode::F64(_)) => return TapeCheck::Float,
            _ => {}
        }
    }
    TapeCheck::Plain
}

/// The error for a payload nested deeper than [`MAX_DEPTH`].
pub(super) fn too_deep<T>() -> Result<T, DecodeError> {
    err(format!("JSON nested deeper than {MAX_DEPTH} levels"))
}

/// Integer literals with this many digits or more may not fit 64 bits, where simd-json keeps
/// numbers; u64::MAX has 20.
const LONG_INTEGER_DIGITS: usize = 20;

/// Checks made on the raw bytes before parsing: nesting depth (a hostile input guard), and
/// `\u` escapes of lone UTF-16 surrogates, which simd-json would silently turn into a NUL
/// character instead of rejecting. Integer literals of 20 digits or more, which simd-json
/// cannot hold (it would fail the whole message), are returned quoted, as the decimal
/// strings every integer field also accepts: `Some(rewritten)` when there were any.
pub(super) fn prescan(raw: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
    let (mut depth, mut in_str, mut i) = (0usize, false, 0usize);
    let mut long_integers = Vec::new();
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
                    return too_deep();
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let end = i + raw[i..]
                    .iter()
                    .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .unwrap_or(raw.len() - i);
                let token = &raw[i..end];
                let digits = token.iter().filter(|b| b.is_ascii_digit()).count();
                if digits >= LONG_INTEGER_DIGITS && token.iter().skip(1).all(u8::is_ascii_digit) {
                    long_integers.push(i..end);
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok((!long_integers.is_empty()).then(|| quote(raw, &long_integers)))
}

/// `raw` with each of `ranges` (in order, disjoint) put in double quotes.
fn quote(raw: &[u8], ranges: &[std::ops::Range<usize>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 2 * ranges.len());
    let mut copied = 0;
    for r in ranges {
        out.extend_from_slice(&raw[copied..r.start]);
        out.push(b'"');
        out.extend_from_slice(&raw[r.clone()]);
        out.push(b'"');
        copied = r.end;
    }
    out.extend_from_slice(&raw[copied..]);
    out
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
