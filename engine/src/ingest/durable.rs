//! Durable acks for `--backfill`, whose transactions commit with `synchronous_commit = off`.
//!
//! Such a COMMIT returns before its commit record is flushed: a server crash then drops the
//! batch, and entries already acked in Redis would never be delivered again. So a backfill
//! batch's acks (and its dead letters) are held until the WAL holding its commit is known to
//! be on disk:
//!
//! - After each batch, one round trip reads the WAL insert position, which is past the
//!   batch's commit record since COMMIT has returned, and the flush position; held batches
//!   that the flush has passed are released. PostgreSQL's WAL writer flushes asynchronous
//!   commits within three `wal_writer_delay`s (200 ms by default), so in a backfill a batch
//!   is usually released when the next one commits.
//! - A barrier, a synchronous commit of a transaction that writes WAL (flushing WAL flushes
//!   every earlier record too), releases every held batch: taken when batches wait too long
//!   or too many, when the streams run dry, and before exit.
//!
//! Positions vouch for a commit only within one run of the server: crash recovery replays
//! what was flushed, and new WAL then reuses the positions of what was lost. So positions and
//! barriers are read on a connection of their own, the witness, opened before the commits it
//! vouches for; while it is alive the server has not restarted, since a restart ends every
//! connection. A batch whose witness was lost cannot be vouched for: it is handed back
//! unacked and redelivered (its events are no-ops if its commit survived, applied if not).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use postgres_types::PgLsn;
use tokio_postgres::Client;

use crate::pg::pool::ConnectError;
use crate::pg::{connect_one, wal};
use crate::stream::{DeadLetter, EntryKey};

/// More held batches than this are released by a barrier (bounds the memory they hold).
const MAX_HELD: usize = 16;
/// A batch held longer than this is released by a barrier (the WAL writer should have
/// flushed it long before; it has not when nothing else is written after it).
const MAX_HOLD: Duration = Duration::from_secs(1);

/// A batch whose transactions have all committed: what acking it takes.
#[derive(Debug, Default)]
pub struct Committed {
    pub acks: Vec<EntryKey>,
    pub dead_letters: Vec<DeadLetter>,
    /// Events applied (for the run's counters).
    pub events: u64,
}

/// What a check found out about the held batches.
#[derive(Debug, Default)]
pub struct Released {
    /// Their commits are on disk: ack them.
    pub durable: Vec<Committed>,
    /// Their witness was lost before their commits were seen flushed, so whether those
    /// commits survived cannot be known: leave them unacked, to be delivered again.
    pub unknown: Vec<Committed>,
}

impl Released {
    fn extend(&mut self, other: Released) {
        self.durable.extend(other.durable);
        self.unknown.extend(other.unknown);
    }
}

struct Held {
    batch: Committed,
    /// Generation of the witness that was alive before the batch began.
    witness: u64,
    /// A WAL position past the batch's commit record, once read.
    wal_end: Option<PgLsn>,
    since: Instant,
}

/// The acks of asynchronously committed batches, held until they are durable.
pub struct DurableAcks {
    database_url: String,
    witness: Option<Client>,
    /// Counts witness connections; a held batch names the one it relies on.
    generation: u64,
    held: VecDeque<Held>,
}

impl DurableAcks {
    pub fn new(database_url: &str) -> DurableAcks {
        DurableAcks { database_url: database_url.to_owned(), witness: None, generation: 0, held: VecDeque::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The witness for a batch about to begin, connecting one if there is none. Take it
    /// before the batch's first transaction: only a witness alive at its commit can vouch
    /// for it.
    pub async fn witness(&mut self) -> Result<u64, ConnectError> {
        if self.witness.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(self.generation);
        }
        self.witness = Some(connect_one(&self.database_url).await?);
        self.generation += 1;
        Ok(self.generation)
    }

    /// `batch` has committed under `witness`: hold it, and release whatever is durable now
    /// (a barrier when batches have waited too long or too many).
    pub async fn hold(&mut self, batch: Committed, witness: u64) -> Released {
        self.held.push_back(Held { batch, witness, wal_end: None, since: Instant::now() });
        let mut released = match self.positions().await {
            Some((insert, flush)) => {
                for held in self.held.iter_mut().filter(|h| h.wal_end.is_none()) {
                    held.wal_end = Some(insert);
                }
                self.release(|h| h.wal_end.is_some_and(|end| end <= flush))
            }
            None => self.release(|_| false),
        };
        let overdue = self.held.front().is_some_and(|h| h.since.elapsed() >= MAX_HOLD);
        if overdue || self.held.len() > MAX_HELD {
            released.extend(self.barrier().await);
        }
        released
    }

    /// Make every held batch durable with a barrier, and release them all.
    pub async fn barrier(&mut self) -> Released {
        if self.held.is_empty() {
            return Released::default();
        }
        let flushed = match &self.witness {
            Some(client) => wal::barrier(client).await.is_ok(),
            None => false,
        };
        if !flushed {
            self.witness = None;
        }
        self.release(|_| flushed)
    }

    /// The WAL insert and flush positions, read on the witness; `None` (and the witness
    /// dropped) if it is gone.
    async fn positions(&mut self) -> Option<(PgLsn, PgLsn)> {
        match wal::positions(self.witness.as_ref()?).await {
            Ok(positions) => Some(positions),
            Err(_) => {
                self.witness = None;
                None
            }
        }
    }

    /// Take out the held batches that `durable` says are on disk, and those whose witness
    /// is gone; keep the rest, in commit order.
    fn release(&mut self, durable: impl Fn(&Held) -> bool) -> Released {
        let alive = self.witness.is_some();
        let mut out = Released::default();
        for held in std::mem::take(&mut self.held) {
            if !alive || held.witness != self.generation {
                out.unknown.push(held.batch);
            } else if durable(&held) {
                out.durable.push(held.batch);
            } else {
                self.held.push_back(held);
            }
        }
        out
    }
}
