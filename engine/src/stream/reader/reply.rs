//! The read script's reply, as entries: `{stream, {{id, fields}, ...}}` per stream, an
//! oversized entry's stub turned into an [`Oversized`] entry.

use std::collections::HashMap;

use redis::{ErrorKind, RedisError, RedisResult, Value};

use super::ReadBudget;
use crate::stream::{Entry, Oversized};

/// `{stream, {{id, fields}, ...}}` per stream, as read.lua returns them.
pub(super) fn parse_reply(reply: Value, budget: ReadBudget) -> RedisResult<Vec<Entry>> {
    let mut out = Vec::new();
    for per_stream in array(reply)? {
        let mut parts = array(per_stream)?.into_iter();
        let (Some(stream), Some(entries)) = (parts.next(), parts.next()) else { return Err(malformed()) };
        let stream = text(stream)?;
        for entry in array(entries)? {
            let mut parts = array(entry)?.into_iter();
            let id = text(parts.next().ok_or_else(malformed)?)?;
            let values = match parts.next() {
                Some(Value::Array(values)) => values,
                _ => Vec::new(),
            };
            out.push(entry_of(&stream, id, values, budget.entry_bytes)?);
        }
    }
    Ok(out)
}

fn entry_of(stream: &str, id: String, values: Vec<Value>, limit: u64) -> RedisResult<Entry> {
    let mut values = values.into_iter();
    let mut fields = HashMap::new();
    while let (Some(name), Some(value)) = (values.next(), values.next()) {
        fields.insert(text(name)?, value);
    }
    let oversized = match fields.remove("rps-oversized") {
        None => None,
        Some(bytes) => {
            // The stub's four values came as two pairs: size / SHA-1, prefix / (none).
            let (sha1, prefix) = fields.drain().next().ok_or_else(malformed)?;
            let prefix = match prefix {
                Value::BulkString(b) => b,
                _ => Vec::new(),
            };
            Some(Oversized { bytes: text(bytes)?.parse().map_err(|_| malformed())?, sha1, prefix, limit })
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
    match v {
        Value::BulkString(b) => String::from_utf8(b).map_err(|_| malformed()),
        Value::SimpleString(s) => Ok(s),
        Value::Int(i) => Ok(i.to_string()),
        _ => Err(malformed()),
    }
}

fn malformed() -> RedisError {
    RedisError::from((ErrorKind::Parse, "unexpected reply from the read script"))
}
