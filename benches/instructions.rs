//! One pass of the reader's batch stage over a fixed workload, for instruction counts: the
//! criterion figures on this two-core machine spread by 10 % between runs, too much to see
//! a change of a few percent, while callgrind counts the same instructions every time.
//!
//! ```text
//! cargo build --release -p micro-benches --bin stage-instructions
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='rps::ingest::batch::Batch::decode*' \
//!     target/release/stage-instructions 20000
//! ```

use rps::ingest::batch::Batch;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let events: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let messages = micro_benches::messages(events);
    let batch = Batch::from_messages_in_parts(messages, 2);
    println!("{} events in {} parts", batch.events.len(), batch.parts.len());
}
