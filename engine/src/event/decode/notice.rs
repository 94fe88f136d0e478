//! The reorg notice's `event_data` item (see [`crate::event::reorg`]).

use simd_json::prelude::*;
use simd_json::{BorrowedValue as Value, StaticNode};

use super::fields::Fields;
use super::{err, DecodeError};
use crate::event::reorg::ReorgNotice;

/// Decode a notice item; the envelope's `network` stands in for a missing one.
pub(super) fn reorg_notice(item: &Value, envelope_network: Option<&str>) -> Result<ReorgNotice, DecodeError> {
    let Value::Object(_) = item else {
        return err("reorg notice: the event is not a JSON object");
    };
    match item.get("type") {
        Some(Value::String(t)) if t == "reorg" => {}
        None | Some(Value::Static(StaticNode::Null)) => {}
        Some(other) => return err(format!("reorg notice: `type` is {}, not \"reorg\"", other.encode())),
    }
    let network = match item.get("network") {
        Some(Value::String(s)) => s.to_string(),
        Some(Value::Static(StaticNode::Null)) | None => envelope_network.unwrap_or_default().to_owned(),
        Some(_) => return err("reorg notice: `network` is not a string"),
    };
    if network.is_empty() || network.contains('\0') {
        return err("reorg notice: no `network` (it says which chain reorganized)");
    }
    let f = Fields(item);
    let fork_block = f.int64("fork_block").map_err(|e| DecodeError(format!("reorg notice: {}", e.0)))?;
    let optional = |name: &str| f.optional_int64(name).map(Option::unwrap_or_default);
    let depth = optional("depth").map_err(|e| DecodeError(format!("reorg notice: {}", e.0)))?;
    let events_deleted = optional("events_deleted").map_err(|e| DecodeError(format!("reorg notice: {}", e.0)))?;
    let tx_hashes = match item.get("affected_tx_hashes") {
        Some(Value::Array(a)) => a.iter().map(|h| h.as_str().unwrap_or_default().to_ascii_lowercase()).collect(),
        _ => Vec::new(),
    };
    let fingerprint = format!("{network}/{fork_block}/{depth}/{events_deleted}/{}", tx_hashes.join(","));
    Ok(ReorgNotice { network, fork_block, depth, events_deleted, fingerprint, body: item.encode() })
}
