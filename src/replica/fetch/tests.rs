//! The page reader over a real replica folder.

use super::*;
use crate::cache::PageCache;
use crate::ltx::{FileName, LtxBuilder, PageIndex, PageSize, Txid, decode_file};
use crate::replica::FileRef;
use crate::storage::{FileId, FileStorage, Level};

pub(super) const PAGES: u32 = 300;

/// A replica folder with one snapshot of `PAGES` distinct pages, its
/// snapshot, and a fetcher over it with a cache of `budget` bytes.
fn fixture(budget: u64) -> (tempfile::TempDir, Arc<Fetcher>, Snapshot, Arc<Stats>) {
    fixture_over(budget, |s| Arc::new(s))
}

/// [`fixture`] over the storage `wrap` makes of the folder's.
fn fixture_over(
    budget: u64,
    wrap: impl FnOnce(FileStorage) -> Arc<dyn Storage>,
) -> (tempfile::TempDir, Arc<Fetcher>, Snapshot, Arc<Stats>) {
    fixture_of(budget, PAGES, wrap, |p| {
        format!("page {p} ").repeat(200).into_bytes()
    })
}

/// [`fixture_over`] with `pages` pages of `content`.
pub(super) fn fixture_of(
    budget: u64,
    pages: u32,
    wrap: impl FnOnce(FileStorage) -> Arc<dyn Storage>,
    content: impl Fn(u32) -> Vec<u8>,
) -> (tempfile::TempDir, Arc<Fetcher>, Snapshot, Arc<Stats>) {
    let dir = tempfile::tempdir().unwrap();
    let ps = PageSize::new(4096).unwrap();
    let mut b = LtxBuilder::new(ps, 1, 1, pages);
    for p in 1..=pages {
        b = b.page(p, &content(p));
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
    let storage = wrap(FileStorage::new(dir.path().to_path_buf()));
    let fetcher = Arc::new(Fetcher::new(
        storage,
        Arc::new(PageCache::new(budget)),
        Arc::clone(&stats),
        Arc::default(),
        std::time::Duration::from_secs(10),
    ));
    (dir, fetcher, snap, stats)
}

/// Waits until no frame is in flight: every prefetch landed. Fails (never
/// hangs) when one does not land within 20 s.
fn settle(fetcher: &Fetcher) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while fetcher.in_flight() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} frames still in flight after 20 s: a flight never landed",
            fetcher.in_flight()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

pub(super) fn reads(stats: &Stats) -> u64 {
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
    settle(&fetcher);
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
    settle(&fetcher);
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
    fetcher.flights.fail_in_place(other.flight());
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

/// A folder replica that calls `before` with the range of each read ahead
/// of it, named `describe`; it looks remote (so that the fetcher
/// prefetches).
struct BeforeRead<F> {
    inner: FileStorage,
    describe: String,
    before: F,
}

impl<F> BeforeRead<F> {
    fn new(inner: FileStorage, describe: Option<&str>, before: F) -> BeforeRead<F> {
        let describe = describe.unwrap_or(inner.describe()).to_owned();
        BeforeRead {
            inner,
            describe,
            before,
        }
    }
}

impl<F> std::fmt::Debug for BeforeRead<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeforeRead")
            .field("describe", &self.describe)
            .finish_non_exhaustive()
    }
}

impl<F: Fn(&std::ops::Range<u64>) + Send + Sync> Storage for BeforeRead<F> {
    fn describe(&self) -> &str {
        &self.describe
    }

    fn list(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> crate::storage::BoxFuture<
        '_,
        std::result::Result<Vec<crate::storage::FileInfo>, crate::storage::StorageError>,
    > {
        self.inner.list(level, after)
    }

    fn read(
        &self,
        file: FileId,
        range: std::ops::Range<u64>,
    ) -> crate::storage::BoxFuture<'_, std::result::Result<Vec<u8>, crate::storage::StorageError>>
    {
        (self.before)(&range);
        self.inner.read(file, range)
    }
}

#[test]
fn a_prefetch_whose_blocking_task_panics_lands_its_flights_failed() {
    let (_dir, fetcher, snap, _stats) = fixture_over(64 << 20, |inner| {
        // The first read panics.
        let armed = std::sync::atomic::AtomicBool::new(true);
        Arc::new(BeforeRead::new(
            inner,
            None,
            move |_: &std::ops::Range<u64>| {
                if armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    panic!("test: the storage read of a prefetch panics");
                }
            },
        ))
    });
    assert!(fetcher.prefetches());
    assert_eq!(fetcher.prefetch(&snap, &[PageNo(7), PageNo(8)], None), 2);
    // The prefetch job panicked on the blocking pool: its claims landed
    // failed, so nothing stays in flight...
    settle(&fetcher);
    // ...and a reader of the frame fetches it itself.
    let (page, missed) = fetcher
        .read(&snap, PageNo(7), 1, &ScanBuf::default())
        .unwrap()
        .unwrap();
    assert!(missed);
    expect(&page, 7);
}

/// Runs `Fetcher::warm` on the runtime's blocking pool, as the warm-up does.
fn warm(f: &Arc<Fetcher>, snap: &Arc<Snapshot>, pgnos: Vec<PageNo>) -> super::warm::Warmed {
    let process = crate::runtime::process();
    let rt = process.runtime().unwrap();
    let (f, snap) = (Arc::clone(f), Arc::clone(snap));
    rt.block_on(rt.spawn_blocking(move || f.warm(&snap, &pgnos, 0, &|| true)))
        .unwrap()
}

#[test]
fn warm_up_fetches_scattered_pages_in_wide_reads_and_only_once() {
    let (_dir, f, snap, stats) = fixture(64 << 20);
    let snap = Arc::new(snap);
    // Every tenth page: far apart in pages, close in bytes (these frames
    // compress to a few dozen bytes each), so one ranged read.
    let pgnos: Vec<PageNo> = (2..=PAGES).step_by(10).map(PageNo).collect();
    let got = warm(&f, &snap, pgnos.clone());
    assert_eq!(got.pages.len(), pgnos.len());
    for (p, page) in &got.pages {
        expect(page, p.0);
    }
    assert_eq!((got.requests, got.fetched), (1, pgnos.len() as u64));
    assert_eq!(reads(&stats), 1);
    settle(&f);
    // In memory now: a second warm-up costs no request.
    let again = warm(&f, &snap, pgnos.clone());
    assert_eq!((again.pages.len(), again.requests), (pgnos.len(), 0));
    assert_eq!(reads(&stats), 1);
}

#[test]
fn a_budget_caps_a_connections_prefetch_requests() {
    let (_dir, f, snap, stats) = fixture(64 << 20);
    let b = Budget::new(Some(2));
    // Frames far apart in the file are one request each when the gap is
    // not merged: ask for runs of at most one frame.
    let pgnos: Vec<PageNo> = (2..=PAGES).step_by(20).map(PageNo).collect();
    let queued = {
        let _scope = b.enter();
        f.prefetch_runs_of(&snap, &pgnos, None, 1, None)
    };
    assert!(queued > 2, "{queued} frames claimed");
    settle(&f);
    assert_eq!(reads(&stats), 2, "two requests granted, the rest not sent");
    assert_eq!(b.used(), 2);
    // The budget is spent: a demand read of this statement fails...
    let scan = ScanBuf::default();
    let missing = PageNo(PAGES);
    let err = {
        let _scope = b.enter();
        f.read(&snap, missing, 1, &scan).unwrap_err()
    };
    assert!(
        err.to_string().contains("budget of 2 storage requests"),
        "{err}"
    );
    // ...and the next statement has it whole again.
    b.reset();
    let _scope = b.enter();
    let (page, missed) = f.read(&snap, missing, 1, &scan).unwrap().unwrap();
    expect(&page, missing.0);
    assert!(missed);
}

#[test]
fn a_warm_up_of_one_state_never_serves_its_pages_to_the_next() {
    let (dir, f, snap, _stats) = fixture(64 << 20);
    let old = Arc::new(snap);
    // The next state changes page 7 (a level-0 file on top of the snapshot).
    let ps = PageSize::new(4096).unwrap();
    let bytes = LtxBuilder::new(ps, 2, 2, PAGES)
        .page(7, "changed ".repeat(200).as_bytes())
        .build();
    let id = FileId {
        level: Level::L0,
        name: FileName {
            min: Txid(2),
            max: Txid(2),
        },
    };
    let path = dir.path().join("ltx/0");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join(id.name.to_string()), &bytes).unwrap();
    let decoded = decode_file(&bytes).unwrap();
    let file = Arc::new(FileRef::new(id, bytes.len() as u64, decoded.header));
    let index = PageIndex {
        entries: decoded.index.entries,
    };
    let next = old.apply(&file, &index).unwrap();
    // The warm-up, pinned to the old state, runs after the new one exists.
    let got = warm(&f, &old, vec![PageNo(7)]);
    expect(&got.pages[0].1, 7);
    // The new state reads its own page 7, never the one just warmed.
    let (page, _) = f
        .read(&next, PageNo(7), 1, &ScanBuf::default())
        .unwrap()
        .unwrap();
    assert!(
        page.starts_with(b"changed "),
        "the new state got the warmed page"
    );
    let (page, missed) = f
        .read(&old, PageNo(7), 1, &ScanBuf::default())
        .unwrap()
        .unwrap();
    expect(&page, 7);
    assert!(!missed, "the old state's page 7 is the warmed one");
}

/// A page that does not compress: its frame is a page long.
pub(in crate::replica) fn noise(p: u32) -> Vec<u8> {
    let mut x = u64::from(p).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn reads_in_flight_never_hold_more_than_the_budget() {
    let asked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = Arc::clone(&asked);
    let (_dir, fetcher, snap, stats) = fixture_of(
        64 << 20,
        PAGES,
        move |inner| {
            // Counts the bytes its reads asked for.
            Arc::new(BeforeRead::new(
                inner,
                Some("test://counts-bytes"),
                move |range: &std::ops::Range<u64>| {
                    counter.fetch_add(range.end - range.start, std::sync::atomic::Ordering::SeqCst);
                },
            ))
        },
        noise,
    );
    // Room for two one-frame reads (a frame of a page that does not
    // compress, about 4.1 KiB, read with its bound), not three.
    let budget = 12 * 1024;
    let fetcher = Arc::new(
        Arc::into_inner(fetcher)
            .unwrap()
            .with_in_flight(Arc::new(InFlight::new(budget))),
    );
    let scope = "test://counts-bytes";
    // Reads that got their bytes park once fetched, holding them; reads
    // that must wait for bytes park before waiting.
    let fetched = crate::pause::arm_in("fetch.fetched", scope);
    let waiting = crate::pause::arm_in("fetch.budget_wait", scope);
    // Four pages 10 frames (41 KiB) apart: four runs, four groups.
    let pages: Vec<PageNo> = [10, 20, 30, 40].into_iter().map(PageNo).collect();
    assert_eq!(fetcher.prefetch(&snap, &pages, None), 4);
    let wait = std::time::Duration::from_secs(20);
    fetched.wait_reached_n(2, wait).unwrap();
    waiting.wait_reached_n(2, wait).unwrap();
    // Two reads are out, holding their bytes; two wait for them.
    assert_eq!(reads(&stats), 2);
    let out = asked.load(std::sync::atomic::Ordering::SeqCst);
    assert!(out <= budget, "{out} bytes in flight, budget {budget}");
    // Released, the waiting two go once the first two gave theirs back.
    drop(waiting);
    drop(fetched);
    settle(&fetcher);
    assert_eq!(reads(&stats), 4);
    for p in &pages {
        expect_noise(&fetcher.cached(&snap, *p).unwrap(), p.0);
    }
}

fn expect_noise(page: &[u8], p: u32) {
    assert!(page == noise(p).as_slice(), "page {p}");
}

#[test]
fn a_page_that_lands_between_the_look_and_the_claim_costs_no_request() {
    let (_dir, fetcher, snap, stats) = fixture(64 << 20);
    let snap = Arc::new(snap);
    let gate = crate::pause::arm_in("fetch.demand_claim", fetcher.storage.describe());
    // A read that found page 7 in no memory parks before it claims it...
    let reader = {
        let (fetcher, snap) = (Arc::clone(&fetcher), Arc::clone(&snap));
        std::thread::spawn(move || {
            let scan = ScanBuf::default();
            fetcher
                .read(&snap, PageNo(7), 1, &scan)
                .map(|p| p.map(|(page, _)| page))
        })
    };
    gate.wait_reached(std::time::Duration::from_secs(20))
        .unwrap();
    // ...while a prefetch fetches it and lands it (its flight forgotten).
    assert_eq!(fetcher.prefetch(&snap, &[PageNo(7)], None), 1);
    settle(&fetcher);
    assert_eq!(reads(&stats), 1);
    gate.release();
    let page = reader.join().unwrap().unwrap().unwrap();
    expect(&page, 7);
    assert_eq!(
        reads(&stats),
        1,
        "the read found the landed page, no second request"
    );
}

#[test]
fn a_scan_ahead_page_landing_after_its_transaction_is_not_kept_past_it() {
    let scope = "test://ahead-late";
    let (_dir, fetcher, snap, _stats) = fixture_over(64 << 20, |s| {
        Arc::new(BeforeRead::new(
            s,
            Some(scope),
            |_: &std::ops::Range<u64>| {},
        ))
    });
    let budget = Arc::new(InFlight::new(1 << 20));
    let fetcher = Arc::new(
        Arc::into_inner(fetcher)
            .unwrap()
            .with_in_flight(Arc::clone(&budget)),
    );
    let scan = Arc::new(ScanBuf::default());
    // The scan-ahead of a scan through a full cache: its pages go to the
    // connection's scan buffer. Its read parks once sent...
    let fetched = crate::pause::arm_in("fetch.fetched", scope);
    let pages: Vec<PageNo> = (10..20).map(PageNo).collect();
    assert!(fetcher.prefetch_runs_of(&snap, &pages, None, 1 << 20, Some(&scan)) > 0);
    fetched
        .wait_reached(std::time::Duration::from_secs(20))
        .unwrap();
    // ...and the read transaction ends meanwhile.
    scan.clear();
    drop(fetched);
    settle(&fetcher);
    // Nothing would read them (nor give their budget back) before the
    // connection's next transaction ends: an idle connection would pin
    // its share of the process's read budget.
    assert_eq!(
        scan.ahead_len(),
        0,
        "pages of an ended transaction's scan-ahead kept in its scan buffer"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while scan.leased() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never went back"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        budget.try_hold(budget.bytes()).is_some(),
        "the budget is back"
    );
}
