//! The warm-up's reads over a storage that streams bodies in chunks, as
//! the object stores do, and counts requests and bytes: how many reads a
//! wave costs within its byte bound, a demand read inside a long read, a
//! read cut or cancelled half-way, a read that steps aside for a scan.

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::tests::noise;
use super::warm::Warmed;
use super::*;
use crate::cache::PageCache;
use crate::ltx::{FileName, LtxBuilder, PageIndex, PageSize, Txid, decode_file};
use crate::replica::FileRef;
use crate::storage::{Chunks, FileId, FileInfo, FileStorage, Level};

/// Pages of the snapshot: frames of ~4.1 KiB (noise does not compress),
/// about 8 MiB in all.
const PAGES: u32 = 2000;
/// Bytes of one chunk of a body.
const CHUNK: usize = 16 * 1024;
const MIB: u64 = 1024 * 1024;

/// A folder's storage as an object store answers: bodies streamed in
/// [`CHUNK`]s. Counts requests and the bytes they asked for; a body longer
/// than [`Chunked::stall_over`] bytes stops after its first chunk until
/// released (reported on `stalled`); the next body fails after
/// `cut_after` chunks.
struct Chunked {
    inner: FileStorage,
    describe: String,
    requests: AtomicU64,
    asked: AtomicU64,
    stall_over: AtomicU64,
    stalled: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    go: Arc<tokio::sync::Semaphore>,
    cut_after: AtomicU64,
}

impl std::fmt::Debug for Chunked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunked").finish_non_exhaustive()
    }
}

impl Storage for Chunked {
    fn describe(&self) -> &str {
        &self.describe
    }

    fn list(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> BoxFuture<'_, std::result::Result<Vec<FileInfo>, StorageError>> {
        self.inner.list(level, after)
    }

    fn read(
        &self,
        file: FileId,
        range: Range<u64>,
    ) -> BoxFuture<'_, std::result::Result<Vec<u8>, StorageError>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.asked
            .fetch_add(range.end - range.start, Ordering::SeqCst);
        self.inner.read(file, range)
    }

    fn streams_bodies(&self) -> bool {
        true
    }

    fn read_version_chunks(
        &self,
        file: FileId,
        version: u64,
        range: Range<u64>,
    ) -> BoxFuture<'_, std::result::Result<Chunks<'_>, StorageError>> {
        Box::pin(async move {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let len = range.end - range.start;
            self.asked.fetch_add(len, Ordering::SeqCst);
            let body = self.inner.read_version(file, version, range).await?;
            let chunks: Arc<Vec<bytes::Bytes>> = Arc::new(
                body.chunks(CHUNK)
                    .map(bytes::Bytes::copy_from_slice)
                    .collect(),
            );
            let stall = len > self.stall_over.load(Ordering::SeqCst);
            // One body is cut.
            let cut = self.cut_after.swap(u64::MAX, Ordering::SeqCst);
            let stream = futures_util::stream::unfold(0usize, move |i| {
                let chunks = Arc::clone(&chunks);
                async move {
                    if stall && i == 1 {
                        let tx = self.stalled.lock().unwrap().clone();
                        if let Some(tx) = tx {
                            let _ = tx.send(());
                        }
                        if let Ok(p) = self.go.acquire().await {
                            p.forget();
                        }
                    }
                    if i as u64 == cut {
                        let e = StorageError::new(
                            "test",
                            crate::storage::StorageErrorKind::Transient,
                            "cut",
                        );
                        return Some((Err(e), usize::MAX));
                    }
                    let chunk = chunks.get(i)?.clone();
                    Some((Ok(chunk), i + 1))
                }
            });
            let chunks: Chunks<'_> = Box::pin(stream);
            Ok(chunks)
        })
    }
}

/// A fetcher over a snapshot of [`PAGES`] noise pages on a [`Chunked`]
/// storage named `name`.
fn fixture(name: &str) -> (tempfile::TempDir, Arc<Fetcher>, Arc<Snapshot>, Arc<Chunked>) {
    let dir = tempfile::tempdir().unwrap();
    let ps = PageSize::new(4096).unwrap();
    let mut b = LtxBuilder::new(ps, 1, 1, PAGES);
    for p in 1..=PAGES {
        b = b.page(p, &noise(p));
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
    let snap = Arc::new(Snapshot::build([(&file, &index)]).unwrap());
    let storage = Arc::new(Chunked {
        inner: FileStorage::new(dir.path().to_path_buf()),
        describe: name.to_string(),
        requests: AtomicU64::new(0),
        asked: AtomicU64::new(0),
        stall_over: AtomicU64::new(u64::MAX),
        stalled: Mutex::new(None),
        go: Arc::new(tokio::sync::Semaphore::new(0)),
        cut_after: AtomicU64::new(u64::MAX),
    });
    let fetcher = Arc::new(Fetcher::new(
        Arc::clone(&storage) as Arc<dyn Storage>,
        Arc::new(PageCache::new(64 << 20)),
        Arc::new(Stats::default()),
        Arc::default(),
        Duration::from_secs(10),
    ));
    (dir, fetcher, snap, storage)
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

/// Makes a body longer than `over` bytes stop after its first chunk;
/// returns where its stop is reported, and a guard that lets it go on.
fn stall(storage: &Arc<Chunked>, over: u64) -> (std::sync::mpsc::Receiver<()>, Release) {
    let (tx, rx) = std::sync::mpsc::channel();
    *storage.stalled.lock().unwrap() = Some(tx);
    storage.stall_over.store(over, Ordering::SeqCst);
    (rx, Release(Arc::clone(&storage.go)))
}

/// Lets stalled bodies go on when dropped (on every path of a test).
struct Release(Arc<tokio::sync::Semaphore>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.add_permits(1 << 20);
    }
}

#[test]
fn a_demand_read_of_a_frame_a_running_read_has_not_reached_is_served_at_once() {
    let (_dir, f, snap, storage) = fixture("test://warm-takeover");
    // Pages 100 and 200, ~410 KiB apart: one read (by any bound).
    let (stalled, release) = stall(&storage, 64 * 1024);
    let warming = {
        let (f, snap) = (Arc::clone(&f), Arc::clone(&snap));
        std::thread::spawn(move || warm(&f, &snap, &[100, 200], 64 * MIB, alive()))
    };
    stalled
        .recv_timeout(Duration::from_secs(20))
        .expect("the warm-up's read started");
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
    let (stalled, release) = stall(&storage, 64 * 1024);
    let flag = alive();
    let warming = {
        let (f, snap, flag) = (Arc::clone(&f), Arc::clone(&snap), Arc::clone(&flag));
        std::thread::spawn(move || warm(&f, &snap, &WAVE, 64 * MIB, flag))
    };
    stalled
        .recv_timeout(Duration::from_secs(20))
        .expect("the warm-up's read started");
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
    let (stalled, release) = stall(&storage, 64 * 1024);
    let warming = {
        let (f, snap) = (Arc::clone(&f), Arc::clone(&snap));
        std::thread::spawn(move || warm(&f, &snap, &WAVE, 64 * MIB, alive()))
    };
    stalled
        .recv_timeout(Duration::from_secs(20))
        .expect("the warm-up's read started");
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
    let (stalled, release) = stall(&storage, 64 * 1024);
    let aside = crate::pause::arm_in("fetch.sparse_aside", "test://warm-aside");
    let warming = {
        let (f, snap) = (Arc::clone(&f), Arc::clone(&snap));
        std::thread::spawn(move || warm(&f, &snap, &WAVE, 64 * MIB, alive()))
    };
    stalled
        .recv_timeout(Duration::from_secs(20))
        .expect("the warm-up's read started");
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
    let (stalled, release) = stall(&storage, 64 * 1024);
    let aside = crate::pause::arm_in("fetch.sparse_aside", name);
    let warming = {
        let (f, snap) = (Arc::clone(&f), Arc::clone(&snap));
        std::thread::spawn(move || warm(&f, &snap, &WAVE, 64 * MIB, alive()))
    };
    stalled
        .recv_timeout(Duration::from_secs(20))
        .expect("the warm-up's read started");
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
