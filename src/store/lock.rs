//! The store's write lock: the process mutex (one writer thread per
//! process), then an exclusive `flock` of the store file (one writer
//! process per host), taken with a bounded wait. Past the bound the
//! operation goes on without the store: a read from storage, a write
//! skipped, never a hang.

use std::sync::TryLockError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::log;

use super::disk::DiskStore;
use super::os;

/// Longest a store operation waits for the write lock. A writer holds it
/// for one batch of slot writes (at most a fill range, 8 MiB, into the page
/// cache) or a catch-up of at most `CATCH_UP_MAX` slot headers:
/// milliseconds. A holder that keeps it for seconds is stopped (SIGSTOP, a
/// debugger) or stuck on a dying disk, and a read is better served from
/// storage than by waiting for it; so past this the operation goes on
/// without the store (`store_lock_timeouts` in the stats). Well below the
/// default `storage_timeout`; the replica lowers it to its
/// `storage_timeout` when that is shorter (`DiskStore::bound_lock_wait`),
/// so a query never waits longer for the store than for storage itself.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(2);
/// First pause between two tries at the lock; it doubles up to
/// `LOCK_RETRY_MAX`, so a short hold costs little latency and a long one
/// little CPU.
const LOCK_RETRY_MIN: Duration = Duration::from_micros(100);
const LOCK_RETRY_MAX: Duration = Duration::from_millis(20);

/// Holds the exclusive file lock (and the process mutex) while alive.
pub(super) struct Locked<'a> {
    store: &'a DiskStore,
    _mutex: std::sync::MutexGuard<'a, ()>,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = os::unlock(&self.store.file);
    }
}

impl DiskStore {
    /// Takes the write lock (the process mutex, then the file lock), waiting
    /// at most `lock_wait()`; a `LockBusy` error past it.
    pub(super) fn lock(&self) -> std::io::Result<Locked<'_>> {
        let limit = self.lock_wait();
        let deadline = Instant::now() + limit;
        let mut pause = LOCK_RETRY_MIN;
        let mut wait = || {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    LockBusy(limit),
                ));
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(LOCK_RETRY_MAX);
            Ok(())
        };
        let mutex = loop {
            match self.write.try_lock() {
                Ok(g) => break g,
                Err(TryLockError::Poisoned(_)) => {
                    return Err(std::io::Error::other("store lock poisoned"));
                }
                Err(TryLockError::WouldBlock) => wait()?,
            }
        };
        while !os::try_lock(&self.file)? {
            wait()?;
        }
        Ok(Locked {
            store: self,
            _mutex: mutex,
        })
    }

    /// A store operation could not finish: a lock that stayed taken skips
    /// it (counted); another failure pauses writes (see `write_failed`).
    pub(super) fn op_failed(&self, what: &str, e: &std::io::Error) {
        if is_lock_busy(e) {
            self.counters.lock_timeouts.fetch_add(1, Ordering::Relaxed);
            log::debug!("local store {}: {what} skipped: {e}", self.path.display());
        } else {
            self.write_failed(what, e);
        }
    }
}

/// The lock stayed taken for this long.
#[derive(Debug)]
struct LockBusy(Duration);

impl std::fmt::Display for LockBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another process or thread held the store's write lock for more than {:?}",
            self.0
        )
    }
}

impl std::error::Error for LockBusy {}

fn is_lock_busy(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<LockBusy>())
}
