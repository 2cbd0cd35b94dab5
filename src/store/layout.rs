//! The bytes of a store file, as pure encode/decode and offsets: no I/O.
//!
//! ```text
//! [ file header: HEADER_LEN bytes, padded to DATA_START (64 KiB) ]
//! [ chunk 0: META_BLOCK bytes of slot metadata (CHUNK_SLOTS × META_LEN),
//!            then CHUNK_SLOTS pages back to back ]
//! [ chunk 1 ] ...
//! ```
//!
//! Pages are page-aligned and a chunk's pages are contiguous (4 MiB of
//! 4 KiB pages), so a read of a page is one `pread` straight into its
//! buffer, a scan reads many pages in one `pread`, and the kernel's
//! readahead sees a sequential file. The metadata of a chunk's pages sits
//! in one block just before them: one `pread` covers the metadata of a run
//! of pages. `DATA_START` and `META_BLOCK` are 64 KiB and a chunk's pages
//! `CHUNK_SLOTS × page_size`, so every chunk starts 64 KiB-aligned and
//! every page is aligned to its size, whatever the page size (512 B to
//! 64 KiB).
//!
//! Everything is little-endian. The file header and each slot's metadata
//! end with an XXH3 checksum of what precedes it, and the metadata carries
//! the XXH3 of its page, so a torn or corrupt header, metadata or page
//! decodes to `None` or fails its check: a miss, never data. How writers
//! order their writes so that a torn page is a miss is in `disk`.

use twox_hash::XxHash3_64;

/// Bytes of the encoded file header (the checkpoint ring needs 4 KiB).
pub const HEADER_LEN: u64 = 8192;
/// Where the first chunk starts: the header's room, a multiple of every
/// page size.
pub const DATA_START: u64 = 64 * 1024;
/// Bytes of one slot's metadata.
pub const META_LEN: usize = 64;
/// Slots per chunk: their metadata fills one 64 KiB block.
pub const CHUNK_SLOTS: u64 = 1024;
/// Bytes of a chunk's metadata block.
pub const META_BLOCK: u64 = CHUNK_SLOTS * META_LEN as u64;

const FILE_MAGIC: &[u8; 8] = b"LSVFSPG1";
/// Format 1's slot headers carried "LPSG": a process of an older version
/// that reads this file at its offsets (which meet format 2's metadata
/// blocks here and there) finds no slot header of its own format.
const SLOT_MAGIC: u32 = 0x3253_504c; // "LPS2"
/// 1: slots of a 64-byte header and its page, back to back (pages not
/// aligned). 2: chunks of page-aligned pages behind a metadata block.
pub const VERSION: u32 = 2;

/// How many file identities (`store::Identity`) the header keeps to
/// recognise its lineage.
pub const CHECKPOINTS: usize = 248;
/// The first checkpoints of a lineage are kept for good: they are the states
/// a later restore plan is most likely to start from (its snapshot).
pub const ANCHORS: usize = 8;
/// Eras whose end is remembered.
pub const ERA_ENDS: usize = 8;
/// Longest replica identity kept in the header.
pub const IDENT_MAX: usize = 1024;

/// Slot flag: the page is constant from `lo` up to the store's horizon
/// (while the era lasts), not just up to `hi`.
pub const OPEN: u32 = 1;

/// The file header: what the store holds and how far it is known to be
/// valid.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FileHeader {
    pub page_size: u32,
    /// Slots in the file; 0: one slot per page number, unbounded.
    pub slots: u64,
    /// The replica the store belongs to (its redacted URL).
    pub ident: String,
    /// Random nonce of the lineage whose pages the store holds (0: none).
    pub lineage: u64,
    /// Open entries of this era are valid up to `horizon`.
    pub era: u32,
    /// Every open entry of the current era is constant up to this TXID.
    pub horizon: u64,
    /// The machine boot the header was last written in (0: unknown).
    pub boot: u64,
    /// `(era, horizon)` of recent eras that ended cleanly.
    pub era_ends: Vec<(u32, u64)>,
    /// Identities of files of the lineage, by key (about by TXID).
    pub checkpoints: Vec<(u64, u64)>,
    /// Hydration progress written by the filler: pages present, pages
    /// wanted, at which TXID.
    pub filled: u64,
    pub wanted: u64,
    pub fill_txid: u64,
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.buf.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

impl FileHeader {
    /// Exactly [`HEADER_LEN`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(HEADER_LEN as usize));
        w.0.extend_from_slice(FILE_MAGIC);
        w.u32(VERSION);
        w.u32(self.page_size);
        w.u64(self.slots);
        let ident = self.ident.as_bytes();
        let ident = &ident[..ident.len().min(IDENT_MAX)];
        w.u32(ident.len() as u32);
        w.0.extend_from_slice(ident);
        w.0.resize(w.0.len() + IDENT_MAX - ident.len(), 0);
        w.u64(self.lineage);
        w.u32(self.era);
        w.u64(self.horizon);
        w.u64(self.boot);
        w.u32(self.era_ends.len().min(ERA_ENDS) as u32);
        for i in 0..ERA_ENDS {
            let (e, h) = self.era_ends.get(i).copied().unwrap_or_default();
            w.u32(e);
            w.u64(h);
        }
        w.u32(self.checkpoints.len().min(CHECKPOINTS) as u32);
        for i in 0..CHECKPOINTS {
            let (t, c) = self.checkpoints.get(i).copied().unwrap_or_default();
            w.u64(t);
            w.u64(c);
        }
        w.u64(self.filled);
        w.u64(self.wanted);
        w.u64(self.fill_txid);
        let sum = XxHash3_64::oneshot(&w.0);
        w.u64(sum);
        w.0.resize(HEADER_LEN as usize, 0);
        w.0
    }

    /// The format version of a store header of another version than this
    /// build's (`None` for this version, or for what is no store header).
    pub fn other_version(buf: &[u8]) -> Option<u32> {
        let mut r = Reader { buf, at: 0 };
        if r.take(8)? != FILE_MAGIC {
            return None;
        }
        r.u32().filter(|&v| v != VERSION)
    }

    /// `None` unless `buf` holds a whole, intact header of this version.
    pub fn decode(buf: &[u8]) -> Option<FileHeader> {
        let mut r = Reader { buf, at: 0 };
        if r.take(8)? != FILE_MAGIC || r.u32()? != VERSION {
            return None;
        }
        let page_size = r.u32()?;
        let slots = r.u64()?;
        let ident_len = (r.u32()? as usize).min(IDENT_MAX);
        let ident_all = r.take(IDENT_MAX)?;
        let ident = String::from_utf8(ident_all.get(..ident_len)?.to_vec()).ok()?;
        let lineage = r.u64()?;
        let era = r.u32()?;
        let horizon = r.u64()?;
        let boot = r.u64()?;
        let n_ends = (r.u32()? as usize).min(ERA_ENDS);
        let mut era_ends = Vec::with_capacity(n_ends);
        for i in 0..ERA_ENDS {
            let pair = (r.u32()?, r.u64()?);
            if i < n_ends {
                era_ends.push(pair);
            }
        }
        let n_cps = (r.u32()? as usize).min(CHECKPOINTS);
        let mut checkpoints = Vec::with_capacity(n_cps);
        for i in 0..CHECKPOINTS {
            let pair = (r.u64()?, r.u64()?);
            if i < n_cps {
                checkpoints.push(pair);
            }
        }
        let (filled, wanted, fill_txid) = (r.u64()?, r.u64()?, r.u64()?);
        let body = buf.get(..r.at)?;
        let sum = r.u64()?;
        (XxHash3_64::oneshot(body) == sum).then_some(FileHeader {
            page_size,
            slots,
            ident,
            lineage,
            era,
            horizon,
            boot,
            era_ends,
            checkpoints,
            filled,
            wanted,
            fill_txid,
        })
    }

    /// Records a file of the lineage. When full, it forgets the oldest
    /// level-0 file past the first [`ANCHORS`] entries (or, when level-0
    /// files hold less than a quarter of the ring, the oldest other file):
    /// level-0 files come by the thousand, while the snapshots and
    /// compactions that restore plans start from are few and worth keeping.
    /// A zero value says nothing and is skipped.
    pub fn add_checkpoint(&mut self, key: u64, value: u64) {
        if value == 0 || self.checkpoints.iter().any(|&(k, _)| k == key) {
            return;
        }
        let at = self.checkpoints.partition_point(|&(k, _)| k < key);
        self.checkpoints.insert(at, (key, value));
        if self.checkpoints.len() > CHECKPOINTS {
            let l0 = |i: &usize| self.checkpoints[*i].0 & 0xf == 0;
            let l0_count = self
                .checkpoints
                .iter()
                .filter(|(k, _)| k & 0xf == 0)
                .count();
            // Level-0 files keep at least a quarter of the ring.
            let evict = if l0_count > CHECKPOINTS / 4 {
                (ANCHORS..self.checkpoints.len()).find(l0)
            } else {
                (ANCHORS..self.checkpoints.len()).find(|i| !l0(i))
            };
            self.checkpoints.remove(evict.unwrap_or(ANCHORS));
        }
    }

    /// Ends the current era at the horizon and starts the next one at
    /// `horizon`. `clean`: the old era's open entries really are valid up
    /// to its horizon (false after a reboot, when writes may be lost).
    pub fn next_era(&mut self, horizon: u64, clean: bool) {
        if clean {
            self.era_ends.push((self.era, self.horizon));
            if self.era_ends.len() > ERA_ENDS {
                self.era_ends.remove(0);
            }
        }
        self.era = self.era.wrapping_add(1);
        self.horizon = horizon;
    }
}

/// Where slots and their pages lie in a file of one page size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    page_size: u64,
}

impl Geometry {
    pub fn new(page_size: u32) -> Geometry {
        Geometry {
            page_size: u64::from(page_size),
        }
    }

    fn chunk_len(&self) -> u64 {
        META_BLOCK + CHUNK_SLOTS * self.page_size
    }

    fn chunk_start(&self, slot: u64) -> Option<u64> {
        (slot / CHUNK_SLOTS)
            .checked_mul(self.chunk_len())?
            .checked_add(DATA_START)
    }

    /// Where the metadata of `slot` lies.
    pub fn meta_at(&self, slot: u64) -> Option<u64> {
        self.chunk_start(slot)?
            .checked_add((slot % CHUNK_SLOTS) * META_LEN as u64)
    }

    /// Where the page of `slot` lies.
    pub fn page_at(&self, slot: u64) -> Option<u64> {
        self.chunk_start(slot)?
            .checked_add(META_BLOCK)?
            .checked_add((slot % CHUNK_SLOTS).checked_mul(self.page_size)?)
    }

    /// Slots from `slot` to the end of its chunk: how many a run of
    /// neighbours read or written together may span.
    pub fn left_in_chunk(&self, slot: u64) -> u64 {
        CHUNK_SLOTS - slot % CHUNK_SLOTS
    }

    /// How many slots a file of at most `bytes` bytes holds.
    pub fn slots_in(&self, bytes: u64) -> u64 {
        let Some(data) = bytes.checked_sub(DATA_START) else {
            return 0;
        };
        let (full, rest) = (data / self.chunk_len(), data % self.chunk_len());
        full * CHUNK_SLOTS + rest.saturating_sub(META_BLOCK) / self.page_size
    }

    /// The size of a file holding `slots` slots.
    #[cfg(test)]
    pub fn bytes_for(&self, slots: u64) -> u64 {
        if slots == 0 {
            return DATA_START;
        }
        let last = slots - 1;
        self.page_at(last)
            .unwrap_or(u64::MAX)
            .saturating_add(self.page_size)
    }
}

/// The metadata of one slot: which page version the slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotHeader {
    pub pgno: u32,
    pub lineage: u64,
    pub era: u32,
    pub flags: u32,
    /// The page is constant over `[lo, hi]` (and up to the horizon if open).
    pub lo: u64,
    pub hi: u64,
    /// XXH3 of the page.
    pub page_sum: u64,
}

impl SlotHeader {
    pub fn encode(&self) -> [u8; META_LEN] {
        let mut w = Writer(Vec::with_capacity(META_LEN));
        w.u32(SLOT_MAGIC);
        w.u32(self.pgno);
        w.u64(self.lineage);
        w.u32(self.era);
        w.u32(self.flags);
        w.u64(self.lo);
        w.u64(self.hi);
        w.u64(self.page_sum);
        let sum = XxHash3_64::oneshot(&w.0);
        w.u64(sum);
        let mut out = [0u8; META_LEN];
        out[..w.0.len()].copy_from_slice(&w.0);
        out
    }

    /// `None` for an empty, torn or foreign slot header.
    pub fn decode(buf: &[u8]) -> Option<SlotHeader> {
        let mut r = Reader { buf, at: 0 };
        if r.u32()? != SLOT_MAGIC {
            return None;
        }
        let h = SlotHeader {
            pgno: r.u32()?,
            lineage: r.u64()?,
            era: r.u32()?,
            flags: r.u32()?,
            lo: r.u64()?,
            hi: r.u64()?,
            page_sum: r.u64()?,
        };
        let body = buf.get(..r.at)?;
        (r.u64()? == XxHash3_64::oneshot(body) && h.lo <= h.hi).then_some(h)
    }

    pub fn is_open(&self) -> bool {
        self.flags & OPEN != 0
    }
}

/// The checksum a slot's metadata keeps of its page.
pub fn page_sum(page: &[u8]) -> u64 {
    XxHash3_64::oneshot(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FileHeader {
        FileHeader {
            page_size: 4096,
            slots: 100,
            ident: "s3://bucket/db".into(),
            lineage: 7,
            era: 3,
            horizon: 42,
            boot: 9,
            era_ends: vec![(2, 40)],
            checkpoints: vec![(1, 11), (42, 12)],
            filled: 5,
            wanted: 10,
            fill_txid: 42,
        }
    }

    #[test]
    fn headers_round_trip_and_detect_damage() {
        let h = header();
        let bytes = h.encode();
        assert_eq!(bytes.len() as u64, HEADER_LEN);
        assert_eq!(FileHeader::decode(&bytes), Some(h));
        for at in [0, 9, 30, 1100, 2000, 4000] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert_eq!(FileHeader::decode(&bad), None, "flip at {at}");
        }
        assert_eq!(FileHeader::decode(&bytes[..100]), None);

        let s = SlotHeader {
            pgno: 5,
            lineage: 7,
            era: 3,
            flags: OPEN,
            lo: 10,
            hi: 12,
            page_sum: 99,
        };
        let b = s.encode();
        assert_eq!(SlotHeader::decode(&b), Some(s));
        for at in 0..56 {
            let mut bad = b;
            bad[at] ^= 0x10;
            assert_eq!(SlotHeader::decode(&bad), None, "flip at {at}");
        }
        assert_eq!(SlotHeader::decode(&[0u8; META_LEN]), None);
    }

    #[test]
    fn an_older_format_is_recognised_never_decoded() {
        let mut bytes = header().encode();
        assert_eq!(FileHeader::other_version(&bytes), None);
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(FileHeader::other_version(&bytes), Some(1));
        assert_eq!(FileHeader::decode(&bytes), None);
        assert_eq!(FileHeader::other_version(b"garbage garbage"), None);
    }

    #[test]
    fn pages_are_aligned_and_chunks_contiguous() {
        for ps in [512u32, 1024, 4096, 16384, 65536] {
            let g = Geometry::new(ps);
            let ps = u64::from(ps);
            for slot in [0u64, 1, 1023, 1024, 1025, 5000] {
                let at = g.page_at(slot).unwrap();
                assert_eq!(at % ps, 0, "page of slot {slot} at {at}");
                let meta = g.meta_at(slot).unwrap();
                assert!(meta + META_LEN as u64 <= at - (slot % CHUNK_SLOTS) * ps);
                assert!(meta >= DATA_START);
            }
            assert_eq!(g.page_at(1).unwrap(), g.page_at(0).unwrap() + ps);
            assert_eq!(g.page_at(0).unwrap() % 65536, 0);
            assert_eq!(g.page_at(1024).unwrap() % 65536, 0);
            assert_eq!(g.left_in_chunk(1020), 4);
            for slots in [1u64, 16, 1024, 1025, 3000] {
                assert_eq!(g.slots_in(g.bytes_for(slots)), slots, "{slots} slots");
            }
            assert_eq!(g.slots_in(DATA_START - 1), 0);
        }
    }

    #[test]
    fn checkpoints_keep_anchors_and_the_newest() {
        let mut h = FileHeader::default();
        h.add_checkpoint(5, 0);
        assert!(h.checkpoints.is_empty(), "a zero checksum says nothing");
        for t in 1..=1000u64 {
            h.add_checkpoint(t, t * 3);
        }
        assert_eq!(h.checkpoints.len(), CHECKPOINTS);
        assert_eq!(h.checkpoints[0], (1, 3));
        assert_eq!(
            h.checkpoints[ANCHORS - 1],
            (ANCHORS as u64, 3 * ANCHORS as u64)
        );
        assert_eq!(*h.checkpoints.last().unwrap(), (1000, 3000));
        assert!(h.checkpoints.windows(2).all(|w| w[0].0 < w[1].0));
        // A snapshot (level 9 in the low bits) outlives many level-0 files.
        let snapshot = (500 << 4) | 9;
        h.add_checkpoint(snapshot, 1);
        for t in 1001..=2000u64 {
            h.add_checkpoint(t << 4, t);
        }
        assert!(h.checkpoints.contains(&(snapshot, 1)));
        assert_eq!(*h.checkpoints.last().unwrap(), (2000 << 4, 2000));
        let encoded = FileHeader::decode(&h.encode()).unwrap();
        assert_eq!(encoded.checkpoints, h.checkpoints);
    }
}
