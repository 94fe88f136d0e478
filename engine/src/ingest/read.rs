//! The reader task: reads the next entries, decodes them into a batch (on every core for a
//! large one) and hands it to the writer, one batch ahead of it.
//!
//! The reader reads only once the writer's queue has room, so the engine holds two batches
//! at most (one applied, one decoded ahead): memory is bounded by twice the read budget.
//! Reading first and then waiting to hand over held a third.

use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinError;

use super::batch::Batch;
use super::message::Message;
use crate::event::decode::alias::Aliases;
use crate::runtime::timing::timed;
use crate::runtime::{Retry, StageTimes, Stop};
use crate::stream::{GroupReader, Read};

/// What the reader hands the writer.
pub enum Work {
    Batch(Batch),
    /// A read found nothing new; everything read before it has been handed over. With the
    /// time that read took.
    Idle(StageTimes),
}

/// Read, decode and send until the writer is gone or a stop is requested; read failures are
/// retried. `Err` only if decoding panicked.
pub async fn read_loop(
    mut reader: GroupReader,
    tx: mpsc::Sender<Work>,
    parts: usize,
    aliases: Aliases,
    mut stop: Stop,
) -> Result<(), JoinError> {
    let mut retry = Retry::new();
    loop {
        // Room first, then the read: see the module comment.
        let Ok(slot) = tx.reserve().await else {
            return Ok(());
        };
        let mut times = StageTimes::default();
        let started = Instant::now();
        let read = reader.next().await;
        // Waiting for entries to arrive is idle time, reported apart from reading them.
        let idle = reader.take_waited();
        if !idle.is_zero() {
            times.add("idle", idle);
        }
        times.add("read", started.elapsed().saturating_sub(idle));
        let entries = match read {
            Ok(Read::Entries(entries)) => entries,
            Ok(Read::Idle) => {
                retry.succeeded();
                slot.send(Work::Idle(times));
                continue;
            }
            Err(e) => {
                if !retry.failed(&mut stop, "reading the streams", &e).await {
                    return Ok(());
                }
                continue;
            }
        };
        retry.succeeded();
        let messages: Vec<Message> = entries.into_iter().map(Message::from_entry).collect();
        let aliases = aliases.clone();
        let decode = tokio::task::spawn_blocking(move || Batch::decode(messages, parts, &aliases));
        let mut batch = timed(&mut times, "decode", decode).await?;
        batch.times = times;
        slot.send(Work::Batch(batch));
    }
}
