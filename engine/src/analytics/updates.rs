//! `term_updates` entries: validation, and one batch's distinct term ids.
//!
//! An entry is `term_ids` = JSON array of `0x` + 64 hex term ids, plus `committed_at_ms`
//! (unix ms of the oldest engine commit it covers). An entry that cannot be read is
//! dead-lettered; an entry with some bad ids is dead-lettered too, but its valid ids are
//! still refreshed, because refreshing a term is idempotent while skipping one would leave
//! its analytics stale until its next change.

use std::collections::BTreeSet;

use crate::stream::{DeadLetter, Entry, EntryFields, EntryKey};

pub const TERM_IDS_FIELD: &str = "term_ids";
pub const COMMITTED_AT_FIELD: &str = "committed_at_ms";

/// How many bad ids one error message names before it only counts them.
const ERRORS_SHOWN: usize = 3;

/// What one entry says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Valid ids, lowercase.
    pub ids: Vec<String>,
    pub committed_at_ms: Option<i64>,
    /// Why (part of) the entry was rejected.
    pub error: Option<String>,
}

/// Read one entry's fields.
pub fn parse(fields: &EntryFields) -> Update {
    let committed_at_ms = fields.get(COMMITTED_AT_FIELD).and_then(|v| text(v).trim().parse().ok());
    match term_ids(fields) {
        Ok((ids, errors)) => Update { error: partial_error(&ids, &errors), ids, committed_at_ms },
        Err(error) => Update { ids: Vec::new(), committed_at_ms, error: Some(error) },
    }
}

/// Valid ids and the errors of the invalid ones, or why the field is unreadable as a whole.
fn term_ids(fields: &EntryFields) -> Result<(Vec<String>, Vec<String>), String> {
    let raw = fields.get(TERM_IDS_FIELD).ok_or_else(|| {
        let mut found = fields.names();
        found.sort_unstable();
        format!("no {TERM_IDS_FIELD} field (found fields {found:?})")
    })?;
    let raw = text(raw);
    let json: serde_json::Value =
        serde_json::from_str(&raw).map_err(|e| format!("{TERM_IDS_FIELD} is not valid JSON: {e}"))?;
    let serde_json::Value::Array(items) = json else {
        return Err(format!("{TERM_IDS_FIELD} is not a JSON array of strings: got {}", kind(&json)));
    };
    let mut ids = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str().ok_or_else(|| format!("is {}, not a string", kind(item))).and_then(canonical_id) {
            Ok(id) => ids.push(id),
            Err(e) => errors.push(format!("{TERM_IDS_FIELD}[{i}] {e}")),
        }
    }
    Ok((ids, errors))
}

fn partial_error(valid: &[String], errors: &[String]) -> Option<String> {
    if errors.is_empty() {
        return None;
    }
    let mut msg = errors.iter().take(ERRORS_SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if errors.len() > ERRORS_SHOWN {
        msg.push_str(&format!("; and {} more invalid ids", errors.len() - ERRORS_SHOWN));
    }
    msg.push_str(&format!("; the entry's {} valid ids were refreshed", valid.len()));
    Some(msg)
}

/// `0x` + 64 hex digits, lowercased (the engine's canonical form).
fn canonical_id(s: &str) -> Result<String, String> {
    let digits = s.strip_prefix("0x").unwrap_or("");
    if s.len() == 66 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        let shown: String = s.chars().take(80).collect();
        Err(format!("= {shown:?} is not a term id (expected 0x followed by 64 hex digits)"))
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A field's value as text (a stream field is a byte string; invalid UTF-8 is replaced).
fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// One read's worth of entries, ready for one refresh.
#[derive(Debug, Default)]
pub struct UpdateBatch {
    /// Distinct valid ids over all entries, sorted.
    pub term_ids: Vec<String>,
    /// Every entry read, acked once the refresh has committed.
    pub acks: Vec<EntryKey>,
    pub dead_letters: Vec<DeadLetter>,
    /// Entries that contributed at least one id.
    pub applied_entries: u64,
    /// Oldest `committed_at_ms` among the entries that carry one.
    pub oldest_committed_ms: Option<i64>,
}

impl UpdateBatch {
    pub fn from_entries(entries: &[Entry]) -> UpdateBatch {
        let mut batch = UpdateBatch::default();
        let mut ids = BTreeSet::new();
        for e in entries {
            batch.acks.push(e.key());
            if let Some(oversized) = &e.oversized {
                let error = oversized.reason();
                tracing::warn!(stream = %e.stream, id = %e.id, %error, "dead-lettering term_updates entry");
                let (stream, id, payload) = (e.stream.clone(), e.id.clone(), oversized.prefix.clone());
                batch.dead_letters.push(DeadLetter { stream, id, payload, error });
                continue;
            }
            let entry = parse(&e.fields);
            if let Some(error) = entry.error {
                tracing::warn!(stream = %e.stream, id = %e.id, %error, "dead-lettering term_updates entry");
                batch.dead_letters.push(DeadLetter {
                    stream: e.stream.clone(),
                    id: e.id.clone(),
                    payload: fields_json(&e.fields).into_bytes(),
                    error,
                });
            }
            if !entry.ids.is_empty() {
                batch.applied_entries += 1;
            }
            if let Some(ms) = entry.committed_at_ms {
                batch.oldest_committed_ms = Some(batch.oldest_committed_ms.map_or(ms, |o| o.min(ms)));
            }
            ids.extend(entry.ids);
        }
        batch.term_ids = ids.into_iter().collect();
        batch
    }
}

/// The entry's fields as a JSON object, so a dead letter can be inspected and replayed.
fn fields_json(fields: &EntryFields) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        fields.iter().map(|(k, v)| (text(k), serde_json::Value::String(text(v)))).collect();
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0x221c4e003f9931ee3af27f802dc5fd3d9974d75b333824fe61790134676b1b69";

    fn fields(pairs: &[(&str, &str)]) -> EntryFields {
        pairs.iter().copied().collect()
    }

    fn error_of(pairs: &[(&str, &str)]) -> String {
        parse(&fields(pairs)).error.expect("an error")
    }

    #[test]
    fn valid_entry() {
        let upper = A.to_uppercase().replacen("0X", "0x", 1);
        let e = parse(&fields(&[("term_ids", &format!(r#"["{A}","{upper}"]"#)), ("committed_at_ms", "1700")]));
        assert_eq!(e, Update { ids: vec![A.into(), A.into()], committed_at_ms: Some(1700), error: None });
    }

    #[test]
    fn unreadable_entries() {
        assert_eq!(error_of(&[("payload", "x")]), r#"no term_ids field (found fields ["payload"])"#);
        assert!(error_of(&[("term_ids", "[")]).starts_with("term_ids is not valid JSON"));
        assert_eq!(error_of(&[("term_ids", "{}")]), "term_ids is not a JSON array of strings: got an object");
        let e = parse(&fields(&[("term_ids", "7")]));
        assert!(e.ids.is_empty() && e.error.unwrap().ends_with("got a number"));
    }

    #[test]
    fn bad_ids_are_named_and_good_ones_kept() {
        let e = parse(&fields(&[("term_ids", &format!(r#"["{A}", 5, "0x12", "{}"]"#, &A[2..]))]));
        assert_eq!(e.ids, vec![A.to_owned()]);
        let error = e.error.unwrap();
        assert!(error.contains("term_ids[1] is a number, not a string"), "{error}");
        assert!(error.contains(r#"term_ids[2] = "0x12" is not a term id"#), "{error}");
        assert!(error.contains("term_ids[3] = \"221c"), "{error}");
        assert!(error.ends_with("the entry's 1 valid ids were refreshed"), "{error}");
    }

    #[test]
    fn missing_commit_time_is_not_an_error() {
        let e = parse(&fields(&[("term_ids", "[]"), ("committed_at_ms", "soon")]));
        assert_eq!(e, Update::default());
    }

    #[test]
    fn batch_dedups_and_finds_the_oldest_commit() {
        let entry = |id: &str, fields| Entry { stream: "s".into(), id: id.into(), fields, oversized: None };
        let entries = vec![
            entry("1-0", fields(&[("term_ids", &format!(r#"["{A}"]"#)), ("committed_at_ms", "20")])),
            entry("2-0", fields(&[("term_ids", &format!(r#"["{A}"]"#)), ("committed_at_ms", "10")])),
            entry("3-0", fields(&[("nope", "1")])),
        ];
        let b = UpdateBatch::from_entries(&entries);
        assert_eq!(b.term_ids, vec![A.to_owned()]);
        assert_eq!((b.acks.len(), b.dead_letters.len(), b.applied_entries), (3, 1, 2));
        assert_eq!(b.oldest_committed_ms, Some(10));
        assert_eq!(b.dead_letters[0].payload, br#"{"nope":"1"}"#);
    }
}
