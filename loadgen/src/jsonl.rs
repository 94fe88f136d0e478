//! The JSON-lines format of `samples/mixed-encodings.jsonl`: one
//! `{"stream": "intuition_…", "payload": {…}}` object per line.
//!
//! Payloads that are not JSON (malformed messages) are written as a JSON string instead
//! of an object, so every workload survives the round trip byte for byte.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::value::RawValue;

use crate::redis_out::stream_key;
use crate::workload::{MessageKind, StreamMessage};

/// One line of a file: the stream as written there (without any prefix) and the payload
/// text to XADD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMessage {
    pub stream: String,
    pub payload: String,
    /// Event objects in the payload's `event_data` (0 when unreadable).
    pub events: usize,
}

/// Write messages as JSON lines, streams named `intuition_<logical>` as in the samples.
pub fn write_jsonl(path: &Path, messages: &[StreamMessage]) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for m in messages {
        out.write_all(line(m).as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush().with_context(|| format!("cannot write {}", path.display()))
}

fn line(m: &StreamMessage) -> String {
    let stream = serde_json::to_string(&stream_key("", &m.stream)).expect("strings serialize");
    // Only malformed payloads can be anything but a JSON object; parsing every good one
    // would double the cost of writing a large workload.
    let payload = if m.kind != MessageKind::Malformed || is_json_object(&m.payload) {
        m.payload.clone()
    } else {
        serde_json::to_string(&m.payload).expect("strings serialize")
    };
    format!(r#"{{"stream":{stream},"payload":{payload}}}"#)
}

fn is_json_object(text: &str) -> bool {
    text.trim_start().starts_with('{') && serde_json::from_str::<&RawValue>(text).is_ok()
}

/// Read a JSON-lines file; blank lines are skipped.
pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<FileMessage>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut messages = Vec::new();
    for (n, text) in BufReader::new(file).lines().enumerate() {
        let text = text.with_context(|| format!("cannot read {}", path.display()))?;
        if text.trim().is_empty() {
            continue;
        }
        messages.push(parse_line(&text).with_context(|| format!("{}:{}", path.display(), n + 1))?);
    }
    Ok(messages)
}

/// A line's payload object keeps its exact text (not re-serialized), so what reaches Redis
/// is what the file holds.
pub fn parse_line(text: &str) -> anyhow::Result<FileMessage> {
    let fields: BTreeMap<String, &RawValue> = serde_json::from_str(text).context("line is not a JSON object")?;
    let (Some(stream), Some(payload)) = (fields.get("stream"), fields.get("payload")) else {
        bail!("line needs both `stream` and `payload`");
    };
    let stream: String = serde_json::from_str(stream.get()).context("`stream` is not a string")?;
    let payload = match serde_json::from_str::<String>(payload.get()) {
        Ok(text) => text,
        Err(_) => payload.get().to_owned(),
    };
    let events = count_events(&payload);
    Ok(FileMessage { stream, payload, events })
}

fn count_events(payload: &str) -> usize {
    let Ok(envelope) = serde_json::from_str::<BTreeMap<String, &RawValue>>(payload) else {
        return 0;
    };
    match envelope.get("event_data").map(|d| d.get()) {
        Some(data) if data.starts_with('[') => serde_json::from_str::<Vec<&RawValue>>(data).map_or(0, |v| v.len()),
        Some(data) if data.starts_with('{') => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{generate, WorkloadConfig};

    fn samples() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/mixed-encodings.jsonl")
    }

    #[test]
    fn reads_the_samples_and_they_decode() {
        let messages = read_jsonl(&samples()).unwrap();
        assert_eq!(messages.len(), 10);
        for m in &messages {
            assert!(m.stream.starts_with("intuition_"));
            let decoded = rps::event::decode::decode_payload(m.payload.as_bytes()).unwrap();
            assert!(decoded.failures.is_empty());
            assert_eq!(decoded.events.len(), m.events);
        }
    }

    #[test]
    fn workload_round_trips_through_a_file() {
        let config = WorkloadConfig { events: 500, events_per_message: 3, malformed_rate: 0.3, ..Default::default() };
        let workload = generate(&config);
        let path = std::env::temp_dir().join(format!("loadgen-jsonl-{}.jsonl", std::process::id()));
        write_jsonl(&path, &workload.messages).unwrap();
        let back = read_jsonl(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back.len(), workload.messages.len());
        for (file, original) in back.iter().zip(&workload.messages) {
            assert_eq!(file.stream, format!("intuition_{}", original.stream));
            assert_eq!(file.payload, original.payload);
        }
    }
}
