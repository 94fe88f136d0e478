//! The entries a reader has returned and not yet seen acked or given back (see reader.rs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use foldhash::HashSet;

use crate::stream::{Entry, EntryKey};

/// The entries a reader returned that are not yet acked or given back. Shared between the
/// reader and whoever acks (the engine's writer runs on another task).
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    entries: Arc<Mutex<HashSet<EntryKey>>>,
    given_back: Arc<AtomicBool>,
}

impl InFlight {
    /// These entries were acked.
    pub fn done(&self, keys: &[EntryKey]) {
        let mut set = self.entries.lock().expect("in-flight set");
        for key in keys {
            set.remove(key);
        }
    }

    /// These entries will not be acked now: they stay pending on this consumer and the
    /// reader reads its own pending entries again to deliver them once more.
    pub fn give_back(&self, keys: &[EntryKey]) {
        self.done(keys);
        self.given_back.store(true, Ordering::SeqCst);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("in-flight set").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn add(&self, entries: &[Entry]) {
        self.entries.lock().expect("in-flight set").extend(entries.iter().map(Entry::key));
    }

    /// Drop the entries already in flight.
    pub(super) fn retain_new(&self, entries: &mut Vec<Entry>) {
        let set = self.entries.lock().expect("in-flight set");
        entries.retain(|e| !set.contains(&e.key()));
    }

    pub(super) fn take_given_back(&self) -> bool {
        self.given_back.swap(false, Ordering::SeqCst)
    }
}
