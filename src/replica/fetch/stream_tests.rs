//! The scan stream over a storage that hands bodies over in 4 KiB chunks
//! and counts the chunks polled (`chunked_tests.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::chunked_tests::Chunked;
use super::tests::{PAGES, fixture_of, noise, reads};
use super::*;

/// The folder, the fetcher, its snapshot and stats, the chunks polled and
/// the read budget.
type Streamed = (
    tempfile::TempDir,
    Arc<Fetcher>,
    Arc<Snapshot>,
    Arc<Stats>,
    Arc<AtomicU64>,
    Arc<InFlight>,
);

/// A fetcher over `PAGES` pages that do not compress (frames of ~4 KiB),
/// streamed in 4 KiB chunks, with a read budget of 1 MiB and streams that
/// keep `lead` bytes ahead; the chunk counter.
fn streamed(name: &str, lead: u64) -> Streamed {
    let mut polled = None;
    let (dir, fetcher, snap, stats) = fixture_of(
        64 << 20,
        PAGES,
        |inner| {
            let chunked = Chunked::new(inner, name, 4096);
            polled = Some(Arc::clone(&chunked.polled));
            Arc::new(chunked)
        },
        noise,
    );
    let polled = polled.unwrap();
    let budget = Arc::new(InFlight::new(1 << 20));
    let fetcher = Arc::new(
        Arc::into_inner(fetcher)
            .unwrap()
            .with_in_flight(Arc::clone(&budget))
            .with_stream_lead(lead),
    );
    (dir, fetcher, Arc::new(snap), stats, polled, budget)
}

/// Waits (bounded, never a timed assertion) until the connection's stream
/// stopped and every flight landed.
fn stopped(fetcher: &Fetcher, scan: &ScanBuf) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while scan.stream_end(2).is_some() || fetcher.streams_running() > 0 || fetcher.in_flight() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream did not stop within 20 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_scan_reads_the_rest_of_the_file_in_one_request() {
    let (_dir, fetcher, snap, stats, _polled, budget) = streamed("test://stream-one", 4 << 20);
    let scan = Arc::new(ScanBuf::default());
    assert!(fetcher.stream_ahead(&snap, PageNo(2), &scan));
    for p in 2..=super::tests::PAGES {
        let (page, _) = fetcher.read(&snap, PageNo(p), 1, &scan).unwrap().unwrap();
        assert!(page[..] == noise(p)[..], "page {p}");
    }
    // Every page came from the stream: one request, none of the reads'
    // own.
    assert_eq!(reads(&stats), 1);
    stopped(&fetcher, &scan);
    assert_eq!(scan.leased(), 0);
    assert!(
        budget.try_hold(budget.bytes()).is_some(),
        "the budget is back"
    );
}

#[test]
fn a_stream_stops_reading_a_lead_ahead_and_a_dropped_one_gives_all_back() {
    let name = "test://stream-pause";
    // A lead of 16 pages; 300 pages of ~4 KiB in 4 KiB chunks.
    let (_dir, fetcher, snap, stats, polled, budget) = streamed(name, 16 * 4096);
    let paused = crate::pause::arm_in("fetch.stream_paused", name);
    let scan = Arc::new(ScanBuf::default());
    assert!(fetcher.stream_ahead(&snap, PageNo(2), &scan));
    paused.wait_reached(Duration::from_secs(20)).unwrap();
    // It decoded its lead (pages 2..=17) and stopped polling the body:
    // about 17 of its ~310 chunks, not the rest.
    let at_pause = polled.load(Ordering::SeqCst);
    assert!((16..=24).contains(&at_pause), "{at_pause} chunks polled");
    assert!(fetcher.cached(&snap, PageNo(17)).is_some());
    // Paused, it keeps its claims a while (its own scan wakes it), then
    // lets go of them: nobody waits on a stalled scan's stream.
    let released = crate::pause::arm_in("fetch.stream_released", name);
    paused.release();
    released.wait_reached(Duration::from_secs(20)).unwrap();
    assert_eq!(fetcher.in_flight(), 0);
    assert_eq!(polled.load(Ordering::SeqCst), at_pause, "still paused");
    drop(released);
    // The scan moves on: it goes on, a lead ahead again.
    let resumed = crate::pause::arm_in("fetch.stream_resumed", name);
    for p in 2..=12 {
        fetcher.read(&snap, PageNo(p), 1, &scan).unwrap().unwrap();
    }
    resumed.wait_reached(Duration::from_secs(20)).unwrap();
    drop(resumed);
    // The read transaction ends: the stream stops where it is, the body
    // dropped, every claim landed, the budget and the lease given back.
    scan.clear();
    stopped(&fetcher, &scan);
    let at_end = polled.load(Ordering::SeqCst);
    assert!(at_end < 60, "{at_end} chunks polled: the body was drained");
    assert_eq!(reads(&stats), 1);
    assert_eq!(scan.leased(), 0);
    assert!(
        budget.try_hold(budget.bytes()).is_some(),
        "the budget is back"
    );
}

#[test]
fn a_closed_connection_stops_its_stream() {
    let name = "test://stream-closed";
    let (_dir, fetcher, snap, _stats, polled, budget) = streamed(name, 16 * 4096);
    let paused = crate::pause::arm_in("fetch.stream_paused", name);
    let scan = Arc::new(ScanBuf::default());
    assert!(fetcher.stream_ahead(&snap, PageNo(2), &scan));
    paused.wait_reached(Duration::from_secs(20)).unwrap();
    let running = scan.stream_end(2).is_some();
    assert!(running);
    // The connection (its scan buffer) goes away while the stream waits.
    drop(scan);
    paused.release();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while budget.try_hold(budget.bytes()).is_none() || fetcher.in_flight() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream kept its budget"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(polled.load(Ordering::SeqCst) < 40);
}

#[test]
fn a_leftmost_descents_read_that_misses_is_the_scan_streams_first_request() {
    // A lead of 96 pages: page 40 lies within half of it.
    let (_dir, fetcher, snap, stats, _polled, budget) =
        streamed("test://stream-descent", 96 * 4096);
    let scan = Arc::new(ScanBuf::default());
    // SQLite reads page 40 on the leftmost path of the table rooted at
    // page 1 (its first leaves are before it): the stream starts at the
    // first page after the root and brings page 40 on its way.
    assert!(fetcher.stream_descent(&snap, PageNo(40), PageNo(1), &scan));
    let (page, _) = fetcher.read(&snap, PageNo(40), 1, &scan).unwrap().unwrap();
    assert!(page[..] == noise(40)[..]);
    // Once per read transaction.
    assert!(!fetcher.stream_descent(&snap, PageNo(41), PageNo(1), &scan));
    // The scan goes on from its first leaf: every page is the stream's.
    for p in 2..=super::tests::PAGES {
        let (page, _) = fetcher.read(&snap, PageNo(p), 1, &scan).unwrap().unwrap();
        assert!(page[..] == noise(p)[..], "page {p}");
    }
    assert_eq!(
        reads(&stats),
        1,
        "the descent's read and the scan: one request"
    );
    // Read on past the descent's page, it is a scan: the pages decoded
    // from then on went to the cache (which has room), as any stream's;
    // the lead decoded before, to the scan, which took them.
    assert!(fetcher.cached(&snap, PageNo(super::tests::PAGES)).is_some());
    assert!(fetcher.cached(&snap, PageNo(20)).is_none());
    scan.clear();
    stopped(&fetcher, &scan);
    assert_eq!(scan.leased(), 0);
    assert!(
        budget.try_hold(budget.bytes()).is_some(),
        "the budget is back"
    );
}

#[test]
fn a_descents_page_further_than_half_a_lead_is_a_demand_read() {
    // A lead of 16 pages: page 40 is 38 pages into a stream from page 2.
    let (_dir, fetcher, snap, stats, _polled, budget) = streamed("test://stream-far", 16 * 4096);
    let scan = Arc::new(ScanBuf::default());
    assert!(!fetcher.stream_descent(&snap, PageNo(40), PageNo(1), &scan));
    assert_eq!(
        (reads(&stats), fetcher.in_flight()),
        (0, 0),
        "no request, no claim"
    );
    // Nor when the page is in memory already.
    fetcher.read(&snap, PageNo(2), 1, &scan).unwrap().unwrap();
    scan.clear();
    assert!(!fetcher.stream_descent(&snap, PageNo(2), PageNo(1), &scan));
    assert_eq!(reads(&stats), 1);
    stopped(&fetcher, &scan);
    assert!(budget.try_hold(budget.bytes()).is_some());
}

#[test]
fn a_lookup_down_the_leftmost_path_leaves_the_streams_pages_to_its_transaction() {
    let (_dir, fetcher, snap, stats, _polled, budget) = streamed("test://stream-lookup", 4 << 20);
    let scan = Arc::new(ScanBuf::default());
    // A lookup of one of the table's smallest rows descends as a scan
    // does: the stream starts and brings page 40...
    assert!(fetcher.stream_descent(&snap, PageNo(40), PageNo(1), &scan));
    let (page, _) = fetcher.read(&snap, PageNo(40), 1, &scan).unwrap().unwrap();
    assert!(page[..] == noise(40)[..]);
    // ...then reads its leaf, under page 40, and the transaction ends.
    let (page, _) = fetcher.read(&snap, PageNo(20), 1, &scan).unwrap().unwrap();
    assert!(page[..] == noise(20)[..]);
    assert_eq!(reads(&stats), 1);
    scan.clear();
    stopped(&fetcher, &scan);
    // The descent's page is in the cache; what the stream decoded for a
    // scan that never came is not (it went with the transaction).
    assert!(fetcher.cached(&snap, PageNo(40)).is_some());
    for p in [2, 20, 39, 41, 100] {
        assert!(fetcher.cached(&snap, PageNo(p)).is_none(), "page {p}");
    }
    assert_eq!(scan.leased(), 0);
    assert!(
        budget.try_hold(budget.bytes()).is_some(),
        "the budget is back"
    );
}

#[test]
fn a_page_decoded_as_the_transaction_ends_is_not_kept_past_it() {
    let name = "test://stream-kept-late";
    let (_dir, fetcher, snap, _stats, _polled, budget) = streamed(name, 4 << 20);
    let keep = crate::pause::arm_in("fetch.stream_keep", name);
    let scan = Arc::new(ScanBuf::default());
    // A descent's stream keeps what it decodes for its transaction...
    assert!(fetcher.stream_descent(&snap, PageNo(40), PageNo(1), &scan));
    keep.wait_reached(Duration::from_secs(20)).unwrap();
    // ...which ends while it is about to keep a page.
    scan.clear();
    keep.release();
    stopped(&fetcher, &scan);
    // Nothing kept after the end: no page waits for a read that will not
    // come, holding the stream's lease and its share of the read budget.
    assert_eq!((scan.ahead_len(), scan.leased()), (0, 0));
    assert!(
        budget.try_hold(budget.bytes()).is_some(),
        "the budget is back"
    );
}

#[test]
fn a_descents_page_that_is_the_streams_first_goes_to_the_cache_too() {
    let (_dir, fetcher, snap, stats, _polled, budget) = streamed("test://stream-first", 4 << 20);
    let scan = Arc::new(ScanBuf::default());
    // The descent reads page 2, the first page after the root: the
    // stream's first frame is the descent's page.
    assert!(fetcher.stream_descent(&snap, PageNo(2), PageNo(1), &scan));
    let (page, _) = fetcher.read(&snap, PageNo(2), 1, &scan).unwrap().unwrap();
    assert!(page[..] == noise(2)[..]);
    assert_eq!(reads(&stats), 1);
    // A lookup: the transaction ends there.
    scan.clear();
    stopped(&fetcher, &scan);
    // As any descent's page: the next descent finds it in memory.
    assert!(
        fetcher.cached(&snap, PageNo(2)).is_some(),
        "the descent's page went with the transaction"
    );
    assert_eq!(scan.leased(), 0);
    assert!(budget.try_hold(budget.bytes()).is_some());
}
