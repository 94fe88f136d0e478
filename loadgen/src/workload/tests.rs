//! Workload properties, checked through the engine's own decoder.

use std::collections::{HashMap, HashSet};

use rps::event::decode::decode_payload;
use rps::event::{Event, EventKind};
use ruint::aliases::U256;

use super::*;

fn config(events: usize) -> WorkloadConfig {
    WorkloadConfig { events, atoms: 300, triples: 600, accounts: 200, events_per_message: 20, ..Default::default() }
}

/// Other producers' spellings: several per value.
fn mixed(events: usize) -> WorkloadConfig {
    WorkloadConfig { encoding: Encoding::Mixed, ..config(events) }
}

fn noisy(events: usize) -> WorkloadConfig {
    WorkloadConfig { shuffle_window: 16, duplicate_rate: 0.1, malformed_rate: 0.1, ..config(events) }
}

/// Every event of the workload's good messages (duplicates included), and the failures.
fn decode_all(workload: &Workload, kind: MessageKind) -> Vec<Event> {
    let mut events = Vec::new();
    for m in workload.messages.iter().filter(|m| m.kind == kind) {
        let decoded = decode_payload(m.payload.as_bytes()).unwrap_or_else(|e| panic!("{e}: {}", m.payload));
        assert!(decoded.failures.is_empty(), "{:?} in {}", decoded.failures, m.payload);
        assert_eq!(decoded.events.len(), m.events);
        events.extend(decoded.events);
    }
    events
}

fn in_chain_order(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    events
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = generate(&noisy(3_000));
    let b = generate(&noisy(3_000));
    assert_eq!(a.messages, b.messages);
    assert_eq!(a.stats, b.stats);
    let c = generate(&WorkloadConfig { seed: 43, ..noisy(3_000) });
    assert_ne!(a.messages, c.messages);
}

#[test]
fn good_messages_decode_to_exactly_the_planned_events() {
    for events in [0, 1, 2, 3, 5, 17, 4_001] {
        let workload = generate(&noisy(events));
        let decoded = decode_all(&workload, MessageKind::Original);
        let s = &workload.stats;
        assert_eq!(decoded.len(), events);
        assert_eq!(s.events, events);
        assert_eq!(s.atoms + s.triples + s.deposits + s.redeems + s.share_price_changes, events);
        let count = |f: fn(&EventKind) -> bool| decoded.iter().filter(|e| f(&e.kind)).count();
        assert_eq!(count(|k| matches!(k, EventKind::AtomCreated(_))), s.atoms);
        assert_eq!(count(|k| matches!(k, EventKind::TripleCreated(_))), s.triples);
        assert_eq!(count(|k| matches!(k, EventKind::Deposited(_))), s.deposits);
        assert_eq!(count(|k| matches!(k, EventKind::Redeemed(_))), s.redeems);
        assert_eq!(count(|k| matches!(k, EventKind::SharePriceChanged(_))), s.share_price_changes);
        assert_eq!(s.messages, s.original_messages + s.duplicates + s.malformed);
        assert_eq!(s.messages, workload.messages.len());
    }
}

#[test]
fn messages_hold_one_event_type_and_match_their_stream() {
    let workload = generate(&noisy(2_000));
    for m in workload.messages.iter().filter(|m| m.kind != MessageKind::Malformed) {
        let decoded = decode_payload(m.payload.as_bytes()).unwrap();
        let ty = EventType::ALL.iter().find(|t| t.stream() == m.stream).unwrap();
        assert!(m.payload.contains(&format!("\"event_name\":\"{}\"", ty.name())));
        assert!(m.payload.contains(ty.signature_hash()));
        assert!(decoded.events.len() <= 20);
    }
}

#[test]
fn chain_positions_and_event_ids_are_unique() {
    let workload = generate(&noisy(6_000));
    let events = decode_all(&workload, MessageKind::Original);
    let positions: HashSet<(i64, i64)> = events.iter().map(|e| (e.tx.block_number, e.tx.log_index)).collect();
    assert_eq!(positions.len(), events.len());
    let ids: HashSet<(&str, i64)> = events.iter().map(|e| (e.tx.transaction_hash.as_str(), e.tx.log_index)).collect();
    assert_eq!(ids.len(), events.len());
    // Log indexes count up from 0 within each block, across event types.
    let mut per_block: HashMap<i64, Vec<i64>> = HashMap::new();
    for e in &events {
        per_block.entry(e.tx.block_number).or_default().push(e.tx.log_index);
    }
    for (block, mut logs) in per_block {
        logs.sort_unstable();
        assert_eq!(logs, (0..logs.len() as i64).collect::<Vec<_>>(), "block {block}");
    }
    let s = &workload.stats;
    assert_eq!(positions.iter().map(|p| p.0).min(), Some(s.first_block as i64));
    assert_eq!(positions.iter().map(|p| p.0).max(), Some(s.last_block as i64));
}

#[test]
fn malformed_messages_never_yield_an_event() {
    let workload = generate(&WorkloadConfig { malformed_rate: 2.0, ..config(2_000) });
    let malformed: Vec<&StreamMessage> =
        workload.messages.iter().filter(|m| m.kind == MessageKind::Malformed).collect();
    assert_eq!(malformed.len(), workload.stats.malformed);
    assert_eq!(malformed.len(), workload.stats.original_messages * 2);
    let mut whole_payload_errors = 0;
    for m in malformed {
        match decode_payload(m.payload.as_bytes()) {
            Err(_) => whole_payload_errors += 1,
            Ok(d) => {
                assert!(d.events.is_empty(), "{}", m.payload);
                assert_eq!(d.failures.len(), 1, "{}", m.payload);
            }
        }
    }
    assert!(whole_payload_errors > 0);
}

#[test]
fn duplicates_repeat_an_earlier_original_byte_for_byte() {
    let workload = generate(&noisy(4_000));
    assert!(workload.stats.duplicates > 0);
    let mut seen = HashSet::new();
    for m in &workload.messages {
        match m.kind {
            MessageKind::Original => assert!(seen.insert(m.payload.as_str())),
            MessageKind::Duplicate => assert!(seen.contains(m.payload.as_str())),
            MessageKind::Malformed | MessageKind::Orphaned | MessageKind::Reorg => {}
        }
    }
}

#[test]
fn noise_does_not_change_the_events() {
    let clean = in_chain_order(decode_all(&generate(&config(3_000)), MessageKind::Original));
    let noisy = generate(&noisy(3_000));
    assert_eq!(in_chain_order(decode_all(&noisy, MessageKind::Original)), clean);
    let mut with_duplicates = decode_all(&noisy, MessageKind::Duplicate);
    with_duplicates.extend(decode_all(&noisy, MessageKind::Original));
    let mut distinct = in_chain_order(with_duplicates);
    distinct.dedup();
    assert_eq!(distinct, clean);
}

#[test]
fn shuffle_delivers_out_of_order() {
    // The mixed encoding numbers its messages in the order they were packed.
    let workload = generate(&WorkloadConfig { encoding: Encoding::Mixed, ..noisy(3_000) });
    let ids: Vec<usize> = workload
        .messages
        .iter()
        .filter(|m| m.kind == MessageKind::Original)
        .map(|m| {
            let at = m.payload.find("rindexer_stream__").unwrap() + "rindexer_stream__".len();
            m.payload[at..].split('"').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(ids.windows(2).any(|w| w[0] > w[1]));
    assert_eq!(ids.iter().copied().collect::<HashSet<_>>().len(), ids.len());
}

/// Replays the events in chain order, the way the engine's reference views read them.
#[derive(Default)]
struct Replay {
    kinds: HashMap<rps::event::Bytes32, i16>,
    positions: HashMap<(rps::event::Address, rps::event::Bytes32, U256), U256>,
    closed_positions: usize,
}

impl Replay {
    fn vault_shares(&self, term: &str, curve: U256) -> U256 {
        self.positions.iter().filter(|((_, t, c), _)| t == term && *c == curve).map(|(_, s)| *s).sum()
    }

    fn apply(&mut self, event: &Event, previous: Option<&Event>) {
        match &event.kind {
            EventKind::AtomCreated(a) => {
                self.kinds.insert(a.term_id, 0);
            }
            EventKind::TripleCreated(t) => {
                for id in [&t.subject_id, &t.predicate_id, &t.object_id] {
                    assert_eq!(self.kinds.get(id), Some(&0), "triples are made of existing atoms");
                }
                self.kinds.insert(t.term_id, 1);
                self.kinds.insert(t.counter_term_id, 2);
            }
            EventKind::Deposited(d) => {
                assert_eq!(self.kinds.get(&d.term_id), Some(&d.vault_type));
                let held = self.positions.entry((d.receiver, d.term_id, d.curve_id.0)).or_default();
                *held += d.shares.0;
                assert_eq!(*held, d.total_shares.0, "Deposited carries the receiver's new balance");
                assert!(d.assets_after_fees.0 <= d.assets.0);
            }
            EventKind::Redeemed(r) => {
                assert_eq!(self.kinds.get(&r.term_id), Some(&r.vault_type));
                let key = (r.sender, r.term_id, r.curve_id.0);
                let held = self.positions.get_mut(&key).expect("redeem from an open position");
                assert!(r.shares.0 > U256::ZERO && r.shares.0 <= *held);
                *held -= r.shares.0;
                assert_eq!(*held, r.total_shares.0, "Redeemed carries the sender's remaining balance");
                if held.is_zero() {
                    self.positions.remove(&key);
                    self.closed_positions += 1;
                }
            }
            EventKind::SharePriceChanged(p) => {
                let previous = previous.expect("a price change follows a deposit or redeem");
                assert_eq!(previous.tx.transaction_hash, event.tx.transaction_hash);
                let (term, curve) = match &previous.kind {
                    EventKind::Deposited(d) => (&d.term_id, d.curve_id),
                    EventKind::Redeemed(r) => (&r.term_id, r.curve_id),
                    other => panic!("SharePriceChanged after {other:?}"),
                };
                assert_eq!((term, curve), (&p.term_id, p.curve_id));
                assert_eq!(self.kinds.get(&p.term_id), Some(&p.vault_type));
                assert_eq!(p.total_shares.0, self.vault_shares(term, curve.0));
                if p.total_shares.0.is_zero() {
                    assert!(p.total_assets.0.is_zero());
                }
            }
            EventKind::Generic(g) => panic!("unexpected generic event {}", g.event_name),
        }
    }
}

#[test]
fn vault_state_is_consistent_across_events() {
    let events = in_chain_order(decode_all(&generate(&config(8_000)), MessageKind::Original));
    let mut replay = Replay::default();
    for (i, event) in events.iter().enumerate() {
        replay.apply(event, i.checked_sub(1).map(|p| &events[p]));
    }
    assert!(replay.closed_positions > 0, "some positions are redeemed down to zero");
}

#[test]
fn covers_the_encodings_and_value_ranges_the_engine_must_handle() {
    let workload = generate(&mixed(8_000));
    let all: String = workload.messages.iter().map(|m| m.payload.as_str()).collect();
    for needle in [
        "\"block_timestamp\":null",
        "\"log_index\":\"0x",
        "\"block_number\":\"8",
        "\"transaction_index\":1",
        "\"atomData\":\"0x",
        "\"atomData\":\"6",
        "\"curveId\":2",
        "\"vaultType\":\"2\"",
        "\"block_number\":0,",
    ] {
        assert!(all.contains(needle), "no {needle}");
    }
    let singles = generate(&WorkloadConfig { events_per_message: 1, ..mixed(200) });
    assert!(singles.messages.iter().any(|m| m.payload.contains("\"event_data\":{")));
    assert!(singles.messages.iter().any(|m| m.payload.contains("\"event_data\":[{")));
    let events = decode_all(&workload, MessageKind::Original);
    let amounts: Vec<U256> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Deposited(d) => Some(d.assets.0),
            _ => None,
        })
        .collect();
    assert!(amounts.iter().any(|a| a.bit_len() > 128), "an amount past 128 bits");
    assert!(amounts.iter().all(|a| a.bit_len() <= 200));
    let binary_atoms =
        events.iter().filter(|e| matches!(&e.kind, EventKind::AtomCreated(a) if a.atom_data_text.is_none()));
    assert!(binary_atoms.count() > 0, "an atom whose data is not text");
    let types: HashSet<i16> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Deposited(d) => Some(d.vault_type),
            _ => None,
        })
        .collect();
    assert_eq!(types, HashSet::from([0, 1, 2]));
}

#[test]
fn mixed_addresses_are_mostly_checksummed() {
    let workload = generate(&mixed(2_000));
    let payload = &workload.messages.iter().find(|m| m.stream == "deposited").unwrap().payload;
    let value: serde_json::Value = serde_json::from_str(payload).unwrap();
    let data = value["event_data"].as_array().cloned().unwrap_or_else(|| vec![value["event_data"].clone()]);
    let senders: Vec<&str> = data.iter().map(|e| e["sender"].as_str().unwrap()).collect();
    assert!(senders.iter().any(|s| s.chars().any(|c| c.is_ascii_uppercase())));
    for s in senders {
        let checksummed = crate::eip55::to_checksum(s).unwrap();
        assert!(s == checksummed || s == s.to_ascii_lowercase(), "{s}");
    }
}

#[test]
fn signature_hash_is_the_topic0() {
    assert_eq!(
        EventType::Deposited.signature_hash(),
        "0xf717428d3271f4ca44ee92a96ecda708463de1c200f30db4e295def5e8db6b4a"
    );
}

#[test]
fn odd_knobs_do_not_panic() {
    let odd = WorkloadConfig {
        events: 300,
        atoms: 0,
        triples: 0,
        accounts: 0,
        events_per_message: 0,
        shuffle_window: 1_000_000,
        duplicate_rate: f64::NAN,
        malformed_rate: -1.0,
        redeem_ratio: 7.0,
        zipf_exponent: -3.0,
        max_txs_per_block: 0,
        ..Default::default()
    };
    let workload = generate(&odd);
    assert_eq!(decode_all(&workload, MessageKind::Original).len(), 300);
    assert_eq!((workload.stats.duplicates, workload.stats.malformed), (0, 0));
}

/// Slices numbered from the atoms before them create distinct terms; slice 0 is `generate`.
#[test]
fn slices_create_distinct_terms() {
    let first = WorkloadConfig { seed: 7, ..config(3_000) };
    assert_eq!(generate_slice(&first, 0).messages, generate(&first).messages);
    let a = generate_slice(&first, 0);
    let second = WorkloadConfig { seed: 8, start_block: a.stats.last_block + 1, ..config(3_000) };
    let b = generate_slice(&second, a.stats.atoms);
    let terms = |w: &Workload| -> HashSet<rps::event::Bytes32> {
        decode_all(w, MessageKind::Original)
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::AtomCreated(a) => Some(a.term_id),
                EventKind::TripleCreated(t) => Some(t.term_id),
                _ => None,
            })
            .collect()
    };
    let (ta, tb) = (terms(&a), terms(&b));
    assert_eq!(ta.len(), a.stats.atoms + a.stats.triples);
    assert_eq!(tb.len(), b.stats.atoms + b.stats.triples);
    assert!(ta.is_disjoint(&tb), "slices share terms");
    assert!(b.stats.first_block > a.stats.last_block);
}

/// A later slice's triples use the first slice's predicates, and its hot triples the first
/// slice's shared atoms as subject or object (never both), so pairs such as ("is a", X)
/// gather triples from every slice, while each triple stays new.
#[test]
fn later_slices_grow_the_first_slices_pairs() {
    let first = WorkloadConfig { seed: 7, ..config(3_000) };
    let a = generate_slice(&first, 0);
    let second = WorkloadConfig { seed: 8, start_block: a.stats.last_block + 1, ..config(3_000) };
    let b = generate_slice(&second, a.stats.atoms);
    let events = |w: &Workload| decode_all(w, MessageKind::Original);
    let atoms = |w: &Workload| -> HashSet<rps::event::Bytes32> {
        events(w)
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::AtomCreated(a) => Some(a.term_id),
                _ => None,
            })
            .collect()
    };
    let triples = |w: &Workload| -> Vec<rps::event::TripleCreated> {
        events(w)
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::TripleCreated(t) => Some(t),
                _ => None,
            })
            .collect()
    };
    let (a_atoms, b_atoms) = (atoms(&a), atoms(&b));
    let a_predicates: HashSet<_> = triples(&a).iter().map(|t| t.predicate_id).collect();
    assert_eq!(a_predicates.len(), atoms::PREDICATES.len());
    let pairs = |w: &Workload| -> HashSet<_> { triples(w).iter().map(|t| (t.predicate_id, t.object_id)).collect() };
    let mut hot = 0;
    for t in triples(&b) {
        assert!(a_predicates.contains(&t.predicate_id), "a later slice uses the first slice's predicates");
        let shared = [t.subject_id, t.object_id].iter().filter(|id| a_predicates.contains(*id)).count();
        assert!(shared <= 1, "a hot triple shares its subject or its object, not both");
        for id in [t.subject_id, t.object_id] {
            assert!(b_atoms.contains(&id) || a_predicates.contains(&id), "made of the slice's atoms or shared ones");
        }
        hot += shared;
        assert!(a_atoms.contains(&t.predicate_id));
    }
    let share = hot as f64 / b.stats.triples as f64;
    assert!((0.1..0.3).contains(&share), "hot share {share}");
    assert!(!pairs(&a).is_disjoint(&pairs(&b)), "the slices share (predicate, object) pairs");
}

#[test]
fn both_encodings_carry_the_same_events() {
    for events in [1, 7, 3_000] {
        let rindexer = in_chain_order(decode_all(&generate(&config(events)), MessageKind::Original));
        let mixed = in_chain_order(decode_all(&generate(&mixed(events)), MessageKind::Original));
        assert_eq!(rindexer.len(), events);
        assert_eq!(rindexer, mixed);
    }
}

/// How a JSON value is spelled, for comparing the generator with the real capture.
fn spelling(v: &serde_json::Value) -> &'static str {
    let Some(s) = v.as_str() else {
        return if v.is_number() {
            "number"
        } else if v.is_null() {
            "null"
        } else {
            "other"
        };
    };
    let hex = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match s.strip_prefix("0x") {
        Some(t) if hex(t) => "0x-lower-hex",
        Some(_) => "0x-other",
        None if s.bytes().all(|b| b.is_ascii_digit()) => "decimal",
        None if hex(s) => "lower-hex",
        None => "text",
    }
}

/// Each (event, field) → the spellings seen, and whether every object's keys were sorted.
fn spellings(payloads: impl Iterator<Item = String>) -> HashMap<(String, String), HashSet<&'static str>> {
    let mut seen: HashMap<(String, String), HashSet<&'static str>> = HashMap::new();
    for payload in payloads {
        let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
        let name = value["event_name"].as_str().unwrap().to_owned();
        let mut note = |key: &str, v: &serde_json::Value| {
            seen.entry((name.clone(), key.to_owned())).or_default().insert(spelling(v));
        };
        for (key, v) in value.as_object().unwrap().iter().filter(|(k, _)| *k != "event_data") {
            note(key, v);
        }
        note("event_data", &serde_json::Value::from(value["event_data"].is_array()));
        for event in value["event_data"].as_array().into_iter().flatten() {
            for (key, v) in event.as_object().unwrap().iter().filter(|(k, _)| *k != "transaction_information") {
                note(key, v);
            }
            for (key, v) in event["transaction_information"].as_object().unwrap() {
                note(&format!("tx.{key}"), v);
            }
        }
    }
    seen
}

/// Keys of every JSON object in `text`, in the order written, object by object.
fn keys_in_written_order(text: &str) -> Vec<Vec<String>> {
    let mut stack: Vec<Vec<String>> = Vec::new();
    let mut done = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => stack.push(Vec::new()),
            '}' => done.push(stack.pop().unwrap()),
            '"' => {
                let end = text[i + 1..].find('"').unwrap() + i + 1;
                let is_key = text[end + 1..].starts_with(':');
                if is_key {
                    stack.last_mut().unwrap().push(text[i + 1..end].to_owned());
                }
                while chars.peek().is_some_and(|(j, _)| *j <= end) {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    done
}

#[test]
fn rindexer_encoding_spells_every_field_as_the_real_capture_does() {
    let capture = include_str!("../../../samples/rindexer-v0.41-real-messages.jsonl");
    let real: Vec<String> = capture
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["payload"].to_string())
        .filter(|p| !p.contains("__rindexer_reorg"))
        .collect();
    let real = spellings(real.into_iter());
    let workload = generate(&config(4_000));
    let ours = spellings(workload.messages.iter().map(|m| m.payload.clone()));
    assert_eq!(ours.keys().collect::<HashSet<_>>(), real.keys().collect::<HashSet<_>>(), "the same fields");
    for (field, spelled) in &ours {
        let mut allowed = real[field].clone();
        if field.1 == "tx.block_timestamp" {
            allowed.insert("null"); // rindexer's when the node gives no timestamp
        }
        if allowed.contains("lower-hex") {
            allowed.insert("decimal"); // hex text that happens to hold digits only
        }
        assert!(spelled.is_subset(&allowed), "{field:?}: ours {spelled:?}, rindexer's {allowed:?}");
    }
    for m in &workload.messages {
        for keys in keys_in_written_order(&m.payload) {
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys out of order: {keys:?}");
        }
    }
}

#[test]
fn rindexer_encoding_sends_one_block_per_message() {
    let workload = generate(&WorkloadConfig { events_per_message: 1_000, ..config(6_000) });
    let mut ids = HashSet::new();
    for m in &workload.messages {
        let value: serde_json::Value = serde_json::from_str(&m.payload).unwrap();
        let block = value["block_number"].as_u64().unwrap();
        let events = value["event_data"].as_array().unwrap();
        assert!(events.iter().all(|e| e["transaction_information"]["block_number"].as_u64() == Some(block)));
        assert!(m.payload.len() < 80_000);
        let id = value["message_id"].as_str().unwrap();
        assert!(id.contains(&format!("-blk{block}-chunk-")), "{id}");
        assert!(ids.insert(id.to_owned()), "message id {id} twice");
    }
    // Big blocks are chunked, and the chunks of one block go out in any order (rindexer
    // XADDs them concurrently).
    let big = generate(&WorkloadConfig { events_per_message: 10_000, max_txs_per_block: 400, ..config(2_000) });
    let mut chunks: HashMap<(String, u64), Vec<usize>> = HashMap::new();
    for m in &big.messages {
        let p = payload(m);
        let chunk = p["message_id"].as_str().unwrap().rsplit('-').next().unwrap().parse().unwrap();
        chunks.entry((m.stream.clone(), p["block_number"].as_u64().unwrap())).or_default().push(chunk);
    }
    assert!(chunks.values().any(|c| c.len() > 1), "a block sent in chunks");
    assert!(chunks.values().any(|c| !c.is_sorted()), "a block's chunks out of order");
    for c in chunks.values() {
        let mut sorted = c.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..c.len()).collect::<Vec<_>>(), "every chunk once");
    }
}

fn forked(events: usize, seed: u64) -> WorkloadConfig {
    WorkloadConfig { seed, reorg_rate: 0.08, reorg_depth: 6, duplicate_rate: 0.1, shuffle_window: 16, ..config(events) }
}

fn payload(m: &StreamMessage) -> serde_json::Value {
    serde_json::from_str(&m.payload).unwrap()
}

#[test]
fn forks_leave_the_canonical_events_as_they_were() {
    let plain = generate(&WorkloadConfig { reorg_rate: 0.0, ..forked(3_000, 5) });
    let workload = generate(&forked(3_000, 5));
    let f = &workload.stats.forks;
    assert!(f.reorgs >= 5 && f.orphaned_events > 0, "{f:?}");
    assert_eq!(f.notices, f.reorgs * 5 * EventType::ALL.len());
    assert_eq!(workload.messages.iter().filter(|m| m.kind == MessageKind::Reorg).count(), f.notices, "none twice");
    let canonical = |w: &Workload| {
        let mut events = in_chain_order(decode_all(w, MessageKind::Original));
        events.dedup();
        events
    };
    assert_eq!(canonical(&workload), canonical(&plain));
    // Every orphaned event is of an orphaned block, and differs from the canonical chain.
    let orphaned: HashSet<(i64, String)> = f.orphaned_blocks.iter().map(|(b, h)| (*b as i64, h.clone())).collect();
    let orphans = decode_all(&workload, MessageKind::Orphaned);
    assert!(orphans.iter().all(|e| orphaned.contains(&(e.tx.block_number, e.tx.block_hash.to_string()))));
    let canonical_hashes: HashSet<String> = canonical(&workload).iter().map(|e| e.tx.block_hash.to_string()).collect();
    assert!(orphaned.iter().all(|(_, h)| !canonical_hashes.contains(h)));
}

/// rindexer's order within each stream: a block's orphaned version, then a notice whose
/// fork_block is at most one above it, and only then the block's canonical version.
#[test]
fn each_stream_sees_the_old_chain_then_the_notice_then_the_new_chain() {
    for seed in 1..6 {
        let workload = generate(&forked(2_000, seed));
        for ty in EventType::ALL {
            // Orphaned blocks of this stream not yet followed by a notice.
            let mut open: Vec<u64> = Vec::new();
            for m in workload.messages.iter().filter(|m| m.stream == ty.stream()) {
                let p = payload(m);
                let block = p["block_number"].as_u64().unwrap();
                match m.kind {
                    MessageKind::Orphaned => open.push(block),
                    MessageKind::Reorg => {
                        let fork = p["event_data"][0]["fork_block"].as_u64().unwrap();
                        assert!(open.iter().all(|&b| b + 1 >= fork), "notice at {fork} above orphaned {open:?}");
                        open.clear();
                    }
                    MessageKind::Original => {
                        assert!(!open.contains(&block), "block {block} canonical before its notice")
                    }
                    _ => {}
                }
            }
            assert!(open.is_empty(), "orphaned blocks {open:?} never followed by a notice");
        }
    }
}

/// Entry ids carry publication times: increasing along each stream, every copy of a notice
/// at one millisecond, two notices at least a block time apart (the engine tells reorgs
/// apart and orders them by these times).
#[test]
fn forks_carry_publication_times_the_engine_can_rely_on() {
    let workload = generate(&WorkloadConfig { malformed_rate: 0.05, ..forked(3_000, 9) });
    let id = |m: &StreamMessage| -> (u64, u64) {
        let (ms, seq) = m.entry_id.as_deref().unwrap().split_once('-').unwrap();
        (ms.parse().unwrap(), seq.parse().unwrap())
    };
    let mut last: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut notice_ms: HashMap<u64, HashSet<u64>> = HashMap::new();
    for m in &workload.messages {
        let at = id(m);
        if let Some(prev) = last.insert(&m.stream, at) {
            assert!(at > prev, "ids go up along {}", m.stream);
        }
        if m.kind == MessageKind::Reorg {
            notice_ms.entry(payload(m)["event_data"][0]["fork_block"].as_u64().unwrap()).or_default().insert(at.0);
        }
    }
    assert_eq!(notice_ms.len(), workload.stats.forks.reorgs, "one fork_block per reorg");
    let mut times: Vec<u64> = notice_ms
        .values()
        .map(|t| {
            assert_eq!(t.len(), 1, "copies of one notice at one time");
            *t.iter().next().unwrap()
        })
        .collect();
    times.sort_unstable();
    assert!(times.windows(2).all(|w| w[1] - w[0] >= 2_000), "reorgs a block time apart");
}
