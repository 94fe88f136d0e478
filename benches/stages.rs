//! Events per second through the engine's CPU stages: decode (simd-json, with the plain
//! serde_json parse beside it as a baseline), chain-order sort, binary COPY encoding, and the
//! whole reader-side batch (decode on every core, order, deduplicate, cut into parts, encode)
//! as the engine builds it for each read.
//! Run with `cargo bench -p micro-benches`.
//!
//! The engine's allocator, as in its binary: with the system allocator, malloc and free were
//! a tenth of the decode stage here and the figures did not describe the engine.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rps::event::decode::decode_payload;
use rps::event::Event;
use rps::ingest::batch::Batch;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 20_000;

fn decoded(payloads: &[String]) -> Vec<Event> {
    payloads.iter().flat_map(|p| decode_payload(p.as_bytes()).expect("decodes").events).collect()
}

fn decode(c: &mut Criterion) {
    let payloads = micro_benches::payloads(EVENTS);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("simd-json → typed events (engine)", |b| {
        b.iter(|| payloads.iter().map(|p| decode_payload(black_box(p.as_bytes())).unwrap().events.len()).sum::<usize>())
    });
    g.bench_function("serde_json → Value (parse only, baseline)", |b| {
        b.iter(|| {
            for p in &payloads {
                black_box(serde_json::from_str::<serde_json::Value>(black_box(p)).unwrap());
            }
        })
    });
    g.finish();
}

fn sort(c: &mut Criterion) {
    let events = decoded(&micro_benches::payloads(EVENTS));
    let mut g = c.benchmark_group("sort");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("by (block, log_index, tx)", |b| {
        b.iter_batched(
            || events.clone(),
            |mut e| e.sort_by(|a, b| a.order_key().cmp(&b.order_key())),
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn copy_encoding(c: &mut Criterion) {
    let events = decoded(&micro_benches::payloads(EVENTS));
    let mut g = c.benchmark_group("copy");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("binary COPY encoding", |b| b.iter(|| rps::ingest::copy::encode_events(black_box(&events))));
    g.finish();
}

fn batch(c: &mut Criterion) {
    let messages = micro_benches::messages(EVENTS);
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("messages → batch in 2 parts (reader task)", |b| {
        b.iter_batched(
            || messages.clone(),
            |m| Batch::from_messages_in_parts(m, 2).events.len(),
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, decode, sort, copy_encoding, batch);
criterion_main!(benches);
