use std::fs::OpenOptions;
use std::time::Instant;

use super::*;
use crate::pause;
use crate::store::layout::Geometry;
use crate::store::{Attached, Followed, Identity, StateFacts};

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
fn attach(s: &DiskStore, txid: u64, lineage: u64, since: u64, pages: u32) -> Attached {
    let cps = [ident(txid, lineage)];
    let f = move |_p: PageNo| Some(t(since));
    s.attach(&StateFacts {
        txid: t(txid),
        page_count: pages,
        checkpoints: &cps,
        since: &f,
    })
}

fn get(s: &DiskStore, p: u32, span: Span) -> Option<u8> {
    s.get(s.lineage(), PageNo(p), span).map(|pg| pg[0])
}

#[test]
fn a_page_is_served_to_any_overlapping_span_and_to_another_process() {
    let d = Dir::new();
    let a = d.open(Capacity::Bytes(1 << 20));
    attach(&a, 10, 1, 5, 4);
    a.put(
        a.lineage(),
        &[
            (PageNo(1), sp(5, 10), &page(1)),
            (PageNo(2), sp(3, 10), &page(2)),
        ],
    );
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
    s.put(
        s.lineage(),
        &[
            (PageNo(1), sp(5, 10), &page(1)),
            (PageNo(2), sp(5, 10), &page(2)),
        ],
    );
    // File 11..=11 changes page 2.
    s.follow(&Followed {
        min: t(11),
        max: t(11),
        identity: ident(11, 1),
        pages: &[PageNo(2)],
    });
    s.put(s.lineage(), &[(PageNo(2), sp(11, 11), &page(22))]);
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
        s.put(
            s.lineage(),
            &[
                (PageNo(1), sp(5, 10), &page(1)),
                (PageNo(2), sp(5, 10), &page(2)),
            ],
        );
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
    old.put(old.lineage(), &[(PageNo(1), sp(5, 10), &page(1))]);
    // The replica was reset: TXID 10 exists again with other content.
    let new = d.open(Capacity::Bytes(1 << 20));
    attach(&new, 10, 2, 5, 4);
    assert_eq!(get(&new, 1, sp(5, 10)), None);
    new.put(new.lineage(), &[(PageNo(1), sp(5, 10), &page(9))]);
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
    s.put(
        s.lineage(),
        &[
            (PageNo(1), sp(5, 10), &page(1)),
            (PageNo(2), sp(5, 10), &page(2)),
        ],
    );
    let f = OpenOptions::new().write(true).open(d.path()).unwrap();
    let g = Geometry::new(PS);
    // A flipped byte inside page 1 and inside page 2's metadata.
    os::write_at(&f, &[0xff], g.page_at(0).unwrap() + 100).unwrap();
    os::write_at(&f, &[0xff], g.meta_at(1).unwrap() + 20).unwrap();
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
    let bytes = Geometry::new(PS).bytes_for(16);
    let s = d.open(Capacity::Bytes(bytes));
    attach(&s, 10, 1, 5, 100);
    s.put(s.lineage(), &[(PageNo(1), sp(5, 10), &page(1))]);
    s.put(s.lineage(), &[(PageNo(17), sp(5, 10), &page(17))]);
    assert_eq!(get(&s, 1, sp(5, 10)), None, "evicted by page 17");
    assert_eq!(get(&s, 17, sp(5, 10)), Some(17));
    // An older version does not push out a newer one (time travel).
    s.put(s.lineage(), &[(PageNo(17), sp(1, 2), &page(3))]);
    assert_eq!(get(&s, 17, sp(5, 10)), Some(17));
    let len = std::fs::metadata(d.path()).unwrap().len();
    assert!(len <= bytes, "{len} > {bytes}");
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

fn stat(s: &DiskStore, name: &str) -> u64 {
    let r = s.render();
    r.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {r}"))
}

/// Another process stopped while it holds the store's lock (here: another
/// open file description of the file, locked): a write is skipped and an
/// attach fails within the bound, both counted, and reads go on. Before
/// the bound, each of these waited forever.
#[test]
fn a_lock_held_elsewhere_skips_the_store_instead_of_waiting() {
    let d = Dir::new();
    let a = d.open(Capacity::Unbounded);
    assert!(matches!(attach(&a, 10, 1, 5, 4), Attached::Serving(_)));
    a.put(a.lineage(), &[(PageNo(1), sp(5, 10), &page(1))]);

    let other = OpenOptions::new().read(true).open(d.path()).unwrap();
    assert!(
        os::try_lock(&other).unwrap(),
        "the other holder has the lock"
    );
    a.bound_lock_wait(Duration::from_millis(50));
    a.put(a.lineage(), &[(PageNo(2), sp(5, 10), &page(2))]);
    assert_eq!(get(&a, 2, sp(5, 10)), None, "the write was skipped");
    assert_eq!(get(&a, 1, sp(5, 10)), Some(1), "reads take no lock");
    assert_eq!(stat(&a, "store_lock_timeouts"), 1);
    assert_eq!(stat(&a, "store_write_errors"), 0);
    assert!(!a.writes_paused(), "a busy lock is not a failing disk");

    // A process that opens meanwhile: the open needs no lock, the attach
    // fails (reads go to storage) instead of waiting.
    let b = d.open(Capacity::Unbounded);
    b.bound_lock_wait(Duration::from_millis(50));
    assert_eq!(attach(&b, 10, 1, 5, 4), Attached::Failed);
    assert_eq!(get(&b, 1, sp(5, 10)), None, "not attached: not used");
    assert_eq!(stat(&b, "store_lock_timeouts"), 1);

    // The holder goes: everything works again, nothing was paused.
    drop(other);
    assert!(matches!(attach(&b, 10, 1, 5, 4), Attached::Serving(_)));
    assert_eq!(get(&b, 1, sp(5, 10)), Some(1));
    a.put(a.lineage(), &[(PageNo(2), sp(5, 10), &page(2))]);
    assert_eq!(get(&b, 2, sp(5, 10)), Some(2));
}

/// A thread of this process holding the write lock bounds the others'
/// wait the same way.
#[test]
fn a_thread_holding_the_lock_bounds_the_wait_too() {
    let d = Dir::new();
    let a = d.open(Capacity::Unbounded);
    attach(&a, 10, 1, 5, 4);
    a.bound_lock_wait(Duration::from_millis(50));
    let held = a.write.lock().unwrap();
    a.put(a.lineage(), &[(PageNo(1), sp(5, 10), &page(1))]);
    drop(held);
    assert_eq!(stat(&a, "store_lock_timeouts"), 1);
    assert_eq!(get(&a, 1, sp(5, 10)), None);
}

/// A store that cannot even create its header waits for the lock no
/// longer than the bound either: the open fails (the replica then reads
/// from storage).
#[test]
fn an_open_that_needs_the_lock_fails_within_the_bound() {
    let d = Dir::new();
    std::fs::write(d.path(), b"").unwrap();
    let other = OpenOptions::new().read(true).open(d.path()).unwrap();
    assert!(os::try_lock(&other).unwrap());
    let started = Instant::now();
    let e = DiskStore::open(
        &d.path(),
        "file:///replica",
        ps(),
        Capacity::Unbounded,
        false,
    )
    .err()
    .unwrap();
    assert!(started.elapsed() >= LOCK_WAIT);
    assert!(e.to_string().contains("write lock"), "{e}");
}

#[cfg(unix)]
mod private_store {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn the_store_its_folder_and_fill_lock_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let path = dir.join("r.pages");
        let s = DiskStore::open(
            &path,
            "file:///replica",
            ps(),
            Capacity::Bytes(1 << 20),
            false,
        )
        .unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        let claim = s.try_fill_lock().unwrap();
        assert_eq!(mode(&fill_lock_path(&path)), 0o600);
        drop(claim);
    }

    #[test]
    fn an_older_store_readable_by_others_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let path = dir.join("r.pages");
        drop(
            DiskStore::open(
                &path,
                "file:///replica",
                ps(),
                Capacity::Bytes(1 << 20),
                false,
            )
            .unwrap(),
        );
        let wide = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        wide(&dir, 0o755).unwrap();
        wide(&path, 0o644).unwrap();
        drop(
            DiskStore::open(
                &path,
                "file:///replica",
                ps(),
                Capacity::Bytes(1 << 20),
                false,
            )
            .unwrap(),
        );
        assert_eq!((mode(&dir), mode(&path)), (0o700, 0o600));
    }

    #[test]
    fn a_symlink_a_group_writable_folder_or_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        std::fs::create_dir(&dir).unwrap();
        let open = |p: &Path| {
            DiskStore::open(p, "file:///replica", ps(), Capacity::Bytes(1 << 20), false)
                .err()
                .map(|e| (matches!(e, OpenError::NotPrivate(_)), e.to_string()))
        };
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::write(&elsewhere, b"").unwrap();
        let link = dir.join("r.pages");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let (refused, e) = open(&link).unwrap();
        assert!(
            refused && e.contains("symbolic link") && e.contains("r.pages"),
            "{e}"
        );
        assert_eq!(
            std::fs::read(&elsewhere).unwrap(),
            b"",
            "the target was not written"
        );

        let group = tmp.path().join("group");
        std::fs::create_dir(&group).unwrap();
        std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o770)).unwrap();
        let (refused, e) = open(&group.join("r.pages")).unwrap();
        assert!(
            refused && e.contains("writable by its group") && e.contains("group"),
            "{e}"
        );
        assert!(!group.join("r.pages").exists(), "nothing created in it");
    }

    #[test]
    fn a_store_planted_by_another_account_is_refused_even_for_root() {
        if os::euid() != 0 {
            return; // only root can give a file away; CI runs as root
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let path = dir.join("r.pages");
        drop(DiskStore::open(&path, "file:///replica", ps(), Capacity::Unbounded, false).unwrap());
        std::os::unix::fs::lchown(&path, Some(65534), None).unwrap();
        let e = DiskStore::open(&path, "file:///replica", ps(), Capacity::Unbounded, false)
            .err()
            .unwrap();
        assert!(matches!(e, OpenError::NotPrivate(_)), "{e}");
        assert!(e.to_string().contains("owned by another account"), "{e}");
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), 65534);
    }

    /// A forked child, parked: it unlocks its copies of `fds` if
    /// `unlock`, says so, and waits until [`Child::finish`].
    struct Child {
        pid: libc::pid_t,
        up: [i32; 2],
        down: [i32; 2],
    }

    impl Child {
        fn fork(fds: [i32; 2], unlock: bool) -> Child {
            let (mut up, mut down) = ([0i32; 2], [0i32; 2]);
            // SAFETY: two-int arrays for pipe(2) to fill.
            assert_eq!(unsafe { libc::pipe(up.as_mut_ptr()) }, 0);
            // SAFETY: as above.
            assert_eq!(unsafe { libc::pipe(down.as_mut_ptr()) }, 0);
            // SAFETY: the child only calls async-signal-safe functions
            // (flock, write, read, _exit) on descriptors it inherited.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            let mut b = [0u8; 1];
            if pid == 0 {
                // SAFETY: see above.
                unsafe {
                    if unlock {
                        for fd in fds {
                            libc::flock(fd, libc::LOCK_UN);
                        }
                    }
                    libc::write(up[1], b.as_ptr().cast(), 1);
                    libc::read(down[0], b.as_mut_ptr().cast(), 1);
                    libc::_exit(0);
                }
            }
            // SAFETY: our end of the pipe and a one-byte buffer.
            assert_eq!(unsafe { libc::read(up[0], b.as_mut_ptr().cast(), 1) }, 1);
            Child { pid, up, down }
        }

        fn finish(self) {
            // SAFETY: our ends of the pipes; waking and reaping the child.
            unsafe {
                libc::write(self.down[1], [0u8].as_ptr().cast(), 1);
                let mut status = 0;
                libc::waitpid(self.pid, &mut status, 0);
                for fd in self.up.into_iter().chain(self.down) {
                    libc::close(fd);
                }
            }
        }
    }

    /// A child made by fork() neither keeps nor releases the parent's fill
    /// lock: its `LOCK_UN` leaves the parent's lock alone, and once the
    /// parent lets go, another process can fill while the child still
    /// lives. Before, the child's inherited descriptor kept the lock until
    /// the child exited, and its `LOCK_UN` released the parent's.
    #[test]
    fn a_forked_child_neither_keeps_nor_releases_the_fill_lock() {
        use std::os::fd::AsRawFd;
        let d = Dir::new();
        let s = d.open(Capacity::Unbounded);
        let other = d.open(Capacity::Unbounded);
        let fds_of = |claim: &FillClaim| {
            let lock = &claim._lock.as_ref().unwrap().1;
            assert!(fork::is_listed(lock) && fork::is_listed(&s.file));
            [lock.as_raw_fd(), s.file.as_raw_fd()]
        };

        let claim = s.try_fill_lock().unwrap();
        let keeper = Child::fork(fds_of(&claim), false);
        drop(claim);
        let kept_by_child = other.try_fill_lock().is_none();
        keeper.finish();

        let claim = s.try_fill_lock().unwrap();
        let unlocker = Child::fork(fds_of(&claim), true);
        let released_by_child = other.try_fill_lock().is_some();
        unlocker.finish();
        drop(claim);

        assert_eq!(
            (released_by_child, kept_by_child),
            (false, false),
            "(the child's LOCK_UN released the parent's fill lock, the child kept it after the \
             parent let go)"
        );
    }
}

/// The catch-up skipped. A stored pages 1 and 2 at TXID 10 and stopped; B
/// restarts at TXID 12, where page 2 changed (its file ends at 12). B's
/// attach would close page 2's open entry and move the horizon to 12, but
/// the lock is held elsewhere: it fails, and B serves nothing (the store
/// neither moved its horizon without the close, nor let B read unattached).
/// Once the lock is free, the catch-up runs: page 1 is served, page 2 is a
/// miss. A restart on a reset replica (TXID 10 again, other files) whose
/// attach is skipped serves nothing either, and once it runs, its new
/// lineage holds none of the old pages.
/// Guards the argument: passes on the code before the lineage fixes too.
#[test]
fn a_skipped_catch_up_serves_nothing_until_it_ran() {
    let d = Dir::new();
    let a = d.open(Capacity::Unbounded);
    attach(&a, 10, 1, 5, 3);
    let pages = [
        (PageNo(1), sp(5, 10), &page(1)[..]),
        (PageNo(2), sp(5, 10), &page(2)[..]),
    ];
    assert!(a.put(a.lineage(), &pages));
    let cps = [ident(10, 1), ident(12, 1)];
    let since = |p: PageNo| Some(if p.0 == 2 { t(12) } else { t(5) });
    let at_12 = StateFacts {
        txid: t(12),
        page_count: 3,
        checkpoints: &cps,
        since: &since,
    };

    let b = d.open(Capacity::Unbounded);
    b.bound_lock_wait(Duration::from_millis(20));
    let other = OpenOptions::new().read(true).open(d.path()).unwrap();
    assert!(
        os::try_lock(&other).unwrap(),
        "the other holder has the lock"
    );
    assert_eq!(
        b.attach(&at_12),
        Attached::Failed,
        "the catch-up was skipped"
    );
    assert_eq!(b.lineage(), 0);
    assert_eq!(get(&b, 1, sp(5, 12)), None);
    assert_eq!(get(&b, 2, sp(12, 12)), None);
    assert_eq!(get(&a, 2, sp(12, 12)), None, "the horizon did not move");
    os::unlock(&other).unwrap();
    assert!(matches!(b.attach(&at_12), Attached::Serving(_)));
    assert_eq!(get(&b, 1, sp(5, 12)), Some(1));
    assert_eq!(get(&b, 2, sp(12, 12)), None, "changed after the horizon");

    // A reset replica: TXID 10 again, written at another time.
    let c = d.open(Capacity::Unbounded);
    c.bound_lock_wait(Duration::from_millis(20));
    assert!(os::try_lock(&other).unwrap());
    assert_eq!(attach(&c, 10, 2, 5, 3), Attached::Failed);
    assert_eq!(get(&c, 1, sp(5, 10)), None);
    os::unlock(&other).unwrap();
    assert!(matches!(attach(&c, 10, 2, 5, 3), Attached::Serving(_)));
    assert_eq!(get(&c, 1, sp(5, 10)), None, "the old lineage's page");
    assert_eq!(get(&c, 2, sp(5, 10)), None, "the old lineage's page");
}

/// A follow that joins the lineage another process started (this process
/// had none: its attach was skipped) publishes that while it holds the
/// lock. Another thread's attach right after it, of the reset replica's
/// state, starts a newer lineage: the follow, finishing late, must not
/// move the store's view back to the lineage it joined (the view moves
/// only forward; moved back, every read and write of this process would
/// be refused until an attach fixed it).
#[test]
fn a_follow_that_joins_a_lineage_does_not_undo_a_newer_attach() {
    let d = Dir::new();
    let a = d.open(Capacity::Unbounded);
    attach(&a, 10, 1, 5, 4);
    let b = d.open(Capacity::Unbounded);
    assert_eq!(b.lineage(), 0, "B never attached");
    let gate = pause::arm_in("store.followed", &d.path().to_string_lossy());
    std::thread::scope(|s| {
        let follower = s.spawn(|| {
            b.follow(&Followed {
                min: t(10),
                max: t(10),
                identity: ident(10, 1),
                pages: &[],
            })
        });
        gate.wait_reached(Duration::from_secs(20)).unwrap();
        assert!(matches!(attach(&b, 10, 2, 5, 4), Attached::Serving(_)));
        let newer = b.lineage();
        assert_ne!(newer, a.lineage());
        gate.release();
        assert_eq!(follower.join().unwrap(), Some(a.lineage()), "proven in A's");
        assert_eq!(b.lineage(), newer, "the view moved back");
    });
}

/// A reader refreshes the view (an open entry looked older than its span:
/// another process may have moved the horizon) and is parked between its
/// read of the header and its publishing of it; meanwhile this process
/// follows a file and publishes a later horizon. The late refresh must not
/// put the older horizon back (the view moves only forward; moved back,
/// open entries stop being served past the older horizon).
#[test]
fn a_late_refresh_does_not_move_the_horizon_back() {
    let d = Dir::new();
    let a = d.open(Capacity::Unbounded);
    attach(&a, 10, 1, 5, 4);
    assert!(a.put(a.lineage(), &[(PageNo(1), sp(5, 10), &page(1))]));
    let follow = |s: &DiskStore, txid: u64| {
        s.follow(&Followed {
            min: t(txid),
            max: t(txid),
            identity: ident(txid, 1),
            pages: &[PageNo(2)],
        })
    };
    // Another process follows TXID 11: A's view is still at 10.
    let b = d.open(Capacity::Unbounded);
    attach(&b, 10, 1, 5, 4);
    assert!(follow(&b, 11).is_some());
    assert_eq!(a.view.load().horizon, 10);
    let gate = pause::arm_in("store.refresh_read", &d.path().to_string_lossy());
    std::thread::scope(|s| {
        let reader = s.spawn(|| get(&a, 1, sp(11, 11)));
        gate.wait_reached(Duration::from_secs(20)).unwrap();
        assert!(follow(&a, 12).is_some());
        assert_eq!(a.view.load().horizon, 12);
        gate.release();
        assert_eq!(reader.join().unwrap(), Some(1));
    });
    assert_eq!(a.view.load().horizon, 12, "the horizon moved back");
    assert_eq!(get(&a, 1, sp(12, 12)), Some(1));
}
