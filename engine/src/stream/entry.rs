//! Stream entries, and rejected input on its way to a dead-letter stream.

use std::collections::HashMap;

use redis::streams::StreamId;
use redis::Value;

/// An entry's identity: (stream, id).
pub type EntryKey = (String, String);

/// One stream entry as read.
#[derive(Debug, Clone)]
pub struct Entry {
    pub stream: String,
    pub id: String,
    pub fields: HashMap<String, Value>,
}

impl Entry {
    /// Moved out of the reply, not copied: a backfill read carries tens of megabytes.
    pub(crate) fn from_reply(stream: &str, entry: StreamId) -> Entry {
        Entry { stream: stream.to_owned(), id: entry.id, fields: entry.map }
    }

    pub fn key(&self) -> EntryKey {
        (self.stream.clone(), self.id.clone())
    }
}

/// A rejected input on its way to `<stream>:dlq`.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub stream: String,
    pub id: String,
    pub payload: Vec<u8>,
    pub error: String,
}

/// Where the rejected entries of `stream` go.
pub fn dead_letter_stream(stream: &str) -> String {
    format!("{stream}:dlq")
}
