//! Reading pages: from the cache, else from storage, with read-ahead.
//!
//! A miss costs a round trip, so when a connection reads pages in ascending
//! order (a table or index scan) the frames that follow the missing one in
//! the same file are fetched in the same ranged request, decoded and cached.
//! The window doubles while the pattern holds and shrinks fast when it
//! breaks, so point lookups fetch single frames.

use std::sync::Arc;

use crate::cache::Page;
use crate::error::{Error, Result};
use crate::ltx::{self, PageNo};
use crate::runtime;

use super::{FrameLoc, Io, Snapshot, Stats};

/// Read-ahead never spans more pages than this...
const MAX_WINDOW: u32 = 512;
/// ...nor more bytes than this in one request: large enough to amortise a
/// 20 ms round trip over a few megabytes, small enough to bound memory.
const MAX_RANGE_BYTES: u64 = 4 * 1024 * 1024;
/// First window after two reads in a row.
const START_WINDOW: u32 = 8;
/// Pages a read may skip forward and still count as sequential: a B-tree
/// scan visits an interior page now and then between its leaves.
const SEQUENTIAL_SLACK: u32 = 8;

/// The access pattern of one connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadAhead {
    last: u32,
    window: u32,
}

impl ReadAhead {
    /// Records a read of `pgno`; returns how many pages to fetch from it on.
    pub fn observe(&mut self, pgno: PageNo) -> u32 {
        let sequential = pgno.0 > self.last && pgno.0 - self.last <= SEQUENTIAL_SLACK;
        self.window = if sequential {
            (self.window.saturating_mul(2)).clamp(START_WINDOW, MAX_WINDOW)
        } else {
            (self.window / 4).max(1)
        };
        self.last = pgno.0;
        self.window
    }
}

impl Io {
    /// One page of a snapshot, and up to `window - 1` following pages of the
    /// same file into the cache. `None` when no file of the snapshot holds
    /// the page.
    pub fn read_page(&self, snap: &Snapshot, pgno: PageNo, window: u32) -> Result<Option<Page>> {
        let Some(loc) = snap.frame(pgno) else {
            return Ok(None);
        };
        if let Some(reason) = loc.file.corrupt.get() {
            return Err(Error::Missing(format!("page {}: {reason}", pgno.0)));
        }
        let key = loc.key();
        if let Some(page) = self.cache.get(&key) {
            Stats::add(&self.stats.cache_hits, 1);
            return Ok(Some(page));
        }
        Stats::add(&self.stats.cache_misses, 1);
        // Asked before storage...
        if let Some(page) = self.local_get(snap, pgno, loc) {
            return Ok(Some(page));
        }
        let frames = run_after(snap, pgno, loc, window);
        let end = frames
            .last()
            .map_or(loc.offset, |(_, f)| f.offset + u64::from(f.size));
        Stats::add(&self.stats.reads, 1);
        let bytes = runtime::block_on(self.storage.read(loc.file.id, loc.offset..end))??;
        Stats::add(&self.stats.read_bytes, bytes.len() as u64);
        let mut wanted = None;
        let mut fetched = Vec::with_capacity(frames.len());
        for (p, f) in &frames {
            let from = usize::try_from(f.offset - loc.offset).unwrap_or(usize::MAX);
            let raw = bytes
                .get(from..from.saturating_add(f.size as usize))
                .ok_or_else(|| Error::Missing(format!("short read of {}", loc.file.id)))?;
            let page = self.decode(snap, *p, f, raw)?;
            if *p == pgno {
                wanted = Some(Arc::clone(&page));
            }
            fetched.push((*p, *f, page));
        }
        // ...and filled after it.
        self.local_put(snap, &fetched);
        Ok(wanted)
    }

    fn decode(&self, snap: &Snapshot, pgno: PageNo, loc: &FrameLoc, raw: &[u8]) -> Result<Page> {
        let describe = || format!("{} {}", self.storage.describe(), loc.file.id);
        let frame =
            ltx::decode_frame(raw, snap.page_size).map_err(|e| Error::corrupt(describe(), e))?;
        if frame.header.pgno != pgno {
            return Err(Error::corrupt(
                describe(),
                ltx::LtxError::Invalid {
                    what: "frame",
                    detail: format!(
                        "offset {} holds page {}, not {}",
                        loc.offset, frame.header.pgno.0, pgno.0
                    ),
                },
            ));
        }
        let page = Page::from(frame.page);
        self.cache.insert(loc.key(), Arc::clone(&page));
        Ok(page)
    }
}

/// The frame of `pgno` and the frames of the pages after it that lie right
/// behind it in the same file, within the window and the byte cap.
fn run_after<'a>(
    snap: &'a Snapshot,
    pgno: PageNo,
    loc: &'a FrameLoc,
    window: u32,
) -> Vec<(PageNo, &'a FrameLoc)> {
    let mut frames = vec![(pgno, loc)];
    let mut end = loc.offset + u64::from(loc.size);
    for next in pgno.0.saturating_add(1)..pgno.0.saturating_add(window.max(1)) {
        let Some(f) = snap.frame(PageNo(next)) else {
            break;
        };
        let next_end = f.offset + u64::from(f.size);
        if !Arc::ptr_eq(&f.file, &loc.file)
            || f.offset != end
            || next_end - loc.offset > MAX_RANGE_BYTES
        {
            break;
        }
        frames.push((PageNo(next), f));
        end = next_end;
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_grows_on_scans_and_collapses_on_jumps() {
        let mut ra = ReadAhead::default();
        assert_eq!(ra.observe(PageNo(100)), 1);
        assert_eq!(ra.observe(PageNo(101)), START_WINDOW);
        assert_eq!(ra.observe(PageNo(103)), 2 * START_WINDOW);
        for p in 104..200 {
            ra.observe(PageNo(p));
        }
        assert_eq!(ra.observe(PageNo(200)), MAX_WINDOW);
        assert_eq!(ra.observe(PageNo(5)), MAX_WINDOW / 4);
        assert_eq!(ra.observe(PageNo(9000)), MAX_WINDOW / 16);
        for p in [1, 500, 20, 7000, 3] {
            ra.observe(PageNo(p));
        }
        assert_eq!(ra.observe(PageNo(90)), 1);
    }
}
