//! Stream entries, and rejected input on its way to a dead-letter stream.

use bytes::Bytes;

/// An entry's fields, in the order the producer wrote them. Names and values are slices of
/// the buffer their read arrived in: no copy or allocation per field (an entry holds a
/// handful, so a lookup walks them rather than hashing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFields(Vec<(Bytes, Bytes)>);

impl EntryFields {
    /// The value of field `name`; of a name written twice, the last (as a map built from the
    /// fields would hold).
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.0.iter().rev().find(|(n, _)| n == name.as_bytes()).map(|(_, v)| v)
    }

    /// Take field `name` out (see [`EntryFields::get`] for a name written twice).
    pub fn remove(&mut self, name: &str) -> Option<Bytes> {
        let i = self.0.iter().rposition(|(n, _)| n == name.as_bytes())?;
        Some(self.0.remove(i).1)
    }

    pub fn push(&mut self, name: Bytes, value: Bytes) {
        self.0.push((name, value));
    }

    /// The fields' names, as text (lossy), in order.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|(n, _)| String::from_utf8_lossy(n).into_owned()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<N: AsRef<[u8]>, V: AsRef<[u8]>> FromIterator<(N, V)> for EntryFields {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> EntryFields {
        let copy = |b: &[u8]| Bytes::copy_from_slice(b);
        EntryFields(pairs.into_iter().map(|(n, v)| (copy(n.as_ref()), copy(v.as_ref()))).collect())
    }
}

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
