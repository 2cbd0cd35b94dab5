use super::*;
use crate::store::Identity;

const PS: u32 = 4096;

fn ps() -> PageSize {
    PageSize::new(PS).unwrap()
}

fn page(tag: u8) -> Vec<u8> {
    vec![tag; PS as usize]
}

fn t(n: u64) -> Txid {
    Txid(n)
}

fn sp(lo: u64, hi: u64) -> Span {
    Span::new(Txid(lo), Txid(hi))
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn path(&self) -> PathBuf {
        self.0.path().join("r.pages")
    }
    fn open(&self, cap: Capacity) -> DiskStore {
        DiskStore::open(&self.path(), "file:///replica", ps(), cap, false).unwrap()
    }
}

/// The identity of a level-0 file ending at `txid`, in lineage `lineage`.
fn ident(txid: u64, lineage: u64) -> Identity {
    super::super::identity(0, t(txid), t(txid), lineage as i64, 77)
}

/// Attaches at `txid` with a file of lineage `lineage`; every page's span
/// starts at `since`.
fn attach(s: &DiskStore, txid: u64, lineage: u64, since: u64, pages: u32) {
    let cps = [ident(txid, lineage)];
    let f = move |_p: PageNo| Some(t(since));
    s.attach(&StateFacts {
        txid: t(txid),
        page_count: pages,
        checkpoints: &cps,
        since: &f,
    });
}

fn get(s: &DiskStore, p: u32, span: Span) -> Option<u8> {
    s.get(PageNo(p), span).map(|pg| pg[0])
}

#[test]
fn a_page_is_served_to_any_overlapping_span_and_to_another_process() {
    let d = Dir::new();
    let a = d.open(Capacity::Bytes(1 << 20));
    attach(&a, 10, 1, 5, 4);
    a.put(&[
        (PageNo(1), sp(5, 10), &page(1)),
        (PageNo(2), sp(3, 10), &page(2)),
    ]);
    assert_eq!(get(&a, 1, sp(7, 12)), Some(1));
    assert_eq!(get(&a, 1, sp(2, 4)), None, "no shared state");
    assert_eq!(get(&a, 3, sp(1, 10)), None, "never written");

    // A second process (its own open file) at the same state.
    let b = d.open(Capacity::Bytes(1 << 20));
    assert_eq!(get(&b, 1, sp(5, 10)), None, "not attached yet");
    attach(&b, 10, 1, 5, 4);
    assert_eq!(get(&b, 1, sp(5, 10)), Some(1));
    assert_eq!(get(&b, 2, sp(9, 9)), Some(2));
}

#[test]
fn following_extends_open_entries_and_closes_changed_ones() {
    let d = Dir::new();
    let s = d.open(Capacity::Unbounded);
    attach(&s, 10, 1, 5, 4);
    s.put(&[
        (PageNo(1), sp(5, 10), &page(1)),
        (PageNo(2), sp(5, 10), &page(2)),
    ]);
    // File 11..=11 changes page 2.
    s.follow(&Followed {
        min: t(11),
        max: t(11),
        identity: ident(11, 1),
        pages: &[PageNo(2)],
    });
    s.put(&[(PageNo(2), sp(11, 11), &page(22))]);
    // A reader at 11 whose plan was compacted: page 1 in a file ending at 11.
    assert_eq!(get(&s, 1, sp(11, 11)), Some(1), "unchanged: still valid");
    assert_eq!(get(&s, 2, sp(11, 11)), Some(22));
    // The old version of page 2 was replaced, never served for 11.
    assert_ne!(get(&s, 2, sp(11, 11)), Some(2));
    // A gap in following ends the era; open entries keep their last horizon.
    s.follow(&Followed {
        min: t(20),
        max: t(20),
        identity: ident(20, 1),
        pages: &[],
    });
    assert_eq!(get(&s, 1, sp(11, 20)), Some(1), "valid up to 11");
    assert_eq!(get(&s, 1, sp(12, 20)), None, "unknown after 11");
}

#[test]
fn a_restarted_process_catches_up_from_its_snapshot() {
    let d = Dir::new();
    {
        let s = d.open(Capacity::Unbounded);
        attach(&s, 10, 1, 5, 3);
        s.put(&[
            (PageNo(1), sp(5, 10), &page(1)),
            (PageNo(2), sp(5, 10), &page(2)),
        ]);
    }
    let s = d.open(Capacity::Unbounded);
    // At 12, page 2 lives in a file ending at 12; pages 1 and 3 are older.
    let cps = [ident(10, 1), ident(12, 1)];
    let since = |p: PageNo| Some(if p.0 == 2 { t(12) } else { t(5) });
    s.attach(&StateFacts {
        txid: t(12),
        page_count: 3,
        checkpoints: &cps,
        since: &since,
    });
    assert_eq!(get(&s, 1, sp(5, 12)), Some(1));
    assert_eq!(get(&s, 2, sp(12, 12)), None, "changed after the horizon");
}

#[test]
fn another_lineage_never_sees_old_pages() {
    let d = Dir::new();
    let old = d.open(Capacity::Bytes(1 << 20));
    attach(&old, 10, 1, 5, 4);
    old.put(&[(PageNo(1), sp(5, 10), &page(1))]);
    // The replica was reset: TXID 10 exists again with other content.
    let new = d.open(Capacity::Bytes(1 << 20));
    attach(&new, 10, 2, 5, 4);
    assert_eq!(get(&new, 1, sp(5, 10)), None);
    new.put(&[(PageNo(1), sp(5, 10), &page(9))]);
    assert_eq!(get(&new, 1, sp(5, 10)), Some(9));
    // The process still on the old lineage does not take the new pages.
    assert_eq!(get(&old, 1, sp(5, 10)), None);
    // A lineage that cannot be checked (no common state) is a new one too.
    let third = d.open(Capacity::Bytes(1 << 20));
    attach(&third, 99, 2, 5, 4);
    assert_eq!(get(&third, 1, sp(5, 99)), None);
}

#[test]
fn damage_is_a_miss_never_data() {
    let d = Dir::new();
    let s = d.open(Capacity::Unbounded);
    attach(&s, 10, 1, 5, 4);
    s.put(&[
        (PageNo(1), sp(5, 10), &page(1)),
        (PageNo(2), sp(5, 10), &page(2)),
    ]);
    let f = OpenOptions::new().write(true).open(d.path()).unwrap();
    let slot = SLOT_HEADER as u64 + u64::from(PS);
    // A flipped byte inside page 1 and inside page 2's slot header.
    os::write_at(&f, &[0xff], HEADER_LEN + SLOT_HEADER as u64 + 100).unwrap();
    os::write_at(&f, &[0xff], HEADER_LEN + slot + 20).unwrap();
    assert_eq!(get(&s, 1, sp(5, 10)), None);
    assert_eq!(get(&s, 2, sp(5, 10)), None);
    assert!(s.render().contains("store_bad=1"), "{}", s.render());
    // Truncated under a reader: misses.
    f.set_len(HEADER_LEN + 10).unwrap();
    assert_eq!(get(&s, 1, sp(5, 10)), None);
    // A garbage header: the next open starts afresh.
    os::write_at(&f, b"garbage", 0).unwrap();
    let again = d.open(Capacity::Unbounded);
    attach(&again, 10, 1, 5, 4);
    assert_eq!(get(&again, 1, sp(5, 10)), None);
}

#[test]
fn a_bounded_store_keeps_one_page_per_slot() {
    let d = Dir::new();
    let s = d.open(Capacity::Bytes(
        HEADER_LEN + 16 * (SLOT_HEADER as u64 + u64::from(PS)),
    ));
    attach(&s, 10, 1, 5, 100);
    s.put(&[(PageNo(1), sp(5, 10), &page(1))]);
    s.put(&[(PageNo(17), sp(5, 10), &page(17))]);
    assert_eq!(get(&s, 1, sp(5, 10)), None, "evicted by page 17");
    assert_eq!(get(&s, 17, sp(5, 10)), Some(17));
    // An older version does not push out a newer one (time travel).
    s.put(&[(PageNo(17), sp(1, 2), &page(3))]);
    assert_eq!(get(&s, 17, sp(5, 10)), Some(17));
    let len = std::fs::metadata(d.path()).unwrap().len();
    assert!(len <= HEADER_LEN + 16 * (SLOT_HEADER as u64 + u64::from(PS)));
}

#[test]
fn a_file_of_another_replica_is_refused() {
    let d = Dir::new();
    drop(d.open(Capacity::Unbounded));
    let e = DiskStore::open(&d.path(), "s3://other/db", ps(), Capacity::Unbounded, false)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("another replica") && e.contains("file:///replica"),
        "{e}"
    );
}

#[test]
fn the_fill_lock_admits_one_holder() {
    let d = Dir::new();
    let a = d.open(Capacity::Unbounded);
    let b = d.open(Capacity::Unbounded);
    let held = a.try_fill_lock().unwrap();
    assert!(b.try_fill_lock().is_none());
    drop(held);
    assert!(b.try_fill_lock().is_some());
}

#[test]
fn a_private_copy_is_a_new_file_only_its_user_reads() {
    let d = Dir::new();
    let path = d.path();
    let s = DiskStore::open(&path, "file:///replica", ps(), Capacity::Unbounded, true).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = s.file.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(s);
    // A file planted at the name is refused, not opened and truncated.
    std::fs::write(&path, b"someone else's").unwrap();
    assert!(DiskStore::open(&path, "file:///replica", ps(), Capacity::Unbounded, true).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
}
