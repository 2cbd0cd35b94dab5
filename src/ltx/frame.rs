//! Page frames: a 6-byte header, then the compressed page.

use super::error::{LtxError, be_u16, be_u32};
use super::lz4_frame;
use super::types::{PageNo, PageSize};

/// Size of a frame header: page number (u32) and flags (u16).
pub const FRAME_HEADER_SIZE: usize = 6;

/// Frame flag: a u32 compressed size and a raw LZ4 block follow.
const FLAG_SIZED_BLOCK: u16 = 0x0001;

/// Bytes of the compressed-size field of a sized frame.
const SIZE_FIELD: usize = 4;

/// The most bytes LZ4 compresses SQLite's largest page (65536 bytes) to:
/// its worst case `n + n / 255 + 16`. A sized frame that names more is
/// corrupt, and nobody reads (or allocates) the 4 GiB its field may claim.
const MAX_COMPRESSED: u32 = 65536 + 65536 / 255 + 16;

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

/// Bytes of the frame at the start of `buf` (which may hold more after
/// it), from its header and structure: a sized frame names its compressed
/// size, a legacy LZ4 frame is walked block by block. `Truncated`-style
/// errors mean `buf` ends inside the frame.
pub fn frame_len(buf: &[u8]) -> Result<usize, LtxError> {
    let header = FrameHeader::decode(buf)?;
    let rest = buf.get(FRAME_HEADER_SIZE..).unwrap_or_default();
    let payload = if header.is_sized_block() {
        let csize = be_u32(rest, 0, "frame size")?;
        if csize > MAX_COMPRESSED {
            return Err(too_large(header.pgno, csize));
        }
        usize::try_from(csize)
            .ok()
            .and_then(|c| c.checked_add(SIZE_FIELD))
            .ok_or_else(|| LtxError::invalid("frame", "compressed size overflows"))?
    } else {
        lz4_frame::frame_len(rest).map_err(|e| {
            LtxError::invalid("frame", format!("page {}: lz4 frame: {e}", header.pgno.0))
        })?
    };
    FRAME_HEADER_SIZE
        .checked_add(payload)
        .ok_or_else(|| LtxError::invalid("frame", "frame length overflows"))
}

/// The most bytes a frame of one page can take: the page stored
/// uncompressed plus LZ4's worst-case and framing overhead. A reader that
/// knows only where a frame starts reads this many bytes (or up to the end
/// of the file) and finds the frame's end with [`frame_len`].
pub fn max_frame_len(page_size: PageSize) -> u64 {
    let p = u64::from(page_size.get());
    p.saturating_add(p / 128).saturating_add(64)
}

/// Decodes one whole frame (`buf` is exactly the bytes the page index names)
/// into its page.
pub fn decode_frame(buf: &[u8], page_size: PageSize) -> Result<Frame, LtxError> {
    let mut page = vec![0u8; page_size.bytes()];
    let (header, size_field) = decode_frame_parts(buf, page_size, &mut page)?;
    Ok(Frame {
        header,
        size_field,
        page,
    })
}

/// [`decode_frame`] into `page`, which is one page long: the caller
/// chooses where the page lives (the page reader decodes straight into the
/// shared buffer the cache keeps, with no second allocation and copy).
pub fn decode_frame_into(
    buf: &[u8],
    page_size: PageSize,
    page: &mut [u8],
) -> Result<FrameHeader, LtxError> {
    decode_frame_parts(buf, page_size, page).map(|(header, _)| header)
}

fn decode_frame_parts(
    buf: &[u8],
    page_size: PageSize,
    page: &mut [u8],
) -> Result<(FrameHeader, Option<[u8; 4]>), LtxError> {
    let header = FrameHeader::decode(buf)?;
    if page.len() != page_size.bytes() {
        return Err(wrong_length(header.pgno, page.len(), page_size));
    }
    let rest = buf.get(FRAME_HEADER_SIZE..).unwrap_or_default();
    if header.is_sized_block() {
        let csize = be_u32(rest, 0, "frame size")?;
        if csize > MAX_COMPRESSED {
            return Err(too_large(header.pgno, csize));
        }
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
        decompress_block(payload, page_size, header.pgno, page)?;
        Ok((header, Some(csize.to_be_bytes())))
    } else {
        decompress_frame(rest, page_size, header.pgno, page)?;
        Ok((header, None))
    }
}

fn decompress_block(
    payload: &[u8],
    page_size: PageSize,
    pgno: PageNo,
    page: &mut [u8],
) -> Result<(), LtxError> {
    match lz4_flex::block::decompress_into(payload, page) {
        Ok(n) if n == page.len() => Ok(()),
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
    page: &mut [u8],
) -> Result<(), LtxError> {
    let n = lz4_frame::decode_into(payload, page)
        .map_err(|e| LtxError::invalid("frame", format!("page {}: lz4 frame: {e}", pgno.0)))?;
    if n != page.len() {
        return Err(wrong_length(pgno, n, page_size));
    }
    Ok(())
}

fn too_large(pgno: PageNo, csize: u32) -> LtxError {
    LtxError::invalid(
        "frame",
        format!(
            "page {}: compressed size {csize} is more than any page compresses to \
             ({MAX_COMPRESSED})",
            pgno.0
        ),
    )
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

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use std::io::Write;

    use super::*;

    fn ps(n: u32) -> PageSize {
        PageSize::new(n).unwrap()
    }

    /// A page that compresses somewhat: text with a counter.
    fn page(n: usize, seed: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        let mut i = seed;
        while out.len() < n {
            out.extend_from_slice(format!("row {i} of seed {seed};").as_bytes());
            i = i.wrapping_mul(2_654_435_761).wrapping_add(1) % 100_000;
        }
        out.truncate(n);
        out
    }

    fn sized_frame(pgno: u32, flags: u16, csize: Option<u32>, payload: &[u8]) -> Vec<u8> {
        let mut out = pgno.to_be_bytes().to_vec();
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&csize.unwrap_or(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn block_frame(pgno: u32, data: &[u8]) -> Vec<u8> {
        sized_frame(
            pgno,
            FLAG_SIZED_BLOCK,
            None,
            &lz4_flex::block::compress(data),
        )
    }

    fn lz4_frame(data: &[u8]) -> Vec<u8> {
        let info = lz4_flex::frame::FrameInfo::new().content_checksum(true);
        let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn legacy_frame(pgno: u32, data: &[u8]) -> Vec<u8> {
        let mut out = pgno.to_be_bytes().to_vec();
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&lz4_frame(data));
        out
    }

    #[test]
    fn frame_len_finds_the_end_of_both_encodings() {
        for shift in [9u32, 12, 16] {
            let size = 1u32 << shift;
            let data = page(size as usize, shift);
            let noise: Vec<u8> = (0..size)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            for f in [
                block_frame(3, &data),
                legacy_frame(3, &data),
                block_frame(3, &noise),
                legacy_frame(3, &noise),
            ] {
                assert!(
                    f.len() as u64 <= max_frame_len(ps(size)),
                    "{} > bound",
                    f.len()
                );
                let mut more = f.clone();
                more.extend_from_slice(&[7u8; 100]);
                assert_eq!(frame_len(&more).unwrap(), f.len());
                assert_eq!(frame_len(&f).unwrap(), f.len());
            }
        }
    }

    #[test]
    fn decodes_both_encodings_at_every_page_size() {
        for shift in 9..=16 {
            let size = 1u32 << shift;
            let data = page(size as usize, shift);
            let f = decode_frame(&block_frame(9, &data), ps(size)).unwrap();
            assert_eq!(f.header.pgno, PageNo(9));
            assert!(f.header.is_sized_block() && f.size_field.is_some());
            assert_eq!(f.page, data);
            let f = decode_frame(&legacy_frame(9, &data), ps(size)).unwrap();
            assert!(!f.header.is_sized_block() && f.size_field.is_none());
            assert_eq!(f.page, data);
            let zeros = vec![0u8; size as usize];
            assert_eq!(
                decode_frame(&block_frame(1, &zeros), ps(size))
                    .unwrap()
                    .page,
                zeros
            );
        }
    }

    #[test]
    fn size_field_is_kept_for_the_checksum() {
        let data = page(4096, 1);
        let frame = block_frame(3, &data);
        let f = decode_frame(&frame, ps(4096)).unwrap();
        assert_eq!(f.size_field.unwrap()[..], frame[6..10]);
    }

    #[test]
    fn rejects_wrong_decompressed_length() {
        for n in [0usize, 1, 4095, 4097, 8192] {
            let data = page(n, 2);
            let e = decode_frame(&block_frame(1, &data), ps(4096)).unwrap_err();
            assert!(matches!(e, LtxError::Invalid { .. }), "{n}: {e}");
            let e = decode_frame(&legacy_frame(1, &data), ps(4096)).unwrap_err();
            assert!(matches!(e, LtxError::Invalid { .. }), "{n}: {e}");
        }
        // A right-sized page at the wrong page size.
        let data = page(4096, 3);
        assert!(decode_frame(&block_frame(1, &data), ps(8192)).is_err());
        assert!(decode_frame(&block_frame(1, &data), ps(2048)).is_err());
        assert!(decode_frame(&legacy_frame(1, &data), ps(8192)).is_err());
        assert!(decode_frame(&legacy_frame(1, &data), ps(2048)).is_err());
    }

    #[test]
    fn rejects_size_field_that_disagrees_with_the_frame() {
        let block = lz4_flex::block::compress(&page(4096, 4));
        let n = block.len() as u32;
        for csize in [0, n - 1, n + 1, u32::MAX] {
            let frame = sized_frame(1, FLAG_SIZED_BLOCK, Some(csize), &block);
            assert!(decode_frame(&frame, ps(4096)).is_err(), "{csize}");
        }
    }

    #[test]
    fn a_compressed_size_beyond_any_page_is_refused_before_it_is_read() {
        // The worst case of LZ4 for the largest page still fits.
        let noise: Vec<u8> = (0..65536u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let worst = block_frame(1, &noise);
        assert!(worst.len() - 10 <= MAX_COMPRESSED as usize);
        assert_eq!(frame_len(&worst).unwrap(), worst.len());
        // A size field that claims more: the frame's length is not taken
        // from it (a reader would fetch that many bytes to find its end).
        for csize in [MAX_COMPRESSED + 1, 1 << 30, u32::MAX] {
            let frame = sized_frame(5, FLAG_SIZED_BLOCK, Some(csize), b"abc");
            let e = frame_len(&frame).unwrap_err().to_string();
            assert!(e.contains("page 5: compressed size"), "{e}");
            assert!(decode_frame(&frame, ps(4096)).is_err());
        }
    }

    #[test]
    fn rejects_unknown_flags_and_page_zero() {
        let data = page(4096, 5);
        for flags in [0x2u16, 0x3, 0x8000, 0x8001, u16::MAX] {
            let mut frame = block_frame(1, &data);
            frame[4..6].copy_from_slice(&flags.to_be_bytes());
            let e = decode_frame(&frame, ps(4096)).unwrap_err();
            assert!(e.to_string().contains("unknown flags"), "{e}");
        }
        assert!(decode_frame(&block_frame(0, &data), ps(4096)).is_err());
        assert!(decode_frame(&legacy_frame(0, &data), ps(4096)).is_err());
    }

    #[test]
    fn rejects_every_truncation() {
        let data = page(4096, 6);
        for frame in [block_frame(2, &data), legacy_frame(2, &data)] {
            for n in 0..frame.len() {
                assert!(decode_frame(&frame[..n], ps(4096)).is_err(), "{n}");
            }
        }
    }

    #[test]
    fn rejects_trailing_bytes() {
        let data = page(4096, 7);
        let mut frame = block_frame(2, &data);
        frame.push(0);
        assert!(decode_frame(&frame, ps(4096)).is_err());
        let mut frame = legacy_frame(2, &data);
        frame.extend_from_slice(b"junk");
        assert!(decode_frame(&frame, ps(4096)).is_err());
    }

    #[test]
    fn rejects_garbage_payloads() {
        for payload in [&[][..], &[0u8; 16], &[0xff; 64], b"\x04\x22\x4d\x18garbage"] {
            let mut frame = vec![0, 0, 0, 1, 0, 0];
            frame.extend_from_slice(payload);
            assert!(decode_frame(&frame, ps(4096)).is_err());
            let frame = sized_frame(1, FLAG_SIZED_BLOCK, None, payload);
            assert!(decode_frame(&frame, ps(4096)).is_err());
        }
    }

    #[test]
    fn legacy_frame_content_checksum_is_checked() {
        let data = page(4096, 8);
        let mut frame = legacy_frame(1, &data);
        // The last 4 bytes are the content checksum.
        let last = frame.len() - 1;
        frame[last] ^= 0x01;
        assert!(decode_frame(&frame, ps(4096)).is_err());
    }

    #[test]
    fn frame_header_needs_six_bytes() {
        let bytes = [0u8, 0, 0, 7, 0, 1];
        for n in 0..FRAME_HEADER_SIZE {
            assert!(FrameHeader::decode(&bytes[..n]).is_err());
        }
        assert_eq!(
            FrameHeader::decode(&bytes),
            Ok(FrameHeader {
                pgno: PageNo(7),
                flags: 1
            })
        );
    }
}
