//! The one decode loop of fetched frames, shared by the page reader and
//! hydration: a ranged read of one file holds frames in offset order; each
//! is cut out, decoded and checked to hold the page the index says.

use std::ops::Range;

use std::sync::Arc;

use crate::cache::Page;
use crate::error::{Error, Result};
use crate::ltx::{self, PageNo};

/// Zeros to start a page from: a page buffer is made by copying these
/// into a new shared allocation, then decoded into in place (no second
/// buffer). As large as the largest page.
static ZEROS: [u8; 65536] = [0; 65536];

/// Decodes the frames at `frames` (page and offset, in offset order) out of
/// `bytes`, which hold the file's `range`. A frame that runs past the end
/// of `bytes` (longer than the bound it was read with) is passed to
/// `beyond` with its offset and exact length, which reads it or fails.
/// `describe` names the file in errors.
pub fn decode_frames(
    bytes: &[u8],
    range: &Range<u64>,
    frames: impl IntoIterator<Item = (PageNo, u64)>,
    page_size: ltx::PageSize,
    describe: &dyn Fn() -> String,
    beyond: impl FnMut(u64, usize) -> Result<Vec<u8>>,
) -> Result<Vec<(PageNo, Vec<u8>)>> {
    let decode = |raw: &[u8]| ltx::decode_frame(raw, page_size).map(|f| (f.header.pgno, f.page));
    decode_each(bytes, range, frames, describe, beyond, decode, |_, _| {})
}

/// [`decode_frames`] into pages as the cache keeps them: each page is
/// decoded straight into its one shared allocation (a decoded `Vec` turned
/// into a [`Page`] would be a second allocation and a copy per page, and
/// the two sizes interleaved fragment the heap). `each` is called with the
/// index of each frame and its page as soon as it is decoded and checked
/// (the page reader puts it in the cache then, rather than holding a whole
/// run's pages beside a full cache).
pub fn decode_pages(
    bytes: &[u8],
    range: &Range<u64>,
    frames: impl IntoIterator<Item = (PageNo, u64)>,
    page_size: ltx::PageSize,
    describe: &dyn Fn() -> String,
    beyond: impl FnMut(u64, usize) -> Result<Vec<u8>>,
    each: impl FnMut(usize, &Page),
) -> Result<Vec<(PageNo, Page)>> {
    let zeros = ZEROS.get(..page_size.bytes()).unwrap_or_default();
    let decode = |raw: &[u8]| {
        let mut page: Page = Arc::from(zeros);
        let Some(buf) = Arc::get_mut(&mut page) else {
            return Err(ltx::LtxError::invalid("frame", "page buffer shared"));
        };
        let header = ltx::decode_frame_into(raw, page_size, buf)?;
        Ok((header.pgno, page))
    };
    decode_each(bytes, range, frames, describe, beyond, decode, each)
}

fn decode_each<P>(
    bytes: &[u8],
    range: &Range<u64>,
    frames: impl IntoIterator<Item = (PageNo, u64)>,
    describe: &dyn Fn() -> String,
    mut beyond: impl FnMut(u64, usize) -> Result<Vec<u8>>,
    mut decode: impl FnMut(&[u8]) -> std::result::Result<(PageNo, P), ltx::LtxError>,
    mut each: impl FnMut(usize, &P),
) -> Result<Vec<(PageNo, P)>> {
    let frames = frames.into_iter();
    let mut pages = Vec::with_capacity(frames.size_hint().0);
    for (pgno, offset) in frames {
        let from = offset
            .checked_sub(range.start)
            .and_then(|d| usize::try_from(d).ok())
            .unwrap_or(usize::MAX);
        let rest = bytes
            .get(from..)
            .ok_or_else(|| Error::Missing(format!("short read of {}", describe())))?;
        let len = ltx::frame_len(rest).map_err(|e| Error::corrupt(describe(), e))?;
        let exact;
        let raw = match rest.get(..len) {
            Some(raw) => raw,
            None => {
                exact = beyond(offset, len)?;
                exact.as_slice()
            }
        };
        let (got, page) = decode(raw).map_err(|e| Error::corrupt(describe(), e))?;
        if got != pgno {
            return Err(Error::corrupt(
                describe(),
                ltx::LtxError::Invalid {
                    what: "frame",
                    detail: format!("offset {offset} holds page {}, not {}", got.0, pgno.0),
                },
            ));
        }
        each(pages.len(), &page);
        pages.push((pgno, page));
    }
    Ok(pages)
}
