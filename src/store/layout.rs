//! The bytes of a store file, as pure encode/decode: no I/O.
//!
//! ```text
//! [ file header: HEADER_LEN bytes ]
//! [ slot 0: SLOT_HEADER bytes of slot header, then one page ]
//! [ slot 1 ] ...
//! ```
//!
//! Everything is little-endian. Both headers end with an XXH3 checksum of
//! what precedes it, and a slot header carries the XXH3 of its page, so a
//! torn or corrupt header or page decodes to `None`: a miss, never data.

use twox_hash::XxHash3_64;

/// Bytes reserved for the file header (the checkpoint ring needs 4 KiB).
pub const HEADER_LEN: u64 = 8192;
/// Bytes of a slot header in front of each page.
pub const SLOT_HEADER: usize = 64;

const FILE_MAGIC: &[u8; 8] = b"LSVFSPG1";
const SLOT_MAGIC: u32 = 0x4753_504c; // "LPSG"
const VERSION: u32 = 1;

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

/// The header of one slot: which page version the slot holds.
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
    pub fn encode(&self) -> [u8; SLOT_HEADER] {
        let mut w = Writer(Vec::with_capacity(SLOT_HEADER));
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
        let mut out = [0u8; SLOT_HEADER];
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

/// The checksum a slot header keeps of its page.
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
        assert_eq!(SlotHeader::decode(&[0u8; SLOT_HEADER]), None);
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
