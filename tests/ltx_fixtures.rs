//! The decoder against real files written by Litestream 0.5.17
//! (`tests/fixtures/*/replica/ltx/<level>/*.ltx`).

mod ltx_common;

use std::collections::BTreeMap;

use litestream_vfs::ltx::{
    FLAG_NO_CHECKSUM, FRAME_HEADER_SIZE, HEADER_SIZE, INDEX_LOCATOR_SIZE, PageIndex, PageNo,
    decode_file, decode_frame, file_checksum_of, index_region, lock_page,
};
use ltx_common::fixtures;

#[test]
fn every_fixture_file_is_listed_and_decodes() {
    let all = fixtures();
    assert!(
        all.len() >= 4,
        "fixtures: {:?}",
        all.iter().map(|f| &f.name).collect::<Vec<_>>()
    );
    for fx in &all {
        assert!(!fx.files.is_empty(), "{}", fx.name);
        assert_eq!(
            fx.files.len(),
            fx.manifest_files.len(),
            "{}: files on disk vs manifest",
            fx.name
        );
        for f in &fx.files {
            assert_eq!(
                fx.manifest_files.get(&f.rel),
                Some(&(f.bytes.len() as u64)),
                "{}: manifest size",
                f.rel
            );
            let d = decode_file(&f.bytes).unwrap_or_else(|e| panic!("{}: {e}", f.path));
            let h = &d.header;
            assert_eq!(
                (h.min_txid, h.max_txid),
                (f.name.min, f.name.max),
                "{}",
                f.path
            );
            assert_eq!(h.page_size.get(), fx.page_size, "{}", f.path);
            assert_eq!(h.flags, FLAG_NO_CHECKSUM, "{}", f.path);
            assert_eq!(h.pre_apply_checksum, 0, "{}", f.path);
            assert_eq!(d.trailer.post_apply_checksum, 0, "{}", f.path);
            assert!(
                fx.first_time_ms - 60_000 < h.timestamp_ms
                    && h.timestamp_ms < fx.last_time_ms + 60_000,
                "{}: timestamp {} outside the run",
                f.path,
                h.timestamp_ms
            );
            assert!(!d.pages.is_empty(), "{}", f.path);
            let lock = lock_page(h.page_size);
            for (pgno, page) in &d.pages {
                assert_eq!(page.len(), h.page_size.bytes(), "{}", f.path);
                assert!(
                    pgno.0 >= 1 && pgno.0 <= h.commit,
                    "{}: page {}",
                    f.path,
                    pgno.0
                );
                assert_ne!(*pgno, lock, "{}", f.path);
            }
        }
    }
}

#[test]
fn page_index_matches_the_frames() {
    for fx in fixtures() {
        for f in &fx.files {
            let d = decode_file(&f.bytes).unwrap();
            let len = f.bytes.len() as u64;

            // A reader that only has the tail of the file finds the same index.
            let tail_len = f.bytes.len().min(4096);
            let tail = &f.bytes[f.bytes.len() - tail_len..];
            let region = index_region(len, tail).unwrap();
            assert_eq!(region.end, len - INDEX_LOCATOR_SIZE as u64);
            let index_bytes = &f.bytes[region.start as usize..region.end as usize];
            assert_eq!(
                PageIndex::decode(index_bytes, region.start).unwrap(),
                d.index,
                "{}",
                f.path
            );

            // Frames are contiguous from the header to the end marker, each
            // holds the page its entry names, and decodes alone.
            let mut at = HEADER_SIZE as u64;
            for (e, (pgno, page)) in d.index.entries.iter().zip(&d.pages) {
                assert_eq!(e.pgno, *pgno);
                assert_eq!(e.offset, at, "{}: page {}", f.path, pgno.0);
                let bytes = &f.bytes[e.offset as usize..(e.offset + u64::from(e.size)) as usize];
                let frame = decode_frame(bytes, d.header.page_size).unwrap();
                assert_eq!(frame.header.pgno, e.pgno);
                assert!(
                    frame.header.is_sized_block(),
                    "Litestream 0.5.17 writes sized blocks"
                );
                assert_eq!(&frame.page, page);
                assert!(d.index.get(e.pgno) == Some(e));
                at += u64::from(e.size);
            }
            assert_eq!(at + FRAME_HEADER_SIZE as u64, region.start, "{}", f.path);
            assert!(
                f.bytes[at as usize..region.start as usize]
                    .iter()
                    .all(|b| *b == 0)
            );
            for w in d.index.entries.windows(2) {
                assert!(w[0].pgno < w[1].pgno, "{}: index sorted", f.path);
            }
        }
    }
}

#[test]
fn snapshots_hold_every_page_but_the_lock_page() {
    let mut snapshots = 0;
    for fx in fixtures() {
        for f in fx.files.iter().filter(|f| f.name.min.0 == 1) {
            let d = decode_file(&f.bytes).unwrap();
            assert!(d.header.is_snapshot());
            let lock = lock_page(d.header.page_size);
            let want: Vec<u32> = (1..=d.header.commit).filter(|p| *p != lock.0).collect();
            let got: Vec<u32> = d.pages.iter().map(|(p, _)| p.0).collect();
            assert_eq!(got, want, "{}", f.path);
            snapshots += 1;
        }
    }
    assert!(snapshots >= 12, "{snapshots}");
}

#[test]
fn checksum_follows_the_spec_definition() {
    // Recomputed here from the spec's words, independently of decode_file.
    for fx in fixtures() {
        for f in &fx.files {
            let d = decode_file(&f.bytes).unwrap();
            let b = &f.bytes;
            let mut covered = b[..HEADER_SIZE].to_vec();
            for (e, (_, page)) in d.index.entries.iter().zip(&d.pages) {
                let o = e.offset as usize;
                covered.extend_from_slice(&b[o..o + FRAME_HEADER_SIZE + 4]);
                covered.extend_from_slice(page);
            }
            let index_start = b.len() - INDEX_LOCATOR_SIZE - index_len(b);
            covered.extend_from_slice(&b[index_start - FRAME_HEADER_SIZE..b.len() - 8]);
            let stored = u64::from_be_bytes(b[b.len() - 8..].try_into().unwrap());
            assert_eq!(file_checksum_of(&covered), stored, "{}", f.path);
            assert_eq!(stored, d.trailer.file_checksum);
            assert_ne!(stored & 1 << 63, 0);
        }
    }
}

fn index_len(b: &[u8]) -> usize {
    let at = b.len() - INDEX_LOCATOR_SIZE;
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap()) as usize
}

/// Applies the files of one level in TXID order: the newest copy of each
/// page wins and `commit` truncates.
fn replay<'a>(
    files: impl Iterator<Item = &'a ltx_common::LtxFile>,
) -> (u32, BTreeMap<u32, Vec<u8>>) {
    let mut db = BTreeMap::new();
    let mut commit = 0;
    let mut next_txid = 1;
    for f in files {
        let d = decode_file(&f.bytes).unwrap();
        assert!(d.header.min_txid.0 <= next_txid, "{}: gap", f.path);
        next_txid = d.header.max_txid.0 + 1;
        for (p, page) in d.pages {
            db.insert(p.0, page);
        }
        commit = d.header.commit;
        db.retain(|p, _| *p <= commit);
    }
    (commit, db)
}

#[test]
fn level_0_and_level_1_replay_to_the_same_database() {
    for fx in fixtures() {
        let level = |l: u8| {
            let mut v: Vec<_> = fx.files.iter().filter(|f| f.level == l).collect();
            v.sort_by_key(|f| f.name);
            v
        };
        let (c0, db0) = replay(level(0).into_iter());
        let (c1, db1) = replay(level(1).into_iter());
        let last = fx.last_page_count;
        assert_eq!(c0, last, "{}: level 0 page count", fx.name);
        assert_eq!(c1, last, "{}: level 1 page count", fx.name);
        assert_eq!(db0.len() as u32, last, "{}: every page present", fx.name);
        assert!(db0 == db1, "{}: level 0 and level 1 differ", fx.name);
        // Page 1 is a SQLite database header that states the page size and,
        // at offset 28, the page count.
        let p1 = &db0[&1];
        assert_eq!(&p1[..16], b"SQLite format 3\0");
        let ps = u32::from(u16::from_be_bytes([p1[16], p1[17]]));
        assert_eq!(if ps == 1 { 65536 } else { ps }, fx.page_size);
        assert_eq!(u32::from_be_bytes(p1[28..32].try_into().unwrap()), last);
    }
}

#[test]
fn page_one_states_each_file_commit() {
    for fx in fixtures() {
        for f in &fx.files {
            let d = decode_file(&f.bytes).unwrap();
            if let Some(e) = d.index.get(PageNo(1)) {
                let i = d.index.entries.iter().position(|x| x == e).unwrap();
                let p1 = &d.pages[i].1;
                assert_eq!(
                    u32::from_be_bytes(p1[28..32].try_into().unwrap()),
                    d.header.commit,
                    "{}",
                    f.path
                );
            }
        }
    }
}
