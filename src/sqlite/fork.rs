//! Fork safety for the whole process: SQLite's static mutexes are held
//! across `fork()`.
//!
//! A child made by `fork()` has only the thread that forked. Had another
//! thread held one of SQLite's static mutexes at that instant (the main
//! mutex is taken by every `sqlite3_open` through `sqlite3_vfs_find`), it
//! stays locked in the child forever, and the child hangs at its first open.
//! Plain SQLite has this problem too; this extension fixes it for the whole
//! process: a `pthread_atfork` prepare handler takes the static mutexes, and
//! the parent and child handlers release them, so the child starts with all
//! of them free.
//!
//! The prepare handler only *tries* each mutex (`sqlite3_mutex_try`), backs
//! off and starts again when one is busy, and gives up after a bounded
//! number of rounds: a fork called from inside SQLite (a callback that holds
//! one of these mutexes) then proceeds as it would without us instead of
//! deadlocking on itself.

use std::ffi::{c_int, c_void};
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use super::api;
use super::ffi::SQLITE_OK;

/// The static mutexes, in SQLite's numbering: MAIN, MEM, OPEN (MEM2), PRNG,
/// LRU, PMEM (LRU2), APP1..3, VFS1..3.
const STATIC_IDS: [c_int; 12] = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
/// Rounds of "try every mutex" before the fork goes ahead without them...
const ROUNDS: u32 = 200;
/// ...with this pause between rounds: at most about 100 ms per fork, far
/// longer than SQLite holds any of them.
const BACKOFF: std::time::Duration = std::time::Duration::from_micros(500);

static MUTEXES: [AtomicPtr<c_void>; STATIC_IDS.len()] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; STATIC_IDS.len()];
/// How many of `MUTEXES` (from the first) the prepare handler holds.
static HELD: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

/// Looks up the static mutexes and installs the handlers, once per process.
/// Call after the API table is set.
pub fn install() {
    INSTALL.call_once(|| {
        let Some(alloc) = api::get().and_then(|a| a.mutex_alloc) else {
            return;
        };
        for (slot, id) in MUTEXES.iter().zip(STATIC_IDS) {
            // SAFETY: a static mutex id returns SQLite's preexisting static
            // mutex (or null when SQLite is built without mutexes); it lives
            // for the process and must not be freed.
            slot.store(unsafe { alloc(id) }, Ordering::Release);
        }
        // SAFETY: the handlers are plain extern "C" functions that live for
        // the process; pthread_atfork only records them.
        unsafe {
            libc::pthread_atfork(Some(prepare), Some(release), Some(release));
        }
    });
}

extern "C" fn prepare() {
    let Some(api) = api::get() else { return };
    let (Some(try_lock), Some(leave)) = (api.mutex_try, api.mutex_leave) else {
        return;
    };
    for _ in 0..ROUNDS {
        let mut got = 0;
        for slot in &MUTEXES {
            let m = slot.load(Ordering::Acquire);
            // SAFETY: `m` is a static SQLite mutex (or null, skipped below,
            // counted as held so that release skips it too).
            if !m.is_null() && unsafe { try_lock(m) } != SQLITE_OK {
                break;
            }
            got += 1;
        }
        if got == MUTEXES.len() {
            HELD.store(got, Ordering::Release);
            return;
        }
        // One was busy: let go of what we hold (so that its holder, who may
        // be waiting for one of ours, can finish) and try again.
        // SAFETY: exactly the first `got` mutexes were taken by this thread.
        unsafe { release_first(got, leave) };
        std::thread::sleep(BACKOFF);
    }
    HELD.store(0, Ordering::Release);
}

/// Parent and child side: the forking thread (the child's only thread)
/// releases what prepare took.
extern "C" fn release() {
    let held = HELD.swap(0, Ordering::AcqRel);
    if let Some(leave) = api::get().and_then(|a| a.mutex_leave) {
        // SAFETY: prepare, on this same thread, took the first `held`.
        unsafe { release_first(held, leave) };
    }
}

/// # Safety
/// The calling thread must hold the first `n` non-null mutexes.
unsafe fn release_first(n: usize, leave: unsafe extern "C" fn(*mut c_void)) {
    for slot in MUTEXES.iter().take(n).rev() {
        let m = slot.load(Ordering::Acquire);
        if !m.is_null() {
            // SAFETY: held by this thread (the caller's contract).
            unsafe { leave(m) };
        }
    }
}
