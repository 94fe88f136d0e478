//! What Redis says about a consumer group on a stream: length, lag, pending entries. Used by
//! the monitor, `/health` and `doctor`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamInfoGroupsReply, StreamPendingReply};
use redis::RedisResult;

/// One consumer group on one stream, as Redis sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupStatus {
    pub stream: String,
    pub group: String,
    /// Entries in the stream (XLEN); 0 when the stream does not exist.
    pub length: u64,
    pub stream_exists: bool,
    pub group_exists: bool,
    /// Entries not yet delivered to the group. `None` when Redis cannot tell (entries were
    /// deleted inside the unread range) or the server predates Redis 7.
    pub lag: Option<u64>,
    /// Entries delivered and not acked (the group's PEL, as XPENDING counts it).
    pub pending: u64,
    pub consumers: u64,
    pub last_delivered_id: String,
    /// Age of the oldest pending entry, from its id's timestamp.
    pub oldest_pending_age: Option<Duration>,
}

/// Ask Redis for `group` on `stream`. A missing stream or group is reported, not an error.
pub async fn group_status(con: &mut MultiplexedConnection, stream: &str, group: &str) -> RedisResult<GroupStatus> {
    let mut status = GroupStatus { stream: stream.to_owned(), group: group.to_owned(), ..Default::default() };
    let (exists, length): (bool, u64) = redis::pipe().exists(stream).xlen(stream).query_async(con).await?;
    status.stream_exists = exists;
    status.length = length;
    if !exists {
        return Ok(status);
    }
    let groups: StreamInfoGroupsReply = redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(con).await?;
    let Some(g) = groups.groups.into_iter().find(|g| g.name == group) else {
        return Ok(status);
    };
    status.group_exists = true;
    status.pending = g.pending as u64;
    status.consumers = g.consumers as u64;
    // Redis 7 leaves `lag` empty when it cannot compute it; a group that has been handed
    // nothing yet has the whole stream ahead of it either way.
    status.lag = g.lag.map(|l| l as u64).or((g.last_delivered_id == "0-0").then_some(length));
    status.last_delivered_id = g.last_delivered_id;
    if status.pending > 0 {
        let reply: StreamPendingReply = redis::cmd("XPENDING").arg(stream).arg(group).query_async(con).await?;
        if let StreamPendingReply::Data(data) = reply {
            status.oldest_pending_age = id_age(&data.start_id);
        }
    }
    Ok(status)
}

/// How long ago a stream entry id (`<ms>-<seq>`) was generated.
pub fn id_age(id: &str) -> Option<Duration> {
    let ms: u64 = id.split('-').next()?.parse().ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(Duration::from_millis(now.saturating_sub(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_age_reads_the_millisecond_part() {
        assert!(id_age("0-1").unwrap() > Duration::from_secs(1_000_000));
        assert_eq!(id_age("garbage"), None);
    }
}
