//! A torn write is a miss, never data: the write order `write` documents,
//! forced; damage as a crash or a power loss leaves it; the sweep; the
//! format version.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::time::Duration;

use super::disk::DiskStore;
use super::layout::{FileHeader, Geometry, META_LEN};
use super::{Attached, Capacity, Span, StateFacts, identity, os};
use crate::ltx::{PageNo, PageSize, Txid};
use crate::pause;

const PS: u32 = 4096;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn path(&self) -> PathBuf {
        self.0.path().join("r.pages")
    }
    fn open(&self, cap: Capacity) -> DiskStore {
        let ps = PageSize::new(PS).unwrap();
        DiskStore::open(&self.path(), "file:///replica", ps, cap, false).unwrap()
    }
    /// Writes `bytes` at `at` as a crash, a power loss or a bad disk would.
    fn damage(&self, at: u64, bytes: &[u8]) {
        let f = OpenOptions::new().write(true).open(self.path()).unwrap();
        os::write_at(&f, bytes, at).unwrap();
    }
}

fn page(tag: u8) -> Vec<u8> {
    vec![tag; PS as usize]
}

fn sp(lo: u64, hi: u64) -> Span {
    Span::new(Txid(lo), Txid(hi))
}

fn attach(s: &DiskStore) -> Attached {
    let cps = [identity(0, Txid(10), Txid(10), 1, 77)];
    let since = |_p: PageNo| Some(Txid(5));
    s.attach(&StateFacts {
        txid: Txid(10),
        page_count: 100,
        checkpoints: &cps,
        since: &since,
    })
}

fn get(s: &DiskStore, p: u32) -> Option<u8> {
    s.get(s.lineage(), PageNo(p), sp(5, 10)).map(|pg| pg[0])
}

fn stat(s: &DiskStore, name: &str) -> u64 {
    s.render()
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn filled(d: &Dir, cap: Capacity, pages: u32) -> DiskStore {
    let s = d.open(cap);
    assert!(matches!(attach(&s), Attached::Serving(_)));
    let bytes: Vec<Vec<u8>> = (1..=pages).map(|p| page(p as u8)).collect();
    let batch: Vec<(PageNo, Span, &[u8])> = (1..=pages)
        .map(|p| (PageNo(p), sp(5, 10), &bytes[p as usize - 1][..]))
        .collect();
    s.put(s.lineage(), &batch);
    s
}

#[test]
fn pages_are_page_aligned_where_a_database_file_holds_them() {
    let d = Dir::new();
    let s = filled(&d, Capacity::Unbounded, 3);
    let g = Geometry::new(PS);
    let f = std::fs::File::open(d.path()).unwrap();
    for p in 1..=3u64 {
        let mut buf = vec![0u8; PS as usize];
        let at = g.page_at(p - 1).unwrap();
        assert_eq!(at, 128 * 1024 + (p - 1) * u64::from(PS));
        os::read_at(&f, &mut buf, at).unwrap();
        assert_eq!(buf, page(p as u8));
    }
    assert_eq!(get(&s, 2), Some(2));
}

#[test]
fn a_page_changed_without_its_metadata_is_a_miss() {
    let d = Dir::new();
    let s = filled(&d, Capacity::Unbounded, 2);
    let g = Geometry::new(PS);
    // A rewrite of page 1 whose metadata never came (a power loss kept the
    // page write and lost the others), and half a page (torn).
    d.damage(g.page_at(0).unwrap(), &page(9));
    d.damage(g.page_at(1).unwrap() + 2048, &page(9)[..2048]);
    assert_eq!(get(&s, 1), None);
    assert_eq!(get(&s, 2), None);
    assert_eq!(stat(&s, "store_bad"), 2);
    let run = s.get_run(s.lineage(), PageNo(1), &[sp(5, 10), sp(5, 10)]);
    assert_eq!(run, vec![None, None]);
}

#[test]
fn torn_or_zeroed_metadata_is_a_miss_and_not_held() {
    let d = Dir::new();
    let s = filled(&d, Capacity::Unbounded, 3);
    let g = Geometry::new(PS);
    // Page 1: the first half of page 3's metadata over its own (torn).
    let f = std::fs::File::open(d.path()).unwrap();
    let mut other = [0u8; META_LEN];
    os::read_at(&f, &mut other, g.meta_at(2).unwrap()).unwrap();
    d.damage(g.meta_at(0).unwrap(), &other[..32]);
    // Page 2: zeroed, as step (1) of a rewrite leaves it.
    d.damage(g.meta_at(1).unwrap(), &[0u8; META_LEN]);
    for p in [1, 2] {
        assert_eq!(get(&s, p), None, "page {p}");
        assert!(!s.has(s.lineage(), PageNo(p), sp(5, 10)), "page {p}");
    }
    assert_eq!(get(&s, 3), Some(3));
}

#[test]
fn a_reader_during_a_rewrite_finds_no_page_until_its_metadata_is_written() {
    let d = Dir::new();
    let bytes = Geometry::new(PS).bytes_for(16);
    let s = std::sync::Arc::new(filled(&d, Capacity::Bytes(bytes), 1));
    assert_eq!(get(&s, 1), Some(1));
    // Page 17 shares page 1's slot: park its writer after the page write,
    // before the metadata.
    let gate = pause::arm_in("store.pages_written", &d.path().to_string_lossy());
    let writer = {
        let s = std::sync::Arc::clone(&s);
        std::thread::spawn(move || s.put(s.lineage(), &[(PageNo(17), sp(5, 10), &page(17))]))
    };
    gate.wait_reached(Duration::from_secs(10)).unwrap();
    // Another process reads the slot now: the page bytes are page 17's, the
    // metadata is zero.
    let other = d.open(Capacity::Bytes(bytes));
    assert_eq!(
        attach(&other),
        Attached::Failed,
        "the writer holds the lock"
    );
    assert_eq!(get(&s, 1), None, "page 1's metadata was zeroed first");
    assert_eq!(get(&s, 17), None, "page 17's metadata is not written yet");
    assert!(
        !s.has(s.lineage(), PageNo(1), sp(5, 10)) && !s.has(s.lineage(), PageNo(17), sp(5, 10))
    );
    gate.release();
    writer.join().unwrap();
    assert_eq!(get(&s, 17), Some(17));
    assert_eq!(
        stat(&s, "store_bad"),
        0,
        "never a page that failed its check"
    );
}

#[test]
fn a_store_written_before_a_reboot_is_checked_before_it_is_trusted() {
    let d = Dir::new();
    let s = filled(&d, Capacity::Unbounded, 2);
    // The machine rebooted since (another boot id in the header), and the
    // power loss kept page 2's metadata but not its page.
    s.with_header("test", |h| {
        h.boot = h.boot.wrapping_add(1).max(1);
        true
    });
    drop(s);
    d.damage(Geometry::new(PS).page_at(1).unwrap(), &page(0));
    let again = d.open(Capacity::Unbounded);
    assert!(matches!(attach(&again), Attached::Serving(_)));
    assert_eq!(get(&again, 1), Some(1), "a whole page is served");
    assert_eq!(get(&again, 2), None, "a lost page is not");
    assert_eq!(stat(&again, "store_bad"), 1);
    // The next fill round's sweep drops it, so that it is fetched again.
    assert_eq!(
        again.sweep_run(again.lineage(), PageNo(1), &[sp(5, 10), sp(5, 10)]),
        vec![true, false]
    );
    assert!(!again.has(again.lineage(), PageNo(2), sp(5, 10)));
}

#[test]
fn a_page_that_failed_a_read_is_replaced_by_the_next_write_of_it() {
    let d = Dir::new();
    let bytes = Geometry::new(PS).bytes_for(16);
    let s = filled(&d, Capacity::Bytes(bytes), 2);
    d.damage(Geometry::new(PS).page_at(0).unwrap() + 9, &[0x11]);
    assert_eq!(get(&s, 1), None);
    // The read went to storage and keeps the same version: written again,
    // though the metadata says it is held.
    s.put(s.lineage(), &[(PageNo(1), sp(5, 10), &page(1))]);
    assert_eq!(get(&s, 1), Some(1));
    // Pages found bad by a run too.
    d.damage(Geometry::new(PS).page_at(1).unwrap() + 9, &[0x11]);
    assert_eq!(
        s.get_run(s.lineage(), PageNo(1), &[sp(5, 10); 2]),
        vec![s.get(s.lineage(), PageNo(1), sp(5, 10)), None]
    );
    s.put(s.lineage(), &[(PageNo(2), sp(5, 10), &page(2))]);
    assert_eq!(get(&s, 2), Some(2));
    // Not suspect: an intact page is not written again.
    let writes = stat(&s, "store_writes");
    s.put(s.lineage(), &[(PageNo(2), sp(5, 10), &page(2))]);
    assert_eq!(stat(&s, "store_writes"), writes);
}

#[test]
fn the_sweep_drops_a_corrupt_page_and_keeps_the_rest() {
    let d = Dir::new();
    let s = filled(&d, Capacity::Unbounded, 4);
    d.damage(Geometry::new(PS).page_at(2).unwrap() + 7, &[0xa5]);
    assert!(
        s.has(s.lineage(), PageNo(3), sp(5, 10)),
        "held, as far as its metadata says"
    );
    let wants = [sp(5, 10); 5];
    assert_eq!(
        s.sweep_run(s.lineage(), PageNo(1), &wants),
        vec![true, true, false, true, false]
    );
    assert_eq!(stat(&s, "store_dropped"), 1);
    assert_eq!(stat(&s, "store_hits"), 0, "a sweep is no read");
    assert!(!s.has(s.lineage(), PageNo(3), sp(5, 10)));
    s.put(s.lineage(), &[(PageNo(3), sp(5, 10), &page(3))]);
    assert_eq!(get(&s, 3), Some(3));
    let run = s.get_run(s.lineage(), PageNo(1), &wants);
    let tags: Vec<Option<u8>> = run.iter().map(|p| p.as_ref().map(|p| p[0])).collect();
    assert_eq!(tags, vec![Some(1), Some(2), Some(3), Some(4), None]);
}

#[test]
fn a_run_stops_at_the_end_of_its_chunk_and_of_a_bounded_store() {
    let d = Dir::new();
    let s = filled(&d, Capacity::Unbounded, 1);
    assert_eq!(
        s.get_run(s.lineage(), PageNo(1023), &[sp(5, 10); 8]).len(),
        2
    );
    let d2 = Dir::new();
    let bounded = filled(&d2, Capacity::Bytes(Geometry::new(PS).bytes_for(16)), 16);
    assert_eq!(
        bounded
            .get_run(bounded.lineage(), PageNo(15), &[sp(5, 10); 8])
            .len(),
        2
    );
    assert_eq!(get(&bounded, 16), Some(16));
}

#[test]
fn a_store_of_the_old_format_is_started_afresh() {
    let d = Dir::new();
    let mut old = FileHeader {
        page_size: PS,
        ident: "file:///replica".into(),
        lineage: 7,
        ..FileHeader::default()
    }
    .encode();
    old[8..12].copy_from_slice(&1u32.to_le_bytes());
    old.extend_from_slice(&page(5));
    std::fs::write(d.path(), &old).unwrap();
    let s = d.open(Capacity::Unbounded);
    assert_eq!(s.lineage(), 0);
    assert!(matches!(attach(&s), Attached::Serving(_)));
    assert_eq!(get(&s, 1), None);
    let header = s.read_header().unwrap();
    assert_ne!(header.lineage, 7, "a new lineage, not the old file's");
}

/// The sweep found page 3 torn (valid metadata, other bytes) but could not
/// drop it: another process held the store's lock. The fill then fetches
/// the page again and writes it: that write must replace the torn page,
/// not find the slot "already held" and skip it. (Skipped, the round would
/// count the page as stored and report the copy complete, while the page
/// stays a miss for every reader until one of them trips over it.)
#[test]
fn a_torn_page_whose_drop_was_skipped_is_replaced_by_the_fill_that_fetches_it_again() {
    let d = Dir::new();
    let s = filled(&d, Capacity::Unbounded, 4);
    d.damage(Geometry::new(PS).page_at(2).unwrap() + 7, &[0xa5]);
    s.bound_lock_wait(Duration::from_millis(20));
    let other = OpenOptions::new().read(true).open(d.path()).unwrap();
    assert!(
        os::try_lock(&other).unwrap(),
        "the other holder has the lock"
    );
    let wants = [sp(5, 10); 4];
    assert_eq!(
        s.sweep_run(s.lineage(), PageNo(1), &wants),
        vec![true, true, false, true]
    );
    assert_eq!(stat(&s, "store_dropped"), 0, "the drop was skipped");
    os::unlock(&other).unwrap();
    assert!(s.put(s.lineage(), &[(PageNo(3), sp(5, 10), &page(3))]));
    assert_eq!(get(&s, 3), Some(3), "the page fetched again replaced it");
}
