//! Following the primary: every poll interval, list the level-0 files newer
//! than the current snapshot, apply them, publish the result.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::log;
use crate::ltx::FileName;
use crate::storage::{FileInfo, Level};

use super::{Replica, Stats};

/// After a gap that a re-plan could not close, wait this long before the
/// next full re-plan: a re-plan lists every level and reads every index.
const GAP_BACKOFF: Duration = Duration::from_secs(30);

impl Replica {
    /// One poll. Returns whether it saw the replica as far as it goes (a gap
    /// that nothing covers leaves it `false`, so the lag keeps growing).
    pub async fn poll_once(&self, gap_backoff_until: &mut Option<Instant>) -> Result<bool> {
        Stats::add(&self.io.stats.polls, 1);
        let cur = self.current();
        let after = FileName {
            min: cur.txid,
            max: cur.txid,
        };
        Stats::add(&self.io.stats.lists, 1);
        let listed = self.io.storage.list(Level::L0, Some(after)).await?;
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
        if !run.is_empty() {
            let loaded = self.io.load(&run).await?;
            let mut snap = (*cur).clone();
            for l in &loaded {
                snap = snap.apply(&l.file, &l.index)?;
            }
            self.io.local_follow(&loaded);
            log::debug!("{}: now at TXID {}", self.io.storage.describe(), snap.txid);
            self.publish(snap);
        }
        if !blocked {
            return Ok(true);
        }
        if gap_backoff_until.is_some_and(|t| Instant::now() < t) {
            return Ok(false);
        }
        // Level 0 has a hole after what we hold: retention removed files we
        // never saw, or a real gap. Re-plan from every level.
        Stats::add(&self.io.stats.replans, 1);
        let newest = self.current();
        if let Some((snap, plan)) = self.io.build(None).await? {
            if snap.txid > newest.txid {
                self.io.local_attach(&snap);
                self.publish(snap);
            }
            if let Some(gap) = plan.gap {
                log::warn!(
                    "{}: gap in the replica after TXID {}: next file is {}; waiting for it to be covered",
                    self.io.storage.describe(),
                    self.current().txid,
                    gap.id
                );
                *gap_backoff_until = Some(Instant::now() + GAP_BACKOFF);
                return Ok(false);
            }
        }
        *gap_backoff_until = None;
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
/// (no connection for the idle grace period) or when told to stop.
async fn run(replica: Arc<Replica>, reap: impl Fn() -> bool) {
    let mut gap_backoff_until = None;
    let mut failing = false;

    loop {
        tokio::select! {
            () = tokio::time::sleep(replica.config.poll_interval) => {}
            () = replica.stop.notified() => break,
        }
        if reap() {
            break;
        }
        // The first failure of a run is a warning; repeats are debug lines
        // until a poll succeeds again, so an outage does not flood the log.
        match replica.poll_once(&mut gap_backoff_until).await {
            Ok(true) => {
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
