//! Building the runs of frames that go out as one ranged read each: the
//! frames behind a demand read's page (read-ahead), and a prefetch's pages
//! sorted by file and offset with their neighbours merged.

use std::ops::Range;
use std::sync::Arc;

use crate::log;
use crate::ltx::{PageNo, Txid};

use super::super::flight::Claimed;
use super::super::{FileRef, FrameLoc, Snapshot, Stats};
use super::Fetcher;
use super::schedule::{Landed, PREFETCH_GROUP};
use super::window::ScanBuf;

/// A demand read's run never spans more bytes than this in one request:
/// large enough to amortise a 20 ms round trip over a few megabytes, small
/// enough to bound memory.
pub(super) const MAX_RANGE_BYTES: u64 = 4 * 1024 * 1024;
/// A prefetch merges two frames of one file into one request when at most
/// this many bytes lie between them: reading a gap costs less than a
/// second round trip.
const MERGE_GAP: u64 = 32 * 1024;

/// Frames of one file fetched in one ranged read, each with its flight.
pub(super) struct Run {
    pub(super) file: Arc<FileRef>,
    /// Dropped unlanded (a panic, an early return), a claim lands failed.
    pub(super) frames: Vec<(PageNo, FrameLoc, Claimed)>,
    /// Keep the fetched pages in the local store, constant up to this TXID
    /// (see `Local::keep_until`).
    pub(super) keep_until: Option<Txid>,
}

impl Run {
    pub(super) fn range(&self) -> Option<Range<u64>> {
        let first = self.frames.first()?;
        let last = self.frames.last()?;
        Some(first.1.offset..last.1.end())
    }

    /// `runs` in groups that start and land together: a new group starts
    /// where the current one holds `most` runs, or would hold more than
    /// `bytes` (a single larger run is a group of its own).
    pub(super) fn groups(runs: Vec<Run>, most: usize, bytes: u64) -> Vec<Vec<Run>> {
        let mut groups: Vec<Vec<Run>> = Vec::new();
        let mut held = 0u64;
        for run in runs {
            let len = Run::bytes(std::slice::from_ref(&run));
            match groups.last_mut() {
                Some(group) if group.len() < most && held.saturating_add(len) <= bytes => {
                    held = held.saturating_add(len);
                    group.push(run);
                }
                _ => {
                    held = len;
                    groups.push(vec![run]);
                }
            }
        }
        groups
    }

    /// Bytes the ranged reads of `runs` fetch together.
    pub(super) fn bytes(runs: &[Run]) -> u64 {
        runs.iter()
            .filter_map(Run::range)
            .map(|r| r.end.saturating_sub(r.start))
            .sum()
    }
}

impl Fetcher {
    /// The frame of `pgno` and the frames of the pages after it that lie
    /// right behind it in the same file (each starts where the one before
    /// may end) and that nobody fetches yet, within the window and the byte
    /// cap.
    pub(super) fn run_after(
        &self,
        snap: &Snapshot,
        pgno: PageNo,
        loc: &FrameLoc,
        flight: Claimed,
        window: u32,
    ) -> Run {
        let mut frames = vec![(pgno, loc.clone(), flight)];
        let mut end = loc.end();
        for next in pgno.0.saturating_add(1)..pgno.0.saturating_add(window.max(1)) {
            let Some(f) = snap.frame(PageNo(next)) else {
                break;
            };
            let last = frames.last().map_or(loc.offset, |(_, l, _)| l.offset);
            if !Arc::ptr_eq(&f.file, &loc.file)
                || f.offset <= last
                || f.offset > end
                || f.end() - loc.offset > MAX_RANGE_BYTES
            {
                break;
            }
            let key = f.key();
            if self.cache.get(&key).is_some() {
                break;
            }
            let Some(flight) = self.flights.claim_free(key) else {
                break;
            };
            end = f.end();
            frames.push((PageNo(next), f, flight));
        }
        Run {
            file: Arc::clone(&loc.file),
            frames,
            keep_until: self.local.keep_until(snap, loc),
        }
    }

    /// Fetches `pgnos` of `snap` in the background (those not cached and
    /// not in flight), merged into ranged reads, at most
    /// `PREFETCH_IN_FLIGHT` at a time. `landed` is called with every page
    /// that arrives. Returns how many frames were queued.
    pub fn prefetch(
        self: &Arc<Self>,
        snap: &Snapshot,
        pgnos: &[PageNo],
        landed: Option<Landed>,
    ) -> usize {
        self.prefetch_runs_of(snap, pgnos, landed, MAX_RANGE_BYTES, None)
    }

    /// [`Fetcher::prefetch`] with requests of at most `max_run` bytes.
    /// With `ahead` (a scan's read-ahead while the cache is full), the
    /// pages go to that scan buffer instead of the cache.
    pub fn prefetch_runs_of(
        self: &Arc<Self>,
        snap: &Snapshot,
        pgnos: &[PageNo],
        landed: Option<Landed>,
        max_run: u64,
        ahead: Option<&Arc<ScanBuf>>,
    ) -> usize {
        let mut claimed: Vec<(PageNo, FrameLoc, Claimed)> = Vec::new();
        for &pgno in pgnos {
            let Some(loc) = snap.frame(pgno) else {
                continue;
            };
            let key = loc.key();
            if loc.file.corrupt.get().is_some()
                || self.cache.get(&key).is_some()
                || ahead.is_some_and(|scan| scan.holds(&key))
            {
                continue;
            }
            // On local disk already: no fetch (see `Local::prefetched`).
            if self.local.prefetched(&self.cache, snap, pgno, &loc) {
                continue;
            }
            if let Some(f) = self.flights.claim_queued(key) {
                claimed.push((pgno, loc, f));
            }
        }
        let queued = claimed.len();
        log::debug!("prefetch: {queued} of {} pages queued", pgnos.len());
        if queued == 0 {
            return 0;
        }
        Stats::add(&self.stats.prefetched, queued as u64);
        let runs = self.merge_runs(snap, claimed, MERGE_GAP, max_run);
        let Some((runs, landed)) = super::budget::charge_prefetch(runs, landed) else {
            return 0;
        };
        // Runs go out in groups that start and land together: a group of
        // requests is one round trip, where runs started one by one as
        // slots free up would trickle out over many. A group holds its
        // bytes of the in-flight budget at once, so it is cut where it
        // would hold more than half of it (two groups in flight).
        for group in Run::groups(runs, PREFETCH_GROUP, self.in_flight.bytes() / 2) {
            let ahead = ahead.map(|scan| {
                let frames: usize = group.iter().map(|r| r.frames.len()).sum();
                let bytes = (frames as u64).saturating_mul(u64::from(snap.page_size.get()));
                (Arc::clone(scan), scan.lease(bytes))
            });
            self.spawn_prefetch(group, snap.page_size, landed.clone(), ahead);
        }
        queued
    }

    /// Claimed frames sorted by file and offset, neighbours merged into one
    /// ranged read each: frames of one file at most `gap` bytes apart, at
    /// most `max_run` bytes per read.
    pub(super) fn merge_runs(
        &self,
        snap: &Snapshot,
        mut claimed: Vec<(PageNo, FrameLoc, Claimed)>,
        gap: u64,
        max_run: u64,
    ) -> Vec<Run> {
        claimed.sort_by_key(|a| (a.1.file.id, a.1.offset));
        let mut runs: Vec<Run> = Vec::new();
        for frame in claimed {
            if let Some(run) = runs.last_mut()
                && let (Some(range), Some(last)) = (run.range(), run.frames.last())
            {
                let same = Arc::ptr_eq(&run.file, &frame.1.file);
                if same
                    && frame.1.offset > last.1.offset
                    && frame.1.offset <= range.end.saturating_add(gap)
                    && frame.1.end() - range.start <= max_run
                {
                    run.frames.push(frame);
                    continue;
                }
            }
            runs.push(Run {
                file: Arc::clone(&frame.1.file),
                keep_until: self.local.keep_until(snap, &frame.1),
                frames: vec![frame],
            });
        }
        runs
    }
}
