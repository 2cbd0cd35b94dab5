//! The page reader: a page of a snapshot from the cache, else from storage.
//!
//! - **Coalesced.** Frames adjacent in one LTX file go in one ranged read:
//!   a demand read takes the frames behind the missing one (read-ahead for
//!   scans, see [`ReadAhead`]); a prefetch sorts what it is asked for by
//!   file and offset and merges neighbours.
//! - **Single-flight.** A frame being fetched is fetched once, however many
//!   connections want it (see [`super::flight`]).
//! - **Demand first.** A demand read never waits for a prefetch slot: it
//!   runs on the caller's thread, and takes over a frame that a prefetch
//!   queued but has not started.
//! - **Bounded.** At most [`PREFETCH_IN_FLIGHT`] prefetch reads run at once;
//!   each runs, with its decoding, on tokio's blocking pool, never on a
//!   worker thread that the poller needs.
//!
//! [`Fetcher::fetch_run`] is the one place where a miss goes to storage.

use std::ops::Range;
use std::sync::Arc;

use crate::cache::{Page, PageCache};
use crate::error::{Error, Result};
use crate::ltx::{self, PageNo, Txid};
use crate::storage::Storage;
use crate::{log, runtime};

use super::flight::{Claim, Flight, Flights};
use super::local::Local;
use super::{FileRef, FrameLoc, Snapshot, Stats};

/// Read-ahead never spans more pages than this...
pub const MAX_WINDOW: u32 = 512;
/// ...nor more bytes than this in one request: large enough to amortise a
/// 20 ms round trip over a few megabytes, small enough to bound memory.
const MAX_RANGE_BYTES: u64 = 4 * 1024 * 1024;
/// First window after two reads in a row.
const START_WINDOW: u32 = 8;
/// Pages a read may skip forward and still count as sequential: a B-tree
/// scan visits an interior page now and then between its leaves.
const SEQUENTIAL_SLACK: u32 = 8;
/// Prefetch reads in flight at once, per replica. A lookup through an
/// index names a few hundred scattered table leaves; 128 parallel requests
/// fetch 250 of them in two round trips, while bounding connections and
/// memory (128 × 4 MiB at worst). (At 64, the requests that follow as
/// permits free up trickle out one by one and the lookup took 53
/// sequential round trips instead of 9.)
pub const PREFETCH_IN_FLIGHT: usize = 128;
/// Runs of one prefetch sent together as one group (half the slots, so
/// that two groups are in flight at once).
const PREFETCH_GROUP: usize = PREFETCH_IN_FLIGHT / 2;
/// A prefetch merges two frames of one file into one request when at most
/// this many bytes lie between them: reading a gap costs less than a
/// second round trip.
const MERGE_GAP: u64 = 32 * 1024;
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
    pages: std::sync::Mutex<Vec<(crate::cache::FrameKey, Page)>>,
}

impl ScanBuf {
    fn take(&self, key: &crate::cache::FrameKey) -> Option<Page> {
        let mut pages = self.pages.lock().ok()?;
        let i = pages.iter().position(|(k, _)| k == key)?;
        Some(pages.swap_remove(i).1)
    }

    fn keep(&self, run: &Run, pages: &[(PageNo, Page)]) {
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

/// Called with each page a prefetch landed.
pub type Landed = Arc<dyn Fn(PageNo, &Page) + Send + Sync>;

/// Frames of one file fetched in one ranged read, each with its flight.
struct Run {
    file: Arc<FileRef>,
    frames: Vec<(PageNo, FrameLoc, Arc<Flight>)>,
    /// Keep the fetched pages in the local store, constant up to this TXID
    /// (see `Local::keep_until`).
    keep_until: Option<Txid>,
}

impl Run {
    fn range(&self) -> Option<Range<u64>> {
        let first = self.frames.first()?;
        let last = self.frames.last()?;
        Some(first.1.offset..last.1.end())
    }
}

/// Reads pages for every connection of one replica.
pub struct Fetcher {
    storage: Arc<dyn Storage>,
    cache: Arc<PageCache>,
    stats: Arc<Stats>,
    flights: Flights,
    slots: Arc<tokio::sync::Semaphore>,
    /// The host-wide local store: asked before storage, filled after it.
    local: Arc<Local>,
}

impl Fetcher {
    pub fn new(
        storage: Arc<dyn Storage>,
        cache: Arc<PageCache>,
        stats: Arc<Stats>,
        local: Arc<Local>,
    ) -> Fetcher {
        Fetcher {
            storage,
            cache,
            stats,
            local,
            flights: Flights::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(PREFETCH_IN_FLIGHT)),
        }
    }

    /// Whether prefetch is worth it: storage has latency to hide.
    pub fn prefetches(&self) -> bool {
        !self.storage.is_local()
    }

    /// Pages a prefetch may keep in flight ahead of a scan: a quarter of
    /// the cache, so that they are still there when the scan reaches them.
    pub fn scan_ahead_limit(&self, page_size: ltx::PageSize) -> u32 {
        u32::try_from(self.cache.budget() / 4 / u64::from(page_size.get())).unwrap_or(u32::MAX)
    }

    /// A page of `snap` if it is in memory; never fetches.
    pub fn cached(&self, snap: &Snapshot, pgno: PageNo) -> Option<Page> {
        let loc = snap.frame(pgno)?;
        if loc.file.corrupt.get().is_some() {
            return None;
        }
        self.cache.get(&loc.key())
    }

    /// One page of a snapshot, for a reader that waits for it, and up to
    /// `window - 1` following frames of the same file into the cache.
    /// `None` when no file of the snapshot holds the page. The flag says
    /// whether it came from storage (a miss).
    pub fn read(
        &self,
        snap: &Snapshot,
        pgno: PageNo,
        window: u32,
        scan: &ScanBuf,
    ) -> Result<Option<(Page, bool)>> {
        let Some(loc) = snap.frame(pgno) else {
            return Ok(None);
        };
        if let Some(reason) = loc.file.corrupt.get() {
            return Err(Error::Missing(format!("page {}: {reason}", pgno.0)));
        }
        let key = loc.key();
        if let Some(page) = self.cache.get(&key).or_else(|| scan.take(&key)) {
            Stats::add(&self.stats.cache_hits, 1);
            return Ok(Some((page, false)));
        }
        Stats::add(&self.stats.cache_misses, 1);
        // Asked before storage...
        if let Some(page) = self.local.read(&self.cache, snap, pgno, &loc) {
            return Ok(Some((page, false)));
        }
        let mut waited = false;
        let flight = loop {
            match self.flights.claim_demand(key) {
                Claim::Mine(f) => break f,
                // Someone fetches it: wait once; if that fetch failed, claim
                // it again and fetch it here (the error is then our own).
                Claim::Wait(f) if !waited => {
                    Stats::add(&self.stats.joined, 1);
                    waited = true;
                    if let Some(page) = self.flights.wait(&f) {
                        return Ok(Some((page, true)));
                    }
                }
                Claim::Wait(f) => {
                    if let Some(page) = self.flights.wait(&f) {
                        return Ok(Some((page, true)));
                    }
                    // Failed again under someone else: fetch it here, so
                    // that the error is this read's own (a vanished file
                    // re-plans; it is never taken for corruption).
                    break self.flights.unshared();
                }
            }
        };
        let run = self.run_after(snap, pgno, &loc, flight, window);
        log::debug!("demand miss: page {} ({} frames)", pgno.0, run.frames.len());
        // A scan while the cache is full keeps what it read ahead to itself.
        let to_cache = window < MAX_WINDOW || self.cache.weight() < self.cache.budget() / 10 * 9;
        let pages = self
            .fetch_runs(std::slice::from_ref(&run), snap.page_size, false, to_cache)
            .pop()
            .unwrap_or_else(|| Ok(Vec::new()))?;
        if !to_cache {
            scan.keep(&run, &pages);
        }
        Ok(pages
            .into_iter()
            .find(|(p, _)| *p == pgno)
            .map(|(_, page)| (page, true)))
    }

    /// The frame of `pgno` and the frames of the pages after it that lie
    /// right behind it in the same file (each starts where the one before
    /// may end) and that nobody fetches yet, within the window and the byte
    /// cap.
    fn run_after(
        &self,
        snap: &Snapshot,
        pgno: PageNo,
        loc: &FrameLoc,
        flight: Arc<Flight>,
        window: u32,
    ) -> Run {
        let mut frames = vec![(pgno, loc.clone(), flight)];
        let mut end = loc.end();
        for next in pgno.0.saturating_add(1)..pgno.0.saturating_add(window.max(1)) {
            let Some(f) = snap.frame(PageNo(next)) else {
                break;
            };
            let last = frames.last().map_or(loc.offset, |(_, l, _)| l.offset);
            if !Arc::ptr_eq(&f.file, &loc.file)
                || f.offset <= last
                || f.offset > end
                || f.end() - loc.offset > MAX_RANGE_BYTES
            {
                break;
            }
            let key = f.key();
            if self.cache.get(&key).is_some() {
                break;
            }
            let Some(flight) = self.flights.claim_free(key) else {
                break;
            };
            end = f.end();
            frames.push((PageNo(next), f, flight));
        }
        Run {
            file: Arc::clone(&loc.file),
            frames,
            keep_until: self.local.keep_until(snap, loc),
        }
    }

    /// Fetches `pgnos` of `snap` in the background (those not cached and
    /// not in flight), merged into ranged reads, at most
    /// `PREFETCH_IN_FLIGHT` at a time. `landed` is called with every page
    /// that arrives. Returns how many frames were queued.
    pub fn prefetch(
        self: &Arc<Self>,
        snap: &Snapshot,
        pgnos: &[PageNo],
        landed: Option<Landed>,
    ) -> usize {
        self.prefetch_runs_of(snap, pgnos, landed, MAX_RANGE_BYTES)
    }

    /// [`Fetcher::prefetch`] with requests of at most `max_run` bytes.
    pub fn prefetch_runs_of(
        self: &Arc<Self>,
        snap: &Snapshot,
        pgnos: &[PageNo],
        landed: Option<Landed>,
        max_run: u64,
    ) -> usize {
        let mut claimed: Vec<(PageNo, FrameLoc, Arc<Flight>)> = Vec::new();
        for &pgno in pgnos {
            let Some(loc) = snap.frame(pgno) else {
                continue;
            };
            let key = loc.key();
            if loc.file.corrupt.get().is_some() || self.cache.get(&key).is_some() {
                continue;
            }
            // On local disk already: no fetch. Into memory while it has
            // room; when it has none the read would be thrown away, so only
            // the slot header is checked.
            let local = if self.cache.has_room(u64::from(snap.page_size.get())) {
                self.local.read(&self.cache, snap, pgno, &loc).is_some()
            } else {
                self.local.holds(snap, pgno, &loc)
            };
            if local {
                continue;
            }
            if let Some(f) = self.flights.claim_queued(key) {
                claimed.push((pgno, loc, f));
            }
        }
        let queued = claimed.len();
        log::debug!("prefetch: {queued} of {} pages queued", pgnos.len());
        if queued == 0 {
            return 0;
        }
        Stats::add(&self.stats.prefetched, queued as u64);
        claimed.sort_by_key(|a| (a.1.file.id, a.1.offset));
        let mut runs: Vec<Run> = Vec::new();
        for frame in claimed {
            if let Some(run) = runs.last_mut() {
                if let (Some(range), Some(last)) = (run.range(), run.frames.last()) {
                    let same = Arc::ptr_eq(&run.file, &frame.1.file);
                    if same
                        && frame.1.offset > last.1.offset
                        && frame.1.offset <= range.end + MERGE_GAP
                        && frame.1.end() - range.start <= max_run
                    {
                        run.frames.push(frame);
                        continue;
                    }
                }
            }
            runs.push(Run {
                file: Arc::clone(&frame.1.file),
                keep_until: self.local.keep_until(snap, &frame.1),
                frames: vec![frame],
            });
        }
        // Runs go out in groups that start and land together: a group of
        // requests is one round trip, where runs started one by one as
        // slots free up would trickle out over many.
        let mut runs = runs.into_iter().peekable();
        while runs.peek().is_some() {
            let group: Vec<Run> = runs.by_ref().take(PREFETCH_GROUP).collect();
            self.spawn_prefetch(group, snap.page_size, landed.clone());
        }
        queued
    }

    fn spawn_prefetch(
        self: &Arc<Self>,
        group: Vec<Run>,
        page_size: ltx::PageSize,
        landed: Option<Landed>,
    ) {
        let process = runtime::process();
        let rt = match process.runtime() {
            Ok(rt) => rt,
            Err(e) => {
                log::debug!("prefetch skipped: {e}");
                group.iter().for_each(|r| self.abandon(r));
                return;
            }
        };
        let (me, slots) = (Arc::clone(self), Arc::clone(&self.slots));
        let n = u32::try_from(group.len()).unwrap_or(u32::MAX);
        rt.spawn(async move {
            let Ok(permits) = slots.acquire_many_owned(n).await else {
                group.iter().for_each(|r| me.abandon(r));
                return;
            };
            let job = tokio::task::spawn_blocking(move || {
                me.run_prefetch(group, page_size, landed.as_ref());
                drop(permits);
            });
            let _ = job.await;
        });
    }

    /// Lands every flight of a run that will not be fetched.
    fn abandon(&self, run: &Run) {
        for (_, loc, f) in &run.frames {
            if f.start() {
                self.flights.land(loc.key(), f, None);
            }
        }
    }

    /// A group of prefetch runs, on the blocking pool: the frames a demand
    /// read did not take over in the meantime.
    fn run_prefetch(&self, mut group: Vec<Run>, page_size: ltx::PageSize, landed: Option<&Landed>) {
        for run in &mut group {
            run.frames.retain(|(_, _, f)| f.start());
        }
        group.retain(|r| !r.frames.is_empty());
        for (run, result) in group
            .iter()
            .zip(self.fetch_runs(&group, page_size, true, true))
        {
            match result {
                Ok(pages) => {
                    if let Some(landed) = landed {
                        for (pgno, page) in &pages {
                            landed(*pgno, page);
                        }
                    }
                }
                Err(e) => log::debug!("prefetch of {} failed: {e}", run.file.id),
            }
        }
    }

    /// Fetches runs, each in one ranged read, all at once; decodes their
    /// frames into the cache and lands their flights. The one place where
    /// a miss goes to storage. `in_pool`: called on tokio's blocking pool
    /// (else on a caller's thread outside the runtime, or inside a foreign
    /// one).
    fn fetch_runs(
        &self,
        runs: &[Run],
        page_size: ltx::PageSize,
        in_pool: bool,
        to_cache: bool,
    ) -> Vec<Result<Vec<(PageNo, Page)>>> {
        let reads = runs.iter().map(|run| async move {
            let range = run.range().unwrap_or(0..0);
            Stats::add(&self.stats.reads, 1);
            let bytes = self
                .storage
                .read_version(run.file.id, run.file.version, range.clone())
                .await?;
            Stats::add(&self.stats.read_bytes, bytes.len() as u64);
            Ok::<_, Error>((range, bytes))
        });
        let all = futures_util::future::join_all(reads);
        let fetched = if in_pool {
            tokio::runtime::Handle::current().block_on(all)
        } else {
            match runtime::block_on(all) {
                Ok(v) => v,
                Err(e) => runs.iter().map(|_| Err(e.clone())).collect(),
            }
        };
        let mut out = Vec::with_capacity(runs.len());
        for (run, bytes) in runs.iter().zip(fetched) {
            let result = bytes.and_then(|(range, bytes)| {
                self.decode_run(run, range, &bytes, page_size, in_pool, to_cache)
            });
            // ...and filled after it.
            if let (Ok(pages), Some(until)) = (&result, run.keep_until) {
                self.local.keep(&run.file, until, pages);
            }
            let landed: Vec<Option<Page>> = match &result {
                Ok(pages) => pages.iter().map(|(_, p)| Some(Arc::clone(p))).collect(),
                Err(_) => vec![None; run.frames.len()],
            };
            for ((_, loc, f), page) in run.frames.iter().zip(landed) {
                self.flights.land(loc.key(), f, page);
            }
            out.push(result);
        }
        out
    }

    fn decode_run(
        &self,
        run: &Run,
        range: Range<u64>,
        bytes: &[u8],
        page_size: ltx::PageSize,
        in_pool: bool,
        to_cache: bool,
    ) -> Result<Vec<(PageNo, Page)>> {
        let describe = || format!("{} {}", self.storage.describe(), run.file.id);
        let mut pages = Vec::with_capacity(run.frames.len());
        for (pgno, loc, _) in &run.frames {
            let from = usize::try_from(loc.offset - range.start).unwrap_or(usize::MAX);
            let rest = bytes
                .get(from..)
                .ok_or_else(|| Error::Missing(format!("short read of {}", describe())))?;
            let len = ltx::frame_len(rest).map_err(|e| Error::corrupt(describe(), e))?;
            let exact;
            let raw = match rest.get(..len) {
                Some(raw) => raw,
                None => {
                    // Longer than a page can compress to: read it exactly.
                    exact = self.read_exact(run, loc.offset, len, in_pool)?;
                    exact.as_slice()
                }
            };
            let frame =
                ltx::decode_frame(raw, page_size).map_err(|e| Error::corrupt(describe(), e))?;
            if frame.header.pgno != *pgno {
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
            if to_cache {
                self.cache.insert(loc.key(), Arc::clone(&page));
            }
            pages.push((*pgno, page));
        }
        Ok(pages)
    }

    /// `len` bytes of a run's file from `offset`: a frame longer than the
    /// bound the run was read with.
    fn read_exact(&self, run: &Run, offset: u64, len: usize, in_pool: bool) -> Result<Vec<u8>> {
        Stats::add(&self.stats.reads, 1);
        log::debug!("exact read of {len} bytes at {offset} of {}", run.file.id);
        let range = offset..offset.saturating_add(len as u64);
        let read = self
            .storage
            .read_version(run.file.id, run.file.version, range);
        let bytes = if in_pool {
            tokio::runtime::Handle::current().block_on(read)?
        } else {
            runtime::block_on(read)??
        };
        if bytes.len() != len {
            return Err(Error::Missing(format!(
                "short read of {} {}",
                self.storage.describe(),
                run.file.id
            )));
        }
        Ok(bytes)
    }

    /// Frames queued or being fetched now.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::PageCache;
    use crate::ltx::{FileName, LtxBuilder, PageIndex, PageSize, Txid, decode_file};
    use crate::replica::FileRef;
    use crate::storage::{FileId, FileStorage, Level};

    const PAGES: u32 = 300;

    /// A replica folder with one snapshot of `PAGES` distinct pages, its
    /// snapshot, and a fetcher over it with a cache of `budget` bytes.
    fn fixture(budget: u64) -> (tempfile::TempDir, Arc<Fetcher>, Snapshot, Arc<Stats>) {
        let dir = tempfile::tempdir().unwrap();
        let ps = PageSize::new(4096).unwrap();
        let mut b = LtxBuilder::new(ps, 1, 1, PAGES);
        for p in 1..=PAGES {
            b = b.page(p, format!("page {p} ").repeat(200).as_bytes());
        }
        let bytes = b.build();
        let id = FileId {
            level: Level::SNAPSHOT,
            name: FileName {
                min: Txid(1),
                max: Txid(1),
            },
        };
        let path = dir.path().join("ltx/9");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join(id.name.to_string()), &bytes).unwrap();
        let decoded = decode_file(&bytes).unwrap();
        let file = Arc::new(FileRef::new(id, bytes.len() as u64, decoded.header));
        let index = PageIndex {
            entries: decoded.index.entries,
        };
        let snap = Snapshot::build([(&file, &index)]).unwrap();
        let stats = Arc::new(Stats::default());
        let storage = Arc::new(FileStorage::new(dir.path().to_path_buf()));
        let fetcher = Arc::new(Fetcher::new(
            storage,
            Arc::new(PageCache::new(budget)),
            Arc::clone(&stats),
            Arc::default(),
        ));
        (dir, fetcher, snap, stats)
    }

    fn reads(stats: &Stats) -> u64 {
        stats.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn expect(page: &[u8], p: u32) {
        assert!(
            page.starts_with(format!("page {p} ").as_bytes()),
            "page {p}"
        );
    }

    #[test]
    fn adjacent_frames_are_fetched_in_one_read_and_then_hit() {
        let (_dir, fetcher, snap, stats) = fixture(64 << 20);
        let pages: Vec<PageNo> = (10..110).map(PageNo).collect();
        assert_eq!(fetcher.prefetch(&snap, &pages, None), 100);
        while fetcher.in_flight() > 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(reads(&stats), 1, "100 adjacent frames, one ranged read");
        let scan = ScanBuf::default();
        for p in 10..110 {
            let (page, missed) = fetcher.read(&snap, PageNo(p), 1, &scan).unwrap().unwrap();
            assert!(!missed);
            expect(&page, p);
        }
        assert_eq!(reads(&stats), 1);
        // Scattered pages whose frames lie within MERGE_GAP of each other
        // (these compress to ~60 bytes) still go in one request.
        let scattered: Vec<PageNo> = (150..300).step_by(30).map(PageNo).collect();
        assert_eq!(fetcher.prefetch(&snap, &scattered, None), scattered.len());
        while fetcher.in_flight() > 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(reads(&stats), 2);
        for p in &scattered {
            assert!(fetcher.cached(&snap, *p).is_some());
        }
        assert!(
            fetcher.cached(&snap, PageNo(151)).is_none(),
            "only what was asked"
        );
    }

    #[test]
    fn a_scan_through_a_full_cache_keeps_its_read_ahead_to_itself() {
        // A cache of about 50 pages, filled by a first pass.
        let (_dir, fetcher, snap, stats) = fixture(50 * 4200);
        let scan = ScanBuf::default();
        for p in 1..=60 {
            fetcher.read(&snap, PageNo(p), 1, &scan).unwrap().unwrap();
        }
        let cached: Vec<u32> = (1..=60)
            .filter(|p| fetcher.cached(&snap, PageNo(*p)).is_some())
            .collect();
        assert!(cached.len() > 20, "{cached:?}");
        // A scan with the full window: its read-ahead does not go to the
        // cache, which keeps what it held, and the scan still reads each
        // page once.
        let before = reads(&stats);
        let (page, missed) = fetcher
            .read(&snap, PageNo(100), MAX_WINDOW, &scan)
            .unwrap()
            .unwrap();
        assert!(missed);
        expect(&page, 100);
        for p in 101..=200 {
            let (page, missed) = fetcher
                .read(&snap, PageNo(p), MAX_WINDOW, &scan)
                .unwrap()
                .unwrap();
            assert!(!missed, "page {p} came with the window");
            expect(&page, p);
        }
        assert_eq!(reads(&stats), before + 1);
        for p in cached {
            assert!(
                fetcher.cached(&snap, PageNo(p)).is_some(),
                "page {p} stayed"
            );
        }
    }

    #[test]
    fn a_frame_whose_shared_fetches_failed_is_fetched_by_the_reader_itself() {
        let (dir, fetcher, snap, _stats) = fixture(64 << 20);
        // The file is gone (compaction), and another reader's fetch of the
        // frame failed before this read claimed it.
        std::fs::remove_dir_all(dir.path().join("ltx")).unwrap();
        let key = snap.frame(PageNo(7)).unwrap().key();
        let other = fetcher.flights.claim_queued(key).unwrap();
        assert!(other.start());
        fetcher.flights.fail_in_place(&other);
        // The read meets the storage's own error, which re-plans, and not
        // one that SQLite would report as a malformed database.
        match fetcher.read(&snap, PageNo(7), 1, &ScanBuf::default()) {
            Err(Error::Storage(e)) => {
                assert_eq!(e.kind, crate::storage::StorageErrorKind::NotFound, "{e}")
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("read a deleted file"),
        }
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
