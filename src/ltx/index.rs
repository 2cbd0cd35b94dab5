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
        // Sized once: a vector grown by doubling holds up to three times
        // the entries' bytes while it moves (a 1,000,000-page index is 16 MB).
        let mut entries = Vec::with_capacity(count_entries(bytes));
        let mut decoder = IndexDecoder::new(index_start);
        decoder.feed(bytes, &mut |e| {
            entries.push(e);
            Ok(())
        })?;
        decoder.finish()?;
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
        let mut out = encode_entries(self.entries.iter().copied());
        let len = out.len() as u64;
        out.extend_from_slice(&len.to_be_bytes());
        out
    }
}

/// Encodes entries and the terminator: the index region of a file.
pub fn encode_entries(entries: impl Iterator<Item = IndexEntry>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        write_varint(&mut out, u64::from(e.pgno.0));
        write_varint(&mut out, e.offset);
        write_varint(&mut out, u64::from(e.size));
    }
    write_varint(&mut out, 0);
    out
}

/// Entries in `bytes` up to the terminator (three varints each), counted
/// by walking the varints without decoding them: a capacity, not a check
/// (`decode` rejects what is malformed).
fn count_entries(bytes: &[u8]) -> usize {
    let mut at = 0usize;
    let mut n = 0usize;
    while bytes.get(at).is_some_and(|b| *b != 0) {
        for _ in 0..3 {
            while bytes.get(at).is_some_and(|b| *b >= 0x80) {
                at = at.saturating_add(1);
            }
            at = at.saturating_add(1);
        }
        n = n.saturating_add(1);
    }
    n.min(bytes.len() / 3)
}

/// Bytes of the longest entry: three varints of at most 10 bytes.
const MAX_ENTRY: usize = 30;

/// Decodes a page index as it arrives, in pieces of any size: each entry
/// is checked as [`PageIndex::decode`] checks it (sorted, frame inside the
/// page block) and handed to a sink, so that no buffer of the whole index
/// and no vector of its entries need exist. An entry cut by the end of a
/// piece waits (at most [`MAX_ENTRY`] bytes) for the next.
#[derive(Debug)]
pub struct IndexDecoder {
    /// Where the page block ends: frames must end before the zero header.
    block_end: u64,
    /// The last page number decoded.
    prev: u32,
    /// The start of an entry cut by the end of the last piece.
    carry: Vec<u8>,
    /// Bytes fed so far.
    fed: usize,
    /// Whether the terminator was read.
    done: bool,
}

impl IndexDecoder {
    /// A decoder of the index that starts at file offset `index_start`.
    pub fn new(index_start: u64) -> IndexDecoder {
        IndexDecoder {
            block_end: index_start.saturating_sub(FRAME_HEADER_SIZE as u64),
            prev: 0,
            carry: Vec::with_capacity(MAX_ENTRY),
            fed: 0,
            done: false,
        }
    }

    /// Decodes the next piece of the index, calling `sink` with each entry
    /// completed, in order. A sink's error stops the decoding.
    pub fn feed(
        &mut self,
        piece: &[u8],
        sink: &mut dyn FnMut(IndexEntry) -> Result<(), LtxError>,
    ) -> Result<(), LtxError> {
        let mut rest = piece;
        if !self.carry.is_empty() && !self.done {
            // The cut entry, completed from the front of this piece.
            let take = MAX_ENTRY.saturating_sub(self.carry.len()).min(rest.len());
            let had = self.carry.len();
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(rest.get(..take).unwrap_or_default());
            match self.entry(&joined, sink)? {
                Some(used) => {
                    rest = rest.get(used.saturating_sub(had)..).unwrap_or_default();
                    self.fed = self.fed.saturating_add(used.saturating_sub(had));
                    joined.clear();
                    self.carry = joined;
                }
                None => {
                    // Still cut: this whole piece was too short.
                    self.fed = self.fed.saturating_add(rest.len());
                    self.carry = joined;
                    return Ok(());
                }
            }
        }
        while !rest.is_empty() {
            if self.done {
                return Err(LtxError::invalid(
                    "page index",
                    format!("{} bytes after the terminator", rest.len()),
                ));
            }
            match self.entry(rest, sink)? {
                Some(used) => {
                    rest = rest.get(used..).unwrap_or_default();
                    self.fed = self.fed.saturating_add(used);
                }
                None => {
                    self.fed = self.fed.saturating_add(rest.len());
                    self.carry.extend_from_slice(rest);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Checks that the whole index was fed: its terminator read, nothing
    /// after it.
    pub fn finish(self) -> Result<(), LtxError> {
        if self.done {
            Ok(())
        } else {
            Err(LtxError::truncated(
                "page index",
                self.fed.saturating_add(1),
                self.fed,
            ))
        }
    }

    /// Decodes the entry (or terminator) at the start of `bytes`: the bytes
    /// it took, or `None` when `bytes` ends inside it.
    fn entry(
        &mut self,
        bytes: &[u8],
        sink: &mut dyn FnMut(IndexEntry) -> Result<(), LtxError>,
    ) -> Result<Option<usize>, LtxError> {
        if self.done {
            return Err(LtxError::invalid(
                "page index",
                format!("{} bytes after the terminator", bytes.len()),
            ));
        }
        let mut at = 0usize;
        let next = |at: &mut usize| match read_varint(bytes, at) {
            Ok(v) => Ok(Some(v)),
            // Cut by the end of the piece: the next piece completes it.
            Err(LtxError::Truncated { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        let Some(pgno) = next(&mut at)? else {
            return Ok(None);
        };
        if pgno == 0 {
            self.done = true;
            return Ok(Some(at));
        }
        let Some(offset) = next(&mut at)? else {
            return Ok(None);
        };
        let Some(size) = next(&mut at)? else {
            return Ok(None);
        };
        let entry = validate(pgno, offset, size, self.prev, self.block_end)?;
        self.prev = entry.pgno.0;
        sink(entry)?;
        Ok(Some(at))
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
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
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
        // Eleven bytes whose value would fit: still longer than 10 bytes.
        let mut long = vec![0x80u8; 10];
        long.push(0);
        assert!(read_varint(&long, &mut 0).is_err());
        // Ten bytes, the tenth holding more than the one bit left.
        let mut over = vec![0xffu8; 9];
        over.push(0x02);
        assert!(read_varint(&over, &mut 0).is_err());
        over[9] = 0x01;
        assert_eq!(read_varint(&over, &mut 0), Ok(u64::MAX));
        // A varint cut short.
        assert!(read_varint(&[0x80, 0x80], &mut 0).is_err());
        assert!(read_varint(&[], &mut 0).is_err());
    }

    fn entry(pgno: u32, offset: u64, size: u32) -> IndexEntry {
        IndexEntry {
            pgno: PageNo(pgno),
            offset,
            size,
        }
    }

    /// Raw entries, terminator included (no length).
    fn raw(entries: &[(u64, u64, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (p, o, s) in entries {
            write_varint(&mut out, *p);
            write_varint(&mut out, *o);
            write_varint(&mut out, *s);
        }
        write_varint(&mut out, 0);
        out
    }

    /// The index of a file whose page block ends (zero header included) at 10_000.
    const START: u64 = 10_000;

    #[test]
    fn round_trips_and_looks_up() {
        let index = PageIndex {
            entries: vec![entry(1, 100, 300), entry(2, 400, 7), entry(900, 407, 9000)],
        };
        let enc = index.encode();
        let (entries, len) = enc.split_at(enc.len() - 8);
        assert_eq!(
            u64::from_be_bytes(len.try_into().unwrap()),
            entries.len() as u64
        );
        let decoded = PageIndex::decode(entries, START).unwrap();
        assert_eq!(decoded, index);
        assert_eq!(decoded.entries.capacity(), 3, "sized once");
        assert_eq!(count_entries(entries), 3);
        assert_eq!(decoded.get(PageNo(2)), Some(&entry(2, 400, 7)));
        assert_eq!(decoded.get(PageNo(3)), None);
        assert_eq!(decoded.get(PageNo(0)), None);
        assert_eq!(PageIndex::decode(&[0], START), Ok(PageIndex::default()));
    }

    #[test]
    fn rejects_unsorted_and_duplicate_pages() {
        for entries in [[(2, 100, 50), (1, 150, 50)], [(2, 100, 50), (2, 150, 50)]] {
            let e = PageIndex::decode(&raw(&entries), START).unwrap_err();
            assert!(e.to_string().contains("not sorted"), "{e}");
        }
    }

    #[test]
    fn rejects_frames_outside_the_page_block() {
        let block_end = START - FRAME_HEADER_SIZE as u64;
        for (o, s) in [
            (0, 50),
            (99, 50),
            (block_end - 49, 50),
            (block_end, 7),
            (u64::MAX - 3, 50),
            (u64::MAX, u64::from(u32::MAX)),
        ] {
            let e = PageIndex::decode(&raw(&[(1, o, s)]), START).unwrap_err();
            assert!(e.to_string().contains("outside"), "{o}+{s}: {e}");
        }
        assert!(PageIndex::decode(&raw(&[(1, block_end - 50, 50)]), START).is_ok());
    }

    #[test]
    fn rejects_bad_numbers() {
        // Page numbers beyond u32, sizes too small for a frame or beyond u32.
        for entries in [
            (1u64 << 32, 100, 50),
            (u64::MAX, 100, 50),
            (1, 100, 0),
            (1, 100, FRAME_HEADER_SIZE as u64),
            (1, 100, 1 << 32),
        ] {
            assert!(
                PageIndex::decode(&raw(&[entries]), START).is_err(),
                "{entries:?}"
            );
        }
    }

    #[test]
    fn rejects_missing_terminator_and_trailing_bytes() {
        let good = raw(&[(1, 100, 50), (2, 150, 50)]);
        for n in 0..good.len() {
            assert!(PageIndex::decode(&good[..n], START).is_err(), "{n}");
        }
        let mut extra = good.clone();
        extra.push(0);
        let e = PageIndex::decode(&extra, START).unwrap_err();
        assert!(e.to_string().contains("after the terminator"), "{e}");
    }

    /// Decodes `raw` fed in pieces of `piece` bytes.
    fn in_pieces(raw: &[u8], piece: usize) -> Result<Vec<IndexEntry>, LtxError> {
        let mut out = Vec::new();
        let mut d = IndexDecoder::new(START);
        for p in raw.chunks(piece) {
            d.feed(p, &mut |e| {
                out.push(e);
                Ok(())
            })?;
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn decodes_the_same_in_pieces_of_any_size() {
        let entries = [
            (1, 100, 300),
            (2, 400, 70),
            (300, 470, 9000),
            (u64::from(u32::MAX), 9470, 20),
        ];
        let good = raw(&entries);
        let whole = PageIndex::decode(&good, START).unwrap().entries;
        assert_eq!(whole.len(), 4);
        for piece in 1..=good.len() {
            assert_eq!(in_pieces(&good, piece).unwrap(), whole, "{piece}");
            // Cut short anywhere, or followed by a byte: an error, whatever
            // the pieces.
            for n in 0..good.len() {
                assert!(in_pieces(&good[..n], piece).is_err(), "{piece} {n}");
            }
            let mut extra = good.clone();
            extra.push(0);
            assert!(in_pieces(&extra, piece).is_err(), "{piece}");
        }
        // A sink's error stops the decoding.
        let mut d = IndexDecoder::new(START);
        let e = d
            .feed(&good, &mut |_| Err(LtxError::invalid("page index", "stop")))
            .unwrap_err();
        assert!(e.to_string().contains("stop"), "{e}");
    }

    fn tail(len: u64) -> Vec<u8> {
        let mut t = len.to_be_bytes().to_vec();
        t.extend_from_slice(&[0; TRAILER_SIZE]);
        t
    }

    #[test]
    fn locates_the_index_from_the_tail() {
        assert_eq!(index_region(1000, &tail(10)), Ok(966..976));
        // A tail with more bytes in front of the locator.
        let mut longer = vec![9u8; 100];
        longer.extend(tail(10));
        assert_eq!(index_region(1000, &longer), Ok(966..976));
        // The smallest file: header, zero frame header, a lone terminator.
        let smallest = (HEADER_SIZE + FRAME_HEADER_SIZE + 1 + INDEX_LOCATOR_SIZE) as u64;
        assert_eq!(
            index_region(smallest, &tail(1)),
            Ok(smallest - 25..smallest - 24)
        );
    }

    #[test]
    fn rejects_impossible_index_lengths() {
        let smallest = (HEADER_SIZE + FRAME_HEADER_SIZE + 1 + INDEX_LOCATOR_SIZE) as u64;
        for (file_len, len) in [
            (1000, 0),
            (1000, 871),
            (1000, 1000),
            (1000, u64::MAX),
            (smallest, 2),
            (smallest - 1, 1),
            (0, 1),
        ] {
            assert!(
                index_region(file_len, &tail(len)).is_err(),
                "{file_len} {len}"
            );
        }
        assert!(index_region(1000, &tail(870)).is_ok());
        for n in 0..INDEX_LOCATOR_SIZE {
            assert!(index_region(1000, &tail(10)[..n]).is_err());
        }
    }
}
