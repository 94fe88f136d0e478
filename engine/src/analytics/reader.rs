//! Reading `term_updates` through the worker's consumer group.
//!
//! The cycle mirrors the engine's: first the entries this consumer name was given before a
//! restart (`>` never returns them again), then entries other workers left pending too long
//! (they died), then new entries, claiming stale ones again every `claim_idle`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, RedisResult};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    OwnPending,
    Claim,
    New,
}

pub struct UpdateReader {
    /// Blocking reads get a connection of their own so they never delay acks; it
    /// reconnects by itself after Redis restarts.
    con: ConnectionManager,
    stream: String,
    group: String,
    consumer: String,
    count: usize,
    block_ms: usize,
    claim_idle: Duration,
    phase: Phase,
    last_claim: Instant,
}

/// What one call to [`UpdateReader::next`] found.
pub enum Read {
    Entries(Vec<StreamId>),
    /// A read of new entries returned nothing within the block time.
    Idle,
}

impl UpdateReader {
    pub async fn new(
        redis_url: &str,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
        claim_idle: Duration,
    ) -> Result<Self> {
        Ok(UpdateReader {
            con: crate::source::connect_managed(redis_url).await?,
            stream: stream.to_owned(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            count: count.max(1),
            block_ms: block.as_millis() as usize,
            claim_idle,
            phase: Phase::OwnPending,
            last_claim: Instant::now(),
        })
    }

    /// Create the group (and the stream) if missing, from the beginning of the stream so
    /// updates published before the first worker started are not skipped.
    pub async fn ensure_group(&mut self) -> Result<()> {
        let created: RedisResult<()> = self.con.xgroup_create_mkstream(&self.stream, &self.group, "0").await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => {
                Err(e).with_context(|| format!("XGROUP CREATE {} {}", self.stream, self.group))
            }
            _ => Ok(()),
        }
    }

    /// The next entries to process. After an error the next read is of this consumer's own
    /// pending entries: a read whose reply was lost with the connection (Redis restarted, say)
    /// left its entries delivered to this name, and they would otherwise wait `claim_idle`
    /// to be claimed back. Nothing else is pending then: the worker reads only once the
    /// entries it read before are acked.
    pub async fn next(&mut self) -> Result<Read> {
        loop {
            let read = match self.phase {
                Phase::OwnPending => self.read_own_pending().await,
                Phase::Claim => self.claim_stale().await,
                Phase::New => self.read_new().await,
            };
            let entries = match read {
                Ok(entries) => entries,
                Err(e) => {
                    self.phase = Phase::OwnPending;
                    return Err(e);
                }
            };
            let was = self.phase;
            self.phase = self.next_phase(entries.is_empty());
            if !entries.is_empty() {
                return Ok(Read::Entries(entries));
            }
            if was == Phase::New {
                return Ok(Read::Idle);
            }
        }
    }

    fn next_phase(&mut self, empty: bool) -> Phase {
        let claim_every = self.claim_idle.max(Duration::from_secs(1));
        match self.phase {
            Phase::OwnPending if empty => Phase::Claim,
            Phase::OwnPending => Phase::OwnPending,
            // Keep claiming page after page while there is a backlog of stale entries.
            Phase::Claim if !empty => Phase::Claim,
            Phase::Claim => {
                self.last_claim = Instant::now();
                Phase::New
            }
            Phase::New if self.last_claim.elapsed() >= claim_every => Phase::Claim,
            Phase::New => Phase::New,
        }
    }

    async fn read_own_pending(&mut self) -> Result<Vec<StreamId>> {
        let opts = StreamReadOptions::default().group(&self.group, &self.consumer).count(self.count);
        let reply: StreamReadReply =
            self.con.xread_options(&[&self.stream], &["0"], &opts).await.context("XREADGROUP pending")?;
        Ok(entries(reply))
    }

    async fn read_new(&mut self) -> Result<Vec<StreamId>> {
        let opts =
            StreamReadOptions::default().group(&self.group, &self.consumer).count(self.count).block(self.block_ms);
        let reply: Option<StreamReadReply> =
            self.con.xread_options(&[&self.stream], &[">"], &opts).await.context("XREADGROUP")?;
        Ok(reply.map(entries).unwrap_or_default())
    }

    /// Stale entries, at most `count`: pages through the pending list until some are found
    /// or it ends. Starting from the beginning each time is enough: what an earlier call
    /// claimed has been acked since, or is no longer idle.
    async fn claim_stale(&mut self) -> Result<Vec<StreamId>> {
        let idle_ms = self.claim_idle.as_millis() as u64;
        let mut start = "0-0".to_owned();
        loop {
            let opts = StreamAutoClaimOptions::default().count(self.count);
            let reply: StreamAutoClaimReply = self
                .con
                .xautoclaim_options(&self.stream, &self.group, &self.consumer, idle_ms, &start, opts)
                .await
                .context("XAUTOCLAIM")?;
            if !reply.claimed.is_empty() || reply.next_stream_id == "0-0" {
                return Ok(reply.claimed);
            }
            start = reply.next_stream_id;
        }
    }
}

fn entries(reply: StreamReadReply) -> Vec<StreamId> {
    reply.keys.into_iter().flat_map(|k| k.ids).collect()
}
