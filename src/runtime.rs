//! Process-wide state: the tokio runtime that runs storage I/O and pollers,
//! [`supervise`] for the background tasks on it, and [`per_epoch`] values
//! for other modules (the replica registry).
//!
//! All of it hangs off one value per *fork epoch*. A child made by
//! `fork()` has none of its parent's threads, and any lock another thread
//! held at that instant stays held forever in the child. So the child never
//! touches its parent's `Process`: a `pthread_atfork` child handler bumps the
//! epoch, and the next call here builds a fresh value (runtime, registry)
//! for the child. The parent's value is leaked in the child on purpose:
//! dropping it would wait for threads that do not exist there.

use std::future::Future;
#[cfg(unix)]
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use tokio::runtime::Runtime;

use crate::error::{Error, Result};
use crate::log;

/// Worker threads of the runtime. Storage I/O is mostly waiting, so two
/// threads keep several pollers and prefetches moving without taking cores
/// from the host.
const WORKER_THREADS: usize = 2;

static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);
static CURRENT: Epochal<Process> = Epochal::new();
#[cfg(unix)]
static ATFORK: Once = Once::new();

/// Process-wide state of one fork epoch.
#[derive(Default)]
pub struct Process {
    runtime: OnceLock<std::result::Result<Runtime, String>>,
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
}

#[cfg(unix)]
extern "C" fn after_fork_in_child() {
    FORK_EPOCH.fetch_add(1, Ordering::SeqCst);
}

/// The current fork epoch; changes in a child after `fork()`.
pub fn fork_epoch() -> u64 {
    FORK_EPOCH.load(Ordering::Acquire)
}

/// A value of type `T` per fork epoch: a `static` of this type holds the
/// current epoch's value, and a child after `fork()` gets a fresh one.
pub struct Epochal<T> {
    slot: ArcSwapOption<Epoch<T>>,
}

/// A value and the fork epoch it belongs to; derefs to the value.
pub struct Epoch<T> {
    pub epoch: u64,
    value: T,
}

impl<T> std::ops::Deref for Epoch<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> Epochal<T> {
    pub const fn new() -> Epochal<T> {
        Epochal {
            slot: ArcSwapOption::const_empty(),
        }
    }
}

impl<T> Default for Epochal<T> {
    fn default() -> Self {
        Epochal::new()
    }
}

/// The value of `cell` for this fork epoch, made with `T::default()` on
/// first use in the epoch. Lock-free, so that a child never waits for a
/// lock that a vanished parent thread held.
pub fn per_epoch<T: Default>(cell: &Epochal<T>) -> Arc<Epoch<T>> {
    install_atfork();
    loop {
        let epoch = fork_epoch();
        let cur = cell.slot.load_full();
        if let Some(p) = &cur
            && p.epoch == epoch
        {
            return Arc::clone(p);
        }
        let fresh = Arc::new(Epoch {
            epoch,
            value: T::default(),
        });
        let prev = cell.slot.compare_and_swap(&cur, Some(Arc::clone(&fresh)));
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

fn install_atfork() {
    // No fork() on Windows, so nothing to register there.
    #[cfg(unix)]
    ATFORK.call_once(|| {
        // SAFETY: the child handler only touches an atomic, which is
        // async-signal-safe as the child side of pthread_atfork requires.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

/// The runtime state of this process (of this fork epoch).
pub fn process() -> Arc<Epoch<Process>> {
    per_epoch(&CURRENT)
}

/// Runs a future to completion from a synchronous caller (an SQLite
/// callback), on the calling thread.
///
/// A host that calls SQLite from inside a tokio runtime of its own (an
/// async task, `spawn_blocking`) cannot simply block there. On a
/// multi-threaded host runtime, `block_in_place` hands the worker's other
/// tasks to another thread and lets this one block, with no thread started.
/// A current-thread host runtime has no other worker to hand them to, so
/// that call alone moves to a short-lived scoped thread (the future borrows
/// the caller's stack, so it cannot go to a long-lived one safely).
pub fn block_on<F>(fut: F) -> Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let process = process();
    let rt = process.runtime()?;
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => Ok(rt.block_on(fut)),
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
            Ok(tokio::task::block_in_place(|| rt.block_on(fut)))
        }
        Ok(_) => std::thread::scope(|s| s.spawn(|| rt.block_on(fut)).join())
            .map_err(|_| Error::Internal("storage call panicked".into())),
    }
}

/// First pause before a supervised task that panicked is started again...
const RESTART_BACKOFF: Duration = Duration::from_millis(100);
/// ...doubling on each panic in a row up to this, so that a task that
/// panics at once on every start costs a log line and a restart every 30 s,
/// not a busy loop. A task that ran this long before it panicked starts
/// again after the first pause.
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Runs the task `make` builds on the current runtime, supervised: when it
/// panics, the panic is logged and passed to `on_panic` (which counts it in
/// the replica's stats), and a fresh task from `make` starts after a
/// backoff. Supervision ends when a task returns (or the runtime shuts
/// down); `make` is dropped then.
pub fn supervise<M, F>(name: String, on_panic: impl Fn(&str) + Send + 'static, mut make: M)
where
    M: FnMut() -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut backoff = RESTART_BACKOFF;
        loop {
            let started = Instant::now();
            match tokio::spawn(make()).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    let why = panic_message(e.into_panic().as_ref());
                    on_panic(&why);
                    if started.elapsed() >= RESTART_BACKOFF_MAX {
                        backoff = RESTART_BACKOFF;
                    }
                    log::error!("{name} panicked ({why}); restarting it in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(RESTART_BACKOFF_MAX);
                }
                // Cancelled: the runtime shuts down.
                Err(_) => return,
            }
        }
    });
}

/// Runs `f` on tokio's blocking pool and waits for it: for file I/O, store
/// locks and decoding from async code, which must never block a worker
/// (two workers carry every poller and prefetch of the process). A panic
/// in `f` comes back as an error naming `what`.
pub async fn off_worker<T, F>(what: &'static str, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        let why = match e.try_into_panic() {
            Ok(p) => panic_message(p.as_ref()),
            Err(e) => e.to_string(),
        };
        Error::Internal(format!("{what} failed on the blocking pool: {why}"))
    })
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here() -> std::thread::ThreadId {
        std::thread::current().id()
    }

    #[test]
    fn inside_a_multithreaded_host_runtime_no_thread_is_started() {
        let host = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let (caller, polled) = host.block_on(async {
            tokio::spawn(async { (here(), block_on(async { here() }).unwrap()) })
                .await
                .unwrap()
        });
        assert_eq!(caller, polled, "the storage call ran on another thread");
        // Inside the host's own block_on (not a worker thread) too.
        assert_eq!(host.block_on(async { block_on(async { 9 }).unwrap() }), 9);
    }

    #[test]
    fn outside_any_runtime_and_on_a_current_thread_one_it_works() {
        assert_eq!(block_on(async { 7 }).unwrap(), 7);
        let host = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(host.block_on(async { block_on(async { 8 }).unwrap() }), 8);
    }
}
