//! Units of the format, as newtypes so that a page number is never mixed up
//! with a TXID or a byte count.

use std::fmt;

/// A transaction ID. Litestream numbers transactions from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Txid(pub u64);

impl Txid {
    /// The next TXID, saturating at the maximum.
    pub fn next(self) -> Txid {
        Txid(self.0.saturating_add(1))
    }
}

impl fmt::Display for Txid {
    /// Sixteen lowercase hex digits, as Litestream prints TXIDs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A 1-based database page number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageNo(pub u32);

/// The most pages an SQLite database can hold (`SQLITE_MAX_PAGE_COUNT`'s
/// ceiling): a header's `commit` beyond it is not a database size.
pub const MAX_PAGE_COUNT: u32 = 4_294_967_294;

/// A page size in bytes: a power of two in `512..=65536`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageSize(u32);

impl PageSize {
    /// Validates a page size read from a header.
    pub fn new(bytes: u32) -> Option<PageSize> {
        (bytes.is_power_of_two() && (512..=65536).contains(&bytes)).then_some(PageSize(bytes))
    }

    /// The size in bytes.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The size in bytes, as a `usize` for buffers.
    pub fn bytes(self) -> usize {
        self.0 as usize
    }
}

/// The lock page: the page that holds byte offset 2^30. SQLite never stores
/// data there and LTX never holds it.
pub fn lock_page(page_size: PageSize) -> PageNo {
    const LOCK_BYTE: u32 = 1 << 30;
    PageNo(
        LOCK_BYTE
            .checked_div(page_size.get())
            .unwrap_or(0)
            .saturating_add(1),
    )
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
    fn lock_page_per_page_size() {
        let lock = |n| lock_page(PageSize::new(n).unwrap()).0;
        assert_eq!(lock(512), 2_097_153);
        assert_eq!(lock(4096), 262_145);
        assert_eq!(lock(65536), 16_385);
    }

    #[test]
    fn page_size_validation() {
        let valid: Vec<u32> = (0..=17u32)
            .map(|s| 1 << s)
            .filter(|n| PageSize::new(*n).is_some())
            .collect();
        assert_eq!(valid, [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]);
        assert!(PageSize::new(0).is_none() && PageSize::new(u32::MAX).is_none());
    }

    #[test]
    fn txid_display_and_next() {
        assert_eq!(Txid(0xab).to_string(), "00000000000000ab");
        assert_eq!(Txid(u64::MAX).next(), Txid(u64::MAX));
    }
}
