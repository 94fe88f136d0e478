//! Packing events into messages the way rindexer does: one open message per event type.
//! With rindexer's encoding a message holds one block's events of its type (a block with
//! more than about 75 KB of them is sent in chunks, in any order); with the mixed one it
//! spans blocks.
//! Either way it is sent once it holds `events_per_message` events.
//!
//! The packer draws from its own random stream, so how events are packed never changes
//! the events themselves.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::encode::{self, Encoding, Fields};
use super::{EventType, MessageKind, StreamMessage};

/// rindexer splits a block's events of one type into chunks of about this many bytes.
const CHUNK_BYTES: usize = 75_000;

/// The message being filled for one event type.
#[derive(Default)]
struct Open {
    events: Vec<String>,
    bytes: usize,
    /// The highest block among the events (rindexer: the block).
    block: u64,
    /// Chunks of that block already cut.
    chunk: usize,
    /// rindexer's encoding: the block's chunks cut so far, sent together when the block ends
    /// and in any order, as rindexer XADDs a block's chunks concurrently.
    chunks: Vec<StreamMessage>,
}

pub(crate) struct Packer {
    per_message: usize,
    encoding: Encoding,
    rng: ChaCha8Rng,
    open: [Open; 5],
    pub messages: Vec<StreamMessage>,
}

impl Packer {
    pub fn new(per_message: usize, encoding: Encoding, rng: ChaCha8Rng) -> Self {
        Packer { per_message: per_message.max(1), encoding, rng, open: Default::default(), messages: Vec::new() }
    }

    pub fn push(&mut self, ty: EventType, block: u64, event: String) {
        let open = &self.open[ty as usize];
        let per_block = self.encoding == Encoding::Rindexer;
        if per_block && !open.events.is_empty() && open.block != block {
            self.flush(ty);
            self.release(ty);
            self.open[ty as usize].chunk = 0;
        } else if per_block && open.bytes + event.len() > CHUNK_BYTES && !open.events.is_empty() {
            self.flush(ty);
        }
        let open = &mut self.open[ty as usize];
        open.bytes += event.len() + 1;
        open.events.push(event);
        open.block = open.block.max(block);
        if open.events.len() >= self.per_message {
            self.flush(ty);
        }
    }

    /// Send every open message, so that what was pushed so far is delivered before
    /// anything pushed later.
    pub fn flush_all(&mut self) {
        for ty in EventType::ALL {
            self.flush(ty);
            self.release(ty);
        }
    }

    /// Send the held chunks of a block, shuffled.
    fn release(&mut self, ty: EventType) {
        let mut chunks = std::mem::take(&mut self.open[ty as usize].chunks);
        chunks.shuffle(&mut self.rng);
        self.messages.extend(chunks);
    }

    fn flush(&mut self, ty: EventType) {
        let open = &mut self.open[ty as usize];
        if open.events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut open.events);
        open.bytes = 0;
        let (block, chunk) = (open.block, open.chunk);
        open.chunk += 1;
        let id = match self.encoding {
            Encoding::Rindexer => message_id(ty, block, chunk),
            Encoding::Mixed => format!("rindexer_stream__{}", self.messages.len()),
        };
        let count = events.len();
        let payload = envelope(&mut self.rng, self.encoding, ty, block, &id, events);
        let message = StreamMessage {
            stream: ty.stream().to_owned(),
            payload,
            kind: MessageKind::Original,
            events: count,
            entry_id: None,
        };
        match self.encoding {
            Encoding::Rindexer => self.open[ty as usize].chunks.push(message),
            Encoding::Mixed => self.messages.push(message),
        }
    }
}

/// rindexer's message id: contract, event, network, the block range it was fetching (here
/// the block), the block and the chunk.
fn message_id(ty: EventType, block: u64, chunk: usize) -> String {
    let event = ty.name().to_ascii_lowercase();
    format!("rindexer_stream__-multivault-{event}-{}-{block}-{block}-blk{block}-chunk-{chunk}", super::chain::NETWORK)
}

/// The message around a batch of events, fields as rindexer writes them.
pub(crate) fn envelope(
    rng: &mut impl Rng,
    enc: Encoding,
    ty: EventType,
    block: u64,
    message_id: &str,
    events: Vec<String>,
) -> String {
    let single = events.len() == 1 && rng.gen_bool(0.5) && enc == Encoding::Mixed;
    let data = if single { events.into_iter().next().expect("one event") } else { format!("[{}]", events.join(",")) };
    encode::object(&envelope_fields(rng, enc, ty, block, message_id, data))
}

/// The envelope's fields, `event_data` already rendered (an array or a single object).
pub(crate) fn envelope_fields(
    rng: &mut impl Rng,
    enc: Encoding,
    ty: EventType,
    block: u64,
    message_id: &str,
    data: String,
) -> Fields {
    // Some older producers leave the envelope's block number at 0 (see
    // samples/mixed-encodings.jsonl); rindexer v0.41 writes the block.
    let zero = rng.gen_ratio(1, 10) && enc == Encoding::Mixed;
    let block = if zero { 0 } else { block };
    let mut fields = vec![
        ("event_name", encode::string(ty.name())),
        ("event_signature_hash", encode::string(ty.signature_hash())),
        ("network", encode::string(super::chain::NETWORK)),
        ("block_number", block.to_string()),
        ("message_id", encode::string(message_id)),
        ("event_data", data),
    ];
    enc.order(&mut fields);
    fields
}
