//! A strict decoder for the legacy page payload: one complete LZ4 frame
//! (`lz4_Frame_format.md` of the LZ4 project) that holds exactly one page.
//!
//! Why not `lz4_flex::frame::FrameDecoder`: it sizes and zeroes its output
//! buffer by the frame's declared maximum block size (Go's writer declares
//! 4 MB), which costs a 4 MB memset for every 4 KiB page; it accepts a frame
//! cut off before its end mark (and so skips the content checksum); and it
//! ignores bytes after the end mark. Here each block is decompressed straight
//! into the page, and the frame must end exactly where the page index says
//! the frame ends.

use twox_hash::XxHash32;

const MAGIC: u32 = 0x184D_2204;

/// FLG byte: version (must be `01`), then the feature bits.
const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION: u8 = 0b0100_0000;
const FLG_INDEPENDENT_BLOCKS: u8 = 0x20;
const FLG_BLOCK_CHECKSUM: u8 = 0x10;
const FLG_CONTENT_SIZE: u8 = 0x08;
const FLG_CONTENT_CHECKSUM: u8 = 0x04;
const FLG_RESERVED: u8 = 0x02;
const FLG_DICT_ID: u8 = 0x01;

/// BD byte: bit 7 and bits 0..=3 are reserved and must be zero.
const BD_RESERVED: u8 = 0x8f;

/// Block size word: the top bit marks a block stored uncompressed.
const BLOCK_UNCOMPRESSED: u32 = 1 << 31;

/// Decodes the LZ4 frame `frame` into `page` and returns how many bytes it
/// held. More bytes than `page` holds is an error; fewer is for the caller
/// to judge.
pub(crate) fn decode_into(frame: &[u8], page: &mut [u8]) -> Result<usize, String> {
    let mut r = Reader { rest: frame };
    if r.u32_le("magic")? != MAGIC {
        return Err("bad magic: not an LZ4 frame".into());
    }
    let descriptor_start = r.rest;
    let flg = r.byte("frame descriptor")?;
    let bd = r.byte("frame descriptor")?;
    if flg & FLG_VERSION_MASK != FLG_VERSION || flg & FLG_RESERVED != 0 || bd & BD_RESERVED != 0 {
        return Err(format!(
            "unsupported frame descriptor FLG={flg:#04x} BD={bd:#04x}"
        ));
    }
    let max_block: usize = match (bd >> 4) & 0x7 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        id => return Err(format!("unknown block size id {id}")),
    };
    if flg & FLG_CONTENT_SIZE != 0 {
        let size = r.u64_le("content size")?;
        if u64::try_from(page.len()).ok() != Some(size) {
            return Err(format!("frame declares {size} bytes of content"));
        }
    }
    if flg & FLG_DICT_ID != 0 {
        return Err("frame needs a dictionary".into());
    }
    let descriptor_len = descriptor_start.len().saturating_sub(r.rest.len());
    let descriptor = descriptor_start.get(..descriptor_len).unwrap_or_default();
    let header_checksum = r.byte("header checksum")?;
    if (XxHash32::oneshot(0, descriptor) >> 8) & 0xff != u32::from(header_checksum) {
        return Err("frame header checksum mismatch".into());
    }

    let linked = flg & FLG_INDEPENDENT_BLOCKS == 0;
    let mut filled = 0usize;
    loop {
        let word = r.u32_le("block size")?;
        if word == 0 {
            break;
        }
        let len = usize::try_from(word & !BLOCK_UNCOMPRESSED).unwrap_or(usize::MAX);
        if len > max_block {
            return Err(format!(
                "block of {len} bytes exceeds the frame's {max_block}"
            ));
        }
        let data = r.take(len, "block")?;
        if flg & FLG_BLOCK_CHECKSUM != 0
            && r.u32_le("block checksum")? != XxHash32::oneshot(0, data)
        {
            return Err("block checksum mismatch".into());
        }
        let (done, free) = page
            .split_at_mut_checked(filled)
            .ok_or("block position outside the page")?;
        let n = if word & BLOCK_UNCOMPRESSED != 0 {
            let dst = free
                .get_mut(..len)
                .ok_or("frame holds more than one page")?;
            dst.copy_from_slice(data);
            len
        } else {
            // Linked blocks may refer back into the blocks before them.
            let dict: &[u8] = if linked { done } else { &[] };
            lz4_flex::block::decompress_into_with_dict(data, free, dict)
                .map_err(|e| format!("lz4 block: {e}"))?
        };
        filled = filled.checked_add(n).ok_or("block position overflow")?;
    }
    if flg & FLG_CONTENT_CHECKSUM != 0 {
        let stored = r.u32_le("content checksum")?;
        let content = page.get(..filled).unwrap_or_default();
        if stored != XxHash32::oneshot(0, content) {
            return Err("content checksum mismatch".into());
        }
    }
    if !r.rest.is_empty() {
        return Err(format!("{} bytes after the end of the frame", r.rest.len()));
    }
    Ok(filled)
}

/// Bytes of the LZ4 frame at the start of `buf` (which may go on past
/// it), from its structure alone: descriptor, block sizes, checksum flags
/// and end mark. Nothing is decompressed or checked here.
pub(crate) fn frame_len(buf: &[u8]) -> Result<usize, String> {
    let mut r = Reader { rest: buf };
    if r.u32_le("magic")? != MAGIC {
        return Err("bad magic: not an LZ4 frame".into());
    }
    let flg = r.byte("frame descriptor")?;
    let _bd = r.byte("frame descriptor")?;
    if flg & FLG_CONTENT_SIZE != 0 {
        r.u64_le("content size")?;
    }
    if flg & FLG_DICT_ID != 0 {
        r.u32_le("dictionary id")?;
    }
    r.byte("header checksum")?;
    loop {
        let word = r.u32_le("block size")?;
        if word == 0 {
            break;
        }
        let len = usize::try_from(word & !BLOCK_UNCOMPRESSED).unwrap_or(usize::MAX);
        r.take(len, "block")?;
        if flg & FLG_BLOCK_CHECKSUM != 0 {
            r.u32_le("block checksum")?;
        }
    }
    if flg & FLG_CONTENT_CHECKSUM != 0 {
        r.u32_le("content checksum")?;
    }
    Ok(buf.len().saturating_sub(r.rest.len()))
}

/// Reads fields off the front of a byte slice.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let (head, tail) = self
            .rest
            .split_at_checked(n)
            .ok_or_else(|| format!("frame cut short in its {what}"))?;
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let bytes = self.take(N, what)?;
        <[u8; N]>::try_from(bytes).map_err(|_| format!("frame cut short in its {what}"))
    }

    fn byte(&mut self, what: &str) -> Result<u8, String> {
        self.array::<1>(what).map(|[b]| b)
    }

    fn u32_le(&mut self, what: &str) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64_le(&mut self, what: &str) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use std::io::Write;

    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};

    use super::*;

    fn page(n: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 7) / 13 % 251) as u8).collect()
    }

    fn encode(info: FrameInfo, data: &[u8]) -> Vec<u8> {
        let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn decode(frame: &[u8], n: usize) -> Result<Vec<u8>, String> {
        let mut out = vec![0u8; n];
        let got = decode_into(frame, &mut out)?;
        out.truncate(got);
        Ok(out)
    }

    #[test]
    fn decodes_every_frame_option() {
        let data = page(65536);
        for size in [
            BlockSize::Max64KB,
            BlockSize::Max256KB,
            BlockSize::Max1MB,
            BlockSize::Max4MB,
        ] {
            for mode in [BlockMode::Independent, BlockMode::Linked] {
                for flags in 0..8u8 {
                    let mut info = FrameInfo::new()
                        .block_size(size)
                        .block_mode(mode)
                        .content_checksum(flags & 1 != 0)
                        .block_checksums(flags & 2 != 0);
                    if flags & 4 != 0 {
                        info = info.content_size(Some(data.len() as u64));
                    }
                    let frame = encode(info, &data);
                    assert_eq!(decode(&frame, data.len()).unwrap(), data, "{flags}");
                }
            }
        }
    }

    #[test]
    fn decodes_many_linked_blocks() {
        // A 64 KiB block limit splits 200 KiB of data into linked blocks.
        let data = page(200_000);
        let info = FrameInfo::new()
            .block_size(BlockSize::Max64KB)
            .block_mode(BlockMode::Linked)
            .content_checksum(true);
        let frame = encode(info, &data);
        assert_eq!(decode(&frame, data.len()).unwrap(), data);
        // Too small a page: an error, not a panic.
        assert!(decode(&frame, 100_000).is_err());
    }

    #[test]
    fn decodes_incompressible_data() {
        let mut x = 1u32;
        let data: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let frame = encode(FrameInfo::new().content_checksum(true), &data);
        assert_eq!(decode(&frame, 4096).unwrap(), data);
    }

    #[test]
    fn rejects_damage() {
        let data = page(4096);
        let info = FrameInfo::new()
            .content_checksum(true)
            .block_checksums(true);
        let frame = encode(info, &data);
        for n in 0..frame.len() {
            assert!(decode(&frame[..n], 4096).is_err(), "cut at {n}");
        }
        let mut longer = frame.clone();
        longer.push(0);
        assert!(decode(&longer, 4096).is_err());
        for at in 0..frame.len() {
            let mut bad = frame.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad, 4096).is_err(), "flip at {at}");
        }
        // Content size that disagrees with the page.
        let sized = encode(FrameInfo::new().content_size(Some(4096)), &data);
        assert!(decode(&sized, 4096).is_ok());
        assert!(decode(&sized, 8192).is_err());
    }

    #[test]
    fn reports_short_content() {
        let frame = encode(FrameInfo::new(), &page(100));
        assert_eq!(decode_into(&frame, &mut [0u8; 4096]), Ok(100));
        let empty = encode(FrameInfo::new(), &[]);
        assert_eq!(decode_into(&empty, &mut [0u8; 4096]), Ok(0));
    }
}
