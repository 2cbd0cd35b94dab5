//! B-tree-aware prefetch: from the pages SQLite just read, the pages it will
//! want next.
//!
//! The VFS sees every page SQLite reads, and the B-tree format is public:
//! - an interior page names its children; the children of an interior page
//!   read in order (a scan) are fetched ahead of the scan;
//! - an index leaf read for a lookup names, in its cells, the rowids of the
//!   table rows SQLite fetches next: once SQLite reads the first of those
//!   rows (the pattern is confirmed), the table's B-tree is descended through
//!   the pages at hand and the leaves holding the next rows are fetched
//!   ahead, in growing batches;
//! - reading an index's root warms its table's upper levels, so the lookups
//!   that follow find them in memory;
//! - an overflow chain is fetched whole: its length follows from the
//!   payload size, and its pages are guessed contiguous, then checked
//!   against the chain's own pointers as they arrive.
//!
//! This module fetches nothing and knows no storage: [`Predictor`] turns
//! pages into page numbers, and the replica's fetcher fetches them, at a
//! lower priority than the pages SQLite waits for. It reads untrusted bytes
//! through [`crate::btree`], which never panics; a page it cannot parse
//! predicts nothing.

mod predictor;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::cache::Page;

pub use predictor::{MAX_PER_TRANSACTION, Predictor};

/// What the prefetcher asks of the replica: pages already in memory.
pub trait Pages {
    /// Page `pgno` if it is in memory; never fetches.
    fn cached(&self, pgno: u32) -> Option<Page>;
}

/// The prefetch state of one connection. Shared with the background
/// fetches it started, which stop feeding it once its transaction ended or
/// the connection closed.
#[derive(Debug)]
pub struct Prefetcher {
    predictor: Mutex<Predictor>,
    /// Bumped at the end of each read transaction: what a finished
    /// transaction asked for lands in the cache, but predicts nothing more.
    generation: AtomicU64,
    closed: AtomicBool,
    /// Pages `start..end` already asked for ahead of a scan, in the
    /// generation `.0`.
    ahead: Mutex<(u64, u32, u32)>,
}

impl Prefetcher {
    /// `max_pages`: what one transaction may prefetch (a share of the
    /// cache, so that prefetched pages are not evicted before they are read).
    pub fn new(usable: usize, max_pages: usize) -> Arc<Prefetcher> {
        Arc::new(Prefetcher {
            predictor: Mutex::new(Predictor::new(usable, max_pages)),
            generation: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            ahead: Mutex::new((0, 0, 0)),
        })
    }

    /// The part of pages `from..to` that a scan has not asked for ahead of
    /// itself yet in this transaction: a scan tops up its read-ahead every
    /// few hundred pages, and each page needs asking for once. `again`
    /// (the scan missed a page: what was asked for is not all there) asks
    /// for the whole range. A continuation shorter than `min` pages asks
    /// for nothing (a later top-up asks for it with more): a scan that
    /// waits for pages still on the wire would otherwise send a request
    /// for every few pages it moves on.
    pub fn ahead_span(&self, from: u32, to: u32, again: bool, min: u32) -> (u32, u32) {
        let generation = self.generation();
        let Ok(mut a) = self.ahead.lock() else {
            return (from, to);
        };
        let (g, start, end) = *a;
        if !again && g == generation && start <= from && from <= end {
            if to.saturating_sub(end) < min {
                return (to, to);
            }
            // It continues what was asked for: only what lies past that.
            *a = (generation, start, end.max(to));
            (end.clamp(from, to), to)
        } else {
            *a = (generation, from, to);
            (from, to)
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether pages landing for `generation` may still predict.
    pub fn is_live(&self, generation: u64) -> bool {
        !self.closed.load(Ordering::Acquire) && self.generation() == generation
    }

    /// The read transaction ended: forget what it was doing.
    pub fn end_transaction(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut p) = self.predictor.lock() {
            p.end_transaction();
        }
    }

    /// The connection closed: nothing more is predicted for it.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether SQLite reads the leaves of one parent in order (a scan).
    pub fn scanning(&self) -> bool {
        self.predictor.lock().is_ok_and(|p| p.scanning())
    }

    /// The root of the table whose leftmost path a read of `pgno` goes
    /// down (see [`Predictor::leftmost_of_table`]).
    pub fn leftmost_of_table(&self, pgno: u32) -> Option<u32> {
        self.predictor
            .lock()
            .ok()
            .and_then(|p| p.leftmost_of_table(pgno))
    }

    /// SQLite read `page` (`missed`: it came from storage). Returns the
    /// pages to fetch ahead.
    pub fn on_read(&self, pgno: u32, page: &[u8], missed: bool, pages: &dyn Pages) -> Vec<u32> {
        match self.predictor.lock() {
            Ok(mut p) => p.on_read(pgno, page, missed, pages),
            Err(_) => Vec::new(),
        }
    }

    /// A prefetched page landed. Returns the pages to fetch next.
    pub fn on_landed(
        &self,
        generation: u64,
        pgno: u32,
        page: &[u8],
        pages: &dyn Pages,
    ) -> Vec<u32> {
        if !self.is_live(generation) {
            return Vec::new();
        }
        match self.predictor.lock() {
            Ok(mut p) => p.on_landed(pgno, page, pages),
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_asks_for_each_page_ahead_once() {
        let pf = Prefetcher::new(4096, 100);
        assert_eq!(pf.ahead_span(10, 4106, false, 0), (10, 4106));
        assert_eq!(pf.ahead_span(266, 4362, false, 0), (4106, 4362));
        assert_eq!(
            pf.ahead_span(300, 400, false, 0),
            (400, 400),
            "all asked for"
        );
        // A miss: what was asked for is not all there; ask again.
        assert_eq!(pf.ahead_span(522, 4618, true, 0), (522, 4618));
        // A jump elsewhere, and a new transaction, start over.
        assert_eq!(pf.ahead_span(9000, 9100, false, 0), (9000, 9100));
        pf.end_transaction();
        assert_eq!(pf.ahead_span(9050, 9200, false, 0), (9050, 9200));
        // Too little past what was asked for: nothing yet, then all of it.
        assert_eq!(pf.ahead_span(9060, 9250, false, 100), (9250, 9250));
        assert_eq!(pf.ahead_span(9100, 9400, false, 100), (9200, 9400));
    }
}
