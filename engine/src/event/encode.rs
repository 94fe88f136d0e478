//! Events back into the producer's format: what a dead letter holds for an event refused
//! after decoding, ready to be fixed and replayed.

use super::{Event, EventKind, Numeric};

/// One event back in the producer's format, alone in its message: what a dead letter
/// holds for an event refused after decoding, ready to be fixed and replayed.
pub fn encode_payload(event: &Event) -> String {
    use serde_json::{json, Value as J};
    let t = &event.tx;
    let tx = json!({
        "transaction_hash": t.transaction_hash, "log_index": t.log_index, "block_number": t.block_number,
        "block_hash": t.block_hash, "address": t.address, "network": t.network,
        "transaction_index": t.transaction_index, "block_timestamp": t.block_timestamp,
    });
    let n = |v: &Numeric| J::String(v.to_string());
    let (name, mut body): (&str, J) = match &event.kind {
        EventKind::AtomCreated(e) => (
            "AtomCreated",
            json!({
                "creator": e.creator, "termId": e.term_id, "atomWallet": e.atom_wallet,
                "atomData": format!("0x{}", hex::encode(&e.atom_data)),
            }),
        ),
        EventKind::TripleCreated(e) => (
            "TripleCreated",
            json!({
                "creator": e.creator, "termId": e.term_id, "subjectId": e.subject_id,
                "predicateId": e.predicate_id, "objectId": e.object_id,
            }),
        ),
        EventKind::Deposited(e) => (
            "Deposited",
            json!({
                "sender": e.sender, "receiver": e.receiver, "termId": e.term_id, "curveId": n(&e.curve_id),
                "assets": n(&e.assets), "assetsAfterFees": n(&e.assets_after_fees), "shares": n(&e.shares),
                "totalShares": n(&e.total_shares), "vaultType": e.vault_type,
            }),
        ),
        EventKind::Redeemed(e) => (
            "Redeemed",
            json!({
                "sender": e.sender, "receiver": e.receiver, "termId": e.term_id, "curveId": n(&e.curve_id),
                "shares": n(&e.shares), "totalShares": n(&e.total_shares), "assets": n(&e.assets),
                "fees": n(&e.fees), "vaultType": e.vault_type,
            }),
        ),
        EventKind::SharePriceChanged(e) => (
            "SharePriceChanged",
            json!({
                "termId": e.term_id, "curveId": n(&e.curve_id), "sharePrice": n(&e.share_price),
                "totalAssets": n(&e.total_assets), "totalShares": n(&e.total_shares), "vaultType": e.vault_type,
            }),
        ),
        EventKind::Generic(e) => {
            (e.event_name.as_str(), serde_json::from_str(&e.event_data).unwrap_or(J::String(e.event_data.clone())))
        }
    };
    // A generic event's JSON already holds its original transaction_information.
    if let J::Object(fields) = &mut body {
        fields.entry("transaction_information").or_insert(tx);
    }
    json!({ "event_name": name, "network": t.network, "block_number": t.block_number, "event_data": [body] })
        .to_string()
}
