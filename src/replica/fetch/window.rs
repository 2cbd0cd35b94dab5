//! Read-ahead policy: how many pages a demand read takes behind the one
//! SQLite asked for, and where a scan through a full cache keeps them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::cache::{FrameKey, Page};
use crate::ltx::PageNo;

use super::inflight::Held;
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
///
/// Two kinds: the frames a demand read took behind its page (`pages`,
/// replaced by each such read), and the pages the scan-ahead fetched
/// (`ahead`). A page of the scan-ahead stays here until the scan reads it,
/// so that none is evicted before it is read and fetched again; each holds
/// its share of the in-flight budget (`Held`, given back when the last page
/// of its request is read or dropped), so that the pages waiting here stay
/// within that budget too. They are dropped when the read transaction ends
/// and when the scan misses (it went elsewhere).
#[derive(Debug, Default)]
pub struct ScanBuf {
    pages: std::sync::Mutex<Vec<(FrameKey, Page)>>,
    ahead: std::sync::Mutex<HashMap<FrameKey, (Page, Arc<Lease>)>>,
    /// Bytes of the scan-ahead requests of this connection, from when they
    /// are queued until their last page is read or dropped.
    leased: Arc<AtomicU64>,
    /// The last read of this connection fetched its page itself: it was
    /// neither in memory nor on the wire (a hole in what was read ahead).
    fetched: AtomicBool,
}

/// The bytes one scan-ahead request of a [`ScanBuf`] takes (its pages,
/// decoded), counted from when it is queued, with its share of the
/// in-flight budget once it has it; given back when dropped (on every
/// path: the request failed, its pages were read or dropped).
#[derive(Debug)]
pub struct Lease {
    bytes: u64,
    of: Arc<AtomicU64>,
    held: Option<Held>,
}

impl Lease {
    /// Bytes it counts.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// It holds `held` of the in-flight budget too.
    pub(super) fn with(mut self, held: Held) -> Lease {
        self.held = Some(held);
        self
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.of.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl ScanBuf {
    pub(super) fn take(&self, key: &FrameKey) -> Option<Page> {
        if let Ok(mut ahead) = self.ahead.lock()
            && let Some((page, _held)) = ahead.remove(key)
        {
            return Some(page);
        }
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

    /// A page the scan-ahead fetched, until the scan reads it.
    pub(super) fn keep_ahead(&self, key: FrameKey, page: Page, lease: &Arc<Lease>) {
        if let Ok(mut ahead) = self.ahead.lock() {
            ahead.insert(key, (page, Arc::clone(lease)));
        }
    }

    /// Notes that a read fetched its page itself.
    pub(super) fn note_fetched(&self) {
        self.fetched.store(true, Ordering::Release);
    }

    /// Whether the last read fetched its page itself (and forgets it).
    pub fn take_fetched(&self) -> bool {
        self.fetched.swap(false, Ordering::AcqRel)
    }

    /// Whether the scan-ahead's page of `key` waits here.
    pub(super) fn holds(&self, key: &FrameKey) -> bool {
        self.ahead.lock().is_ok_and(|a| a.contains_key(key))
    }

    /// Counts `bytes` of a scan-ahead request from now until the lease is
    /// dropped.
    pub(super) fn lease(&self, bytes: u64) -> Lease {
        self.leased.fetch_add(bytes, Ordering::AcqRel);
        Lease {
            bytes,
            of: Arc::clone(&self.leased),
            held: None,
        }
    }

    /// Bytes of the scan-ahead requests queued, in flight, or waiting here
    /// to be read.
    pub fn leased(&self) -> u64 {
        self.leased.load(Ordering::Acquire)
    }

    /// Drops the pages read ahead (and gives their budget back): the read
    /// transaction ended, or the scan went elsewhere.
    pub fn clear(&self) {
        let dropped = self.ahead.lock().map(|mut a| std::mem::take(&mut *a));
        drop(dropped);
        if let Ok(mut pages) = self.pages.lock() {
            pages.clear();
        }
    }

    /// Pages read ahead and not read yet.
    pub fn ahead_len(&self) -> usize {
        self.ahead.lock().map_or(0, |a| a.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{FileName, Txid};

    #[test]
    fn pages_kept_for_the_scan_hold_their_budget_until_read() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let budget = super::super::InFlight::new(8 * 1024);
            let wait = std::time::Duration::from_millis(20);
            let scan = ScanBuf::default();
            // A scan-ahead request of two pages: leased when queued...
            let lease = scan.lease(8 * 1024);
            assert_eq!(scan.leased(), 8 * 1024);
            // ...holding the budget once fetched.
            let held = budget.hold(8 * 1024, wait, "t").await.unwrap();
            let lease = Arc::new(lease.with(held));
            let name = FileName {
                min: Txid(1),
                max: Txid(1),
            };
            let (a, b) = (
                FrameKey::of(0, name, 1, 0, 100),
                FrameKey::of(0, name, 1, 0, 200),
            );
            let page: Page = Arc::from(vec![7u8; 4096]);
            scan.keep_ahead(a, Arc::clone(&page), &lease);
            scan.keep_ahead(b, Arc::clone(&page), &lease);
            drop(lease);
            // The request is done, its pages wait: the budget stays held.
            assert!(budget.hold(1, wait, "t").await.is_err());
            assert_eq!(scan.take(&a).as_deref(), Some(&page[..]));
            assert!(scan.holds(&b) && scan.leased() == 8 * 1024);
            assert!(budget.hold(1, wait, "t").await.is_err());
            // The last page read: all of it is given back.
            assert!(scan.take(&b).is_some());
            assert_eq!(scan.leased(), 0);
            assert!(budget.hold(8 * 1024, wait, "t").await.is_ok());
            // The end of a transaction drops what was never read.
            let lease = Arc::new(scan.lease(4096));
            scan.keep_ahead(a, page, &lease);
            drop(lease);
            assert_eq!(scan.ahead_len(), 1);
            scan.clear();
            assert_eq!((scan.ahead_len(), scan.leased()), (0, 0));
        });
    }

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
