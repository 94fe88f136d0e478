//! Packing events into messages the way rindexer does: one open message per event type,
//! sent when it holds `events_per_message` events.

use rand::Rng;

use super::encode::{self, Fields};
use super::{EventType, MessageKind, StreamMessage};

pub(crate) struct Packer {
    per_message: usize,
    /// Open message per event type: rendered events and the highest block among them.
    open: [(Vec<String>, u64); 5],
    pub messages: Vec<StreamMessage>,
}

impl Packer {
    pub fn new(per_message: usize) -> Self {
        Packer { per_message: per_message.max(1), open: Default::default(), messages: Vec::new() }
    }

    pub fn push(&mut self, rng: &mut impl Rng, ty: EventType, block: u64, event: String) {
        let (events, max_block) = &mut self.open[ty as usize];
        events.push(event);
        *max_block = (*max_block).max(block);
        if events.len() >= self.per_message {
            self.flush(rng, ty);
        }
    }

    /// Send every open message, so that what was pushed so far is delivered before
    /// anything pushed later.
    pub fn flush_all(&mut self, rng: &mut impl Rng) {
        for ty in EventType::ALL {
            self.flush(rng, ty);
        }
    }

    fn flush(&mut self, rng: &mut impl Rng, ty: EventType) {
        let (events, max_block) = std::mem::take(&mut self.open[ty as usize]);
        if events.is_empty() {
            return;
        }
        let id = self.messages.len();
        let count = events.len();
        let payload = envelope(rng, ty, max_block, &format!("rindexer_stream__{id}"), events);
        self.messages.push(StreamMessage {
            stream: ty.stream().to_owned(),
            payload,
            kind: MessageKind::Original,
            events: count,
        });
    }
}

/// The message around a batch of events, fields as rindexer writes them.
pub(crate) fn envelope(rng: &mut impl Rng, ty: EventType, block: u64, message_id: &str, events: Vec<String>) -> String {
    let data = if events.len() == 1 && rng.gen_bool(0.5) {
        events.into_iter().next().expect("one event")
    } else {
        format!("[{}]", events.join(","))
    };
    encode::object(&envelope_fields(rng, ty, block, message_id, data))
}

/// The envelope's fields, `event_data` already rendered (an array or a single object).
pub(crate) fn envelope_fields(rng: &mut impl Rng, ty: EventType, block: u64, message_id: &str, data: String) -> Fields {
    // Some rindexer versions leave the envelope's block number at 0 (see the samples).
    let block = if rng.gen_ratio(1, 10) { 0 } else { block };
    vec![
        ("event_name", encode::string(ty.name())),
        ("event_signature_hash", encode::string(ty.signature_hash())),
        ("network", encode::string(super::chain::NETWORK)),
        ("block_number", block.to_string()),
        ("message_id", encode::string(message_id)),
        ("event_data", data),
    ]
}
