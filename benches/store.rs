//! The local store's hit path (`store::DiskStore::get`): one `pread` of a
//! slot, two checksums, one copy. Compared with a page-cache hit and with a
//! plain `pread` of the same bytes (the floor any on-disk store pays).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use litestream_vfs::ltx::{PageNo, PageSize, Txid};
use litestream_vfs::store::{Capacity, DiskStore, Span, StateFacts, identity};

const PAGES: u32 = 4096;

fn store_hit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ps = PageSize::new(4096).unwrap();
    for (name, cap) in [
        ("disk_tier", Capacity::Bytes(1 << 30)),
        ("hydrated", Capacity::Unbounded),
    ] {
        let path = dir.path().join(format!("{name}.pages"));
        let store = DiskStore::open(&path, "bench://replica", ps, cap, false).unwrap();
        let cps = [identity(0, Txid(1), Txid(10), 1, 2)];
        let since = |_p: PageNo| Some(Txid(5));
        store.attach(&StateFacts {
            txid: Txid(10),
            page_count: PAGES,
            checkpoints: &cps,
            since: &since,
        });
        let page = vec![7u8; 4096];
        let span = Span::new(Txid(5), Txid(10));
        let batch: Vec<(PageNo, Span, &[u8])> =
            (1..=PAGES).map(|p| (PageNo(p), span, &page[..])).collect();
        store.put(&batch);
        let mut p = 0u32;
        c.bench_function(&format!("store_hit_{name}"), |b| {
            b.iter(|| {
                p = (p * 7 + 13) % PAGES + 1;
                black_box(store.get(PageNo(p), span).unwrap())
            })
        });
        if name == "disk_tier" {
            c.bench_function("store_miss_absent", |b| {
                b.iter(|| black_box(store.get(PageNo(PAGES + 5), span)))
            });
            let file = std::fs::File::open(&path).unwrap();
            let mut buf = vec![0u8; 4096 + 64];
            c.bench_function("pread_4160_bytes", |b| {
                b.iter(|| {
                    p = (p * 7 + 13) % PAGES + 1;
                    std::os::unix::fs::FileExt::read_exact_at(
                        &file,
                        &mut buf,
                        8192 + u64::from(p - 1) * 4160,
                    )
                    .unwrap();
                    black_box(&buf);
                })
            });
        }
    }
}

criterion_group!(benches, store_hit);
criterion_main!(benches);
