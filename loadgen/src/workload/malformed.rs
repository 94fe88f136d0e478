//! Bad input of the kinds a sync engine meets: messages that must be dead-lettered
//! without stopping it or blocking good events. Each holds no good event, so adding them
//! never changes what a correct engine stores.

use rand::seq::SliceRandom;
use rand::Rng;
use ruint::aliases::U256;

use super::chain::{CHAIN_ID, NETWORK};
use super::encode::{self, Address, Encoding, Fields};
use super::events::{self, VaultRef};
use super::pack::envelope_fields;
use super::{EventType, MessageKind, StreamMessage};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Defect {
    NotJson,
    Truncated,
    MissingEventName,
    EmptyEventData,
    MissingTermId,
    BadHexTermId,
    ShortTermId,
    NegativeAmount,
    FractionalAmount,
    OverflowAmount,
    VaultType7,
    BadAddress,
    BadAtomData,
    MissingTxInfo,
    BadLogIndex,
}

const DEFECTS: [Defect; 15] = [
    Defect::NotJson,
    Defect::Truncated,
    Defect::MissingEventName,
    Defect::EmptyEventData,
    Defect::MissingTermId,
    Defect::BadHexTermId,
    Defect::ShortTermId,
    Defect::NegativeAmount,
    Defect::FractionalAmount,
    Defect::OverflowAmount,
    Defect::VaultType7,
    Defect::BadAddress,
    Defect::BadAtomData,
    Defect::MissingTxInfo,
    Defect::BadLogIndex,
];

const VAULT_EVENTS: [EventType; 3] = [EventType::Deposited, EventType::Redeemed, EventType::SharePriceChanged];
const WITH_ADDRESSES: [EventType; 4] =
    [EventType::AtomCreated, EventType::TripleCreated, EventType::Deposited, EventType::Redeemed];

/// `count` malformed messages, with message ids counting up from `first_id`.
pub(crate) fn messages(rng: &mut impl Rng, enc: Encoding, count: usize, first_id: usize) -> Vec<StreamMessage> {
    (0..count).map(|i| message(rng, enc, first_id + i)).collect()
}

fn message(rng: &mut impl Rng, enc: Encoding, id: usize) -> StreamMessage {
    let defect = *DEFECTS.choose(rng).expect("non-empty");
    let ty = match defect {
        Defect::NegativeAmount | Defect::FractionalAmount | Defect::OverflowAmount | Defect::VaultType7 => {
            *VAULT_EVENTS.choose(rng).expect("non-empty")
        }
        Defect::BadAddress => *WITH_ADDRESSES.choose(rng).expect("non-empty"),
        Defect::BadAtomData => EventType::AtomCreated,
        _ => EventType::ALL[rng.gen_range(0..EventType::ALL.len())],
    };
    let mut tx = plausible_tx(rng, enc);
    if defect == Defect::BadLogIndex {
        let v = *["\"-1\"", "\"abc\"", "true"].choose(rng).expect("non-empty");
        encode::set(&mut tx, "log_index", v.to_owned());
    }
    let mut event = plausible_event(rng, enc, ty, tx);
    corrupt_event(rng, defect, ty, &mut event);
    let block = rng.gen_range(1..10_000_000);
    let mut envelope = envelope_fields(rng, enc, ty, block, &format!("rindexer_stream__{id}"), encode::object(&event));
    let payload = corrupt_envelope(rng, defect, &mut envelope);
    let events = usize::from(!matches!(defect, Defect::NotJson | Defect::EmptyEventData));
    StreamMessage { stream: ty.stream().to_owned(), payload, kind: MessageKind::Malformed, events, entry_id: None }
}

/// Event-level defects: the envelope stays readable, the one event in it fails.
fn corrupt_event(rng: &mut impl Rng, defect: Defect, ty: EventType, event: &mut Fields) {
    let amount_field = match ty {
        EventType::Redeemed => "shares",
        EventType::SharePriceChanged => "totalAssets",
        _ => "assets",
    };
    match defect {
        Defect::MissingTermId => encode::remove(event, "termId"),
        Defect::BadHexTermId => encode::set(event, "termId", format!("\"0x{}\"", "zq".repeat(32))),
        Defect::ShortTermId => encode::set(event, "termId", format!("\"0x{}\"", hex::encode(rng.gen::<[u8; 31]>()))),
        Defect::NegativeAmount => {
            let v = *["-1", "\"-1000000000000000000\"", "\"-0x10\""].choose(rng).expect("non-empty");
            encode::set(event, amount_field, v.to_owned())
        }
        Defect::FractionalAmount => {
            let v = *["1.5", "\"2.25\"", "\"1e18\""].choose(rng).expect("non-empty");
            encode::set(event, amount_field, v.to_owned())
        }
        Defect::OverflowAmount => encode::set(event, amount_field, format!("\"0x1{}\"", "0".repeat(64))),
        Defect::VaultType7 => encode::set(event, "vaultType", "7".to_owned()),
        Defect::BadAddress => {
            let field = if matches!(ty, EventType::Deposited | EventType::Redeemed) { "sender" } else { "creator" };
            encode::set(event, field, "\"0x1234\"".to_owned())
        }
        Defect::BadAtomData => encode::set(event, "atomData", "\"0xzz12\"".to_owned()),
        Defect::MissingTxInfo => encode::remove(event, "transaction_information"),
        _ => {}
    }
}

/// Envelope-level defects: nothing in the message can be read. Returns the payload.
fn corrupt_envelope(rng: &mut impl Rng, defect: Defect, envelope: &mut Fields) -> String {
    match defect {
        Defect::NotJson => {
            let text = *["not json", "<html>502 Bad Gateway</html>", "", "{\"event_name\": Deposited}"]
                .choose(rng)
                .expect("non-empty");
            return text.to_owned();
        }
        Defect::Truncated => {
            let full = encode::object(envelope);
            return full[..full.len() / 2].to_owned();
        }
        Defect::MissingEventName => encode::remove(envelope, "event_name"),
        Defect::EmptyEventData => {
            let v = *["[]", "null", "\"\""].choose(rng).expect("non-empty");
            encode::set(envelope, "event_data", v.to_owned())
        }
        _ => {}
    }
    encode::object(envelope)
}

/// An event of type `ty` with random but well-formed values.
fn plausible_event(rng: &mut impl Rng, enc: Encoding, ty: EventType, tx: Fields) -> Fields {
    let (a, b) = (Address::random(rng), Address::random(rng));
    let vault = VaultRef { term: rng.gen(), curve: rng.gen_range(1..=2), vault_type: rng.gen_range(0..=2) };
    let ids: [[u8; 32]; 4] = rng.gen();
    match ty {
        EventType::AtomCreated => {
            events::AtomCreated { creator: &a, term: &ids[0], data: b"ipfs://bafkreibroken", wallet: &b }
                .fields(rng, enc, tx)
        }
        EventType::TripleCreated => {
            events::TripleCreated { creator: &a, term: &ids[0], subject: &ids[1], predicate: &ids[2], object: &ids[3] }
                .fields(rng, enc, tx)
        }
        EventType::Deposited => events::Deposited {
            sender: &a,
            receiver: &b,
            vault,
            assets: amount(rng),
            assets_after_fees: amount(rng),
            shares: amount(rng),
            total_shares: amount(rng),
        }
        .fields(rng, enc, tx),
        EventType::Redeemed => events::Redeemed {
            sender: &a,
            receiver: &b,
            vault,
            shares: amount(rng),
            total_shares: amount(rng),
            assets: amount(rng),
            fees: amount(rng),
        }
        .fields(rng, enc, tx),
        EventType::SharePriceChanged => events::SharePriceChanged {
            vault,
            share_price: amount(rng),
            total_assets: amount(rng),
            total_shares: amount(rng),
        }
        .fields(rng, enc, tx),
    }
}

fn amount(rng: &mut impl Rng) -> U256 {
    U256::from(rng.gen::<u64>())
}

fn plausible_tx(rng: &mut impl Rng, enc: Encoding) -> Fields {
    let (block, log_index, tx_index) = (rng.gen_range(1..10_000_000), rng.gen_range(0..50), rng.gen_range(0..200));
    vec![
        ("address", format!("\"0x{}\"", hex::encode(rng.gen::<[u8; 20]>()))),
        ("block_hash", format!("\"0x{}\"", hex::encode(rng.gen::<[u8; 32]>()))),
        ("block_number", encode::int(rng, enc, block)),
        ("block_timestamp", encode::int(rng, enc, 1_750_000_000)),
        ("log_index", encode::int(rng, enc, log_index)),
        ("network", encode::string(NETWORK)),
        ("transaction_hash", format!("\"0x{}\"", hex::encode(rng.gen::<[u8; 32]>()))),
        ("transaction_index", encode::int(rng, enc, tx_index)),
        ("chain_id", CHAIN_ID.to_string()),
    ]
}
