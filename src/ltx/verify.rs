//! Verifying a file's checksum piece by piece, for files too large to hold
//! in memory at once: feed the header, then every frame in order, then the
//! tail (end marker, page index, trailer).

use super::checksum::Crc64;
use super::error::LtxError;
use super::frame::{FRAME_HEADER_SIZE, decode_frame};
use super::header::HEADER_SIZE;
use super::trailer::{TRAILER_SIZE, Trailer};
use super::types::PageSize;

/// A running file-checksum verification.
pub struct Verifier {
    crc: Crc64,
    page_size: PageSize,
}

impl Verifier {
    /// Starts with the file's first [`HEADER_SIZE`] bytes.
    pub fn new(header: &[u8], page_size: PageSize) -> Result<Verifier, LtxError> {
        let bytes = header
            .get(..HEADER_SIZE)
            .ok_or_else(|| LtxError::truncated("header", HEADER_SIZE, header.len()))?;
        let mut crc = Crc64::new();
        crc.update(bytes);
        Ok(Verifier { crc, page_size })
    }

    /// Adds the next frame (exactly the bytes the page index names) and
    /// returns its decompressed page, not yet verified.
    pub fn frame(&mut self, frame: &[u8]) -> Result<Vec<u8>, LtxError> {
        let decoded = decode_frame(frame, self.page_size)?;
        self.crc
            .update(frame.get(..FRAME_HEADER_SIZE).unwrap_or_default());
        if let Some(size) = decoded.size_field {
            self.crc.update(&size);
        }
        self.crc.update(&decoded.page);
        Ok(decoded.page)
    }

    /// Ends with every byte from the end marker to the end of the file.
    pub fn finish(mut self, tail: &[u8]) -> Result<(), LtxError> {
        let trailer = Trailer::decode(tail)?;
        let covered = tail.len().saturating_sub(TRAILER_SIZE.saturating_sub(8));
        let marker = tail.get(..FRAME_HEADER_SIZE).unwrap_or_default();
        if marker.len() != FRAME_HEADER_SIZE || marker.iter().any(|b| *b != 0) {
            return Err(LtxError::invalid(
                "page block",
                "no end marker before the page index",
            ));
        }
        self.crc.update(tail.get(..covered).unwrap_or_default());
        let computed = self.crc.finish();
        if computed != trailer.file_checksum {
            return Err(LtxError::Checksum {
                stored: trailer.file_checksum,
                computed,
            });
        }
        Ok(())
    }
}
