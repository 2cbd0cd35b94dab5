//! Decoding fetched frames: a ranged read of one file holds frames in
//! offset order; each is cut out, decoded and checked to hold the page the
//! index says. Hydration decodes a whole body ([`decode_frames`]); the page
//! reader cuts frames out of a body as it arrives ([`Cutter`]) and decodes
//! each into the page the cache keeps ([`decode_page`]).

use std::ops::Range;

use std::sync::Arc;

use crate::cache::Page;
use crate::error::{Error, Result};
use crate::ltx::{self, PageNo};

/// Zeros to start a page from: a page buffer is made by copying these
/// into a new shared allocation, then decoded into in place (no second
/// buffer). As large as the largest page.
static ZEROS: [u8; 65536] = [0; 65536];

/// Decodes the frames at `frames` (page and offset, in offset order) out of
/// `bytes`, which hold the file's `range`. A frame that runs past the end
/// of `bytes` (longer than the bound it was read with) is passed to
/// `beyond` with its offset and exact length, which reads it or fails.
/// `describe` names the file in errors.
pub fn decode_frames(
    bytes: &[u8],
    range: &Range<u64>,
    frames: impl IntoIterator<Item = (PageNo, u64)>,
    page_size: ltx::PageSize,
    describe: &dyn Fn() -> String,
    mut beyond: impl FnMut(u64, usize) -> Result<Vec<u8>>,
) -> Result<Vec<(PageNo, Vec<u8>)>> {
    let frames = frames.into_iter();
    let mut pages = Vec::with_capacity(frames.size_hint().0);
    for (pgno, offset) in frames {
        let from = offset
            .checked_sub(range.start)
            .and_then(|d| usize::try_from(d).ok())
            .unwrap_or(usize::MAX);
        let rest = bytes
            .get(from..)
            .ok_or_else(|| Error::Missing(format!("short read of {}", describe())))?;
        let len = ltx::frame_len(rest).map_err(|e| Error::corrupt(describe(), e))?;
        let exact;
        let raw = match rest.get(..len) {
            Some(raw) => raw,
            None => {
                exact = beyond(offset, len)?;
                exact.as_slice()
            }
        };
        let frame = ltx::decode_frame(raw, page_size).map_err(|e| Error::corrupt(describe(), e))?;
        if frame.header.pgno != pgno {
            return Err(Error::corrupt(
                describe(),
                ltx::LtxError::Invalid {
                    what: "frame",
                    detail: format!(
                        "offset {offset} holds page {}, not {}",
                        frame.header.pgno.0, pgno.0
                    ),
                },
            ));
        }
        pages.push((pgno, frame.page));
    }
    Ok(pages)
}

/// One frame (`raw`, exactly its bytes) decoded into a page as the cache
/// keeps it, checked to hold `pgno`.
pub fn decode_page(
    raw: &[u8],
    pgno: PageNo,
    page_size: ltx::PageSize,
    describe: &dyn Fn() -> String,
) -> Result<Page> {
    let zeros = ZEROS.get(..page_size.bytes()).unwrap_or_default();
    let mut page: Page = Arc::from(zeros);
    let got = match Arc::get_mut(&mut page) {
        Some(buf) => ltx::decode_frame_into(raw, page_size, buf).map(|h| h.pgno),
        None => Err(ltx::LtxError::invalid("frame", "page buffer shared")),
    }
    .map_err(|e| Error::corrupt(describe(), e))?;
    if got != pgno {
        return Err(wrong_page(describe, pgno, got));
    }
    Ok(page)
}

fn wrong_page(describe: &dyn Fn() -> String, want: PageNo, got: PageNo) -> Error {
    Error::corrupt(
        describe(),
        ltx::LtxError::Invalid {
            what: "frame",
            detail: format!("frame holds page {}, not {}", got.0, want.0),
        },
    )
}

/// Cuts the frames of one ranged read out of its body as the body arrives
/// (see [`crate::storage::Chunks`]): a frame is handed over as soon as its
/// last byte is in, and only the bytes not yet cut are kept (a chunk at
/// most, plus the start of a frame), never the whole body.
///
/// A frame's exact length is in its header; a frame that runs past the
/// end of the body (longer than the bound it was read with) is named by
/// [`Cutter::finish`] for an exact read.
pub struct Cutter {
    range: Range<u64>,
    /// Page and offset of every frame, in offset order.
    frames: Vec<(PageNo, u64)>,
    /// The next frame to hand over.
    next: usize,
    /// Bytes received and not yet cut, from file offset `at`.
    carry: Vec<u8>,
    at: u64,
}

/// Called with the index of each frame, its page number and its bytes.
pub type Each<'a> = dyn FnMut(usize, PageNo, &[u8]) -> Result<()> + 'a;

/// What [`Cutter::finish`] found at the end of the body.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Every frame was handed over.
    Done,
    /// The frame at this offset runs past the body by this length: read
    /// it exactly, then [`Cutter::exact`].
    Exact(u64, usize),
}

impl Cutter {
    pub fn new(range: Range<u64>, frames: Vec<(PageNo, u64)>) -> Cutter {
        Cutter {
            at: range.start,
            range,
            frames,
            next: 0,
            carry: Vec::new(),
        }
    }

    /// The bytes of the body kept now (for tests).
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.carry.capacity()
    }

    /// The next bytes of the body: hands over every frame now whole.
    pub fn push(
        &mut self,
        chunk: &[u8],
        describe: &dyn Fn() -> String,
        each: &mut Each<'_>,
    ) -> Result<()> {
        if self.carry.is_empty() && self.next < self.frames.len() {
            // Nothing carried over: cut straight out of the chunk, and
            // carry only its uncut tail.
            let at = self.at;
            let used = self.cut(chunk, at, false, describe, each)?.0;
            self.at = at.saturating_add(used as u64);
            self.carry
                .extend_from_slice(chunk.get(used..).unwrap_or_default());
            return Ok(());
        }
        self.carry.extend_from_slice(chunk);
        let carry = std::mem::take(&mut self.carry);
        let result = self.cut(&carry, self.at, false, describe, each);
        self.carry = carry;
        let used = result?.0;
        self.carry.drain(..used);
        self.at = self.at.saturating_add(used as u64);
        if self.carry.capacity() > self.carry.len().saturating_mul(4).max(1 << 16) {
            self.carry.shrink_to_fit();
        }
        Ok(())
    }

    /// The body ended: hands over what is left.
    pub fn finish(&mut self, describe: &dyn Fn() -> String, each: &mut Each<'_>) -> Result<Ended> {
        let carry = std::mem::take(&mut self.carry);
        let (used, ended) = self.cut(&carry, self.at, true, describe, each)?;
        self.at = self.at.saturating_add(used as u64);
        self.carry = carry.get(used..).unwrap_or_default().to_vec();
        Ok(ended.unwrap_or(Ended::Done))
    }

    /// The exact bytes of the frame [`Cutter::finish`] named.
    pub fn exact(&mut self, raw: &[u8], each: &mut Each<'_>) -> Result<()> {
        let Some(&(pgno, _)) = self.frames.get(self.next) else {
            return Ok(());
        };
        each(self.next, pgno, raw)?;
        self.next += 1;
        // What follows it was not read with it.
        self.carry.clear();
        self.at = self.range.end;
        Ok(())
    }

    /// Hands over the whole frames of `bytes` (the file's bytes from
    /// `at`); returns how many bytes of it are done with, and at the end
    /// of the body (`ended`) what is left.
    fn cut(
        &mut self,
        bytes: &[u8],
        at: u64,
        ended: bool,
        describe: &dyn Fn() -> String,
        each: &mut Each<'_>,
    ) -> Result<(usize, Option<Ended>)> {
        let end = at.saturating_add(bytes.len() as u64);
        while let Some(&(pgno, offset)) = self.frames.get(self.next) {
            let from = offset
                .checked_sub(at)
                .and_then(|d| usize::try_from(d).ok())
                .unwrap_or(usize::MAX);
            let rest = bytes.get(from..).unwrap_or_default();
            let whole: std::result::Result<&[u8], Option<usize>> = match ltx::frame_len(rest) {
                Ok(len) => rest.get(..len).ok_or(Some(len)),
                // Its header (or an LZ4 block of it) is not all in yet.
                Err(_) if !ended || rest.is_empty() => Err(None),
                Err(e) => return Err(Error::corrupt(describe(), e)),
            };
            match (whole, ended) {
                (Ok(raw), _) => {
                    each(self.next, pgno, raw)?;
                    self.next += 1;
                }
                (Err(_), false) => return Ok((from.min(bytes.len()), None)),
                (Err(Some(len)), true) if !rest.is_empty() && end >= self.range.end => {
                    return Ok((from, Some(Ended::Exact(offset, len))));
                }
                (Err(_), true) => {
                    return Err(Error::Missing(format!("short read of {}", describe())));
                }
            }
        }
        // Every frame is out: nothing of the body is needed any more.
        Ok((bytes.len(), Some(Ended::Done)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{HEADER_SIZE, LtxBuilder, PageSize};

    fn page_of(p: u32, len: usize) -> Vec<u8> {
        // Half text that compresses, half noise that does not: frames of
        // many lengths.
        let mut x = u64::from(p).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|i| {
                if i < len / 2 {
                    b"page "[i % 5]
                } else {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                }
            })
            .collect()
    }

    #[test]
    fn a_body_in_chunks_of_any_size_yields_every_frame_and_is_never_kept_whole() {
        let ps = PageSize::new(4096).unwrap();
        let describe = || "test".to_string();
        for legacy in [false, true] {
            let mut b = LtxBuilder::new(ps, 1, 1, 200).legacy_frames(legacy);
            for p in 1..=200 {
                b = b.page(p, &page_of(p, 4096));
            }
            let file = b.build();
            let mut frames = Vec::new();
            let mut at = HEADER_SIZE;
            for p in 1..=200 {
                frames.push((PageNo(p), at as u64));
                at += ltx::frame_len(&file[at..]).unwrap();
            }
            // Pages 3..=197 but 9 and 10 (a gap read through), as one read
            // that ends at the last frame's bound.
            let want: Vec<(PageNo, u64)> = frames[2..197]
                .iter()
                .filter(|(p, _)| !matches!(p.0, 9 | 10))
                .copied()
                .collect();
            let last = want.last().unwrap().1;
            let end = (last + ltx::max_frame_len(ps)).min(file.len() as u64);
            let range = want[0].1..end;
            let body = &file[range.start as usize..range.end as usize];
            for chunk in [1, 7, 100, 4096, 10_000, 1 << 20] {
                let mut cutter = Cutter::new(range.clone(), want.clone());
                let mut got = Vec::new();
                let mut each = |i: usize, pgno: PageNo, raw: &[u8]| -> Result<()> {
                    got.push((i, pgno, decode_page(raw, pgno, ps, &describe)?));
                    Ok(())
                };
                let mut most = 0;
                for part in body.chunks(chunk) {
                    cutter.push(part, &describe, &mut each).unwrap();
                    most = most.max(cutter.kept());
                }
                assert_eq!(cutter.finish(&describe, &mut each).unwrap(), Ended::Done);
                assert_eq!(got.len(), want.len(), "chunks of {chunk}");
                for (n, (i, pgno, page)) in got.iter().enumerate() {
                    assert_eq!((*i, *pgno), (n, want[n].0));
                    assert!(page[..] == page_of(pgno.0, 4096)[..], "page {}", pgno.0);
                }
                // Between chunks it keeps at most the start of one frame
                // (and spare room), never the body.
                let bound = (4 * ltx::max_frame_len(ps) as usize).max(1 << 16);
                assert!(most <= bound, "kept {most} bytes with chunks of {chunk}");
                assert!(
                    body.len() > 2 * bound,
                    "the body is larger than what is kept"
                );
            }
        }
    }

    #[test]
    fn a_short_body_is_a_short_read_and_a_corrupt_frame_is_corruption() {
        let ps = PageSize::new(4096).unwrap();
        let describe = || "test".to_string();
        let mut b = LtxBuilder::new(ps, 1, 1, 3);
        for p in 1..=3 {
            b = b.page(p, &page_of(p, 4096));
        }
        let file = b.build();
        let second = HEADER_SIZE + ltx::frame_len(&file[HEADER_SIZE..]).unwrap();
        let frames = vec![(PageNo(1), HEADER_SIZE as u64), (PageNo(2), second as u64)];
        let range = HEADER_SIZE as u64..(second as u64 + 100);
        let mut each = |_: usize, _: PageNo, _: &[u8]| -> Result<()> { Ok(()) };
        let mut cutter = Cutter::new(range.clone(), frames.clone());
        cutter
            .push(&file[HEADER_SIZE..second + 100], &describe, &mut each)
            .unwrap();
        // The second frame is longer than the 100 bytes read of it.
        let len = ltx::frame_len(&file[second..]).unwrap();
        assert_eq!(
            cutter.finish(&describe, &mut each).unwrap(),
            Ended::Exact(second as u64, len)
        );
        let mut cutter = Cutter::new(range.clone(), frames.clone());
        cutter
            .push(&file[HEADER_SIZE..second - 10], &describe, &mut each)
            .unwrap();
        let e = cutter.finish(&describe, &mut each).unwrap_err();
        assert!(
            matches!(e, Error::Corrupt { .. } | Error::Missing(_)),
            "{e:?}"
        );
        // Page 2 where page 1 should be: corruption, not a page.
        let mut cutter = Cutter::new(range, vec![(PageNo(2), HEADER_SIZE as u64)]);
        let mut decode = |_: usize, pgno: PageNo, raw: &[u8]| -> Result<()> {
            decode_page(raw, pgno, ps, &describe).map(drop)
        };
        let e = cutter
            .push(&file[HEADER_SIZE..second + 100], &describe, &mut decode)
            .unwrap_err();
        assert!(e.to_string().contains("not 2"), "{e}");
    }
}
