//! Loading the real Litestream fixtures, shared by the `ltx_*` tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use litestream_vfs::ltx::{FileName, parse_name};

/// One LTX file of a fixture.
pub struct LtxFile {
    /// Path for messages.
    pub path: String,
    /// Path relative to the replica folder, as the manifest names it.
    pub rel: String,
    pub level: u8,
    pub name: FileName,
    pub bytes: Vec<u8>,
}

/// One fixture replica and what its manifest says.
pub struct Fixture {
    pub name: String,
    pub page_size: u32,
    pub first_time_ms: i64,
    pub last_time_ms: i64,
    pub last_page_count: u32,
    /// Manifest `files`: relative path → size.
    pub manifest_files: BTreeMap<String, u64>,
    pub files: Vec<LtxFile>,
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture, by name; files sorted by level then name.
pub fn fixtures() -> Vec<Fixture> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| load(d)).collect()
}

/// Every LTX file of every fixture.
pub fn all_files() -> Vec<LtxFile> {
    fixtures().into_iter().flat_map(|f| f.files).collect()
}

fn load(dir: &Path) -> Fixture {
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let times = numbers(&manifest, "time_ms");
    let mut manifest_files = BTreeMap::new();
    for (path, size) in strings(&manifest, "path")
        .into_iter()
        .zip(numbers(&manifest, "size"))
    {
        manifest_files.insert(path, size as u64);
    }
    let mut files = Vec::new();
    let ltx = dir.join("replica/ltx");
    for level in 0..=9u8 {
        let Ok(entries) = std::fs::read_dir(ltx.join(level.to_string())) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for n in names {
            let name = parse_name(&n).unwrap_or_else(|| panic!("odd file {n}"));
            let path = ltx.join(level.to_string()).join(&n);
            files.push(LtxFile {
                path: path.display().to_string(),
                rel: format!("ltx/{level}/{n}"),
                level,
                name,
                bytes: std::fs::read(&path).unwrap(),
            });
        }
    }
    Fixture {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        page_size: numbers(&manifest, "page_size")[0] as u32,
        first_time_ms: *times.first().unwrap(),
        last_time_ms: *times.last().unwrap(),
        last_page_count: *numbers(&manifest, "page_count").last().unwrap() as u32,
        manifest_files,
        files,
    }
}

/// Values of every `"key": <integer>` in a JSON text, in order. The
/// manifests are simple enough that no JSON parser is needed.
fn numbers(json: &str, key: &str) -> Vec<i64> {
    let pat = format!("\"{key}\":");
    json.match_indices(&pat)
        .map(|(at, _)| {
            let rest = json[at + pat.len()..].trim_start();
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '-'))
                .unwrap_or(rest.len());
            rest[..end].parse().unwrap()
        })
        .collect()
}

/// Values of every `"key": "<string>"` in a JSON text, in order.
fn strings(json: &str, key: &str) -> Vec<String> {
    let pat = format!("\"{key}\":");
    json.match_indices(&pat)
        .map(|(at, _)| {
            let rest = json[at + pat.len()..].trim_start();
            let rest = rest.strip_prefix('"').unwrap();
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

/// A small deterministic PRNG (xorshift64*), so that property-style tests
/// need no extra dependency and every failure names a reproducible seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}
