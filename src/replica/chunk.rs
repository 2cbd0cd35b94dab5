//! One chunk of a snapshot's page index: where the frames of 1024
//! consecutive pages live, in 4 bytes per page.
//!
//! A page's place is a file slot and a frame offset (a "wide" entry of 64
//! bits: `slot + 1` in the top 16 bits, the offset in the low 48, as
//! [`Chunk::get`] answers). The frames of neighbouring pages lie close
//! together in few files, so the chunk keeps a small table of bases (a
//! wide entry each) and every page holds a 32-bit reference: which base
//! (11 bits, 0 for "no frame") and the distance from it (21 bits, 2 MiB).
//!
//! A chunk has at most 1024 pages in use, so at most 1024 bases are ever
//! referenced: when the table is full, the bases no page refers to any
//! more are dropped, and there is always room again. The table is also
//! compacted when it has doubled since its last compaction, so that a hot
//! chunk that every applied file touches keeps a short table.

/// Pages per chunk, as a power of two.
pub const CHUNK_BITS: u32 = 10;
/// Pages per chunk.
pub const CHUNK: usize = 1 << CHUNK_BITS;
/// Bits of a wide entry that hold the frame offset (files up to 256 TiB).
pub const OFFSET_BITS: u32 = 48;
pub const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

/// Bits of a page's reference that hold its distance from its base.
const DELTA_BITS: u32 = 21;
const DELTA_MASK: u32 = (1 << DELTA_BITS) - 1;
/// Bases a table may hold (the reference's 11 top bits, 0 excluded).
const MAX_BASES: usize = (1 << (32 - DELTA_BITS)) - 1;
/// A table this short is never compacted before it is full.
const COMPACT_MIN: usize = 32;

/// The places of 1024 consecutive pages.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// Per page: 0, or `(base + 1) << DELTA_BITS | distance`.
    pages: [u32; CHUNK],
    /// Wide entries that pages are placed relative to.
    bases: Vec<u64>,
    /// Bases left by the last compaction.
    live: u16,
    /// The base the last page set used: the next page of the same file
    /// usually lies within its reach.
    hint: u16,
}

impl Default for Chunk {
    fn default() -> Chunk {
        Chunk {
            pages: [0; CHUNK],
            bases: Vec::new(),
            live: 0,
            hint: 0,
        }
    }
}

impl Chunk {
    /// The wide entry of page `i` of the chunk: 0 when no frame.
    pub fn get(&self, i: usize) -> u64 {
        let r = self.pages.get(i).copied().unwrap_or(0);
        let Some(b) = ((r >> DELTA_BITS) as usize).checked_sub(1) else {
            return 0;
        };
        self.bases
            .get(b)
            .map_or(0, |base| base + u64::from(r & DELTA_MASK))
    }

    /// Places page `i` of the chunk at the wide entry `wide` (0: no frame).
    /// The offset of `wide` is at most [`OFFSET_MASK`].
    pub fn set(&mut self, i: usize, wide: u64) {
        if i >= CHUNK {
            return;
        }
        if let Some(p) = self.pages.get_mut(i) {
            *p = 0;
        }
        if wide == 0 {
            return;
        }
        let b = match self.base_for(wide) {
            Some(b) => b,
            None => {
                if self.bases.len() >= MAX_BASES
                    || self.bases.len() >= COMPACT_MIN.max(usize::from(self.live) * 2)
                {
                    self.compact();
                }
                self.bases.push(wide);
                self.bases.len() - 1
            }
        };
        self.hint = u16::try_from(b).unwrap_or(0);
        let base = self.bases.get(b).copied().unwrap_or(wide);
        let delta = u32::try_from(wide - base).unwrap_or(0);
        if let Some(p) = self.pages.get_mut(i) {
            *p = ((b as u32 + 1) << DELTA_BITS) | delta;
        }
    }

    /// A base of the same slot that `wide` lies at or after, within reach.
    fn base_for(&self, wide: u64) -> Option<usize> {
        let fits = |base: &u64| {
            base >> OFFSET_BITS == wide >> OFFSET_BITS
                && wide >= *base
                && wide - *base <= u64::from(DELTA_MASK)
        };
        let hint = usize::from(self.hint);
        if self.bases.get(hint).is_some_and(fits) {
            return Some(hint);
        }
        self.bases.iter().position(fits)
    }

    /// Drops the bases no page refers to, renumbering the references.
    fn compact(&mut self) {
        let used = self.bases_in_use();
        let mut renumber = vec![0u32; self.bases.len()];
        let mut kept = Vec::with_capacity(self.bases.len());
        for (b, base) in self.bases.iter().enumerate() {
            if used.get(b).copied().unwrap_or(false) {
                kept.push(*base);
                if let Some(n) = renumber.get_mut(b) {
                    *n = kept.len() as u32;
                }
            }
        }
        for r in &mut self.pages {
            if let Some(b) = ((*r >> DELTA_BITS) as usize).checked_sub(1) {
                let n = renumber.get(b).copied().unwrap_or(0);
                *r = if n == 0 {
                    0
                } else {
                    (n << DELTA_BITS) | (*r & DELTA_MASK)
                };
            }
        }
        kept.shrink_to_fit();
        self.bases = kept;
        self.live = u16::try_from(self.bases.len()).unwrap_or(u16::MAX);
        self.hint = 0;
    }

    /// The bases some page refers to.
    fn bases_in_use(&self) -> Vec<bool> {
        let mut used = vec![false; self.bases.len()];
        for r in &self.pages {
            if let Some(b) = ((r >> DELTA_BITS) as usize).checked_sub(1)
                && let Some(u) = used.get_mut(b)
            {
                *u = true;
            }
        }
        used
    }

    /// Calls `f` with the slot of every page in use (once per base).
    pub fn slots_in_use(&self, f: &mut impl FnMut(usize)) {
        for (base, used) in self.bases.iter().zip(self.bases_in_use()) {
            if used && let Some(slot) = slot_of(*base) {
                f(slot);
            }
        }
    }

    /// Whether [`Chunk::renumber_slots`] would change this chunk.
    pub fn renumbers(&self, renumber: &impl Fn(usize) -> u64) -> bool {
        self.bases
            .iter()
            .any(|base| slot_of(*base).map_or(0, renumber) != base >> OFFSET_BITS)
    }

    /// Gives every base the slot `renumber` answers for its slot (the new
    /// `slot + 1`; `0`: the slot is gone, and so are its pages).
    pub fn renumber_slots(&mut self, renumber: &impl Fn(usize) -> u64) {
        for base in &mut self.bases {
            let new = slot_of(*base).map_or(0, renumber);
            *base = if new == 0 {
                0
            } else {
                (new << OFFSET_BITS) | (*base & OFFSET_MASK)
            };
        }
        for r in &mut self.pages {
            if let Some(b) = ((*r >> DELTA_BITS) as usize).checked_sub(1)
                && self.bases.get(b).is_none_or(|base| *base == 0)
            {
                *r = 0;
            }
        }
        self.compact();
    }

    /// Whether any page from `from` on has a frame.
    pub fn any_from(&self, from: usize) -> bool {
        self.pages.iter().skip(from).any(|r| *r != 0)
    }

    /// Forgets the frames of the pages from `from` on.
    pub fn clear_from(&mut self, from: usize) {
        for r in self.pages.iter_mut().skip(from) {
            *r = 0;
        }
    }

    /// Bytes this chunk holds: its pages and its table of bases.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Chunk>() + self.bases.capacity() * std::mem::size_of::<u64>()
    }
}

/// The slot of a wide entry (`None` for 0).
fn slot_of(wide: u64) -> Option<usize> {
    usize::try_from(wide >> OFFSET_BITS)
        .ok()
        .and_then(|s| s.checked_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wide(slot: u64, offset: u64) -> u64 {
        ((slot + 1) << OFFSET_BITS) | offset
    }

    #[test]
    fn pages_read_back_what_was_set() {
        let mut c = Chunk::default();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut model = vec![0u64; CHUNK];
        for round in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % CHUNK as u64) as usize;
            // Few slots, offsets near each other or far apart, and clears.
            let w = match round % 7 {
                0 => 0,
                1 => wide(x % 3, OFFSET_MASK - (x >> 40)),
                _ => wide(x % 5, (x >> 20) % (1 << 30)),
            };
            c.set(i, w);
            model[i] = w;
            assert!(c.bases.len() <= MAX_BASES);
        }
        for (i, w) in model.iter().enumerate() {
            assert_eq!(c.get(i), *w, "page {i}");
        }
        assert_eq!(c.get(CHUNK), 0);
    }

    #[test]
    fn every_page_in_its_own_base_fits() {
        let mut c = Chunk::default();
        for round in 0..3u64 {
            for i in 0..CHUNK {
                c.set(i, wide(round, (i as u64 + round) << 30));
            }
        }
        for i in 0..CHUNK {
            assert_eq!(c.get(i), wide(2, (i as u64 + 2) << 30));
        }
    }

    #[test]
    fn contiguous_frames_share_a_base() {
        let mut c = Chunk::default();
        for i in 0..CHUNK {
            c.set(i, wide(0, 100 + 1000 * i as u64));
        }
        assert_eq!(c.bases.len(), 1);
        assert!(c.bytes() < 4200, "{}", c.bytes());
    }

    #[test]
    fn slots_renumber_and_go() {
        let mut c = Chunk::default();
        c.set(0, wide(0, 10));
        c.set(1, wide(1, 20));
        c.set(2, wide(2, 30));
        c.set(1, wide(2, 40));
        let mut slots = Vec::new();
        c.slots_in_use(&mut |s| slots.push(s));
        slots.sort();
        assert_eq!(slots, vec![0, 2]);
        let renumber = |s| if s == 2 { 1 } else { 0 };
        assert!(c.renumbers(&renumber));
        c.renumber_slots(&renumber);
        assert!(!c.renumbers(&|s| s as u64 + 1));
        assert_eq!(c.get(0), 0);
        assert_eq!(c.get(1), wide(0, 40));
        assert_eq!(c.get(2), wide(0, 30));
        assert!(c.any_from(2) && !c.any_from(3));
        c.clear_from(2);
        assert!(!c.any_from(2));
        assert_eq!((c.get(1), c.get(2)), (wide(0, 40), 0));
    }
}
