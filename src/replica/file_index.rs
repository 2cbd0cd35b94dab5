//! The page index of one loaded file, as compact as its kind allows.
//!
//! A snapshot (it holds every page `1..=commit`) is decoded as its index
//! streams in straight into the chunks a [`Snapshot`](super::Snapshot) is
//! made of, about 4 bytes per page, placed in slot 0: the snapshot built on
//! it takes these chunks as they are. No buffer of the raw index and no
//! vector of decoded entries exists beside them. Other files (few pages,
//! scattered) keep their decoded entries.

use std::sync::Arc;

use crate::ltx::{FRAME_HEADER_SIZE, HEADER_SIZE, Header, IndexDecoder, IndexEntry, LtxError};
use crate::ltx::{PageIndex, PageNo, SnapshotPages};

use super::chunk::{CHUNK, CHUNK_BITS, Chunk, OFFSET_BITS, OFFSET_MASK};
use super::snapshot::Places;

/// A loaded file's page index.
#[derive(Clone, Debug)]
pub enum FileIndex {
    /// Decoded entries: files read whole, and files that are not snapshots.
    Entries(PageIndex),
    /// A snapshot's pages in a snapshot's chunks (see the module docs).
    Dense(Dense),
}

/// A snapshot file's pages in slot 0 of snapshot chunks. Its frames are
/// contiguous and fill the page block (checked while decoding), so a
/// frame's size is the distance to the next one.
#[derive(Clone, Debug)]
pub struct Dense {
    chunks: Vec<Arc<Chunk>>,
    /// Where the page block ends (the zero frame header).
    block_end: u64,
    /// Pages placed.
    pages: usize,
}

impl From<PageIndex> for FileIndex {
    fn from(index: PageIndex) -> FileIndex {
        FileIndex::Entries(index)
    }
}

impl FileIndex {
    /// Decodes a whole index region at once (kept metadata).
    pub fn decode(header: &Header, bytes: &[u8], index_start: u64) -> Result<FileIndex, LtxError> {
        let mut building = Building::new(header, index_start);
        let mut decoder = IndexDecoder::new(index_start);
        decoder.feed(bytes, &mut |e| building.push(e))?;
        decoder.finish()?;
        building.finish()
    }

    /// Every entry, by page number, with its frame's size.
    pub fn entries(&self) -> Box<dyn Iterator<Item = IndexEntry> + Send + '_> {
        match self {
            FileIndex::Entries(index) => Box::new(index.entries.iter().copied()),
            FileIndex::Dense(d) => {
                let mut places = d.places().peekable();
                let block_end = d.block_end;
                Box::new(std::iter::from_fn(move || {
                    let (pgno, offset) = places.next()?;
                    let end = places.peek().map_or(block_end, |(_, next)| *next);
                    Some(IndexEntry {
                        pgno,
                        offset,
                        size: u32::try_from(end.saturating_sub(offset)).unwrap_or(u32::MAX),
                    })
                }))
            }
        }
    }

    /// Entries in the index.
    pub fn len(&self) -> usize {
        match self {
            FileIndex::Entries(index) => index.entries.len(),
            FileIndex::Dense(d) => d.pages,
        }
    }

    /// Whether the file holds no page.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw index entries and terminator, as the file holds them (what
    /// the blobs keep of a large file).
    pub fn encode_entries(&self) -> Vec<u8> {
        crate::ltx::encode_entries(self.entries())
    }
}

impl Dense {
    fn places(&self) -> impl Iterator<Item = (PageNo, u64)> + Send + '_ {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            (0..CHUNK).filter_map(move |i| {
                let wide = chunk.get(i);
                let pgno = u32::try_from((c << CHUNK_BITS) + i + 1).ok()?;
                (wide != 0).then_some((PageNo(pgno), wide & OFFSET_MASK))
            })
        })
    }
}

impl Places for FileIndex {
    fn places(&self) -> Box<dyn Iterator<Item = (PageNo, u64)> + Send + '_> {
        match self {
            FileIndex::Entries(index) => index.places(),
            FileIndex::Dense(d) => Box::new(d.places()),
        }
    }

    fn chunks(&self) -> Option<&[Arc<Chunk>]> {
        match self {
            FileIndex::Entries(_) => None,
            FileIndex::Dense(d) => Some(&d.chunks),
        }
    }
}

/// A file's index being decoded: entries go where [`FileIndex`] keeps them
/// for the file's kind.
pub enum Building {
    Entries(Vec<IndexEntry>),
    Dense {
        dense: Dense,
        /// The page numbers so far: every page from 1 to `commit` in
        /// order, so that the chunks grow with the entries actually read,
        /// never with a page number or `commit` the file merely claims.
        pages: SnapshotPages,
        /// Where the next frame must start.
        next: u64,
    },
}

/// Slot 0 of a snapshot, in a wide entry.
const SLOT_0: u64 = 1 << OFFSET_BITS;

impl Building {
    /// An index of the file whose header is `header` and whose index starts
    /// at `index_start`.
    pub fn new(header: &Header, index_start: u64) -> Building {
        if header.is_snapshot() {
            Building::Dense {
                dense: Dense {
                    chunks: Vec::new(),
                    block_end: index_start.saturating_sub(FRAME_HEADER_SIZE as u64),
                    pages: 0,
                },
                pages: SnapshotPages::new(header),
                next: HEADER_SIZE as u64,
            }
        } else {
            Building::Entries(Vec::new())
        }
    }

    /// Takes the next entry of the index (checked by [`IndexDecoder`]).
    pub fn push(&mut self, e: IndexEntry) -> Result<(), LtxError> {
        let (dense, pages, next) = match self {
            Building::Entries(entries) => {
                entries.push(e);
                return Ok(());
            }
            Building::Dense { dense, pages, next } => (dense, pages, next),
        };
        let invalid = |detail: String| LtxError::Invalid {
            what: "page index",
            detail,
        };
        pages.check(e.pgno)?;
        if e.offset != *next {
            return Err(invalid(format!(
                "page {} at offset {}, expected {}",
                e.pgno.0, e.offset, *next
            )));
        }
        if e.offset > OFFSET_MASK {
            return Err(invalid(format!("page {} beyond 256 TiB", e.pgno.0)));
        }
        *next = e.offset.saturating_add(u64::from(e.size));
        let i = (e.pgno.0 as usize).saturating_sub(1);
        let c = i >> CHUNK_BITS;
        // Pages come in order, each the one due (checked above): a chunk is
        // added at its first page, one at a time, never a run of them.
        if c == dense.chunks.len() {
            dense.chunks.push(Arc::default());
        }
        let chunk = dense
            .chunks
            .get_mut(c)
            .ok_or_else(|| invalid(format!("page {} out of order", e.pgno.0)))?;
        Arc::make_mut(chunk).set(i & (CHUNK - 1), SLOT_0 | e.offset);
        dense.pages = dense.pages.saturating_add(1);
        Ok(())
    }

    /// The index, once every entry was pushed.
    pub fn finish(self) -> Result<FileIndex, LtxError> {
        match self {
            Building::Entries(entries) => Ok(FileIndex::Entries(PageIndex { entries })),
            Building::Dense { dense, pages, next } => {
                pages.finish()?;
                if next != dense.block_end {
                    return Err(LtxError::Invalid {
                        what: "page block",
                        detail: format!(
                            "frames end at {next}, the page block at {}",
                            dense.block_end
                        ),
                    });
                }
                Ok(FileIndex::Dense(dense))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ltx::{LtxBuilder, PageSize, index_region};

    fn file(min: u64, commit: u32, pages: impl Iterator<Item = u32>) -> (Header, Vec<u8>) {
        let mut b = LtxBuilder::new(PageSize::new(512).unwrap(), min, min, commit);
        for p in pages {
            b = b.page(p, &[p as u8; 512]);
        }
        let bytes = b.build();
        (Header::decode(&bytes).unwrap(), bytes)
    }

    fn decode(header: &Header, bytes: &[u8], piece: usize) -> Result<FileIndex, LtxError> {
        let region = index_region(bytes.len() as u64, bytes).unwrap();
        let raw = &bytes[region.start as usize..region.end as usize];
        let mut building = Building::new(header, region.start);
        let mut decoder = IndexDecoder::new(region.start);
        for p in raw.chunks(piece) {
            decoder.feed(p, &mut |e| building.push(e))?;
        }
        decoder.finish()?;
        building.finish()
    }

    #[test]
    fn a_snapshot_is_dense_and_reads_back_its_entries() {
        let (h, bytes) = file(1, 3000, 1..=3000);
        let expected = crate::ltx::decode_file(&bytes).unwrap().index;
        for piece in [1, 2, 7, 29, 30, 31, 1000, bytes.len()] {
            let index = decode(&h, &bytes, piece).unwrap();
            assert!(matches!(index, FileIndex::Dense(_)));
            assert_eq!(index.len(), 3000);
            assert_eq!(
                index.entries().collect::<Vec<_>>(),
                expected.entries,
                "{piece}"
            );
            assert_eq!(index.chunks().unwrap().len(), 3);
        }
        let region = index_region(bytes.len() as u64, &bytes).unwrap();
        let raw = &bytes[region.start as usize..region.end as usize];
        assert_eq!(
            FileIndex::decode(&h, raw, region.start)
                .unwrap()
                .encode_entries(),
            raw
        );
    }

    #[test]
    fn other_files_keep_their_entries() {
        let (h, bytes) = file(5, 3000, [3, 2000].into_iter());
        let index = decode(&h, &bytes, 3).unwrap();
        assert!(matches!(index, FileIndex::Entries(_)));
        assert_eq!(index.len(), 2);
        assert!(index.chunks().is_none());
    }

    #[test]
    fn a_snapshot_with_gaps_or_pages_beyond_commit_is_refused() {
        // Frames out of order: the index is sorted, the frames are not.
        let (h, bytes) = file(1, 10, 1..=10);
        let region = index_region(bytes.len() as u64, &bytes).unwrap();
        let d = crate::ltx::decode_file(&bytes).unwrap();
        let mut swapped = d.index.entries.clone();
        let (a, b) = (swapped[0].offset, swapped[1].offset);
        swapped[0].offset = b;
        swapped[1].offset = a;
        let raw = crate::ltx::encode_entries(swapped.into_iter());
        let e = FileIndex::decode(&h, &raw, region.start).unwrap_err();
        assert!(e.to_string().contains("expected"), "{e}");
        // A page beyond the snapshot's size.
        let small = Header { commit: 9, ..h };
        let raw = crate::ltx::encode_entries(d.index.entries.iter().copied());
        let e = FileIndex::decode(&small, &raw, region.start).unwrap_err();
        assert!(e.to_string().contains("snapshot of 9 pages"), "{e}");
        // Pages that stop short of the snapshot's size.
        let short = crate::ltx::encode_entries(d.index.entries.iter().take(9).copied());
        let e = FileIndex::decode(&h, &short, region.start).unwrap_err();
        assert!(e.to_string().contains("holds pages 1 to 9 only"), "{e}");
        // Frames that stop short of the page block's end.
        let e = FileIndex::decode(&small, &short, region.start).unwrap_err();
        assert!(e.to_string().contains("frames end at"), "{e}");
        // A page left out, or one of billions.
        for (skip, to) in [(5, 7), (9, 4_000_000_000)] {
            let mut gapped = d.index.entries.clone();
            gapped[skip].pgno = PageNo(to);
            gapped.truncate(skip + 1);
            let raw = crate::ltx::encode_entries(gapped.into_iter());
            let h = Header {
                commit: 4_000_000_000,
                ..h.clone()
            };
            let e = FileIndex::decode(&h, &raw, region.start).unwrap_err();
            assert!(e.to_string().contains("is due"), "{e}");
        }
        assert!(FileIndex::decode(&h, &raw, region.start).is_ok());
    }
}
