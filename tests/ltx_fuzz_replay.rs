//! Replays the fuzz seed corpus (`fuzz/corpus/<target>/`) through the fuzz
//! target bodies on stable Rust, so every `cargo test` checks the seeds and
//! every crash ever found (saved there as a regression seed) stays fixed.
//!
//! `cargo test --test ltx_fuzz_replay -- --ignored write_seed_corpus`
//! regenerates the builder-made and fixture seeds.

#[path = "../fuzz/src/lib.rs"]
mod bodies;

mod ltx_common;

use std::path::{Path, PathBuf};

use litestream_vfs::ltx::{LtxBuilder, PageSize, decode_file};

type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 4] = [
    ("btree_page", bodies::btree_page),
    ("ltx_file", bodies::ltx_file),
    ("ltx_parts", bodies::ltx_parts),
    ("config_url", bodies::config_url),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn seed_corpus_replays_without_panics() {
    for (target, body) in TARGETS {
        let mut seeds: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 5, "{target}: {} seeds", seeds.len());
        for seed in seeds {
            let data = std::fs::read(&seed).unwrap();
            let r = std::panic::catch_unwind(|| body(&data));
            assert!(r.is_ok(), "{target} panicked on {}", seed.display());
        }
    }
}

#[test]
fn seed_corpus_stays_small() {
    let mut total = 0;
    for (target, _) in TARGETS {
        for e in std::fs::read_dir(corpus_dir(target)).unwrap() {
            total += e.unwrap().metadata().unwrap().len();
        }
    }
    assert!(total < 2 << 20, "seed corpus is {total} bytes");
}

/// Builder-made files: both frame encodings, several page sizes.
fn builder_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (size, legacy) in [(512u32, false), (4096, false), (4096, true), (65536, true)] {
        let ps = PageSize::new(size).unwrap();
        let text = b"CREATE TABLE t(x); INSERT INTO t VALUES (1);".repeat(20);
        let bytes = LtxBuilder::new(ps, 1, 1, 3)
            .legacy_frames(legacy)
            .page(1, &text)
            .page(2, &[0u8; 0])
            .page(3, &[0xa5; 300])
            .build();
        let kind = if legacy { "lz4frame" } else { "block" };
        out.push((format!("builder-{kind}-{size}.ltx"), bytes));
    }
    let empty = LtxBuilder::new(PageSize::new(4096).unwrap(), 5, 6, 2).build();
    out.push(("builder-no-pages.ltx".into(), empty));
    out.extend(hostile_seeds());
    out
}

/// Files that claim more than they hold: a snapshot's commit or a page
/// number of billions once cost 4 KiB of index per 1024 pages claimed (an
/// abort of the host); a change to a page of billions is valid and costs a
/// pointer per 1024 pages.
fn hostile_seeds() -> Vec<(String, Vec<u8>)> {
    let ps = PageSize::new(4096).unwrap();
    let page = [0x5au8; 100];
    let far = u32::MAX - 1;
    vec![
        (
            "regression-snapshot-commit-4e9.ltx".into(),
            LtxBuilder::new(ps, 1, 1, 4_000_000_000)
                .page(1, &page)
                .page(2, &page)
                .build(),
        ),
        (
            "regression-snapshot-page-jump.ltx".into(),
            LtxBuilder::new(ps, 1, 1, far)
                .page(1, &page)
                .page(far, &page)
                .build(),
        ),
        (
            "builder-change-to-a-page-of-billions.ltx".into(),
            LtxBuilder::new(ps, 2, 2, far).page(far, &page).build(),
        ),
    ]
}

/// Small real files, one per page size and kind.
fn fixture_seeds() -> Vec<(String, Vec<u8>)> {
    let wanted = [
        "basic-4k/replica/ltx/9/0000000000000001-0000000000000001.ltx",
        "basic-4k/replica/ltx/0/0000000000000007-0000000000000007.ltx",
        "page-512/replica/ltx/9/0000000000000001-0000000000000001.ltx",
        "page-64k/replica/ltx/9/0000000000000001-0000000000000001.ltx",
        "shrink-4k/replica/ltx/0/0000000000000004-0000000000000004.ltx",
        "shrink-4k/replica/ltx/0/0000000000000006-0000000000000006.ltx",
    ];
    wanted
        .iter()
        .map(|rel| {
            let bytes = std::fs::read(ltx_common::fixtures_dir().join(rel)).unwrap();
            let name = rel.replace("/replica/ltx/", "-L").replace('/', "-");
            (format!("fixture-{name}"), bytes)
        })
        .collect()
}

/// Single frames cut out of files, for the frame decoder.
fn frame_seeds(files: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        let Ok(d) = decode_file(bytes) else { continue };
        if let Some(e) = d.index.entries.first() {
            let frame = bytes[e.offset as usize..(e.offset + u64::from(e.size)) as usize].to_vec();
            out.push((format!("frame-of-{name}"), frame));
        }
    }
    out
}

const CONFIG_SEEDS: [&str; 14] = [
    "file:///var/lib/replica",
    "/var/lib/replica",
    "relative/replica",
    "s3://bucket/db?endpoint=http://127.0.0.1:9000&region=us-east-1",
    "gs://bucket/path/db",
    "abs://account@container/db?account-key=c2VjcmV0",
    "sftp://user:hunter22@host:22/db?key=/k",
    "replica_url=file:///a&poll_interval=1s&cache_size=64MiB&mode=ro\nLITESTREAM_OPEN_TIMEOUT=5s",
    "mode=ro\nLITESTREAM_REPLICA_URL=s3://b/db\nLITESTREAM_CACHE_SIZE=1GB",
    "replica_url=gs://b/p&write_enabled=false&hydration_enabled=off&idle_timeout=1m30s",
    "1m30.5s",
    "64 MiB",
    "yes",
    // Once a panic: durations that add up past Duration::MAX.
    "5000000000000000000s5000000000000000000s5000000000000000000s5000000000000000000s",
];

#[test]
#[ignore = "writes fuzz/corpus; run by hand after changing the seeds"]
fn write_seed_corpus() {
    let mut files = builder_seeds();
    files.extend(fixture_seeds());
    let frames = frame_seeds(&files);
    let write = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(corpus_dir(target)).unwrap();
        std::fs::write(corpus_dir(target).join(name), bytes).unwrap();
    };
    for (name, bytes) in &files {
        write("ltx_file", name, bytes);
        write("ltx_parts", name, bytes);
    }
    for (name, bytes) in &frames {
        write("ltx_parts", name, bytes);
    }
    // A sized frame whose size field claims 4 GiB.
    let mut huge = vec![0, 0, 0, 1, 0, 1];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    huge.extend_from_slice(&[0x5a; 40]);
    write("ltx_parts", "regression-frame-size-4g", &huge);
    for (i, text) in CONFIG_SEEDS.iter().enumerate() {
        write("config_url", &format!("seed-{i:02}"), text.as_bytes());
    }
}
