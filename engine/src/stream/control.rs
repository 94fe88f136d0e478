//! Acks, dead letters and group bookkeeping, on a connection apart from the reads.

use std::collections::BTreeMap;

use redis::aio::ConnectionManager;
use redis::streams::StreamPendingReply;
use redis::{AsyncCommands, RedisResult};

use super::{connect_managed, dead_letter_stream, DeadLetter, EntryKey};

#[derive(Clone)]
pub struct StreamControl {
    con: ConnectionManager,
    group: String,
}

impl StreamControl {
    pub async fn new(redis_url: &str, group: &str) -> RedisResult<Self> {
        Ok(StreamControl { con: connect_managed(redis_url).await?, group: group.to_owned() })
    }

    /// Write dead letters, then ack every entry, in one round trip. Dead letters go first:
    /// an entry is acked only once its rejection is recorded. MULTI makes it all or nothing,
    /// so a connection lost halfway cannot ack without the dead letters; a retry after a lost
    /// reply may write a dead letter twice, never zero times.
    pub async fn finish(&mut self, acks: &[EntryKey], dead: &[DeadLetter]) -> RedisResult<()> {
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
        let mut by_stream: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (stream, id) in acks {
            by_stream.entry(stream).or_default().push(id);
        }
        for (stream, ids) in by_stream {
            pipe.xack(stream, &self.group, &ids).ignore();
        }
        pipe.query_async(&mut self.con).await
    }

    /// Entries delivered to some consumer of the group and not yet acked, over `streams`.
    pub async fn pending(&mut self, streams: &[String]) -> RedisResult<usize> {
        let mut total = 0;
        for stream in streams {
            let reply: StreamPendingReply = self.con.xpending(stream, &self.group).await?;
            total += reply.count();
        }
        Ok(total)
    }
}
