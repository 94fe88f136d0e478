//! Inputs shared by the micro-benchmarks: a realistic workload's payloads.

use loadgen::{generate, WorkloadConfig};

/// Payloads of a clean `events`-event workload (50 events per message, as rindexer packs).
pub fn payloads(events: usize) -> Vec<String> {
    generate(&WorkloadConfig { events, seed: 7, ..WorkloadConfig::default() })
        .messages
        .into_iter()
        .map(|m| m.payload)
        .collect()
}
