//! Inputs shared by the micro-benchmarks: a realistic workload's payloads, and the same as
//! the messages the reader hands to the batch stage.

use loadgen::{generate, WorkloadConfig};
use rps::ingest::message::Message;

/// Payloads of a clean `events`-event workload (50 events per message, as rindexer packs).
pub fn payloads(events: usize) -> Vec<String> {
    generate(&WorkloadConfig { events, seed: 7, ..WorkloadConfig::default() })
        .messages
        .into_iter()
        .map(|m| m.payload)
        .collect()
}

/// [`payloads`] as stream messages of one stream, numbered in order.
pub fn messages(events: usize) -> Vec<Message> {
    payloads(events)
        .into_iter()
        .enumerate()
        .map(|(i, p)| Message { stream: "s".into(), id: format!("0-{i}"), payload: Ok(p.into()) })
        .collect()
}
