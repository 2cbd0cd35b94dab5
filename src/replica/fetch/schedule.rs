//! Scheduling prefetch runs: at most [`PREFETCH_IN_FLIGHT`] requests at
//! once, in groups that go out together, each group fetched and decoded on
//! tokio's blocking pool.

use std::sync::Arc;

use crate::cache::Page;
use crate::ltx::{self, PageNo};
use crate::{log, runtime};

use super::Fetcher;
use super::inflight::Held;
use super::land::Dest;
use super::runs::Run;
use super::window::{Lease, ScanBuf};

/// Prefetch reads in flight at once, per replica. A lookup through an
/// index names a few hundred scattered table leaves; 128 parallel requests
/// fetch 250 of them in two round trips, while bounding connections and
/// memory (128 × 4 MiB at worst). (At 64, the requests that follow as
/// permits free up trickle out one by one and the lookup took 53
/// sequential round trips instead of 9.)
pub const PREFETCH_IN_FLIGHT: usize = 128;
/// Runs of one prefetch sent together as one group (half the slots, so
/// that two groups are in flight at once).
pub(super) const PREFETCH_GROUP: usize = PREFETCH_IN_FLIGHT / 2;

/// Called with each page a prefetch landed.
pub type Landed = Arc<dyn Fn(PageNo, &Page) + Send + Sync>;

impl Fetcher {
    pub(super) fn spawn_prefetch(
        self: &Arc<Self>,
        group: Vec<Run>,
        page_size: ltx::PageSize,
        landed: Option<Landed>,
        ahead: Option<(Arc<ScanBuf>, Lease)>,
    ) {
        let process = runtime::process();
        let rt = match process.runtime() {
            Ok(rt) => rt,
            Err(e) => {
                // Dropped, the group's claims land failed.
                log::debug!("prefetch skipped: {e}");
                return;
            }
        };
        let (me, slots) = (Arc::clone(self), Arc::clone(&self.slots));
        let n = u32::try_from(group.len()).unwrap_or(u32::MAX);
        // Pages kept for the scan hold their decoded size until read.
        let bytes = Run::bytes(&group).max(ahead.as_ref().map_or(0, |(_, l)| l.bytes()));
        rt.spawn(async move {
            // Should this task never get its slots (or the runtime drop it
            // first), or the blocking job panic, the group is dropped and
            // its claims land failed: no waiter is stranded.
            let Ok(permits) = slots.acquire_many_owned(n).await else {
                return;
            };
            // Its bytes of the read budget, before any of its claims
            // starts: while it waits, a demand read may still take its
            // frames over.
            let held = match me.hold(bytes).await {
                Ok(held) => held,
                Err(e) => {
                    log::debug!("prefetch skipped: {e}");
                    return;
                }
            };
            let dest = match ahead {
                Some((scan, lease)) => Dest::Ahead(scan, lease),
                None => Dest::Cache,
            };
            let job = tokio::task::spawn_blocking(move || {
                me.run_prefetch(group, page_size, landed.as_ref(), held, dest);
                drop(permits);
            });
            let _ = job.await;
        });
    }

    /// A group of prefetch runs, on the blocking pool: the frames a demand
    /// read did not take over in the meantime.
    fn run_prefetch(
        &self,
        mut group: Vec<Run>,
        page_size: ltx::PageSize,
        landed: Option<&Landed>,
        held: Held,
        dest: Dest,
    ) {
        for run in &mut group {
            // A frame a demand read took over is its now: this claim goes.
            run.frames.retain(|(_, _, c)| c.start());
        }
        group.retain(|r| !r.frames.is_empty());
        for (run, result) in
            group
                .iter()
                .zip(self.fetch_runs(&group, page_size, true, dest, Some(held)))
        {
            match result {
                Ok(pages) => {
                    if let Some(landed) = landed {
                        for (pgno, page) in &pages {
                            landed(*pgno, page);
                        }
                    }
                }
                Err(e) => log::debug!("prefetch of {} failed: {e}", run.file.id),
            }
        }
    }
}
