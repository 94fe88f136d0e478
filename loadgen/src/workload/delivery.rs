//! Delivery noise: what Redis consumers see besides a tidy, ordered stream.

use std::collections::BTreeMap;

use rand::Rng;

use super::{MessageKind, StreamMessage};

/// Out-of-order delivery: every message moves by less than `window` places. Sorting by
/// `index + jitter` bounds the displacement, unlike repeated random swaps which let a
/// message drift arbitrarily far. Nothing crosses a reorg notice: which side of its
/// stream's notice an event is on says which chain it belongs to.
pub(crate) fn shuffle_windows(messages: &mut Vec<StreamMessage>, window: usize, rng: &mut impl Rng) {
    if window <= 1 {
        return;
    }
    let mut keyed: Vec<((usize, usize), StreamMessage)> = Vec::with_capacity(messages.len());
    let mut notices = 0;
    for (i, m) in messages.drain(..).enumerate() {
        let key = if m.kind == MessageKind::Reorg {
            notices += 1;
            (notices, i)
        } else {
            (notices, i + rng.gen_range(0..window))
        };
        keyed.push((key, m));
    }
    keyed.sort_by_key(|(key, _)| *key);
    messages.extend(keyed.into_iter().map(|(_, m)| m));
}

/// Re-send a `rate` fraction of the messages, each after its original: usually soon
/// (within `max_delay` messages, like a consumer retry), sometimes much later (like a
/// producer replaying after a restart). Returns the messages and the number of copies.
pub(crate) fn add_duplicates(
    messages: Vec<StreamMessage>,
    rate: f64,
    max_delay: usize,
    rng: &mut impl Rng,
) -> (Vec<StreamMessage>, usize) {
    let rate = super::probability(rate);
    if rate == 0.0 {
        return (messages, 0);
    }
    let total = messages.len();
    // Copies waiting for their slot, keyed by the index of the message they follow.
    let mut pending: BTreeMap<usize, Vec<StreamMessage>> = BTreeMap::new();
    let mut out = Vec::with_capacity(total + (total as f64 * rate) as usize + 1);
    let mut copies = 0;
    for (i, message) in messages.into_iter().enumerate() {
        // A notice sent again later would be another reorg.
        if rng.gen_bool(rate) && message.kind != MessageKind::Reorg {
            let delay =
                if rng.gen_ratio(1, 10) { rng.gen_range(1..=total) } else { rng.gen_range(1..=max_delay.max(1)) };
            pending
                .entry(i + delay)
                .or_default()
                .push(StreamMessage { kind: MessageKind::Duplicate, ..message.clone() });
            copies += 1;
        }
        out.push(message);
        if let Some(due) = pending.remove(&i) {
            out.extend(due);
        }
    }
    out.extend(pending.into_values().flatten());
    (out, copies)
}

/// Mix `extra` into `messages` at uniformly random places, keeping both orders.
pub(crate) fn scatter(
    messages: Vec<StreamMessage>,
    extra: Vec<StreamMessage>,
    rng: &mut impl Rng,
) -> Vec<StreamMessage> {
    if extra.is_empty() {
        return messages;
    }
    let mut slots: Vec<usize> = extra.iter().map(|_| rng.gen_range(0..=messages.len())).collect();
    slots.sort_unstable();
    let mut out = Vec::with_capacity(messages.len() + extra.len());
    let mut extra = extra.into_iter().zip(slots).peekable();
    for (i, message) in messages.into_iter().enumerate() {
        while let Some((bad, _)) = extra.next_if(|(_, slot)| *slot == i) {
            out.push(bad);
        }
        out.push(message);
    }
    out.extend(extra.map(|(bad, _)| bad));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn numbered(n: usize) -> Vec<StreamMessage> {
        (0..n)
            .map(|i| StreamMessage {
                stream: "s".into(),
                payload: i.to_string(),
                kind: MessageKind::Original,
                events: 1,
                entry_id: None,
            })
            .collect()
    }

    fn index(m: &StreamMessage) -> usize {
        m.payload.parse().unwrap()
    }

    #[test]
    fn shuffle_moves_each_message_less_than_the_window() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut messages = numbered(1000);
        shuffle_windows(&mut messages, 10, &mut rng);
        assert!(messages.iter().enumerate().all(|(pos, m)| pos.abs_diff(index(m)) < 10));
        assert!(messages.iter().enumerate().any(|(pos, m)| pos != index(m)));
    }

    #[test]
    fn duplicates_follow_their_original() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let (out, copies) = add_duplicates(numbered(1000), 0.2, 50, &mut rng);
        assert_eq!(out.len(), 1000 + copies);
        assert!(copies > 100 && copies < 300, "{copies}");
        for (pos, m) in out.iter().enumerate().filter(|(_, m)| m.kind == MessageKind::Duplicate) {
            let original = out.iter().position(|o| o.payload == m.payload).unwrap();
            assert!(original < pos);
        }
    }

    #[test]
    fn scatter_keeps_relative_order() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut extra = numbered(30);
        extra.iter_mut().for_each(|m| m.kind = MessageKind::Malformed);
        let out = scatter(numbered(100), extra, &mut rng);
        assert_eq!(out.len(), 130);
        for kind in [MessageKind::Original, MessageKind::Malformed] {
            let order: Vec<usize> = out.iter().filter(|m| m.kind == kind).map(index).collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
