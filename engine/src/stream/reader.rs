//! One consumer's share of a consumer group's streams: the reader the engine and the analytics
//! worker share.
//!
//! Each call to [`GroupReader::next`] reads, in this order:
//! 1. **Own pending entries**: those this consumer name was handed before a restart and never
//!    acked (`XREADGROUP … 0`; `>` never returns them again), page after page, each page
//!    starting after the last entry of the previous one.
//! 2. **Stale entries** of other consumers, pending longer than `claim_idle` (they died):
//!    claimed, as long as claims return entries.
//! 3. **New entries** (`XREADGROUP … >`), waiting up to `block` for some; claiming again every
//!    `claim_idle`.
//!
//! **Bounded in bytes, whatever the input.** A read stops keeping entries at its byte
//! budget (the first entry always kept, so every read makes progress), and an entry over the
//! per-entry limit arrives as an [`Oversized`] stub (size, SHA-1, first bytes) instead of its
//! fields. So this process never holds more than a budget (plus one entry) of entries per
//! read, however large the entries producers wrote. New entries come from a plain
//! `XREADGROUP` (polled while entries flow, blocking while idle) whose reply the reader
//! parses itself (`reader/plain.rs`, on a [`RespSocket`]); entries it skipped past the budget
//! were delivered all the same, and are read back next as own pending entries. Own pending entries and claims go through a
//! server-side script (`reader/read.lua`) that delivers entries in chunks sized to the budget.
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

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisResult, Script, Value};

pub use in_flight::InFlight;
use reply::parse_reply;

use super::socket::RespSocket;
use super::{cluster, connect_managed, Entry, StreamError};

/// How long a reader that is keeping up waits before asking for new entries again.
const POLL: Duration = Duration::from_millis(5);
/// The greatest stream id: as the cursor of own pending entries, nothing comes after it.
const LAST_ID: &str = "18446744073709551615-18446744073709551615";

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
    pub budget: ReadBudget,
}

/// What one read may bring in, in bytes of entry fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadBudget {
    /// All the entries of one read (which may exceed it by one entry).
    pub read_bytes: u64,
    /// One entry: a larger one arrives as an [`Oversized`] stub.
    pub entry_bytes: u64,
    /// How much of an oversized entry's largest field its stub keeps.
    pub prefix_bytes: u64,
}

impl ReadBudget {
    /// Reads of up to 256 MiB (about 170,000 events of rindexer's), entries up to 16 MiB.
    pub const DEFAULT: ReadBudget = ReadBudget { read_bytes: 256 << 20, entry_bytes: 16 << 20, prefix_bytes: 1024 };
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

pub struct GroupReader {
    con: ConnectionManager,
    /// Where the plain reads of new entries connect (it holds the password: never printed).
    redis_url: String,
    /// Their connection, out of its slot while a read is under way: a read that did not end
    /// leaves the rest of its reply on the wire, so its connection is dropped.
    socket: Option<RespSocket>,
    config: ReaderConfig,
    script: Script,
    /// The stream the next read starts with: reads go round the streams, so one stream's
    /// backlog cannot hold the others' budget.
    first: usize,
    phase: Phase,
    last_claim: Instant,
    /// Per stream, the id after which the next read of own pending entries starts.
    pending_after: Vec<String>,
    in_flight: InFlight,
    /// A read of new entries skipped some past its budget: the next read is of own pending
    /// entries, from `pending_after`.
    read_back: bool,
    /// The last read of new entries found none for a whole block time: the next one blocks.
    quiet: bool,
    /// Time spent waiting for new entries (polls that found none, a blocking read) since
    /// [`GroupReader::take_waited`] was last called: idle time, not reading.
    waited: Duration,
}

impl GroupReader {
    /// Connect, check that the streams share a slot on a cluster and that every stream
    /// exists (unless it may create them), and create the group on every stream if missing.
    pub async fn connect(redis_url: &str, mut config: ReaderConfig) -> Result<GroupReader, StreamError> {
        config.count = config.count.max(1);
        let pending_after = vec!["0".to_owned(); config.streams.len()];
        let con = connect_managed(redis_url).await?;
        let socket = Some(RespSocket::connect(redis_url).await?);
        let mut reader = GroupReader {
            con,
            redis_url: redis_url.to_owned(),
            socket,
            config,
            script: Script::new(include_str!("reader/read.lua")),
            first: 0,
            phase: Phase::OwnPending,
            last_claim: Instant::now(),
            pending_after,
            in_flight: InFlight::default(),
            read_back: false,
            quiet: false,
            waited: Duration::ZERO,
        };
        if let Some(slots) = cluster::split_slots(&mut reader.con, &reader.config.streams).await? {
            let listed: Vec<String> = slots.iter().map(|(key, slot)| format!("{key} → {slot}")).collect();
            return Err(StreamError::SplitAcrossSlots(listed.join(", ")));
        }
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
            if std::mem::take(&mut self.read_back) {
                self.phase = Phase::OwnPending;
            }
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
        let entries = self.read("own").await?;
        for entry in &entries {
            if let Some(i) = self.config.streams.iter().position(|s| *s == entry.stream) {
                self.pending_after[i] = entry.id.clone();
            }
        }
        Ok(entries)
    }

    /// New entries: what is there, else what comes within `block`. A reader keeping up with
    /// a flow asks again every [`POLL`], so that a batch gathers what arrived meanwhile (a
    /// blocking read returns at the first entry: live batches of half the size, measured
    /// +4 to +33 % PostgreSQL CPU in stop 26); one that found nothing for a whole `block`
    /// waits in Redis instead (no polling while idle). Entries the read skipped past its
    /// budget are read back next, as own pending entries from the first skipped.
    async fn read_new(&mut self) -> RedisResult<Vec<Entry>> {
        let started = Instant::now();
        loop {
            let attempt = Instant::now();
            let blocking = self.quiet;
            let read = self.plain_read(blocking.then_some(self.config.block)).await?;
            let found = !(read.entries.is_empty() && read.left.is_empty());
            if !found && !blocking && started.elapsed() < self.config.block {
                tokio::time::sleep(POLL.min(self.config.block)).await;
                continue;
            }
            // Idle time: the polls that found nothing, or the whole blocking read.
            self.waited += if found && !blocking { attempt - started } else { started.elapsed() };
            self.quiet = !found;
            if !read.left.is_empty() {
                for (i, stream) in self.config.streams.iter().enumerate() {
                    let left = read.left.iter().find(|(s, _)| s == stream);
                    self.pending_after[i] = left.map_or_else(|| LAST_ID.to_owned(), |(_, id)| id_before(id));
                }
                self.read_back = true;
            }
            return Ok(read.entries);
        }
    }

    /// The streams' indexes in the order the next read names them, from `first` round; the
    /// read after it starts one stream later.
    fn next_order(&mut self) -> Vec<usize> {
        let n = self.config.streams.len();
        let order = (0..n).map(|i| (self.first + i) % n).collect();
        self.first = (self.first + 1) % n.max(1);
        order
    }

    /// One `XREADGROUP … >` of every stream, the streams taken from `first` round, blocking
    /// up to `block` if given.
    async fn plain_read(&mut self, block: Option<Duration>) -> RedisResult<plain::PlainRead> {
        let order = self.next_order();
        let c = &self.config;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(&c.group).arg(&c.consumer).arg("COUNT").arg(c.count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS");
        for &i in &order {
            cmd.arg(&c.streams[i]);
        }
        cmd.arg(vec![">"; order.len()]);
        let mut socket = match self.socket.take() {
            Some(socket) => socket,
            None => RespSocket::connect(&self.redis_url).await?,
        };
        let read = plain::read(&mut socket, &cmd, c.budget).await?;
        self.socket = Some(socket);
        Ok(read)
    }

    /// The idle time since the last call (see `waited`), reset to zero.
    pub fn take_waited(&mut self) -> Duration {
        std::mem::take(&mut self.waited)
    }

    async fn claim_stale(&mut self) -> RedisResult<Vec<Entry>> {
        self.read("claim").await
    }

    /// One run of the read script in `mode`, the streams taken from `first` round.
    async fn read(&mut self, mode: &str) -> RedisResult<Vec<Entry>> {
        let order = self.next_order();
        let c = &self.config;
        let mut invocation = self.script.prepare_invoke();
        for &i in &order {
            invocation.key(&c.streams[i]);
        }
        let b = c.budget;
        invocation
            .arg(&c.group)
            .arg(&c.consumer)
            .arg(mode)
            .arg(c.count)
            .arg(b.read_bytes)
            .arg(b.entry_bytes)
            .arg(b.prefix_bytes)
            .arg(c.claim_idle.as_millis() as u64);
        if mode == "own" {
            for &i in &order {
                invocation.arg(&self.pending_after[i]);
            }
        }
        let reply: Value = invocation.invoke_async(&mut self.con).await?;
        parse_reply(reply, b)
    }
}

/// The id just before `id` (`ms-seq`): reading own pending entries after it starts at `id`.
fn id_before(id: &str) -> String {
    let parsed = id.split_once('-').and_then(|(ms, seq)| Some((ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?)));
    match parsed {
        Some((ms, seq)) if seq > 0 => format!("{ms}-{}", seq - 1),
        Some((ms, _)) if ms > 0 => format!("{}-{}", ms - 1, u64::MAX),
        _ => "0".to_owned(),
    }
}

mod in_flight;
mod plain;
mod reply;

#[cfg(test)]
mod tests;
