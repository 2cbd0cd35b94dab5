//! Scale: a 1,000,000-page database (4 GB of 4 KiB pages) opens with a page
//! index of at most 8 bytes per page, and the open itself, at its peak and
//! after it, takes at most 8 bytes of memory per page.
//!
//! `million_pages_open_small` writes such a replica (a snapshot whose page 1
//! and 2 come from a real `sqlite3` database, the rest zero pages that
//! compress to a few bytes each), opens it over file://, and checks the
//! index size and the process's resident memory: its growth over the open
//! (`VmRSS`) and its peak during the open (`VmHWM`, reset just before).
//! Both include what the open touches of the library's code for the first
//! time (about 1.5 MB). It is ignored by default (it writes ~40 MB and
//! takes a few seconds in release mode):
//!
//! `LSVFS_SCALE_OUT=/tmp/scale cargo test --release --test scale_open -- --ignored --nocapture`
//!
//! leaves the replica in `$LSVFS_SCALE_OUT` for benches/compare/scale.py,
//! which opens it over S3 through the latency proxy and counts round trips.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use litestream_vfs::config::{Config, Sources};
use litestream_vfs::ltx::{
    FRAME_HEADER_SIZE, Header, IndexEntry, PageIndex, PageNo, PageSize, Txid,
};
use litestream_vfs::replica::Replica;

const PAGES: u32 = 1_000_000;
const PAGE: usize = 4096;

fn rss_bytes() -> u64 {
    status_bytes("VmRSS:")
}

/// The process's peak RSS so far.
fn hwm_bytes() -> u64 {
    status_bytes("VmHWM:")
}

fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Pages 1 and 2 of a real one-table database.
fn real_pages(dir: &Path) -> Vec<u8> {
    let db = dir.join("seed.db");
    let _ = std::fs::remove_file(&db);
    let ok = std::process::Command::new("/usr/bin/sqlite3")
        .arg(&db)
        .arg("PRAGMA page_size=4096; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    std::fs::read(&db).unwrap()
}

/// Streams a snapshot LTX of `PAGES` pages to `path` (sized LZ4 blocks, as
/// Litestream 0.5 writes them; no file checksum: FLAG_NO_CHECKSUM).
fn write_snapshot(path: &Path, seed: &[u8]) {
    let page_size = PageSize::new(PAGE as u32).unwrap();
    let header = Header {
        flags: litestream_vfs::ltx::FLAG_NO_CHECKSUM,
        page_size,
        commit: PAGES,
        min_txid: Txid(1),
        max_txid: Txid(1),
        timestamp_ms: 1_700_000_000_000,
        pre_apply_checksum: 0,
        wal_offset: 0,
        wal_size: 0,
        wal_salt1: 0,
        wal_salt2: 0,
        node_id: 0,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut pos = 0u64;
    let mut put = |out: &mut std::io::BufWriter<std::fs::File>, b: &[u8]| {
        out.write_all(b).unwrap();
        pos += b.len() as u64;
        pos
    };
    put(&mut out, &header.encode());
    let zero = vec![0u8; PAGE];
    let zero_block = lz4_flex::block::compress(&zero);
    let lock = litestream_vfs::ltx::lock_page(page_size).0;
    let mut index = PageIndex::default();
    let mut offset = litestream_vfs::ltx::HEADER_SIZE as u64;
    for pgno in 1..=PAGES {
        if pgno == lock {
            continue;
        }
        let page = seed.chunks(PAGE).nth(pgno as usize - 1);
        let block = match page {
            Some(p) => lz4_flex::block::compress(p),
            None => zero_block.clone(),
        };
        let mut frame = pgno.to_be_bytes().to_vec();
        frame.extend_from_slice(&1u16.to_be_bytes());
        frame.extend_from_slice(&(block.len() as u32).to_be_bytes());
        frame.extend_from_slice(&block);
        let end = put(&mut out, &frame);
        index.entries.push(IndexEntry {
            pgno: PageNo(pgno),
            offset,
            size: (end - offset) as u32,
        });
        offset = end;
    }
    put(&mut out, &[0u8; FRAME_HEADER_SIZE]);
    put(&mut out, &index.encode());
    put(&mut out, &[0u8; 16]);
    out.flush().unwrap();
}

#[test]
#[ignore = "writes a 1,000,000-page replica; run by hand (see the module docs)"]
fn million_pages_open_small() {
    let out = std::env::var("LSVFS_SCALE_OUT").map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let root = out.unwrap_or_else(|_| tmp.path().to_path_buf());
    let dir = root.join("ltx/9");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("0000000000000001-0000000000000001.ltx");
    if !file.exists() {
        let seed = real_pages(&root);
        write_snapshot(&file, &seed);
    }
    let url = format!("file://{}", root.display());
    let uri = vec![
        ("replica_url".to_owned(), url),
        ("verify".to_owned(), "fetched".to_owned()),
    ];
    let config = Config::parse(&Sources {
        uri: &uri,
        env: &|_| None,
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Peak RSS from here on: writing "5" to clear_refs resets VmHWM.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = rss_bytes();
    let t0 = Instant::now();
    let replica = rt.block_on(Replica::open(config)).unwrap();
    let open = t0.elapsed();
    let snap = replica.current();
    let after = rss_bytes();
    let peak = hwm_bytes();
    let index = snap.index_bytes();
    println!(
        "1,000,000-page replica ({} MB LTX): open {:?}, page index {} bytes ({:.2} per page), \
         RSS +{} MB ({:.1} B/page; total {} MB), peak +{} MB ({:.1} B/page)",
        std::fs::metadata(&file).unwrap().len() / 1_000_000,
        open,
        index,
        index as f64 / f64::from(PAGES),
        after.saturating_sub(before) / 1_000_000,
        after.saturating_sub(before) as f64 / f64::from(PAGES),
        after / 1_000_000,
        peak.saturating_sub(before) / 1_000_000,
        peak.saturating_sub(before) as f64 / f64::from(PAGES),
    );
    assert_eq!(snap.page_count, PAGES);
    assert!(snap.frame(PageNo(PAGES)).is_some());
    assert!(
        index as f64 / f64::from(PAGES) <= 8.5,
        "index {index} bytes for {PAGES} pages"
    );
    // Memory, not time: what the open holds at its peak and keeps after.
    let per_page = |b: u64| b.saturating_sub(before) as f64 / f64::from(PAGES);
    assert!(
        per_page(after) <= 8.0,
        "the open kept {:.1} B/page",
        per_page(after)
    );
    assert!(
        per_page(peak) <= 8.0,
        "the open peaked at {:.1} B/page",
        per_page(peak)
    );
}
