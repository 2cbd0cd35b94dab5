//! The host-wide local page store: the disk tier and hydration.
//!
//! Asked before storage and filled after it, it knows pages and lineages,
//! not connections, snapshots or files. Its key is the page version, not
//! where the bytes lived: write `C(p, t)` for the bytes of page `p` in the
//! state after TXID `t`. A reader whose snapshot at `t` resolves `p` to a
//! file ending at `b` knows `C(p, s) = C(p, b)` for every `s` in `[b, t]`
//! (no later file of its plan holds `p`). Entries are stored as
//! `(p, [lo, hi]) → bytes`, and any entry whose span overlaps the reader's
//! span holds the reader's bytes: the two share a state, and one state has
//! one content. That holds across restore plans (compaction, a new
//! snapshot), processes, restarts and time travel.
//!
//! See [`disk::DiskStore`] for the file, its lineage checks and its
//! multi-process rules, and `private` for why no other account can read
//! or plant what it holds. `replica/` uses it through `DiskStore`'s
//! methods and `Blobs`; the types below are what they exchange.

mod blobs;
#[cfg(test)]
mod crash_tests;
mod disk;
mod fork;
mod layout;
mod lineage;
mod lock;
mod os;
mod private;
mod read;
mod write;

use crate::ltx::{PageNo, Txid};

pub use blobs::Blobs;
pub use disk::{Capacity, DiskStore, FillClaim, OpenError};
pub use read::RUN_MAX;

/// TXIDs `lo..=hi`: the states over which a page is known to be constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub lo: Txid,
    pub hi: Txid,
}

impl Span {
    pub fn new(lo: Txid, hi: Txid) -> Span {
        Span { lo, hi }
    }

    /// Whether both spans share a state.
    pub fn overlaps(&self, other: &Span) -> bool {
        self.lo <= other.hi && other.lo <= self.hi
    }
}

/// Who an LTX file is, as `(key, value)`: the key names the file's place
/// (its last TXID and a level tag), the value hashes what identifies it
/// there (the time its last transaction was written, and for a snapshot
/// also its first TXID and file checksum; see `replica::local`). A replica
/// that was reset writes files at the same places with other values.
/// Litestream 0.5 writes no database checksums (`post_apply` is 0), so the
/// files themselves are the fingerprint of their lineage.
pub type Identity = (u64, u64);

/// The identity of a file; see [`Identity`].
pub fn identity(
    level: u8,
    min: Txid,
    max: Txid,
    timestamp_ms: i64,
    file_checksum: u64,
) -> Identity {
    let key = (max.0 << 4) | u64::from(level & 0xf);
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&min.0.to_le_bytes());
    bytes[8..16].copy_from_slice(&timestamp_ms.to_le_bytes());
    bytes[16..].copy_from_slice(&file_checksum.to_le_bytes());
    (key, twox_hash::XxHash3_64::oneshot(&bytes).max(1))
}

/// One LTX file that the replica applied while following the primary.
pub struct Followed<'a> {
    pub min: Txid,
    pub max: Txid,
    pub identity: Identity,
    /// The pages the file changes.
    pub pages: &'a [PageNo],
}

/// The state a replica reads, as the store needs it to check the lineage
/// and catch up.
pub struct StateFacts<'a> {
    pub txid: Txid,
    pub page_count: u32,
    /// Identities of the files the state is built from.
    pub checkpoints: &'a [Identity],
    /// For each page, the TXID its span starts at (the end of the file that
    /// holds it); `None` for a page no file holds.
    pub since: &'a dyn Fn(PageNo) -> Option<Txid>,
}

/// Hydration progress as kept in the store: pages present, pages wanted,
/// at which TXID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fill {
    pub filled: u64,
    pub wanted: u64,
    pub txid: Txid,
}

/// What an `attach` made of a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// The store serves the state's lineage, this one: what the caller
    /// passes to the reads and writes of the state's pages, so that none
    /// of them lands in a lineage another attach started since.
    Serving(u64),
    /// The state is newer than everything the stored lineage has seen, and
    /// another process is still following that lineage: it may reach the
    /// state's files soon, so ask again shortly instead of starting over
    /// (which would drop every stored page for every process).
    Behind,
    /// The store cannot serve now (a write failed, or another process
    /// held the lock past `LOCK_WAIT`).
    Failed,
}
