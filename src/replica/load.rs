//! Fetching what a snapshot needs from a file: its header and page index,
//! and for a small file the whole file with its pages.

use std::sync::Arc;

use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::ltx::{self, HEADER_SIZE, Header, IndexDecoder, PageNo};
use crate::storage::{FileInfo, Level, Storage};
use crate::store::Blobs;

use super::file_index::{Building, FileIndex};
use super::snapshot::FileRef;

/// Files up to this size are fetched whole in one request, checksum
/// verified, and their pages go straight into the cache: a follower of a busy
/// primary stays warm, and one round trip replaces three.
pub const WHOLE_FILE_MAX: u64 = 1024 * 1024;

/// Bytes of a large file's tail fetched together with its header, as a share
/// of the file size. The page index takes about 10 bytes per page and a
/// compressed page a few hundred to a few thousand, so 1/128 of the file
/// usually holds the whole index. The cap bounds what is held at once:
/// the index of a file of more than about 100,000 pages is longer, and
/// its front is read in pieces (see [`PIECE`]).
const TAIL_SHARE: u64 = 128;
const TAIL_MIN: u64 = 64 * 1024;
const TAIL_MAX: u64 = 1024 * 1024;

/// Bytes of each piece of a long page index read ahead of the tail, where
/// storage does not stream bodies (an object store streams it in one
/// request instead), and how many are read at once from remote storage
/// (one at a time from local files): each piece is decoded as it arrives, in order, and
/// freed, so that at most `TAIL_MAX + PIECES_IN_FLIGHT * PIECE` bytes of
/// raw index are held at once, whatever the index's length (a
/// 1,000,000-page snapshot's is 8 to 10 MB). A piece of 1 MiB is mapped on
/// its own by the library's allocator and given back when freed.
const PIECE: u64 = 1024 * 1024;
const PIECES_IN_FLIGHT: usize = 2;

/// Bytes of a large file's head fetched with its header: the first frames
/// of a snapshot (page 1, the schema) for the first query, at no extra
/// round trip.
const HEAD_PREFETCH: u64 = 64 * 1024;

/// A file's header and index, and its pages when it was read whole.
pub struct Loaded {
    pub file: Arc<FileRef>,
    pub index: FileIndex,
    pub pages: Vec<(PageNo, Vec<u8>)>,
    /// Whether the file checksum was checked (files read whole).
    pub verified: bool,
    /// Whether it came from the blobs kept on disk, not from storage.
    pub kept: bool,
}

/// Loads one file's metadata (and, if small, its pages), from `blobs` when
/// they hold it: a file read whole is kept whole, a large one as its
/// header, page index and file checksum. Only files whose listing names a
/// version use them, so a file written again under the same name is
/// fetched again; local files never do (reading them is as cheap). Every
/// read is tied to the listed version.
pub async fn load(storage: &dyn Storage, info: FileInfo, blobs: Option<&Blobs>) -> Result<Loaded> {
    let describe = || format!("{} {}", storage.describe(), info.id);
    let blobs = blobs.filter(|_| info.version != 0 && !storage.is_local());
    let name = blob_name(&info);
    if info.size <= WHOLE_FILE_MAX {
        let kept = blobs
            .and_then(|b| b.get(&name))
            .filter(|b| b.len() as u64 == info.size);
        let from_blobs = kept.is_some();
        let bytes = match kept {
            Some(bytes) => bytes,
            None => {
                let bytes = storage
                    .read_version(info.id, info.version, 0..info.size)
                    .await?;
                if let Some(b) = blobs {
                    b.put(&name, &bytes);
                }
                bytes
            }
        };
        let mut loaded = whole(&bytes, info, describe)?;
        loaded.kept = from_blobs;
        return Ok(loaded);
    }
    if let Some(loaded) = blobs
        .and_then(|b| b.get(&name))
        .and_then(|meta| from_meta(&meta, info))
    {
        return Ok(loaded);
    }
    let tail_len = (info.size / TAIL_SHARE)
        .clamp(TAIL_MIN, TAIL_MAX)
        .min(info.size);
    let tail_start = info.size - tail_len;
    let head_len = HEAD_PREFETCH.min(tail_start).max(HEADER_SIZE as u64);
    let (head, tail) = tokio::try_join!(
        storage.read_version(info.id, info.version, 0..head_len),
        storage.read_version(info.id, info.version, tail_start..info.size)
    )?;

    let corrupt = |e| Error::corrupt(describe(), e);
    let header = Header::decode(&head).map_err(corrupt)?;
    check_name(&header, &info, &describe)?;
    let region = ltx::index_region(info.size, &tail).map_err(corrupt)?;
    let mut building = Building::new(&header, region.start);
    let mut decoder = IndexDecoder::new(region.start);
    if region.start < tail_start && info.version != 0 && storage.streams_bodies() {
        // The front of a long index in one request, its body decoded as it
        // arrives and never held whole.
        let mut body = storage
            .read_version_chunks(info.id, info.version, region.start..tail_start)
            .await?;
        while let Some(chunk) = body.next().await {
            decoder
                .feed(&chunk?, &mut |e| building.push(e))
                .map_err(corrupt)?;
        }
    } else if region.start < tail_start {
        // The front of a long index, in pieces, decoded as they arrive.
        let in_flight = if storage.is_local() {
            1
        } else {
            PIECES_IN_FLIGHT
        };
        let pieces = (region.start..tail_start)
            .step_by(usize::try_from(PIECE).unwrap_or(usize::MAX))
            .map(|from| from..from.saturating_add(PIECE).min(tail_start))
            .map(|r| async move {
                let want = r.end - r.start;
                let bytes = storage.read_version(info.id, info.version, r).await?;
                if bytes.len() as u64 != want {
                    return Err(Error::Missing(format!(
                        "{}: short read of the page index",
                        describe()
                    )));
                }
                Ok(bytes)
            });
        let mut pieces = futures_util::stream::iter(pieces).buffered(in_flight);
        while let Some(piece) = pieces.next().await {
            decoder
                .feed(&piece?, &mut |e| building.push(e))
                .map_err(corrupt)?;
        }
    }
    let from = usize::try_from(region.start.saturating_sub(tail_start)).unwrap_or(usize::MAX);
    let to = usize::try_from(region.end - tail_start).unwrap_or(usize::MAX);
    let bytes = tail
        .get(from..to)
        .ok_or_else(|| Error::Missing(format!("{}: short read of the page index", describe())))?;
    decoder
        .feed(bytes, &mut |e| building.push(e))
        .map_err(corrupt)?;
    decoder.finish().map_err(corrupt)?;
    let index = building.finish().map_err(corrupt)?;
    let pages = leading_pages(&head, &index, header.page_size);
    let file = Arc::new(FileRef::listed(info, header));
    let checksum = ltx::Trailer::decode(&tail).ok().map(|t| t.file_checksum);
    if let Some(c) = checksum {
        let _ = file.file_checksum.set(c);
    }
    if let (Some(b), Some(raw)) = (blobs, head.get(..HEADER_SIZE)) {
        // The raw index again, for the blobs only: held while it is written.
        b.put(
            &name,
            &to_meta(raw, region.start, checksum, &index.encode_entries()),
        );
    }
    Ok(Loaded {
        file,
        index,
        pages,
        verified: false,
        kept: false,
    })
}

/// Bytes of decompressed pages a file read whole hands to the cache at
/// most: every page of a file of 1 MiB whose pages compress two to eight
/// times, the first 8 MiB of one that compresses more (empty pages
/// compress 15 to 255 times: all of them would be up to 230 MiB held at
/// once, per file loaded). The rest are read when asked for.
const WHOLE_PAGES_MAX: usize = 8 << 20;

/// A file read whole: decoded and checksum verified.
fn whole(bytes: &[u8], info: FileInfo, describe: impl Fn() -> String) -> Result<Loaded> {
    let decoded = match ltx::decode_file_keeping(bytes, WHOLE_PAGES_MAX) {
        Ok(decoded) => decoded,
        Err(e @ ltx::LtxError::Checksum { .. }) => {
            return structure_only(bytes, info, e, describe);
        }
        Err(e) => return Err(Error::corrupt(describe(), e)),
    };
    check_name(&decoded.header, &info, &describe)?;
    let file = Arc::new(FileRef::listed(info, decoded.header));
    let _ = file.file_checksum.set(decoded.trailer.file_checksum);
    Ok(Loaded {
        file,
        index: decoded.index.into(),
        pages: decoded.pages,
        verified: true,
        kept: false,
    })
}

/// The blob of a listed file: its place, size and version.
fn blob_name(info: &FileInfo) -> String {
    format!(
        "{}-{}-{}-{:016x}",
        info.id.level.get(),
        info.id.name,
        info.size,
        info.version
    )
}

/// Whether a blob name is of a level-0 file (those age out of the blobs).
pub fn blob_is_level0(name: &str) -> bool {
    name.split_once('-')
        .is_some_and(|(level, _)| level.parse() == Ok(Level::L0.get()))
}

/// The blob names of a listing.
pub fn blob_names(listing: &[FileInfo]) -> std::collections::HashSet<String> {
    listing.iter().map(blob_name).collect()
}

/// A large file's metadata as kept: its header, where its page index
/// starts, its file checksum (flag byte, then 8 bytes) and the index.
fn to_meta(header: &[u8], index_start: u64, checksum: Option<u64>, index: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 17 + index.len());
    out.extend_from_slice(header);
    out.extend_from_slice(&index_start.to_le_bytes());
    out.push(u8::from(checksum.is_some()));
    out.extend_from_slice(&checksum.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(index);
    out
}

/// A file loaded from kept metadata, decoded by the same checks as a
/// fetched one; anything that does not decode is a miss.
fn from_meta(meta: &[u8], info: FileInfo) -> Option<Loaded> {
    let header = Header::decode(meta.get(..HEADER_SIZE)?).ok()?;
    check_name(&header, &info, &String::new).ok()?;
    let rest = meta.get(HEADER_SIZE..)?;
    let index_start = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let has_checksum = *rest.get(8)? == 1;
    let checksum = u64::from_le_bytes(rest.get(9..17)?.try_into().ok()?);
    let index = FileIndex::decode(&header, rest.get(17..)?, index_start).ok()?;
    let file = Arc::new(FileRef::listed(info, header));
    if has_checksum {
        let _ = file.file_checksum.set(checksum);
    }
    Some(Loaded {
        file,
        index,
        pages: Vec::new(),
        verified: false,
        kept: true,
    })
}

/// The pages whose frames lie wholly inside the prefetched head of a file,
/// in index order, at most [`LEADING_PAGES`](super::LEADING_PAGES) of them.
/// A snapshot begins with page 1 and the schema, which the first query
/// needs: they arrive with the open instead of a round trip later. (Pages
/// that compress well, such as empty ones, fit by the thousand in the
/// head: decoding them all would fill megabytes of cache at the open.) A
/// frame that does not decode is left for the normal read path to report.
fn leading_pages(
    head: &[u8],
    index: &FileIndex,
    page_size: ltx::PageSize,
) -> Vec<(PageNo, Vec<u8>)> {
    let mut pages = Vec::new();
    for e in index.entries().take(super::LEADING_PAGES as usize) {
        let (Ok(from), Ok(len)) = (usize::try_from(e.offset), usize::try_from(e.size)) else {
            break;
        };
        let Some(raw) = head.get(from..from.saturating_add(len)) else {
            break;
        };
        match ltx::decode_frame(raw, page_size) {
            Ok(frame) if frame.header.pgno == e.pgno => pages.push((e.pgno, frame.page)),
            _ => break,
        }
    }
    pages
}

/// A whole file whose structure decodes but whose checksum does not match:
/// its index still places its pages, but the file is marked corrupt, so a
/// query that needs one of them fails with SQLITE_CORRUPT while the rest of
/// the database stays readable.
fn structure_only(
    bytes: &[u8],
    info: FileInfo,
    e: ltx::LtxError,
    describe: impl Fn() -> String,
) -> Result<Loaded> {
    let header = Header::decode(bytes).map_err(|e| Error::corrupt(describe(), e))?;
    check_name(&header, &info, &describe)?;
    let region = ltx::index_region(info.size, bytes).map_err(|e| Error::corrupt(describe(), e))?;
    let index_bytes = usize::try_from(region.start)
        .ok()
        .zip(usize::try_from(region.end).ok())
        .and_then(|(s, e)| bytes.get(s..e))
        .ok_or_else(|| Error::Missing(format!("{}: short page index", describe())))?;
    let index = ltx::PageIndex::decode(index_bytes, region.start)
        .and_then(|index| {
            if header.is_snapshot() {
                ltx::SnapshotPages::check_all(&header, index.entries.iter().map(|e| e.pgno))?;
            }
            Ok(index)
        })
        .map_err(|e| Error::corrupt(describe(), e))?
        .into();
    let file = Arc::new(FileRef::listed(info, header));
    let reason = Error::corrupt(describe(), e).to_string();
    crate::log::error!("{reason}: reads of its pages will fail");
    let _ = file.corrupt.set(reason);
    Ok(Loaded {
        file,
        index,
        pages: Vec::new(),
        verified: true,
        kept: false,
    })
}

/// Loads several files concurrently, keeping their order.
pub async fn load_all(
    storage: &dyn Storage,
    files: &[FileInfo],
    blobs: Option<&Blobs>,
) -> Result<Vec<Loaded>> {
    futures_util::future::try_join_all(files.iter().map(|f| load(storage, *f, blobs))).await
}

fn check_name(h: &Header, info: &FileInfo, describe: &impl Fn() -> String) -> Result<()> {
    if h.min_txid != info.id.name.min || h.max_txid != info.id.name.max {
        return Err(Error::corrupt(
            describe(),
            ltx::LtxError::Invalid {
                what: "header",
                detail: format!(
                    "TXIDs {}-{} do not match the file name",
                    h.min_txid, h.max_txid
                ),
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
