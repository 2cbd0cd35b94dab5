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
}

impl Prefetcher {
    /// `max_pages`: what one transaction may prefetch (a share of the
    /// cache, so that prefetched pages are not evicted before they are read).
    pub fn new(usable: usize, max_pages: usize) -> Arc<Prefetcher> {
        Arc::new(Prefetcher {
            predictor: Mutex::new(Predictor::new(usable, max_pages)),
            generation: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
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
