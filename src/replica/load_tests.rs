//! Loading files through the blobs kept on disk: what a restart fetches.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::ltx::{FileName, LtxBuilder, PageSize, Txid};
use crate::storage::{BoxFuture, FileId, StorageError};

/// Files in memory; counts reads.
#[derive(Debug, Default)]
struct Mem {
    files: Mutex<HashMap<FileId, Vec<u8>>>,
    reads: AtomicU64,
}

impl Storage for Mem {
    fn describe(&self) -> &str {
        "mem"
    }

    fn list(
        &self,
        _level: Level,
        _after: Option<FileName>,
    ) -> BoxFuture<'_, std::result::Result<Vec<FileInfo>, StorageError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn read(
        &self,
        file: FileId,
        range: Range<u64>,
    ) -> BoxFuture<'_, std::result::Result<Vec<u8>, StorageError>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let bytes =
            self.files.lock().unwrap()[&file][range.start as usize..range.end as usize].to_vec();
        Box::pin(async move { Ok(bytes) })
    }
}

/// A snapshot (TXID 1) of `pages` pages of `content`, stored in `mem`
/// with `version`; returns its listing and its bytes.
fn put_snapshot(
    mem: &Mem,
    pages: u32,
    version: u64,
    content: impl Fn(u32) -> Vec<u8>,
) -> (FileInfo, Vec<u8>) {
    let ps = PageSize::new(4096).unwrap();
    let mut b = LtxBuilder::new(ps, 1, 1, pages);
    for p in 1..=pages {
        b = b.page(p, &content(p));
    }
    let bytes = b.build();
    let id = FileId {
        level: Level::SNAPSHOT,
        name: FileName {
            min: Txid(1),
            max: Txid(1),
        },
    };
    let info = FileInfo {
        id,
        size: bytes.len() as u64,
        version,
    };
    mem.files.lock().unwrap().insert(id, bytes.clone());
    (info, bytes)
}

/// A snapshot of `pages` pages of incompressible bytes (large ones are not
/// read whole), stored in `mem` with `version`.
fn snapshot(mem: &Mem, pages: u32, version: u64) -> FileInfo {
    put_snapshot(mem, pages, version, crate::replica::fetch::tests::noise).0
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_second_load_of_a_listed_version_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::new(dir.path().join("idx"), blob_is_level0);
    for pages in [8, 400] {
        let mem = Mem::default();
        let info = snapshot(&mem, pages, 7);
        assert_eq!(
            pages > 8,
            info.size > WHOLE_FILE_MAX,
            "one small, one large"
        );
        let first = run(load(&mem, info, Some(&blobs))).unwrap();
        let fetched = mem.reads.load(Ordering::Relaxed);
        assert!(fetched > 0 && !first.kept);
        let again = run(load(&mem, info, Some(&blobs))).unwrap();
        assert_eq!(
            mem.reads.load(Ordering::Relaxed),
            fetched,
            "{pages} pages: no read"
        );
        assert!(again.kept);
        assert_eq!(again.file.header, first.file.header);
        assert!(again.index.entries().eq(first.index.entries()));
        assert_eq!(
            again.file.file_checksum.get(),
            first.file.file_checksum.get()
        );
        // A file written again lists another version: fetched again.
        let rewritten = FileInfo { version: 8, ..info };
        assert!(!run(load(&mem, rewritten, Some(&blobs))).unwrap().kept);
        // A backend that lists no version never uses the blobs.
        let untold = FileInfo { version: 0, ..info };
        assert!(!run(load(&mem, untold, Some(&blobs))).unwrap().kept);
    }
}

#[test]
fn a_damaged_blob_is_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::new(dir.path().to_owned(), blob_is_level0);
    let mem = Mem::default();
    let info = snapshot(&mem, 400, 7);
    run(load(&mem, info, Some(&blobs))).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let before = mem.reads.load(Ordering::Relaxed);
    let again = run(load(&mem, info, Some(&blobs))).unwrap();
    assert!(!again.kept && mem.reads.load(Ordering::Relaxed) > before);
}

/// A snapshot of `pages` empty pages: frames of a few dozen bytes, so the
/// page index is longer than the tail read with the header.
fn empty_snapshot(mem: &Mem, pages: u32) -> (FileInfo, Vec<u8>) {
    put_snapshot(mem, pages, 3, |_| vec![0u8; 4096])
}

#[test]
fn a_long_index_is_read_in_pieces_into_snapshot_chunks() {
    let mem = Mem::default();
    let (info, bytes) = empty_snapshot(&mem, 60_000);
    assert!(info.size > WHOLE_FILE_MAX);
    let region = ltx::index_region(info.size, &bytes).unwrap();
    assert!(
        region.end - region.start > TAIL_MIN,
        "the index starts before the tail"
    );
    let loaded = run(load(&mem, info, None)).unwrap();
    // Head and tail, then the index's front in one piece.
    assert_eq!(mem.reads.load(Ordering::Relaxed), 3);
    assert!(matches!(loaded.index, FileIndex::Dense(_)));
    let expected = ltx::decode_file(&bytes).unwrap().index.entries;
    assert!(loaded.index.entries().eq(expected.iter().copied()));
    assert_eq!(loaded.pages.len(), super::super::LEADING_PAGES as usize);
    let snap = crate::replica::Snapshot::build([(&loaded.file, &loaded.index)]).unwrap();
    assert_eq!(snap.page_count, 60_000);
    let last = expected.last().unwrap();
    assert_eq!(snap.frame(last.pgno).unwrap().offset, last.offset);
    assert!(snap.index_bytes() < 60_000 * 5, "{}", snap.index_bytes());
}

#[test]
fn a_damaged_long_index_is_corrupt() {
    let mem = Mem::default();
    let (info, bytes) = empty_snapshot(&mem, 60_000);
    let region = ltx::index_region(info.size, &bytes).unwrap();
    // A byte of the index's front (read as a piece), and of its end (read
    // with the tail): a page number out of order.
    for at in [region.start + 1000, region.end - 40] {
        let mut bad = bytes.clone();
        bad[at as usize] ^= 0x40;
        mem.files.lock().unwrap().insert(info.id, bad);
        let e = run(load(&mem, info, None)).err().unwrap();
        assert!(matches!(e, Error::Corrupt { .. }), "{at}: {e}");
    }
}

/// [`Mem`] as an object store answers: a read's body handed over in small
/// chunks as it arrives (`streams_bodies`); counts requests.
#[derive(Debug, Default)]
struct Streamed {
    mem: Mem,
}

impl Storage for Streamed {
    fn describe(&self) -> &str {
        "streamed"
    }

    fn list(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> BoxFuture<'_, std::result::Result<Vec<FileInfo>, StorageError>> {
        self.mem.list(level, after)
    }

    fn read(
        &self,
        file: FileId,
        range: Range<u64>,
    ) -> BoxFuture<'_, std::result::Result<Vec<u8>, StorageError>> {
        self.mem.read(file, range)
    }

    fn streams_bodies(&self) -> bool {
        true
    }

    fn read_version_chunks(
        &self,
        file: FileId,
        _version: u64,
        range: Range<u64>,
    ) -> BoxFuture<'_, std::result::Result<crate::storage::Chunks<'_>, StorageError>> {
        Box::pin(async move {
            let body = self.mem.read(file, range).await?;
            let chunks: Vec<_> = body
                .chunks(16 * 1024 + 7)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect();
            let chunks: crate::storage::Chunks<'_> = Box::pin(futures_util::stream::iter(chunks));
            Ok(chunks)
        })
    }
}

#[test]
fn a_long_index_from_a_store_that_streams_is_one_request() {
    let s = Streamed::default();
    let (info, bytes) = empty_snapshot(&s.mem, 300_000);
    let region = ltx::index_region(info.size, &bytes).unwrap();
    assert!(
        region.end - region.start > 2 * PIECE,
        "an index longer than two pieces"
    );
    let loaded = run(load(&s, info, None)).unwrap();
    // Head and tail, then the index's front in one streamed request (in
    // pieces it would be three).
    assert_eq!(s.mem.reads.load(Ordering::Relaxed), 3);
    let expected = ltx::decode_file(&bytes).unwrap().index.entries;
    assert!(loaded.index.entries().eq(expected.iter().copied()));
    // A damaged byte in the streamed front is still corruption.
    let mut bad = bytes.clone();
    bad[(region.start + PIECE + 1000) as usize] ^= 0x40;
    s.mem.files.lock().unwrap().insert(info.id, bad);
    let e = run(load(&s, info, None)).err().unwrap();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
}
