//! The page reader: a page of a snapshot from the cache, the local store,
//! or storage, for every connection of one replica.
//!
//! - **Coalesced.** Frames adjacent in one LTX file go in one ranged read:
//!   a demand read takes the frames behind the missing one (read-ahead for
//!   scans, see [`ReadAhead`]); a prefetch sorts what it is asked for by
//!   file and offset and merges neighbours (`runs.rs`).
//! - **Single-flight.** A frame being fetched is fetched once, however many
//!   connections want it (see [`super::flight`]).
//! - **Demand first.** A demand read never waits for a prefetch slot: it
//!   runs on the caller's thread, and takes over a frame that a prefetch
//!   queued but has not started.
//! - **Bounded.** At most [`PREFETCH_IN_FLIGHT`] prefetch requests run at
//!   once; a group of them is fetched and decoded on tokio's blocking pool,
//!   never on a worker thread that the poller needs (`schedule.rs`).
//!
//! `land.rs` is the one place where a miss goes to storage (a run's ranged
//! read, and the exact re-read of a frame longer than its bound); its
//! frames are decoded by the loop hydration shares (`decode.rs`).
//!
//! Files: `window.rs` (read-ahead policy), `runs.rs` (building runs),
//! `schedule.rs` (prefetch slots and groups), `land.rs` (fetch, decode,
//! land), `decode.rs` (the decode loop), `warm.rs` (the warm-up's
//! fetches), `spans.rs` (its reads planned within a byte bound),
//! `sparse.rs` (one streamed read of far-apart frames).

mod budget;
mod decode;
mod inflight;
mod land;
mod runs;
mod schedule;
mod spans;
mod sparse;
mod stream;
mod warm;
mod window;

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Page, PageCache};
use crate::error::{Error, Result};
use crate::ltx::{self, PageNo};
use crate::storage::{Storage, StorageError, StorageErrorKind};
use crate::{log, pause};

use super::flight::{Claim, Flights, Waited};
use super::local::Local;
use super::{Snapshot, Stats};

pub use budget::{Budget, Scope as BudgetScope};
pub(super) use decode::decode_frames;
pub use inflight::{Held, InFlight};
pub use schedule::{Landed, PREFETCH_IN_FLIGHT};
pub use stream::STREAM_LEAD_BYTES;
pub use window::{MAX_WINDOW, ReadAhead, SCAN_AHEAD_WINDOWS, ScanBuf};

use land::Dest;

/// A reader waits for another's fetch of its frame at most this many
/// storage calls' budgets (`storage_timeout` each): the run's ranged read
/// and one exact re-read of a frame longer than its bound. Past that it
/// fails (a transient storage error: SQLite sees an I/O error on the read)
/// rather than hang SQLite on a fetch that is stuck.
const FLIGHT_WAIT_CALLS: u32 = 2;

/// Reads pages for every connection of one replica.
pub struct Fetcher {
    storage: Arc<dyn Storage>,
    cache: Arc<PageCache>,
    stats: Arc<Stats>,
    flights: Flights,
    slots: Arc<tokio::sync::Semaphore>,
    /// The host-wide local store: asked before storage, filled after it.
    local: Arc<Local>,
    /// Bytes of reads in flight (the process's budget).
    in_flight: Arc<InFlight>,
    /// How long a read waits for its bytes of the in-flight budget.
    in_flight_wait: Duration,
    /// One storage call's budget: a scan stream waits this long for bytes
    /// and for its scan to move.
    storage_timeout: Duration,
    /// Bytes of pages a scan stream keeps ahead of its scan.
    stream_lead_bytes: u64,
    /// Scan streams running now (the warm-up waits for them).
    streaming: Arc<stream::Streaming>,
}

impl Fetcher {
    pub fn new(
        storage: Arc<dyn Storage>,
        cache: Arc<PageCache>,
        stats: Arc<Stats>,
        local: Arc<Local>,
        storage_timeout: Duration,
    ) -> Fetcher {
        Fetcher {
            storage,
            cache,
            stats,
            local,
            flights: Flights::new(storage_timeout.saturating_mul(FLIGHT_WAIT_CALLS)),
            slots: Arc::new(tokio::sync::Semaphore::new(PREFETCH_IN_FLIGHT)),
            in_flight: InFlight::process(),
            in_flight_wait: storage_timeout.saturating_mul(FLIGHT_WAIT_CALLS),
            storage_timeout,
            stream_lead_bytes: STREAM_LEAD_BYTES,
            streaming: Arc::default(),
        }
    }

    /// This fetcher with its own in-flight budget (tests).
    #[cfg(test)]
    pub(crate) fn with_in_flight(mut self, in_flight: Arc<InFlight>) -> Fetcher {
        self.in_flight = in_flight;
        self
    }

    /// This fetcher with scan streams that keep `bytes` ahead (tests).
    #[cfg(test)]
    pub(crate) fn with_stream_lead(mut self, bytes: u64) -> Fetcher {
        self.stream_lead_bytes = bytes;
        self
    }

    /// Holds `bytes` of the read budget, waiting (bounded) for them: every
    /// ranged read of this replica's pages (demand, prefetch, hydration)
    /// holds its length until its bytes are decoded.
    pub async fn hold(&self, bytes: u64) -> Result<Held> {
        self.in_flight
            .hold(bytes, self.in_flight_wait, self.storage.describe())
            .await
    }

    /// Whether prefetch is worth it: storage has latency to hide.
    pub fn prefetches(&self) -> bool {
        !self.storage.is_local()
    }

    /// Pages a prefetch may keep in flight ahead of a scan: a quarter of
    /// the cache, so that they are still there when the scan reaches them.
    pub fn scan_ahead_limit(&self, page_size: ltx::PageSize) -> u32 {
        u32::try_from(self.cache.budget() / 4 / u64::from(page_size.get())).unwrap_or(u32::MAX)
    }

    /// Whether the cache, with `more` bytes added, is (nearly) full: at
    /// 90 % of its budget.
    fn cache_full_with(&self, more: u64) -> bool {
        self.cache.weight().saturating_add(more) >= self.cache.budget() / 10 * 9
    }

    /// Whether the cache is (nearly) full: a scan's demand reads then keep
    /// what they read ahead to the connection.
    fn cache_full(&self) -> bool {
        self.cache_full_with(0)
    }

    /// Whether the scan-ahead keeps its pages out of the cache, in the
    /// connection's scan buffer: the cache is full, or would be with the
    /// scan-ahead's lead (a quarter of it) in it, and pages landed there
    /// ahead of the scan would be evicted before the scan reads them.
    pub fn scan_keeps_ahead(&self) -> bool {
        self.cache_full_with(self.cache.budget() / 4)
    }

    /// Bytes of the in-flight budget the scan-ahead of one connection may
    /// lease while it keeps its pages (half: demand reads keep the rest).
    pub fn scan_lease_limit(&self) -> u64 {
        self.in_flight.bytes() / 2
    }

    /// A page of `snap` if it is in memory; never fetches.
    pub fn cached(&self, snap: &Snapshot, pgno: PageNo) -> Option<Page> {
        let loc = snap.frame(pgno)?;
        if loc.file.corrupt.get().is_some() {
            return None;
        }
        self.cache.get(&loc.key())
    }

    /// One page of a snapshot, for a reader that waits for it, and up to
    /// `window - 1` following frames of the same file into the cache.
    /// `None` when no file of the snapshot holds the page. The flag says
    /// whether it came from storage (a miss).
    pub fn read(
        &self,
        snap: &Snapshot,
        pgno: PageNo,
        window: u32,
        scan: &ScanBuf,
    ) -> Result<Option<(Page, bool)>> {
        let Some(loc) = snap.frame(pgno) else {
            return Ok(None);
        };
        if let Some(reason) = loc.file.corrupt.get() {
            return Err(Error::Missing(format!("page {}: {reason}", pgno.0)));
        }
        let key = loc.key();
        // A scan stream keeps at most its lead ahead of this position.
        scan.moved_to(pgno);
        if let Some(page) = self.cache.get(&key).or_else(|| scan.take(&key)) {
            Stats::add(&self.stats.cache_hits, 1);
            return Ok(Some((page, false)));
        }
        Stats::add(&self.stats.cache_misses, 1);
        // Asked before storage...
        if let Some(page) = self.local.read(&self.cache, snap, pgno, &loc) {
            return Ok(Some((page, false)));
        }
        let mut waited = false;
        pause::point("fetch.demand_claim", self.storage.describe());
        let flight = loop {
            match self.flights.claim_demand(key) {
                Claim::Mine(c) => {
                    // A fetch that landed it between the look into memory
                    // and the claim (the page went in before its flight
                    // was forgotten): no request for it.
                    if let Some(page) = self.cache.get(&key).or_else(|| scan.take(&key)) {
                        c.land(Some(Arc::clone(&page)));
                        return Ok(Some((page, false)));
                    }
                    // Dropped on a refusal, the claim lands failed.
                    budget::charge_demand()?;
                    break c;
                }
                // Someone fetches it: wait (bounded); if that fetch failed,
                // claim it again and fetch it here (the error is then our
                // own).
                Claim::Wait(f) => {
                    if !waited {
                        Stats::add(&self.stats.joined, 1);
                    }
                    match self.flights.wait(&f) {
                        Waited::Landed(page) => {
                            // A page of the scan-ahead waits in the scan
                            // buffer too: this read is the one it waited for.
                            let _ = scan.take(&key);
                            return Ok(Some((page, true)));
                        }
                        Waited::TimedOut => return Err(self.wait_timed_out(pgno)),
                        Waited::Failed if !std::mem::replace(&mut waited, true) => {}
                        // Failed again under someone else: fetch it here,
                        // so that the error is this read's own (a vanished
                        // file re-plans; it is never taken for corruption).
                        Waited::Failed => {
                            budget::charge_demand()?;
                            break self.flights.unshared();
                        }
                    }
                }
            }
        };
        scan.note_fetched();
        let run = self.run_after(snap, pgno, &loc, flight, window);
        log::debug!("demand miss: page {} ({} frames)", pgno.0, run.frames.len());
        // A scan while the cache is full keeps what it read ahead to itself.
        let to_cache = window < MAX_WINDOW || !self.cache_full();
        let dest = if to_cache { Dest::Cache } else { Dest::Caller };
        let pages = self
            .fetch_runs(
                std::slice::from_ref(&run),
                snap.page_size,
                false,
                dest,
                None,
            )
            .pop()
            .unwrap_or_else(|| Ok(Vec::new()))?;
        if !to_cache {
            scan.keep(&run, &pages);
        }
        Ok(pages
            .into_iter()
            .find(|(p, _)| *p == pgno)
            .map(|(_, page)| (page, true)))
    }

    /// The error of a reader whose wait for another's fetch of `pgno` ran
    /// out: transient, as a storage call past its budget.
    fn wait_timed_out(&self, pgno: PageNo) -> Error {
        Error::Storage(StorageError::new(
            "replica",
            StorageErrorKind::Transient,
            format!(
                "page {} of {}: another connection's read of it did not finish within {:?} \
                 ({FLIGHT_WAIT_CALLS} × storage_timeout); retry, or raise storage_timeout",
                pgno.0,
                self.storage.describe(),
                self.flights.wait_bound()
            ),
        ))
    }

    /// Frames queued or being fetched now.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }
}

#[cfg(test)]
mod chunked_tests;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
pub(super) mod tests;
#[cfg(test)]
mod warm_tests;
