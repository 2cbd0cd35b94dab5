//! Bodies of the fuzz targets. Each takes arbitrary bytes and must never
//! panic except on a broken invariant (the asserts below).
//!
//! The same file is compiled into the main crate's
//! `tests/ltx_fuzz_replay.rs`, which runs every seed in `fuzz/corpus/` on
//! stable Rust as part of `cargo test`; so it uses only `std` and
//! `litestream_vfs`.

use std::sync::Arc;

use litestream_vfs::config::{Config, Sources, parse_bool, parse_duration, parse_size};
use litestream_vfs::ltx::{
    FileName, FrameHeader, Header, IndexEntry, LtxBuilder, PageIndex, PageNo, PageSize, Trailer,
    Txid, Verifier, decode_file, decode_frame, frame_len, index_region, parse_name,
};
use litestream_vfs::replica::{FileIndex, FileRef, Places, Snapshot};
use litestream_vfs::storage::{FileId, Level, ReplicaUrl};

/// The B-tree page parser and the predictor on arbitrary bytes: the first
/// byte picks the page number (1 has the database header) and the usable
/// size; every accessor must answer without panicking, and what it answers
/// must be coherent.
pub fn btree_page(data: &[u8]) {
    use litestream_vfs::btree::{BtreePage, Schema, next_overflow};
    use litestream_vfs::prefetch::{Pages, Predictor};
    let Some((&sel, page)) = data.split_first() else {
        return;
    };
    let pgno = if sel & 1 == 1 {
        1
    } else {
        2 + u32::from(sel >> 1)
    };
    let usable = match sel >> 6 {
        0 => page.len(),
        1 => page.len().saturating_sub(32),
        2 => 4096,
        _ => 512,
    };
    if let Some(p) = BtreePage::parse(page, pgno, usable) {
        assert!(p.cell_count() <= usable / 2);
        let kids = p.children();
        assert!(kids.len() <= p.cell_count() + 1);
        let _ = p.child_for_rowid(i64::from(sel) * 1000);
        let _ = (p.rowid_range(), p.index_rowids(), p.overflows());
        for i in 0..p.cell_count() {
            if let Some(c) = p.cell(i) {
                assert!(c.local.len() as u64 <= c.payload_len || c.payload_len == 0);
            }
        }
    }
    let _ = next_overflow(page);
    struct Same<'a>(&'a [u8]);
    impl Pages for Same<'_> {
        fn cached(&self, _pgno: u32) -> Option<std::sync::Arc<[u8]>> {
            Some(std::sync::Arc::from(self.0))
        }
    }
    // Every page of a hostile database is this one: the schema reader and
    // the predictor must stop on cycles.
    let _ = Schema::read(&|_| Some(std::sync::Arc::from(page)), usable);
    let mut pred = Predictor::new(usable, 4096);
    let same = Same(page);
    let _ = pred.on_read(pgno, page, true, &same);
    let _ = pred.on_landed(pgno, page, &same);
    let _ = pred.on_read(pgno.wrapping_add(1), page, true, &same);
}

/// `decode_file` on arbitrary bytes. A file that decodes must be coherent,
/// and the same pages written again by the builder must decode to the same
/// pages.
pub fn ltx_file(data: &[u8]) {
    let Ok(file) = decode_file(data) else {
        return;
    };
    let h = &file.header;
    assert_eq!(file.pages.len(), file.index.entries.len());
    let mut builder = LtxBuilder::new(h.page_size, h.min_txid.0, h.max_txid.0, h.commit)
        .timestamp_ms(h.timestamp_ms);
    let mut prev = 0;
    for ((pgno, page), entry) in file.pages.iter().zip(&file.index.entries) {
        assert_eq!(*pgno, entry.pgno);
        assert!(pgno.0 > prev, "pages in increasing order");
        prev = pgno.0;
        assert_eq!(page.len(), h.page_size.bytes());
        builder = builder.page(pgno.0, page);
    }
    let again = decode_file(&builder.build()).expect("the builder writes valid files");
    assert_eq!(again.pages, file.pages);
    assert_eq!(again.header.commit, h.commit);
    build_on(h, &file.index, data.len() as u64);
}

/// What a reader builds on a file it loaded: a snapshot on its index (on a
/// base snapshot of one page when the file is not a snapshot itself). A
/// number the file merely claims, a `commit` or a page number of billions,
/// must not cost memory: the fuzzer's RSS limit (`scripts/fuzz.sh`) fails
/// an input that does, as it would have failed the 16 GiB of chunks such
/// a file once cost.
fn build_on(header: &Header, index: &impl Places, len: u64) {
    let name = FileName {
        min: header.min_txid,
        max: header.max_txid,
    };
    let level = if header.is_snapshot() {
        Level::SNAPSHOT
    } else {
        Level::L0
    };
    let file = Arc::new(FileRef::new(FileId { level, name }, len, header.clone()));
    let snap = if header.is_snapshot() {
        Snapshot::build([(&file, index)])
    } else {
        let base_header = Header {
            min_txid: Txid(1),
            max_txid: Txid(header.min_txid.0.saturating_sub(1).max(1)),
            commit: 1,
            ..header.clone()
        };
        let base_name = FileName {
            min: base_header.min_txid,
            max: base_header.max_txid,
        };
        let base_id = FileId {
            level: Level::SNAPSHOT,
            name: base_name,
        };
        let base = Arc::new(FileRef::new(base_id, len, base_header));
        let one = PageIndex {
            entries: vec![IndexEntry {
                pgno: PageNo(1),
                offset: 100,
                size: 10,
            }],
        };
        Snapshot::build([(&base, &one)]).and_then(|s| s.apply(&file, index))
    };
    if let Ok(snap) = snap {
        assert_eq!(snap.page_count, header.commit);
        assert!(snap.chunk_count() <= (header.commit as usize).div_ceil(1024));
    }
}

/// Every decoding entry point a reader uses on parts of a file: header,
/// trailer, index from the tail, single frames at each page size, the
/// piecewise verifier, and file names.
pub fn ltx_parts(data: &[u8]) {
    let _ = Header::decode(data);
    let _ = Trailer::decode(data);
    let _ = FrameHeader::decode(data);
    let _ = parse_name(&String::from_utf8_lossy(data));

    if let Ok(region) = index_region(data.len() as u64, data) {
        let bytes = usize::try_from(region.start)
            .ok()
            .zip(usize::try_from(region.end).ok())
            .and_then(|(s, e)| data.get(s..e));
        if let Some(bytes) = bytes {
            let _ = PageIndex::decode(bytes, region.start);
            // As a loaded file keeps it (a snapshot's straight into
            // snapshot chunks), then a snapshot built on it.
            if let Ok(header) = Header::decode(data)
                && let Ok(index) = FileIndex::decode(&header, bytes, region.start)
            {
                if header.is_snapshot() {
                    assert!(
                        index.len() as u64 <= u64::from(header.commit),
                        "a snapshot holds no page beyond its commit"
                    );
                }
                build_on(&header, &index, data.len() as u64);
            }
        }
    }
    // A frame's length from its header: never more than the largest page
    // compresses to (a reader fetches that many bytes to find its end).
    if let Ok(len) = frame_len(data) {
        assert!(len <= data.len() || len <= 6 + 4 + 65536 + 65536 / 255 + 16);
    }
    // The index decoder alone, at a file offset taken from the input.
    if let Some((start, rest)) = data.split_first_chunk::<8>()
        && let Ok(index) = PageIndex::decode(rest, u64::from_be_bytes(*start))
    {
        for pair in index.entries.windows(2) {
            if let [a, b] = pair {
                assert!(a.pgno < b.pgno, "decoded index is sorted");
            }
        }
    }
    for shift in 9..=16 {
        let Some(page_size) = PageSize::new(1 << shift) else {
            continue;
        };
        if let Ok(frame) = decode_frame(data, page_size) {
            assert_eq!(frame.page.len(), page_size.bytes());
        }
        if let Ok(mut v) = Verifier::new(data, page_size) {
            let rest = data.get(100..).unwrap_or_default();
            let _ = v.frame(rest);
            let _ = v.finish(rest);
        }
    }
}

/// Replica URLs and configuration values from arbitrary text. The input is
/// read as `uri parameters` (`k=v&k=v`), a newline, then environment
/// variables (`K=V` per line).
pub fn config_url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let s = text.as_ref();
    let _ = parse_duration(s);
    let _ = parse_size(s);
    let _ = parse_bool(s);
    if let Ok(url) = ReplicaUrl::parse(s) {
        // A password never shows in what is printed. (Only the authority is
        // checked: the same text may legitimately appear in the path or the
        // query; the authority ends at the first `/`, `?` or `#`.)
        if let Some(pw) = url.url().password() {
            let needle = format!(":{pw}@");
            for shown in [url.redacted().to_owned(), format!("{url:?}")] {
                let authority = shown.split_once("://").map_or("", |(_, rest)| {
                    rest.split(['/', '?', '#']).next().unwrap_or(rest)
                });
                assert!(
                    pw == "REDACTED" || !authority.contains(&needle),
                    "password shown in {shown}"
                );
            }
        }
        let _ = url.file_path();
    }

    let (uri_part, env_part) = s.split_once('\n').unwrap_or((s, ""));
    let pairs = |text: &str, sep: char| -> Vec<(String, String)> {
        text.split(sep)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    let uri = pairs(uri_part, '&');
    let env = pairs(env_part, '\n');
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if let Ok(config) = Config::parse(&Sources {
        uri: &uri,
        env: &lookup,
    }) {
        assert!(config.cache_size >= 1 << 20);
        let _ = config.replica_url.redacted();
    }
}
