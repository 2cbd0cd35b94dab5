//! The 100-byte file header.

use super::error::{LtxError, be_bytes, be_u32, be_u64};
use super::types::{MAX_PAGE_COUNT, PageSize, Txid};

/// Size of the header in bytes.
pub const HEADER_SIZE: usize = 100;

/// Header flag: the file carries no database checksums.
pub const FLAG_NO_CHECKSUM: u32 = 0x2;

const MAGIC: &[u8; 4] = b"LTX1";

/// A decoded and validated LTX header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub flags: u32,
    pub page_size: PageSize,
    /// Database size in pages after this file is applied.
    pub commit: u32,
    pub min_txid: Txid,
    pub max_txid: Txid,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub pre_apply_checksum: u64,
    pub wal_offset: u64,
    pub wal_size: u64,
    pub wal_salt1: u32,
    pub wal_salt2: u32,
    pub node_id: u64,
}

impl Header {
    /// Decodes the header from the first [`HEADER_SIZE`] bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Header, LtxError> {
        let what = "header";
        if buf.len() < HEADER_SIZE {
            return Err(LtxError::truncated(what, HEADER_SIZE, buf.len()));
        }
        if &be_bytes::<4>(buf, 0, what)? != MAGIC {
            return Err(LtxError::invalid(
                what,
                "magic is not LTX1: not an LTX file",
            ));
        }
        let flags = be_u32(buf, 4, what)?;
        if flags & !FLAG_NO_CHECKSUM != 0 {
            return Err(LtxError::invalid(what, format!("unknown flags {flags:#x}")));
        }
        let raw_page_size = be_u32(buf, 8, what)?;
        let page_size = PageSize::new(raw_page_size)
            .ok_or_else(|| LtxError::invalid(what, format!("page size {raw_page_size}")))?;
        let commit = be_u32(buf, 12, what)?;
        let min_txid = Txid(be_u64(buf, 16, what)?);
        let max_txid = Txid(be_u64(buf, 24, what)?);
        if commit == 0 {
            return Err(LtxError::invalid(what, "commit is 0"));
        }
        if commit > MAX_PAGE_COUNT {
            return Err(LtxError::invalid(
                what,
                format!("commit {commit} is more pages than SQLite allows ({MAX_PAGE_COUNT})"),
            ));
        }
        if min_txid.0 == 0 || max_txid < min_txid {
            return Err(LtxError::invalid(
                what,
                format!("TXID range {min_txid}-{max_txid}"),
            ));
        }
        let timestamp = be_u64(buf, 32, what)?;
        Ok(Header {
            flags,
            page_size,
            commit,
            min_txid,
            max_txid,
            timestamp_ms: i64::try_from(timestamp)
                .map_err(|_| LtxError::invalid(what, "timestamp out of range"))?,
            pre_apply_checksum: be_u64(buf, 40, what)?,
            wal_offset: be_u64(buf, 48, what)?,
            wal_size: be_u64(buf, 56, what)?,
            wal_salt1: be_u32(buf, 64, what)?,
            wal_salt2: be_u32(buf, 68, what)?,
            node_id: be_u64(buf, 72, what)?,
        })
    }

    /// Encodes the header (used by the test builder).
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        let mut w = Vec::with_capacity(HEADER_SIZE);
        w.extend_from_slice(MAGIC);
        w.extend_from_slice(&self.flags.to_be_bytes());
        w.extend_from_slice(&self.page_size.get().to_be_bytes());
        w.extend_from_slice(&self.commit.to_be_bytes());
        w.extend_from_slice(&self.min_txid.0.to_be_bytes());
        w.extend_from_slice(&self.max_txid.0.to_be_bytes());
        w.extend_from_slice(&(self.timestamp_ms.max(0) as u64).to_be_bytes());
        w.extend_from_slice(&self.pre_apply_checksum.to_be_bytes());
        w.extend_from_slice(&self.wal_offset.to_be_bytes());
        w.extend_from_slice(&self.wal_size.to_be_bytes());
        w.extend_from_slice(&self.wal_salt1.to_be_bytes());
        w.extend_from_slice(&self.wal_salt2.to_be_bytes());
        w.extend_from_slice(&self.node_id.to_be_bytes());
        for (dst, src) in out.iter_mut().zip(w) {
            *dst = src;
        }
        out
    }

    /// Whether this file is a full snapshot (its first transaction is 1).
    pub fn is_snapshot(&self) -> bool {
        self.min_txid.0 == 1
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            flags: FLAG_NO_CHECKSUM,
            page_size: PageSize::new(4096).unwrap(),
            commit: 7,
            min_txid: Txid(3),
            max_txid: Txid(9),
            timestamp_ms: 1_795_650_717_713,
            pre_apply_checksum: 0,
            wal_offset: 32,
            wal_size: 4152,
            wal_salt1: 0xdead_beef,
            wal_salt2: 0x0bad_f00d,
            node_id: 42,
        }
    }

    fn with(at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut b = sample().encode().to_vec();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    }

    #[test]
    fn round_trips() {
        let h = sample();
        let bytes = h.encode();
        assert_eq!(&bytes[..4], b"LTX1");
        assert!(
            bytes[80..].iter().all(|b| *b == 0),
            "reserved bytes are zero"
        );
        assert_eq!(Header::decode(&bytes), Ok(h.clone()));
        // Bytes after the header are not the header's business.
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(&[0xff; 50]);
        assert_eq!(Header::decode(&longer), Ok(h));
    }

    #[test]
    fn truncated_at_every_length() {
        let bytes = sample().encode();
        for n in 0..HEADER_SIZE {
            assert!(
                matches!(Header::decode(&bytes[..n]), Err(LtxError::Truncated { .. })),
                "{n}"
            );
        }
    }

    #[test]
    fn rejects_bad_magic() {
        for magic in [b"LTX0", b"ltx1", b"\0\0\0\0", b"SQLi"] {
            assert!(Header::decode(&with(0, magic)).is_err());
        }
    }

    #[test]
    fn rejects_unknown_flags() {
        assert!(Header::decode(&with(4, &0u32.to_be_bytes())).is_ok());
        for flags in [0x1u32, 0x3, 0x4, 0x6, 0x8000_0000, u32::MAX] {
            let e = Header::decode(&with(4, &flags.to_be_bytes())).unwrap_err();
            assert!(e.to_string().contains("unknown flags"), "{e}");
        }
    }

    #[test]
    fn page_sizes() {
        for ok in [512u32, 1024, 2048, 4096, 8192, 16384, 32768, 65536] {
            let h = Header::decode(&with(8, &ok.to_be_bytes())).unwrap();
            assert_eq!(h.page_size.get(), ok);
        }
        for bad in [
            0u32,
            1,
            256,
            511,
            513,
            1000,
            4095,
            4097,
            131072,
            1 << 31,
            u32::MAX,
        ] {
            let e = Header::decode(&with(8, &bad.to_be_bytes())).unwrap_err();
            assert!(e.to_string().contains("page size"), "{bad}: {e}");
        }
    }

    #[test]
    fn rejects_bad_commit_and_txids() {
        assert!(Header::decode(&with(12, &0u32.to_be_bytes())).is_err());
        // SQLite's largest database is 4294967294 pages.
        let e = Header::decode(&with(12, &u32::MAX.to_be_bytes())).unwrap_err();
        assert!(
            e.to_string().contains("more pages than SQLite allows"),
            "{e}"
        );
        let h = Header::decode(&with(12, &4_294_967_294u32.to_be_bytes())).unwrap();
        assert_eq!(h.commit, 4_294_967_294);
        assert!(Header::decode(&with(16, &0u64.to_be_bytes())).is_err());
        // max < min
        assert!(Header::decode(&with(24, &2u64.to_be_bytes())).is_err());
        // max == min is one transaction
        assert!(Header::decode(&with(24, &3u64.to_be_bytes())).is_ok());
    }

    #[test]
    fn rejects_timestamp_beyond_i64() {
        assert!(Header::decode(&with(32, &u64::MAX.to_be_bytes())).is_err());
        assert!(Header::decode(&with(32, &(1u64 << 63).to_be_bytes())).is_err());
        let h = Header::decode(&with(32, &(i64::MAX as u64).to_be_bytes())).unwrap();
        assert_eq!(h.timestamp_ms, i64::MAX);
    }

    #[test]
    fn snapshot_is_min_txid_one() {
        assert!(!sample().is_snapshot());
        assert!(
            Header::decode(&with(16, &1u64.to_be_bytes()))
                .unwrap()
                .is_snapshot()
        );
    }
}
