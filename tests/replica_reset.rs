//! A replica that is reset (its files removed, TXIDs restarting at 1, the
//! same file names holding other bytes) is seen by the poller, rebuilt from
//! scratch, and nothing of the old lineage is read for the new one: not a
//! cached page, not a snapshot a reader still holds.
//!
//! Real files in a folder (`file://`), written with the crate's LTX builder.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use litestream_vfs::config::{Config, Sources};
use litestream_vfs::ltx::{LtxBuilder, PageNo, PageSize};
use litestream_vfs::replica::{PollState, Replica, ScanBuf};

/// One lineage: file `i` (TXID i+1) sets page 2 to `pages[i]`; the
/// database has 2 pages. Written with header timestamps from `ts`.
fn write_lineage(root: &Path, ts: i64, pages: &[&str], level0: &[(u64, u64)]) {
    let _ = std::fs::remove_dir_all(root.join("ltx"));
    let dir = root.join("ltx").join("0");
    std::fs::create_dir_all(&dir).unwrap();
    let ps = PageSize::new(4096).unwrap();
    for (i, (min, max)) in level0.iter().enumerate() {
        let mut b = LtxBuilder::new(ps, *min, *max, 2).timestamp_ms(ts + i as i64 * 1000);
        if *min == 1 {
            b = b.page(1, b"page one");
        }
        b = b.page(2, pages[i].as_bytes());
        std::fs::write(dir.join(format!("{min:016x}-{max:016x}.ltx")), b.build()).unwrap();
    }
}

fn open(root: &Path, rt: &tokio::runtime::Runtime) -> Arc<Replica> {
    open_with(root, rt, &[])
}

fn open_with(root: &Path, rt: &tokio::runtime::Runtime, params: &[(&str, &str)]) -> Arc<Replica> {
    let url = url::Url::from_directory_path(root).unwrap().to_string();
    let mut uri = vec![("replica_url".to_string(), url)];
    uri.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env = |_: &str| None;
    let config = Config::parse(&Sources {
        uri: &uri,
        env: &env,
    })
    .unwrap();
    rt.block_on(Replica::open(config)).unwrap()
}

/// Writes the old lineage (TXIDs 1 and 2, pages "old 1..." and "old 2...",
/// written at 1,000,000 ms) and opens it.
fn open_old_lineage(root: &Path, rt: &tokio::runtime::Runtime) -> Arc<Replica> {
    write_old_lineage(root);
    open(root, rt)
}

/// The files of the old lineage (see [`open_old_lineage`]).
fn write_old_lineage(root: &Path) {
    write_lineage(
        root,
        1_000_000,
        &["old 1...", "old 2..."],
        &[(1, 1), (2, 2)],
    );
}

fn page2(replica: &Replica) -> String {
    let snap = replica.current();
    let page = replica
        .io
        .fetcher
        .read(&snap, PageNo(2), 1, &ScanBuf::default())
        .unwrap()
        .unwrap()
        .0;
    String::from_utf8_lossy(&page[..8]).into_owned()
}

fn poll(replica: &Replica, rt: &tokio::runtime::Runtime, state: &mut PollState) {
    assert!(rt.block_on(replica.poll_once(state)).unwrap());
}

fn resets(replica: &Replica) -> u64 {
    replica.io.stats.resets.load(Ordering::Relaxed)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn txids_going_backwards_rebuild_the_new_lineage() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), rt());
    let replica = open_old_lineage(dir.path(), &rt);
    assert_eq!(page2(&replica), "old 2...");
    let old = replica.current();
    assert_eq!((old.txid.0, old.lineage), (2, 0));

    write_lineage(dir.path(), 9_000_000, &["new 1..."], &[(1, 1)]);
    let mut state = PollState::default();
    poll(&replica, &rt, &mut state);
    let new = replica.current();
    assert_eq!((new.txid.0, new.lineage, resets(&replica)), (1, 1, 1));
    assert_eq!(page2(&replica), "new 1...");
    // The reader that still holds the old snapshot fails instead of mixing.
    let e = replica.check_lineage(&old).unwrap_err().to_string();
    assert!(
        e.contains("reset") && e.contains("TXID 0000000000000002"),
        "{e}"
    );
    replica.check_lineage(&new).unwrap();
    // A quiet poll changes nothing.
    poll(&replica, &rt, &mut state);
    assert_eq!((replica.current().lineage, resets(&replica)), (1, 1));
}

#[test]
fn the_same_names_and_sizes_with_other_bytes_are_a_reset() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), rt());
    let replica = open_old_lineage(dir.path(), &rt);
    assert_eq!(page2(&replica), "old 2...");
    let size = |name: &str| {
        std::fs::metadata(dir.path().join("ltx/0").join(name))
            .unwrap()
            .len()
    };
    let before = size("0000000000000002-0000000000000002.ltx");

    // The new lineage got past our TXID before we looked: file 2 has the
    // same name and size, only its header timestamp tells it apart.
    write_lineage(
        dir.path(),
        9_000_000,
        &["new 1...", "new 2...", "new 3..."],
        &[(1, 1), (2, 2), (3, 3)],
    );
    assert_eq!(size("0000000000000002-0000000000000002.ltx"), before);
    let mut state = PollState::default();
    poll(&replica, &rt, &mut state);
    let snap = replica.current();
    assert_eq!((snap.txid.0, snap.lineage, resets(&replica)), (3, 1, 1));
    assert_eq!(page2(&replica), "new 3...");
}

#[test]
fn a_level_zero_file_across_our_txid_is_a_reset() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), rt());
    let replica = open_old_lineage(dir.path(), &rt);
    assert_eq!(page2(&replica), "old 2...");
    write_lineage(
        dir.path(),
        9_000_000,
        &["new 1...", "new 3..."],
        &[(1, 1), (2, 3)],
    );
    poll(&replica, &rt, &mut PollState::default());
    assert_eq!((replica.current().txid.0, resets(&replica)), (3, 1));
    assert_eq!(page2(&replica), "new 3...");
}

#[test]
fn following_one_lineage_is_no_reset() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), rt());
    let replica = open_old_lineage(dir.path(), &rt);
    // Litestream adds files; it never writes one again (a file written
    // again is another file: `file://` lists its identity as its version).
    write_file(dir.path(), 0, (3, 3), 1_002_000, "old 3...");
    let mut state = PollState::default();
    poll(&replica, &rt, &mut state);
    poll(&replica, &rt, &mut state);
    assert_eq!(
        (replica.current().txid.0, replica.current().lineage),
        (3, 0)
    );
    assert_eq!(
        (page2(&replica), resets(&replica)),
        ("old 3...".to_string(), 0)
    );
}

#[test]
fn a_new_lineage_that_reached_our_txid_with_the_same_sizes_is_seen_while_quiet() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), rt());
    let replica = open_old_lineage(dir.path(), &rt);
    assert_eq!(page2(&replica), "old 2...");
    // Same names, same sizes, same offsets: only the timestamps differ. The
    // old page 2 is cached under the old file's key.
    write_lineage(
        dir.path(),
        9_000_000,
        &["new 1...", "new 2..."],
        &[(1, 1), (2, 2)],
    );
    let mut state = PollState::default();
    poll(&replica, &rt, &mut state);
    let snap = replica.current();
    assert_eq!((snap.txid.0, snap.lineage, resets(&replica)), (2, 1, 1));
    assert_eq!(
        page2(&replica),
        "new 2...",
        "a page cached from the old lineage was served"
    );
}

/// A state opened from level 1 alone has no level-0 tip yet; the poller
/// adopts one from a later listing. If a reset wrote that file, the tip
/// must not be taken for the old state's: its header was written after the
/// state read, which is a reset.
#[test]
fn a_tip_adopted_after_a_reset_is_seen_as_the_reset() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), rt());
    write_file(dir.path(), 1, (1, 2), 1_001_000, "old 2...");
    let replica = open(dir.path(), &rt);
    assert_eq!(page2(&replica), "old 2...");
    // Reset: the new database reached TXID 2 too, its level-0 files only.
    std::fs::remove_dir_all(dir.path().join("ltx")).unwrap();
    write_lineage(
        dir.path(),
        2_000_000,
        &["new 1...", "new 2..."],
        &[(1, 1), (2, 2)],
    );
    let mut state = PollState::default();
    for _ in 0..4 {
        let _ = rt.block_on(replica.poll_once(&mut state));
    }
    let snap = replica.current();
    assert_eq!(
        (snap.txid.0, snap.lineage, resets(&replica)),
        (2, 1, 1),
        "the new lineage's level-0 file was adopted as the old state's tip"
    );
    assert_eq!(page2(&replica), "new 2...");
}

/// A lineage of two files: a snapshot, then TXID 2 rewriting pages 2..=300
/// with incompressible bytes that begin with `mark`. Both lineages compress
/// to the same sizes, so every frame sits at the same offset of a file of
/// the same name and size: only the header timestamp tells them apart.
fn write_big_lineage(root: &Path, ts: i64, mark: &[u8; 4]) {
    let _ = std::fs::remove_dir_all(root.join("ltx"));
    let dir = root.join("ltx").join("0");
    std::fs::create_dir_all(&dir).unwrap();
    let ps = PageSize::new(4096).unwrap();
    let mut noise = 0x2545_f491_4f6c_dd1du64;
    let mut page = |pgno: u32| {
        let mut p: Vec<u8> = (0..4096)
            .map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                noise as u8
            })
            .collect();
        p[..4].copy_from_slice(mark);
        p[4..8].copy_from_slice(&pgno.to_be_bytes());
        p
    };
    // A snapshot holds every page up to its commit: one page, then the
    // database grows to 300 pages at TXID 2.
    let snap = LtxBuilder::new(ps, 1, 1, 1)
        .timestamp_ms(ts)
        .page(1, b"page one");
    std::fs::write(dir.join(format!("{:016x}-{:016x}.ltx", 1, 1)), snap.build()).unwrap();
    let mut b = LtxBuilder::new(ps, 2, 2, 300).timestamp_ms(ts + 1000);
    for pgno in 2..=300 {
        b = b.page(pgno, &page(pgno));
    }
    std::fs::write(dir.join(format!("{:016x}-{:016x}.ltx", 2, 2)), b.build()).unwrap();
}

#[test]
fn a_page_cached_from_the_old_lineage_is_never_served_for_the_new_one() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), rt());
    write_big_lineage(dir.path(), 1_000_000, b"OLD!");
    let replica = open(dir.path(), &rt);
    let read = |pgno: u32| {
        let snap = replica.current();
        let page = replica
            .io
            .fetcher
            .read(&snap, PageNo(pgno), 1, &ScanBuf::default())
            .unwrap()
            .unwrap()
            .0;
        page[..4].to_vec()
    };
    assert_eq!(read(300), b"OLD!");
    let old = replica.current().frame(PageNo(300)).unwrap().clone();
    write_big_lineage(dir.path(), 9_000_000, b"NEW!");
    poll(&replica, &rt, &mut PollState::default());
    let new = replica.current().frame(PageNo(300)).unwrap().clone();
    assert_eq!(
        (new.file.id, new.file.size, new.offset),
        (old.file.id, old.file.size, old.offset)
    );
    assert_eq!(resets(&replica), 1);
    assert_eq!(
        read(300),
        b"NEW!",
        "a page cached from the old lineage was served"
    );
}

/// Writes one LTX file of `level` holding TXIDs `min..=max` (page 1, and
/// page 2 set to `page2`; 2 pages), written at `ts`.
fn write_file(root: &Path, level: u8, (min, max): (u64, u64), ts: i64, page2: &str) {
    let dir = root.join("ltx").join(level.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let ps = PageSize::new(4096).unwrap();
    let mut b = LtxBuilder::new(ps, min, max, 2).timestamp_ms(ts);
    if min == 1 {
        b = b.page(1, b"page one");
    }
    b = b.page(2, page2.as_bytes());
    std::fs::write(dir.join(format!("{min:016x}-{max:016x}.ltx")), b.build()).unwrap();
}

fn page2_of(replica: &Replica, snap: &Arc<litestream_vfs::replica::Snapshot>) -> String {
    let page = replica
        .io
        .fetcher
        .read(snap, PageNo(2), 1, &ScanBuf::default())
        .unwrap()
        .unwrap()
        .0;
    String::from_utf8_lossy(&page[..8]).into_owned()
}

#[test]
fn a_replan_after_compaction_rebuilds_the_same_state() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), rt());
    let replica = open_old_lineage(dir.path(), &rt);
    let pinned = replica.current();
    // Litestream compacts TXIDs 1..=2 into level 1 (the output keeps the
    // timestamp of its newest input) and retention removes level 0.
    write_file(dir.path(), 1, (1, 2), 1_001_000, "old 2...");
    std::fs::remove_dir_all(dir.path().join("ltx/0")).unwrap();
    let fresh = rt.block_on(replica.replan(&pinned)).unwrap();
    assert_eq!((fresh.txid.0, fresh.lineage), (2, 0));
    assert_eq!(page2_of(&replica, &fresh), "old 2...");
    assert_eq!(resets(&replica), 0);
}

/// The old lineage of [`open_old_lineage`], plus a snapshot of TXID 2
/// written after it (at 1,001,900 ms), opened: its state is read from the
/// snapshot.
fn open_old_lineage_from_a_snapshot(root: &Path, rt: &tokio::runtime::Runtime) -> Arc<Replica> {
    write_old_lineage(root);
    write_file(root, 9, (1, 2), 1_001_900, "old 2...");
    open(root, rt)
}

/// A snapshot (level 9) is written after the TXID it ends at, at a time of
/// its own: a state read from one is rebuilt from the level-0 files it
/// came from (written earlier) once retention removes the snapshot, and a
/// new database written after it is still a reset.
#[test]
fn a_replan_of_a_state_read_from_a_snapshot_rebuilds_it_from_older_files() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), rt());
    let replica = open_old_lineage_from_a_snapshot(dir.path(), &rt);
    let pinned = replica.current();
    assert!(
        pinned.files().any(|f| f.id.level.get() == 9),
        "the state is read from the snapshot"
    );
    std::fs::remove_dir_all(dir.path().join("ltx/9")).unwrap();
    let fresh = rt
        .block_on(replica.replan(&pinned))
        .expect("the same state, rebuilt from level 0");
    assert_eq!((fresh.txid.0, fresh.lineage), (2, 0));
    assert_eq!(page2_of(&replica, &fresh), "old 2...");
    assert_eq!(resets(&replica), 0);

    // The same state read from the snapshot, then the replica reset to a
    // new database that reached TXID 2 after the snapshot was written.
    let (dir, rt) = (tempfile::tempdir().unwrap(), self::rt());
    let replica = open_old_lineage_from_a_snapshot(dir.path(), &rt);
    let pinned = replica.current();
    std::fs::remove_dir_all(dir.path().join("ltx/9")).unwrap();
    write_lineage(
        dir.path(),
        1_002_000,
        &["new 1...", "new 2..."],
        &[(1, 1), (2, 2)],
    );
    let e = rt.block_on(replica.replan(&pinned)).unwrap_err();
    assert!(matches!(e, litestream_vfs::error::Error::Reset(_)), "{e}");
}

/// The vanished-file path during a reset: the old lineage's files are gone,
/// and a new database reached the same TXID (here compacted into level 1).
/// Rebuilding TXID 2 from those files would label the new database's state
/// with the old lineage, and a read transaction would go on reading it
/// over the old pages SQLite caches. The rebuild proves it is not the same
/// state, so the re-plan fails with the reset error and the replica moves
/// to the new lineage.
#[test]
fn a_replan_during_a_reset_fails_instead_of_mixing_two_databases() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), rt());
    let replica = open_old_lineage(dir.path(), &rt);
    let pinned = replica.current();
    assert_eq!(page2_of(&replica, &pinned), "old 2...");
    std::fs::remove_dir_all(dir.path().join("ltx")).unwrap();
    write_file(dir.path(), 1, (1, 2), 9_001_000, "new 2...");

    let e = match rt.block_on(replica.replan(&pinned)) {
        Ok(s) => panic!(
            "the re-plan rebuilt TXID {} from the new database's files as lineage {} (page 2: {:?})",
            s.txid.0,
            s.lineage,
            page2_of(&replica, &s)
        ),
        Err(e) => e,
    };
    assert!(matches!(e, litestream_vfs::error::Error::Reset(_)), "{e}");
    assert!(e.to_string().contains("reset"), "{e}");
    let now = replica.current();
    assert_eq!((now.txid.0, now.lineage, resets(&replica)), (2, 1, 1));
    assert_eq!(page2_of(&replica, &now), "new 2...");
    assert!(replica.check_lineage(&pinned).is_err());
}

/// A re-plan reads the current snapshot, builds, and publishes its rebuild
/// when the current one is still at the TXID it rebuilt. The poller
/// publishes without the re-plan lock: TXID 3 published while the re-plan
/// of TXID 2 is parked after its build must stay current.
#[cfg(feature = "test-hooks")]
#[test]
fn a_replan_never_moves_current_back() {
    use litestream_vfs::pause;
    use std::time::Duration;

    let (dir, rt) = (tempfile::tempdir().unwrap(), rt());
    let replica = open_old_lineage(dir.path(), &rt);
    let failed = replica.current();
    assert_eq!(failed.txid.0, 2);

    let gate = pause::arm_in("replan.after_build", replica.io.storage.describe());
    let handle = rt.handle().clone();
    let r = Arc::clone(&replica);
    let replanning = std::thread::spawn(move || handle.block_on(r.replan(&failed)));
    gate.wait_reached(Duration::from_secs(30))
        .expect("the re-plan reached its pause point");

    write_file(dir.path(), 0, (3, 3), 1_002_000, "old 3...");
    poll(&replica, &rt, &mut PollState::default());
    assert_eq!(replica.current().txid.0, 3);

    gate.release();
    let rebuilt = replanning.join().unwrap().unwrap();
    assert_eq!(rebuilt.txid.0, 2);
    assert_eq!(
        replica.current().txid.0,
        3,
        "the re-plan moved current back from TXID 3 to 2"
    );
    assert_eq!(page2(&replica), "old 3...");
}

/// A file of the state a reader holds is written again (a reset reached
/// its TXID under the same names and sizes) before the poller looks: a
/// page not cached yet would come from the new database's bytes. The read
/// is tied to the version the file was listed with, so it is refused
/// (`Changed`), nothing is landed for the old state, and the replica moves
/// to the new lineage at once (`Replica::rewritten`, what the VFS calls).
#[test]
fn a_page_of_a_rewritten_file_is_refused_for_the_old_state() {
    use litestream_vfs::error::Error;
    use litestream_vfs::storage::StorageErrorKind;

    let (dir, rt) = (tempfile::tempdir().unwrap(), rt());
    write_big_lineage(dir.path(), 1_000_000, b"OLD!");
    // No background verification: it would cache every page of the old
    // file before the rewrite.
    let replica = open_with(dir.path(), &rt, &[("verify", "fetched")]);
    let pinned = replica.current();
    write_big_lineage(dir.path(), 9_000_000, b"NEW!");

    let e = match replica
        .io
        .fetcher
        .read(&pinned, PageNo(300), 1, &ScanBuf::default())
    {
        Ok(page) => panic!(
            "page 300 of the old state was read from the rewritten file: {:?}",
            page.map(|(p, _)| String::from_utf8_lossy(&p[..4]).into_owned())
        ),
        Err(e) => e,
    };
    assert!(
        matches!(&e, Error::Storage(s) if s.kind == StorageErrorKind::Changed),
        "{e}"
    );
    let reset = rt.block_on(replica.rewritten(&pinned, &e.to_string()));
    assert!(matches!(reset, Error::Reset(_)), "{reset}");
    assert_eq!((replica.current().lineage, resets(&replica)), (1, 1));
    assert!(replica.check_lineage(&pinned).is_err());
    let now = replica.current();
    let page = replica
        .io
        .fetcher
        .read(&now, PageNo(300), 1, &ScanBuf::default())
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(&page[..4], b"NEW!");
}

/// The poller sets the tip (the level-0 file it compares listings with)
/// after its publish. A reset published between the two must keep its own
/// tip: the old lineage's tip left in its place names a file the new
/// lineage wrote again, and the next quiet poll would take it for a second
/// reset.
#[cfg(feature = "test-hooks")]
#[test]
fn a_reset_between_a_poll_and_its_tip_keeps_its_own_tip() {
    use litestream_vfs::pause;
    use std::time::Duration;

    let (dir, rt) = (tempfile::tempdir().unwrap(), rt());
    let replica = open_old_lineage(dir.path(), &rt);
    write_file(dir.path(), 0, (3, 3), 1_002_000, "old 3...");

    let gate = pause::arm_in("poll.after_publish", replica.io.storage.describe());
    let handle = rt.handle().clone();
    let r = Arc::clone(&replica);
    let polling =
        std::thread::spawn(move || handle.block_on(r.poll_once(&mut PollState::default())));
    gate.wait_reached(Duration::from_secs(30))
        .expect("the poll reached its pause point");
    assert_eq!(replica.current().txid.0, 3);

    // Meanwhile the replica is reset to a database that reached TXID 3 too,
    // and a read sees it first (what the VFS does on a refused read).
    write_lineage(
        dir.path(),
        9_000_000,
        &["new 1...", "new 2...", "new 3..."],
        &[(1, 1), (2, 2), (3, 3)],
    );
    let old = replica.current();
    let e = rt.block_on(replica.rewritten(&old, "a test"));
    assert!(matches!(e, litestream_vfs::error::Error::Reset(_)), "{e}");
    assert_eq!((replica.current().lineage, resets(&replica)), (1, 1));

    gate.release();
    assert!(polling.join().unwrap().unwrap());
    drop(gate);
    let mut state = PollState::default();
    poll(&replica, &rt, &mut state);
    poll(&replica, &rt, &mut state);
    assert_eq!(
        (replica.current().lineage, resets(&replica)),
        (1, 1),
        "a quiet poll took the new lineage for another reset"
    );
    assert_eq!(page2(&replica), "new 3...");
}
