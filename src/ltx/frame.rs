//! Page frames: a 6-byte header, then the compressed page.

use std::io::Read;

use super::error::{LtxError, be_u16, be_u32};
use super::types::{PageNo, PageSize};

/// Size of a frame header: page number (u32) and flags (u16).
pub const FRAME_HEADER_SIZE: usize = 6;

/// Frame flag: a u32 compressed size and a raw LZ4 block follow.
const FLAG_SIZED_BLOCK: u16 = 0x0001;

/// Bytes of the compressed-size field of a sized frame.
const SIZE_FIELD: usize = 4;

/// The fixed part of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub pgno: PageNo,
    pub flags: u16,
}

impl FrameHeader {
    pub fn decode(buf: &[u8]) -> Result<FrameHeader, LtxError> {
        let pgno = be_u32(buf, 0, "frame header")?;
        let flags = be_u16(buf, 4, "frame header")?;
        if flags & !FLAG_SIZED_BLOCK != 0 {
            return Err(LtxError::invalid(
                "frame header",
                format!("unknown flags {flags:#x}"),
            ));
        }
        if pgno == 0 {
            return Err(LtxError::invalid("frame header", "page number 0"));
        }
        Ok(FrameHeader {
            pgno: PageNo(pgno),
            flags,
        })
    }

    /// Whether the payload is a size-prefixed LZ4 block (else a legacy LZ4 frame).
    pub fn is_sized_block(&self) -> bool {
        self.flags & FLAG_SIZED_BLOCK != 0
    }
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    /// The 4 size bytes of a sized frame, which the file checksum covers.
    pub size_field: Option<[u8; 4]>,
    /// The decompressed page, exactly one page long.
    pub page: Vec<u8>,
}

/// Decodes one whole frame (`buf` is exactly the bytes the page index names)
/// into its page.
pub fn decode_frame(buf: &[u8], page_size: PageSize) -> Result<Frame, LtxError> {
    let header = FrameHeader::decode(buf)?;
    let rest = buf.get(FRAME_HEADER_SIZE..).unwrap_or_default();
    let (size_field, page) = if header.is_sized_block() {
        let csize = be_u32(rest, 0, "frame size")?;
        let payload = rest.get(SIZE_FIELD..).unwrap_or_default();
        if usize::try_from(csize).ok() != Some(payload.len()) {
            return Err(LtxError::invalid(
                "frame",
                format!(
                    "page {}: compressed size {csize} but frame holds {} bytes",
                    header.pgno.0,
                    payload.len()
                ),
            ));
        }
        (
            Some(csize.to_be_bytes()),
            decompress_block(payload, page_size, header.pgno)?,
        )
    } else {
        (None, decompress_frame(rest, page_size, header.pgno)?)
    };
    Ok(Frame {
        header,
        size_field,
        page,
    })
}

fn decompress_block(
    payload: &[u8],
    page_size: PageSize,
    pgno: PageNo,
) -> Result<Vec<u8>, LtxError> {
    let mut page = vec![0u8; page_size.bytes()];
    match lz4_flex::block::decompress_into(payload, &mut page) {
        Ok(n) if n == page.len() => Ok(page),
        Ok(n) => Err(wrong_length(pgno, n, page_size)),
        Err(e) => Err(LtxError::invalid(
            "frame",
            format!("page {}: lz4 block: {e}", pgno.0),
        )),
    }
}

fn decompress_frame(
    payload: &[u8],
    page_size: PageSize,
    pgno: PageNo,
) -> Result<Vec<u8>, LtxError> {
    let mut page = Vec::with_capacity(page_size.bytes());
    let limit = u64::from(page_size.get()).saturating_add(1);
    lz4_flex::frame::FrameDecoder::new(payload)
        .take(limit)
        .read_to_end(&mut page)
        .map_err(|e| LtxError::invalid("frame", format!("page {}: lz4 frame: {e}", pgno.0)))?;
    if page.len() != page_size.bytes() {
        return Err(wrong_length(pgno, page.len(), page_size));
    }
    Ok(page)
}

fn wrong_length(pgno: PageNo, got: usize, page_size: PageSize) -> LtxError {
    LtxError::invalid(
        "frame",
        format!(
            "page {} decompressed to {got} bytes, page size is {}",
            pgno.0,
            page_size.get()
        ),
    )
}
