//! A read of new entries as one plain `XREADGROUP`, held to the same byte bounds as the read
//! script (see reader.rs) by reading its reply piece by piece ([`RespSocket`]).
//!
//! Why not the script for new entries too: converting every entry into Lua values and back
//! costs Redis ~3.5× the CPU of the command itself (stop 25, `bench-results/stop25-redis/`),
//! and a blocking `XREADGROUP` needs no polling. Own pending entries and claims, the rare
//! reads, stay with the script.
//!
//! The bounds, as the script keeps them:
//! - **per entry**: an entry whose values add up to more than `entry_bytes` becomes an
//!   [`Oversized`] stub: its size, the SHA-1 and first `prefix_bytes` of its largest value
//!   (the first of equals). What was kept of it is dropped once it crosses the limit, and the
//!   rest streams through SHA-1 (only a value longer than the largest so far) without being
//!   held. A field *name* longer than the limit is not held either: it counts towards the
//!   size and makes the entry a stub.
//! - **per read**: entries are kept while their cost (a stub costs its prefix and 64 bytes)
//!   fits `read_bytes`, the first always. Once one does not fit, it and every entry after it
//!   in the reply are skipped, not held; they were delivered to this consumer all the same,
//!   so the caller reads them back as own pending entries, from the first skipped entry of
//!   each stream ([`PlainRead::left`]).

use bytes::Bytes;
use redis::RedisResult;
use sha1_smol::Sha1;

use super::ReadBudget;
use crate::stream::socket::{unexpected, Header, RespSocket};
use crate::stream::{Entry, EntryFields, Oversized};

/// What one read kept, and where it stopped keeping.
#[derive(Debug, Default)]
pub(super) struct PlainRead {
    pub entries: Vec<Entry>,
    /// Per stream, the first entry delivered but skipped (over the read's budget).
    pub left: Vec<(String, String)>,
}

/// Send `cmd` (an `XREADGROUP`) and read its reply within `budget`.
pub(super) async fn read(socket: &mut RespSocket, cmd: &redis::Cmd, budget: ReadBudget) -> RedisResult<PlainRead> {
    socket.send(cmd).await?;
    let mut reply = Reply { budget, used: 0, read: PlainRead::default() };
    // Null when no stream had entries (or a block timed out).
    let Some(streams) = array(socket).await? else { return Ok(reply.read) };
    for _ in 0..streams {
        if array(socket).await? != Some(2) {
            return Err(unexpected("a stream's reply not of two elements"));
        }
        let stream = text(bulk(socket).await?)?;
        for _ in 0..array(socket).await?.unwrap_or(0) {
            reply.entry(socket, &stream).await?;
        }
    }
    Ok(reply.read)
}

struct Reply {
    budget: ReadBudget,
    /// What the entries kept so far cost.
    used: u64,
    read: PlainRead,
}

impl Reply {
    async fn entry(&mut self, socket: &mut RespSocket, stream: &str) -> RedisResult<()> {
        if array(socket).await? != Some(2) {
            return Err(unexpected("an entry not of two elements"));
        }
        let id = text(bulk(socket).await?)?;
        let skipping = !self.read.left.is_empty() || self.used >= self.budget.read_bytes;
        if skipping {
            return self.skip(socket, stream, id).await;
        }
        // A pending entry deleted since has no fields (a null array).
        let items = array(socket).await?.unwrap_or(0);
        if items % 2 != 0 {
            return Err(unexpected("an entry with an odd number of field items"));
        }
        let mut shape = Shape::new(self.budget);
        for _ in 0..items / 2 {
            shape.field(socket).await?;
        }
        let cost = shape.cost();
        if self.used > 0 && self.used + cost > self.budget.read_bytes {
            self.read.left.push((stream.to_owned(), id));
            return Ok(());
        }
        self.used += cost;
        self.read.entries.push(shape.entry(stream, id));
        Ok(())
    }

    /// An entry past the budget: its fields read and dropped, its id noted if it is the
    /// first of its stream.
    async fn skip(&mut self, socket: &mut RespSocket, stream: &str, id: String) -> RedisResult<()> {
        socket.skip().await?;
        if !self.read.left.iter().any(|(s, _)| s == stream) {
            self.read.left.push((stream.to_owned(), id));
        }
        Ok(())
    }
}

/// One entry being read: its fields while it stays within the limit, its stub after.
struct Shape {
    budget: ReadBudget,
    fields: EntryFields,
    /// Its values' bytes so far (and any field name over the limit).
    size: u64,
    /// Set once it is over the limit: the largest value so far.
    largest: Option<Largest>,
}

/// What a stub keeps of the largest value.
struct Largest {
    len: u64,
    sha1: Sha1,
    prefix: Vec<u8>,
}

impl Largest {
    fn new(len: u64) -> Largest {
        Largest { len, sha1: Sha1::new(), prefix: Vec::new() }
    }

    fn feed(&mut self, piece: &[u8], keep: usize) {
        self.sha1.update(piece);
        let room = keep.saturating_sub(self.prefix.len());
        self.prefix.extend_from_slice(&piece[..room.min(piece.len())]);
    }
}

impl Shape {
    fn new(budget: ReadBudget) -> Shape {
        Shape { budget, fields: EntryFields::default(), size: 0, largest: None }
    }

    async fn field(&mut self, socket: &mut RespSocket) -> RedisResult<()> {
        let limit = self.budget.entry_bytes;
        let name = match length(socket).await? {
            len if len as u64 > limit => {
                socket.stream_bulk(len, |_| {}).await?;
                self.size += len as u64;
                self.turn_stub();
                Bytes::new()
            }
            len => socket.bulk(len).await?,
        };
        let len = length(socket).await?;
        if self.largest.is_none() && self.size + len as u64 <= limit {
            self.size += len as u64;
            let value = socket.bulk(len).await?;
            self.fields.push(name, value);
            return Ok(());
        }
        self.turn_stub();
        self.size += len as u64;
        let largest = self.largest.as_mut().expect("a stub");
        if len as u64 > largest.len {
            let mut candidate = Largest::new(len as u64);
            let keep = self.budget.prefix_bytes as usize;
            socket.stream_bulk(len, |piece| candidate.feed(piece, keep)).await?;
            *largest = candidate;
        } else {
            socket.stream_bulk(len, |_| {}).await?;
        }
        Ok(())
    }

    /// Over the limit: the values kept so far give way to what a stub keeps of the largest.
    fn turn_stub(&mut self) {
        if self.largest.is_some() {
            return;
        }
        let mut largest = Largest::new(0);
        let keep = self.budget.prefix_bytes as usize;
        for (_, value) in self.fields.iter() {
            if value.len() as u64 > largest.len {
                largest = Largest::new(value.len() as u64);
                largest.feed(value, keep);
            }
        }
        self.fields = EntryFields::default();
        self.largest = Some(largest);
    }

    fn cost(&self) -> u64 {
        match self.largest {
            Some(_) => self.budget.prefix_bytes + 64,
            None => self.size,
        }
    }

    fn entry(self, stream: &str, id: String) -> Entry {
        let oversized = self.largest.map(|l| Oversized {
            bytes: self.size,
            sha1: l.sha1.digest().to_string(),
            prefix: l.prefix,
            limit: self.budget.entry_bytes,
        });
        Entry { stream: stream.to_owned(), id, fields: self.fields, oversized }
    }
}

async fn array(socket: &mut RespSocket) -> RedisResult<Option<usize>> {
    match socket.header().await? {
        Header::Array(n) => Ok(n),
        _ => Err(unexpected("an array expected")),
    }
}

/// A bulk string's announced length.
async fn length(socket: &mut RespSocket) -> RedisResult<usize> {
    match socket.header().await? {
        Header::Bulk(Some(len)) => Ok(len),
        _ => Err(unexpected("a bulk string expected")),
    }
}

async fn bulk(socket: &mut RespSocket) -> RedisResult<Bytes> {
    let len = length(socket).await?;
    socket.bulk(len).await
}

fn text(b: Bytes) -> RedisResult<String> {
    String::from_utf8(b.into()).map_err(|_| unexpected("a stream name or id that is not UTF-8"))
}
