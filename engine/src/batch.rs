//! A batch: what one read of the streams decodes into, ready for one transaction.

use crate::decode::{decode_payload, encode_payload};
use crate::event::Event;
use crate::source::{DeadLetter, Message};

#[derive(Debug, Default)]
pub struct Batch {
    /// Valid events in chain order, each (transaction_hash, log_index) once.
    pub events: Vec<Event>,
    /// Distinct term ids the events touch, sorted: the lock set and the cascade set.
    pub term_ids: Vec<String>,
    /// For each event, the index in `acks` of the entry it came from (to dead-letter an
    /// event that PostgreSQL refuses, see [`crate::pipeline`]).
    pub origins: Vec<u32>,
    /// Every entry read, to be acked once the batch commits.
    pub acks: Vec<(String, String)>,
    /// Rejected messages and events, written to the dead-letter streams before the acks.
    pub dead_letters: Vec<DeadLetter>,
    /// `events` already in binary COPY format, encoded by the reader so the writer only
    /// streams bytes (None if encoding failed: the writer then encodes itself and reports).
    pub encoded: Option<Vec<crate::stage::EncodedTable>>,
    /// Time the reader spent reading and decoding it.
    pub times: crate::pipeline::StageTimes,
}

impl Batch {
    pub fn from_messages(messages: Vec<Message>) -> Batch {
        let mut batch = Batch::default();
        let mut events = Vec::new();
        for m in messages {
            batch.add(m, &mut events);
        }
        events.sort_by(|(a, _), (b, _)| a.order_key().cmp(&b.order_key()));
        events.dedup_by(|(a, _), (b, _)| {
            a.tx.transaction_hash == b.tx.transaction_hash && a.tx.log_index == b.tx.log_index
        });
        (batch.events, batch.origins) = events.into_iter().unzip();
        batch.term_ids = term_ids_of(&batch.events);
        batch.encoded = crate::stage::encode_events(&batch.events).ok();
        batch
    }

    fn add(&mut self, m: Message, events: &mut Vec<(Event, u32)>) {
        let origin = self.acks.len() as u32;
        self.acks.push((m.stream.clone(), m.id.clone()));
        let raw = match m.payload {
            Ok(raw) => raw,
            Err(error) => {
                tracing::warn!(stream = %m.stream, id = %m.id, %error, "dead-lettering message");
                self.dead_letters.push(DeadLetter { stream: m.stream, id: m.id, payload: Vec::new(), error });
                return;
            }
        };
        match decode_payload(&raw) {
            Ok(decoded) => {
                events.extend(decoded.events.into_iter().map(|e| (e, origin)));
                for f in decoded.failures {
                    tracing::warn!(stream = %m.stream, id = %m.id, error = %f.error, "dead-lettering event");
                    self.dead_letters.push(DeadLetter {
                        stream: m.stream.clone(),
                        id: m.id.clone(),
                        payload: f.payload.into_bytes(),
                        error: f.error.0,
                    });
                }
            }
            Err(error) => {
                tracing::warn!(stream = %m.stream, id = %m.id, %error, "dead-lettering message");
                self.dead_letters.push(DeadLetter { stream: m.stream, id: m.id, payload: raw, error: error.0 });
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }

    /// A dead letter for event `i`, which passed decoding but PostgreSQL refused: its
    /// origin entry, and the event re-encoded alone in the producer's format.
    pub fn event_dead_letter(&self, i: usize, error: String) -> DeadLetter {
        let (stream, id) = self.acks[self.origins[i] as usize].clone();
        DeadLetter { stream, id, payload: encode_payload(&self.events[i]).into_bytes(), error }
    }
}

/// Distinct term ids of `events`, sorted: the lock set and the cascade set.
pub fn term_ids_of(events: &[Event]) -> Vec<String> {
    let mut ids: Vec<String> = events.iter().flat_map(|e| e.term_ids()).map(str::to_owned).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
