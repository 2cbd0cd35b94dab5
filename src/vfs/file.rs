//! One open replica database.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::hooks::{Hooks, PanicHook};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ltx::{PageNo, lock_page};
use crate::prefetch::Prefetcher;
use crate::replica::{self, Budget, ReadAhead, Replica, ReplicaHandle, ScanBuf, Snapshot};
use crate::runtime;

use super::page1;
use super::timeparse::TimeTarget;

/// The lock levels SQLite asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockLevel {
    None,
    Shared,
    Reserved,
    Pending,
    Exclusive,
}

impl LockLevel {
    pub fn from_raw(raw: i32) -> Option<LockLevel> {
        Some(match raw {
            0 => LockLevel::None,
            1 => LockLevel::Shared,
            2 => LockLevel::Reserved,
            3 => LockLevel::Pending,
            4 => LockLevel::Exclusive,
            _ => return None,
        })
    }
}

/// A connection's lock state. A snapshot is pinned from the move to SHARED
/// until the unlock, so a read transaction sees one TXID throughout.
enum Lock {
    Unlocked,
    Shared(Arc<Snapshot>),
}

/// Where a time-travelling connection reads.
pub struct Travel {
    /// The time asked for, Unix milliseconds.
    pub target_ms: i64,
    pub snapshot: Arc<Snapshot>,
    /// Whether `snapshot` is the newest state committed by `target_ms`.
    pub exact: bool,
}

struct Inner {
    handle: ReplicaHandle,
    lock: Lock,
    travel: Option<Travel>,
    readahead: ReadAhead,
    /// B-tree-aware prefetch of this connection (made at its first read,
    /// when the page size is known).
    prefetch: Option<Arc<Prefetcher>>,
    /// Pages this connection's scan read ahead while the cache was full.
    scan: Arc<ScanBuf>,
}

impl Inner {
    /// The snapshot reads must use whatever the replica publishes: the one
    /// pinned by a read transaction, else the time-travel target. `None`
    /// means "the newest".
    fn fixed_snapshot(&self) -> Option<&Arc<Snapshot>> {
        match (&self.lock, &self.travel) {
            (Lock::Shared(s), _) => Some(s),
            (Lock::Unlocked, Some(t)) => Some(&t.snapshot),
            (Lock::Unlocked, None) => None,
        }
    }
}

/// An open replica database, as SQLite's main database file.
pub struct DbFile {
    config: Config,
    inner: Mutex<Inner>,
    /// Storage requests one statement may cause (see `replica::Budget`):
    /// a statement is a read transaction, from the move to SHARED on.
    budget: Arc<Budget>,
    /// The message of the last read that failed, for `PRAGMA
    /// litestream_last_error` (SQLite itself only says "disk I/O error").
    last_error: Mutex<Option<String>>,
    /// Fault hooks of the panic-safety tests (empty in a normal build).
    hooks: Hooks,
}

impl DbFile {
    /// Opens (or joins) the shared replica that `config` names.
    pub fn open(config: Config) -> Result<DbFile> {
        let handle = crate::replica::registry().open(&config)?;
        let budget = Budget::new(config.max_requests_per_query);
        Ok(DbFile {
            config,
            inner: Mutex::new(Inner {
                handle,
                lock: Lock::Unlocked,
                travel: None,
                readahead: ReadAhead::default(),
                prefetch: None,
                scan: Arc::default(),
            }),
            budget,
            last_error: Mutex::new(None),
            hooks: Hooks::default(),
        })
    }

    /// The connection's state. A panic while it was held (caught at the
    /// SQLite boundary) poisons the mutex; the state is only `Arc`s and
    /// values replaced whole, never left half-written, so the connection
    /// takes it back instead of failing every call from then on.
    fn inner(&self) -> Result<MutexGuard<'_, Inner>> {
        Ok(self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The connection's fault hooks (see `vfs::hooks`).
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Reopens the replica if this process is a fork child of the one that
    /// opened it (the parent's runtime does not exist here).
    fn ensure_epoch(&self, inner: &mut Inner) -> Result<()> {
        if inner.handle.epoch() != runtime::fork_epoch() {
            inner.handle = crate::replica::registry().open(&self.config)?;
        }
        Ok(())
    }

    /// The replica, reopened first after a fork.
    fn replica_in(&self, inner: &mut Inner) -> Result<Arc<Replica>> {
        self.ensure_epoch(inner)?;
        Ok(Arc::clone(inner.handle.replica()))
    }

    /// The snapshot this connection reads now: the pinned one inside a read
    /// transaction, else the newest.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let mut inner = self.inner()?;
        if let Some(s) = inner.fixed_snapshot() {
            return Ok(Arc::clone(s));
        }
        Ok(self.replica_in(&mut inner)?.current())
    }

    /// Moves this connection to `target` from its next read transaction on.
    /// The snapshot is built without holding the connection's lock.
    pub fn set_time(&self, target: TimeTarget) -> Result<()> {
        let not_in_transaction = |inner: &Inner| {
            if matches!(inner.lock, Lock::Shared(_)) {
                return Err(Error::Usage(
                    "cannot change the time inside an open read transaction: finish it (COMMIT or ROLLBACK) first"
                        .into(),
                ));
            }
            Ok(())
        };
        let replica = {
            let mut inner = self.inner()?;
            not_in_transaction(&inner)?;
            self.replica_in(&mut inner)?
        };
        let travel = match target {
            TimeTarget::Latest => None,
            TimeTarget::At(target_ms) => {
                let at = runtime::block_on(replica.at_time(target_ms))??;
                if !at.exact {
                    crate::log::warn!(
                        "{}: the newest state before the requested time was compacted away; reading TXID {}",
                        replica.io.storage.describe(),
                        at.snapshot.txid
                    );
                }
                Some(Travel {
                    target_ms,
                    snapshot: Arc::new(at.snapshot),
                    exact: at.exact,
                })
            }
        };
        let mut inner = self.inner()?;
        not_in_transaction(&inner)?;
        inner.travel = travel;
        Ok(())
    }

    /// The time this connection travels to, if it does: the target time, or
    /// the time of the state read when that is older than asked.
    pub fn travel_time_ms(&self) -> Result<Option<i64>> {
        let inner = self.inner()?;
        Ok(inner.travel.as_ref().map(|t| {
            if t.exact {
                t.target_ms
            } else {
                t.snapshot.timestamp_ms
            }
        }))
    }

    pub fn replica(&self) -> Result<Arc<Replica>> {
        let mut inner = self.inner()?;
        self.replica_in(&mut inner)
    }

    pub fn lock(&self, level: LockLevel) -> Result<()> {
        if level > LockLevel::Shared {
            return Err(Error::ReadOnly);
        }
        let mut inner = self.inner()?;
        if level == LockLevel::Shared && matches!(inner.lock, Lock::Unlocked) {
            let replica = self.replica_in(&mut inner)?;
            let snap = match &inner.travel {
                Some(t) => Arc::clone(&t.snapshot),
                None => replica.current(),
            };
            inner.lock = Lock::Shared(snap);
            self.budget.reset();
        }

        Ok(())
    }

    pub fn unlock(&self, level: LockLevel) -> Result<()> {
        if level == LockLevel::None {
            let mut inner = self.inner()?;
            inner.lock = Lock::Unlocked;
            if let Some(pf) = &inner.prefetch {
                pf.end_transaction();
            }
            // What the scan read ahead is for this transaction only.
            inner.scan.clear();
        }
        Ok(())
    }

    /// Database size in bytes.
    pub fn file_size(&self) -> Result<u64> {
        Ok(self.snapshot()?.size_bytes())
    }

    /// Fills `buf` from byte `offset`. Returns `false` for a short read (past
    /// the end of the database; the rest of `buf` is zeroed).
    ///
    /// The connection's lock is held only to pick the snapshot and the
    /// read-ahead window, never across a page read (in a forked child, the
    /// first call reopens the replica under it: `ensure_epoch`).
    ///
    /// Around a reset: a snapshot of the old lineage fails its reads with
    /// the reset error; a file that vanished is re-planned only into the
    /// same state (`Replica::replan` proves it, else it is the reset error);
    /// a file written again since it was listed raises the reset at once.
    pub fn read(&self, buf: &mut [u8], offset: u64) -> Result<bool> {
        let read = self.read_budgeted(buf, offset);
        if let Err(e) = &read {
            *self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
        }
        read
    }

    /// The connection's request budget.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The message of the connection's last failed read.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn read_budgeted(&self, buf: &mut [u8], offset: u64) -> Result<bool> {
        // Whatever this read sends to storage is charged to the statement.
        let _budget = self.budget.enter();
        self.hooks.fire(PanicHook::Read);
        let (replica, snap, window, pf, scan) = {
            let mut inner = self.inner()?;
            self.hooks.fire(PanicHook::Locked);
            self.ensure_epoch(&mut inner)?;
            let replica = Arc::clone(inner.handle.replica());
            // Outside a transaction and not travelling: the newest snapshot.
            let snap = match inner.fixed_snapshot() {
                Some(s) => Arc::clone(s),
                None => replica.current(),
            };
            let page_size = snap.page_size;
            let first =
                PageNo(u32::try_from(offset / u64::from(page_size.get()) + 1).unwrap_or(u32::MAX));
            let window = inner.readahead.observe(first);
            let pf = Arc::clone(inner.prefetch.get_or_insert_with(|| {
                // A quarter of the cache per transaction at most.
                let pages = self.config.cache_size / u64::from(page_size.get()) / 4;
                Prefetcher::new(
                    page_size.bytes(),
                    usize::try_from(pages).unwrap_or(usize::MAX),
                )
            }));
            let scan = Arc::clone(&inner.scan);
            (replica, snap, window, pf, scan)
        };
        // A snapshot held since before a reset must not read the files that
        // now carry its names.
        replica.check_lineage(&snap)?;
        let read = match read_at(&replica, &snap, (&pf, &scan), buf, offset, window) {
            Err(e) if e.is_vanished() => {
                // A file vanished (compaction, retention): rebuild the same
                // TXID from what exists, proven the same state, re-pin it,
                // and read again.
                crate::log::info!(
                    "{}: {e}; re-planning TXID {}",
                    replica.io.storage.describe(),
                    snap.txid
                );
                let fresh = runtime::block_on(replica.replan(&snap))??;
                {
                    let mut inner = self.inner()?;
                    if let Lock::Shared(pinned) = &inner.lock
                        && Arc::ptr_eq(pinned, &snap)
                    {
                        inner.lock = Lock::Shared(Arc::clone(&fresh));
                    }
                    if let Some(t) = &mut inner.travel
                        && Arc::ptr_eq(&t.snapshot, &snap)
                    {
                        t.snapshot = Arc::clone(&fresh);
                    }
                }
                read_at(&replica, &fresh, (&pf, &scan), buf, offset, window)
            }
            other => other,
        };
        match read {
            // A file was written again since it was listed: the replica was
            // reset. Raised at once, never through the re-plan above, which
            // would look for the old state among the new lineage's files.
            Err(e) if e.is_rewritten() => {
                Err(runtime::block_on(replica.rewritten(&snap, &e.to_string()))?)
            }
            other => other,
        }
    }
}

impl Drop for DbFile {
    fn drop(&mut self) {
        if let Ok(inner) = self.inner.lock()
            && let Some(pf) = &inner.prefetch
        {
            pf.close();
        }
    }
}

fn read_at(
    replica: &Replica,
    snap: &Arc<Snapshot>,
    (pf, scan): (&Arc<Prefetcher>, &Arc<ScanBuf>),
    buf: &mut [u8],
    offset: u64,
    window: u32,
) -> Result<bool> {
    let page_size = u64::from(snap.page_size.get());
    let end = snap.size_bytes();
    let mut done = 0usize;
    let mut full = true;
    while done < buf.len() {
        let pos = offset + done as u64;
        let in_page = (pos % page_size) as usize;
        let want = (buf.len() - done).min(snap.page_size.bytes() - in_page);
        let dst = &mut buf[done..done + want];
        let pgno = PageNo(u32::try_from(pos / page_size + 1).unwrap_or(u32::MAX));
        if pos >= end {
            dst.fill(0);
            full = false;
        } else if pgno == lock_page(snap.page_size) {
            dst.fill(0);
        } else {
            replica::before_read(&replica.io.fetcher, snap, (pf, scan), pgno);
            let (page, missed) = replica
                .io
                .fetcher
                .read(snap, pgno, window, scan)?
                .ok_or_else(|| {
                    Error::Missing(format!(
                        "page {} of the database at TXID {} is in no LTX file of the replica",
                        pgno.0, snap.txid
                    ))
                })?;
            replica::after_read(
                &replica.io.fetcher,
                snap,
                (pf, scan),
                pgno,
                &page,
                missed,
                window,
            );
            if pgno.0 == 1 {
                let mut p1 = page.to_vec();
                page1::patch(&mut p1, snap.txid, snap.lineage, snap.page_count);
                dst.copy_from_slice(&p1[in_page..in_page + want]);
            } else {
                dst.copy_from_slice(&page[in_page..in_page + want]);
            }
        }
        done += want;
    }
    Ok(full)
}
