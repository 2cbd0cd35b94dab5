//! Planning the warm-up's spans: the frames of one wave in the fewest
//! ranged reads whose bytes, the gaps between frames included, stay within
//! a bound.
//!
//! Frames are sorted by file and offset; a read covers a run of
//! neighbours, and joining two neighbouring runs costs the gap between
//! them (the bytes of a read are its frames plus the gaps it spans). Every
//! join saves one request, so the fewest requests for at most `bound`
//! bytes join the smallest gaps first, until the next would pass the
//! bound: any other choice of as many joins spans gaps at least as large.
//! No gap longer than [`SPAN_GAP_MAX`] is joined, whatever the bound: two
//! roots (or two probes) of a wave may lie most of the file apart, and
//! reading that to save one request is never worth it.

use std::sync::Arc;

use crate::ltx::PageNo;

use super::super::flight::Claimed;
use super::super::{FrameLoc, Snapshot};
use super::Fetcher;
use super::runs::Run;
use super::warm::WARM_GAP;

/// A gap longer than this is never read to save a request: 4 MiB take
/// about 40 ms to stream on one in-region connection (~100 MB/s), two
/// round trips, and as much transfer as a thousand 4 KiB pages. The interior pages of one level of a table lie up to a few MB
/// apart (1.3 MB for 1,000,000 rows of ~80 bytes), and are joined.
pub(super) const SPAN_GAP_MAX: u64 = 4 * 1024 * 1024;

/// Which neighbours of `frames` (file, offset, end of each, sorted by file
/// then offset) go in one read: `joined[i]` says frame `i + 1` is read with
/// frame `i`. Overlapping and touching neighbours are always joined (it
/// costs nothing); then the smallest gaps up to [`SPAN_GAP_MAX`], while
/// the reads' bytes stay within `bound`, or within what joining every gap
/// up to [`WARM_GAP`] reads when that is more (a bound never costs more
/// requests than the fixed merging).
pub(super) fn join_gaps(frames: &[(u64, u64, u64)], bound: u64) -> Vec<bool> {
    let n = frames.len();
    let mut joined = vec![false; n.saturating_sub(1)];
    // (cost, index) of each gap that may be joined.
    let mut gaps: Vec<(u64, usize)> = Vec::new();
    for (i, pair) in frames.windows(2).enumerate() {
        let (a, b) = match pair {
            [a, b] => (a, b),
            _ => continue,
        };
        if a.0 != b.0 || b.1 <= a.1 {
            continue;
        }
        let cost = b.1.saturating_sub(a.2);
        if cost == 0 {
            if let Some(j) = joined.get_mut(i) {
                *j = true;
            }
        } else if cost <= SPAN_GAP_MAX {
            gaps.push((cost, i));
        }
    }
    let mut bytes = read_bytes(frames, &joined);
    let fixed: u64 = gaps
        .iter()
        .filter(|(c, _)| *c <= WARM_GAP)
        .map(|(c, _)| *c)
        .sum();
    let bound = bound.max(bytes.saturating_add(fixed));
    gaps.sort_unstable();
    for (cost, i) in gaps {
        let Some(more) = bytes.checked_add(cost).filter(|b| *b <= bound) else {
            break;
        };
        bytes = more;
        if let Some(j) = joined.get_mut(i) {
            *j = true;
        }
    }
    joined
}

/// The bytes the reads `joined` makes of `frames` fetch together.
pub(super) fn read_bytes(frames: &[(u64, u64, u64)], joined: &[bool]) -> u64 {
    let mut total = 0u64;
    let mut start: Option<u64> = None;
    for (i, f) in frames.iter().enumerate() {
        let s = *start.get_or_insert(f.1);
        let next_joined = joined.get(i).copied().unwrap_or(false);
        if !next_joined {
            total = total.saturating_add(f.2.saturating_sub(s));
            start = None;
        }
    }
    total
}

impl Fetcher {
    /// Claimed frames in reads of one file each, joined by [`join_gaps`]
    /// within `bound` bytes in all.
    pub(super) fn plan_spans(
        &self,
        snap: &Snapshot,
        mut claimed: Vec<(PageNo, FrameLoc, Claimed)>,
        bound: u64,
    ) -> Vec<Run> {
        claimed.sort_by_key(|a| (a.1.file.id, a.1.offset));
        // Files are told apart by their place in the sorted order.
        let mut file = 0u64;
        let mut keys = Vec::with_capacity(claimed.len());
        for (i, (_, loc, _)) in claimed.iter().enumerate() {
            if i > 0
                && claimed
                    .get(i - 1)
                    .is_some_and(|prev| !Arc::ptr_eq(&prev.1.file, &loc.file))
            {
                file += 1;
            }
            keys.push((file, loc.offset, loc.end()));
        }
        let joined = join_gaps(&keys, bound);
        let mut runs: Vec<Run> = Vec::new();
        for (i, frame) in claimed.into_iter().enumerate() {
            let with_previous = i > 0 && joined.get(i - 1).copied().unwrap_or(false);
            match runs.last_mut() {
                Some(run) if with_previous => run.frames.push(frame),
                _ => runs.push(Run {
                    file: Arc::clone(&frame.1.file),
                    keep_until: self.local.keep_until(snap, &frame.1),
                    frames: vec![frame],
                }),
            }
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 1024;

    /// Frames of 4 KiB at these offsets (KiB) of file 0.
    fn at(offsets: &[u64]) -> Vec<(u64, u64, u64)> {
        offsets.iter().map(|o| (0, o * K, o * K + 4 * K)).collect()
    }

    fn reads(joined: &[bool]) -> usize {
        1 + joined.iter().filter(|j| !**j).count()
    }

    #[test]
    fn the_smallest_gaps_are_joined_first_within_the_bound() {
        // Gaps of 1 MiB - 4 KiB, 4 MiB - 4 KiB, 2 MiB - 4 KiB.
        let f = at(&[0, 1024, 5 * 1024, 7 * 1024]);
        // No bound: only what the fixed merging joins (nothing here).
        let j = join_gaps(&f, 0);
        assert_eq!(reads(&j), 4);
        assert_eq!(read_bytes(&f, &j), 16 * K);
        // Room for the 1 MiB gap, not the 2 MiB one.
        let j = join_gaps(&f, 2 * 1024 * K);
        assert_eq!(j, vec![true, false, false]);
        assert!(read_bytes(&f, &j) <= 2 * 1024 * K);
        // Room for both smaller gaps: the 4 MiB one stays a second read.
        let j = join_gaps(&f, 3 * 1024 * K + 16 * K);
        assert_eq!(j, vec![true, false, true]);
        assert_eq!(reads(&j), 2);
        // Room for all: one read of the whole stretch.
        let j = join_gaps(&f, 64 * 1024 * K);
        assert_eq!(reads(&j), 1);
        assert_eq!(read_bytes(&f, &j), 7 * 1024 * K + 4 * K);
    }

    #[test]
    fn a_bound_never_costs_more_requests_than_the_fixed_merging() {
        // Gaps of 100 KiB and 300 KiB: the fixed merging joins both.
        let f = at(&[0, 104, 408]);
        for bound in [0, 1, 8 * K] {
            assert_eq!(reads(&join_gaps(&f, bound)), 1, "bound {bound}");
        }
    }

    #[test]
    fn frames_of_other_files_and_overlapping_frames() {
        // Overlapping bounds are joined for free; another file never.
        let f = vec![(0, 0, 5 * K), (0, 4 * K, 9 * K), (1, 9 * K + 1, 13 * K)];
        let j = join_gaps(&f, u64::MAX);
        assert_eq!(j, vec![true, false]);
        assert_eq!(read_bytes(&f, &j), 9 * K + (13 * K - 9 * K - 1));
        // A gap longer than SPAN_GAP_MAX stays, whatever the bound.
        let far = at(&[0, 4 * 1024 + 8, 4 * 1024 + 12]);
        assert_eq!(join_gaps(&far, u64::MAX), vec![false, true]);
        assert!(join_gaps(&[], 5).is_empty());
        assert!(join_gaps(&at(&[3]), 5).is_empty());
    }
}
