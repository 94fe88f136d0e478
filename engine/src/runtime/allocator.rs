//! How long the allocator keeps freed memory before returning it to the operating system.
//!
//! The binaries use mimalloc (see `bin/redis-postgres-sync.rs`). A backfill batch allocates
//! a few hundred megabytes (the read's entries, the decoded events, the COPY rows) and frees
//! them when it commits; mimalloc (v3) returns freed pages to the kernel after one second,
//! less than a batch's cycle, so nearly every batch faulted its memory in again and the
//! kernel zeroed each page first: about a quarter of the engine's CPU in a `perf` profile
//! of a backfill on the development VM (README -> Performance, stop 17).

use std::time::Duration;

/// How long freed memory stays mapped, ready for the next batch: longer than a batch's
/// cycle (seconds in a backfill), short enough that a process that has gone quiet gives its
/// memory back soon after.
pub const KEEP_FREED: Duration = Duration::from_secs(10);

/// The environment variable mimalloc reads the same setting from; when an operator sets it,
/// theirs wins.
pub const PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (the same index in mimalloc v2 and
/// v3); libmimalloc-sys names it only by its old name, `mi_option_reset_delay`, in v2.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keep freed memory mapped for `delay` unless [`PURGE_DELAY_VAR`] is set. Call it first
/// thing in `main` of a binary whose global allocator is mimalloc.
pub fn keep_freed_memory(delay: Duration) {
    if std::env::var_os(PURGE_DELAY_VAR).is_some() {
        return;
    }
    let ms = std::ffi::c_long::try_from(delay.as_millis()).unwrap_or(std::ffi::c_long::MAX);
    // SAFETY: mi_option_set stores one option value; mimalloc reads options on each purge,
    // and the call is valid at any time, from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The delay mimalloc applies now, in milliseconds (negative: never).
    fn purge_delay_ms() -> std::ffi::c_long {
        // SAFETY: mi_option_get reads one option value; valid at any time.
        unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
    }

    #[test]
    fn the_option_set_is_mimallocs_purge_delay() {
        if std::env::var_os(PURGE_DELAY_VAR).is_some() {
            return; // the operator's value, not the default, is in force
        }
        // One second is mimalloc v3's default purge delay; the options beside index 15
        // (eager-commit delay, NUMA nodes) default to 1 and 0.
        assert_eq!(purge_delay_ms(), 1000, "index {MI_OPTION_PURGE_DELAY} is not the purge delay");
        keep_freed_memory(KEEP_FREED);
        assert_eq!(purge_delay_ms(), 10_000);
    }
}
