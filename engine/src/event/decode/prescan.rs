//! Checks on a payload's raw bytes before it is parsed.

use super::{err, DecodeError, MAX_DEPTH};

/// Checks made on the raw bytes before parsing: nesting depth (a hostile input guard), and
/// `\u` escapes of lone UTF-16 surrogates, which simd-json would silently turn into a NUL
/// character instead of rejecting.
pub(super) fn prescan(raw: &[u8]) -> Result<(), DecodeError> {
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
