//! The store's write lock: the process mutex (one writer thread per
//! process), then the exclusive lock of the store file (one writer process
//! per host; `std::fs::File::try_lock`: `flock` on Unix, `LockFileEx` on
//! Windows, see `os::try_lock`), taken with a bounded wait: tries, with
//! pauses between them, never a blocking `lock` that could not be
//! bounded. Past the bound the operation goes on without the store: a
//! read from storage, a write skipped, never a hang. After a wait timed
//! out, the next operations try the lock once and do not wait (for
//! `BUSY_RETRY`, or until one takes it): a holder that stays stopped
//! costs a query one wait, not one per page it misses.

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
/// After a wait for the lock timed out, operations try it once, without
/// waiting, for this long (or until one of them takes it). A query that
/// misses many pages while another process sits on the lock (stopped, or
/// stuck on a dying disk) then waits once, not once per page: each of
/// those waits would be within `storage_timeout`, but a query making
/// dozens of them would hang its host for minutes.
const BUSY_RETRY: Duration = Duration::from_secs(10);

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
    /// at most `lock_wait()`, or trying once while a recent wait timed out
    /// (`BUSY_RETRY`); a `LockBusy` error past it.
    pub(super) fn lock(&self) -> std::io::Result<Locked<'_>> {
        let busy = self.recently_busy();
        let limit = if busy {
            Duration::ZERO
        } else {
            self.lock_wait()
        };
        let result = self.lock_within(limit);
        match &result {
            Ok(_) if busy => *self.busy_until() = None,
            Err(e) if !busy && is_lock_busy(e) => {
                self.counters.lock_waits.fetch_add(1, Ordering::Relaxed);
                *self.busy_until() = Some(Instant::now() + BUSY_RETRY);
            }
            _ => {}
        }
        result
    }

    fn busy_until(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.lock_busy_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a wait for the lock timed out less than `BUSY_RETRY` ago
    /// and no one took the lock since: writes now are likely skipped, so
    /// work whose only purpose is a write (a hydration fetch) waits.
    pub fn recently_busy(&self) -> bool {
        self.busy_until().is_some_and(|t| Instant::now() < t)
    }

    /// Whether the write lock can be taken right now (tried once, never
    /// waited for); taking it ends a `recently_busy` spell.
    pub fn lock_is_free(&self) -> bool {
        let free = self.lock_within(Duration::ZERO).is_ok();
        if free {
            *self.busy_until() = None;
        }
        free
    }

    fn lock_within(&self, limit: Duration) -> std::io::Result<Locked<'_>> {
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
        if self.0.is_zero() {
            // Tried once, as a wait timed out a moment ago (`BUSY_RETRY`).
            write!(
                f,
                "another process or thread still held the store's write lock"
            )
        } else {
            write!(
                f,
                "another process or thread held the store's write lock for more than {:?}",
                self.0
            )
        }
    }
}

impl std::error::Error for LockBusy {}

fn is_lock_busy(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<LockBusy>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::PageSize;
    use crate::store::Capacity;

    fn store(dir: &tempfile::TempDir) -> DiskStore {
        let path = dir.path().join("r.pages");
        let page_size = PageSize::new(4096).unwrap();
        DiskStore::open(
            &path,
            "file:///replica",
            page_size,
            Capacity::Unbounded,
            false,
        )
        .unwrap()
    }

    fn other_open(s: &DiskStore) -> std::fs::File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&s.path)
            .unwrap()
    }

    /// The write lock excludes another open of the store file (another
    /// process) both ways, and its guard releases it.
    #[test]
    fn the_write_lock_excludes_another_open_and_its_guard_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let other = other_open(&s);
        let held = s.lock().unwrap();
        assert!(!os::try_lock(&other).unwrap(), "held by the store");
        drop(held);
        assert!(os::try_lock(&other).unwrap(), "the guard released it");
    }

    /// Another open holding the lock: `lock` gives up at the bound with
    /// a `LockBusy` error, which `op_failed` counts as a lock timeout (not
    /// a write error), and the lock is taken again once the holder lets go.
    #[test]
    fn the_bounded_wait_times_out_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let bound = Duration::from_millis(30);
        s.bound_lock_wait(bound);
        let other = other_open(&s);
        assert!(os::try_lock(&other).unwrap());
        let started = Instant::now();
        let e = s.lock().err().expect("the lock is held elsewhere");
        assert!(started.elapsed() >= bound, "gave up before the bound");
        assert!(is_lock_busy(&e), "{e}");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("write lock"), "{e}");
        s.op_failed("a test write", &e);
        assert_eq!(s.counters.lock_timeouts.load(Ordering::Relaxed), 1);
        assert!(!s.writes_paused(), "a busy lock is not a failing disk");
        os::unlock(&other).unwrap();
        drop(s.lock().unwrap());
    }

    /// A holder that stays: the first operation waits the bound, the next
    /// ones try once and go on at once (a query that misses many pages
    /// waits once, not once per page). A lock taken again ends that; a new
    /// hold is waited for again.
    #[test]
    fn a_holder_that_stays_costs_one_wait_not_one_per_operation() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        s.bound_lock_wait(Duration::from_millis(30));
        let waits = || s.counters.lock_waits.load(Ordering::Relaxed);
        let other = other_open(&s);
        assert!(os::try_lock(&other).unwrap());
        for _ in 0..5 {
            let e = s.lock().err().expect("the lock is held elsewhere");
            assert!(is_lock_busy(&e), "{e}");
            assert!(e.to_string().contains("write lock"), "{e}");
        }
        assert_eq!(waits(), 1, "the operations after the first did not wait");

        os::unlock(&other).unwrap();
        drop(s.lock().expect("a free lock is taken at the first try"));
        assert!(!s.recently_busy());
        assert!(os::try_lock(&other).unwrap());
        assert!(s.lock().is_err());
        assert_eq!(waits(), 2, "a new hold is waited for again");
    }

    /// A bound of zero (a `storage_timeout` that small) still tries once:
    /// a free lock is taken without waiting.
    #[test]
    fn a_zero_bound_still_takes_a_free_lock() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        s.bound_lock_wait(Duration::ZERO);
        drop(s.lock().unwrap());
        let other = other_open(&s);
        assert!(os::try_lock(&other).unwrap());
        assert!(is_lock_busy(&s.lock().err().unwrap()));
    }
}
