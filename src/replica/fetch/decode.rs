//! The one decode loop of fetched frames, shared by the page reader and
//! hydration: a ranged read of one file holds frames in offset order; each
//! is cut out, decoded and checked to hold the page the index says.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::ltx::{self, PageNo};

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
    mut beyond: impl FnMut(u64, usize) -> Result<Vec<u8>>,
) -> Result<Vec<(PageNo, Vec<u8>)>> {
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
        let frame = ltx::decode_frame(raw, page_size).map_err(|e| Error::corrupt(describe(), e))?;
        if frame.header.pgno != pgno {
            return Err(Error::corrupt(
                describe(),
                ltx::LtxError::Invalid {
                    what: "frame",
                    detail: format!(
                        "offset {offset} holds page {}, not {}",
                        frame.header.pgno.0, pgno.0
                    ),
                },
            ));
        }
        pages.push((pgno, frame.page));
    }
    Ok(pages)
}
