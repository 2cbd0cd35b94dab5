//! The read side of a store file: one page (`get`), a run of neighbours in
//! one `pread` for scans (`get_run`), and whether a page is held (`has`,
//! the metadata only). Readers take no lock; every page served has passed
//! its checksum (see `write` for why a hit hashes its page rather than
//! trusting its metadata).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::cache::Page;
use crate::ltx::PageNo;

use super::disk::{DiskStore, View};
use super::layout::{META_LEN, SlotHeader, page_sum};
use super::{Span, os};

/// What one slot of a run held for its reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Found {
    Hit(Page),
    /// Held and intact, not kept (a sweep's check).
    Held,
    /// Not held for the span asked (empty, another page, another version).
    Miss,
    /// Held for the span, but the page fails its checksum: torn or corrupt.
    Bad,
}

/// Most slots one `get_run` reads: 256 KiB of 4 KiB pages, so that a scan
/// makes two syscalls per 64 pages instead of two per page
/// (`benches/store.rs`: 1.1 µs a page against 3.6 µs read one by one),
/// with a buffer that stays small (4 MiB at most, for 64 KiB pages).
pub const RUN_MAX: usize = 64;

impl DiskStore {
    /// The span `h` holds for `want`, refreshing the view once when an open
    /// entry looks too old (another process may have moved the horizon).
    fn span_for(&self, view: &mut Arc<View>, h: &SlotHeader, want: Span) -> Option<Span> {
        let mut span = view.span_of(h);
        if span.is_some_and(|s| s.hi < want.lo) && h.is_open() {
            *view = self.refresh();
            span = view.span_of(h);
        }
        span.filter(|s| s.overlaps(&want))
    }

    /// The bytes of `pgno` in some state of `want`, if held and intact: the
    /// slot's metadata, then the page read straight into the buffer it is
    /// served in, then its checksum. `lineage`: the one the caller proved
    /// `want` in (`attach`, `follow`); if the store serves another one now
    /// (an attach of a reset replica started it meanwhile), nothing.
    pub fn get(&self, lineage: u64, pgno: PageNo, want: Span) -> Option<Page> {
        let mut view = self.view.load_full();
        if view.lineage == 0 || view.lineage != lineage {
            return None;
        }
        let miss = || {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            None
        };
        let (Some(meta_at), Some(page_at)) = (self.meta_offset(pgno), self.page_offset(pgno))
        else {
            return miss();
        };
        let mut meta = [0u8; META_LEN];
        if os::read_at(&self.file, &mut meta, meta_at).is_err() {
            return miss();
        }
        let Some(h) = SlotHeader::decode(&meta).filter(|h| h.pgno == pgno.0) else {
            return miss();
        };
        if self.span_for(&mut view, &h, want).is_none() {
            return miss();
        }
        let mut page: Page = std::iter::repeat_n(0u8, self.page_size.bytes()).collect();
        let Some(buf) = Arc::get_mut(&mut page) else {
            return miss();
        };
        if os::read_at(&self.file, buf, page_at).is_err() {
            return miss();
        }
        if page_sum(&page) != h.page_sum {
            self.counters.bad.fetch_add(1, Ordering::Relaxed);
            if let Some(slot) = self.slot(pgno) {
                self.suspect(slot);
            }
            return miss();
        }
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        Some(page)
    }

    /// Pages `first`, `first + 1`, … (one per span of `wants`, at most
    /// [`RUN_MAX`], and no further than their chunk) read with one `pread`
    /// for their metadata and one for their pages. Returns one result per
    /// slot read, fewer than asked at a chunk's end; the caller reads the
    /// rest in the next run. Misses and hits are counted as by `get`.
    /// `keep`: hits come back as pages (else as `Held`, uncounted: a
    /// sweep). `lineage` as for `get`.
    pub(super) fn read_run(
        &self,
        lineage: u64,
        first: PageNo,
        wants: &[Span],
        keep: bool,
    ) -> Vec<Found> {
        let mut view = self.view.load_full();
        let Some(slot) = self.slot(first) else {
            return Vec::new();
        };
        let n = wants
            .len()
            .min(RUN_MAX)
            .min(usize::try_from(self.geometry.left_in_chunk(slot)).unwrap_or(RUN_MAX))
            .min(match self.slots {
                0 => usize::MAX,
                // A bounded store's slots wrap around at its end.
                s => usize::try_from(s - slot).unwrap_or(usize::MAX),
            });
        let ps = self.page_size.bytes();
        let mut out = vec![Found::Miss; n];
        let (Some(meta_at), Some(page_at)) =
            (self.geometry.meta_at(slot), self.geometry.page_at(slot))
        else {
            return out;
        };
        // The first page is the one asked for: counted as `get` counts it.
        // The others count when a reader takes them (`note_hit`), or miss
        // again through `get`.
        let count = |out: &[Found]| {
            let c = &self.counters;
            match out.first() {
                _ if !keep => {}
                Some(Found::Hit(_)) => _ = c.hits.fetch_add(1, Ordering::Relaxed),
                Some(Found::Bad) => {
                    c.bad.fetch_add(1, Ordering::Relaxed);
                    c.misses.fetch_add(1, Ordering::Relaxed);
                }
                _ => _ = c.misses.fetch_add(1, Ordering::Relaxed),
            }
        };
        let mut metas = vec![0u8; n * META_LEN];
        if view.lineage == 0
            || view.lineage != lineage
            || os::read_at(&self.file, &mut metas, meta_at).is_err()
        {
            count(&out);
            return out;
        }
        let mut wanted = Vec::with_capacity(n);
        for (i, (meta, want)) in metas.chunks_exact(META_LEN).zip(wants).enumerate() {
            let pgno = first.0.saturating_add(i as u32);
            let h = SlotHeader::decode(meta).filter(|h| h.pgno == pgno);
            wanted.push(h.filter(|h| self.span_for(&mut view, h, *want).is_some()));
        }
        // Only the span of pages up to the last one held is read.
        let Some(last) = wanted.iter().rposition(Option::is_some) else {
            count(&out);
            return out;
        };
        let mut pages = vec![0u8; (last + 1) * ps];
        if os::read_at(&self.file, &mut pages, page_at).is_err() {
            count(&out);
            return out;
        }
        for (i, ((found, h), page)) in out
            .iter_mut()
            .zip(&wanted)
            .zip(pages.chunks_exact(ps))
            .enumerate()
        {
            if h.is_some_and(|h| page_sum(page) != h.page_sum) && keep {
                self.suspect(slot + i as u64);
            }
            *found = match h {
                Some(h) if page_sum(page) != h.page_sum => Found::Bad,
                Some(_) if keep => Found::Hit(Page::from(page)),
                Some(_) => Found::Held,
                None => Found::Miss,
            };
        }
        count(&out);
        out
    }

    /// Pages `first`, `first + 1`, … read as `read_run` reads them (one
    /// `pread` for their metadata, one for their pages, at most
    /// [`RUN_MAX`], never past their chunk): `None` for a page not served.
    pub fn get_run(&self, lineage: u64, first: PageNo, wants: &[Span]) -> Vec<Option<Page>> {
        self.read_run(lineage, first, wants, true)
            .into_iter()
            .map(|f| match f {
                Found::Hit(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// Whether `get` would find the page (checks the metadata only).
    pub fn has(&self, lineage: u64, pgno: PageNo, want: Span) -> bool {
        let view = self.view.load();
        if view.lineage != lineage {
            return false;
        }
        self.read_slot_header(pgno)
            .and_then(|h| view.span_of(&h))
            .is_some_and(|s| s.overlaps(&want))
    }
}
