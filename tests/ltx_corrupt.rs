//! Corrupt input: real files truncated, flipped and mutated at random. The
//! decoder must answer every one with an error (or, for a damaged compressed
//! byte that happens to decompress to the same page, the same pages), and
//! never panic.
//!
//! `LTX_MUTATIONS=<n>` runs more random mutations than the default.

mod ltx_common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use litestream_vfs::ltx::{
    DecodedFile, FRAME_HEADER_SIZE, HEADER_SIZE, Header, INDEX_LOCATOR_SIZE, LtxBuilder, PageIndex,
    PageSize, TRAILER_SIZE, Trailer, Verifier, decode_file, decode_frame, index_region,
};
use ltx_common::{LtxFile, Rng, all_files};

/// Files cheap enough to decode thousands of times in a debug build: at
/// most 256 KiB of pages (every page size is still among them).
fn small_files() -> Vec<LtxFile> {
    all_files()
        .into_iter()
        .filter(|f| {
            let d = decode_file(&f.bytes).unwrap();
            d.pages.len() * d.header.page_size.bytes() <= 256 << 10
        })
        .collect()
}

/// Byte ranges of a valid file, by part.
struct Layout {
    header: std::ops::Range<usize>,
    /// Frame header and size field of each frame.
    frame_headers: Vec<std::ops::Range<usize>>,
    /// Compressed bytes of each frame.
    payloads: Vec<std::ops::Range<usize>>,
    /// End marker, index entries and index length.
    index: std::ops::Range<usize>,
    trailer: std::ops::Range<usize>,
}

fn layout(bytes: &[u8], d: &DecodedFile) -> Layout {
    let mut frame_headers = Vec::new();
    let mut payloads = Vec::new();
    for e in &d.index.entries {
        let o = e.offset as usize;
        let end = o + e.size as usize;
        frame_headers.push(o..o + FRAME_HEADER_SIZE + 4);
        payloads.push(o + FRAME_HEADER_SIZE + 4..end);
    }
    let last = d
        .index
        .entries
        .last()
        .map_or(HEADER_SIZE, |e| (e.offset + u64::from(e.size)) as usize);
    Layout {
        header: 0..HEADER_SIZE,
        frame_headers,
        payloads,
        index: last..bytes.len() - TRAILER_SIZE,
        trailer: bytes.len() - TRAILER_SIZE..bytes.len(),
    }
}

/// Up to `n` positions of `range`: all of them, or a deterministic sample.
fn positions(range: std::ops::Range<usize>, n: usize, rng: &mut Rng) -> Vec<usize> {
    if range.len() <= n {
        range.collect()
    } else {
        (0..n)
            .map(|_| range.start + rng.below(range.len()))
            .collect()
    }
}

#[test]
fn every_truncation_is_an_error() {
    for f in all_files() {
        let n = f.bytes.len();
        let lengths: Vec<usize> = if n <= 2000 {
            (0..n).collect()
        } else {
            let step = n / 200;
            (0..400)
                .chain(n - 400..n)
                .chain((0..n).step_by(step))
                .collect()
        };
        for len in lengths {
            assert!(
                decode_file(&f.bytes[..len]).is_err(),
                "{} cut at {len}",
                f.path
            );
        }
    }
}

#[test]
fn bytes_after_the_trailer_are_an_error() {
    for f in small_files() {
        for extra in [&[0u8][..], &[0; 24], &f.bytes[..100]] {
            let mut longer = f.bytes.clone();
            longer.extend_from_slice(extra);
            assert!(decode_file(&longer).is_err(), "{}", f.path);
        }
    }
}

#[test]
fn a_flipped_bit_outside_payloads_is_an_error() {
    let mut rng = Rng::new(7);
    for f in small_files() {
        let d = decode_file(&f.bytes).unwrap();
        let l = layout(&f.bytes, &d);
        let mut structure: Vec<usize> = positions(l.header.clone(), 40, &mut rng);
        let frame_headers: Vec<usize> = l.frame_headers.iter().flat_map(|r| r.clone()).collect();
        for _ in 0..frame_headers.len().min(40) {
            structure.push(frame_headers[rng.below(frame_headers.len())]);
        }
        structure.extend(positions(l.index.clone(), 40, &mut rng));
        structure.extend(l.trailer.clone());
        for at in structure {
            let bit = rng.below(8);
            let mut bad = f.bytes.clone();
            bad[at] ^= 1 << bit;
            assert!(
                decode_file(&bad).is_err(),
                "{}: byte {at} bit {bit} went unnoticed",
                f.path
            );
        }
    }
}

#[test]
fn a_flipped_payload_bit_never_yields_other_pages() {
    let mut rng = Rng::new(11);
    let mut caught = 0;
    let mut harmless = 0;
    for f in small_files() {
        let d = decode_file(&f.bytes).unwrap();
        let l = layout(&f.bytes, &d);
        let payload: Vec<usize> = l.payloads.iter().flat_map(|r| r.clone()).collect();
        for _ in 0..60 {
            let at = payload[rng.below(payload.len())];
            let mut bad = f.bytes.clone();
            bad[at] ^= 1 << rng.below(8);
            match decode_file(&bad) {
                Err(_) => caught += 1,
                Ok(got) => {
                    assert_eq!(got.pages, d.pages, "{}: byte {at}", f.path);
                    harmless += 1;
                }
            }
        }
    }
    assert!(caught > 500, "{caught} caught, {harmless} harmless");
}

#[test]
fn wrong_page_size_and_unknown_flags_are_errors() {
    for f in small_files() {
        let d = decode_file(&f.bytes).unwrap();
        let ps = d.header.page_size.get();
        for other in [
            512u32, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 0, 100, 3000,
        ] {
            if other == ps {
                continue;
            }
            let mut bad = f.bytes.clone();
            bad[8..12].copy_from_slice(&other.to_be_bytes());
            assert!(decode_file(&bad).is_err(), "{}: page size {other}", f.path);
        }
        for flags in [0x1u32, 0x4, 0x3, 0x8000_0000] {
            let mut bad = f.bytes.clone();
            bad[4..8].copy_from_slice(&flags.to_be_bytes());
            assert!(decode_file(&bad).is_err(), "{}: flags {flags:#x}", f.path);
        }
        let first = d.index.entries[0].offset as usize;
        for flags in [0x0u16, 0x2, 0x3, 0x8001] {
            let mut bad = f.bytes.clone();
            bad[first + 4..first + 6].copy_from_slice(&flags.to_be_bytes());
            assert!(
                decode_file(&bad).is_err(),
                "{}: frame flags {flags:#x}",
                f.path
            );
        }
    }
}

#[test]
fn an_index_length_that_does_not_fit_is_an_error() {
    for f in small_files() {
        let at = f.bytes.len() - INDEX_LOCATOR_SIZE;
        let len = u64::from_be_bytes(f.bytes[at..at + 8].try_into().unwrap());
        for other in [0, 1, len - 1, len + 1, f.bytes.len() as u64, u64::MAX] {
            let mut bad = f.bytes.clone();
            bad[at..at + 8].copy_from_slice(&other.to_be_bytes());
            assert!(
                decode_file(&bad).is_err(),
                "{}: index length {other}",
                f.path
            );
        }
    }
}

/// Feeds `bytes` to every decoding entry point. Returns the decode_file result.
fn decode_everything(bytes: &[u8]) -> Option<DecodedFile> {
    let header = Header::decode(bytes).ok();
    let _ = Trailer::decode(bytes);
    let page_size = header
        .as_ref()
        .map_or(PageSize::new(4096).unwrap(), |h| h.page_size);
    if let Ok(region) = index_region(bytes.len() as u64, bytes) {
        let index_bytes = bytes
            .get(region.start as usize..region.end as usize)
            .unwrap_or_default();
        if let Ok(index) = PageIndex::decode(index_bytes, region.start) {
            let mut verifier = Verifier::new(bytes, page_size).ok();
            for e in &index.entries {
                let frame = bytes
                    .get(e.offset as usize..(e.offset + u64::from(e.size)) as usize)
                    .unwrap_or_default();
                let _ = decode_frame(frame, page_size);
                if let Some(v) = verifier.as_mut()
                    && v.frame(frame).is_err()
                {
                    verifier = None;
                }
            }
            let marker = (region.start as usize).saturating_sub(FRAME_HEADER_SIZE);
            if let Some(v) = verifier {
                let _ = v.finish(bytes.get(marker..).unwrap_or_default());
            }
        }
    }
    decode_file(bytes).ok()
}

const INTERESTING_U32: [u32; 10] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    4096,
    65536,
    0x7fff_ffff,
    u32::MAX,
];

/// One random change of `bytes`; `donor` supplies spliced bytes.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, donor: &[u8]) {
    let len = bytes.len();
    if len == 0 {
        let n = 1 + rng.below(200);
        bytes.extend(rng.bytes(n));
        return;
    }
    let at = rng.below(len);
    match rng.below(11) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => bytes[at] = rng.next_u64() as u8,
        2 => {
            let v = INTERESTING_U32[rng.below(INTERESTING_U32.len())].to_be_bytes();
            let end = (at + 4).min(len);
            bytes[at..end].copy_from_slice(&v[..end - at]);
        }
        3 => {
            // A plausible but wrong u64 (lengths, offsets, TXIDs).
            let v = (len as u64)
                .wrapping_add(rng.below(64) as u64)
                .wrapping_sub(32);
            let end = (at + 8).min(len);
            bytes[at..end].copy_from_slice(&v.to_be_bytes()[..end - at]);
        }
        4 => bytes.truncate(at),
        5 => {
            let end = (at + 1 + rng.below(64)).min(len);
            bytes.drain(at..end);
        }
        6 => {
            let n = 1 + rng.below(64);
            let ins = rng.bytes(n);
            bytes.splice(at..at, ins);
        }
        7 => {
            let end = (at + 1 + rng.below(256)).min(len);
            let copy = bytes[at..end].to_vec();
            let to = rng.below(len);
            bytes.splice(to..to, copy);
        }
        8 => {
            if !donor.is_empty() {
                let from = rng.below(donor.len());
                let n = (1 + rng.below(512)).min(donor.len() - from).min(len - at);
                bytes[at..at + n].copy_from_slice(&donor[from..from + n]);
            }
        }
        9 => {
            let end = (at + 1 + rng.below(32)).min(len);
            bytes[at..end].fill(0);
        }
        _ => {
            // Aim at the end, where the index and trailer live.
            let tail = len.saturating_sub(1 + rng.below(64.min(len)));
            bytes[tail] ^= 1 << rng.below(8);
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let iterations: u64 = std::env::var("LTX_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let files = small_files();
    let originals: Vec<Option<DecodedFile>> =
        files.iter().map(|f| decode_file(&f.bytes).ok()).collect();
    let mut accepted = 0;
    for seed in 0..iterations {
        let mut rng = Rng::new(seed);
        let i = rng.below(files.len());
        let donor = &files[rng.below(files.len())].bytes;
        let mut bytes = files[i].bytes.clone();
        for _ in 0..1 + rng.below(3) {
            mutate(&mut rng, &mut bytes, donor);
        }
        let result = catch_unwind(AssertUnwindSafe(|| decode_everything(&bytes)));
        let Ok(decoded) = result else {
            panic!(
                "seed {seed} ({}): the decoder panicked on {} mutated bytes",
                files[i].path,
                bytes.len()
            );
        };
        if let Some(d) = decoded {
            let original = originals[i].as_ref().unwrap();
            assert_eq!(d.pages, original.pages, "seed {seed}: other pages accepted");
            accepted += 1;
        }
    }
    // Only a payload change that decompresses to the same page can pass.
    assert!(
        accepted * 20 < iterations,
        "{accepted} of {iterations} accepted"
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(3);
    for _ in 0..2000 {
        let n = rng.below(400);
        let mut bytes = rng.bytes(n);
        // Half of them start like an LTX file, to get past the magic.
        if rng.below(2) == 0 && bytes.len() >= 12 {
            bytes[..4].copy_from_slice(b"LTX1");
            bytes[4..8].copy_from_slice(&2u32.to_be_bytes());
            bytes[8..12].copy_from_slice(&512u32.to_be_bytes());
        }
        assert!(decode_everything(&bytes).is_none());
    }
}

#[test]
fn random_builder_files_round_trip() {
    let mut rng = Rng::new(5);
    for round in 0..150 {
        let page_size = 512u32 << rng.below(8);
        let ps = PageSize::new(page_size).unwrap();
        let legacy = rng.below(2) == 0;
        let mut pgnos: Vec<u32> = (0..1 + rng.below(12))
            .map(|_| 1 + rng.below(5000) as u32)
            .collect();
        pgnos.sort_unstable();
        pgnos.dedup();
        let commit = *pgnos.last().unwrap() + rng.below(10) as u32;
        let min = 1 + rng.below(100) as u64;
        let mut b = LtxBuilder::new(ps, min, min + rng.below(5) as u64, commit)
            .legacy_frames(legacy)
            .timestamp_ms(rng.next_u64() as i64 & i64::MAX);
        let mut pages = Vec::new();
        for p in &pgnos {
            let data = match rng.below(3) {
                0 => vec![0u8; page_size as usize],
                1 => rng.bytes(page_size as usize),
                _ => format!("page {p} of round {round} ")
                    .repeat(page_size as usize / 10)
                    .into_bytes()[..page_size as usize]
                    .to_vec(),
            };
            b = b.page(*p, &data);
            pages.push((*p, data));
        }
        let bytes = b.build();
        let d = decode_file(&bytes).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let got: Vec<(u32, Vec<u8>)> = d.pages.iter().map(|(p, v)| (p.0, v.clone())).collect();
        assert_eq!(got, pages, "round {round}");
        for (e, (_, page)) in d.index.entries.iter().zip(&pages) {
            let frame = &bytes[e.offset as usize..(e.offset + u64::from(e.size)) as usize];
            let f = decode_frame(frame, ps).unwrap();
            assert_eq!(&f.page, page);
            assert_eq!(f.header.is_sized_block(), !legacy);
        }
    }
}
