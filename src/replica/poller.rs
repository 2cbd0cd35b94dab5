//! Following the primary: every poll interval, list the level-0 files newer
//! than the current snapshot, apply them, publish the result.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::log;
use crate::ltx::{FileName, Txid};
use crate::storage::FileInfo;

use super::lineage::{self, Seen};
use super::{Replica, Stats};

/// After a gap that a re-plan could not close, wait this long before the
/// next full re-plan: a re-plan lists every level and reads every index.
const GAP_BACKOFF: Duration = Duration::from_secs(30);

/// What the poller remembers between polls.
#[derive(Debug, Default)]
pub struct PollState {
    /// After a gap that a re-plan could not close, no full re-plan before.
    gap_backoff_until: Option<Instant>,
    /// No lineage probe before (see `lineage::PROBE_INTERVAL`).
    next_probe: Option<Instant>,
    /// While nothing changes, no re-read of the tip's header before.
    next_tip_check: Option<Instant>,
}

impl PollState {
    /// The state of a poller starting now: the first lineage probe waits a
    /// probe interval when the replica has no tip (the open just listed).
    pub fn starting(has_tip: bool) -> PollState {
        PollState {
            gap_backoff_until: None,
            next_probe: (!has_tip).then(|| Instant::now() + lineage::PROBE_INTERVAL),
            next_tip_check: Some(Instant::now() + lineage::PROBE_INTERVAL),
        }
    }
}

impl Replica {
    /// One poll. Returns whether it saw the replica as far as it goes (a gap
    /// that nothing covers leaves it `false`, so the lag keeps growing).
    pub async fn poll_once(&self, state: &mut PollState) -> Result<bool> {
        Stats::add(&self.io.stats.polls, 1);
        let cur = self.current();
        let tip = self.tip().filter(|t| t.txid == cur.txid);
        // List from the tip on, so that it is in the listing to compare.
        let after = match &tip {
            Some(t) => FileName {
                min: t.file.id.name.min,
                max: Txid(cur.txid.0.saturating_sub(1)),
            },
            None => FileName {
                min: cur.txid,
                max: cur.txid,
            },
        };
        let listed = self.io.catalog.list_l0(after).await?;
        let tip_listed = match lineage::check_listing(cur.txid, tip.as_ref(), &listed) {
            Seen::Reset(why) => return self.reset(&why).await.map(|()| true),
            Seen::Same { tip_listed } => tip_listed,
        };
        let mut run: Vec<FileInfo> = Vec::new();
        let mut reach = cur.txid;
        let mut blocked = false;
        for f in listed.into_iter().filter(|f| f.id.name.max > cur.txid) {
            if f.id.name.min > reach.next() {
                blocked = true;
                break;
            }
            if f.id.name.max > reach {
                reach = f.id.name.max;
                run.push(f);
            }
        }
        if tip_listed {
            state.next_probe = None;
        } else if run.is_empty() || tip.is_some() {
            // The tip vanished (retention, or a reset to fewer TXIDs), or
            // there is none to compare: look at every level.
            if let Some(why) = self.probe(&mut state.next_probe).await? {
                // A rebuild that failed (a file still being written) is
                // tried again at the next poll, not a probe interval later.
                let reset = self.reset(&why).await;
                if reset.is_err() {
                    state.next_probe = None;
                }
                return reset.map(|()| true);
            }
        }
        if run.is_empty() && tip_listed && state.next_tip_check.is_none_or(|t| Instant::now() >= t)
        {
            // Quiet: a new lineage may have reached our TXID with files of
            // the same names and sizes. Their headers tell.
            state.next_tip_check = Some(Instant::now() + lineage::PROBE_INTERVAL);
            if let Some(t) = &tip {
                if let Some(why) = self.tip_header_matches(t).await? {
                    return self.reset(&why).await.map(|()| true);
                }
            }
        }
        if !run.is_empty() {
            // New files: check that the tip is still the file we applied
            // (same name and size, other bytes is a reset), while they load.
            let check_tip = async {
                match (&tip, tip_listed) {
                    (Some(t), true) => self.tip_header_matches(t).await,
                    _ => Ok(None),
                }
            };
            let (changed, loaded) = tokio::try_join!(check_tip, self.io.catalog.load(&run))?;
            if let Some(why) = changed {
                return self.reset(&why).await.map(|()| true);
            }
            let mut snap = (*cur).clone();
            for l in &loaded {
                snap = snap.apply(&l.file, &l.index)?;
            }
            self.io.local.follow_loaded(&loaded);
            let txid = snap.txid;
            // A re-plan or a reset that published meanwhile wins; the next
            // poll starts from what it published.
            if let super::Published::Done(now) = self.publish(&cur, snap) {
                crate::pause::point_async("poll.after_publish").await;
                if let (Some(f), Some(l)) = (run.last(), loaded.last()) {
                    self.set_tip(
                        &now,
                        Some(lineage::Tip {
                            txid,
                            file: *f,
                            written_ms: Some(l.file.header.timestamp_ms),
                        }),
                    );
                }
                log::debug!("{}: now at TXID {txid}", self.io.storage.describe());
            }
        }
        if !blocked {
            return Ok(true);
        }
        if state.gap_backoff_until.is_some_and(|t| Instant::now() < t) {
            return Ok(false);
        }
        // Level 0 has a hole after what we hold: retention removed files we
        // never saw, or a real gap. Re-plan from every level.
        Stats::add(&self.io.stats.replans, 1);
        let newest = self.current();
        if let Some((mut snap, plan)) = self.io.catalog.build(None).await? {
            if let Err(why) = lineage::same_files(&newest, &snap) {
                return self.reset(&why).await.map(|()| true);
            }
            if snap.txid > newest.txid {
                snap.lineage = newest.lineage;
                let tip = lineage::tip_of(&snap, &plan);
                self.io.local.attach_built(&snap);
                if let super::Published::Done(now) = self.publish(&newest, snap) {
                    self.set_tip(&now, tip);
                }
            }
            if let Some(gap) = plan.gap {
                log::warn!(
                    "{}: gap in the replica after TXID {}: next file is {}; waiting for it to be covered",
                    self.io.storage.describe(),
                    self.current().txid,
                    gap.id
                );
                state.gap_backoff_until = Some(Instant::now() + GAP_BACKOFF);
                return Ok(false);
            }
        }
        state.gap_backoff_until = None;
        Ok(true)
    }
}

/// Pollers running in this process, for diagnostics and leak tests.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// How many pollers are running.
pub fn running() -> usize {
    RUNNING.load(Ordering::Relaxed)
}

/// Counts a poller for as long as it lives.
struct Running;

impl Running {
    fn start() -> Running {
        RUNNING.fetch_add(1, Ordering::Relaxed);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts the poller task of one replica (counted from now on).
pub fn spawn(replica: Arc<Replica>, reap: impl Fn() -> bool + Send + 'static) {
    let running = Running::start();
    tokio::spawn(async move {
        run(replica, reap).await;
        drop(running);
    });
}

/// The poller loop of one replica. Ends when the registry reaps the replica
/// (no connection for the idle grace period).
async fn run(replica: Arc<Replica>, reap: impl Fn() -> bool) {
    let mut state = PollState::starting(replica.tip().is_some());
    let mut failing = false;

    loop {
        tokio::time::sleep(replica.config.poll_interval).await;
        if reap() {
            break;
        }
        // The first failure of a run is a warning; repeats are debug lines
        // until a poll succeeds again, so an outage does not flood the log.
        let started_ms = super::now_ms();
        match replica.poll_once(&mut state).await {
            Ok(true) => {
                replica.mark_confirmed(started_ms);
                if std::mem::take(&mut failing) {
                    log::info!("{}: polling works again", replica.io.storage.describe());
                }
                replica.mark_polled();
            }
            Ok(false) => {}
            Err(e) if failing => log::debug!("{}: poll failed: {e}", replica.io.storage.describe()),
            Err(e) => {
                failing = true;
                log::warn!(
                    "{}: poll failed (lag grows until it works): {e}",
                    replica.io.storage.describe()
                );
            }
        }
    }
    log::debug!("{}: poller stopped", replica.io.storage.describe());
}
