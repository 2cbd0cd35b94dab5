//! The pages of a snapshot, checked as its index entries arrive.
//!
//! A snapshot (min TXID 1) holds every page from 1 to its `commit`, in
//! order, except the lock page: Litestream's encoder refuses to write
//! anything else ("nonsequential page numbers in snapshot transaction").
//! Held to that, the pages a snapshot places are exactly the entries its
//! index holds: a header's `commit` or a page number of billions costs
//! nothing until that many entries are actually there, and a reader never
//! sizes anything by a number the file merely claims.

use super::error::LtxError;
use super::header::Header;
use super::types::{PageNo, lock_page};

/// A snapshot's page numbers so far (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct SnapshotPages {
    commit: u32,
    lock: u32,
    /// The page the next entry must hold (beyond `commit` once all came).
    next: u64,
}

impl SnapshotPages {
    /// The checker of a snapshot whose header is `header`.
    pub fn new(header: &Header) -> SnapshotPages {
        let lock = lock_page(header.page_size).0;
        SnapshotPages {
            commit: header.commit,
            lock,
            next: after(0, lock),
        }
    }

    /// Takes the next entry's page: the one due, or an error.
    pub fn check(&mut self, pgno: PageNo) -> Result<(), LtxError> {
        let p = u64::from(pgno.0);
        if pgno.0 > self.commit {
            return Err(LtxError::invalid(
                "page index",
                format!("page {} of a snapshot of {} pages", pgno.0, self.commit),
            ));
        }
        if p != self.next {
            return Err(LtxError::invalid(
                "page index",
                format!(
                    "snapshot page {} where page {} is due: a snapshot holds every page \
                     from 1 to its commit ({}) in order",
                    pgno.0, self.next, self.commit
                ),
            ));
        }
        self.next = after(pgno.0, self.lock);
        Ok(())
    }

    /// Checks that every page up to `commit` came.
    pub fn finish(&self) -> Result<(), LtxError> {
        if self.next > u64::from(self.commit) {
            return Ok(());
        }
        Err(LtxError::invalid(
            "page index",
            format!(
                "a snapshot of {} pages holds pages 1 to {} only: its header's commit \
                 claims pages the file does not hold",
                self.commit,
                self.next.saturating_sub(1)
            ),
        ))
    }

    /// [`SnapshotPages::check`] of every page of `pages`, then
    /// [`SnapshotPages::finish`].
    pub fn check_all(
        header: &Header,
        pages: impl IntoIterator<Item = PageNo>,
    ) -> Result<(), LtxError> {
        let mut s = SnapshotPages::new(header);
        for p in pages {
            s.check(p)?;
        }
        s.finish()
    }
}

/// The page after `pgno`, the lock page skipped.
fn after(pgno: u32, lock: u32) -> u64 {
    let next = u64::from(pgno).saturating_add(1);
    if next == u64::from(lock) {
        next.saturating_add(1)
    } else {
        next
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::ltx::{FLAG_NO_CHECKSUM, PageSize, Txid};

    fn header(commit: u32) -> Header {
        Header {
            flags: FLAG_NO_CHECKSUM,
            page_size: PageSize::new(512).unwrap(),
            commit,
            min_txid: Txid(1),
            max_txid: Txid(1),
            timestamp_ms: 0,
            pre_apply_checksum: 0,
            wal_offset: 0,
            wal_size: 0,
            wal_salt1: 0,
            wal_salt2: 0,
            node_id: 0,
        }
    }

    fn check(commit: u32, pages: &[u32]) -> Result<(), LtxError> {
        SnapshotPages::check_all(&header(commit), pages.iter().map(|p| PageNo(*p)))
    }

    #[test]
    fn every_page_in_order_is_a_snapshot() {
        check(3, &[1, 2, 3]).unwrap();
        check(1, &[1]).unwrap();
    }

    #[test]
    fn a_gap_a_jump_or_a_missing_end_is_refused() {
        for (commit, pages, says) in [
            (3, &[2, 3][..], "page 2 where page 1 is due"),
            (3, &[1, 3], "page 3 where page 2 is due"),
            (3, &[1, 2, 2], "page 2 where page 3 is due"),
            (
                4_000_000_000,
                &[1, 3_999_999_999],
                "page 3999999999 where page 2",
            ),
            (u32::MAX - 1, &[1, 2, u32::MAX - 1], "where page 3 is due"),
            (3, &[1, 2, 3, 4], "page 4 of a snapshot of 3 pages"),
            (3, &[1, 2], "holds pages 1 to 2 only"),
            (
                4_000_000_000,
                &[1, 2, 3],
                "a snapshot of 4000000000 pages holds",
            ),
            (3, &[], "holds pages 1 to 0 only"),
        ] {
            let e = check(commit, pages).unwrap_err().to_string();
            assert!(e.contains(says), "{pages:?}: {e}");
        }
    }

    #[test]
    fn the_lock_page_is_skipped() {
        // 512-byte pages: the lock page is 2097153.
        let lock = lock_page(PageSize::new(512).unwrap()).0;
        assert_eq!(lock, 2_097_153);
        let mut s = SnapshotPages::new(&header(lock + 1));
        for p in 1..lock {
            s.check(PageNo(p)).unwrap();
        }
        assert!(s.finish().is_err());
        let mut copy = s;
        let e = copy.check(PageNo(lock)).unwrap_err().to_string();
        assert!(
            e.contains(&format!("where page {} is due", lock + 1)),
            "{e}"
        );
        s.check(PageNo(lock + 1)).unwrap();
        s.finish().unwrap();
        // A database that ends at the lock page holds the pages before it.
        let mut s = SnapshotPages::new(&header(lock));
        for p in 1..lock {
            s.check(PageNo(p)).unwrap();
        }
        s.finish().unwrap();
    }
}
