//! Page 1 as the VFS serves it.
//!
//! - Bytes 18 and 19 (file format write/read version) become 1, rollback
//!   journal mode: the replica never looks for `-wal` or `-shm` files.
//! - The file change counter (bytes 24..28) and the version-valid-for number
//!   (bytes 92..96) come from the TXID and the lineage. SQLite keeps its own
//!   page cache across transactions while the counter is unchanged, and
//!   re-reads when it moves (so does `PRAGMA data_version`). A reset replica
//!   starts its TXIDs again: the lineage makes an equal TXID of the new
//!   lineage another counter.
//! - The schema cookie (bytes 40..44) gets the same per-lineage offset (none
//!   in lineage 0). SQLite keeps a connection's parsed schema while the
//!   cookie is unchanged, and two unrelated databases often have equal
//!   cookies (three `CREATE TABLE`s each): without the offset a connection
//!   held across a reset would look for tables at the old root pages.
//! - The in-header database size (bytes 28..32) is the snapshot's page count,
//!   so it agrees with the file size the VFS reports.

use crate::ltx::Txid;

/// Added to the counter per lineage: 2^32 divided by the golden ratio, odd,
/// so that lineage `n` and `n + k` at the same TXID differ for every `k`
/// below 2^32, and states of neighbouring lineages collide only when their
/// TXIDs lie about 1.6 billion apart.
const LINEAGE_STRIDE: u32 = 0x9E37_79B9;

/// Patches `page`, a full copy of page 1.
pub fn patch(page: &mut [u8], txid: Txid, lineage: u32, page_count: u32) {
    let counter = change_counter(txid, lineage).to_be_bytes();
    put(page, 18, &[1, 1]);
    put(page, 24, &counter);
    put(page, 28, &page_count.to_be_bytes());
    if let Some(cookie) = page.get(40..44).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
        let cookie = u32::from_be_bytes(cookie).wrapping_add(lineage_offset(lineage));
        put(page, 40, &cookie.to_be_bytes());
    }
    put(page, 92, &counter);
}

fn lineage_offset(lineage: u32) -> u32 {
    lineage.wrapping_mul(LINEAGE_STRIDE)
}

/// The change counter for a TXID of a lineage: the TXID's low 32 bits plus
/// the lineage's offset, never 0 (SQLite treats a fresh database specially).
fn change_counter(txid: Txid, lineage: u32) -> u32 {
    (txid.0 as u32).wrapping_add(lineage_offset(lineage)).max(1)
}

fn put(page: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = page.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_mode_counter_and_size() {
        let mut p = vec![0u8; 512];
        p[18] = 2;
        p[19] = 2;
        patch(&mut p, Txid(0x1_0000_0005), 0, 42);
        assert_eq!(&p[18..20], &[1, 1]);
        assert_eq!(&p[24..28], &5u32.to_be_bytes());
        assert_eq!(&p[92..96], &5u32.to_be_bytes());
        assert_eq!(&p[28..32], &42u32.to_be_bytes());
    }

    #[test]
    fn the_schema_cookie_moves_with_the_lineage_only() {
        let mut p = vec![0u8; 512];
        p[40..44].copy_from_slice(&3u32.to_be_bytes());
        let mut same = p.clone();
        patch(&mut same, Txid(9), 0, 4);
        assert_eq!(
            &same[40..44],
            &3u32.to_be_bytes(),
            "lineage 0 keeps the cookie"
        );
        let mut next = p.clone();
        patch(&mut next, Txid(9), 1, 4);
        assert_ne!(&next[40..44], &3u32.to_be_bytes());
    }

    #[test]
    fn an_equal_txid_of_another_lineage_is_another_counter() {
        for txid in [1, 2, 3000, 0xffff_ffff] {
            let counters: Vec<u32> = (0..64).map(|l| change_counter(Txid(txid), l)).collect();
            let mut unique = counters.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), counters.len(), "TXID {txid}: {counters:?}");
        }
        // The usual reset: the old lineage far along, the new one at TXID 1.
        assert_ne!(change_counter(Txid(3000), 0), change_counter(Txid(1), 1));
        assert_ne!(change_counter(Txid(1), 0), change_counter(Txid(1), 1));
    }
}
