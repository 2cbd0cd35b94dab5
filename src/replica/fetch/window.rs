//! Read-ahead policy: how many pages a demand read takes behind the one
//! SQLite asked for, and where a scan through a full cache keeps them.

use std::sync::Arc;

use crate::cache::{FrameKey, Page};
use crate::ltx::PageNo;

use super::runs::Run;

/// Read-ahead never spans more pages than this...
pub const MAX_WINDOW: u32 = 512;
/// First window after two reads in a row.
const START_WINDOW: u32 = 8;
/// Pages a read may skip forward and still count as sequential: a B-tree
/// scan visits an interior page now and then between its leaves.
const SEQUENTIAL_SLACK: u32 = 8;
/// Windows (of `MAX_WINDOW` pages) a confirmed scan keeps in flight ahead
/// of itself: 8 × 2 MiB, capped at a quarter of the cache.
pub const SCAN_AHEAD_WINDOWS: u32 = 8;

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

/// The pages a connection's scan read ahead of itself while the cache was
/// full. Kept here, out of the shared cache, they do not evict what the
/// cache holds: a scan larger than the cache would otherwise push out every
/// page before the next pass reads it again, and decode the whole database
/// on every pass.
#[derive(Debug, Default)]
pub struct ScanBuf {
    pages: std::sync::Mutex<Vec<(FrameKey, Page)>>,
}

impl ScanBuf {
    pub(super) fn take(&self, key: &FrameKey) -> Option<Page> {
        let mut pages = self.pages.lock().ok()?;
        let i = pages.iter().position(|(k, _)| k == key)?;
        Some(pages.swap_remove(i).1)
    }

    pub(super) fn keep(&self, run: &Run, pages: &[(PageNo, Page)]) {
        if let Ok(mut buf) = self.pages.lock() {
            buf.clear();
            buf.extend(
                run.frames
                    .iter()
                    .zip(pages)
                    .map(|((_, loc, _), (_, p))| (loc.key(), Arc::clone(p))),
            );
        }
    }
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
