//! A batch: what one read of the streams decodes into, ready for the database.
//!
//! A large batch is cut into term-disjoint parts that the writer applies in concurrent
//! transactions (see [`super::apply`]): PostgreSQL runs one statement on one core, and
//! the merge of a large batch is otherwise a single backend's work while the machine's
//! other cores idle.

use std::ops::Range;

use foldhash::{HashMap, HashSet, HashSetExt};

use super::copy::{encode_events, EncodedTable};
use super::message::Message;
use crate::event::decode::alias::Aliases;
use crate::event::decode::{DecodeError, Decoded, Decoder, EventFailure};
use crate::event::encode::encode_payload;
use crate::event::reorg::ReorgNotice;
use crate::event::{stream_key, Event, Position};
use crate::runtime::StageTimes;
use crate::stream::{DeadLetter, EntryKey};

/// A message with more events failing decoding than this is dead-lettered once, whole.
pub const MAX_EVENT_DEAD_LETTERS: usize = 100;

/// A batch is cut into parts only when each part gets at least this many events: below
/// it, one more transaction costs more than the concurrency saves (live batches stay whole).
pub const MIN_PART_EVENTS: usize = 2000;

#[derive(Debug, Default)]
pub struct Batch {
    /// Valid events, each identity (`Event::order_key`) once: part by part, each part
    /// in chain order.
    pub events: Vec<Event>,
    /// Term-disjoint slices of `events`, together covering it; one when the batch is small.
    pub parts: Vec<Part>,
    /// For each event, the index in `acks` of the entry it came from (to dead-letter an
    /// event that PostgreSQL refuses, see [`super::apply`]).
    pub origins: Vec<u32>,
    /// Every entry read, to be acked once the batch commits.
    pub acks: Vec<EntryKey>,
    /// Rejected messages and events, written to the dead-letter streams before the acks.
    pub dead_letters: Vec<DeadLetter>,
    /// Copies of reorg notices, in the order read (so in stream order within each stream),
    /// with the index in `acks` of the entry each came from.
    pub notices: Vec<(ReorgNotice, u32)>,
    /// The streams the batch's entries came from, each once: the reorg barriers it needs.
    pub streams: Vec<String>,
    /// Milliseconds part of the batch's oldest entry id (Redis's clock when it was added).
    pub oldest_entry_ms: i64,
    /// Time the reader spent reading and decoding it.
    pub times: StageTimes,
}

/// A slice of a batch's events that shares no term with the rest of the batch, so it can
/// commit on its own: every row a merge writes or the cascade reads for a term (its atom
/// or triple, the triple naming it as counter term, its vaults, positions and term row)
/// belongs to events of that same part.
#[derive(Debug, Clone)]
pub struct Part {
    pub range: Range<usize>,
    /// Distinct term ids of the part's events, sorted: its lock set and cascade set.
    pub term_ids: Vec<String>,
    /// The part's events already in binary COPY format, encoded by the reader so the writer
    /// only streams bytes.
    pub encoded: Vec<EncodedTable>,
}

impl Part {
    fn of(events: &[Event], range: Range<usize>) -> Part {
        let slice = &events[range.clone()];
        Part { term_ids: term_ids_of(slice), encoded: encode_events(slice), range }
    }
}

impl Batch {
    /// Decode, order and deduplicate `messages` into one part.
    pub fn from_messages(messages: Vec<Message>) -> Batch {
        Batch::from_messages_in_parts(messages, 1)
    }

    /// Decode, order and deduplicate `messages`; cut into up to `max_parts` term-disjoint
    /// parts when large enough (see [`MIN_PART_EVENTS`]).
    pub fn from_messages_in_parts(messages: Vec<Message>, max_parts: usize) -> Batch {
        Batch::decode(messages, max_parts, &Aliases::default())
    }

    /// [`Batch::from_messages_in_parts`], reading event names through `aliases`.
    pub fn decode(messages: Vec<Message>, max_parts: usize, aliases: &Aliases) -> Batch {
        let mut batch = Batch::default();
        let decoded = decode_messages(&messages, aliases);
        // Sized up front, as is every vector below that holds events: growing one copies
        // every event again, into freshly zeroed pages (copying and page clearing under
        // vector growth were about 8 % of the engine's CPU in a profile of stop 16).
        let mut events = Vec::with_capacity(decoded_events(&decoded));
        let mut keys = StreamKeys::default();
        for (m, d) in messages.into_iter().zip(decoded) {
            batch.add(m, d, &mut keys, &mut events);
        }
        batch.note_entries();
        // Ordered, deduplicated and cut through a permutation: an event is a few hundred
        // bytes, and a sort would move each one many times.
        let mut order: Vec<usize> = (0..events.len()).collect();
        // Stable: of an event delivered twice, the first delivery is kept.
        order.sort_by(|&a, &b| events[a].0.order_key().cmp(&events[b].0.order_key()));
        order.dedup_by(|a, b| events[*a].0.order_key() == events[*b].0.order_key());
        let parts = max_parts.min(order.len() / MIN_PART_EVENTS).max(1);
        let sizes = if parts > 1 { group_by_part(&events, &mut order, parts) } else { vec![order.len()] };
        let mut slots: Vec<Option<(Event, u32)>> = events.into_iter().map(Some).collect();
        batch.events = Vec::with_capacity(order.len());
        batch.origins = Vec::with_capacity(order.len());
        for (event, origin) in order.iter().filter_map(|&i| slots[i].take()) {
            batch.events.push(event);
            batch.origins.push(origin);
        }
        let ranges: Vec<Range<usize>> = sizes
            .into_iter()
            .filter(|&n| n > 0)
            .scan(0, |start, n| {
                *start += n;
                Some(*start - n..*start)
            })
            .collect();
        let events = &batch.events;
        batch.parts = on_threads(ranges, |range| Part::of(events, range));
        batch
    }

    /// Every term id of the batch (each part's, unsorted across parts): the lock set.
    pub fn term_ids(&self) -> Vec<&str> {
        self.parts.iter().flat_map(|p| p.term_ids.iter().map(String::as_str)).collect()
    }

    /// Take in one message and what its payload decoded to (`None` when it had none).
    fn add(
        &mut self,
        m: Message,
        decoded: Option<Result<Decoded, DecodeError>>,
        keys: &mut StreamKeys,
        events: &mut Vec<(Event, u32)>,
    ) {
        let origin = self.acks.len() as u32;
        let Message { stream, id, payload } = m;
        // The entry's stream and id move into the acks; only a dead letter copies them.
        let key = (stream, id);
        let (raw, decoded) = match (payload, decoded) {
            (Ok(raw), Some(decoded)) => (raw, decoded),
            (Err(unreadable), _) => {
                let error = unreadable.reason;
                tracing::warn!(stream = %key.0, id = %key.1, %error, "dead-lettering message");
                let (stream, id) = key.clone();
                self.dead_letters.push(DeadLetter { stream, id, payload: unreadable.kept, error });
                self.acks.push(key);
                return;
            }
            (Ok(_), None) => unreachable!("every payload is decoded"),
        };
        match decoded {
            Ok(decoded) => {
                let total = decoded.events.len() + decoded.failures.len();
                let position = Some(Position::new(keys.of(&key.0), entry_position(&key.1)));
                events.extend(decoded.events.into_iter().map(|mut e| {
                    e.origin = position;
                    (e, origin)
                }));
                self.notices.extend(decoded.notices.into_iter().map(|n| (n, origin)));
                if !decoded.failures.is_empty() {
                    let (stream, id) = key.clone();
                    self.dead_letter_events(stream, id, raw.into(), total, decoded.failures);
                }
            }
            Err(error) => {
                tracing::warn!(stream = %key.0, id = %key.1, %error, "dead-lettering message");
                let (stream, id) = key.clone();
                self.dead_letters.push(DeadLetter { stream, id, payload: raw.into(), error: error.0 });
            }
        }
        self.acks.push(key);
    }

    /// The events of one message that failed decoding, with one log line for them all: a
    /// dead letter each (replayable alone), or, past [`MAX_EVENT_DEAD_LETTERS`], one for the
    /// whole message, so a message of 50,000 bad events cannot write 50,000 dead letters.
    fn dead_letter_events(
        &mut self,
        stream: String,
        id: String,
        raw: Vec<u8>,
        total: usize,
        failures: Vec<EventFailure>,
    ) {
        let first = failures[0].error.0.clone();
        let failed = failures.len();
        tracing::warn!(%stream, %id, failed, events = total, first_error = %first, "dead-lettering events of a message");
        if failed > MAX_EVENT_DEAD_LETTERS {
            let error = format!(
                "{failed} of the message's {total} events failed (the message is dead-lettered whole; its good \
                 events were applied); the first: {first}"
            );
            self.dead_letters.push(DeadLetter { stream, id, payload: raw, error });
            return;
        }
        for f in failures {
            let (stream, id) = (stream.clone(), id.clone());
            self.dead_letters.push(DeadLetter { stream, id, payload: f.payload.into_bytes(), error: f.error.0 });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }

    /// The batch's streams and its oldest entry time, from its acks.
    fn note_entries(&mut self) {
        let mut streams: Vec<&String> = self.acks.iter().map(|(stream, _)| stream).collect();
        streams.sort_unstable();
        streams.dedup();
        self.streams = streams.into_iter().cloned().collect();
        self.oldest_entry_ms = self.acks.iter().map(|(_, id)| entry_position(id).0).min().unwrap_or(0);
    }

    /// The stream and entry position (milliseconds, sequence) event `i` came from.
    pub fn origin_of(&self, i: usize) -> (&str, (i64, i64)) {
        let (stream, id) = &self.acks[self.origins[i] as usize];
        (stream, entry_position(id))
    }

    /// A dead letter for event `i`, which passed decoding but PostgreSQL refused: its
    /// origin entry, and the event re-encoded alone in the producer's format.
    pub fn event_dead_letter(&self, i: usize, error: String) -> DeadLetter {
        let (stream, id) = self.acks[self.origins[i] as usize].clone();
        DeadLetter { stream, id, payload: encode_payload(&self.events[i]).into_bytes(), error }
    }
}

/// Decode every payload (`None` for an entry without one). Large batches are decoded on
/// every core: the reader decodes batch N+1 while the database applies batch N, but the
/// first batch of a run has nothing to overlap with, and the writer waits for it.
fn decode_messages(messages: &[Message], aliases: &Aliases) -> Vec<Option<Result<Decoded, DecodeError>>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunks = cores.min(messages.len() / MIN_MESSAGES_PER_THREAD).max(1);
    let size = messages.len().div_ceil(chunks).max(1);
    let decode = |chunk: &[Message]| -> Vec<_> {
        let mut decoder = Decoder::new(aliases);
        chunk.iter().map(|m| m.payload.as_ref().ok().map(|raw| decoder.decode(raw))).collect()
    };
    on_threads(messages.chunks(size).collect(), decode).into_iter().flatten().collect()
}

/// Each stream's key (see [`Position`]), hashed once per batch: with rindexer's one message
/// per (event, block), hashing the stream name per message was 2 % of a backfill's engine CPU.
#[derive(Default)]
struct StreamKeys(Vec<(String, i32)>);

impl StreamKeys {
    fn of(&mut self, stream: &str) -> i32 {
        if let Some(&(_, key)) = self.0.iter().find(|(s, _)| s == stream) {
            return key;
        }
        let key = stream_key(stream);
        self.0.push((stream.to_owned(), key));
        key
    }
}

/// How many events decoding produced in all.
fn decoded_events(decoded: &[Option<Result<Decoded, DecodeError>>]) -> usize {
    decoded.iter().flatten().filter_map(|d| d.as_ref().ok()).map(|d| d.events.len()).sum()
}

/// A stream entry id (`<milliseconds>-<sequence>`) as a pair that orders like the id; an id
/// that is not one (only a test could make it) orders first.
pub fn entry_position(id: &str) -> (i64, i64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Below this many messages per thread, decoding on one thread is cheaper than starting more.
const MIN_MESSAGES_PER_THREAD: usize = 64;

/// `f` over `inputs`, one scoped thread per input beyond the first (which runs here);
/// results in input order.
fn on_threads<I: Send, O: Send>(inputs: Vec<I>, f: impl Fn(I) -> O + Sync) -> Vec<O> {
    let mut inputs = inputs.into_iter();
    let Some(first) = inputs.next() else { return Vec::new() };
    std::thread::scope(|s| {
        let f = &f;
        let others: Vec<_> = inputs.map(|i| s.spawn(move || f(i))).collect();
        let mut out = vec![f(first)];
        out.extend(others.into_iter().map(|h| h.join().expect("batch worker thread panicked")));
        out
    })
}

/// Reorder `order` (indexes of `events`, in chain order) part by part, each part keeping
/// chain order, and return each part's size. Terms linked by one event (a triple and its
/// counter term) are one group; whole groups go to the part with the fewest events so far,
/// largest first, so a hot vault cannot unbalance the parts much. Events without a term
/// (generic ones) touch no merged row and go to the smallest part.
fn group_by_part(events: &[(Event, u32)], order: &mut Vec<usize>, parts: usize) -> Vec<usize> {
    let mut groups = TermGroups::default();
    let group_of: Vec<Option<usize>> = order.iter().map(|&i| groups.add(events[i].0.term_ids())).collect();
    let roots: Vec<Option<usize>> = group_of.iter().map(|g| g.map(|g| groups.root(g))).collect();
    // Group ids are dense (0..terms), so per-group tables are plain vectors.
    let mut size = vec![0usize; groups.len()];
    for &root in roots.iter().flatten() {
        size[root] += 1;
    }
    let mut by_size: Vec<usize> = (0..size.len()).filter(|&g| size[g] > 0).collect();
    // Ties broken by group number, so the cut depends only on the batch.
    by_size.sort_unstable_by(|&a, &b| size[b].cmp(&size[a]).then(a.cmp(&b)));
    let mut load = vec![0usize; parts];
    let lightest = |load: &[usize]| (0..parts).min_by_key(|&p| (load[p], p)).unwrap_or(0);
    let mut part_of = vec![0usize; size.len()];
    for g in by_size {
        let p = lightest(&load);
        load[p] += size[g];
        part_of[g] = p;
    }
    let termless = lightest(&load);
    // Bucketing in chain order keeps chain order inside each part.
    let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); parts];
    for (root, i) in roots.into_iter().zip(order.drain(..)) {
        buckets[root.map_or(termless, |r| part_of[r])].push(i);
    }
    let sizes = buckets.iter().map(Vec::len).collect();
    order.extend(buckets.into_iter().flatten());
    sizes
}

/// Union-find over term ids: which terms must share a transaction.
#[derive(Default)]
struct TermGroups<'a> {
    index: HashMap<&'a str, usize>,
    parent: Vec<usize>,
}

impl<'a> TermGroups<'a> {
    /// Put an event's terms in one group; `None` for an event without terms.
    fn add(&mut self, terms: impl Iterator<Item = &'a str>) -> Option<usize> {
        let mut first = None;
        for term in terms {
            let next = self.parent.len();
            let id = *self.index.entry(term).or_insert(next);
            if id == next {
                self.parent.push(id);
            }
            match first {
                None => first = Some(id),
                Some(f) => {
                    let (a, b) = (self.root(f), self.root(id));
                    self.parent[b] = a;
                }
            }
        }
        first
    }

    /// Group ids handed out so far (one per distinct term).
    fn len(&self) -> usize {
        self.parent.len()
    }

    fn root(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }
}

/// Distinct term ids of `events`, sorted: the lock set and the cascade set.
pub fn term_ids_of(events: &[Event]) -> Vec<String> {
    // Deduplicated by hashing before the sort, as borrowed slices: a backfill's events name
    // a few distinct ids per hundred events, and only those are sorted and copied.
    let mut seen = HashSet::with_capacity(events.len() / 8);
    let mut ids: Vec<&str> = events.iter().flat_map(|e| e.term_ids()).filter(|id| seen.insert(*id)).collect();
    ids.sort_unstable();
    ids.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::event::{counter_term_id, EventKind};

    fn term(i: usize) -> String {
        format!("0x{:064x}", i * 7919 + 1)
    }

    /// One message holding one event; `n` numbers the event (its transaction and block).
    fn message(n: usize, name: &str, fields: String) -> Message {
        let payload = format!(
            r#"{{"event_name":"{name}","network":"intuition","block_number":0,"message_id":"m{n}","event_data":[{{{fields},
               "transaction_information":{{"address":"0x6E35cF57A41fA15eA0EaE9C33e751b01A784Fe7e","block_hash":"0x{n:064x}",
               "block_number":{block},"block_timestamp":null,"log_index":{log},"network":"intuition",
               "transaction_hash":"0x{n:064x}","transaction_index":0,"chain_id":1155}}}}]}}"#,
            block = 1000 + n / 4,
            log = n % 4,
        );
        Message { stream: "s".into(), id: format!("0-{n}"), payload: Ok(payload.into()) }
    }

    fn deposit(n: usize, term_id: &str) -> Message {
        let account = format!("0x{:040x}", n % 13);
        message(
            n,
            "Deposited",
            format!(
                r#""sender":"{account}","receiver":"{account}","termId":"{term_id}","curveId":"1","assets":"10",
                   "assetsAfterFees":"9","shares":"9","totalShares":"{n}","vaultType":"0""#
            ),
        )
    }

    fn triple(n: usize, term_id: &str) -> Message {
        let (s, p, o) = (term(1), term(2), term(3));
        message(
            n,
            "TripleCreated",
            format!(
                r#""creator":"0x0000000000000000000000000000000000000001","termId":"{term_id}","subjectId":"{s}","predicateId":"{p}","objectId":"{o}""#
            ),
        )
    }

    /// Deposits over 40 terms, and triples on 10 of them with deposits on their counter
    /// terms, shuffled over the chain.
    fn workload() -> Vec<Message> {
        let mut messages = Vec::new();
        for n in 0..6000 {
            let t = term(n % 40);
            messages.push(match n % 50 {
                0 => triple(n, &t),
                1 => deposit(n, &counter_term_id(&term((n + 49) % 40))),
                _ => deposit(n, &t),
            });
        }
        messages.reverse();
        messages
    }

    /// `message`'s deposit `n`, moved to `block`/`log` in the block `block_hash` (one byte,
    /// repeated) and made by the transaction `tx` (likewise).
    fn deposit_in(n: usize, block: u64, log: u64, block_hash: u8, tx: u8) -> Message {
        let Message { stream, id, payload } = deposit(n, &term(1));
        let mut v: serde_json::Value = serde_json::from_slice(&payload.unwrap()).unwrap();
        let info = &mut v["event_data"][0]["transaction_information"];
        info["block_number"] = block.into();
        info["log_index"] = log.into();
        info["block_hash"] = format!("0x{}", hex::encode([block_hash; 32])).into();
        info["transaction_hash"] = format!("0x{}", hex::encode([tx; 32])).into();
        Message { stream, id, payload: Ok(v.to_string().into()) }
    }

    #[test]
    fn identity_is_block_log_index_and_block_hash() {
        let batch = Batch::from_messages(vec![
            deposit_in(1, 10, 0, 0xaa, 1),
            // The same event delivered again: one.
            deposit_in(2, 10, 0, 0xaa, 1),
            // The same place in another fork of block 10: another event.
            deposit_in(3, 10, 0, 0xbb, 1),
            // The same place and block, another transaction hash: the same log (the first
            // delivery is kept, as the event log's ON CONFLICT DO NOTHING keeps it).
            deposit_in(4, 10, 0, 0xaa, 2),
            deposit_in(5, 9, 7, 0xcc, 3),
        ]);
        let keys: Vec<(i64, i64, String, String)> = batch
            .events
            .iter()
            .map(|e| {
                (
                    e.tx.block_number,
                    e.tx.log_index,
                    e.tx.block_hash[2..4].to_owned(),
                    e.tx.transaction_hash[2..4].to_owned(),
                )
            })
            .collect();
        let key = |b, l, h: &str, t: &str| (b, l, h.to_owned(), t.to_owned());
        assert_eq!(keys, [key(9, 7, "cc", "03"), key(10, 0, "aa", "01"), key(10, 0, "bb", "01")]);
        assert_eq!(batch.acks.len(), 5, "every delivery is acked");
    }

    #[test]
    fn a_message_of_many_bad_events_is_one_dead_letter() {
        let message = |n: usize, events: String| {
            let payload = format!(r#"{{"event_name":"Deposited","network":"intuition","event_data":[{events}]}}"#);
            Message { stream: "s".into(), id: format!("0-{n}"), payload: Ok(payload.into()) }
        };
        let empties = vec!["{}"; 500].join(",");
        let batch = Batch::from_messages(vec![message(1, empties)]);
        assert_eq!(batch.dead_letters.len(), 1);
        let error = &batch.dead_letters[0].error;
        assert!(error.starts_with("500 of the message's 500 events failed"), "{error}");
        // A few bad events among good ones: one dead letter each.
        let few = ["{}"; 3].join(",");
        let batch = Batch::from_messages(vec![message(2, few)]);
        assert_eq!(batch.dead_letters.len(), 3);
    }

    #[test]
    fn small_batches_stay_whole() {
        let batch = Batch::from_messages_in_parts(workload().into_iter().take(3000).collect(), 2);
        assert_eq!(batch.parts.len(), 1);
        assert_eq!(batch.parts[0].range, 0..3000);
        assert!(batch.events.windows(2).all(|w| w[0].order_key() <= w[1].order_key()));
    }

    #[test]
    fn large_batches_are_cut_into_term_disjoint_parts_in_chain_order() {
        let batch = Batch::from_messages_in_parts(workload(), 2);
        assert_eq!(batch.parts.len(), 2);
        assert_eq!(batch.events.len(), 6000);
        assert_eq!(batch.parts[0].range.start, 0);
        assert_eq!(batch.parts[0].range.end, batch.parts[1].range.start);
        assert_eq!(batch.parts[1].range.end, 6000);
        let mut seen: HashSet<&str> = HashSet::new();
        for part in &batch.parts {
            let events = &batch.events[part.range.clone()];
            assert!(events.windows(2).all(|w| w[0].order_key() <= w[1].order_key()), "chain order inside a part");
            assert_eq!(part.term_ids, term_ids_of(events));
            for id in &part.term_ids {
                assert!(seen.insert(id), "term {id} is in two parts");
            }
            // Deposits on a counter term travel with the triple that names it.
            for e in events {
                if let EventKind::TripleCreated(t) = &e.kind {
                    assert!(part.term_ids.contains(&t.counter_term_id.to_string()));
                }
            }
            // Balanced to within the largest term's share (150 events of 6000 here).
            assert!((2800..=3200).contains(&part.range.len()), "part of {} events", part.range.len());
        }
        // Origins follow their events through the reordering.
        for (i, e) in batch.events.iter().enumerate() {
            let (_, id) = &batch.acks[batch.origins[i] as usize];
            assert_eq!(id, &format!("0-{}", u64::from_str_radix(&e.tx.transaction_hash[2..], 16).unwrap()));
        }
        let locks: HashSet<&str> = batch.term_ids().into_iter().collect();
        assert_eq!(locks, seen);
    }
}
