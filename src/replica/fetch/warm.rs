//! Warm-up fetches: a set of pages of a snapshot, for the background
//! warm-up of interior B-tree pages (`replica/warmup.rs`), at a lower
//! priority than everything a connection asks for.
//!
//! - **Wide.** Frames of one file at most [`WARM_GAP`] bytes apart go in one
//!   ranged read (the gap is read and thrown away): interior pages of one
//!   level sit a few hundred pages apart, and a round trip costs as much as
//!   a few hundred KiB of transfer.
//! - **Behind demand.** Its frames are claimed as queued, like a
//!   prefetch's, and started one small group at a time
//!   ([`WARM_IN_FLIGHT`] requests): a demand read that wants a frame still
//!   queued takes it over and fetches it at once. It takes no prefetch slot.
//! - **Behind a scan's stream.** While a scan streams on this replica,
//!   it waits (at most `storage_timeout`) before each group.
//! - **Local first.** A page in memory or in the local store costs no
//!   request: a process whose disk tier holds the interiors fetches nothing.

use crate::cache::Page;
use crate::log;
use crate::ltx::PageNo;

use super::super::Snapshot;
use super::Fetcher;
use super::land::Dest;
use super::runs::Run;

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
}

impl Fetcher {
    /// Brings `pgnos` of `snap` into memory and the local store. Blocks: call
    /// it on tokio's blocking pool.
    pub fn warm(&self, snap: &Snapshot, pgnos: &[PageNo]) -> Warmed {
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
        let runs = self.merge_runs(snap, claimed, WARM_GAP, WARM_RUN_MAX);
        // A group holds its bytes of the in-flight budget while it reads:
        // at most a quarter of it, so demand reads keep the rest.
        for mut group in Run::groups(runs, WARM_IN_FLIGHT, self.in_flight.bytes() / 4) {
            // Behind a scan's stream too: it reads the whole table (its
            // interior pages on the way), and each warm-up request would
            // compete with it for the server. Meanwhile the frames stay
            // queued: a reader or the stream takes them over.
            if self.wait_for_streams() {
                log::debug!("warm-up waited for a scan stream");
            }
            for run in &mut group {
                // A frame a demand read took over is its now.
                run.frames.retain(|(_, _, c)| c.start());
            }
            group.retain(|r| !r.frames.is_empty());
            out.requests += group.len() as u64;
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
}
