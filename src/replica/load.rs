//! Fetching what a snapshot needs from a file: its header and page index,
//! and for a small file the whole file with its pages.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ltx::{self, HEADER_SIZE, Header, PageIndex, PageNo};
use crate::storage::{FileInfo, Storage};

use super::snapshot::FileRef;

/// Files up to this size are fetched whole in one request, checksum
/// verified, and their pages go straight into the cache: a follower of a busy
/// primary stays warm, and one round trip replaces three.
pub const WHOLE_FILE_MAX: u64 = 1024 * 1024;

/// Bytes of a large file's tail fetched together with its header, as a share
/// of the file size. The page index takes about 10 bytes per page and a
/// compressed page a few hundred to a few thousand, so 1/128 of the file
/// usually holds the whole index. The cap covers the index of a
/// 1,000,000-page snapshot (about 10 bytes per page).
const TAIL_SHARE: u64 = 128;
const TAIL_MIN: u64 = 64 * 1024;
const TAIL_MAX: u64 = 16 * 1024 * 1024;

/// Bytes of a large file's head fetched with its header: the first frames
/// of a snapshot (page 1, the schema) for the first query, at no extra
/// round trip.
const HEAD_PREFETCH: u64 = 64 * 1024;

/// A file's header and index, and its pages when it was read whole.
pub struct Loaded {
    pub file: Arc<FileRef>,
    pub index: PageIndex,
    pub pages: Vec<(PageNo, Vec<u8>)>,
    /// Whether the file checksum was checked (files read whole).
    pub verified: bool,
}

/// Loads one file's metadata (and, if small, its pages).
pub async fn load(storage: &dyn Storage, info: FileInfo) -> Result<Loaded> {
    let describe = || format!("{} {}", storage.describe(), info.id);
    if info.size <= WHOLE_FILE_MAX {
        let bytes = storage.read(info.id, 0..info.size).await?;
        let decoded = match ltx::decode_file(&bytes) {
            Ok(decoded) => decoded,
            Err(e @ ltx::LtxError::Checksum { .. }) => {
                return structure_only(&bytes, info, e, describe);
            }
            Err(e) => return Err(Error::corrupt(describe(), e)),
        };
        check_name(&decoded.header, &info, &describe)?;
        let file = Arc::new(FileRef::new(info.id, info.size, decoded.header));
        let _ = file.file_checksum.set(decoded.trailer.file_checksum);
        return Ok(Loaded {
            file,
            index: decoded.index,
            pages: decoded.pages,
            verified: true,
        });
    }
    let tail_len = (info.size / TAIL_SHARE)
        .clamp(TAIL_MIN, TAIL_MAX)
        .min(info.size);
    let tail_start = info.size - tail_len;
    let head_len = HEAD_PREFETCH.min(tail_start).max(HEADER_SIZE as u64);
    let (head, mut tail) = tokio::try_join!(
        storage.read(info.id, 0..head_len),
        storage.read(info.id, tail_start..info.size)
    )?;

    let header = Header::decode(&head).map_err(|e| Error::corrupt(describe(), e))?;
    check_name(&header, &info, &describe)?;
    let region = ltx::index_region(info.size, &tail).map_err(|e| Error::corrupt(describe(), e))?;
    if region.start < tail_start {
        let mut more = storage.read(info.id, region.start..tail_start).await?;
        more.extend_from_slice(&tail);
        tail = more;
    }
    let tail_origin = region.start.min(tail_start);
    let from = usize::try_from(region.start - tail_origin).unwrap_or(usize::MAX);
    let to = usize::try_from(region.end - tail_origin).unwrap_or(usize::MAX);
    let bytes = tail
        .get(from..to)
        .ok_or_else(|| Error::Missing(format!("{}: short read of the page index", describe())))?;
    let index =
        PageIndex::decode(bytes, region.start).map_err(|e| Error::corrupt(describe(), e))?;
    let pages = leading_pages(&head, &index, header.page_size);
    let file = Arc::new(FileRef::new(info.id, info.size, header));
    if let Ok(t) = ltx::Trailer::decode(&tail) {
        let _ = file.file_checksum.set(t.file_checksum);
    }
    Ok(Loaded {
        file,
        index,
        pages,
        verified: false,
    })
}

/// The pages whose frames lie wholly inside the prefetched head of a file,
/// in index order. A snapshot begins with page 1 and the schema, which the
/// first query needs: they arrive with the open instead of a round trip
/// later. A frame that does not decode is left for the normal read path to
/// report.
fn leading_pages(
    head: &[u8],
    index: &PageIndex,
    page_size: ltx::PageSize,
) -> Vec<(PageNo, Vec<u8>)> {
    let mut pages = Vec::new();
    for e in &index.entries {
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
    let index =
        PageIndex::decode(index_bytes, region.start).map_err(|e| Error::corrupt(describe(), e))?;
    let file = Arc::new(FileRef::new(info.id, info.size, header));
    let reason = Error::corrupt(describe(), e).to_string();
    crate::log::error!("{reason}: reads of its pages will fail");
    let _ = file.corrupt.set(reason);
    Ok(Loaded {
        file,
        index,
        pages: Vec::new(),
        verified: true,
    })
}

/// Loads several files concurrently, keeping their order.
pub async fn load_all(storage: &dyn Storage, files: &[FileInfo]) -> Result<Vec<Loaded>> {
    futures_util::future::try_join_all(files.iter().map(|f| load(storage, *f))).await
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
