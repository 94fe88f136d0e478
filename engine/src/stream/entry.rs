//! Stream entries, and rejected input on its way to a dead-letter stream.

use redis::Value;

/// An entry's fields by name (foldhash: a field map per entry, and SipHash showed in the
/// profile; the names are the producer's, and an entry holds a handful).
pub type EntryFields = foldhash::HashMap<String, Value>;

/// An entry's identity: (stream, id).
pub type EntryKey = (String, String);

/// One stream entry as read.
#[derive(Debug, Clone)]
pub struct Entry {
    pub stream: String,
    pub id: String,
    /// Empty when the entry is [`Entry::oversized`] (or was deleted from the stream).
    pub fields: EntryFields,
    /// Set when the entry was larger than the reader's per-entry limit: what was read of it
    /// instead of its fields.
    pub oversized: Option<Oversized>,
}

/// What a reader keeps of an entry over its per-entry limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversized {
    /// The entry's size: all its field values, in bytes.
    pub bytes: u64,
    /// SHA-1 of its largest field (as Redis's scripting computes it), hex.
    pub sha1: String,
    /// The first bytes of that field.
    pub prefix: Vec<u8>,
    /// The limit it exceeded.
    pub limit: u64,
}

impl Oversized {
    /// Why the entry was refused, for its dead letter.
    pub fn reason(&self) -> String {
        format!(
            "entry of {} bytes exceeds the {}-byte limit per entry; its dead letter keeps the first {} bytes \
             of its largest field (SHA-1 {})",
            self.bytes,
            self.limit,
            self.prefix.len(),
            self.sha1
        )
    }
}

impl Entry {
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
