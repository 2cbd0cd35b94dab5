//! Writes LTX files, for tests, fuzz seeds and benches. Mirrors what
//! Litestream writes: sized LZ4 blocks (or the legacy LZ4 frames), the index,
//! and a valid file checksum.

use std::collections::BTreeMap;
use std::io::Write;

use super::checksum::Crc64;
use super::frame::FRAME_HEADER_SIZE;
use super::header::{FLAG_NO_CHECKSUM, Header};
use super::index::{IndexEntry, PageIndex};
use super::types::{PageNo, PageSize, Txid};

/// Builds one LTX file.
#[derive(Clone, Debug)]
pub struct LtxBuilder {
    header: Header,
    pages: BTreeMap<u32, Vec<u8>>,
    legacy_frames: bool,
}

impl LtxBuilder {
    /// A file for TXIDs `min..=max` of a database of `commit` pages.
    pub fn new(page_size: PageSize, min: u64, max: u64, commit: u32) -> LtxBuilder {
        LtxBuilder {
            header: Header {
                flags: FLAG_NO_CHECKSUM,
                page_size,
                commit,
                min_txid: Txid(min),
                max_txid: Txid(max),
                timestamp_ms: 1_700_000_000_000,
                pre_apply_checksum: 0,
                wal_offset: 0,
                wal_size: 0,
                wal_salt1: 0,
                wal_salt2: 0,
                node_id: 0,
            },
            pages: BTreeMap::new(),
            legacy_frames: false,
        }
    }

    pub fn timestamp_ms(mut self, ms: i64) -> LtxBuilder {
        self.header.timestamp_ms = ms;
        self
    }

    /// Writes payloads as complete LZ4 frames (flags 0), as some 0.5.x releases did.
    pub fn legacy_frames(mut self, on: bool) -> LtxBuilder {
        self.legacy_frames = on;
        self
    }

    /// Adds a page; `data` is padded or cut to the page size.
    pub fn page(mut self, pgno: u32, data: &[u8]) -> LtxBuilder {
        let mut page = data.to_vec();
        page.resize(self.header.page_size.bytes(), 0);
        self.pages.insert(pgno, page);
        self
    }

    /// The encoded file.
    pub fn build(&self) -> Vec<u8> {
        let mut out = self.header.encode().to_vec();
        let mut crc = Crc64::new();
        crc.update(&out);
        let mut index = PageIndex::default();
        for (pgno, page) in &self.pages {
            let offset = out.len() as u64;
            let mut frame_header = [0u8; FRAME_HEADER_SIZE];
            frame_header[..4].copy_from_slice(&pgno.to_be_bytes());
            frame_header[4..].copy_from_slice(&(u16::from(!self.legacy_frames)).to_be_bytes());
            out.extend_from_slice(&frame_header);
            crc.update(&frame_header);
            if self.legacy_frames {
                // As Go's pierrec/lz4 writer did by default: 4 MB blocks and
                // a content checksum.
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max4MB)
                    .content_checksum(true);
                let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
                let _ = enc.write_all(page);
                out.extend_from_slice(&enc.finish().unwrap_or_default());
            } else {
                let block = lz4_flex::block::compress(page);
                let size = (block.len() as u32).to_be_bytes();
                out.extend_from_slice(&size);
                crc.update(&size);
                out.extend_from_slice(&block);
            }
            crc.update(page);
            let size = (out.len() as u64 - offset) as u32;
            index.entries.push(IndexEntry {
                pgno: PageNo(*pgno),
                offset,
                size,
            });
        }
        out.extend_from_slice(&[0u8; FRAME_HEADER_SIZE]);
        crc.update(&[0u8; FRAME_HEADER_SIZE]);
        let index_bytes = index.encode();
        crc.update(&index_bytes);
        out.extend_from_slice(&index_bytes);
        let post_apply = 0u64.to_be_bytes();
        crc.update(&post_apply);
        out.extend_from_slice(&post_apply);
        out.extend_from_slice(&crc.finish().to_be_bytes());
        out
    }
}
