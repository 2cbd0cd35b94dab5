//! A new snapshot costs O(pages changed), not O(database size): applying a
//! small file to a 1,000,000-page snapshot copies only the chunks of the
//! page index that it touches and shares every other one. Checked through
//! structure sharing, not timing.

use std::collections::BTreeSet;
use std::sync::Arc;

use litestream_vfs::ltx::{
    FLAG_NO_CHECKSUM, FileName, Header, IndexEntry, PageIndex, PageNo, PageSize, Txid, lock_page,
};
use litestream_vfs::replica::{FileRef, Snapshot};
use litestream_vfs::storage::{FileId, Level};

const PAGES: u32 = 1_000_000;

fn header(min: u64, max: u64, commit: u32) -> Header {
    Header {
        flags: FLAG_NO_CHECKSUM,
        page_size: PageSize::new(4096).unwrap(),
        commit,
        min_txid: Txid(min),
        max_txid: Txid(max),
        timestamp_ms: 1_700_000_000_000 + min as i64,
        pre_apply_checksum: 0,
        wal_offset: 0,
        wal_size: 0,
        wal_salt1: 0,
        wal_salt2: 0,
        node_id: 0,
    }
}

/// A file of TXID `txid` holding `pages`, with made-up frame locations.
fn file(txid: u64, commit: u32, pages: impl IntoIterator<Item = u32>) -> (Arc<FileRef>, PageIndex) {
    let entries: Vec<IndexEntry> = pages
        .into_iter()
        .enumerate()
        .map(|(i, p)| IndexEntry {
            pgno: PageNo(p),
            offset: 100 + 50 * i as u64,
            size: 50,
        })
        .collect();
    let level = if txid == 1 {
        Level::SNAPSHOT
    } else {
        Level::L0
    };
    let id = FileId {
        level,
        name: FileName {
            min: Txid(txid),
            max: Txid(txid),
        },
    };
    let size = 200 + 50 * entries.len() as u64;
    (
        Arc::new(FileRef::new(id, size, header(txid, txid, commit))),
        PageIndex { entries },
    )
}

fn big_snapshot() -> (Snapshot, Arc<FileRef>) {
    let lock = lock_page(PageSize::new(4096).unwrap()).0;
    let (f, index) = file(1, PAGES, (1..=PAGES).filter(|p| *p != lock));
    let snap = Snapshot::build([(&f, &index)]).unwrap();
    (snap, f)
}

fn chunk_of(pgno: u32) -> usize {
    (pgno as usize - 1) / Snapshot::PAGES_PER_CHUNK
}

#[test]
fn applying_ten_pages_copies_only_their_chunks() {
    let (base, base_file) = big_snapshot();
    let chunks = base.chunk_count();
    assert_eq!(chunks, (PAGES as usize).div_ceil(Snapshot::PAGES_PER_CHUNK));
    assert_eq!(base.shared_chunks_with(&base), chunks);

    let touched = [
        1, 2, 1000, 5000, 262_144, 500_000, 500_001, 777_777, 999_999, PAGES,
    ];
    let (f2, index2) = file(2, PAGES, touched);
    let next = base.apply(&f2, &index2).unwrap();
    let touched_chunks: BTreeSet<usize> = touched.iter().map(|p| chunk_of(*p)).collect();
    assert_eq!(next.chunk_count(), chunks);
    assert_eq!(
        next.shared_chunks_with(&base),
        chunks - touched_chunks.len(),
        "only the {} touched chunks are copied",
        touched_chunks.len()
    );

    // The new snapshot sees the new frames; the old one is unchanged.
    for p in touched {
        assert!(Arc::ptr_eq(&next.frame(PageNo(p)).unwrap().file, &f2));
        assert!(Arc::ptr_eq(
            &base.frame(PageNo(p)).unwrap().file,
            &base_file
        ));
    }
    for p in [3, 1025, 262_146, 600_000] {
        assert!(Arc::ptr_eq(
            &next.frame(PageNo(p)).unwrap().file,
            &base_file
        ));
    }
    assert!(next.frame(PageNo(262_145)).is_none(), "the lock page");
    assert_eq!((next.txid, base.txid), (Txid(2), Txid(1)));

    // A third version shares with both that came before.
    let (f3, index3) = file(3, PAGES, [2]);
    let third = next.apply(&f3, &index3).unwrap();
    assert_eq!(third.shared_chunks_with(&next), chunks - 1);
    assert_eq!(
        third.shared_chunks_with(&base),
        chunks - touched_chunks.len()
    );
}

#[test]
fn shrinking_and_growing_copy_only_the_edge() {
    let (base, _) = big_snapshot();
    let chunks = base.chunk_count();

    // Shrink to 500,000 pages: chunks above are dropped, the cut chunk is
    // copied (its tail cleared), page 7's chunk is copied; the rest shared.
    let (f2, index2) = file(2, 500_000, [7]);
    let small = base.apply(&f2, &index2).unwrap();
    let kept = 500_000usize.div_ceil(Snapshot::PAGES_PER_CHUNK);
    assert_eq!(small.chunk_count(), kept);
    assert_eq!(small.shared_chunks_with(&base), kept - 2);
    assert!(small.frame(PageNo(500_001)).is_none());
    assert!(small.frame(PageNo(500_000)).is_some());
    assert_eq!(small.page_count, 500_000);

    // Grow by one page past the end: only the last chunk changes.
    let (f3, index3) = file(2, PAGES + 1, [PAGES + 1]);
    let grown = base.apply(&f3, &index3).unwrap();
    assert_eq!(
        grown.chunk_count(),
        (PAGES as usize + 1).div_ceil(Snapshot::PAGES_PER_CHUNK)
    );
    assert_eq!(grown.shared_chunks_with(&base), chunks - 1);
    assert_eq!(grown.page_count, PAGES + 1);
}
