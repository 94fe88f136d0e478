//! rindexer's reorg notice: what it sends when the chain it indexes reorganized.
//!
//! With `reorg_handling: {enabled: true}` on a network, rindexer XADDs one message named
//! [`REORG_EVENT`] to every stream of that network, once per indexed event, and then
//! re-publishes the new chain's events from the fork on. The notice has no
//! `transaction_information`; its single `event_data` item holds the fields below.

/// The `event_name` of rindexer's reorg notice (no manifest alias applies to it).
pub const REORG_EVENT: &str = "__rindexer_reorg";

/// One copy of a reorg notice, as decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReorgNotice {
    pub network: String,
    /// First block rindexer considers orphaned. Can be one too high (rindexer had not
    /// tracked the block below), so it bounds a retraction from above, never from below
    /// (see README → Chain reorganizations).
    pub fork_block: i64,
    /// As reported; unreliable both ways, so only logged and counted.
    pub depth: i64,
    pub events_deleted: i64,
    /// Every field of the notice in a fixed order: the copies of one notice, on every
    /// stream of the network, have the same fingerprint.
    pub fingerprint: String,
    /// The notice item as JSON text, kept for operators.
    pub body: String,
}
