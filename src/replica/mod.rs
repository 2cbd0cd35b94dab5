//! One replica per URL per process: its storage, its page cache, the current
//! snapshot, and the poller that keeps that snapshot following the primary.

mod ahead;
mod catalog;
mod chunk;
mod fetch;
mod file_index;
mod flight;
mod hydrate;
mod lineage;
mod load;
mod local;

mod plan;
mod poller;
mod registry;
mod snapshot;
mod stats;
mod verifier;
mod verify;
mod warmup;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::cache::PageCache;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log;
use crate::storage::{self, Storage, StorageErrorKind};

pub use ahead::{after_read, before_read};
pub use catalog::{AtTime, Catalog, State};
pub use fetch::{
    Budget, BudgetScope, Fetcher, Landed, MAX_WINDOW, ReadAhead, SCAN_AHEAD_WINDOWS, ScanBuf,
};
pub use lineage::Tip;
pub use load::WHOLE_FILE_MAX;
pub use plan::{Plan, plan};

pub use poller::{PollState, running as running_pollers};

pub use chunk::Chunk;
pub use file_index::FileIndex;
pub use registry::{Registry, ReplicaHandle, registry};
pub use snapshot::{FileRef, FrameLoc, Places, Snapshot};
pub use stats::Stats;
pub use verifier::Verifier;
pub use warmup::State as WarmupState;

/// Pages from the start of a fresh state that the open puts into the local
/// store when it has them in memory (what `load` brings with a header, and
/// at most what it decodes of that header).
const LEADING_PAGES: u32 = 64;

/// How often an open retries while the replica has no files yet.
const EMPTY_RETRY: Duration = Duration::from_millis(250);

/// What every read and poll goes through: the shared storage, cache,
/// counters and local store, and the rooms that use them.
pub struct Io {
    pub storage: Arc<dyn Storage>,
    pub cache: Arc<PageCache>,
    pub stats: Arc<Stats>,
    /// The page reader: cache, single-flight, coalesced and parallel reads.
    pub fetcher: Arc<Fetcher>,
    /// Listing, headers, plans, builds and history.
    pub catalog: Catalog,
    /// The background verification of large files.
    pub verifier: Arc<Verifier>,
    /// The host-wide local page store, when configured.
    pub local: Arc<local::Local>,
}

impl Io {
    fn new(storage: Arc<dyn Storage>, config: &Config) -> Io {
        let cache = Arc::new(PageCache::new(config.cache_size));
        let stats = Arc::new(Stats::default());
        let local = Arc::new(local::Local::default());
        let fetcher = Arc::new(Fetcher::new(
            Arc::clone(&storage),
            Arc::clone(&cache),
            Arc::clone(&stats),
            Arc::clone(&local),
            config.storage_timeout,
        ));
        let verifier = Arc::new(Verifier::new(
            Arc::clone(&storage),
            Arc::clone(&cache),
            Arc::clone(&stats),
            config.verify,
            config.storage_timeout.saturating_mul(2),
        ));
        let catalog = Catalog::new(
            Arc::clone(&storage),
            Arc::clone(&cache),
            Arc::clone(&stats),
            Arc::clone(&verifier),
            local::blobs_for(config).map(Arc::new),
        );
        Io {
            storage,
            cache,
            stats,
            fetcher,
            catalog,
            verifier,
            local,
        }
    }
}

/// A replica shared by every connection of the process that opened its URL.
pub struct Replica {
    pub config: Config,
    pub io: Io,
    current: ArcSwap<Snapshot>,
    /// Unix milliseconds of the last successful poll; -1 before the first.
    last_poll_ms: AtomicI64,
    /// Unix milliseconds at which the newest confirmation that the published
    /// state is the newest storage has started (the open's or a poll's
    /// listing); only moves forward.
    confirmed_ms: AtomicI64,
    /// One re-plan at a time; others wait and reuse its result.
    replan_lock: tokio::sync::Mutex<()>,
    /// The newest level-0 file of the current state, to see a reset by.
    tip: std::sync::Mutex<Option<lineage::Tip>>,
    /// Hydration progress of this process, when it fills.
    hydration: hydrate::Progress,
    /// The warm-up of interior pages after the open.
    warmup: warmup::Progress,
}

impl Replica {
    /// Runs `run` as a supervised background task of this replica, which
    /// it holds weakly (the task ends with the replica): a panic is counted
    /// in the stats (`task_panics`), logged, and the task starts again
    /// after a backoff (see [`crate::runtime::supervise`]). `what` names the task
    /// in the log, before the replica's name.
    fn supervise_weakly<F, Fut>(self: &Arc<Self>, what: &str, run: F)
    where
        F: Fn(std::sync::Weak<Replica>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let weak = Arc::downgrade(self);
        let stats = Arc::clone(&self.io.stats);
        crate::runtime::supervise(
            format!("{what} of {}", self.io.storage.describe()),
            move |_| Stats::add(&stats.task_panics, 1),
            move || run(std::sync::Weak::clone(&weak)),
        );
    }

    /// Opens a replica: plans and builds its newest snapshot, waiting up to
    /// the open timeout for a replica that has no files yet.
    pub async fn open(config: Config) -> Result<Arc<Replica>> {
        let storage = storage::open(
            &config.replica_url,
            storage::Timeouts::within(config.storage_timeout),
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let io = Io::new(storage, &config);

        let deadline = Instant::now() + config.open_timeout;
        // Before the listing: the state built is the newest as of then.
        let listed_ms = now_ms();
        let mut first = true;
        let (snap, tip) = loop {
            let built = if std::mem::take(&mut first) {
                tokio::join!(io.catalog.build(None), io.storage.prewarm()).0
            } else {
                io.catalog.build(None).await
            };
            match built {
                Ok(Some((snap, plan))) => {
                    // As the official extension does: the newest state is
                    // out of reach, and opening at an older one would read
                    // stale data as if it were current.
                    if let (Some((from, to)), Some(gap)) = (plan.missing(), plan.gap) {
                        return Err(Error::Unavailable(format!(
                            "gap in the replica {}: TXIDs {from}..{to} are missing (no LTX file of any \
                             level covers them; the newest state reachable is TXID {}, the next file is {}). \
                             Litestream may still be writing them, or retention removed them: check the \
                             replica, or restore it",
                            io.storage.describe(),
                            snap.txid,
                            gap.id
                        )));
                    }
                    let tip = lineage::tip_of(&snap, &plan);
                    break (snap, tip);
                }
                Ok(None) if Instant::now() < deadline => tokio::time::sleep(EMPTY_RETRY).await,
                Ok(None) => {
                    return Err(Error::Unavailable(format!(
                        "no Litestream replica at {}: it holds no LTX snapshot to start from (waited {:?}; \
                         is litestream replicating there?)",
                        io.storage.describe(),
                        config.open_timeout
                    )));
                }
                // Litestream creates the folder with its first file: wait
                // for it like for an empty replica.
                Err(Error::Storage(e)) if e.kind == StorageErrorKind::NotFound => {
                    if Instant::now() >= deadline {
                        return Err(Error::Unavailable(format!(
                            "no Litestream replica (waited {:?}): {e}",
                            config.open_timeout
                        )));
                    }
                    tokio::time::sleep(EMPTY_RETRY).await;
                }

                Err(e) => return Err(e),
            }
        };
        log::info!(
            "{}: opened at TXID {} ({} pages)",
            io.storage.describe(),
            snap.txid,
            snap.page_count
        );
        io.local.open(&config, &snap)?;
        io.local.keep_cached(&io.cache, &snap, LEADING_PAGES);
        let hydrating = config.hydration.is_some() && io.local.get().is_some();
        let replica = Arc::new(Replica {
            config,
            io,
            current: ArcSwap::from_pointee(snap),
            last_poll_ms: AtomicI64::new(now_ms()),
            confirmed_ms: AtomicI64::new(listed_ms),
            replan_lock: tokio::sync::Mutex::new(()),
            tip: std::sync::Mutex::new(tip),
            hydration: Default::default(),
            warmup: Default::default(),
        });
        if hydrating {
            hydrate::spawn(&replica);
        }
        warmup::spawn(&replica);
        Ok(replica)
    }

    /// The newest published snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes `next` in place of `from`, only if `from` is still the
    /// current snapshot (compare-and-swap): a publisher that read the
    /// current state, awaited storage, and built on what it read never
    /// overwrites what another publisher put there meanwhile. Returns the
    /// snapshot now current: `next` when it was published, else the one
    /// that won.
    ///
    /// `next` must move forward from `from` (see [`moves_forward`]): a
    /// publisher that would move the state back is refused, and logged.
    fn publish(&self, from: &Arc<Snapshot>, next: Snapshot) -> Published {
        self.publish_arc(from, Arc::new(next))
    }

    fn publish_arc(&self, from: &Arc<Snapshot>, next: Arc<Snapshot>) -> Published {
        if let Err(why) = moves_forward(from, &next) {
            log::error!(
                "{}: refused to publish TXID {} (lineage {}) over TXID {} (lineage {}): {why}",
                self.io.storage.describe(),
                next.txid,
                next.lineage,
                from.txid,
                from.lineage
            );
            return Published::Lost(self.current());
        }
        let prev = self.current.compare_and_swap(from, Arc::clone(&next));
        if Arc::ptr_eq(&prev, from) {
            Published::Done(next)
        } else {
            Published::Lost(self.current())
        }
    }

    fn mark_polled(&self) {
        self.last_poll_ms.store(now_ms(), Ordering::Release);
    }

    /// Records that a poll which started at `started_ms` (Unix ms) saw the
    /// replica as far as storage goes. Never moves back (`fetch_max`).
    fn mark_confirmed(&self, started_ms: i64) {
        self.confirmed_ms.fetch_max(started_ms, Ordering::AcqRel);
    }

    /// Unix milliseconds since which the published state is known to be the
    /// newest storage holds: the start of the last listing that found
    /// nothing newer than it, or whose newer files it published.
    pub fn confirmed_ms(&self) -> i64 {
        self.confirmed_ms.load(Ordering::Acquire)
    }

    /// Seconds (fractional) since [`Replica::confirmed_ms`].
    pub fn confirmed_lag(&self) -> f64 {
        (now_ms() - self.confirmed_ms()).max(0) as f64 / 1000.0
    }

    /// Whole seconds since the last successful poll; -1 before the first.
    pub fn lag_secs(&self) -> i64 {
        match self.last_poll_ms.load(Ordering::Acquire) {
            ms if ms < 0 => -1,
            ms => (now_ms() - ms).max(0) / 1000,
        }
    }

    /// Rebuilds the state of `failed.txid` from what storage holds now,
    /// after a file of `failed` vanished (compaction, retention). Fails when
    /// that exact state is no longer reachable, and with the reset error
    /// when storage now holds another state under that TXID (the replica
    /// was reset): the rebuild must prove it is the state `failed` was
    /// (see [`lineage::same_state`]), or it is not used.
    ///
    /// The rebuild replaces the current snapshot only if the current one is
    /// still the snapshot read before the build (compare-and-swap): the
    /// poller publishes without the re-plan lock, and a newer state it
    /// published meanwhile stays.
    pub async fn replan(&self, failed: &Arc<Snapshot>) -> Result<Arc<Snapshot>> {
        let _guard = self.replan_lock.lock().await;
        let cur = self.current();
        if cur.lineage != failed.lineage {
            return Err(Error::Reset(format!(
                "the replica was reset (its TXIDs started again) while this connection read TXID {} of the old one; retry the transaction",
                failed.txid
            )));
        }
        if cur.txid == failed.txid && !Arc::ptr_eq(&cur, failed) {
            return Ok(cur);
        }
        Stats::add(&self.io.stats.replans, 1);
        let rebuilt = self.io.catalog.build(Some(failed.txid)).await?;
        crate::pause::point_async("replan.after_build", self.io.storage.describe()).await;
        let Some((mut snap, _)) = rebuilt.filter(|(s, _)| s.txid == failed.txid) else {
            return Err(Error::Compacted { txid: failed.txid });
        };
        if let Err(why) = lineage::same_state(failed, &snap) {
            // Storage holds another state under this TXID: a new lineage
            // reached it. Nothing of the rebuild is used; the replica moves
            // to the new lineage now, as the poller would on seeing it.
            let why = format!("TXID {} was rebuilt as another state: {why}", failed.txid);
            if let Err(e) = self.reset_locked(failed.lineage, &why).await {
                log::warn!("{}: {e}", self.io.storage.describe());
            }
            return Err(Error::Reset(format!(
                "{}: the replica was reset (its TXIDs started again) while this connection read TXID {} \
                 of the old one ({why}); retry the transaction",
                self.io.storage.describe(),
                failed.txid
            )));
        }
        snap.lineage = failed.lineage;
        let snap = Arc::new(snap);
        if cur.txid == snap.txid {
            // Whoever published since the build read `cur` wins.
            let _ = self.publish_arc(&cur, Arc::clone(&snap));
        }
        Ok(snap)
    }

    /// The snapshot for a point in time (see [`Catalog::build_at_time`]), of the
    /// current lineage.
    pub async fn at_time(&self, at_ms: i64) -> Result<AtTime> {
        let lineage = self.lineage();
        let mut at = self.io.catalog.build_at_time(at_ms).await?;
        at.snapshot.lineage = lineage;
        Ok(at)
    }

    /// Fails when `snap` belongs to a lineage the replica has left (it was
    /// reset since): its files may now hold the new lineage's bytes.
    pub fn check_lineage(&self, snap: &Snapshot) -> Result<()> {
        if snap.lineage == self.lineage() {
            return Ok(());
        }
        Err(Error::Reset(format!(
            "{}: the replica was reset (its TXIDs started again) after this connection took its \
             snapshot at TXID {}; that state is gone: finish the transaction, or set litestream_time again",
            self.io.storage.describe(),
            snap.txid
        )))
    }
}

/// What a publish did.
#[derive(Debug)]
#[must_use]
enum Published {
    /// The snapshot was published.
    Done(Arc<Snapshot>),
    /// Another publisher got there first (or the snapshot would have moved
    /// the state back): this one is current.
    Lost(Arc<Snapshot>),
}

/// The invariant of every publish: within a lineage the state only moves
/// forward (the same TXID again is a rebuild of the same state), and a new
/// lineage is the next one.
fn moves_forward(from: &Snapshot, next: &Snapshot) -> std::result::Result<(), String> {
    if next.lineage == from.lineage {
        if next.txid < from.txid {
            return Err(format!("TXID {} is behind TXID {}", next.txid, from.txid));
        }
        return Ok(());
    }
    if next.lineage == from.lineage.wrapping_add(1) {
        return Ok(());
    }
    Err(format!(
        "lineage {} does not follow lineage {}",
        next.lineage, from.lineage
    ))
}

/// Unix milliseconds now (0 before 1970, saturating far in the future).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{FileName, LtxBuilder, PageSize, Txid, decode_file};
    use crate::storage::{FileId, Level};

    fn snap(txid: u64, lineage: u32) -> Snapshot {
        let bytes = LtxBuilder::new(PageSize::new(4096).unwrap(), 1, 1, 1)
            .page(1, b"x")
            .build();
        let decoded = decode_file(&bytes).unwrap();
        let id = FileId {
            level: Level::L0,
            name: FileName {
                min: Txid(1),
                max: Txid(1),
            },
        };
        let file = Arc::new(FileRef::new(id, bytes.len() as u64, decoded.header));
        let mut s = Snapshot::build([(&file, &decoded.index)]).unwrap();
        s.txid = Txid(txid);
        s.lineage = lineage;
        s
    }

    #[test]
    fn publishing_only_moves_forward_within_a_lineage() {
        assert!(moves_forward(&snap(5, 0), &snap(6, 0)).is_ok());
        assert!(moves_forward(&snap(5, 0), &snap(5, 0)).is_ok(), "a rebuild");
        let back = moves_forward(&snap(5, 0), &snap(4, 0)).unwrap_err();
        assert!(back.contains("behind"), "{back}");
        assert!(
            moves_forward(&snap(5, 0), &snap(1, 1)).is_ok(),
            "a reset starts again"
        );
        assert!(moves_forward(&snap(5, 1), &snap(9, 0)).is_err());
        assert!(moves_forward(&snap(5, 1), &snap(9, 3)).is_err());
    }
}
