//! The write side of a store file: keeping pages (`put`) and dropping
//! those a sweep finds corrupt (`sweep_run`).
//!
//! **Why a torn write is a miss.** A slot is rewritten in three `pwrite`s,
//! in this order, under the write lock: (1) its metadata is zeroed, (2) its
//! page is written, (3) its new metadata, which carries the page's XXH3, is
//! written. Neighbouring slots of one chunk go together, each step one
//! `pwrite` for all of them.
//! - *The process dies* (`kill -9`, a panic that aborts) at any point: what
//!   it wrote is in the page cache, in order, for every process; a step
//!   may be cut short (a fatal signal ends a long `pwrite` between pages).
//!   Cut during (1): the slots not yet zeroed still hold their old pages
//!   whole. During or after (2), before (3) ends: the slots whose new
//!   metadata is not written are zero, so they are absent. (3) is written
//!   only after (2) returned, so valid new metadata means a whole page.
//!   Metadata torn within itself fails its own checksum.
//! - *The machine loses power*: the page cache reaches the disk in any
//!   order and any part may be lost, so valid metadata may sit in front of
//!   an old or half-written page. Every read therefore also checks the
//!   page against the XXH3 its metadata carries (`read`): such a page is a
//!   miss (`store_bad`), and the first fill round of a process sweeps the
//!   copy (`sweep_run`) and drops it, so it is fetched again instead of
//!   missing for ever.
//!
//! Why every hit hashes its page instead of trusting metadata written
//! earlier in the same boot: trusting it would take a second read of the
//! metadata after the page (a concurrent rewrite in another process is
//! otherwise invisible), and on the machine measured (`cargo bench --bench
//! store`, docs/PERFORMANCE.md) a 64-byte `pread` costs more than the XXH3
//! of a 4 KiB page. Hashing also catches damage done after the write (a bad
//! disk, a stray write), which a boot-based trust would serve as data.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::ltx::PageNo;

use super::disk::{DiskStore, View};
use super::layout::{FileHeader, META_LEN, OPEN, SlotHeader, page_sum};
use super::read::Found;
use super::{Span, os};

impl DiskStore {
    /// Keeps pages, each known constant over its span in `lineage`, the
    /// lineage the caller proved the spans in (`attach`, `follow`): a
    /// write that waited for the lock while another attach started a new
    /// lineage (a reset replica) must not label the old lineage's pages
    /// as the new one's. Skipped when the lock stays taken past
    /// `LOCK_WAIT`. Whether they were written: a write skipped (the lock, a
    /// failing disk, another lineage now) is `false`, and its pages are not
    /// in the store.
    pub fn put(&self, lineage: u64, pages: &[(PageNo, Span, &[u8])]) -> bool {
        if pages.is_empty() {
            return true;
        }
        let serves = || self.view.load().lineage == lineage;
        if lineage == 0 || !serves() || self.writes_paused() {
            return false;
        }
        let result = (|| {
            let _lock = self.lock()?;
            let Some(h) = self.read_header() else {
                return Ok(false);
            };
            if h.lineage != lineage || !serves() {
                return Ok(false);
            }
            let view = View::of(&h);
            let mut rest = pages;
            while !rest.is_empty() {
                let n = self.neighbours(rest);
                let (group, next) = rest.split_at(n);
                self.put_neighbours(&h, &view, group)?;
                rest = next;
            }
            self.view.store(Arc::new(view));
            Ok::<_, std::io::Error>(true)
        })();
        result.unwrap_or_else(|e| {
            self.op_failed("writing pages", &e);
            false
        })
    }

    /// How many of `pages`, from the first, lie in consecutive slots of one
    /// chunk (at least one).
    fn neighbours(&self, pages: &[(PageNo, Span, &[u8])]) -> usize {
        let slot = |i: usize| pages.get(i).and_then(|(p, _, _)| self.slot(*p));
        let Some(first) = slot(0) else {
            return 1;
        };
        let room = usize::try_from(self.geometry.left_in_chunk(first)).unwrap_or(1);
        (1..pages.len().min(room))
            .find(|&i| slot(i) != Some(first + i as u64))
            .unwrap_or(pages.len().min(room))
    }

    /// Writes pages of consecutive slots of one chunk, in the order the
    /// module documentation gives.
    fn put_neighbours(
        &self,
        h: &FileHeader,
        view: &View,
        group: &[(PageNo, Span, &[u8])],
    ) -> std::io::Result<()> {
        let ps = self.page_size.bytes();
        let Some(meta_at) = group.first().and_then(|(p, _, _)| self.meta_offset(*p)) else {
            return Ok(());
        };
        let mut old = vec![0u8; group.len() * META_LEN];
        if os::read_at(&self.file, &mut old, meta_at).is_err() {
            // Past the end of the file: nothing held there yet.
            old.fill(0);
        }
        let new: Vec<Option<SlotHeader>> = group
            .iter()
            .zip(old.chunks_exact(META_LEN))
            .map(|(&(pgno, span, bytes), old)| {
                if bytes.len() != ps {
                    return None;
                }
                // A slot whose page failed a read is rewritten even when
                // its metadata says it holds this version already.
                let span = self
                    .replace(view, SlotHeader::decode(old), pgno, span)
                    .or_else(|| {
                        self.slot(pgno)
                            .filter(|&s| self.take_suspect(s))
                            .map(|_| span)
                    })?;
                let open = span.hi.0 >= h.horizon;
                Some(SlotHeader {
                    pgno: pgno.0,
                    lineage: h.lineage,
                    era: h.era,
                    flags: if open { OPEN } else { 0 },
                    lo: span.lo.0,
                    hi: span.hi.0,
                    page_sum: page_sum(bytes),
                })
            })
            .collect();
        let mut i = 0;
        while i < new.len() {
            if new[i].is_none() {
                i += 1;
                continue;
            }
            let end = (i..new.len())
                .find(|&k| new[k].is_none())
                .unwrap_or(new.len());
            self.write_slots(group[i].0, &group[i..end], &new[i..end])?;
            i = end;
        }
        Ok(())
    }

    /// (1) zero the metadata, (2) write the pages, (3) write the metadata,
    /// of the consecutive slots from `first`'s.
    fn write_slots(
        &self,
        first: PageNo,
        pages: &[(PageNo, Span, &[u8])],
        metas: &[Option<SlotHeader>],
    ) -> std::io::Result<()> {
        let (Some(meta_at), Some(page_at)) = (self.meta_offset(first), self.page_offset(first))
        else {
            return Ok(());
        };
        os::write_at(&self.file, &vec![0u8; metas.len() * META_LEN], meta_at)?;
        match pages {
            [(_, _, one)] => os::write_at(&self.file, one, page_at)?,
            _ => os::write_at(&self.file, &pages.concat_bytes(), page_at)?,
        }
        crate::pause::point("store.pages_written", &self.path.to_string_lossy());
        let encoded: Vec<u8> = metas
            .iter()
            .flat_map(|m| m.map(|m| m.encode()).unwrap_or([0u8; META_LEN]))
            .collect();
        os::write_at(&self.file, &encoded, meta_at)?;
        self.counters
            .writes
            .fetch_add(pages.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The first fill round's check of pages the store holds (a sweep):
    /// pages `first`, `first + 1`, … as in `read_run`, read and hashed;
    /// those that fail their checksum are dropped (their metadata zeroed),
    /// so that the fill fetches them again. Returns, per slot checked,
    /// whether it holds its page intact for its span (in `lineage`, as
    /// for `get`).
    pub fn sweep_run(&self, lineage: u64, first: PageNo, wants: &[Span]) -> Vec<bool> {
        let found = self.read_run(lineage, first, wants, false);
        let bad: Vec<PageNo> = found
            .iter()
            .enumerate()
            .filter(|(_, f)| **f == Found::Bad)
            .map(|(i, _)| PageNo(first.0.saturating_add(i as u32)))
            .collect();
        // Suspect as a read's failed check makes them: if the drop below is
        // skipped (the lock stayed taken), the fill's next write of such a
        // page still replaces it instead of finding its version held.
        for slot in bad.iter().filter_map(|&p| self.slot(p)) {
            self.suspect(slot);
        }
        if !bad.is_empty() {
            self.drop_corrupt(&bad);
        }
        found.iter().map(|f| *f == Found::Held).collect()
    }

    /// Zeroes the metadata of `pgnos` whose pages still fail their
    /// checksum under the lock (a page rewritten since is kept).
    fn drop_corrupt(&self, pgnos: &[PageNo]) {
        if self.writes_paused() {
            return;
        }
        let result = (|| {
            let _lock = self.lock()?;
            let mut page = vec![0u8; self.page_size.bytes()];
            for &p in pgnos {
                let (Some(h), Some(meta_at), Some(page_at)) = (
                    self.read_slot_header(p),
                    self.meta_offset(p),
                    self.page_offset(p),
                ) else {
                    continue;
                };
                if os::read_at(&self.file, &mut page, page_at).is_ok()
                    && page_sum(&page) == h.page_sum
                {
                    continue;
                }
                os::write_at(&self.file, &[0u8; META_LEN], meta_at)?;
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, std::io::Error>(())
        })();
        if let Err(e) = result {
            self.op_failed("dropping corrupt pages", &e);
        }
    }
}

/// The pages of a batch, back to back.
trait ConcatBytes {
    fn concat_bytes(&self) -> Vec<u8>;
}

impl ConcatBytes for [(PageNo, Span, &[u8])] {
    fn concat_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.iter().map(|(_, _, b)| b.len()).sum());
        for (_, _, b) in self {
            out.extend_from_slice(b);
        }
        out
    }
}
