//! Redis Cluster. The reader names all of its streams in one command (an `XREADGROUP` or a
//! script call), and a cluster runs one only when every key it names hashes to one slot
//! (otherwise each read fails with `CROSSSLOT`, forever). So a reader's streams must share a hash tag — the part of a key
//! between `{` and `}`, e.g. `{intuition}:intuition_deposited` — and this is checked when the
//! reader connects, with an error that says so, rather than found at the first read.

use std::collections::BTreeMap;

use redis::aio::ConnectionLike;
use redis::RedisResult;

/// On a cluster, the slot of each of `keys` when they do not all share one; `None` when they
/// do, or when the server is not a cluster.
pub async fn split_slots(con: &mut impl ConnectionLike, keys: &[String]) -> RedisResult<Option<Vec<(String, i64)>>> {
    let info: String = redis::cmd("INFO").arg("cluster").query_async(con).await?;
    if !info.lines().any(|l| l.trim() == "cluster_enabled:1") {
        return Ok(None);
    }
    let mut slots = BTreeMap::new();
    for key in keys {
        let slot: i64 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(con).await?;
        slots.insert(key.clone(), slot);
    }
    let first = slots.values().next().copied();
    Ok(slots.values().any(|s| Some(*s) != first).then(|| slots.into_iter().collect()))
}
