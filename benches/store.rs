//! The local store's hit path (`store::DiskStore::get`, format 2): the
//! slot's metadata (one 64-byte `pread`), the page read straight into the
//! buffer it is served in (one aligned `pread`), one XXH3 of the page. A
//! scan's run (`get_run`): one `pread` for 64 slots' metadata and one for
//! their pages, per page. Compared with what each step costs alone, and
//! with format 1's hit as it was (one unaligned `pread` of 64 + 4,096
//! bytes, an XXH3 of the slot header and of the page, a copy of the page),
//! reproduced here on a file of that layout.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use litestream_vfs::ltx::{PageNo, PageSize, Txid};
use litestream_vfs::store::{Capacity, DiskStore, RUN_MAX, Span, StateFacts, identity};
use twox_hash::XxHash3_64;

const PAGES: u32 = 4096;
const PS: usize = 4096;

fn filled(dir: &std::path::Path, name: &str, cap: Capacity) -> DiskStore {
    let ps = PageSize::new(PS as u32).unwrap();
    let path = dir.join(format!("{name}.pages"));
    let store = DiskStore::open(&path, "bench://replica", ps, cap, false).unwrap();
    let cps = [identity(0, Txid(1), Txid(10), 1, 2)];
    let since = |_p: PageNo| Some(Txid(5));
    store.attach(&StateFacts {
        txid: Txid(10),
        page_count: PAGES,
        checkpoints: &cps,
        since: &since,
    });
    let page = vec![7u8; PS];
    let span = Span::new(Txid(5), Txid(10));
    let batch: Vec<(PageNo, Span, &[u8])> =
        (1..=PAGES).map(|p| (PageNo(p), span, &page[..])).collect();
    store.put(store.lineage(), &batch);
    store
}

fn store_hit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let span = Span::new(Txid(5), Txid(10));
    let mut p = 0u32;
    let mut next = move || {
        p = (p * 7 + 13) % PAGES + 1;
        p
    };
    for (name, cap) in [
        ("disk_tier", Capacity::Bytes(1 << 30)),
        ("hydrated", Capacity::Unbounded),
    ] {
        let store = filled(dir.path(), name, cap);
        let lineage = store.lineage();
        c.bench_function(&format!("store_hit_{name}"), |b| {
            b.iter(|| black_box(store.get(lineage, PageNo(next()), span).unwrap()))
        });
        if name == "hydrated" {
            let wants = [span; RUN_MAX];
            c.bench_function("store_run_of_64_hydrated_per_page", |b| {
                b.iter_custom(|iters| {
                    let t = std::time::Instant::now();
                    for i in 0..iters.div_ceil(RUN_MAX as u64) {
                        let first = (i * RUN_MAX as u64) % u64::from(PAGES - RUN_MAX as u32) + 1;
                        black_box(store.get_run(lineage, PageNo(first as u32), &wants));
                    }
                    t.elapsed()
                })
            });
            c.bench_function("store_miss_absent", |b| {
                b.iter(|| black_box(store.get(lineage, PageNo(PAGES + 5), span)))
            });
        }
    }
    // The steps alone, on a plain file of the same pages.
    let path = dir.path().join("plain");
    std::fs::write(&path, vec![7u8; (PAGES as usize + 3) * (PS + 64)]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let read = |buf: &mut [u8], at: u64| {
        std::os::unix::fs::FileExt::read_exact_at(&file, buf, at).unwrap();
    };
    let mut meta = [0u8; 64];
    c.bench_function("pread_64_bytes", |b| {
        b.iter(|| {
            read(&mut meta, u64::from(next()) * 64);
            black_box(&meta);
        })
    });
    let mut page = vec![0u8; PS];
    c.bench_function("pread_4096_aligned", |b| {
        b.iter(|| {
            read(&mut page, u64::from(next() - 1) * PS as u64);
            black_box(&page);
        })
    });
    c.bench_function("xxh3_4096", |b| {
        b.iter(|| black_box(XxHash3_64::oneshot(black_box(&page))))
    });
    // Format 1's hit: one unaligned pread of a 64-byte header and its page,
    // two checksums, a copy out of the scratch buffer.
    let mut slot = vec![0u8; 64 + PS];
    c.bench_function("format1_hit_reproduced", |b| {
        b.iter(|| {
            read(&mut slot, 8192 + u64::from(next() - 1) * (64 + PS) as u64);
            let (head, body) = slot.split_at(64);
            black_box(XxHash3_64::oneshot(&head[..56]));
            black_box(XxHash3_64::oneshot(body));
            let page: Arc<[u8]> = Arc::from(body);
            black_box(page)
        })
    });
}

criterion_group!(benches, store_hit);
criterion_main!(benches);
