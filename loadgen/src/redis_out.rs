//! Writing messages to Redis streams the way rindexer does: `XADD <stream> * payload <json>`
//! (or with the entry id a workload gives, for publication times that matter).
//!
//! Commands go out in pipelines, since one round trip per message would cap a backfill at
//! a few thousand messages per second. With a rate, pipelines shrink and are spaced so
//! that events arrive at that pace, as from a live chain.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::aio::{ConnectionLike, MultiplexedConnection};

use crate::workload::{EventType, StreamMessage};

pub const DEFAULT_PIPELINE: usize = 500;
/// Paced writes are spread over this many slices per second.
const PACING_SLICES_PER_SEC: f64 = 20.0;

/// The Redis stream of a logical stream: `<prefix>intuition_<logical>`. With the empty
/// prefix these are the engine's default `--streams`.
pub fn stream_key(prefix: &str, logical: &str) -> String {
    format!("{prefix}intuition_{logical}")
}

/// The five stream names a workload uses under `prefix`.
pub fn stream_keys(prefix: &str) -> Vec<String> {
    EventType::ALL.iter().map(|t| stream_key(prefix, t.stream())).collect()
}

#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub stream_prefix: String,
    /// Events per second; `None` writes as fast as Redis takes them (backfill).
    pub rate: Option<f64>,
    /// Commands per pipeline.
    pub pipeline: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { stream_prefix: String::new(), rate: None, pipeline: DEFAULT_PIPELINE }
    }
}

/// One XADD: full stream key, entry id (`*` for Redis's), payload text and the events it
/// carries (for pacing).
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub key: &'a str,
    pub id: &'a str,
    pub payload: &'a str,
    pub events: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WriteSummary {
    pub messages: usize,
    pub events: usize,
    pub elapsed: Duration,
}

impl WriteSummary {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn connect(url: &str) -> anyhow::Result<MultiplexedConnection> {
    let redacted = rps::runtime::redact::redact(url);
    rps::stream::connect(url).await.with_context(|| format!("cannot connect to Redis at {redacted}"))
}

/// XADD a workload's messages, in order, to `<prefix>intuition_<stream>`.
pub async fn write_messages(
    con: &mut impl ConnectionLike,
    messages: &[StreamMessage],
    options: &WriteOptions,
) -> anyhow::Result<WriteSummary> {
    let keys: HashMap<&str, String> =
        messages.iter().map(|m| (m.stream.as_str(), stream_key(&options.stream_prefix, &m.stream))).collect();
    let entries: Vec<Entry> = messages
        .iter()
        .map(|m| Entry {
            key: &keys[m.stream.as_str()],
            id: m.entry_id.as_deref().unwrap_or("*"),
            payload: &m.payload,
            events: m.events,
        })
        .collect();
    write_entries(con, &entries, options.rate, options.pipeline).await
}

/// XADD `entries` in order, pipelined, paced to `rate` events per second when given.
pub async fn write_entries(
    con: &mut impl ConnectionLike,
    entries: &[Entry<'_>],
    rate: Option<f64>,
    pipeline: usize,
) -> anyhow::Result<WriteSummary> {
    let rate = rate.filter(|r| *r > 0.0);
    // Paced: small enough pipelines that the stream fills smoothly, not in bursts.
    let events_per_chunk = rate.map_or(usize::MAX, |r| (r / PACING_SLICES_PER_SEC).ceil() as usize);
    let start = Instant::now();
    let mut summary = WriteSummary::default();
    let mut rest = entries;
    while !rest.is_empty() {
        let len = chunk_len(rest, pipeline.max(1), events_per_chunk);
        let (chunk, tail) = rest.split_at(len);
        if let Some(rate) = rate {
            tokio::time::sleep_until((start + Duration::from_secs_f64(summary.events as f64 / rate)).into()).await;
        }
        xadd_pipeline(con, chunk).await?;
        summary.messages += chunk.len();
        summary.events += chunk.iter().map(|e| e.events).sum::<usize>();
        rest = tail;
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// How many leading entries form the next pipeline (always at least one).
fn chunk_len(entries: &[Entry<'_>], max_commands: usize, max_events: usize) -> usize {
    let mut events = 0usize;
    for (i, e) in entries.iter().take(max_commands).enumerate() {
        events += e.events;
        if events >= max_events {
            return i + 1;
        }
    }
    entries.len().min(max_commands)
}

async fn xadd_pipeline(con: &mut impl ConnectionLike, chunk: &[Entry<'_>]) -> anyhow::Result<()> {
    let mut pipe = redis::pipe();
    for e in chunk {
        pipe.cmd("XADD").arg(e.key).arg(e.id).arg("payload").arg(e.payload).ignore();
    }
    pipe.exec_async(con).await.context(
        "XADD pipeline failed (a workload with reorgs carries its own entry ids: it needs streams \
         without later entries, e.g. a new --stream-prefix)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{generate, WorkloadConfig};

    fn entries(events: &[usize]) -> Vec<Entry<'static>> {
        events.iter().map(|&n| Entry { key: "k", id: "*", payload: "{}", events: n }).collect()
    }

    #[test]
    fn default_stream_names_match_the_engine() {
        assert_eq!(
            stream_keys(""),
            [
                "intuition_atom_created",
                "intuition_triple_created",
                "intuition_deposited",
                "intuition_redeemed",
                "intuition_share_price_changed"
            ]
        );
        assert_eq!(stream_key("t1_", "deposited"), "t1_intuition_deposited");
    }

    #[test]
    fn chunks_respect_both_limits() {
        let e = entries(&[10, 10, 10, 10, 10]);
        assert_eq!(chunk_len(&e, 500, usize::MAX), 5);
        assert_eq!(chunk_len(&e, 2, usize::MAX), 2);
        assert_eq!(chunk_len(&e, 500, 25), 3);
        assert_eq!(chunk_len(&e, 500, 1), 1);
    }

    /// Against the local Redis; skipped (with a note) when none is reachable.
    #[tokio::test]
    async fn writes_every_message_to_its_stream() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let Ok(mut con) = connect(&url).await else {
            eprintln!("skipped: no Redis at {url}");
            return;
        };
        let prefix = format!("loadgen_test_{}_", std::process::id());
        let config =
            WorkloadConfig { events: 2_000, events_per_message: 7, malformed_rate: 0.05, ..Default::default() };
        let workload = generate(&config);
        let options = WriteOptions { stream_prefix: prefix.clone(), pipeline: 64, ..Default::default() };
        let summary = write_messages(&mut con, &workload.messages, &options).await.unwrap();
        assert_eq!(summary.messages, workload.messages.len());
        let mut total = 0usize;
        for key in stream_keys(&prefix) {
            let len: usize = redis::cmd("XLEN").arg(&key).query_async(&mut con).await.unwrap();
            let expected = workload.messages.iter().filter(|m| stream_key(&prefix, &m.stream) == key).count();
            assert_eq!(len, expected, "{key}");
            total += len;
            let _: () = redis::cmd("DEL").arg(&key).query_async(&mut con).await.unwrap();
        }
        assert_eq!(total, workload.messages.len());
    }
}
