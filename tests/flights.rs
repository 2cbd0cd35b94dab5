//! Single-flight around the local store: a reader waiting for another's
//! fetch of a frame is served as soon as the frame is decoded, before the
//! fetcher writes it into the local store (a lock other processes share,
//! and disk I/O that may stall).
//!
//! Forced with pause points, so only with the `test-hooks` feature (as
//! `scripts/test` runs); this binary holds only this test, so no other
//! test reaches the points while they are armed.
#![cfg(feature = "test-hooks")]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use litestream_vfs::config::{Config, Sources};
use litestream_vfs::ltx::{LtxBuilder, PageNo, PageSize};
use litestream_vfs::pause;
use litestream_vfs::replica::{Replica, ScanBuf};

const PAGES: u32 = 400;
const WAIT: Duration = Duration::from_secs(20);

/// Bytes that do not compress, so that the snapshot is too large to be
/// read whole at open and its pages come from ranged reads.
fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn write_snapshot(root: &Path) {
    let dir = root.join("ltx").join("9");
    std::fs::create_dir_all(&dir).unwrap();
    let mut b = LtxBuilder::new(PageSize::new(4096).unwrap(), 1, 1, PAGES);
    for p in 1..=PAGES {
        let mut page = format!("page {p} ").into_bytes();
        page.extend(noise(p, 4000));
        b = b.page(p, &page);
    }
    let name = format!("{:016x}-{:016x}.ltx", 1, 1);
    std::fs::write(dir.join(name), b.build()).unwrap();
}

fn open(root: &Path, disk: &Path, rt: &tokio::runtime::Runtime) -> Arc<Replica> {
    let url = url::Url::from_directory_path(root).unwrap().to_string();
    let uri = vec![
        ("replica_url".to_string(), url),
        ("disk_cache".to_string(), disk.display().to_string()),
        // No background verification, which would stream the pages into
        // the cache behind the test's back.
        ("verify".to_string(), "fetched".to_string()),
    ];
    let env = |_: &str| None;
    let config = Config::parse(&Sources {
        uri: &uri,
        env: &env,
    })
    .unwrap();
    rt.block_on(Replica::open(config)).unwrap()
}

#[test]
fn a_waiter_is_served_before_the_fetcher_writes_the_local_store() {
    let (dir, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_snapshot(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let replica = open(dir.path(), disk.path(), &rt);
    assert!(replica.io.local.get().is_some(), "the disk tier is open");
    let pgno = PageNo(300);
    let snap = replica.current();
    assert!(replica.io.fetcher.cached(&snap, pgno).is_none());

    let fetched = pause::arm_in("fetch.fetched", replica.io.storage.describe());
    let store_write = pause::arm_in("fetch.store_write", replica.io.storage.describe());
    // The first reader claims the frame and parks once its bytes are in.
    let first = {
        let (r, s) = (Arc::clone(&replica), Arc::clone(&snap));
        std::thread::spawn(move || {
            r.io.fetcher
                .read(&s, pgno, 1, &ScanBuf::default())
                .map(|p| p.map(|(page, _)| page[..9].to_vec()))
        })
    };
    fetched.wait_reached(WAIT).unwrap();
    // The second joins its flight.
    let (tx, rx) = mpsc::channel();
    {
        let (r, s) = (Arc::clone(&replica), Arc::clone(&snap));
        std::thread::spawn(move || {
            let got = r.io.fetcher.read(&s, pgno, 1, &ScanBuf::default());
            let _ = tx.send(got.map(|p| p.map(|(page, _)| page[..9].to_vec())));
        });
    }
    let deadline = Instant::now() + WAIT;
    while replica.io.stats.joined.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the second reader never joined");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The first goes on, and parks again at its store write.
    fetched.release();
    store_write.wait_reached(WAIT).unwrap();
    match rx.recv_timeout(WAIT) {
        Ok(Ok(Some(page))) => assert_eq!(&page, b"page 300 "),
        Ok(other) => panic!("the waiter failed: {other:?}"),
        Err(_) => panic!(
            "the waiter was not served while the fetcher's store write was parked: \
             the flight lands after the store write"
        ),
    }
    store_write.release();
    let page = first.join().unwrap().unwrap().unwrap();
    assert_eq!(&page, b"page 300 ");
}
