//! A stream entry as the engine sees it: the JSON payload rindexer put in it.

use redis::Value;

use crate::stream::Entry;

/// Field names a producer may carry the JSON in, in order of preference.
pub const PAYLOAD_FIELDS: [&str; 3] = ["payload", "event_data", "data"];

#[derive(Debug, Clone)]
pub struct Message {
    pub stream: String,
    pub id: String,
    /// The raw JSON bytes, or why the entry has none.
    pub payload: Result<Vec<u8>, String>,
}

impl Message {
    /// The payload is moved out of the entry, not copied: a backfill read carries tens of
    /// megabytes.
    pub fn from_entry(mut entry: Entry) -> Message {
        let payload = PAYLOAD_FIELDS
            .iter()
            .find_map(|f| entry.fields.remove(*f))
            .map(|v| match v {
                Value::BulkString(b) => Ok(b),
                Value::SimpleString(s) => Ok(s.into_bytes()),
                other => Err(format!("payload field is not a string: {other:?}")),
            })
            .unwrap_or_else(|| {
                let mut fields: Vec<&String> = entry.fields.keys().collect();
                fields.sort();
                Err(format!("no payload field (expected one of payload, event_data, data; found {fields:?})"))
            });
        Message { stream: entry.stream, id: entry.id, payload }
    }
}
