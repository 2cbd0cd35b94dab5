//! Pure decoding of LTX files: header, frames, page index, trailer,
//! checksums and file names. No I/O and no `unsafe`; every function
//! accepts arbitrary bytes and answers with a value or an [`LtxError`],
//! never a panic.
//!
//! The format is Litestream's LTX v1 (superfly/ltx): a 100-byte header,
//! LZ4-compressed page frames, a page index and a 16-byte trailer.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

// The LTX writer is for tests, benches and fuzz seeds only: it and lz4_flex's
// encoders stay out of the release library (see the `testing` feature).
#[cfg(any(test, feature = "testing"))]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod builder;
mod checksum;
mod error;
mod file;
mod frame;
mod header;
mod index;
mod lz4_frame;
mod name;
mod snapshot_pages;
mod trailer;
mod types;
mod verify;

#[cfg(any(test, feature = "testing"))]
pub use builder::LtxBuilder;
pub use checksum::{Crc64, file_checksum_of};
pub use error::LtxError;
pub use file::{DecodedFile, decode_file, decode_file_keeping};
pub use frame::{
    FRAME_HEADER_SIZE, FrameHeader, decode_frame, decode_frame_into, frame_len, max_frame_len,
};
pub use header::{FLAG_NO_CHECKSUM, HEADER_SIZE, Header};
pub use index::{
    INDEX_LOCATOR_SIZE, IndexDecoder, IndexEntry, PageIndex, encode_entries, index_region,
};
pub use name::{FileName, parse_name};
pub use snapshot_pages::SnapshotPages;
pub use trailer::{TRAILER_SIZE, Trailer};
pub use types::{MAX_PAGE_COUNT, PageNo, PageSize, Txid, lock_page};
pub use verify::Verifier;
