//! Decoding cost of the LTX hot path: one frame into one page (what every
//! cache miss pays), and a whole file with its checksum verified.

use std::hint::black_box;
use std::io::Read;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use litestream_vfs::ltx::{LtxBuilder, PageSize, decode_file, decode_frame};

/// A real 4 KiB SQLite page from the basic-4k fixture: the page Litestream
/// wrote with most bytes in it.
fn fixture_page() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/basic-4k/replica/ltx/0/0000000000000002-0000000000000002.ltx"
    );
    let file = decode_file(&std::fs::read(path).unwrap()).unwrap();
    file.pages
        .into_iter()
        .map(|(_, p)| p)
        .max_by_key(|p| p.iter().filter(|b| **b != 0).count())
        .unwrap()
}

/// The frame of `page` as the builder writes it, in either encoding.
fn frame_of(page: &[u8], legacy: bool) -> Vec<u8> {
    let ps = PageSize::new(page.len() as u32).unwrap();
    let bytes = LtxBuilder::new(ps, 1, 1, 1)
        .legacy_frames(legacy)
        .page(1, page)
        .build();
    let file = decode_file(&bytes).unwrap();
    let e = file.index.entries[0];
    bytes[e.offset as usize..(e.offset + u64::from(e.size)) as usize].to_vec()
}

fn frames(c: &mut Criterion) {
    let page = fixture_page();
    let ps = PageSize::new(4096).unwrap();
    let sized = frame_of(&page, false);
    let legacy = frame_of(&page, true);
    assert_eq!(decode_frame(&sized, ps).unwrap().page, page);
    assert_eq!(decode_frame(&legacy, ps).unwrap().page, page);

    let mut g = c.benchmark_group("frame_decode_4k");
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("sized_block", |b| {
        b.iter(|| decode_frame(black_box(&sized), ps).unwrap())
    });
    g.bench_function("lz4_frame", |b| {
        b.iter(|| decode_frame(black_box(&legacy), ps).unwrap())
    });
    // The same legacy payload through lz4_flex's streaming FrameDecoder,
    // which the decoder used before: it zeroes a buffer as large as the
    // frame's declared block size (4 MB here) for every page.
    let payload = &legacy[6..];
    g.bench_function("lz4_frame_via_lz4_flex_FrameDecoder", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(4096);
            lz4_flex::frame::FrameDecoder::new(black_box(payload))
                .read_to_end(&mut out)
                .unwrap();
            out
        })
    });
    g.finish();
}

fn files(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/basic-4k/replica/ltx/0/0000000000000002-0000000000000002.ltx"
    );
    let bytes = std::fs::read(path).unwrap();
    let pages = decode_file(&bytes).unwrap().pages.len() as u64;
    let mut g = c.benchmark_group("decode_file");
    g.throughput(Throughput::Bytes(pages * 4096));
    g.bench_function("basic_4k_38_pages", |b| {
        b.iter(|| decode_file(black_box(&bytes)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, frames, files);
criterion_main!(benches);
