//! Decoding a whole file at once, with its checksum verified.

use super::checksum::Crc64;
use super::error::LtxError;
use super::frame::{FRAME_HEADER_SIZE, decode_frame};
use super::header::{HEADER_SIZE, Header};
use super::index::{INDEX_LOCATOR_SIZE, IndexEntry, PageIndex, index_region};
use super::snapshot_pages::SnapshotPages;
use super::trailer::{TRAILER_SIZE, Trailer};
use super::types::PageNo;

/// A whole LTX file, decoded and verified.
#[derive(Clone, Debug)]
pub struct DecodedFile {
    pub header: Header,
    pub index: PageIndex,
    /// The decompressed pages of the first entries of `index.entries`, in
    /// its order: all of them from [`decode_file`], as many as fit the
    /// bound given to [`decode_file_keeping`].
    pub pages: Vec<(PageNo, Vec<u8>)>,
    pub trailer: Trailer,
}

/// Decodes every part of `bytes` and verifies the file checksum, so that a
/// file read whole is known to be exactly what Litestream wrote.
pub fn decode_file(bytes: &[u8]) -> Result<DecodedFile, LtxError> {
    decode_file_keeping(bytes, usize::MAX)
}

/// [`decode_file`], keeping at most `keep` bytes of decompressed pages (those
/// of the first entries): every page is still decompressed and checked. A
/// page compresses up to 255 times (an empty 64 KiB page takes some 280
/// bytes), so the pages of a file of 1 MiB may take 230 MiB held at once.
pub fn decode_file_keeping(bytes: &[u8], keep: usize) -> Result<DecodedFile, LtxError> {
    let header = Header::decode(bytes)?;
    let len = bytes.len() as u64;
    let region = index_region(len, bytes)?;
    let index_bytes = slice(bytes, region.start, region.end)?;
    let index = PageIndex::decode(index_bytes, region.start)?;
    if header.is_snapshot() {
        SnapshotPages::check_all(&header, index.entries.iter().map(|e| e.pgno))?;
    }
    let trailer = Trailer::decode(bytes)?;

    let mut crc = Crc64::new();
    crc.update(slice(bytes, 0, HEADER_SIZE as u64)?);
    let fit = keep
        .checked_div(header.page_size.bytes())
        .unwrap_or(0)
        .min(index.entries.len());
    let mut pages = Vec::with_capacity(fit);
    let mut expected_offset = HEADER_SIZE as u64;
    for entry in &index.entries {
        if entry.offset != expected_offset {
            return Err(LtxError::invalid(
                "page index",
                format!(
                    "page {} at offset {}, expected {expected_offset}",
                    entry.pgno.0, entry.offset
                ),
            ));
        }
        let frame = decode_frame(frame_bytes(bytes, entry)?, header.page_size)?;
        if frame.header.pgno != entry.pgno {
            return Err(LtxError::invalid(
                "frame",
                format!(
                    "frame holds page {} where the index says {}",
                    frame.header.pgno.0, entry.pgno.0
                ),
            ));
        }
        crc.update(slice(
            bytes,
            entry.offset,
            entry.offset.saturating_add(FRAME_HEADER_SIZE as u64),
        )?);
        if let Some(size) = frame.size_field {
            crc.update(&size);
        }
        crc.update(&frame.page);
        if pages.len() < fit {
            pages.push((entry.pgno, frame.page));
        }
        expected_offset = entry.offset.saturating_add(u64::from(entry.size));
    }
    let end_marker = slice(
        bytes,
        expected_offset,
        expected_offset.saturating_add(FRAME_HEADER_SIZE as u64),
    )?;
    if end_marker.iter().any(|b| *b != 0)
        || expected_offset.saturating_add(FRAME_HEADER_SIZE as u64) != region.start
    {
        return Err(LtxError::invalid(
            "page block",
            "no end marker before the page index",
        ));
    }
    crc.update(end_marker);
    let index_and_len = slice(bytes, region.start, len.saturating_sub(TRAILER_SIZE as u64))?;
    crc.update(index_and_len);
    let trailer_start = len.saturating_sub(TRAILER_SIZE as u64);
    crc.update(slice(
        bytes,
        trailer_start,
        trailer_start.saturating_add(8),
    )?);
    let computed = crc.finish();
    if computed != trailer.file_checksum {
        return Err(LtxError::Checksum {
            stored: trailer.file_checksum,
            computed,
        });
    }
    debug_assert_eq!(len.saturating_sub(region.end), INDEX_LOCATOR_SIZE as u64);
    Ok(DecodedFile {
        header,
        index,
        pages,
        trailer,
    })
}

/// The bytes of one frame as the index locates it.
pub(crate) fn frame_bytes<'a>(bytes: &'a [u8], entry: &IndexEntry) -> Result<&'a [u8], LtxError> {
    slice(
        bytes,
        entry.offset,
        entry.offset.saturating_add(u64::from(entry.size)),
    )
}

fn slice(bytes: &[u8], start: u64, end: u64) -> Result<&[u8], LtxError> {
    let (s, e) = (usize::try_from(start), usize::try_from(end));
    match (s, e) {
        (Ok(s), Ok(e)) if s <= e => bytes
            .get(s..e)
            .ok_or_else(|| LtxError::truncated("file", e, bytes.len())),
        _ => Err(LtxError::invalid("file", format!("range {start}..{end}"))),
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
    use crate::ltx::{LtxBuilder, PageSize, file_checksum_of};

    fn ps(n: u32) -> PageSize {
        PageSize::new(n).unwrap()
    }

    fn page(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i / 7) as u8 ^ seed.wrapping_mul(31) ^ (i % 13) as u8)
            .collect()
    }

    fn two_pages(legacy: bool) -> Vec<u8> {
        LtxBuilder::new(ps(4096), 5, 6, 10)
            .legacy_frames(legacy)
            .page(3, &page(4096, 1))
            .page(8, &page(4096, 2))
            .build()
    }

    /// Replaces the index (and its length) of `file`; the checksum is left
    /// stale, so only checks made before it can pass or fail.
    fn with_index(file: &[u8], index: &PageIndex) -> Vec<u8> {
        let region = index_region(file.len() as u64, file).unwrap();
        let mut out = file[..region.start as usize].to_vec();
        out.extend(index.encode());
        out.extend_from_slice(&file[file.len() - TRAILER_SIZE..]);
        out
    }

    #[test]
    fn builder_files_round_trip_in_both_encodings() {
        for legacy in [false, true] {
            for shift in 9..=16u32 {
                let size = 1u32 << shift;
                let pages: Vec<(u32, Vec<u8>)> = [1u32, 2, 5, 77]
                    .iter()
                    .map(|p| (*p, page(size as usize, *p as u8)))
                    .collect();
                let mut b = LtxBuilder::new(ps(size), 2, 3, 77)
                    .legacy_frames(legacy)
                    .timestamp_ms(123);
                for (p, data) in &pages {
                    b = b.page(*p, data);
                }
                let bytes = b.build();
                let f = decode_file(&bytes).unwrap();
                assert_eq!(f.header.page_size.get(), size);
                assert_eq!(f.header.timestamp_ms, 123);
                assert_eq!(f.header.commit, 77);
                let got: Vec<(u32, Vec<u8>)> = f.pages.into_iter().map(|(p, d)| (p.0, d)).collect();
                assert_eq!(got, pages, "legacy={legacy} size={size}");
                assert_eq!(f.index.entries.len(), 4);
                assert_eq!(f.index.entries[0].offset, HEADER_SIZE as u64);
                // The same pages as a snapshot: it must hold every page.
                let mut b = LtxBuilder::new(ps(size), 1, 3, 77).legacy_frames(legacy);
                for (p, data) in &pages {
                    b = b.page(*p, data);
                }
                let e = decode_file(&b.build()).unwrap_err().to_string();
                assert!(e.contains("snapshot page 5 where page 3 is due"), "{e}");
            }
        }
    }

    #[test]
    fn keeping_fewer_pages_still_checks_every_one() {
        let mut b = LtxBuilder::new(ps(4096), 2, 2, 9);
        for p in 1..=9u32 {
            b = b.page(p, &page(4096, p as u8));
        }
        let bytes = b.build();
        let all = decode_file(&bytes).unwrap();
        for (keep, n) in [
            (0, 0),
            (4095, 0),
            (4096, 1),
            (3 * 4096 + 7, 3),
            (usize::MAX, 9),
        ] {
            let f = decode_file_keeping(&bytes, keep).unwrap();
            assert_eq!(f.pages[..], all.pages[..n], "{keep}");
            assert_eq!(f.index, all.index);
        }
        // A damaged last page is found with none kept.
        let last = all.index.entries[8];
        let mut bad = bytes.clone();
        bad[(last.offset + u64::from(last.size)) as usize - 3] ^= 0x10;
        assert!(decode_file_keeping(&bad, 0).is_err());
    }

    #[test]
    fn a_file_without_pages_decodes() {
        let bytes = LtxBuilder::new(ps(4096), 4, 4, 3).build();
        assert_eq!(
            bytes.len(),
            HEADER_SIZE + FRAME_HEADER_SIZE + 1 + INDEX_LOCATOR_SIZE
        );
        let f = decode_file(&bytes).unwrap();
        assert!(f.pages.is_empty() && f.index.entries.is_empty());
    }

    #[test]
    fn checksum_covers_decompressed_pages_not_payloads() {
        // Recompute the checksum from the spec's definition.
        let bytes = two_pages(false);
        let f = decode_file(&bytes).unwrap();
        let mut covered = bytes[..HEADER_SIZE].to_vec();
        for (e, (_, data)) in f.index.entries.iter().zip(&f.pages) {
            let at = e.offset as usize;
            covered.extend_from_slice(&bytes[at..at + FRAME_HEADER_SIZE + 4]);
            covered.extend_from_slice(data);
        }
        let region = index_region(bytes.len() as u64, &bytes).unwrap();
        covered.extend_from_slice(&[0; FRAME_HEADER_SIZE]);
        covered.extend_from_slice(&bytes[region.start as usize..bytes.len() - 8]);
        assert_eq!(file_checksum_of(&covered), f.trailer.file_checksum);
    }

    #[test]
    fn rejects_a_stale_checksum() {
        for legacy in [false, true] {
            let mut bytes = two_pages(legacy);
            let last = bytes.len() - 1;
            bytes[last] ^= 0x10;
            assert!(matches!(
                decode_file(&bytes),
                Err(LtxError::Checksum { .. })
            ));
        }
    }

    #[test]
    fn rejects_a_gap_between_frames() {
        let bytes = two_pages(false);
        let f = decode_file(&bytes).unwrap();
        let [a, b] = [f.index.entries[0], f.index.entries[1]];
        let split = b.offset as usize;
        let mut gapped = bytes[..split].to_vec();
        gapped.extend_from_slice(&[0; 3]);
        gapped.extend_from_slice(&bytes[split..]);
        let index = PageIndex {
            entries: vec![
                a,
                IndexEntry {
                    offset: b.offset + 3,
                    ..b
                },
            ],
        };
        let e = decode_file(&with_index(&gapped, &index)).unwrap_err();
        assert!(e.to_string().contains("expected"), "{e}");
    }

    #[test]
    fn rejects_index_that_disagrees_with_frames() {
        let bytes = two_pages(false);
        let f = decode_file(&bytes).unwrap();
        let [a, b] = [f.index.entries[0], f.index.entries[1]];
        let cases = [
            // Names another page than the frame holds.
            vec![
                IndexEntry {
                    pgno: PageNo(4),
                    ..a
                },
                b,
            ],
            // Frames swapped: not sorted.
            vec![b, a],
            // A frame left out: the next one is not where expected.
            vec![b],
            // A frame one byte short / long.
            vec![
                IndexEntry {
                    size: a.size - 1,
                    ..a
                },
                b,
            ],
            vec![
                IndexEntry {
                    size: a.size + 1,
                    ..a
                },
                b,
            ],
            // The last frame left out: no end marker after the first.
            vec![a],
        ];
        for entries in cases {
            let index = PageIndex { entries };
            let r = decode_file(&with_index(&bytes, &index));
            assert!(
                matches!(r, Err(LtxError::Invalid { .. })),
                "{index:?}: {r:?}"
            );
        }
    }

    #[test]
    fn rejects_a_missing_end_marker() {
        let bytes = two_pages(false);
        let region = index_region(bytes.len() as u64, &bytes).unwrap();
        for at in region.start as usize - FRAME_HEADER_SIZE..region.start as usize {
            let mut bad = bytes.clone();
            bad[at] = 1;
            let e = decode_file(&bad).unwrap_err();
            assert!(e.to_string().contains("end marker"), "{e}");
        }
    }

    #[test]
    fn rejects_another_page_size() {
        for legacy in [false, true] {
            for size in [512u32, 2048, 8192, 65536] {
                let mut bytes = two_pages(legacy);
                bytes[8..12].copy_from_slice(&size.to_be_bytes());
                assert!(
                    matches!(decode_file(&bytes), Err(LtxError::Invalid { .. })),
                    "{size}"
                );
            }
        }
    }

    #[test]
    fn rejects_every_truncation() {
        for legacy in [false, true] {
            let bytes = two_pages(legacy);
            for n in 0..bytes.len() {
                assert!(decode_file(&bytes[..n]).is_err(), "{n}");
            }
            // And bytes appended after the trailer.
            let mut longer = bytes.clone();
            longer.extend_from_slice(&[0; 8]);
            assert!(decode_file(&longer).is_err());
        }
    }

    #[test]
    fn every_flipped_bit_is_caught_or_harmless() {
        for legacy in [false, true] {
            let bytes = two_pages(legacy);
            let good = decode_file(&bytes).unwrap();
            let in_payload = |at: usize| {
                good.index.entries.iter().any(|e| {
                    let start = e.offset as usize + FRAME_HEADER_SIZE + 4;
                    (start..(e.offset + u64::from(e.size)) as usize).contains(&at)
                })
            };
            for at in 0..bytes.len() {
                // Every bit of the structure; one bit (in turn) of each
                // compressed byte, to keep the test quick.
                let bits = if in_payload(at) {
                    at % 8..at % 8 + 1
                } else {
                    0..8
                };
                for bit in bits {
                    let mut bad = bytes.clone();
                    bad[at] ^= 1 << bit;
                    if let Ok(f) = decode_file(&bad) {
                        // Only a compressed payload byte can change without
                        // the checksum noticing, and then only if the page
                        // is unchanged.
                        assert!(in_payload(at), "byte {at} bit {bit} (legacy={legacy})");
                        assert_eq!(f.pages, good.pages, "byte {at} bit {bit}");
                    }
                }
            }
        }
    }
}
