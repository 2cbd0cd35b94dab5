//! Two processes sharing one store file through `Local`: what a reader that
//! opens on a newer restore plan (a new snapshot) finds of the pages another
//! process stored.

use super::*;
use crate::ltx::{FileName, Header, IndexEntry, LtxBuilder, PageIndex, PageSize};
use crate::storage::{FileId, Level};

const PS: u32 = 4096;

/// A file of `level` for TXIDs `min..=max` written at `ts`, holding `pages`
/// of a 4-page database.
fn file(level: Level, min: u64, max: u64, ts: i64, pages: &[u32]) -> Loaded {
    let ps = PageSize::new(PS).unwrap();
    let bytes = LtxBuilder::new(ps, min, max, 4).timestamp_ms(ts).build();
    let header = Header::decode(&bytes).unwrap();
    let index = PageIndex {
        entries: pages
            .iter()
            .map(|&p| IndexEntry {
                pgno: PageNo(p),
                offset: 100 + u64::from(p) * 10,
                size: 10,
            })
            .collect(),
    };
    let id = FileId {
        level,
        name: FileName {
            min: Txid(min),
            max: Txid(max),
        },
    };
    Loaded {
        file: Arc::new(super::super::FileRef::new(id, bytes.len() as u64, header)),
        index: index.into(),
        pages: Vec::new(),
        verified: true,
        kept: false,
    }
}

fn l0(txid: u64, ts: i64) -> Loaded {
    file(Level::L0, txid, txid, ts, &[1])
}

fn build(files: &[&Loaded]) -> Snapshot {
    Snapshot::build(files.iter().map(|l| (&l.file, &l.index))).unwrap()
}

/// A process's `Local` on the store file at `path`, attached to `snap`.
fn process(path: &std::path::Path, snap: &Snapshot) -> Local {
    let local = Local::default();
    let ps = PageSize::new(PS).unwrap();
    let store =
        Arc::new(DiskStore::open(path, "file:///r", ps, Capacity::Unbounded, false).unwrap());
    local.attach(&store, snap);
    let _ = local.store.set(store);
    local
}

fn read(local: &Local, snap: &Snapshot, p: u32) -> Option<u8> {
    let cache = PageCache::new(1 << 20);
    let loc = snap.frame(PageNo(p))?;
    local
        .read(&cache, snap, PageNo(p), &loc)
        .map(|page| page[0])
}

/// Process A opens on snapshot 1..1, stores page 3 (33s), and follows
/// `followed` (level-0 files that change page 1).
fn process_a(path: &std::path::Path, followed: &[Loaded]) -> Local {
    let snap1 = file(Level::SNAPSHOT, 1, 1, 1_000, &[1, 2, 3, 4]);
    let s1 = build(&[&snap1]);
    let a = process(path, &s1);
    let page3 = Page::from(vec![33u8; PS as usize].as_slice());
    a.keep(&snap1.file, s1.txid, &[(PageNo(3), page3)]);
    a.follow_loaded(followed);
    a
}

fn store_path() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.pages");
    (dir, path)
}

/// A follows TXIDs 2..4. Litestream then writes a snapshot at TXID 3 and
/// TXID 5; process B opens on that new plan. B's pages live in the new
/// snapshot (unknown to the store) and in TXID 5 (not followed yet): only
/// TXID 4, whose pages TXID 5 superseded, is a file both know.
fn b_after_a(path: &std::path::Path, b_ts4: i64) -> (Local, Snapshot) {
    process_a(path, &[l0(2, 2_000), l0(3, 3_000), l0(4, 4_000)]);
    let snap2 = file(Level::SNAPSHOT, 1, 3, 3_500, &[1, 2, 3, 4]);
    let (ts4, ts5) = (l0(4, b_ts4), l0(5, 5_000));
    let s2 = build(&[&snap2, &ts4, &ts5]);
    (process(path, &s2), s2)
}

#[test]
fn a_reader_on_a_new_snapshot_finds_what_another_process_stored() {
    let (_dir, path) = store_path();
    let (b, s2) = b_after_a(&path, 4_000);
    assert_eq!(read(&b, &s2, 3), Some(33));
    // Page 1 changed after the store's horizon (TXID 5): not served.
    assert_eq!(read(&b, &s2, 1), None);
}

#[test]
fn a_reader_of_another_lineage_finds_nothing() {
    // TXID 4 was written at another time: the replica was reset.
    let (_dir, path) = store_path();
    let (b, s2) = b_after_a(&path, 4_001);
    assert_eq!(read(&b, &s2, 3), None);
}

/// B opens on a snapshot at TXID 5 and TXID 6, all newer than what A has
/// followed (TXID 4).
fn b_ahead(path: &std::path::Path) -> (Local, Snapshot) {
    let snap2 = file(Level::SNAPSHOT, 1, 5, 5_500, &[1, 2, 3, 4]);
    let t6 = l0(6, 6_000);
    let s2 = build(&[&snap2, &t6]);
    (process(path, &s2), s2)
}

#[test]
fn a_reader_ahead_of_a_live_follower_waits_for_it_instead_of_starting_over() {
    let (_dir, path) = store_path();
    let a = process_a(&path, &[l0(2, 2_000), l0(3, 3_000), l0(4, 4_000)]);
    let (b, s2) = b_ahead(&path);
    assert_eq!(read(&b, &s2, 3), None, "nothing proves B's lineage yet");
    // A follows on; B asks again (its retry delay cut short here).
    a.follow_loaded(&[l0(5, 5_000), l0(6, 6_000)]);
    b.known.lock().unwrap().retry_at_ms = 0;
    assert_eq!(read(&b, &s2, 3), Some(33));
    assert_ne!(a.get().unwrap().lineage(), 0);
    assert_eq!(a.get().unwrap().lineage(), b.get().unwrap().lineage());
}

#[test]
fn a_reader_ahead_of_an_abandoned_store_starts_a_new_lineage() {
    let (_dir, path) = store_path();
    let a = process_a(&path, &[l0(2, 2_000)]);
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (b, s2) = b_ahead(&path);
    let lineage = b.get().unwrap().lineage();
    assert_ne!(lineage, 0, "B serves at once");
    assert_ne!(lineage, a.get().unwrap().lineage());
    assert_eq!(read(&b, &s2, 3), None, "and A's pages are gone");
}

#[test]
fn known_files_stay_bounded_while_following_many_files() {
    let (_dir, path) = store_path();
    let snap1 = file(Level::SNAPSHOT, 1, 1, 1_000, &[1, 2, 3, 4]);
    let s1 = build(&[&snap1]);
    let local = process(&path, &s1);
    let store = Arc::clone(local.get().unwrap());
    let bound = 2 * KNOWN_RECENT as usize + s1.file_count();
    // Ten thousand followed commits, the current state pruning after each
    // (as the poller does after it publishes).
    for t in 2..10_000u64 {
        let id = identity(0, Txid(0), Txid(t), 1_000 + t as i64, 0);
        local.followed(&store, id);
        local.retain_known(&s1);
        assert!(
            local.known_len() <= bound,
            "{} known files",
            local.known_len()
        );
    }
    // What the current state references stays known, and so do the newest.
    let known = local.known.lock().unwrap();
    assert!(
        identities(&s1)
            .iter()
            .all(|id| known.files.contains_key(id))
    );
    let newest = identity(0, Txid(0), Txid(9_999), 10_999, 0);
    assert!(known.files.contains_key(&newest));
}

/// A scan of a hydrated copy reads the pages after the first in one run and
/// serves each once, counted once; its pages stay out of the memory cache,
/// where a page read on its own goes.
#[test]
fn a_scan_of_a_copy_reads_runs_and_keeps_them_out_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy");
    let snap1 = file(Level::SNAPSHOT, 1, 1, 1_000, &[1, 2, 3, 4]);
    let s1 = build(&[&snap1]);
    let a = process(&path, &s1);
    let pages: Vec<(PageNo, Page)> = (1..=4u32)
        .map(|p| {
            (
                PageNo(p),
                Page::from(vec![p as u8 * 11; PS as usize].as_slice()),
            )
        })
        .collect();
    a.keep(&snap1.file, s1.txid, &pages);
    let cache = PageCache::new(1 << 20);
    for p in 1..=4u32 {
        let loc = s1.frame(PageNo(p)).unwrap();
        let got = a.read(&cache, &s1, PageNo(p), &loc).map(|pg| pg[0]);
        assert_eq!(got, Some(p as u8 * 11), "page {p}");
    }
    let stats = a.render();
    assert!(stats.contains("store_hits=4 store_misses=0"), "{stats}");
    let cached = |p: u32| cache.get(&s1.frame(PageNo(p)).unwrap().key()).is_some();
    assert!(cached(1), "read on its own");
    assert!(!cached(2) && !cached(3) && !cached(4), "a scan's pages");
}

/// The replica is reset: its TXIDs start again, so the new lineage's files
/// carry numbers the stored lineage also has. A's poller follows TXID 4 of
/// the new lineage before anything attached the new state, while another
/// process holds the store's lock: the follow is skipped. That file is not
/// proven to be of the stored lineage, so its pages must not come from the
/// store, whose page 3 is the old lineage's. (Before: the skipped follow
/// still made the file known, and page 3 of the new state read 33, the
/// old lineage's bytes: what the churn test saw as reads that mixed two
/// lineages.)
#[test]
fn a_file_whose_follow_was_skipped_is_not_read_from_the_store() {
    let (_dir, path) = store_path();
    let a = process_a(&path, &[l0(2, 2_000), l0(3, 3_000), l0(4, 4_000)]);
    let old = build(&[
        &file(Level::SNAPSHOT, 1, 1, 1_000, &[1, 2, 3, 4]),
        &l0(2, 2_000),
        &l0(3, 3_000),
        &l0(4, 4_000),
    ]);
    assert_eq!(read(&a, &old, 3), Some(33), "the old lineage's page 3");

    let (new_snap, new4) = (
        file(Level::SNAPSHOT, 1, 3, 9_000, &[1, 2, 3, 4]),
        file(Level::L0, 4, 4, 9_500, &[3]),
    );
    let new = build(&[&new_snap, &new4]);
    let store = a.get().unwrap();
    store.bound_lock_wait(std::time::Duration::from_millis(20));
    let other = std::fs::OpenOptions::new().read(true).open(&path).unwrap();
    other.try_lock().expect("the other holder takes the lock");
    a.follow_loaded(std::slice::from_ref(&new4));
    other.unlock().unwrap();
    assert_eq!(read(&a, &new, 3), None, "page 3 of the new lineage");
}
