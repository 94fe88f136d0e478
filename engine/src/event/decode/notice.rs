//! The reorg notice's `event_data` item (see [`crate::event::reorg`]).

use simd_json::prelude::*;

use super::fields::Fields;
use super::{err, is_null, network_or_envelope, DecodeError, Value};
use crate::event::reorg::ReorgNotice;

/// Decode a notice item; the envelope's `network` stands in for a missing one.
pub(super) fn reorg_notice(item: Value, envelope_network: Option<&str>) -> Result<ReorgNotice, DecodeError> {
    if item.as_object().is_none() {
        return err("reorg notice: the event is not a JSON object");
    }
    match item.get("type") {
        Some(t) if t.as_str() == Some("reorg") || is_null(&t) => {}
        None => {}
        Some(other) => return err(format!("reorg notice: `type` is {}, not \"reorg\"", other.encode())),
    }
    let network =
        network_or_envelope(item.get("network"), envelope_network, "reorg notice: `network` is not a string")?;
    if network.is_empty() || network.contains('\0') {
        return err("reorg notice: no `network` (it says which chain reorganized)");
    }
    let f = Fields::of(item);
    let fork_block = f.int64("fork_block").map_err(|e| DecodeError(format!("reorg notice: {}", e.0)))?;
    let optional = |name: &str| f.optional_int64(name).map(Option::unwrap_or_default);
    let depth = optional("depth").map_err(|e| DecodeError(format!("reorg notice: {}", e.0)))?;
    let events_deleted = optional("events_deleted").map_err(|e| DecodeError(format!("reorg notice: {}", e.0)))?;
    let tx_hashes = match item.get("affected_tx_hashes").and_then(|v| v.as_array()) {
        Some(a) => a.iter().map(|h| h.as_str().unwrap_or_default().to_ascii_lowercase()).collect(),
        None => Vec::new(),
    };
    let fingerprint = format!("{network}/{fork_block}/{depth}/{events_deleted}/{}", tx_hashes.join(","));
    Ok(ReorgNotice { network, fork_block, depth, events_deleted, fingerprint, body: item.encode() })
}
