//! Background verification of large files.
//!
//! Files read whole are checksum-verified on arrival. A large file (a
//! snapshot) is read one frame at a time, and a frame alone carries no
//! checksum: a flipped bit inside compressed literals would decode to a
//! wrong page. So each large file is streamed once in the background, as
//! soon as a snapshot first uses it, and its file checksum is checked. A
//! mismatch marks the file corrupt: from then on every read of its pages
//! fails with SQLITE_CORRUPT, cached or not.

use std::sync::Arc;

use crate::cache::{Page, PageCache};
use crate::error::{Error, Result};
use crate::ltx::{FRAME_HEADER_SIZE, HEADER_SIZE, IndexEntry, Verifier};
use crate::storage::Storage;

use super::fetch::InFlight;
use super::file_index::FileIndex;
use super::snapshot::FileRef;

/// Bytes fetched per request while verifying: large enough that a 1 GB
/// snapshot takes a few hundred requests, small enough to bound memory
/// (each chunk holds its bytes of the process's read budget until it is
/// checked).
const CHUNK: u64 = 4 * 1024 * 1024;

/// Streams `file` and checks its checksum. A chunk waits at most `wait`
/// for its bytes of the read budget.
pub async fn verify(
    storage: Arc<dyn Storage>,
    cache: Arc<PageCache>,
    file: Arc<FileRef>,
    index: Arc<FileIndex>,
    wait: std::time::Duration,
) -> Result<()> {
    let budget = InFlight::process();
    let describe = || format!("{} {}", storage.describe(), file.id);
    let corrupt = |e| Error::corrupt(describe(), e);
    let head = storage
        .read_version(file.id, file.version, 0..HEADER_SIZE as u64)
        .await?;
    let mut v = Verifier::new(&head, file.header.page_size).map_err(corrupt)?;
    let mut entries = index.entries().peekable();
    let mut next = HEADER_SIZE as u64;
    while entries.peek().is_some() {
        let start = next;
        let mut end = start;
        // The frames of one chunk (a few MiB of a file), taken in order.
        let mut chunk = Vec::new();
        while let Some(e) = entries.peek() {
            if e.offset != end {
                return Err(Error::Missing(format!(
                    "{}: frames are not contiguous at page {}",
                    describe(),
                    e.pgno.0
                )));
            }
            if end - start >= CHUNK && !chunk.is_empty() {
                break;
            }
            end = e.offset + u64::from(e.size);
            chunk.push(*e);
            entries.next();
        }
        let held = budget.hold(end - start, wait, storage.describe()).await?;
        let bytes = storage
            .read_version(file.id, file.version, start..end)
            .await?;
        // Decompressing and checksumming a chunk (up to 8 MiB) is work for
        // the blocking pool, not for one of the two workers.
        let (c, f, d) = (Arc::clone(&cache), Arc::clone(&file), describe());
        let scope = storage.describe().to_owned();
        v = crate::runtime::off_worker("verifying a chunk", move || {
            crate::pause::point("verify.chunk", &scope);
            let checked = check_chunk(v, &bytes, start, &chunk, &c, &f, &d);
            drop((bytes, held));
            checked
        })
        .await??;
        next = end;
    }
    let tail = storage
        .read_version(file.id, file.version, next..file.size)
        .await?;
    if tail.len() < FRAME_HEADER_SIZE {
        return Err(Error::Missing(format!(
            "{}: no page index after the frames",
            describe()
        )));
    }
    v.finish(&tail).map_err(corrupt)
}

/// Checks the frames `entries` of a chunk read from `start` and feeds them
/// to the file's checksum; keeps their pages while the cache has room.
fn check_chunk(
    mut v: Verifier,
    bytes: &[u8],
    start: u64,
    entries: &[IndexEntry],
    cache: &PageCache,
    file: &FileRef,
    describe: &str,
) -> Result<Verifier> {
    let corrupt = |e| Error::corrupt(describe, e);
    for e in entries {
        let from = usize::try_from(e.offset - start).unwrap_or(usize::MAX);
        let frame = bytes
            .get(from..from.saturating_add(e.size as usize))
            .ok_or_else(|| Error::Missing(format!("{describe}: short read while verifying")))?;
        let page = v.frame(frame).map_err(corrupt)?;
        // The file is streamed anyway: keep its pages while the cache has
        // room to spare, so a scan that follows does not fetch them
        // again. Never at the expense of what the cache already holds.
        // (Should the checksum fail, the file is marked corrupt and
        // these pages are refused before the cache is consulted.)
        if cache.weight() + page.len() as u64 <= cache.budget() / 4 * 3 {
            let key = file.key(e.offset);
            if cache.get(&key).is_none() {
                cache.insert(key, Page::from(page));
            }
        }
    }
    Ok(v)
}
