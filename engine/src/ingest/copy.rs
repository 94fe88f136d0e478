//! Copy: the batch's events in PostgreSQL's binary COPY format, streamed into the session's
//! staging tables.
//!
//! Column order and types follow the event tables in `migrations/versioned/V1__baseline.sql`
//! (the staging tables are created `LIKE` them). Encoding is pure CPU work, done by the
//! reader task with the decode; the writer only streams bytes.

use std::error::Error;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::pin_mut;
use futures_util::SinkExt;
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::Transaction;

use crate::event::{Event, EventKind, TxInfo};
use crate::pg::sql;

/// An event a COPY column refused to encode (a value of the wrong type: a bug, not input).
#[derive(Debug, thiserror::Error)]
#[error("encoding {column} for COPY: {reason}")]
pub struct EncodeError {
    pub column: Type,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

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
pub async fn stage_events(tx: &Transaction<'_>, events: &[Event]) -> Result<Vec<&'static str>, CopyError> {
    copy_events(tx, events, Target::Staging).await
}

/// COPY every event into its table under `target`; returns the tables that received rows.
pub async fn copy_events(
    tx: &Transaction<'_>,
    events: &[Event],
    target: Target,
) -> Result<Vec<&'static str>, CopyError> {
    Ok(copy_encoded(tx, &encode_events(events)?, target).await?)
}

/// Events of one table in PostgreSQL's binary COPY format, ready to send.
#[derive(Debug, Clone)]
pub struct EncodedTable {
    pub table: &'static str,
    pub rows: usize,
    pub data: Bytes,
}

/// Send pre-encoded tables with one `COPY … FROM STDIN (FORMAT binary)` each.
pub async fn copy_encoded(
    tx: &Transaction<'_>,
    tables: &[EncodedTable],
    target: Target,
) -> Result<Vec<&'static str>, tokio_postgres::Error> {
    let mut staged = Vec::with_capacity(tables.len());
    for t in tables {
        let statement = match target {
            Target::Staging => sql::copy_into_stage(t.table),
            Target::EventTables => sql::copy_into_event_table(t.table),
        };
        let sink = tx.copy_in::<_, Bytes>(&statement).await?;
        pin_mut!(sink);
        sink.send(t.data.clone()).await?;
        sink.finish().await?;
        staged.push(t.table);
    }
    Ok(staged)
}

/// Encode events (in chain order) into one binary COPY stream per event table, in merge
/// order, skipping empty tables. Pure CPU work: it can run off the database's critical path.
pub fn encode_events(events: &[Event]) -> Result<Vec<EncodedTable>, EncodeError> {
    let mut by_table: [Vec<&Event>; 6] = Default::default();
    for e in events {
        by_table[table_of(&e.kind)].push(e);
    }
    let mut out = Vec::new();
    for (i, rows) in by_table.iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        let types = column_types(i);
        let mut buf = BytesMut::with_capacity(rows.len() * 400);
        buf.put_slice(COPY_SIGNATURE);
        buf.put_i32(0); // flags
        buf.put_i32(0); // header extension length
        for event in rows {
            encode_row(event, &types, &mut buf)?;
        }
        buf.put_i16(-1); // trailer
        out.push(EncodedTable { table: EVENT_TABLES[i], rows: rows.len(), data: buf.freeze() });
    }
    Ok(out)
}

const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// One tuple: field count, then each field as a length-prefixed value (-1 for NULL).
fn encode_row(event: &Event, types: &[Type], buf: &mut BytesMut) -> Result<(), EncodeError> {
    with_values(event, |values| {
        buf.put_i16(values.len() as i16);
        for (value, ty) in values.iter().zip(types) {
            let at = buf.len();
            buf.put_i32(0);
            let encoded = value.to_sql_checked(ty, buf);
            let len = match encoded.map_err(|e| EncodeError { column: ty.clone(), reason: e.to_string() })? {
                IsNull::Yes => -1,
                IsNull::No => (buf.len() - at - 4) as i32,
            };
            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        Ok(())
    })
}

/// Call `f` with the event's column values, in the event table's column order.
fn with_values<R>(event: &Event, f: impl FnOnce(&[&(dyn ToSql + Sync)]) -> R) -> R {
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
    f(&values)
}
