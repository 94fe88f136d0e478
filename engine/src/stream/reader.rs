//! One consumer's share of a consumer group's streams: the reader the engine and the analytics
//! worker share.
//!
//! Each call to [`GroupReader::next`] reads, in this order:
//! 1. **Own pending entries**: those this consumer name was handed before a restart and never
//!    acked (`XREADGROUP … 0`; `>` never returns them again), page after page, each page
//!    starting after the last entry of the previous one.
//! 2. **Stale entries** of other consumers, pending longer than `claim_idle` (they died):
//!    `XAUTOCLAIM`, as long as claims return entries.
//! 3. **New entries** (`XREADGROUP … >`), blocking up to `block`; claiming again every
//!    `claim_idle`.
//!
//! Every entry returned is *in flight* until its consumer says it is [`InFlight::done`]
//! (acked) or [`InFlight::give_back`]s it. In-flight entries are never returned again: a
//! re-read of own pending entries, or a claim of this consumer's own entries that waited past
//! `claim_idle` behind a slow batch, would otherwise deliver them twice (applied twice,
//! dead-lettered twice). Given-back entries stay pending and are read again, as own pending.
//!
//! After any failed read the next read starts over at the own pending entries: a read whose
//! reply was lost with the connection left its entries delivered to this consumer. A group
//! that is gone (Redis restarted without persistence) is created again, from the start.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, RedisResult};

use super::{connect_managed, Entry, EntryKey, StreamError};

/// What a reader reads, as whom, and how much.
#[derive(Clone, Debug)]
pub struct ReaderConfig {
    pub streams: Vec<String>,
    pub group: String,
    pub consumer: String,
    /// Entries per stream per read.
    pub count: usize,
    /// How long a read of new entries waits for some.
    pub block: Duration,
    /// Entries pending this long on another consumer are claimed.
    pub claim_idle: Duration,
    /// Create missing streams (empty) instead of refusing to start: a stream name with a
    /// typo would otherwise be read, empty, for ever.
    pub create_streams: bool,
}

/// `<hostname>-<pid>`: unique per process.
pub fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}", std::process::id())
}

/// What one call to [`GroupReader::next`] found.
#[derive(Debug)]
pub enum Read {
    Entries(Vec<Entry>),
    /// A read of new entries returned nothing within the block time.
    Idle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    OwnPending,
    Claim,
    New,
}

/// The entries a reader returned that are not yet acked or given back. Shared between the
/// reader and whoever acks (the engine's writer runs on another task).
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    entries: Arc<Mutex<HashSet<EntryKey>>>,
    given_back: Arc<AtomicBool>,
}

impl InFlight {
    /// These entries were acked.
    pub fn done(&self, keys: &[EntryKey]) {
        let mut set = self.entries.lock().expect("in-flight set");
        for key in keys {
            set.remove(key);
        }
    }

    /// These entries will not be acked now: they stay pending on this consumer and the
    /// reader reads its own pending entries again to deliver them once more.
    pub fn give_back(&self, keys: &[EntryKey]) {
        self.done(keys);
        self.given_back.store(true, Ordering::SeqCst);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("in-flight set").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn add(&self, entries: &[Entry]) {
        self.entries.lock().expect("in-flight set").extend(entries.iter().map(Entry::key));
    }

    /// Drop the entries already in flight.
    fn retain_new(&self, entries: &mut Vec<Entry>) {
        let set = self.entries.lock().expect("in-flight set");
        entries.retain(|e| !set.contains(&e.key()));
    }

    fn take_given_back(&self) -> bool {
        self.given_back.swap(false, Ordering::SeqCst)
    }
}

pub struct GroupReader {
    con: ConnectionManager,
    config: ReaderConfig,
    phase: Phase,
    last_claim: Instant,
    /// Per stream, the id after which the next read of own pending entries starts.
    pending_after: Vec<String>,
    in_flight: InFlight,
}

impl GroupReader {
    /// Connect, check that every stream exists (unless it may create them), and create the
    /// group on every stream if missing.
    pub async fn connect(redis_url: &str, mut config: ReaderConfig) -> Result<GroupReader, StreamError> {
        config.count = config.count.max(1);
        let pending_after = vec!["0".to_owned(); config.streams.len()];
        let con = connect_managed(redis_url).await?;
        let mut reader = GroupReader {
            con,
            config,
            phase: Phase::OwnPending,
            last_claim: Instant::now(),
            pending_after,
            in_flight: InFlight::default(),
        };
        if !reader.config.create_streams {
            reader.check_streams().await?;
        }
        reader.ensure_groups().await?;
        Ok(reader)
    }

    async fn check_streams(&mut self) -> Result<(), StreamError> {
        for stream in &self.config.streams {
            let kind: String = redis::cmd("TYPE").arg(stream).query_async(&mut self.con).await?;
            match kind.as_str() {
                "stream" => {}
                "none" => return Err(StreamError::Missing(stream.clone())),
                _ => return Err(StreamError::NotAStream { key: stream.clone(), found: kind }),
            }
        }
        Ok(())
    }

    /// The reader's in-flight set, for whoever acks its entries.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }

    /// Create the group on every stream (and the stream itself) if missing, starting at the
    /// beginning of the stream so that nothing written before the first reader is skipped.
    pub async fn ensure_groups(&mut self) -> RedisResult<()> {
        for stream in &self.config.streams {
            let created: RedisResult<()> = self.con.xgroup_create_mkstream(stream, &self.config.group, "0").await;
            match created {
                Err(e) if e.code() != Some("BUSYGROUP") => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The next entries to process, or [`Read::Idle`] when no new entry came within the block
    /// time.
    pub async fn next(&mut self) -> RedisResult<Read> {
        if self.in_flight.take_given_back() {
            self.start_over();
        }
        loop {
            let read = match self.phase {
                Phase::OwnPending => self.read_own_pending().await,
                Phase::Claim => self.claim_stale().await,
                Phase::New => self.read_new().await,
            };
            let mut entries = match read {
                Ok(entries) => entries,
                Err(e) => {
                    self.start_over();
                    if e.code() == Some("NOGROUP") {
                        // Redis lost the group: the caller retries once it exists again.
                        let _ = self.ensure_groups().await;
                    }
                    return Err(e);
                }
            };
            let was = self.phase;
            let replied = !entries.is_empty();
            // New entries can be in flight too: after a lost group is created again from
            // the start of its streams.
            self.in_flight.retain_new(&mut entries);
            // Own pending entries are paged by the reply (a page of entries in flight still
            // moves the cursor on); claims go on while they find something not in flight
            // (with a short claim_idle they keep finding this reader's own entries).
            let more = if was == Phase::OwnPending { replied } else { !entries.is_empty() };
            self.phase = self.next_phase(was, more);
            if !entries.is_empty() {
                self.in_flight.add(&entries);
                return Ok(Read::Entries(entries));
            }
            if was == Phase::New {
                return Ok(Read::Idle);
            }
        }
    }

    /// Read own pending entries again, from the first.
    fn start_over(&mut self) {
        self.phase = Phase::OwnPending;
        self.pending_after.iter_mut().for_each(|id| *id = "0".to_owned());
    }

    fn next_phase(&mut self, was: Phase, more: bool) -> Phase {
        match was {
            Phase::OwnPending if more => Phase::OwnPending,
            Phase::OwnPending => Phase::Claim,
            // Keep claiming while there is a backlog of stale entries.
            Phase::Claim if more => Phase::Claim,
            Phase::Claim => {
                self.last_claim = Instant::now();
                Phase::New
            }
            Phase::New if self.last_claim.elapsed() >= self.config.claim_idle.max(Duration::from_secs(1)) => {
                Phase::Claim
            }
            Phase::New => Phase::New,
        }
    }

    async fn read_own_pending(&mut self) -> RedisResult<Vec<Entry>> {
        let c = &self.config;
        let opts = StreamReadOptions::default().group(&c.group, &c.consumer).count(c.count);
        let reply: StreamReadReply = self.con.xread_options(&c.streams, &self.pending_after, &opts).await?;
        for key in &reply.keys {
            if let (Some(i), Some(last)) = (c.streams.iter().position(|s| *s == key.key), key.ids.last()) {
                self.pending_after[i] = last.id.clone();
            }
        }
        Ok(flatten(reply))
    }

    async fn read_new(&mut self) -> RedisResult<Vec<Entry>> {
        let c = &self.config;
        let ids = vec![">"; c.streams.len()];
        let block_ms = c.block.as_millis() as usize;
        let opts = StreamReadOptions::default().group(&c.group, &c.consumer).count(c.count).block(block_ms);
        let reply: Option<StreamReadReply> = self.con.xread_options(&c.streams, &ids, &opts).await?;
        Ok(reply.map(flatten).unwrap_or_default())
    }

    /// Up to `count` stale entries not already in flight, paging through each stream's
    /// pending list (this reader's own entries in flight may fill its first pages).
    async fn claim_stale(&mut self) -> RedisResult<Vec<Entry>> {
        let c = &self.config;
        let idle_ms = c.claim_idle.as_millis() as u64;
        let mut out = Vec::new();
        for stream in &c.streams {
            let mut start = "0-0".to_owned();
            while out.len() < c.count {
                let opts = StreamAutoClaimOptions::default().count(c.count);
                let reply: StreamAutoClaimReply =
                    self.con.xautoclaim_options(stream, &c.group, &c.consumer, idle_ms, &start, opts).await?;
                let mut claimed: Vec<Entry> = reply.claimed.into_iter().map(|e| Entry::from_reply(stream, e)).collect();
                self.in_flight.retain_new(&mut claimed);
                out.extend(claimed);
                if reply.next_stream_id == "0-0" {
                    break;
                }
                start = reply.next_stream_id;
            }
        }
        Ok(out)
    }
}

fn flatten(reply: StreamReadReply) -> Vec<Entry> {
    reply
        .keys
        .into_iter()
        .flat_map(|key| {
            let stream = key.key;
            key.ids.into_iter().map(move |entry| Entry::from_reply(&stream, entry))
        })
        .collect()
}

#[cfg(test)]
mod tests;
