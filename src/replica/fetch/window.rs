//! Read-ahead policy: how many pages a demand read takes behind the one
//! SQLite asked for, and where a scan through a full cache keeps them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use tokio::sync::Notify;

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

/// A read this many pages before where a running scan stream began still
/// belongs to it (an interior page of the scan's B-tree read on the way,
/// a page the stream found in memory): no second stream starts for it.
const BEHIND_STREAM: u32 = MAX_WINDOW;

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
    /// The page this connection reads now (its scan's position).
    at: AtomicU32,
    /// Bumped when the buffer is cleared (the read transaction ended): a
    /// scan stream of an older epoch stops.
    epoch: AtomicU64,
    /// Woken when the scan moves, the buffer is cleared or dropped: a scan
    /// stream that waits for its scan to catch up.
    moved: Arc<Notify>,
    /// The newest scan stream of this connection: pages `from..to`, and
    /// whether it still runs.
    stream: std::sync::Mutex<Option<(u32, u32, Arc<AtomicBool>)>>,
    /// A paused scan stream is woken when the scan reaches this page (0:
    /// at every move).
    wake_at: AtomicU32,
    /// The page from which a stream was last tried (plus one; 0: none).
    tried: AtomicU32,
    /// A stream was tried for a leftmost descent in this transaction.
    descended: AtomicBool,
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
    /// The epoch of the transaction it was taken in: its pages are kept
    /// for that transaction only.
    epoch: u64,
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

impl Drop for ScanBuf {
    fn drop(&mut self) {
        // A scan stream waiting for this connection stops now.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.moved.notify_waiters();
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

    /// A page the scan-ahead fetched, until the scan reads it; `false`
    /// (nothing kept) once the transaction the lease was taken in ended:
    /// nothing would read it, nor give its budget back, before the next
    /// transaction ends (an idle connection would pin it).
    pub(super) fn keep_ahead(&self, key: FrameKey, page: Page, lease: &Arc<Lease>) -> bool {
        self.keep_ahead_in(lease.epoch, key, page, lease)
    }

    /// [`ScanBuf::keep_ahead`] for the transaction of `epoch` only: `false`
    /// (and nothing kept) once the buffer was cleared since. Checked under
    /// the lock that `clear` takes after it moves the epoch on, so a page
    /// kept is either dropped by that `clear` or refused.
    pub(super) fn keep_ahead_in(
        &self,
        epoch: u64,
        key: FrameKey,
        page: Page,
        lease: &Arc<Lease>,
    ) -> bool {
        let Ok(mut ahead) = self.ahead.lock() else {
            return false;
        };
        if self.epoch() != epoch {
            return false;
        }
        ahead.insert(key, (page, Arc::clone(lease)));
        true
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
            epoch: self.epoch(),
        }
    }

    /// Bytes of the scan-ahead requests queued, in flight, or waiting here
    /// to be read.
    pub fn leased(&self) -> u64 {
        self.leased.load(Ordering::Acquire)
    }

    /// The scan reads `pgno` now.
    pub(super) fn moved_to(&self, pgno: PageNo) {
        self.at.store(pgno.0, Ordering::SeqCst);
        if pgno.0 >= self.wake_at.load(Ordering::SeqCst) {
            self.moved.notify_waiters();
        }
    }

    /// A paused stream is woken once the scan reaches `pgno` (0: at every
    /// move), not at every read before it.
    pub(super) fn wake_at(&self, pgno: u32) {
        self.wake_at.store(pgno, Ordering::SeqCst);
    }

    /// The page the scan reads now.
    pub(super) fn at(&self) -> u32 {
        self.at.load(Ordering::SeqCst)
    }

    /// The epoch of what the buffer holds (see [`ScanBuf::clear`]).
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// What a scan stream waits on for its scan to move.
    pub(super) fn moved(&self) -> Arc<Notify> {
        Arc::clone(&self.moved)
    }

    /// Whether a running scan stream of this connection brings the pages
    /// `from..from + lead` (or up to its end, if it ends before them and
    /// the next one need not start yet).
    pub fn streams(&self, from: u32, lead: u32) -> bool {
        self.stream.lock().is_ok_and(|s| {
            s.as_ref().is_some_and(|(start, end, running)| {
                running.load(Ordering::Acquire)
                    && *start <= from.saturating_add(BEHIND_STREAM)
                    && from < *end
                    && from.saturating_add(lead) < *end
            })
        })
    }

    /// Whether a stream for a leftmost descent may be tried (once per read
    /// transaction: the descent of a scan reaches its first leaf once).
    pub(super) fn try_descent(&self) -> bool {
        !self.descended.swap(true, Ordering::AcqRel)
    }

    /// Whether a scan stream should be tried from `from`: at a miss, or
    /// `step` pages past the last try (planning one walks the index).
    pub fn try_stream_at(&self, from: u32, missed: bool, step: u32) -> bool {
        let last = self.tried.load(Ordering::Acquire);
        let due = missed || last == 0 || from < last || from - last >= step;
        if due {
            self.tried.store(from.saturating_add(1), Ordering::Release);
        }
        due
    }

    /// The end of the newest scan stream if it runs and holds `from` (the
    /// next one starts there).
    pub fn stream_end(&self, from: u32) -> Option<u32> {
        self.stream_span(from).map(|(_, end)| end)
    }

    /// The pages of the newest scan stream if it runs and holds `from`.
    pub(super) fn stream_span(&self, from: u32) -> Option<(u32, u32)> {
        let s = self.stream.lock().ok()?;
        let (start, end, running) = s.as_ref()?;
        let holds = *start <= from.saturating_add(BEHIND_STREAM) && from < *end;
        (running.load(Ordering::Acquire) && holds).then_some((*start, *end))
    }

    /// Records a new scan stream of pages `from..to`; its flag says it
    /// runs until it is cleared.
    pub(super) fn stream_started(&self, from: u32, to: u32) -> Arc<AtomicBool> {
        let running = Arc::new(AtomicBool::new(true));
        if let Ok(mut s) = self.stream.lock() {
            *s = Some((from, to, Arc::clone(&running)));
        }
        running
    }

    /// Drops the pages read ahead (and gives their budget back): the read
    /// transaction ended, or the scan went elsewhere. A scan stream stops.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.moved.notify_waiters();
        // The stream stops: the next transaction's scan starts its own at
        // once.
        if let Ok(mut s) = self.stream.lock() {
            *s = None;
        }
        self.tried.store(0, Ordering::Release);
        self.descended.store(false, Ordering::Release);
        self.wake_at.store(0, Ordering::SeqCst);
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
            assert!(scan.keep_ahead(a, Arc::clone(&page), &lease));
            assert!(scan.keep_ahead(b, Arc::clone(&page), &lease));
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
            assert!(scan.keep_ahead(a, page, &lease));
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
