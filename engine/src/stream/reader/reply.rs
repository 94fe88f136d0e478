//! The read script's reply, as entries: `{stream, {id, n, field, value, ...}}` per stream
//! (each entry flat: its id, its number of fields, its field/value pairs), an oversized
//! entry's stub turned into an [`Oversized`] entry.
//!
//! Tried in stop 22 and dropped: the script returning each stream's entries as one string
//! (`<length>:<bytes>` records), so that the client parsed one value per stream instead of
//! one per field. Building that string in Lua (`table.concat`) tripled Redis's CPU for a
//! backfill (5 → 17 core-seconds per 1.2M events) and the engine's own CPU did not move
//! beyond its run-to-run spread.

use bytes::Bytes;
use redis::{ErrorKind, RedisError, RedisResult, Value};

use super::ReadBudget;
use crate::stream::{Entry, EntryFields, Oversized};

/// `{stream, {id, n, field, value, ...}}` per stream, as read.lua returns them.
pub(super) fn parse_reply(reply: Value, budget: ReadBudget) -> RedisResult<Vec<Entry>> {
    let mut out = Vec::new();
    for per_stream in array(reply)? {
        let mut parts = array(per_stream)?.into_iter();
        let (Some(stream), Some(entries)) = (parts.next(), parts.next()) else { return Err(malformed()) };
        let stream = text(stream)?;
        let mut flat = array(entries)?.into_iter();
        while let Some(id) = flat.next() {
            let id = text(id)?;
            let n = match flat.next() {
                Some(Value::Int(n)) if n >= 0 => n as usize,
                _ => return Err(malformed()),
            };
            let mut fields = EntryFields::default();
            for _ in 0..n {
                let (Some(name), Some(value)) = (flat.next(), flat.next()) else { return Err(malformed()) };
                fields.push(bytes(name)?, bytes(value)?);
            }
            out.push(entry_of(&stream, id, fields, budget.entry_bytes)?);
        }
    }
    Ok(out)
}

fn entry_of(stream: &str, id: String, mut fields: EntryFields, limit: u64) -> RedisResult<Entry> {
    let oversized = match fields.remove("rps-oversized") {
        None => None,
        Some(bytes) => {
            // The stub's four values came as two pairs: size / SHA-1, prefix / (none).
            let (sha1, prefix) = fields.iter().next().ok_or_else(malformed)?;
            let (sha1, prefix) = (utf8(sha1.clone())?, prefix.to_vec());
            fields = EntryFields::default();
            let bytes = utf8(bytes)?.parse().map_err(|_| malformed())?;
            Some(Oversized { bytes, sha1, prefix, limit })
        }
    };
    Ok(Entry { stream: stream.to_owned(), id, fields, oversized })
}

fn array(v: Value) -> RedisResult<Vec<Value>> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        _ => Err(malformed()),
    }
}

fn text(v: Value) -> RedisResult<String> {
    utf8(bytes(v)?)
}

/// A field name or value: a bulk string, kept without a copy.
fn bytes(v: Value) -> RedisResult<Bytes> {
    match v {
        Value::BulkString(b) => Ok(Bytes::from(b)),
        Value::SimpleString(s) => Ok(Bytes::from(s)),
        Value::Int(i) => Ok(Bytes::from(i.to_string())),
        _ => Err(malformed()),
    }
}

fn utf8(b: Bytes) -> RedisResult<String> {
    String::from_utf8(b.into()).map_err(|_| malformed())
}

fn malformed() -> RedisError {
    RedisError::from((ErrorKind::Parse, "unexpected reply from the read script"))
}
