//! Page 1 as the VFS serves it.
//!
//! - Bytes 18 and 19 (file format write/read version) become 1, rollback
//!   journal mode: the replica never looks for `-wal` or `-shm` files.
//! - The file change counter (bytes 24..28) and the version-valid-for number
//!   (bytes 92..96) come from the TXID. SQLite keeps its own page cache across
//!   transactions while the counter is unchanged, and re-reads when it moves.
//! - The in-header database size (bytes 28..32) is the snapshot's page count,
//!   so it agrees with the file size the VFS reports.

use crate::ltx::Txid;

/// Patches `page`, a full copy of page 1.
pub fn patch(page: &mut [u8], txid: Txid, page_count: u32) {
    let counter = change_counter(txid).to_be_bytes();
    put(page, 18, &[1, 1]);
    put(page, 24, &counter);
    put(page, 28, &page_count.to_be_bytes());
    put(page, 92, &counter);
}

/// The change counter for a TXID: its low 32 bits, never 0 (SQLite treats a
/// fresh database specially).
fn change_counter(txid: Txid) -> u32 {
    (txid.0 as u32).max(1)
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
        patch(&mut p, Txid(0x1_0000_0005), 42);
        assert_eq!(&p[18..20], &[1, 1]);
        assert_eq!(&p[24..28], &5u32.to_be_bytes());
        assert_eq!(&p[92..96], &5u32.to_be_bytes());
        assert_eq!(&p[28..32], &42u32.to_be_bytes());
    }
}
