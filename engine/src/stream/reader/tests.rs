//! The group reader against the local Redis (`scripts/test.sh` starts it), each test on
//! streams of its own that it deletes afterwards.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;

use super::*;
use crate::stream::EntryKey;

const REDIS: &str = "redis://127.0.0.1:6379";

/// Fresh stream names, written to, and deleted on drop.
struct Streams {
    names: Vec<String>,
}

impl Streams {
    async fn new(tag: &str, count: usize, entries_each: usize) -> Streams {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let names: Vec<String> =
            (0..count).map(|i| format!("rps_unit_reader_{tag}_{}_{nanos}_{i}", std::process::id())).collect();
        let mut con = crate::stream::connect(REDIS).await.expect("the local Redis (scripts/test.sh starts it)");
        for name in &names {
            for n in 0..entries_each {
                let _: String = con.xadd(name, "*", &[("n", n.to_string())]).await.unwrap();
            }
        }
        Streams { names }
    }

    fn config(&self, consumer: &str, count: usize, claim_idle: Duration) -> ReaderConfig {
        ReaderConfig {
            streams: self.names.clone(),
            group: "g".into(),
            consumer: consumer.into(),
            count,
            block: Duration::from_millis(10),
            claim_idle,
            create_streams: false,
            budget: ReadBudget::DEFAULT,
        }
    }

    async fn reader(&self, consumer: &str, count: usize, claim_idle: Duration) -> GroupReader {
        GroupReader::connect(REDIS, self.config(consumer, count, claim_idle)).await.expect("connect")
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        let names = self.names.clone();
        // Best effort, on a plain connection: the test's runtime may be gone.
        if let Ok(mut con) = redis::Client::open(REDIS).and_then(|c| c.get_connection()) {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&names).query(&mut con);
        }
    }
}

const LONG: Duration = Duration::from_secs(3600);

/// Every entry `reader` returns until it reports idle, by key.
async fn drain(reader: &mut GroupReader) -> Vec<EntryKey> {
    let mut out = Vec::new();
    while let Read::Entries(entries) = reader.next().await.expect("read") {
        out.extend(entries.iter().map(Entry::key));
    }
    out
}

fn sorted(mut keys: Vec<EntryKey>) -> Vec<EntryKey> {
    keys.sort();
    keys
}

#[tokio::test]
async fn a_missing_stream_is_refused_unless_it_may_be_created() {
    let s = Streams::new("missing", 1, 0).await;
    let mut config = s.config("a", 1, LONG);
    let refused = GroupReader::connect(REDIS, config.clone()).await.err().expect("a missing stream is refused");
    assert!(matches!(&refused, StreamError::Missing(name) if *name == s.names[0]), "{refused}");
    config.create_streams = true;
    let mut reader = GroupReader::connect(REDIS, config).await.expect("created");
    assert!(matches!(reader.next().await.unwrap(), Read::Idle));
}

#[tokio::test]
async fn new_entries_once_each_then_idle() {
    let s = Streams::new("new", 2, 7).await;
    let mut reader = s.reader("a", 3, LONG).await;
    let read = drain(&mut reader).await;
    assert_eq!(read.len(), 14);
    assert_eq!(sorted(read.clone()).windows(2).filter(|w| w[0] == w[1]).count(), 0, "no entry twice");
    assert_eq!(reader.in_flight().len(), 14, "everything returned is in flight until done");
    assert!(matches!(reader.next().await.unwrap(), Read::Idle));
    reader.in_flight().done(&read);
    assert!(reader.in_flight().is_empty());
}

#[tokio::test]
async fn own_pending_entries_are_read_back_page_by_page_once_each() {
    let s = Streams::new("own", 2, 10).await;
    let mut dead = s.reader("a", 100, LONG).await;
    let abandoned = drain(&mut dead).await;
    assert_eq!(abandoned.len(), 20);
    drop(dead);
    // The same name, after a restart: its pending entries first, in pages of 3 per stream.
    let mut heir = s.reader("a", 3, LONG).await;
    let mut pages = 0;
    let mut read = Vec::new();
    while let Read::Entries(entries) = heir.next().await.unwrap() {
        assert!(entries.len() <= 6, "a page holds at most count entries per stream");
        pages += 1;
        read.extend(entries.iter().map(Entry::key));
    }
    assert!(pages >= 4, "read in pages ({pages})");
    assert_eq!(sorted(read), sorted(abandoned), "each pending entry exactly once");
}

#[tokio::test]
async fn stale_entries_of_a_dead_consumer_are_claimed_once() {
    let s = Streams::new("claim", 1, 5).await;
    let mut dead = s.reader("dead", 100, LONG).await;
    let abandoned = drain(&mut dead).await;
    drop(dead);
    let mut other = s.reader("b", 2, Duration::ZERO).await;
    let claimed = drain(&mut other).await;
    assert_eq!(sorted(claimed), sorted(abandoned), "claimed once each, in pages of count");
}

#[tokio::test]
async fn entries_in_flight_are_not_delivered_again() {
    let s = Streams::new("inflight", 1, 6).await;
    // claim_idle zero: every claim round finds this consumer's own unacked entries idle.
    let mut reader = s.reader("a", 10, Duration::ZERO).await;
    let first = drain(&mut reader).await;
    assert_eq!(first.len(), 6);
    let in_flight = reader.in_flight();
    // Giving some back makes the reader go over its own pending entries again: only those
    // come back, the others are still in flight.
    in_flight.give_back(&first[..2]);
    let again = drain(&mut reader).await;
    assert_eq!(sorted(again), sorted(first[..2].to_vec()));
    // Claims (claim_idle is zero) never hand back what is in flight either.
    for _ in 0..3 {
        assert!(drain(&mut reader).await.is_empty());
    }
}

#[tokio::test]
async fn a_lost_group_is_created_again_without_redelivering_what_is_in_flight() {
    let s = Streams::new("nogroup", 1, 3).await;
    let mut reader = s.reader("a", 10, LONG).await;
    assert_eq!(drain(&mut reader).await.len(), 3);
    let mut con = crate::stream::connect(REDIS).await.unwrap();
    let _: () = redis::cmd("XGROUP").arg("DESTROY").arg(&s.names[0]).arg("g").query_async(&mut con).await.unwrap();
    let err = loop {
        match reader.next().await {
            Err(e) => break e,
            Ok(Read::Idle) => continue,
            Ok(Read::Entries(e)) => panic!("read {e:?} without a group"),
        }
    };
    assert_eq!(err.code(), Some("NOGROUP"));
    // The group is back, from the start of the stream: Redis hands the three entries out
    // again, but they are still in flight here, so they are not delivered twice.
    assert!(drain(&mut reader).await.is_empty());
    let _: String = con.xadd(&s.names[0], "*", &[("n", "new")]).await.unwrap();
    assert_eq!(drain(&mut reader).await.len(), 1, "the recreated group delivers new entries");
    assert_eq!(reader.in_flight().len(), 4);
}

/// Streams whose entries have a `payload` field of `sizes[i]` bytes each, in order.
async fn sized_entries(tag: &str, sizes: &[usize]) -> Streams {
    let s = Streams::new(tag, 1, 0).await;
    let mut con = crate::stream::connect(REDIS).await.unwrap();
    for (i, size) in sizes.iter().enumerate() {
        let payload = format!("{i:08}").repeat(size / 8 + 1)[..*size].to_owned();
        let _: String = con.xadd(&s.names[0], "*", &[("payload", payload)]).await.unwrap();
    }
    s
}

#[tokio::test]
async fn every_read_stays_within_its_byte_budget() {
    let s = sized_entries("budget", &[1000; 20]).await;
    let mut config = s.config("a", 100, LONG);
    config.budget = ReadBudget { read_bytes: 4500, entry_bytes: 2000, prefix_bytes: 16 };
    let mut reader = GroupReader::connect(REDIS, config).await.unwrap();
    let mut seen = Vec::new();
    while let Read::Entries(entries) = reader.next().await.unwrap() {
        // 4,500 bytes, and at most one entry more: 5 entries of 1,000 bytes.
        assert!(entries.len() <= 5, "a 4,500-byte read of 1,000-byte entries holds at most 5, not {}", entries.len());
        seen.extend(entries.iter().map(Entry::key));
    }
    assert_eq!(sorted(seen.clone()).len(), 20);
    // Read back as own pending entries (a restart): the same budget.
    let mut heir = GroupReader::connect(REDIS, reader.config.clone()).await.unwrap();
    let mut again = Vec::new();
    while let Read::Entries(entries) = heir.next().await.unwrap() {
        assert!(entries.len() <= 5);
        again.extend(entries.iter().map(Entry::key));
    }
    assert_eq!(again, seen, "own pending entries come back in order, once");
}

#[tokio::test]
async fn an_entry_over_the_limit_arrives_as_a_stub_never_whole() {
    let s = sized_entries("oversized", &[100, 300_000, 200]).await;
    let mut config = s.config("a", 100, LONG);
    config.budget = ReadBudget { read_bytes: 100_000, entry_bytes: 50_000, prefix_bytes: 64 };
    let mut reader = GroupReader::connect(REDIS, config).await.unwrap();
    let Read::Entries(entries) = reader.next().await.unwrap() else { panic!("entries") };
    assert_eq!(entries.len(), 3, "a stub costs its prefix, so all three fit one read");
    assert!(entries[0].oversized.is_none() && entries[2].oversized.is_none());
    let stub = entries[1].oversized.as_ref().expect("the large entry is a stub");
    assert_eq!((stub.bytes, stub.prefix.len(), stub.sha1.len(), stub.limit), (300_000, 64, 40, 50_000));
    assert_eq!(&stub.prefix[..8], b"00000001");
    assert!(entries[1].fields.is_empty(), "none of its fields crossed the wire");
    assert!(stub.reason().contains("entry of 300000 bytes exceeds the 50000-byte limit"), "{}", stub.reason());
}

#[tokio::test]
async fn entries_keep_their_fields_and_a_pending_entry_deleted_since_has_none() {
    let s = Streams::new("fields", 1, 0).await;
    let mut con = crate::stream::connect(REDIS).await.unwrap();
    let kept: String = con.xadd(&s.names[0], "*", &[("payload", "{}"), ("origin", "test")]).await.unwrap();
    let deleted: String = con.xadd(&s.names[0], "*", &[("payload", "[]")]).await.unwrap();
    let mut reader = s.reader("a", 10, LONG).await;
    let Read::Entries(first) = reader.next().await.unwrap() else { panic!("entries") };
    let text = |e: &Entry, f: &str| match e.fields.get(f) {
        Some(b) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("{f}: {other:?}"),
    };
    assert_eq!((first[0].id.as_str(), first[1].id.as_str()), (kept.as_str(), deleted.as_str()));
    assert_eq!(
        (text(&first[0], "payload"), text(&first[0], "origin"), first[0].fields.len()),
        ("{}".into(), "test".into(), 2)
    );
    assert_eq!(text(&first[1], "payload"), "[]");
    // Deleted while pending, then read back as own pending entries after a restart: the
    // entry comes back by id, without fields.
    let _: i64 = con.xdel(&s.names[0], &[&deleted]).await.unwrap();
    drop(reader);
    let mut heir = s.reader("a", 10, LONG).await;
    let Read::Entries(again) = heir.next().await.unwrap() else { panic!("entries") };
    assert_eq!(again.len(), 2);
    assert_eq!(text(&again[0], "payload"), "{}");
    assert_eq!(again[1].id, deleted);
    assert!(again[1].fields.is_empty() && again[1].oversized.is_none(), "{:?}", again[1]);
}

/// Entries over the limit in every shape the stub rule knows: one large value, values that
/// are each small but too many, two largest values of equal length (the first counts), and
/// a field name over the limit.
#[tokio::test]
async fn new_and_pending_reads_shape_oversized_entries_alike() {
    let s = Streams::new("stubs", 1, 0).await;
    let mut con = crate::stream::connect(REDIS).await.unwrap();
    let big = |c: char, n: usize| c.to_string().repeat(n);
    let entries: Vec<Vec<(String, String)>> = vec![
        vec![("a".into(), big('a', 10)), ("b".into(), big('b', 5_000)), ("c".into(), big('c', 20))],
        vec![("a".into(), big('a', 900)), ("b".into(), big('b', 900)), ("c".into(), big('c', 800))],
        vec![("a".into(), big('x', 700)), ("b".into(), big('y', 700)), ("c".into(), big('z', 700))],
        vec![("small".into(), big('s', 10))],
    ];
    for fields in &entries {
        let _: String = con.xadd(&s.names[0], "*", fields).await.unwrap();
    }
    let _: String = con.xadd(&s.names[0], "*", &[(big('n', 3_000), "v".to_owned())]).await.unwrap();
    let mut config = s.config("a", 100, LONG);
    config.budget = ReadBudget { read_bytes: 1 << 20, entry_bytes: 2_000, prefix_bytes: 8 };
    let mut reader = GroupReader::connect(REDIS, config.clone()).await.unwrap();
    let Read::Entries(new) = reader.next().await.unwrap() else { panic!("entries") };
    drop(reader);
    let mut heir = GroupReader::connect(REDIS, config).await.unwrap();
    let Read::Entries(pending) = heir.next().await.unwrap() else { panic!("entries") };
    assert_eq!((new.len(), pending.len()), (5, 5));
    let stub = |e: &Entry| e.oversized.clone().map(|o| (o.bytes, o.sha1, String::from_utf8(o.prefix).unwrap()));
    for (plain, script) in new.iter().zip(&pending).take(4) {
        assert_eq!(stub(plain), stub(script), "{} read new and read back", plain.id);
        assert_eq!(plain.fields, script.fields);
    }
    let shown: Vec<_> = new.iter().take(3).map(|e| stub(e).unwrap()).collect();
    assert_eq!((shown[0].0, shown[0].2.as_str()), (5_030, "bbbbbbbb"), "the one large value");
    assert_eq!((shown[1].0, shown[1].2.as_str()), (2_600, "aaaaaaaa"), "the first of two largest");
    assert_eq!((shown[2].0, shown[2].2.as_str()), (2_100, "xxxxxxxx"), "the first of three equals");
    assert_eq!(shown[0].1, sha1_smol::Sha1::from(big('b', 5_000)).digest().to_string());
    assert!(new[3].oversized.is_none() && new[3].fields.len() == 1);
    // A name over the limit is not held either (the script counts values only: it would keep it).
    let named = new[4].oversized.as_ref().expect("a name over the limit makes a stub");
    assert_eq!((named.bytes, named.prefix.as_slice()), (3_001, b"v".as_slice()));
    assert!(new[4].fields.is_empty());
}

/// One stream's backlog over the budget: the read keeps what fits, and what it skipped, on
/// that stream and the others, comes back next, in order, once.
#[tokio::test]
async fn entries_a_read_skipped_past_its_budget_come_back_once_in_order() {
    let s = Streams::new("skipped", 3, 0).await;
    let mut con = crate::stream::connect(REDIS).await.unwrap();
    for (i, name) in s.names.iter().enumerate() {
        for n in 0..6 * (i + 1) {
            let _: String = con.xadd(name, "*", &[("payload", format!("{n:0>1000}"))]).await.unwrap();
        }
    }
    let mut config = s.config("a", 100, LONG);
    config.budget = ReadBudget { read_bytes: 4_500, entry_bytes: 2_000, prefix_bytes: 16 };
    let mut reader = GroupReader::connect(REDIS, config).await.unwrap();
    let mut seen: Vec<EntryKey> = Vec::new();
    while let Read::Entries(entries) = reader.next().await.unwrap() {
        let bytes: usize = entries.iter().flat_map(|e| e.fields.iter()).map(|(_, v)| v.len()).sum();
        assert!(bytes <= 4_500 + 1_000, "{bytes} bytes kept by one read: over the budget plus one entry");
        seen.extend(entries.iter().map(Entry::key));
    }
    assert_eq!(seen.len(), 36, "every entry once: {seen:?}");
    assert_eq!(sorted(seen.clone()).windows(2).filter(|w| w[0] == w[1]).count(), 0);
    for name in &s.names {
        let parse =
            |id: &str| id.split_once('-').map(|(ms, seq)| (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap()));
        let ids: Vec<_> = seen.iter().filter(|(s, _)| s == name).map(|(_, id)| parse(id)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{name} in order: {ids:?}");
    }
}

#[test]
fn the_id_before_an_id_is_one_sequence_number_down() {
    assert_eq!(id_before("1700000000000-5"), "1700000000000-4");
    assert_eq!(id_before("1700000000000-0"), format!("1699999999999-{}", u64::MAX));
    assert_eq!(id_before("0-1"), "0-0");
    assert_eq!(id_before("junk"), "0");
}
