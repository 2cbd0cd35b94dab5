//! Decoding a whole file at once, with its checksum verified.

use super::checksum::Crc64;
use super::error::LtxError;
use super::frame::{FRAME_HEADER_SIZE, decode_frame};
use super::header::{HEADER_SIZE, Header};
use super::index::{INDEX_LOCATOR_SIZE, IndexEntry, PageIndex, index_region};
use super::trailer::{TRAILER_SIZE, Trailer};
use super::types::PageNo;

/// A whole LTX file, decoded and verified.
#[derive(Clone, Debug)]
pub struct DecodedFile {
    pub header: Header,
    pub index: PageIndex,
    /// The decompressed pages, in the order of `index.entries`.
    pub pages: Vec<(PageNo, Vec<u8>)>,
    pub trailer: Trailer,
}

/// Decodes every part of `bytes` and verifies the file checksum, so that a
/// file read whole is known to be exactly what Litestream wrote.
pub fn decode_file(bytes: &[u8]) -> Result<DecodedFile, LtxError> {
    let header = Header::decode(bytes)?;
    let len = bytes.len() as u64;
    let region = index_region(len, bytes)?;
    let index_bytes = slice(bytes, region.start, region.end)?;
    let index = PageIndex::decode(index_bytes, region.start)?;
    let trailer = Trailer::decode(bytes)?;

    let mut crc = Crc64::new();
    crc.update(slice(bytes, 0, HEADER_SIZE as u64)?);
    let mut pages = Vec::with_capacity(index.entries.len());
    let mut expected_offset = HEADER_SIZE as u64;
    for entry in &index.entries {
        if entry.offset != expected_offset {
            return Err(LtxError::invalid(
                "page index",
                format!(
                    "page {} at offset {}, expected {expected_offset}",
                    entry.pgno.0, entry.offset
                ),
            ));
        }
        let frame = decode_frame(frame_bytes(bytes, entry)?, header.page_size)?;
        if frame.header.pgno != entry.pgno {
            return Err(LtxError::invalid(
                "frame",
                format!(
                    "frame holds page {} where the index says {}",
                    frame.header.pgno.0, entry.pgno.0
                ),
            ));
        }
        crc.update(slice(
            bytes,
            entry.offset,
            entry.offset.saturating_add(FRAME_HEADER_SIZE as u64),
        )?);
        if let Some(size) = frame.size_field {
            crc.update(&size);
        }
        crc.update(&frame.page);
        pages.push((entry.pgno, frame.page));
        expected_offset = entry.offset.saturating_add(u64::from(entry.size));
    }
    let end_marker = slice(
        bytes,
        expected_offset,
        expected_offset.saturating_add(FRAME_HEADER_SIZE as u64),
    )?;
    if end_marker.iter().any(|b| *b != 0)
        || expected_offset.saturating_add(FRAME_HEADER_SIZE as u64) != region.start
    {
        return Err(LtxError::invalid(
            "page block",
            "no end marker before the page index",
        ));
    }
    crc.update(end_marker);
    let index_and_len = slice(bytes, region.start, len.saturating_sub(TRAILER_SIZE as u64))?;
    crc.update(index_and_len);
    let trailer_start = len.saturating_sub(TRAILER_SIZE as u64);
    crc.update(slice(
        bytes,
        trailer_start,
        trailer_start.saturating_add(8),
    )?);
    let computed = crc.finish();
    if computed != trailer.file_checksum {
        return Err(LtxError::Checksum {
            stored: trailer.file_checksum,
            computed,
        });
    }
    debug_assert_eq!(len.saturating_sub(region.end), INDEX_LOCATOR_SIZE as u64);
    Ok(DecodedFile {
        header,
        index,
        pages,
        trailer,
    })
}

/// The bytes of one frame as the index locates it.
pub(crate) fn frame_bytes<'a>(bytes: &'a [u8], entry: &IndexEntry) -> Result<&'a [u8], LtxError> {
    slice(
        bytes,
        entry.offset,
        entry.offset.saturating_add(u64::from(entry.size)),
    )
}

fn slice(bytes: &[u8], start: u64, end: u64) -> Result<&[u8], LtxError> {
    let (s, e) = (usize::try_from(start), usize::try_from(end));
    match (s, e) {
        (Ok(s), Ok(e)) if s <= e => bytes
            .get(s..e)
            .ok_or_else(|| LtxError::truncated("file", e, bytes.len())),
        _ => Err(LtxError::invalid("file", format!("range {start}..{end}"))),
    }
}
