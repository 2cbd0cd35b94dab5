//! The read path above the decoder: finding a page's frame in a snapshot,
//! a page cache hit, and building the next snapshot when a file arrives
//! (which must cost O(pages changed): compare `apply_10_pages` with
//! `build_1m_pages`).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use litestream_vfs::cache::{FrameKey, PageCache};
use litestream_vfs::ltx::{
    FLAG_NO_CHECKSUM, FileName, Header, IndexEntry, PageIndex, PageNo, PageSize, Txid,
};
use litestream_vfs::replica::{FileRef, Snapshot};
use litestream_vfs::storage::{FileId, Level};

const PAGES: u32 = 1_000_000;

fn file_id(txid: u64) -> FileId {
    FileId {
        level: Level::L0,
        name: FileName {
            min: Txid(txid),
            max: Txid(txid),
        },
    }
}

fn file(txid: u64, commit: u32, pages: impl IntoIterator<Item = u32>) -> (Arc<FileRef>, PageIndex) {
    let entries: Vec<IndexEntry> = pages
        .into_iter()
        .enumerate()
        .map(|(i, p)| IndexEntry {
            pgno: PageNo(p),
            offset: 100 + 1000 * i as u64,
            size: 1000,
        })
        .collect();
    let header = Header {
        flags: FLAG_NO_CHECKSUM,
        page_size: PageSize::new(4096).unwrap(),
        commit,
        min_txid: Txid(txid),
        max_txid: Txid(txid),
        timestamp_ms: 1_700_000_000_000,
        pre_apply_checksum: 0,
        wal_offset: 0,
        wal_size: 0,
        wal_salt1: 0,
        wal_salt2: 0,
        node_id: 0,
    };
    let size = 200 + 1000 * entries.len() as u64;
    (
        Arc::new(FileRef::new(file_id(txid), size, header)),
        PageIndex { entries },
    )
}

/// Deterministic page numbers spread over the database.
fn spread(n: usize) -> Vec<u32> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + (x % u64::from(PAGES)) as u32
        })
        .collect()
}

fn snapshots(c: &mut Criterion) {
    let (base_file, base_index) = file(1, PAGES, 1..=PAGES);
    let base = Snapshot::build([(&base_file, &base_index)]).unwrap();

    let lookups = spread(4096);
    let mut i = 0;
    c.bench_function("snapshot_lookup_1m_pages", |b| {
        b.iter(|| {
            i = (i + 1) % lookups.len();
            black_box(&base).frame(PageNo(lookups[i])).map(|f| f.offset)
        })
    });

    let mut touched = spread(10);
    touched.sort_unstable();
    touched.dedup();
    let (f2, index2) = file(2, PAGES, touched);
    let mut g = c.benchmark_group("snapshot_next");
    g.bench_function("apply_10_pages_on_1m", |b| {
        b.iter(|| base.apply(black_box(&f2), &index2).unwrap())
    });
    g.sample_size(10);
    g.bench_function("build_1m_pages", |b| {
        b.iter(|| Snapshot::build([(&base_file, &base_index)]).unwrap())
    });
    g.finish();
}

fn cache(c: &mut Criterion) {
    let cache = PageCache::new(64 << 20);
    let files: Vec<Arc<FileRef>> = (1..=7).map(|t| file(t, 10, [1]).0).collect();
    let keys: Vec<FrameKey> = (0..4096u64)
        .map(|i| files[(i % 7) as usize].key(100 + 4200 * i))
        .collect();
    for k in &keys {
        cache.insert(*k, Arc::from(vec![7u8; 4096]));
    }
    let mut i = 0;
    c.bench_function("page_cache_hit_4k", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            cache.get(black_box(&keys[i])).unwrap()
        })
    });
}

criterion_group!(benches, snapshots, cache);
criterion_main!(benches);
