//! Counters of storage traffic, for tests and benchmarks.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    pub lists: AtomicU64,
    pub reads: AtomicU64,
    pub read_bytes: AtomicU64,
    pub polls: AtomicU64,
    pub replans: AtomicU64,
    /// Times the replica was found reset (a new lineage).
    pub resets: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub verified: AtomicU64,
    pub corrupt: AtomicU64,
    /// Frames queued by prefetch.
    pub prefetched: AtomicU64,
    /// Demand reads that waited for a fetch already in flight.
    pub joined: AtomicU64,
    /// Background tasks (poller, hydration, verification) that panicked
    /// and were restarted.
    pub task_panics: AtomicU64,
    /// The time (Unix ms) of the oldest reachable state, as the last time
    /// travel to before it found; 0 until one did.
    pub earliest_state_ms: AtomicI64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `name=value` pairs, space separated.
    pub fn render(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "lists={} reads={} read_bytes={} polls={} replans={} resets={} cache_hits={} cache_misses={} verified={} corrupt={} prefetched={} joined={} task_panics={} earliest_state_ms={}",
            g(&self.lists),
            g(&self.reads),
            g(&self.read_bytes),
            g(&self.polls),
            g(&self.replans),
            g(&self.resets),
            g(&self.cache_hits),
            g(&self.cache_misses),
            g(&self.verified),
            g(&self.corrupt),
            g(&self.prefetched),
            g(&self.joined),
            g(&self.task_panics),
            self.earliest_state_ms.load(Ordering::Relaxed)
        )
    }
}
