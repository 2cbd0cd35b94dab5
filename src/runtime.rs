//! Process-wide state: the tokio runtime that runs storage I/O and pollers,
//! and the replica registry.
//!
//! All of it hangs off one [`Process`] value per *fork epoch*. A child made by
//! `fork()` has none of its parent's threads, and any lock another thread
//! held at that instant stays held forever in the child. So the child never
//! touches its parent's `Process`: a `pthread_atfork` child handler bumps the
//! epoch, and the next call here builds a fresh `Process` (runtime, registry)
//! for the child. The parent's value is leaked in the child on purpose:
//! dropping it would wait for threads that do not exist there.

use std::future::Future;
#[cfg(unix)]
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;

use tokio::runtime::Runtime;

use crate::error::{Error, Result};
use crate::replica::Registry;

/// Worker threads of the runtime. Storage I/O is mostly waiting, so two
/// threads keep several pollers and prefetches moving without taking cores
/// from the host.
const WORKER_THREADS: usize = 2;

static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);
static CURRENT: ArcSwapOption<Process> = ArcSwapOption::const_empty();
#[cfg(unix)]
static ATFORK: Once = Once::new();

/// Process-wide state of one fork epoch.
pub struct Process {
    epoch: u64,
    runtime: OnceLock<std::result::Result<Runtime, String>>,
    registry: Registry,
}

impl Process {
    /// The runtime, created on first use (not at load time).
    pub fn runtime(&self) -> Result<&Runtime> {
        self.runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(WORKER_THREADS)
                    .thread_name("litestream-vfs")
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::Internal(format!("cannot start the I/O runtime: {e}")))
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(unix)]
extern "C" fn after_fork_in_child() {
    FORK_EPOCH.fetch_add(1, Ordering::SeqCst);
}

/// The current fork epoch; changes in a child after `fork()`.
pub fn fork_epoch() -> u64 {
    FORK_EPOCH.load(Ordering::Acquire)
}

/// The state of this process (of this fork epoch). Lock-free, so that a
/// child never waits for a lock that a vanished parent thread held.
pub fn process() -> Arc<Process> {
    // No fork() on Windows, so nothing to register there.
    #[cfg(unix)]
    ATFORK.call_once(|| {
        // SAFETY: the child handler only touches an atomic, which is
        // async-signal-safe as the child side of pthread_atfork requires.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
    loop {
        let epoch = fork_epoch();
        let cur = CURRENT.load_full();
        if let Some(p) = &cur {
            if p.epoch == epoch {
                return Arc::clone(p);
            }
        }
        let fresh = Arc::new(Process {
            epoch,
            runtime: OnceLock::new(),
            registry: Registry::default(),
        });
        let prev = CURRENT.compare_and_swap(&cur, Some(Arc::clone(&fresh)));
        let swapped = match (&*prev, &cur) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if swapped {
            // The parent's state is leaked in the child on purpose (module docs).
            std::mem::forget(cur);
            return fresh;
        }
    }
}

/// Runs a future to completion from a synchronous caller (an SQLite
/// callback). A host that calls SQLite from inside a tokio runtime of its own
/// (an async task, `spawn_blocking`) cannot block there, so that call is
/// moved to a short-lived thread of its own.
pub fn block_on<F>(fut: F) -> Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let process = process();
    let rt = process.runtime()?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(rt.block_on(fut));
    }
    std::thread::scope(|s| s.spawn(|| rt.block_on(fut)).join())
        .map_err(|_| Error::Internal("storage call panicked".into()))
}
