//! The warm-up's reads over a storage that streams bodies in chunks, as
//! the object stores do, and counts requests and bytes: how many reads a
//! wave costs within its byte bound, a demand read inside a long read, a
//! read cut or cancelled half-way, a read that steps aside for a scan.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::chunked_tests::{Chunked, Release};
use super::tests::{fixture_of, noise};
use super::warm::Warmed;
use super::*;

/// Pages of the snapshot: frames of ~4.1 KiB (noise does not compress),
/// about 8 MiB in all.
const PAGES: u32 = 2000;
/// Bytes of one chunk of a body.
const CHUNK: usize = 16 * 1024;
const MIB: u64 = 1024 * 1024;

/// A fetcher over a snapshot of [`PAGES`] noise pages on a [`Chunked`]
/// storage named `name`, streaming [`CHUNK`]s.
fn fixture(name: &str) -> (tempfile::TempDir, Arc<Fetcher>, Arc<Snapshot>, Arc<Chunked>) {
    let mut storage = None;
    let (dir, fetcher, snap, _stats) = fixture_of(
        64 << 20,
        PAGES,
        |inner| {
            let chunked = Arc::new(Chunked::new(inner, name, CHUNK));
            storage = Some(Arc::clone(&chunked));
            chunked
        },
        noise,
    );
    (dir, fetcher, Arc::new(snap), storage.unwrap())
}

/// Runs [`Fetcher::warm`] on the runtime's blocking pool, as the warm-up
/// does, reading at most `read_max` bytes a wave; stops when `alive` goes
/// false.
fn warm(
    f: &Arc<Fetcher>,
    snap: &Arc<Snapshot>,
    pages: &[u32],
    read_max: u64,
    alive: Arc<AtomicBool>,
) -> Warmed {
    let process = crate::runtime::process();
    let rt = process.runtime().unwrap();
    let (f, snap) = (Arc::clone(f), Arc::clone(snap));
    let pgnos: Vec<PageNo> = pages.iter().copied().map(PageNo).collect();
    rt.block_on(
        rt.spawn_blocking(move || {
            f.warm(&snap, &pgnos, read_max, &|| alive.load(Ordering::SeqCst))
        }),
    )
    .unwrap()
}

fn alive() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(true))
}

/// Starts a warm-up of `pages` (at most 64 MiB a wave) on another thread
/// and returns once its read stopped after its first chunk: the thread,
/// and the guard that lets the read go on.
fn warm_stalled(
    f: &Arc<Fetcher>,
    snap: &Arc<Snapshot>,
    storage: &Chunked,
    pages: &'static [u32],
    alive: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<Warmed>, Release) {
    let (stalled, release) = storage.stall(64 * 1024);
    let warming = {
        let (f, snap) = (Arc::clone(f), Arc::clone(snap));
        std::thread::spawn(move || warm(&f, &snap, pages, 64 * MIB, alive))
    };
    stalled
        .recv_timeout(Duration::from_secs(20))
        .expect("the warm-up's read started");
    (warming, release)
}

fn check(got: &Warmed, pages: &[u32]) {
    let mut have: Vec<u32> = got.pages.iter().map(|(p, _)| p.0).collect();
    have.sort_unstable();
    assert_eq!(have, pages);
    for (p, page) in &got.pages {
        assert!(page[..] == noise(p.0)[..], "page {}", p.0);
    }
}

/// Pages 100 and 110 lie ~40 KiB apart, then gaps of ~1.2, ~2.4 and
/// ~3.7 MiB.
const WAVE: [u32; 5] = [100, 110, 400, 1000, 1900];

#[test]
fn a_wave_spread_over_a_file_is_as_few_reads_as_its_byte_bound_allows() {
    // (bound, reads): 0 and a tiny bound keep the fixed merging (frames
    // up to 512 KiB apart: 100 and 110 together); 2 MiB also spans the
    // 1.2 MiB gap; 64 MiB spans the file.
    for (bound, reads) in [(0, 4), (1, 4), (2 * MIB, 3), (64 * MIB, 1)] {
        let (_dir, f, snap, storage) = fixture(&format!("test://warm-bound-{bound}"));
        let got = warm(&f, &snap, &WAVE, bound, alive());
        check(&got, &WAVE);
        let sent = storage.requests.load(Ordering::SeqCst);
        let asked = storage.asked.load(Ordering::SeqCst);
        assert_eq!((got.requests, sent), (reads, reads), "bound {bound}");
        assert_eq!(got.failed, 0);
        assert_eq!(got.fetched, WAVE.len() as u64);
        if bound >= MIB {
            assert!(asked <= bound, "bound {bound}: {asked} bytes asked");
            assert!(got.read_bytes <= bound, "bound {bound}: {}", got.read_bytes);
        }
        assert_eq!(f.in_flight(), 0, "every claim landed");
        // In memory now: a second wave costs nothing.
        let again = warm(&f, &snap, &WAVE, bound, alive());
        assert_eq!((again.pages.len(), again.requests), (WAVE.len(), 0));
    }
}

#[test]
fn a_demand_read_of_a_frame_a_running_read_has_not_reached_is_served_at_once() {
    let (_dir, f, snap, storage) = fixture("test://warm-takeover");
    // Pages 100 and 200, ~410 KiB apart: one read (by any bound).
    let (warming, release) = warm_stalled(&f, &snap, &storage, &[100, 200], alive());
    // The read stopped after its first chunk; page 200 is far from it.
    let scan = ScanBuf::default();
    let read = f.read(&snap, PageNo(200), 1, &scan);
    let (page, missed) = read
        .expect("the demand read was served without waiting for the warm-up's read")
        .unwrap();
    assert!(missed, "fetched by the demand read itself");
    assert!(page[..] == noise(200)[..]);
    assert_eq!(storage.requests.load(Ordering::SeqCst), 2);
    drop(release);
    let got = warming.join().unwrap();
    check(&got, &[100, 200]);
    assert_eq!(
        (got.requests, got.fetched),
        (1, 1),
        "the read skipped the frame taken over"
    );
    assert_eq!(f.in_flight(), 0, "every claim landed");
}

#[test]
fn a_read_cut_half_way_goes_on_from_where_it_was_cut() {
    let (_dir, f, snap, storage) = fixture("test://warm-cut");
    // One read of the whole wave, cut after its 10th chunk (160 KiB):
    // pages 100 and 110 came; a second read brings the rest.
    storage.cut_after.store(10, Ordering::SeqCst);
    let got = warm(&f, &snap, &WAVE, 64 * MIB, alive());
    check(&got, &WAVE);
    assert_eq!((got.requests, got.failed), (2, 0));
    assert_eq!(storage.requests.load(Ordering::SeqCst), 2);
    assert_eq!(f.in_flight(), 0, "every claim landed");
}

#[test]
fn a_read_that_fails_before_its_first_frame_lands_every_claim_failed() {
    let (_dir, f, snap, storage) = fixture("test://warm-fail");
    storage.cut_after.store(0, Ordering::SeqCst);
    let got = warm(&f, &snap, &WAVE, 64 * MIB, alive());
    check(&got, &[]);
    assert_eq!((got.requests, got.failed), (1, 1));
    assert_eq!(f.in_flight(), 0, "every claim landed");
    // A reader of a page it did not bring fetches it itself.
    let (page, missed) = f
        .read(&snap, PageNo(1000), 1, &ScanBuf::default())
        .unwrap()
        .unwrap();
    assert!(missed && page[..] == noise(1000)[..]);
}

#[test]
fn a_read_stops_when_the_replica_goes_away() {
    let (_dir, f, snap, storage) = fixture("test://warm-cancel");
    let flag = alive();
    let (warming, release) = warm_stalled(&f, &snap, &storage, &WAVE, Arc::clone(&flag));
    flag.store(false, Ordering::SeqCst);
    drop(release);
    let got = warming.join().unwrap();
    assert_eq!((got.requests, got.failed), (1, 1));
    // It stopped at the next chunk: two of a ~7.5 MiB read.
    assert!(got.read_bytes <= 2 * CHUNK as u64, "{}", got.read_bytes);
    assert_eq!(f.in_flight(), 0, "every claim landed");
}

#[test]
fn a_long_read_holds_only_its_frames_of_the_read_budget() {
    let (_dir, f, snap, storage) = fixture("test://warm-budget");
    // A read budget of 1 MiB, and one read of ~7.5 MiB.
    let budget = Arc::new(InFlight::new(MIB));
    let f = Arc::new(
        Arc::into_inner(f)
            .unwrap()
            .with_in_flight(Arc::clone(&budget)),
    );
    let (warming, release) = warm_stalled(&f, &snap, &storage, &WAVE, alive());
    // Mid-read, it holds its five frames and a chunk's slack (~280 KiB):
    // 700 KiB of the budget are free.
    assert!(
        budget.try_hold(700 * 1024).is_some(),
        "the read holds more than its frames"
    );
    drop(release);
    let got = warming.join().unwrap();
    check(&got, &WAVE);
    assert_eq!(got.requests, 1);
    assert!(got.read_bytes > 7 * MIB, "{}", got.read_bytes);
}

#[test]
fn a_read_steps_aside_for_a_scan_stream_and_goes_on_after_it() {
    let (_dir, f, snap, storage) = fixture("test://warm-aside");
    // One read of the whole wave; its body stops after the first chunk.
    let aside = crate::pause::arm_in("fetch.sparse_aside", "test://warm-aside");
    let (warming, release) = warm_stalled(&f, &snap, &storage, &WAVE, alive());
    // A scan starts its stream while the read is on its way.
    let scan = f.pretend_stream();
    drop(release);
    aside
        .wait_reached(Duration::from_secs(20))
        .expect("the read stepped aside for the scan's stream");
    // Between two frames, after its first two (pages 100 and 110, the
    // next ~1.2 MiB away): its body dropped, no claim of it left started.
    assert_eq!(storage.requests.load(Ordering::SeqCst), 1);
    assert_eq!(f.in_flight(), 3, "only the three frames still queued");
    aside.release();
    // It goes on once the stream ended, from the frame it had not brought.
    drop(scan);
    let got = warming.join().unwrap();
    check(&got, &WAVE);
    assert_eq!((got.requests, got.failed, got.fetched), (2, 0, 5));
    assert!(
        got.read_bytes < 8 * MIB,
        "the gap before page 400 was read once: {}",
        got.read_bytes
    );
    assert_eq!(f.in_flight(), 0, "every claim landed");
}

#[test]
fn a_read_stepped_aside_for_a_scan_stream_holds_none_of_the_read_budget() {
    let name = "test://warm-aside-budget";
    let (_dir, f, snap, storage) = fixture(name);
    let budget = Arc::new(InFlight::new(MIB));
    let f = Arc::new(
        Arc::into_inner(f)
            .unwrap()
            .with_in_flight(Arc::clone(&budget)),
    );
    let aside = crate::pause::arm_in("fetch.sparse_aside", name);
    let (warming, release) = warm_stalled(&f, &snap, &storage, &WAVE, alive());
    let scan = f.pretend_stream();
    drop(release);
    aside
        .wait_reached(Duration::from_secs(20))
        .expect("the read stepped aside for the scan's stream");
    // While it waits for the stream to end it reads nothing: a demand read
    // (the scan's own, for a page outside its stream) must not wait for
    // bytes the warm-up holds idle (no hold-and-wait, fetch/inflight.rs).
    let free = budget.try_hold(budget.bytes());
    assert!(
        free.is_some(),
        "the warm-up's read holds its share of the read budget while it waits for a scan stream"
    );
    drop(free);
    aside.release();
    drop(scan);
    let got = warming.join().unwrap();
    check(&got, &WAVE);
    assert_eq!((got.requests, got.failed), (2, 0));
    assert_eq!(f.in_flight(), 0, "every claim landed");
}
