//! A snapshot: the immutable page index of one TXID (page number → where its
//! frame lives). Connections pin one for the length of a read transaction.
//!
//! The index is a chunked copy-on-write vector: applying a file copies only
//! the chunks it touches and shares the rest with the previous snapshot, so a
//! new snapshot costs O(pages changed), whatever the database size.
//!
//! A page's place is its file's slot in the snapshot's file table (16
//! bits) and its frame's offset (48 bits), kept in about 4 bytes per page
//! (a 32-bit reference to one of a few bases per chunk: `chunk.rs`). A
//! frame's length is not stored: it follows from the frame's own header
//! (`ltx::frame_len`), so a reader asks for at most `ltx::max_frame_len`
//! bytes from the offset.

use std::sync::Arc;

use crate::cache::FrameKey;
use crate::error::{Error, Result};
use crate::ltx::{Header, PageIndex, PageNo, PageSize, Txid};
use crate::storage::{FileId, FileInfo};

// Pages per chunk: 1024 of about 4 bytes, so one chunk is about 4 KiB, and
// a 1,000,000-page database has under a thousand chunk pointers to copy.
use super::chunk::{CHUNK, CHUNK_BITS, Chunk, OFFSET_BITS, OFFSET_MASK};
/// Files a snapshot's table may name (slot 0 means "no frame").
const MAX_SLOTS: usize = (1 << (64 - OFFSET_BITS)) - 1;
/// The file table is compacted (files no page points to are dropped) when
/// it reaches this size, or twice what it held after the last compaction:
/// a follower applies a file per poll, most of them superseded soon after.
const COMPACT_SLOTS: usize = 1024;

/// An LTX file that some snapshot reads from.
#[derive(Debug)]
pub struct FileRef {
    pub id: FileId,
    pub size: u64,
    pub header: Header,
    /// The version the listing named (see `FileInfo::version`; 0 when
    /// none): every read of the file is tied to it, so a file written again
    /// under this name (a reset) fails the read instead of answering with
    /// the new bytes.
    pub version: u64,
    /// Set when the file failed verification: every read from it fails.
    pub corrupt: std::sync::OnceLock<String>,
    /// The file checksum of its trailer, once read.
    pub file_checksum: std::sync::OnceLock<u64>,
}

impl FileRef {
    /// A file of no known version (its reads are not tied to one).
    pub fn new(id: FileId, size: u64, header: Header) -> FileRef {
        FileRef::listed(
            FileInfo {
                id,
                size,
                version: 0,
            },
            header,
        )
    }

    /// A file as listed: its reads are tied to the listed version.
    pub fn listed(info: FileInfo, header: Header) -> FileRef {
        FileRef {
            id: info.id,
            size: info.size,
            header,
            version: info.version,
            corrupt: std::sync::OnceLock::new(),
            file_checksum: std::sync::OnceLock::new(),
        }
    }

    /// The cache key of the frame at `offset` in this file. Every cache
    /// key is made here, so that what identifies a file's bytes is decided
    /// in one place: its level and name, and also its size and header
    /// timestamp, because a reset replica reuses the old lineage's names
    /// for other bytes.
    pub fn key(&self, offset: u64) -> FrameKey {
        FrameKey::of(
            self.id.level.get(),
            self.id.name,
            self.size,
            self.header.timestamp_ms,
            offset,
        )
    }
}

/// Where one page's frame lives.
#[derive(Clone, Debug)]
pub struct FrameLoc {
    pub file: Arc<FileRef>,
    pub offset: u64,
    /// Bytes from `offset` that hold the frame at most (the frame's exact
    /// length is in its header): `ltx::max_frame_len`, cut at the end of
    /// the file.
    pub size: u32,
}

impl FrameLoc {
    /// The cache key of this frame.
    pub fn key(&self) -> FrameKey {
        self.file.key(self.offset)
    }

    /// Byte offset just past this frame.
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.size)
    }
}

/// What a file places in a snapshot: its pages and their frame offsets.
pub trait Places {
    /// Every page the file holds and its frame's offset, by page number.
    fn places(&self) -> Box<dyn Iterator<Item = (PageNo, u64)> + Send + '_>;

    /// The pages already in the snapshot's chunks, placed in slot 0: what
    /// a snapshot built on this file takes as its own without a copy.
    fn chunks(&self) -> Option<&[Arc<Chunk>]> {
        None
    }
}

impl Places for PageIndex {
    fn places(&self) -> Box<dyn Iterator<Item = (PageNo, u64)> + Send + '_> {
        Box::new(self.entries.iter().map(|e| (e.pgno, e.offset)))
    }
}

/// The state of the database after one TXID.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub txid: Txid,
    /// Time of the newest applied file, milliseconds since the epoch.
    pub timestamp_ms: i64,
    pub page_size: PageSize,
    /// Database size in pages (`commit` of the newest applied file).
    pub page_count: u32,
    /// Which lineage of the replica this state belongs to: 0 at open, one
    /// more each time the replica is found reset (its TXIDs restarted).
    /// Equal TXIDs of two lineages are different states.
    pub lineage: u32,
    chunks: Vec<Arc<Chunk>>,
    /// The files entries point into, by slot.
    files: Arc<Vec<Arc<FileRef>>>,
    /// Files left in the table by its last compaction.
    live_files: usize,
}

impl Snapshot {
    /// Applies the files of a restore plan, oldest first.
    pub fn build<'a, P: Places + 'a>(
        files: impl IntoIterator<Item = (&'a Arc<FileRef>, &'a P)>,
    ) -> Result<Snapshot> {
        let mut iter = files.into_iter();
        let (first, index) = iter
            .next()
            .ok_or_else(|| Error::Unavailable("the restore plan holds no file".into()))?;
        if !first.header.is_snapshot() {
            return Err(Error::Missing(format!(
                "the restore plan starts at {} instead of a snapshot",
                first.id.name
            )));
        }
        let mut snap = Snapshot {
            txid: Txid(0),
            timestamp_ms: 0,
            page_size: first.header.page_size,
            page_count: 0,
            lineage: 0,
            chunks: Vec::new(),
            files: Arc::new(Vec::new()),
            live_files: 0,
        };
        snap.apply_in_place(first, index)?;
        for (file, index) in iter {
            snap.apply_in_place(file, index)?;
        }
        Ok(snap)
    }

    /// A new snapshot: this one with `file` applied on top.
    pub fn apply(&self, file: &Arc<FileRef>, index: &impl Places) -> Result<Snapshot> {
        let mut next = self.clone();
        next.apply_in_place(file, index)?;
        Ok(next)
    }

    fn apply_in_place(&mut self, file: &Arc<FileRef>, index: &impl Places) -> Result<()> {
        let h = &file.header;
        if h.page_size != self.page_size {
            return Err(Error::Missing(format!(
                "{} has page size {}, the database {}",
                file.id.name,
                h.page_size.get(),
                self.page_size.get()
            )));
        }
        if h.min_txid > self.txid.next() || h.max_txid <= self.txid && self.txid.0 != 0 {
            return Err(Error::Missing(format!(
                "{} does not continue TXID {}",
                file.id.name, self.txid
            )));
        }
        if self.files.len()
            >= COMPACT_SLOTS
                .max(self.live_files.saturating_mul(2))
                .min(MAX_SLOTS)
        {
            self.compact_slots();
        }
        let slot = self.files.len();
        if slot >= MAX_SLOTS {
            return Err(Error::Internal(format!(
                "a snapshot cannot read from more than {MAX_SLOTS} files"
            )));
        }
        Arc::make_mut(&mut self.files).push(Arc::clone(file));
        let tag = (slot as u64 + 1) << OFFSET_BITS;
        match index.chunks() {
            // The first file's own chunks, placed in slot 0: shared as
            // they are (the rest of the index is never built beside them).
            Some(chunks) if slot == 0 && self.chunks.is_empty() => {
                self.chunks = chunks.to_vec();
            }
            _ => {
                for (pgno, offset) in index.places() {
                    if offset > OFFSET_MASK {
                        return Err(Error::Missing(format!(
                            "{} is larger than 256 TiB",
                            file.id.name
                        )));
                    }
                    if pgno.0 <= h.commit {
                        self.set(pgno, tag | offset);
                    }
                }
            }
        }
        self.truncate(h.commit);
        self.txid = h.max_txid;
        self.timestamp_ms = h.timestamp_ms;
        self.page_count = h.commit;
        Ok(())
    }

    /// Where page `pgno` lives, if any file holds it.
    pub fn frame(&self, pgno: PageNo) -> Option<FrameLoc> {
        let i = (pgno.0 as usize).checked_sub(1)?;
        let e = self.chunks.get(i >> CHUNK_BITS)?.get(i & (CHUNK - 1));
        let slot = usize::try_from(e >> OFFSET_BITS).ok()?.checked_sub(1)?;
        let file = self.files.get(slot)?;
        let offset = e & OFFSET_MASK;
        let size = crate::ltx::max_frame_len(self.page_size).min(file.size.saturating_sub(offset));
        Some(FrameLoc {
            file: Arc::clone(file),
            offset,
            size: u32::try_from(size).unwrap_or(u32::MAX),
        })
    }

    /// Bytes the page index holds in memory: about 4 per page slot, plus
    /// the file table. (Chunks shared with other snapshots count fully here.)
    pub fn index_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.bytes()).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Arc<Chunk>>()
            + self.files.len()
                * (std::mem::size_of::<Arc<FileRef>>() + std::mem::size_of::<FileRef>())
    }

    /// The files of the file table: every file applied since its last
    /// compaction, including those whose pages later files superseded.
    pub fn files(&self) -> impl Iterator<Item = &Arc<FileRef>> {
        self.files.iter()
    }

    /// Files in the file table.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Drops from the file table every file no page points to any more
    /// (superseded by later files), renumbering the slots: O(pages), done
    /// once every few thousand applied files.
    fn compact_slots(&mut self) {
        let mut used = vec![false; self.files.len()];
        for chunk in &self.chunks {
            chunk.slots_in_use(&mut |slot| {
                if let Some(u) = used.get_mut(slot) {
                    *u = true;
                }
            });
        }
        let mut remap = vec![0u64; self.files.len()];
        let mut files = Vec::new();
        for (slot, file) in self.files.iter().enumerate() {
            if used.get(slot).copied().unwrap_or(false) {
                files.push(Arc::clone(file));
                if let Some(r) = remap.get_mut(slot) {
                    *r = files.len() as u64;
                }
            }
        }
        let renumber = |slot: usize| remap.get(slot).copied().unwrap_or(0);
        for chunk in &mut self.chunks {
            // Chunks whose slots keep their numbers stay shared.
            if chunk.renumbers(&renumber) {
                Arc::make_mut(chunk).renumber_slots(&renumber);
            }
        }
        self.live_files = files.len();
        self.files = Arc::new(files);
    }

    /// Pages per chunk of the copy-on-write page index.
    pub const PAGES_PER_CHUNK: usize = CHUNK;

    /// Chunks in the page index.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// How many chunks of the page index this snapshot shares with `other`
    /// (same position, same allocation) instead of holding its own copy.
    /// What makes a new snapshot cost O(pages changed); tests check it.
    pub fn shared_chunks_with(&self, other: &Snapshot) -> usize {
        self.chunks
            .iter()
            .zip(&other.chunks)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count()
    }

    /// Database size in bytes.
    pub fn size_bytes(&self) -> u64 {
        u64::from(self.page_count) * u64::from(self.page_size.get())
    }

    fn set(&mut self, pgno: PageNo, entry: u64) {
        let Some(i) = (pgno.0 as usize).checked_sub(1) else {
            return;
        };
        let (c, slot) = (i >> CHUNK_BITS, i & (CHUNK - 1));
        if self.chunks.len() <= c {
            // The chunks no page of any file reaches share one empty chunk:
            // a file of a few pages that names a page number of billions
            // (its header's `commit` allows it) costs a pointer per 1024
            // pages (at most 32 MiB for SQLite's largest database), not a
            // chunk of 4 KiB each (16 GiB, an abort of the host).
            self.chunks.reserve(c + 1 - self.chunks.len());
            let empty: Arc<Chunk> = Arc::default();
            self.chunks.resize(c, empty);
            self.chunks.push(Arc::default());
        }
        if let Some(chunk) = self.chunks.get_mut(c) {
            Arc::make_mut(chunk).set(slot, entry);
        }
    }

    /// Forgets every page above `page_count`: those pages do not exist,
    /// whatever older files hold.
    fn truncate(&mut self, page_count: u32) {
        let n = page_count as usize;
        self.chunks.truncate(n.div_ceil(CHUNK));
        let keep = n % CHUNK;
        if keep == 0 {
            return;
        }
        if let Some(last) = self.chunks.last_mut()
            && last.any_from(keep)
        {
            Arc::make_mut(last).clear_from(keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{FileName, Header, IndexEntry, LtxBuilder};
    use crate::storage::Level;

    fn file(min: u64, max: u64, commit: u32, pages: &[u32]) -> (Arc<FileRef>, PageIndex) {
        let ps = PageSize::new(4096).unwrap();
        let bytes = LtxBuilder::new(ps, min, max, commit).build();
        let header = Header::decode(&bytes).unwrap();
        let index = PageIndex {
            entries: pages
                .iter()
                .map(|p| IndexEntry {
                    pgno: PageNo(*p),
                    offset: 100 + u64::from(*p),
                    size: 10,
                })
                .collect(),
        };
        let id = FileId {
            level: Level::L0,
            name: FileName {
                min: Txid(min),
                max: Txid(max),
            },
        };
        (
            Arc::new(FileRef::new(id, bytes.len() as u64, header)),
            index,
        )
    }

    #[test]
    fn later_files_win_and_commit_truncates() {
        let a = file(1, 1, 3000, &(1..=3000).collect::<Vec<_>>());
        let b = file(2, 2, 3000, &[5, 2500]);
        let c = file(3, 3, 1030, &[7]);
        let s1 = Snapshot::build([(&a.0, &a.1)]).unwrap();
        let s2 = s1.apply(&b.0, &b.1).unwrap();
        let s3 = s2.apply(&c.0, &c.1).unwrap();
        assert_eq!(s2.frame(PageNo(5)).unwrap().file.id.name.min, Txid(2));
        assert_eq!(s2.frame(PageNo(6)).unwrap().file.id.name.min, Txid(1));
        assert_eq!(
            s1.frame(PageNo(5)).unwrap().file.id.name.min,
            Txid(1),
            "s1 is unchanged"
        );
        assert_eq!(s3.page_count, 1030);
        assert!(s3.frame(PageNo(1031)).is_none() && s3.frame(PageNo(2500)).is_none());
        assert!(s3.frame(PageNo(1030)).is_some());
        assert_eq!(s3.txid, Txid(3));
        // Unchanged chunks are shared, not copied.
        assert!(Arc::ptr_eq(&s2.chunks[1], &s1.chunks[1]));
        assert!(!Arc::ptr_eq(&s2.chunks[0], &s1.chunks[0]));
    }

    #[test]
    fn superseded_files_leave_the_file_table() {
        let base = file(1, 1, 3000, &(1..=3000).collect::<Vec<_>>());
        let mut s = Snapshot::build([(&base.0, &base.1)]).unwrap();
        for t in 2..=2500u64 {
            let f = file(t, t, 3000, &[5, 7 + (t % 3) as u32]);
            s = s.apply(&f.0, &f.1).unwrap();
        }
        assert!(
            s.file_count() < COMPACT_SLOTS + 1,
            "{} files",
            s.file_count()
        );
        assert_eq!(s.frame(PageNo(5)).unwrap().file.id.name.min, Txid(2500));
        assert_eq!(s.frame(PageNo(8)).unwrap().file.id.name.min, Txid(2500));
        assert_eq!(s.frame(PageNo(7)).unwrap().file.id.name.min, Txid(2499));
        assert_eq!(s.frame(PageNo(6)).unwrap().file.id.name.min, Txid(1));
        assert_eq!(s.frame(PageNo(6)).unwrap().offset, 106);
        assert!(
            s.index_bytes() <= 3 * 1024 * 8 + 64 * 1024 * 4,
            "{}",
            s.index_bytes()
        );
    }

    #[test]
    fn refuses_a_file_that_does_not_continue() {
        let a = file(1, 1, 10, &[1]);
        let c = file(3, 3, 10, &[1]);
        let s = Snapshot::build([(&a.0, &a.1)]).unwrap();
        assert!(s.apply(&c.0, &c.1).is_err());
        assert!(
            Snapshot::build([(&c.0, &c.1)]).is_err(),
            "must start at a snapshot"
        );
    }
}
