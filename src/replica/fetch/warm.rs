//! Warm-up fetches: a set of pages of a snapshot, for the background
//! warm-up of interior B-tree pages (`replica/warmup.rs`), at a lower
//! priority than everything a connection asks for.
//!
//! - **Wide.** Over storage that streams bodies (S3, GCS, Azure, OSS), a
//!   wave's frames go in the fewest ranged reads whose bytes, the gaps
//!   between frames included, stay within what the warm-up has left of
//!   `warmup_read_max` (the smallest gaps joined first, `spans.rs`); each is read as it streams,
//!   its wanted frames kept and the gaps thrown away as they arrive
//!   (`sparse.rs`). Elsewhere, or with `warmup_read_max=0`, frames of one
//!   file at most [`WARM_GAP`] bytes apart go in one read of at most
//!   [`WARM_RUN_MAX`] bytes: interior pages of one level sit a few hundred
//!   pages apart, and a round trip costs as much as a few hundred KiB of
//!   transfer.
//! - **Behind demand.** Its frames are claimed as queued, like a
//!   prefetch's, and started one small group at a time
//!   ([`WARM_IN_FLIGHT`] requests): a demand read that wants a frame still
//!   queued takes it over and fetches it at once. A long streamed read
//!   starts each frame's claim only when its bytes are near, so a demand
//!   read never waits behind the gaps. It takes no prefetch slot.
//! - **Behind a scan's stream.** While a scan streams on this replica,
//!   it waits (at most `storage_timeout`) before each group.
//! - **Local first.** A page in memory or in the local store costs no
//!   request: a process whose disk tier holds the interiors fetches nothing.
//! - **Cancelled** when the replica goes away (`alive`): between groups, and
//!   between the chunks of a streamed read.

use crate::cache::Page;
use crate::log;
use crate::ltx::PageNo;

use super::super::flight::Claimed;
use super::super::{FrameLoc, Snapshot};
use super::Fetcher;
use super::land::Dest;
use super::runs::Run;
use super::sparse::Sparse;

/// Frames of one file at most this many bytes apart go in one ranged read
/// (hydration's gap, for its reason: a request costs a round trip, and
/// 512 KiB cost about as much on a fast link). Interior pages of an index
/// sit a few hundred KiB apart in a snapshot and merge; a table's, with
/// longer rows between them, mostly do not. (At 1,000,000 rows, 256 KiB:
/// 94 requests for 88 interior pages.)
pub const WARM_GAP: u64 = 512 * 1024;
/// Bytes of one warm-up read at most: with [`WARM_IN_FLIGHT`] of them,
/// 16 MiB of buffers at worst.
const WARM_RUN_MAX: u64 = 2 * 1024 * 1024;
/// Warm-up requests in flight at once: few, so that the server and the
/// connection pool stay free for demand reads and prefetch.
pub const WARM_IN_FLIGHT: usize = 8;

/// What one warm-up fetch got.
#[derive(Debug, Default)]
pub struct Warmed {
    /// The pages asked for that are now at hand (from memory, the local
    /// store or storage); a page another reader was fetching is included
    /// when it landed before the warm-up finished.
    pub pages: Vec<(PageNo, Page)>,
    /// Ranged reads sent.
    pub requests: u64,
    /// Pages that came from storage.
    pub fetched: u64,
    /// Ranged reads that failed (logged; their pages are not at hand).
    pub failed: u64,
    /// Bytes read from storage, gaps between frames included (a fixed
    /// merge's reads count the bytes they asked for).
    pub read_bytes: u64,
}

impl Fetcher {
    /// Brings `pgnos` of `snap` into memory and the local store, reading at
    /// most `read_max` bytes (gaps included) where storage streams bodies
    /// (0: the fixed merging). Stops early once `alive` says no. Blocks:
    /// call it on tokio's blocking pool.
    pub fn warm(
        &self,
        snap: &Snapshot,
        pgnos: &[PageNo],
        read_max: u64,
        alive: &(dyn Fn() -> bool + Sync),
    ) -> Warmed {
        let mut out = Warmed::default();
        let mut claimed = Vec::new();
        for &pgno in pgnos {
            let Some(loc) = snap.frame(pgno) else {
                continue;
            };
            if loc.file.corrupt.get().is_some() {
                continue;
            }
            let key = loc.key();
            if let Some(page) = self.cache.get(&key) {
                out.pages.push((pgno, page));
            } else if let Some(page) = self.local.read(&self.cache, snap, pgno, &loc) {
                out.pages.push((pgno, page));
            } else if let Some(c) = self.flights.claim_queued(key) {
                claimed.push((pgno, loc, c));
            }
        }
        if read_max > 0 && self.streams() {
            let spans = self.plan_spans(snap, claimed, read_max);
            self.warm_sparse(spans, snap.page_size, alive, &mut out);
        } else {
            self.warm_merged(snap, claimed, alive, &mut out);
        }
        // Frames someone else was fetching (or a demand read took over):
        // at hand if they landed meanwhile, else left to that reader.
        let have: std::collections::HashSet<PageNo> = out.pages.iter().map(|(p, _)| *p).collect();
        for &pgno in pgnos {
            if !have.contains(&pgno)
                && let Some(page) = self.cached(snap, pgno)
            {
                out.pages.push((pgno, page));
            }
        }
        out
    }

    /// Before each group of warm-up reads: behind a scan's stream (at most
    /// `storage_timeout`; it reads the whole table, its interior pages on
    /// the way, and each warm-up request would compete with it for the
    /// server; meanwhile the frames stay queued, for a reader or the
    /// stream to take over). Whether the replica is still there.
    fn group_may_start(&self, alive: &(dyn Fn() -> bool + Sync)) -> bool {
        if self.wait_for_streams() {
            log::debug!("warm-up waited for a scan stream");
        }
        alive()
    }

    /// The fixed merging: frames up to [`WARM_GAP`] apart in reads of at
    /// most [`WARM_RUN_MAX`] bytes.
    fn warm_merged(
        &self,
        snap: &Snapshot,
        claimed: Vec<(PageNo, FrameLoc, Claimed)>,
        alive: &(dyn Fn() -> bool + Sync),
        out: &mut Warmed,
    ) {
        let runs = self.merge_runs(snap, claimed, WARM_GAP, WARM_RUN_MAX);
        // A group holds its bytes of the in-flight budget while it reads:
        // at most a quarter of it, so demand reads keep the rest.
        for mut group in Run::groups(runs, WARM_IN_FLIGHT, self.in_flight.bytes() / 4) {
            if !self.group_may_start(alive) {
                // Dropped, the claims land failed.
                return;
            }
            for run in &mut group {
                // A frame a demand read took over is its now.
                run.frames.retain(|(_, _, c)| c.start());
            }
            group.retain(|r| !r.frames.is_empty());
            out.requests += group.len() as u64;
            out.read_bytes += Run::bytes(&group);
            for (run, result) in
                group
                    .iter()
                    .zip(self.fetch_runs(&group, snap.page_size, true, Dest::Cache, None))
            {
                match result {
                    Ok(pages) => {
                        out.fetched += pages.len() as u64;
                        out.pages.extend(pages);
                    }
                    Err(e) => {
                        out.failed += 1;
                        log::debug!("warm-up read of {} failed: {e}", run.file.id);
                    }
                }
            }
        }
    }

    /// The spans of a wave, each one streamed read, [`WARM_IN_FLIGHT`] at
    /// a time; their pages go to the cache and the local store.
    fn warm_sparse(
        &self,
        spans: Vec<Run>,
        page_size: crate::ltx::PageSize,
        alive: &(dyn Fn() -> bool + Sync),
        out: &mut Warmed,
    ) {
        let mut spans = spans.into_iter().peekable();
        while spans.peek().is_some() {
            let group: Vec<Run> = spans.by_ref().take(WARM_IN_FLIGHT).collect();
            if !self.group_may_start(alive) {
                // Dropped, the claims land failed.
                return;
            }
            let reads = group.iter().map(|run| async move {
                let mut got = Sparse::default();
                let result = self.read_sparse(run, page_size, alive, &mut got).await;
                if result.is_err() {
                    // The frames not landed yet fail (landed ones stay).
                    for (_, _, c) in &run.frames {
                        c.land(None);
                    }
                }
                (got, result)
            });
            let all = futures_util::future::join_all(reads);
            let results = tokio::runtime::Handle::current().block_on(all);
            for (run, (got, result)) in group.iter().zip(results) {
                out.requests += got.requests;
                out.fetched += got.pages.len() as u64;
                out.read_bytes += got.bytes;
                if let Err(e) = result {
                    out.failed += 1;
                    log::debug!("warm-up read of {} failed: {e}", run.file.id);
                }
                // Kept after every waiter has its page (a lock other
                // processes share, and disk I/O).
                if let (Some(until), false) = (run.keep_until, got.pages.is_empty()) {
                    self.local.keep(&run.file, until, &got.pages);
                }
                out.pages.extend(got.pages);
            }
        }
    }
}
