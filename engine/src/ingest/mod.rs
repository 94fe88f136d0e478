//! The engine: rindexer events from Redis streams into PostgreSQL, one batch at a time.
//!
//! Modules in the order a batch meets them:
//! [`read`] (the reader task: the group reader's entries → [`message`]s) → [`batch`] (decode,
//! chain order, dedup, term set, term-disjoint parts) → [`copy`] (binary COPY encoding) →
//! [`apply`] (one transaction per batch or part: term locks, COPY into staging, merge into the
//! event log under the statement-level triggers, cascade, outbox row, COMMIT; retries and
//! splits) → [`write`](mod@write) (acks, via [`durable`] in backfill mode) → [`outbox`] (the publisher
//! of `term_updates`). [`run`] wires them: the reader decodes batch N+1 while the writer
//! applies batch N.

pub mod apply;
pub mod batch;
pub mod config;
pub mod copy;
pub mod durable;
pub mod message;
pub mod outbox;
pub mod read;
pub mod reorg;
pub mod summary;
pub mod write;

use std::future::Future;
use std::time::Instant;

use anyhow::Result;
use tokio::sync::mpsc;
use tracing::info;

pub use config::EngineConfig;
pub use summary::RunSummary;

use crate::pg::{self, PgPool};
use crate::runtime::exit::Fatal;
use crate::runtime::retry::until_stopped;
use crate::runtime::shutdown::with_grace;
use crate::runtime::{Stop, TaskGuard};
use crate::stream::{connect_managed, GroupReader, StreamControl};
use durable::DurableAcks;
use outbox::{Publish, Publisher};
use read::{read_loop, Work};
use write::Writer;

/// Run until `shutdown` resolves, or until idle with `exit_when_idle`.
///
/// On shutdown the batch in flight finishes (commit, ack, publish) if it can; one that is
/// retrying gives up at its next backoff, and anything still running after the shutdown
/// grace is abandoned. Nothing is acked before it committed durably, so whatever was left
/// behind is redelivered and applied once by the next run.
pub async fn run(config: EngineConfig, shutdown: impl Future<Output = ()>) -> Result<RunSummary> {
    config.validate()?;
    let started = Instant::now();
    let mut summary = RunSummary::default();
    let outcome = with_grace(shutdown, |stop| run_engine(&config, stop, &mut summary)).await;
    summary.elapsed = started.elapsed();
    outcome.unwrap_or(Ok(())).map(|()| summary)
}

/// Everything the engine connects to, connected. Start-up waits for its dependencies like any
/// later step, so an engine started during an outage comes up by itself once it ends.
struct Connections {
    pool: PgPool,
    reader: GroupReader,
    control: StreamControl,
    publisher: Publisher,
}

/// `Ok(None)` if asked to stop first; `Err` on an error no retry can fix.
async fn connect(config: &EngineConfig, stop: &mut Stop) -> Result<Option<Connections>, Fatal> {
    let url = &config.database_url;
    let Some(()) = until_stopped!(stop, "preparing the database", pg::schema::prepare(url).await, fail_fast)? else {
        return Ok(None);
    };
    let Some(pool) = until_stopped!(
        stop,
        "opening the PostgreSQL pool",
        pg::connect_pool(url, config.pool_size, config.session_reorg_window()).await,
        fail_fast
    )?
    else {
        return Ok(None);
    };
    let redis = &config.redis_url;
    let Some(reader) =
        until_stopped!(stop, "connecting to Redis", GroupReader::connect(redis, config.reader()).await, fail_fast)?
    else {
        return Ok(None);
    };
    let Some(control) = until_stopped!(
        stop,
        "connecting to Redis",
        StreamControl::new(redis, &config.group, config.dead_letter_maxlen).await,
        fail_fast
    )?
    else {
        return Ok(None);
    };
    // The publisher works beside the writer, on a Redis connection of its own.
    let Some(mut publishing) = until_stopped!(stop, "connecting to Redis", connect_managed(redis).await, fail_fast)?
    else {
        return Ok(None);
    };
    // Whatever a previous run committed but did not publish goes out first.
    let when = if config.backfill { Publish::Durable } else { Publish::Committed };
    let updates = &config.term_updates_stream;
    outbox::publish_until_sent(&pool, &mut publishing, updates, when, stop).await;
    let publisher = Publisher::spawn(pool.clone(), publishing, updates.clone(), when, stop.clone());
    info!(consumer = %config.consumer_name(), group = %config.group, streams = ?config.streams, "engine started");
    Ok(Some(Connections { pool, reader, control, publisher }))
}

async fn run_engine(config: &EngineConfig, mut stop: Stop, summary: &mut RunSummary) -> Result<()> {
    let Some(Connections { pool, reader, control, publisher }) = connect(config, &mut stop).await? else {
        return Ok(());
    };
    let in_flight = reader.in_flight();
    // Capacity 1: one batch decoded ahead while the writer works, never more.
    let (tx, mut rx) = mpsc::channel(1);
    let mut read_task = TaskGuard::spawn(read_loop(reader, tx, config.parts(), config.aliases(), stop.clone()));
    let durable = config.backfill.then(|| DurableAcks::new(&config.database_url));
    let pruner = reorg::Pruner::new(pool.clone());
    let mut writer =
        Writer { config, pool, control, publisher, pruner, in_flight, durable, stop: stop.clone(), summary };
    loop {
        let work = tokio::select! {
            biased;
            _ = stop.wait() => break,
            work = rx.recv() => work,
        };
        match work {
            Some(Work::Batch(batch)) => {
                if !writer.process(batch).await {
                    break;
                }
            }
            Some(Work::Idle(times)) => {
                writer.summary.stage_time.merge(&times);
                // The streams ran dry: nothing later will flush the held commits.
                if !writer.flush_held().await {
                    break;
                }
                if config.exit_when_idle && writer.nothing_pending().await {
                    info!("streams drained and nothing pending: exiting");
                    break;
                }
            }
            None => {
                // The reader stopped: surface why.
                read_task.join().await??;
                break;
            }
        }
    }
    writer.finish().await;
    Ok(())
}
