//! One replica per URL per process: its storage, its page cache, the current
//! snapshot, and the poller that keeps that snapshot following the primary.

mod ahead;
mod catalog;
mod fetch;
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

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::cache::PageCache;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log;
use crate::storage::{self, Storage, StorageErrorKind};

pub use ahead::after_read;
pub use catalog::{AtTime, Catalog, State};
pub use fetch::{Fetcher, Landed, MAX_WINDOW, ReadAhead, SCAN_AHEAD_WINDOWS, ScanBuf};
pub use lineage::Tip;
pub use load::WHOLE_FILE_MAX;
pub use plan::{Plan, plan};

pub use poller::{PollState, running as running_pollers};

pub use registry::{Registry, ReplicaHandle, registry};
pub use snapshot::{FileRef, FrameLoc, Snapshot};
pub use stats::Stats;
pub use verifier::Verifier;

/// Pages from the start of a fresh state that the open puts into the local
/// store when it has them in memory (what `load` brings with a header).
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
    /// One re-plan at a time; others wait and reuse its result.
    replan_lock: tokio::sync::Mutex<()>,
    /// The newest level-0 file of the current state, to see a reset by.
    tip: std::sync::Mutex<Option<lineage::Tip>>,
    /// Hydration progress of this process, when it fills.
    hydration: hydrate::Progress,
}

impl Replica {
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
            replan_lock: tokio::sync::Mutex::new(()),
            tip: std::sync::Mutex::new(tip),
            hydration: Default::default(),
        });
        if hydrating {
            hydrate::spawn(&replica);
        }
        Ok(replica)
    }

    /// The newest published snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    fn publish(&self, snap: Snapshot) {
        self.current.store(Arc::new(snap));
    }

    fn mark_polled(&self) {
        self.last_poll_ms.store(now_ms(), Ordering::Release);
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
    /// that exact state is no longer reachable.
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
        match rebuilt {
            Some((mut snap, _)) if snap.txid == failed.txid => {
                snap.lineage = failed.lineage;
                let snap = Arc::new(snap);
                if cur.txid == snap.txid {
                    self.current.store(Arc::clone(&snap));
                }
                Ok(snap)
            }
            _ => Err(Error::Compacted { txid: failed.txid }),
        }
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

/// Unix milliseconds now (0 before 1970, saturating far in the future).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
