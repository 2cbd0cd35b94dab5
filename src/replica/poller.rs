//! Following the primary: every poll interval, list the level-0 files newer
//! than the current snapshot, apply them, publish the result.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::ltx::{FileName, Txid};
use crate::storage::FileInfo;
use crate::{log, pause, runtime};

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
    /// The state of a poller starting now: the first quiet poll reads the
    /// tip's header (one small read), and a replica without a tip probes at
    /// its first poll, so a reset between the open's listing and the first
    /// poll is seen at once rather than a probe interval later.
    pub fn starting(_has_tip: bool) -> PollState {
        PollState {
            gap_backoff_until: None,
            next_probe: None,
            next_tip_check: None,
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
            if let Some(t) = &tip
                && let Some(why) = self.tip_header_matches(t).await?
            {
                return self.reset(&why).await.map(|()| true);
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
            // The store learns the new files (its lock, page writes) on
            // the blocking pool, before the state that reads them is out.
            let (local, loaded) = (Arc::clone(&self.io.local), Arc::new(loaded));
            let l = Arc::clone(&loaded);
            let scope = self.io.storage.describe().to_owned();
            runtime::off_worker("following into the local store", move || {
                pause::point("poller.follow_loaded", &scope);
                local.follow_loaded(&l)
            })
            .await?;
            let txid = snap.txid;
            // A re-plan or a reset that published meanwhile wins; the next
            // poll starts from what it published.
            if let super::Published::Done(now) = self.publish(&cur, snap) {
                crate::pause::point_async("poll.after_publish", self.io.storage.describe()).await;
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
                self.forget_unreferenced();
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
                let (local, snap) = (Arc::clone(&self.io.local), Arc::new(snap));
                let s = Arc::clone(&snap);
                runtime::off_worker("attaching the local store", move || local.attach_built(&s))
                    .await?;
                if let super::Published::Done(now) = self.publish_arc(&newest, snap) {
                    self.set_tip(&now, tip);
                    self.forget_unreferenced();
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

impl Replica {
    /// Drops what the rooms remember of files the current state no longer
    /// references (the local store's known files, the verifier's verdicts),
    /// so that following many files keeps them bounded.
    fn forget_unreferenced(&self) {
        let cur = self.current();
        self.io.local.retain_known(&cur);
        self.io.verifier.retain(&cur);
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

/// Starts the poller task of one replica (counted from now on), under
/// supervision: a panic is counted in the stats (`task_panics`), logged,
/// and the poller starts again after a backoff.
pub fn spawn(replica: Arc<Replica>, reap: impl Fn() -> bool + Send + Sync + 'static) {
    let running = Running::start();
    let reap = Arc::new(reap);
    let stats = Arc::clone(&replica.io.stats);
    runtime::supervise(
        format!("the poller of {}", replica.io.storage.describe()),
        move |_| Stats::add(&stats.task_panics, 1),
        move || {
            // Owned by the supervisor: counted until it ends.
            let _counted = &running;
            let (replica, reap) = (Arc::clone(&replica), Arc::clone(&reap));
            async move { run(replica, &*reap).await }
        },
    );
}

/// The poller loop of one replica. Ends when the registry reaps the replica
/// (no connection for the idle grace period).
async fn run(replica: Arc<Replica>, reap: &(dyn Fn() -> bool + Send + Sync)) {
    let mut state = PollState::starting(replica.tip().is_some());
    let mut failing = false;

    loop {
        tokio::time::sleep(replica.config.poll_interval).await;
        if reap() {
            break;
        }
        #[cfg(any(test, feature = "test-hooks"))]
        hooks::panic_if_armed("poll", &replica);
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

/// A test hook: the next round of an armed background task (the poller,
/// hydration, a verification) of one replica panics. (Only this crate's unit tests arm it
/// so far.)
#[cfg(any(test, feature = "test-hooks"))]
#[cfg_attr(not(test), allow(dead_code))]
pub mod hooks {
    use std::sync::Mutex;

    use super::Replica;

    /// Tasks (by name and their replica's storage description) whose next
    /// round panics.
    static ARMED: Mutex<Vec<(&'static str, String)>> = Mutex::new(Vec::new());

    /// Makes the next round of `task` of the replica that `describe` names
    /// panic, once.
    pub fn panic_next(task: &'static str, describe: &str) {
        if let Ok(mut armed) = ARMED.lock() {
            armed.push((task, describe.to_string()));
        }
    }

    /// Whether that round is still to come.
    pub fn is_armed(task: &'static str, describe: &str) -> bool {
        ARMED
            .lock()
            .is_ok_and(|armed| armed.iter().any(|(t, d)| *t == task && d == describe))
    }

    /// Panics if `task` of `replica` is armed (disarming it).
    pub fn panic_if_armed(task: &'static str, replica: &Replica) {
        panic_if_armed_for(task, replica.io.storage.describe());
    }

    /// Panics if `task` of the replica `describe` names is armed
    /// (disarming it): for tasks that hold no `Replica`.
    pub fn panic_if_armed_for(task: &'static str, describe: &str) {
        let hit = ARMED.lock().is_ok_and(|mut armed| {
            let before = armed.len();
            armed.retain(|(t, d)| !(*t == task && d == describe));
            armed.len() != before
        });
        if hit {
            panic!("test hook: {task} of {describe} panics");
        }
    }
}

#[cfg(test)]
#[path = "poller_tests.rs"]
mod tests;
