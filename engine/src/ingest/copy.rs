//! Copy: the batch's events in PostgreSQL's binary COPY format, streamed into the event
//! tables or, for a batch that repeats logged events, the session's staging tables (see
//! `apply::log_events`).
//!
//! Column order and types follow the event tables in `migrations/versioned/V1__baseline.sql`
//! (the staging tables are created `LIKE` them). Encoding is pure CPU work, done by the
//! reader task with the decode; the writer only streams bytes.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::pin_mut;
use futures_util::SinkExt;
use tokio_postgres::Transaction;

use crate::event::{Event, EventKind, Numeric, TxInfo};
use crate::pg::sql;

/// The event tables, in the order their staged rows are merged.
pub const EVENT_TABLES: [&str; 6] = [
    "atom_created_events",
    "triple_created_events",
    "deposited_events",
    "redeemed_events",
    "share_price_changed_events",
    "generic_events",
];

pub(super) fn table_of(kind: &EventKind) -> usize {
    match kind {
        EventKind::AtomCreated(_) => 0,
        EventKind::TripleCreated(_) => 1,
        EventKind::Deposited(_) => 2,
        EventKind::Redeemed(_) => 3,
        EventKind::SharePriceChanged(_) => 4,
        EventKind::Generic(_) => 5,
    }
}

/// Where COPY writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The session's staging tables (the engine's path).
    Staging,
    /// The event tables themselves, with no dedup: a unique violation fails the COPY. The
    /// engine's first try at a batch (triggers on), and the benchmarks' raw-ingest floor
    /// (triggers off).
    EventTables,
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
/// Every value is already typed and canonical, so encoding cannot fail.
pub fn encode_events(events: &[Event]) -> Vec<EncodedTable> {
    let mut by_table: [Vec<&Event>; 6] = Default::default();
    for e in events {
        by_table[table_of(&e.kind)].push(e);
    }
    let mut out = Vec::new();
    for (i, rows) in by_table.iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        // Sized for the rows' largest possible encoding: growing the buffer copied it again
        // (a triple row is about 700 bytes, a vault event's about 500).
        let size = COPY_HEADER + rows.iter().map(|e| row_bound(e)).sum::<usize>() + COPY_TRAILER;
        let mut buf = BytesMut::with_capacity(size);
        buf.put_slice(COPY_SIGNATURE);
        buf.put_i32(0); // flags
        buf.put_i32(0); // header extension length
        for event in rows {
            encode_row(event, &mut buf);
        }
        buf.put_i16(-1); // trailer
        out.push(EncodedTable { table: EVENT_TABLES[i], rows: rows.len(), data: buf.freeze() });
    }
    out
}

const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// The signature, the flags and the header extension length.
const COPY_HEADER: usize = COPY_SIGNATURE.len() + 8;
const COPY_TRAILER: usize = 2;

/// The most bytes [`encode_row`] can write for `event`: every field's length prefix and value,
/// a NUMERIC at its longest (a uint256 has at most 20 base-10000 digits).
fn row_bound(event: &Event) -> usize {
    const PREFIX: usize = 4;
    const TEXT32: usize = PREFIX + 66;
    const ADDRESS: usize = PREFIX + 42;
    const NUMERIC: usize = PREFIX + 8 + 2 * 20;
    const INT2: usize = PREFIX + 2;
    const INT8: usize = PREFIX + 8;
    // The field count; hash, log index, block, block hash, address, network, index, time; origin.
    let tx = 2 + TEXT32 + INT8 + INT8 + TEXT32 + ADDRESS + PREFIX + event.tx.network.len() + INT8 + INT8;
    let origin = PREFIX + 4 + INT8;
    let kind = match &event.kind {
        EventKind::AtomCreated(e) => {
            let text = e.atom_data_text.as_ref().map_or(0, String::len);
            2 * ADDRESS + TEXT32 + 2 * PREFIX + e.atom_data.len() + text
        }
        EventKind::TripleCreated(_) => ADDRESS + 5 * TEXT32,
        EventKind::Deposited(_) | EventKind::Redeemed(_) => 2 * ADDRESS + TEXT32 + 5 * NUMERIC + INT2,
        EventKind::SharePriceChanged(_) => TEXT32 + 4 * NUMERIC + INT2,
        EventKind::Generic(e) => 2 * PREFIX + e.event_name.len() + 1 + e.event_data.len(),
    };
    tx + kind + origin
}

/// One tuple, in the event table's column order (`migrations/versioned/V1__baseline.sql`,
/// `V4__reorgs.sql`): the eight transaction columns, the event's own, then where it was read.
fn encode_row(event: &Event, buf: &mut BytesMut) {
    let mut row = Row::start(buf);
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
    row.text(transaction_hash).int8(*log_index).int8(*block_number).text(block_hash).text(address);
    row.text(network).int8(*transaction_index).timestamptz(*block_timestamp);
    match &event.kind {
        EventKind::AtomCreated(e) => {
            row.text(&e.creator).text(&e.term_id).text(&e.atom_wallet).bytes(&e.atom_data);
            row.opt_text(e.atom_data_text.as_deref());
        }
        EventKind::TripleCreated(e) => {
            row.text(&e.creator).text(&e.term_id).text(&e.subject_id).text(&e.predicate_id);
            row.text(&e.object_id).text(&e.counter_term_id);
        }
        EventKind::Deposited(e) => {
            row.text(&e.sender).text(&e.receiver).text(&e.term_id).numeric(&e.curve_id).numeric(&e.assets);
            row.numeric(&e.assets_after_fees).numeric(&e.shares).numeric(&e.total_shares).int2(e.vault_type);
        }
        EventKind::Redeemed(e) => {
            row.text(&e.sender).text(&e.receiver).text(&e.term_id).numeric(&e.curve_id).numeric(&e.shares);
            row.numeric(&e.total_shares).numeric(&e.assets).numeric(&e.fees).int2(e.vault_type);
        }
        EventKind::SharePriceChanged(e) => {
            row.text(&e.term_id).numeric(&e.curve_id).numeric(&e.share_price).numeric(&e.total_assets);
            row.numeric(&e.total_shares).int2(e.vault_type);
        }
        EventKind::Generic(e) => {
            row.text(&e.event_name).jsonb(&e.event_data);
        }
    }
    match event.origin {
        Some(p) => row.int4(p.stream_key).int8(p.entry),
        None => row.null().null(),
    };
    row.finish();
}

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01), whose timestamps count
/// microseconds from it.
const POSTGRES_EPOCH_SECS: i64 = 946_684_800;

/// One COPY tuple in binary format: its field count, then each field as a big-endian length
/// (-1 for NULL) and the value in the column type's binary form. Written directly, without `ToSql`'s dynamic
/// dispatch and per-field type checks: this runs for every column of every event.
struct Row<'b> {
    buf: &'b mut BytesMut,
    /// Where the tuple's field count goes, written by [`Row::finish`].
    count_at: usize,
    fields: i16,
}

impl<'b> Row<'b> {
    fn start(buf: &'b mut BytesMut) -> Row<'b> {
        let count_at = buf.len();
        buf.put_i16(0);
        Row { buf, count_at, fields: 0 }
    }

    /// The field count, now that every field is written.
    fn finish(self) {
        self.buf[self.count_at..self.count_at + 2].copy_from_slice(&self.fields.to_be_bytes());
    }

    /// A field's length prefix (-1 for NULL).
    fn length(&mut self, len: i32) {
        self.fields += 1;
        self.buf.put_i32(len);
    }

    fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.length(value.len() as i32);
        self.buf.put_slice(value);
        self
    }

    fn text(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }

    fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    fn null(&mut self) -> &mut Self {
        self.length(-1);
        self
    }

    fn int8(&mut self, value: i64) -> &mut Self {
        self.length(8);
        self.buf.put_i64(value);
        self
    }

    fn int4(&mut self, value: i32) -> &mut Self {
        self.length(4);
        self.buf.put_i32(value);
        self
    }

    fn int2(&mut self, value: i16) -> &mut Self {
        self.length(2);
        self.buf.put_i16(value);
        self
    }

    /// Seconds since the Unix epoch; NULL when unknown or before it (as the decoder never
    /// produces a negative one, that is only rindexer's null).
    fn timestamptz(&mut self, secs: Option<i64>) -> &mut Self {
        match secs.filter(|s| *s >= 0) {
            Some(s) => self.int8((s - POSTGRES_EPOCH_SECS) * 1_000_000),
            None => self.null(),
        }
    }

    fn numeric(&mut self, value: &Numeric) -> &mut Self {
        let at = self.buf.len();
        self.length(0);
        value.encode(self.buf);
        let len = (self.buf.len() - at - 4) as i32;
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self
    }

    /// JSONB's binary form: version 1, then the JSON text.
    fn jsonb(&mut self, json: &str) -> &mut Self {
        self.length(json.len() as i32 + 1);
        self.buf.put_u8(1);
        self.buf.put_slice(json.as_bytes());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::decode::decode_payload;

    /// Every kind of event, with the largest amounts, encodes within its bound, so the
    /// buffer is never grown.
    #[test]
    fn rows_fit_their_bound() {
        let max = ruint::aliases::U256::MAX.to_string();
        let tx = r#""transaction_information":{"transaction_hash":"0x01","log_index":"0x1","block_number":7,
            "block_hash":"0x02","address":"0x0000000000000000000000000000000000000003","network":"mainnet",
            "transaction_index":0,"block_timestamp":"0x5"}"#
            .replace("\"0x01\"", &format!("\"0x{}\"", "1".repeat(64)))
            .replace("\"0x02\"", &format!("\"0x{}\"", "2".repeat(64)));
        let (id, who) = (format!("\"{}\"", "a".repeat(64)), "\"0x00000000000000000000000000000000000000aa\"");
        let payloads = [
            ("AtomCreated", format!(r#""creator":{who},"termId":{id},"atomWallet":{who},"atomData":"68656c6c6f""#)),
            (
                "TripleCreated",
                format!(r#""creator":{who},"termId":{id},"subjectId":{id},"predicateId":{id},"objectId":{id}"#),
            ),
            (
                "Deposited",
                format!(
                    r#""sender":{who},"receiver":{who},"termId":{id},"curveId":"{max}","assets":"{max}",
                    "assetsAfterFees":"{max}","shares":"{max}","totalShares":"{max}","vaultType":2"#
                ),
            ),
            (
                "Redeemed",
                format!(
                    r#""sender":{who},"receiver":{who},"termId":{id},"curveId":"{max}","shares":"{max}",
                    "totalShares":"{max}","assets":"{max}","fees":"{max}","vaultType":1"#
                ),
            ),
            (
                "SharePriceChanged",
                format!(
                    r#""termId":{id},"curveId":"{max}","sharePrice":"{max}","totalAssets":"{max}",
                    "totalShares":"{max}","vaultType":0"#
                ),
            ),
            ("SomethingElse", r#""anything":[1,2,{"deep":"value"}]"#.to_owned()),
        ];
        for (name, fields) in payloads {
            let json = format!(r#"{{"event_name":"{name}","event_data":[{{{fields},{tx}}}]}}"#);
            let decoded = decode_payload(json.as_bytes()).expect("decodes");
            assert_eq!(decoded.failures, vec![], "{name}");
            let mut event = decoded.events.into_iter().next().expect("one event");
            event.origin = Some(crate::event::Position::new(-1, (i64::MAX >> 22, 1)));
            let mut buf = BytesMut::new();
            encode_row(&event, &mut buf);
            assert!(buf.len() <= row_bound(&event), "{name}: {} > {}", buf.len(), row_bound(&event));
            let table = &encode_events(std::slice::from_ref(&event))[0];
            assert_eq!(table.data.len(), COPY_HEADER + buf.len() + COPY_TRAILER, "{name}");
        }
    }
}
