//! Source: rindexer's Redis streams, read through one consumer group.
//!
//! Reads block on their own connection (a blocking XREADGROUP would stall every other
//! command on a shared multiplexed connection); acks, dead letters and bookkeeping use a
//! second one. Both are [`ConnectionManager`]s: a plain multiplexed connection stays dead
//! after Redis restarts, while a manager reconnects in the background after an I/O error,
//! so the caller's retry loop picks up a fresh connection on its next attempt.

use std::time::Duration;

use anyhow::{Context, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamPendingReply, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisResult, Value};

/// Field names a producer may carry the JSON in, in order of preference.
pub const PAYLOAD_FIELDS: [&str; 3] = ["payload", "event_data", "data"];

/// One stream entry.
#[derive(Debug, Clone)]
pub struct Message {
    pub stream: String,
    pub id: String,
    /// The raw JSON bytes, or why the entry has none.
    pub payload: Result<Vec<u8>, String>,
}

/// A rejected input on its way to `<stream>:dlq`.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub stream: String,
    pub id: String,
    pub payload: Vec<u8>,
    pub error: String,
}

pub fn dead_letter_stream(stream: &str) -> String {
    format!("{stream}:dlq")
}

/// Open a connection with no response timeout (reads block for `BLOCK ms`).
pub async fn connect(redis_url: &str) -> Result<MultiplexedConnection> {
    let client = Client::open(redis_url).with_context(|| format!("invalid REDIS_URL {redis_url}"))?;
    let config =
        AsyncConnectionConfig::new().set_response_timeout(None).set_connection_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .with_context(|| format!("cannot connect to Redis at {redis_url}"))
}

/// A connection that reconnects by itself after Redis restarts or the link drops. No
/// response timeout (reads block for `BLOCK ms`). The manager's own reconnection retries
/// are few and short: callers retry with their own backoff, which also watches shutdown.
pub async fn connect_managed(redis_url: &str) -> Result<ConnectionManager> {
    let client = Client::open(redis_url).with_context(|| format!("invalid REDIS_URL {redis_url}"))?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_with_config(client, config)
        .await
        .with_context(|| format!("cannot connect to Redis at {redis_url}"))
}

/// Whether a Redis error says the consumer group (or its stream) is gone, as after a
/// restart of a Redis without persistence: the groups must be created again.
pub fn is_missing_group(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<redis::RedisError>().is_some_and(|r| r.code() == Some("NOGROUP")))
}

/// Reads one consumer's share of the configured streams.
pub struct StreamReader {
    con: ConnectionManager,
    streams: Vec<String>,
    group: String,
    consumer: String,
    count: usize,
    block_ms: usize,
    /// Per stream, the id after which the next read of this consumer's own pending entries
    /// starts (see [`StreamReader::read_own_pending`]).
    pending_after: Vec<String>,
}

impl StreamReader {
    pub async fn new(
        redis_url: &str,
        streams: &[String],
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Self> {
        let con = connect_managed(redis_url).await?;
        let reader = StreamReader {
            con,
            streams: streams.to_vec(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            count: count.max(1),
            block_ms: block.as_millis() as usize,
            pending_after: vec!["0".to_owned(); streams.len()],
        };
        Ok(reader)
    }

    /// Create the consumer group on every stream (and the stream itself) if missing.
    /// The group starts at the beginning so a backfill sees the whole stream.
    pub async fn ensure_groups(&mut self) -> Result<()> {
        for stream in &self.streams {
            let created: RedisResult<()> = self.con.xgroup_create_mkstream(stream, &self.group, "0").await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e).with_context(|| format!("XGROUP CREATE {stream} {}", self.group)),
            }
        }
        Ok(())
    }

    /// Entries delivered to this consumer name before and never acked (after a restart),
    /// page after page. Each read starts after the last entry the previous one returned:
    /// entries handed to the writer stay pending until their batch commits, and reading
    /// from the start again would deliver them twice (applied twice, dead-lettered twice).
    pub async fn read_own_pending(&mut self) -> Result<Vec<Message>> {
        let opts = StreamReadOptions::default().group(&self.group, &self.consumer).count(self.count);
        let reply: StreamReadReply =
            self.con.xread_options(&self.streams, &self.pending_after, &opts).await.context("XREADGROUP pending")?;
        for key in &reply.keys {
            if let (Some(i), Some(last)) = (self.streams.iter().position(|s| *s == key.key), key.ids.last()) {
                self.pending_after[i] = last.id.clone();
            }
        }
        Ok(flatten(reply))
    }

    /// Make the next [`StreamReader::read_own_pending`] start from the first pending entry.
    pub fn reread_own_pending(&mut self) {
        self.pending_after.iter_mut().for_each(|id| *id = "0".to_owned());
    }

    /// New entries, blocking up to `block_ms` when there are none.
    pub async fn read_new(&mut self) -> Result<Vec<Message>> {
        let ids = vec![">"; self.streams.len()];
        let opts =
            StreamReadOptions::default().group(&self.group, &self.consumer).count(self.count).block(self.block_ms);
        let reply: Option<StreamReadReply> =
            self.con.xread_options(&self.streams, &ids, &opts).await.context("XREADGROUP")?;
        Ok(reply.map(flatten).unwrap_or_default())
    }

    /// Claim entries other consumers left pending for longer than `min_idle`.
    pub async fn claim_stale(&mut self, min_idle: Duration) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        for stream in &self.streams {
            let mut start = "0-0".to_owned();
            loop {
                let opts = StreamAutoClaimOptions::default().count(self.count);
                let reply: StreamAutoClaimReply = self
                    .con
                    .xautoclaim_options(stream, &self.group, &self.consumer, min_idle.as_millis() as u64, &start, opts)
                    .await
                    .context("XAUTOCLAIM")?;
                out.extend(reply.claimed.into_iter().map(|e| message(stream, e)));
                if reply.next_stream_id == "0-0" || out.len() >= self.count {
                    break;
                }
                start = reply.next_stream_id;
            }
        }
        Ok(out)
    }
}

fn flatten(reply: StreamReadReply) -> Vec<Message> {
    reply
        .keys
        .into_iter()
        .flat_map(|key| {
            let stream = key.key;
            key.ids.into_iter().map(move |entry| message(&stream, entry))
        })
        .collect()
}

fn message(stream: &str, mut entry: StreamId) -> Message {
    // Moved out of the reply, not copied: a backfill batch carries tens of megabytes.
    let payload = PAYLOAD_FIELDS
        .iter()
        .find_map(|f| entry.map.remove(*f))
        .map(|v| match v {
            Value::BulkString(b) => Ok(b),
            Value::SimpleString(s) => Ok(s.into_bytes()),
            other => Err(format!("payload field is not a string: {other:?}")),
        })
        .unwrap_or_else(|| {
            let mut fields: Vec<&String> = entry.map.keys().collect();
            fields.sort();
            Err(format!("no payload field (expected one of payload, event_data, data; found {fields:?})"))
        });
    Message { stream: stream.to_owned(), id: entry.id, payload }
}

/// Acks, dead letters and group bookkeeping.
#[derive(Clone)]
pub struct StreamControl {
    con: ConnectionManager,
    group: String,
}

impl StreamControl {
    pub async fn new(redis_url: &str, group: &str) -> Result<Self> {
        Ok(StreamControl { con: connect_managed(redis_url).await?, group: group.to_owned() })
    }

    /// The connection, for other bookkeeping commands (e.g. publishing the outbox).
    pub fn connection(&self) -> ConnectionManager {
        self.con.clone()
    }

    /// Write dead letters, then ack every entry of the batch, in one round trip.
    /// Dead letters go first: an entry is acked only once its rejection is recorded. MULTI
    /// makes it all or nothing, so a connection lost halfway cannot ack without the dead
    /// letters; a retry after a lost reply may write a dead letter twice, never zero times.
    pub async fn finish(&mut self, acks: &[(String, String)], dead: &[DeadLetter]) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for d in dead {
            pipe.xadd(
                dead_letter_stream(&d.stream),
                "*",
                &[
                    ("payload", d.payload.as_slice()),
                    ("error", d.error.as_bytes()),
                    ("stream", d.stream.as_bytes()),
                    ("id", d.id.as_bytes()),
                ],
            )
            .ignore();
        }
        let mut by_stream: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (stream, id) in acks {
            by_stream.entry(stream).or_default().push(id);
        }
        for (stream, ids) in by_stream {
            pipe.xack(stream, &self.group, &ids).ignore();
        }
        let _: () = pipe.query_async(&mut self.con).await.context("XADD dead letters / XACK")?;
        Ok(())
    }

    /// Entries delivered to some consumer of the group and not yet acked, over `streams`.
    pub async fn pending(&mut self, streams: &[String]) -> Result<usize> {
        let mut total = 0;
        for stream in streams {
            let reply: StreamPendingReply = self.con.xpending(stream, &self.group).await.context("XPENDING")?;
            total += reply.count();
        }
        Ok(total)
    }
}
