//! A stream entry as the engine sees it: the JSON payload rindexer put in it.

use bytes::Bytes;

use crate::stream::Entry;

/// Field names a producer may carry the JSON in, in order of preference.
pub const PAYLOAD_FIELDS: [&str; 3] = ["payload", "event_data", "data"];

#[derive(Debug, Clone)]
pub struct Message {
    pub stream: String,
    pub id: String,
    /// The raw JSON bytes (a slice of the read's buffer), or why the entry has none.
    pub payload: Result<Bytes, Unreadable>,
}

/// Why an entry has no payload to decode, and what of it its dead letter keeps.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub reason: String,
    pub kept: Vec<u8>,
}

impl Unreadable {
    fn because(reason: String) -> Unreadable {
        Unreadable { reason, kept: Vec::new() }
    }
}

impl Message {
    /// The payload is moved out of the entry, not copied: a backfill read carries tens of
    /// megabytes.
    pub fn from_entry(mut entry: Entry) -> Message {
        if let Some(oversized) = entry.oversized.take() {
            let payload = Err(Unreadable { reason: oversized.reason(), kept: oversized.prefix });
            return Message { stream: entry.stream, id: entry.id, payload };
        }
        let payload = PAYLOAD_FIELDS.iter().find_map(|f| entry.fields.remove(f)).ok_or_else(|| {
            let mut fields = entry.fields.names();
            fields.sort();
            Unreadable::because(format!(
                "no payload field (expected one of payload, event_data, data; found {fields:?})"
            ))
        });
        Message { stream: entry.stream, id: entry.id, payload }
    }
}
