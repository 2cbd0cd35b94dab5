//! How the read path takes pages from the local store: a page SQLite asks
//! for right after the one before it continues a scan, and the store reads
//! it and the pages behind it in one `pread` each for pages and metadata
//! (`DiskStore::get_run`); the next reads of the scan take them from a
//! small buffer. A page read on its own (a lookup) is one `get`.
//!
//! Which pages also go into the memory cache: the disk tier's, while the
//! cache has room, as before. A hydrated copy's only when read on their
//! own (interior pages and leaves of lookups, read again and again): a
//! scan's pages stay in the store file, where the kernel's page cache
//! keeps them as it would a database file's, instead of costing an
//! allocation each and pushing the lookups' pages out of the memory cache.

use std::sync::{Arc, Mutex};

use crate::cache::{FrameKey, Page, PageCache};
use crate::ltx::PageNo;
use crate::store::{DiskStore, RUN_MAX, Span};

use super::super::{FrameLoc, Snapshot};
use super::{Local, span};

/// Pages read from the store ahead of a scan, shared by the connections
/// of a replica (a scan by two at once only reads runs more often).
#[derive(Default)]
pub(super) struct Ahead {
    /// The page after the last one read: a read of it continues a scan.
    next: u32,
    /// The rest of the last run, by frame (a frame names its bytes).
    pages: Vec<(FrameKey, Page)>,
}

impl Ahead {
    /// Takes the page of `key` if the last run holds it, and notes the
    /// read of `pgno`. Returns the page and whether the read continues a
    /// scan.
    fn take(&mut self, key: &FrameKey, pgno: PageNo) -> (Option<Page>, bool) {
        let sequential = pgno.0 == self.next && pgno.0 > 1;
        self.next = pgno.0.saturating_add(1);
        let i = self.pages.iter().position(|(k, _)| k == key);
        (i.map(|i| self.pages.swap_remove(i).1), sequential)
    }
}

impl Local {
    /// The page from the local store for a reader (see the module
    /// documentation), put into the memory cache as that says.
    pub(in super::super) fn read(
        &self,
        cache: &PageCache,
        snap: &Snapshot,
        pgno: PageNo,
        loc: &FrameLoc,
    ) -> Option<Page> {
        let (store, lineage) = self.verified(snap, loc)?;
        #[cfg(any(test, feature = "test-hooks"))]
        crate::pause::point("local.verified", &super::pause_scope(store, snap));
        let key = loc.key();
        let (buffered, sequential) = lock(&self.ahead).take(&key, pgno);
        let (page, single) = match buffered {
            Some(page) => {
                store.note_hit();
                (page, false)
            }
            None if sequential => (self.read_run(store, lineage, snap, pgno, loc)?, false),
            None => (store.get(lineage, pgno, span(snap, loc))?, true),
        };
        if (single || !store.is_copy()) && cache.has_room(page.len() as u64) {
            cache.insert(key, Arc::clone(&page));
        }
        Some(page)
    }

    /// Whether a prefetch of the page may skip storage. The disk tier's
    /// page is read into memory while the cache has room; a hydrated
    /// copy's stays in the file (checked by its metadata, or not at all
    /// when the fill found the whole state held).
    pub(in super::super) fn prefetched(
        &self,
        cache: &PageCache,
        snap: &Snapshot,
        pgno: PageNo,
        loc: &FrameLoc,
    ) -> bool {
        let Some((store, lineage)) = self.verified(snap, loc) else {
            return false;
        };
        if store.is_copy() || !cache.has_room(u64::from(snap.page_size.get())) {
            return self.holds(snap, pgno, loc);
        }
        let Some(page) = store.get(lineage, pgno, span(snap, loc)) else {
            return false;
        };
        cache.insert(loc.key(), page);
        true
    }

    /// `pgno` and the pages behind it from the store in one run; those
    /// after `pgno` wait in the buffer for the scan's next reads. Its
    /// neighbours are read only if their files are known in `lineage`.
    fn read_run(
        &self,
        store: &DiskStore,
        lineage: u64,
        snap: &Snapshot,
        pgno: PageNo,
        loc: &FrameLoc,
    ) -> Option<Page> {
        let mut keys = vec![loc.key()];
        let mut wants: Vec<Span> = vec![span(snap, loc)];
        let end = snap
            .page_count
            .min(pgno.0.saturating_add(RUN_MAX as u32 - 1));
        for q in pgno.0.saturating_add(1)..=end {
            let Some(l) = snap.frame(PageNo(q)) else {
                break;
            };
            if !Arc::ptr_eq(&l.file, &loc.file) && !self.known(lineage, &l) {
                break;
            }
            keys.push(l.key());
            wants.push(span(snap, &l));
        }
        let mut pages = store.get_run(lineage, pgno, &wants).into_iter();
        let first = pages.next().flatten();
        let rest: Vec<(FrameKey, Page)> = keys
            .into_iter()
            .skip(1)
            .zip(pages)
            .filter_map(|(k, p)| Some((k, p?)))
            .collect();
        lock(&self.ahead).pages = rest;
        first
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
