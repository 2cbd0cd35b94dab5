//! The page index at the end of a file: LEB128 varints
//! `(page number, frame offset, frame size)`, ended by a `0`, then a u64
//! holding the byte length of the entries.

use std::ops::Range;

use super::error::{LtxError, be_u64};
use super::frame::FRAME_HEADER_SIZE;
use super::header::HEADER_SIZE;
use super::trailer::TRAILER_SIZE;
use super::types::PageNo;

/// Bytes at the end of a file that locate the index: its u64 length, then the trailer.
pub const INDEX_LOCATOR_SIZE: usize = 8 + TRAILER_SIZE;

/// Where one page's frame lives in its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub pgno: PageNo,
    /// Absolute byte offset of the frame.
    pub offset: u64,
    /// Frame size in bytes: header, optional size field and payload.
    pub size: u32,
}

/// A decoded page index, sorted by page number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageIndex {
    pub entries: Vec<IndexEntry>,
}

/// The byte range of the index entries (terminator included) in a file of
/// `file_len` bytes, given the file's final [`INDEX_LOCATOR_SIZE`] bytes.
pub fn index_region(file_len: u64, tail: &[u8]) -> Result<Range<u64>, LtxError> {
    let min_len = (HEADER_SIZE + FRAME_HEADER_SIZE + 1 + INDEX_LOCATOR_SIZE) as u64;
    if file_len < min_len {
        return Err(LtxError::truncated(
            "file",
            min_len as usize,
            file_len as usize,
        ));
    }
    let locator = tail
        .len()
        .checked_sub(INDEX_LOCATOR_SIZE)
        .ok_or_else(|| LtxError::truncated("index locator", INDEX_LOCATOR_SIZE, tail.len()))?;
    let len = be_u64(tail, locator, "index length")?;
    let end = file_len.saturating_sub(INDEX_LOCATOR_SIZE as u64);
    let start = end
        .checked_sub(len)
        .filter(|s| *s >= (HEADER_SIZE + FRAME_HEADER_SIZE) as u64 && len > 0)
        .ok_or_else(|| {
            LtxError::invalid(
                "index length",
                format!("{len} does not fit a {file_len}-byte file"),
            )
        })?;
    Ok(start..end)
}

impl PageIndex {
    /// Decodes the index entries. `bytes` is exactly the region that
    /// [`index_region`] returned, which starts at file offset `index_start`.
    pub fn decode(bytes: &[u8], index_start: u64) -> Result<PageIndex, LtxError> {
        let block_end = index_start.saturating_sub(FRAME_HEADER_SIZE as u64);
        let mut entries = Vec::new();
        let mut at = 0usize;
        let mut prev = 0u32;
        loop {
            let pgno = read_varint(bytes, &mut at)?;
            if pgno == 0 {
                break;
            }
            let offset = read_varint(bytes, &mut at)?;
            let size = read_varint(bytes, &mut at)?;
            let entry = validate(pgno, offset, size, prev, block_end)?;
            prev = entry.pgno.0;
            entries.push(entry);
        }
        if at != bytes.len() {
            return Err(LtxError::invalid(
                "page index",
                format!(
                    "{} bytes after the terminator",
                    bytes.len().saturating_sub(at)
                ),
            ));
        }
        Ok(PageIndex { entries })
    }

    /// The entry for `pgno`, if this file holds that page.
    pub fn get(&self, pgno: PageNo) -> Option<&IndexEntry> {
        self.entries
            .binary_search_by_key(&pgno, |e| e.pgno)
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// Encodes entries, terminator and length (used by the test builder).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            write_varint(&mut out, u64::from(e.pgno.0));
            write_varint(&mut out, e.offset);
            write_varint(&mut out, u64::from(e.size));
        }
        write_varint(&mut out, 0);
        let len = out.len() as u64;
        out.extend_from_slice(&len.to_be_bytes());
        out
    }
}

fn validate(
    pgno: u64,
    offset: u64,
    size: u64,
    prev: u32,
    block_end: u64,
) -> Result<IndexEntry, LtxError> {
    let what = "page index";
    let pgno = u32::try_from(pgno).map_err(|_| LtxError::invalid(what, format!("page {pgno}")))?;
    if pgno <= prev {
        return Err(LtxError::invalid(
            what,
            format!("page {pgno} after page {prev}: not sorted"),
        ));
    }
    let size = u32::try_from(size)
        .ok()
        .filter(|s| *s as usize > FRAME_HEADER_SIZE)
        .ok_or_else(|| LtxError::invalid(what, format!("page {pgno}: frame size {size}")))?;
    let fits = offset >= HEADER_SIZE as u64
        && offset
            .checked_add(u64::from(size))
            .is_some_and(|end| end <= block_end);
    if !fits {
        return Err(LtxError::invalid(
            what,
            format!("page {pgno}: frame {offset}+{size} outside the page block"),
        ));
    }
    Ok(IndexEntry {
        pgno: PageNo(pgno),
        offset,
        size,
    })
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Result<u64, LtxError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes
            .get(*at)
            .ok_or_else(|| LtxError::truncated("page index", at.saturating_add(1), bytes.len()))?;
        *at = at.saturating_add(1);
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return Err(LtxError::invalid("page index", "varint overflows 64 bits"));
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(LtxError::invalid(
        "page index",
        "varint longer than 10 bytes",
    ))
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            write_varint(&mut buf, v);
            let mut at = 0;
            assert_eq!(read_varint(&buf, &mut at), Ok(v));
            assert_eq!(at, buf.len());
        }
    }

    #[test]
    fn rejects_overlong_varint() {
        let mut at = 0;
        assert!(read_varint(&[0xff; 11], &mut at).is_err());
    }
}
