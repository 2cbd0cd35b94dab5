//! The page cache: decompressed pages keyed by where their frame lives.
//!
//! A frame in an LTX file never changes, so a file and an offset name the
//! same bytes forever: every snapshot, every connection and every point in
//! time shares entries, and nothing is ever invalidated. Entries are weighed
//! in bytes against the budget.
//!
//! A file *name* is not enough to name a file: a replica that is reset (its
//! Litestream state and files removed, replication restarted) reuses the
//! names of the old lineage for other bytes. So a key also holds the file's
//! size and header timestamp, which differ between lineages, and a page
//! cached from the old lineage is never found under a key of the new one.
//! Keys are built in one place only, `FileRef::key` in `replica/snapshot.rs`.

use std::sync::Arc;

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::ltx::FileName;

/// A decompressed page, shared without copying.
pub type Page = Arc<[u8]>;

/// Where a frame lives: its file (level, name, size and header timestamp)
/// and its byte offset there. Fields are private: keys come from
/// `FileRef::key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameKey {
    level: u8,
    name: FileName,
    file_size: u64,
    written_ms: i64,
    offset: u64,
}

impl FrameKey {
    /// Only `FileRef::key` calls this, so that what identifies a file is
    /// decided in one place.
    pub(crate) fn of(
        level: u8,
        name: FileName,
        file_size: u64,
        written_ms: i64,
        offset: u64,
    ) -> FrameKey {
        FrameKey {
            level,
            name,
            file_size,
            written_ms,
            offset,
        }
    }
}

/// Per-entry bookkeeping the cache spends besides the page itself.
const ENTRY_OVERHEAD: u64 = 64;

#[derive(Clone)]
struct PageWeighter;

impl Weighter<FrameKey, Page> for PageWeighter {
    fn weight(&self, _key: &FrameKey, page: &Page) -> u64 {
        page.len() as u64 + ENTRY_OVERHEAD
    }
}

/// A byte-bounded page cache, safe to share between threads.
pub struct PageCache {
    inner: Cache<FrameKey, Page, PageWeighter>,
    budget: u64,
}

impl PageCache {
    /// A cache that holds at most `budget` bytes of pages.
    pub fn new(budget: u64) -> PageCache {
        let estimated_items = usize::try_from(budget / 4096).unwrap_or(usize::MAX).max(16);
        PageCache {
            inner: Cache::with_weighter(estimated_items, budget, PageWeighter),
            budget,
        }
    }

    pub fn get(&self, key: &FrameKey) -> Option<Page> {
        self.inner.get(key)
    }

    pub fn insert(&self, key: FrameKey, page: Page) {
        self.inner.insert(key, page);
    }

    /// Bytes currently held.
    pub fn weight(&self) -> u64 {
        self.inner.weight()
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Whether a page of `len` bytes fits without evicting another (with a
    /// page of slack for what other threads insert meanwhile).
    pub fn has_room(&self, len: u64) -> bool {
        self.weight() + 2 * len <= self.budget
    }
}

impl std::fmt::Debug for PageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageCache({} of {} bytes)", self.weight(), self.budget)
    }
}
