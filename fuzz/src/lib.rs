//! Bodies of the fuzz targets. Each takes arbitrary bytes and must never
//! panic except on a broken invariant (the asserts below).
//!
//! The same file is compiled into the main crate's
//! `tests/ltx_fuzz_replay.rs`, which runs every seed in `fuzz/corpus/` on
//! stable Rust as part of `cargo test`; so it uses only `std` and
//! `litestream_vfs`.

use litestream_vfs::config::{Config, Sources, parse_bool, parse_duration, parse_size};
use litestream_vfs::ltx::{
    FrameHeader, Header, LtxBuilder, PageIndex, PageSize, Trailer, Verifier, decode_file,
    decode_frame, index_region, parse_name,
};
use litestream_vfs::storage::ReplicaUrl;

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
        }
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
