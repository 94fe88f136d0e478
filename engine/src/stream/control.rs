//! Acks, dead letters and group bookkeeping, on a connection apart from the reads.

use std::collections::BTreeMap;

use redis::aio::ConnectionManager;
use redis::streams::{StreamInfoGroupsReply, StreamMaxlen, StreamPendingReply};
use redis::{AsyncCommands, RedisResult};

use super::{connect_managed, dead_letter_stream, DeadLetter, EntryKey};

#[derive(Clone)]
pub struct StreamControl {
    con: ConnectionManager,
    group: String,
    /// Each dead-letter stream is trimmed to this many entries (the oldest go first).
    dead_letter_maxlen: usize,
}

/// Dead letters kept per dead-letter stream by default.
pub const DEAD_LETTER_MAXLEN: usize = 100_000;

impl StreamControl {
    pub async fn new(redis_url: &str, group: &str, dead_letter_maxlen: usize) -> RedisResult<Self> {
        Ok(StreamControl { con: connect_managed(redis_url).await?, group: group.to_owned(), dead_letter_maxlen })
    }

    /// Write dead letters, then ack every entry, in one round trip. Dead letters go first:
    /// an entry is acked only once its rejection is recorded. MULTI makes it all or nothing,
    /// so a connection lost halfway cannot ack without the dead letters; a retry after a lost
    /// reply may write a dead letter twice, never zero times.
    pub async fn finish(&mut self, acks: &[EntryKey], dead: &[DeadLetter]) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let maxlen = StreamMaxlen::Equals(self.dead_letter_maxlen);
        for d in dead {
            pipe.xadd_maxlen(
                dead_letter_stream(&d.stream),
                maxlen,
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

    /// Delete the entries of `stream` this group is done with: those before its oldest
    /// pending entry, or up to its last delivered one when nothing is pending. Only right
    /// when no other group reads the stream.
    pub async fn trim_processed(&mut self, stream: &str) -> RedisResult<()> {
        let groups: StreamInfoGroupsReply = self.con.xinfo_groups(stream).await?;
        let Some(group) = groups.groups.into_iter().find(|g| g.name == self.group) else { return Ok(()) };
        let oldest_pending = match self.con.xpending(stream, &self.group).await? {
            StreamPendingReply::Data(data) => Some(data.start_id),
            _ => None,
        };
        let keep_from = oldest_pending.unwrap_or(group.last_delivered_id);
        let _trimmed: i64 =
            redis::cmd("XTRIM").arg(stream).arg("MINID").arg(keep_from).query_async(&mut self.con).await?;
        Ok(())
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
