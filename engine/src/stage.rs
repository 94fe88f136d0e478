//! Stage: the batch's events into session-local staging tables with binary COPY.
//!
//! Column order and types follow the event tables in `migrations/V1__event_tables.sql`
//! (the staging tables are created `LIKE` them).

use std::error::Error;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use bytes::{BufMut, BytesMut};
use futures_util::pin_mut;
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::Transaction;

use crate::event::{Event, EventKind, TxInfo};
use crate::sql;

/// The event tables, in the order their staged rows are merged.
pub const EVENT_TABLES: [&str; 6] = [
    "atom_created_events",
    "triple_created_events",
    "deposited_events",
    "redeemed_events",
    "share_price_changed_events",
    "generic_events",
];

const TX_TYPES: [Type; 8] =
    [Type::TEXT, Type::INT8, Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8, Type::TIMESTAMPTZ];

fn table_of(kind: &EventKind) -> usize {
    match kind {
        EventKind::AtomCreated(_) => 0,
        EventKind::TripleCreated(_) => 1,
        EventKind::Deposited(_) => 2,
        EventKind::Redeemed(_) => 3,
        EventKind::SharePriceChanged(_) => 4,
        EventKind::Generic(_) => 5,
    }
}

fn column_types(table: usize) -> Vec<Type> {
    use Type as T;
    let own: &[Type] = match table {
        0 => &[T::TEXT, T::TEXT, T::TEXT, T::BYTEA, T::TEXT],
        1 => &[T::TEXT, T::TEXT, T::TEXT, T::TEXT, T::TEXT, T::TEXT],
        2 => &[T::TEXT, T::TEXT, T::TEXT, T::NUMERIC, T::NUMERIC, T::NUMERIC, T::NUMERIC, T::NUMERIC, T::INT2],
        3 => &[T::TEXT, T::TEXT, T::TEXT, T::NUMERIC, T::NUMERIC, T::NUMERIC, T::NUMERIC, T::NUMERIC, T::INT2],
        4 => &[T::TEXT, T::NUMERIC, T::NUMERIC, T::NUMERIC, T::NUMERIC, T::INT2],
        _ => &[T::TEXT, T::JSONB],
    };
    TX_TYPES.iter().chain(own).cloned().collect()
}

/// JSON text bound to a `JSONB` column (binary format: version byte 1, then the text).
#[derive(Debug)]
struct Jsonb<'a>(&'a str);

impl ToSql for Jsonb<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

fn timestamp(secs: Option<i64>) -> Option<SystemTime> {
    secs.and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(s).ok()?)))
}

/// Where COPY writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The session's staging tables (the engine's path).
    Staging,
    /// The event tables themselves: no dedup; the caller disables the triggers. The benchmarks' raw-ingest floor.
    EventTables,
}

/// COPY every event into its staging table; returns the tables that received rows, in
/// merge order. `events` should already be in chain order.
pub async fn stage_events(tx: &Transaction<'_>, events: &[Event]) -> Result<Vec<&'static str>> {
    copy_events(tx, events, Target::Staging).await
}

/// COPY every event into its table under `target`; returns the tables that received rows.
pub async fn copy_events(tx: &Transaction<'_>, events: &[Event], target: Target) -> Result<Vec<&'static str>> {
    let mut by_table: [Vec<&Event>; 6] = Default::default();
    for e in events {
        by_table[table_of(&e.kind)].push(e);
    }
    let mut staged = Vec::new();
    for (i, rows) in by_table.iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        copy_table(tx, i, rows, target).await?;
        staged.push(EVENT_TABLES[i]);
    }
    Ok(staged)
}

async fn copy_table(tx: &Transaction<'_>, table: usize, rows: &[&Event], target: Target) -> Result<()> {
    let statement = match target {
        Target::Staging => sql::copy_into_stage(EVENT_TABLES[table]),
        Target::EventTables => sql::copy_into_event_table(EVENT_TABLES[table]),
    };
    let sink = tx.copy_in(&statement).await?;
    let writer = BinaryCopyInWriter::new(sink, &column_types(table));
    pin_mut!(writer);
    for event in rows {
        let TxInfo {
            transaction_hash,
            log_index,
            block_number,
            block_hash,
            address,
            network,
            transaction_index,
            block_timestamp,
        } = &event.tx;
        let ts = timestamp(*block_timestamp);
        let jsonb;
        let mut values: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(17);
        values.extend_from_slice(&[
            transaction_hash,
            log_index,
            block_number,
            block_hash,
            address,
            network,
            transaction_index,
            &ts,
        ]);
        match &event.kind {
            EventKind::AtomCreated(e) => {
                values.extend_from_slice(&[&e.creator, &e.term_id, &e.atom_wallet, &e.atom_data, &e.atom_data_text])
            }
            EventKind::TripleCreated(e) => values.extend_from_slice(&[
                &e.creator,
                &e.term_id,
                &e.subject_id,
                &e.predicate_id,
                &e.object_id,
                &e.counter_term_id,
            ]),
            EventKind::Deposited(e) => values.extend_from_slice(&[
                &e.sender,
                &e.receiver,
                &e.term_id,
                &e.curve_id,
                &e.assets,
                &e.assets_after_fees,
                &e.shares,
                &e.total_shares,
                &e.vault_type,
            ]),
            EventKind::Redeemed(e) => values.extend_from_slice(&[
                &e.sender,
                &e.receiver,
                &e.term_id,
                &e.curve_id,
                &e.shares,
                &e.total_shares,
                &e.assets,
                &e.fees,
                &e.vault_type,
            ]),
            EventKind::SharePriceChanged(e) => values.extend_from_slice(&[
                &e.term_id,
                &e.curve_id,
                &e.share_price,
                &e.total_assets,
                &e.total_shares,
                &e.vault_type,
            ]),
            EventKind::Generic(e) => {
                jsonb = Jsonb(&e.event_data);
                values.extend_from_slice(&[&e.event_name, &jsonb]);
            }
        }
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await?;
    Ok(())
}
