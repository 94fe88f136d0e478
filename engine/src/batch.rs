//! A batch: what one read of the streams decodes into, ready for one transaction.

use crate::decode::decode_payload;
use crate::event::Event;
use crate::source::{DeadLetter, Message};

#[derive(Debug, Default)]
pub struct Batch {
    /// Valid events in chain order, each (transaction_hash, log_index) once.
    pub events: Vec<Event>,
    /// Distinct term ids the events touch, sorted: the lock set and the cascade set.
    pub term_ids: Vec<String>,
    /// Every entry read, to be acked once the batch commits.
    pub acks: Vec<(String, String)>,
    /// Rejected messages and events, written to the dead-letter streams before the acks.
    pub dead_letters: Vec<DeadLetter>,
    /// Time the reader spent reading and decoding it.
    pub times: crate::pipeline::StageTimes,
}

impl Batch {
    pub fn from_messages(messages: Vec<Message>) -> Batch {
        let mut batch = Batch::default();
        for m in messages {
            batch.add(m);
        }
        batch.events.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        batch
            .events
            .dedup_by(|a, b| a.tx.transaction_hash == b.tx.transaction_hash && a.tx.log_index == b.tx.log_index);
        let mut ids: Vec<String> = batch.events.iter().flat_map(|e| e.term_ids()).map(str::to_owned).collect();
        ids.sort_unstable();
        ids.dedup();
        batch.term_ids = ids;
        batch
    }

    fn add(&mut self, m: Message) {
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
                self.events.extend(decoded.events);
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
}
