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
    // Every page but the lock page, as Litestream writes a snapshot.
    for p in (1..=pages).filter(|p| PageNo(*p) != ltx::lock_page(ps)) {
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

/// Stores an LTX file of `pages` (page number, content) in `mem` and
/// returns its listing.
fn put_file(
    mem: &Mem,
    level: Level,
    txids: (u64, u64),
    commit: u32,
    pages: &[(u32, Vec<u8>)],
) -> FileInfo {
    let mut b = LtxBuilder::new(PageSize::new(4096).unwrap(), txids.0, txids.1, commit);
    for (p, content) in pages {
        b = b.page(*p, content);
    }
    let bytes = b.build();
    let id = FileId {
        level,
        name: FileName {
            min: Txid(txids.0),
            max: Txid(txids.1),
        },
    };
    mem.files.lock().unwrap().insert(id, bytes.clone());
    FileInfo {
        id,
        size: bytes.len() as u64,
        version: 5,
    }
}

/// Pages `from..=to` of incompressible bytes.
fn noisy(pages: std::ops::RangeInclusive<u32>) -> Vec<(u32, Vec<u8>)> {
    pages
        .map(|p| (p, crate::replica::fetch::tests::noise(p)))
        .collect()
}

/// Loads `info` and builds a snapshot on it, measuring the most memory the
/// thread held at once; the error of either step.
fn load_and_build(mem: &Mem, info: FileInfo) -> (std::result::Result<u32, Error>, usize) {
    crate::alloc::meter::peak_of(|| {
        let loaded = run(load(mem, info, None))?;
        let snap = crate::replica::Snapshot::build([(&loaded.file, &loaded.index)])?;
        Ok(snap.page_count)
    })
}

/// Memory a load of a file of a few MiB may take: the head, the tail and
/// two pieces of the index in flight, decoded pages, the index itself.
const LOAD_PEAK_MAX: usize = 16 << 20;

#[test]
fn a_snapshot_that_claims_billions_of_pages_is_refused_in_little_memory() {
    let mem = Mem::default();
    let far = |p: u32| noisy(p..=p);
    let cases = [
        // A valid small file but for its header's commit: read whole.
        (
            4_000_000_000,
            noisy(1..=3),
            "a snapshot of 4000000000 pages holds pages 1 to 3 only",
        ),
        // Its page index jumps to a page of billions: read whole, then
        // large (the index streamed into snapshot chunks).
        (
            4_000_000_000,
            [noisy(1..=2), far(3_999_999_999)].concat(),
            "snapshot page 3999999999 where page 3 is due",
        ),
        (
            u32::MAX - 1,
            [noisy(1..=300), far(u32::MAX - 1)].concat(),
            "snapshot page 4294967294 where page 301 is due",
        ),
        // A header beyond SQLite's largest database.
        (u32::MAX, noisy(1..=3), "more pages than SQLite allows"),
    ];
    for (commit, pages, says) in cases {
        let info = put_file(&mem, Level::SNAPSHOT, (1, 1), commit, &pages);
        let (got, peak) = load_and_build(&mem, info);
        let e = got.expect_err(says);
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        let text = e.to_string();
        let file = "mem level 9 file 0000000000000001-0000000000000001.ltx";
        assert!(text.contains(says) && text.contains(file), "{text}");
        assert!(peak < LOAD_PEAK_MAX, "{says}: {peak} bytes held at once");
    }
    // The same pages as a valid snapshot: loaded, in as little memory.
    for pages in [3, 300] {
        let info = put_file(&mem, Level::SNAPSHOT, (1, 1), pages, &noisy(1..=pages));
        let (got, peak) = load_and_build(&mem, info);
        assert_eq!(got.unwrap(), pages);
        assert!(
            peak < LOAD_PEAK_MAX,
            "{pages} pages: {peak} bytes held at once"
        );
    }
}

#[test]
fn a_file_cut_inside_its_page_index_is_refused() {
    let mem = Mem::default();
    for pages in [3, 300] {
        let info = put_file(&mem, Level::SNAPSHOT, (1, 1), pages, &noisy(1..=pages));
        let bytes = mem.files.lock().unwrap()[&info.id].clone();
        let region = ltx::index_region(info.size, &bytes).unwrap();
        // Listed (and stored) shorter: the locator read is not the file's.
        for cut in [region.start + 2, region.end - 1, info.size - 1] {
            mem.files
                .lock()
                .unwrap()
                .insert(info.id, bytes[..cut as usize].to_vec());
            let short = FileInfo { size: cut, ..info };
            let (got, peak) = load_and_build(&mem, short);
            let e = got.expect_err("a cut file");
            assert!(
                matches!(e, Error::Corrupt { .. }),
                "{pages} pages, cut at {cut}: {e}"
            );
            assert!(peak < LOAD_PEAK_MAX, "{peak} bytes held at once");
        }
        // An index length that claims more than the file holds.
        let mut long = bytes.clone();
        let at = long.len() - ltx::INDEX_LOCATOR_SIZE;
        long[at..at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        mem.files.lock().unwrap().insert(info.id, long);
        let e = load_and_build(&mem, info)
            .0
            .expect_err("a long index length");
        assert!(e.to_string().contains("index length"), "{e}");
    }
}

#[test]
fn a_change_to_a_page_of_billions_costs_a_pointer_per_chunk() {
    // Not a snapshot: any page up to its commit may be in it, alone.
    let mem = Mem::default();
    let base = put_file(&mem, Level::SNAPSHOT, (1, 1), 3, &noisy(1..=3));
    let far = u32::MAX - 1;
    let change = put_file(&mem, Level::L0, (2, 2), far, &noisy(far..=far));
    let (snap, peak) = crate::alloc::meter::peak_of(|| {
        let a = run(load(&mem, base, None)).unwrap();
        let b = run(load(&mem, change, None)).unwrap();
        let s = crate::replica::Snapshot::build([(&a.file, &a.index), (&b.file, &b.index)]);
        s.unwrap()
    });
    assert_eq!(snap.page_count, far);
    assert!(snap.frame(PageNo(far)).is_some() && snap.frame(PageNo(3)).is_some());
    assert!(snap.frame(PageNo(4)).is_none() && snap.frame(PageNo(far - 1)).is_none());
    // 4,194,304 chunk pointers of 8 bytes, one empty chunk shared.
    assert!(peak < 40 << 20, "{peak} bytes held at once");
}

#[test]
fn a_small_file_of_empty_pages_is_not_held_decompressed_whole() {
    // 20,000 empty pages in under 1 MiB: 80 MiB once decompressed.
    let mem = Mem::default();
    let (info, _) = empty_snapshot(&mem, 20_000);
    assert!(info.size <= WHOLE_FILE_MAX, "{}", info.size);
    let (loaded, peak) = crate::alloc::meter::peak_of(|| run(load(&mem, info, None)).unwrap());
    assert!(loaded.verified, "every page was still checked");
    assert_eq!(loaded.index.len(), 20_000);
    assert_eq!(loaded.pages.len(), WHOLE_PAGES_MAX / 4096);
    assert!(
        loaded
            .index
            .entries()
            .zip(&loaded.pages)
            .all(|(e, (p, _))| e.pgno == *p)
    );
    assert!(peak < LOAD_PEAK_MAX, "{peak} bytes held at once");
}
