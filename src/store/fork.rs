//! Store descriptors a child made by `fork()` must not keep.
//!
//! A `flock` belongs to an open file description, and `fork()` gives the
//! child a descriptor of each of the parent's. A child that kept the
//! parent's fill-lock descriptor would keep the fill lock after the parent
//! exits (the kernel drops it at the last close of the description), so no
//! process could become the filler while the child lives; and a `LOCK_UN`
//! from the child would release the lock the parent still relies on.
//! `O_CLOEXEC` (std opens every file with it) helps across `exec` only.
//!
//! So every descriptor of the store is listed here, and a `pthread_atfork`
//! child handler points each listed descriptor of the child at `/dev/null`
//! (`dup2`): the child's copy no longer refers to the parent's description,
//! so it neither holds nor can release the parent's lock, while the
//! parent's lock stays as it was (its own descriptor still holds it). The
//! descriptor number stays taken, so a `File` of the parent's epoch that the
//! child drops one day (see `runtime`: the parent's state is not used in
//! the child) closes only `/dev/null`, never a descriptor opened since.
//! The child's own replica (a new fork epoch) opens the store again and
//! competes for the fill lock like any other process: nothing in it
//! believes it holds the parent's.
//!
//! A descriptor is listed right after its open; a fork between the two
//! would leave the child an unlisted copy. The prepare handler closes that
//! window: it waits (bounded) for opens under way, and opens wait while a
//! fork is under way.

use std::fs::File;

#[cfg(unix)]
mod imp {
    use std::os::fd::AsRawFd;
    use std::sync::Once;
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// Descriptors listed at once: a store file and a fill lock per
    /// replica with a store, far more than a process opens. A descriptor
    /// that finds no free place is used unlisted (a child would keep it).
    const SLOTS: usize = 256;
    /// Longest a fork waits for opens under way: an open of a local file
    /// takes microseconds.
    const FORK_WAIT: Duration = Duration::from_millis(100);

    static LISTED: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
    /// Opens between their start and their listing.
    static OPENING: AtomicUsize = AtomicUsize::new(0);
    /// A fork is between its prepare and its parent/child handler.
    static FORKING: AtomicBool = AtomicBool::new(false);
    static INSTALL: Once = Once::new();

    /// Marks an open under way (see the module documentation).
    pub struct Opening(());

    impl Opening {
        pub fn start() -> Opening {
            install();
            loop {
                while FORKING.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                OPENING.fetch_add(1, Ordering::SeqCst);
                if !FORKING.load(Ordering::SeqCst) {
                    return Opening(());
                }
                OPENING.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    impl Drop for Opening {
        fn drop(&mut self) {
            OPENING.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Lists the descriptor of `file`: its place and number, `None` when
    /// the list is full.
    pub fn list(file: &super::File) -> Option<(usize, i32)> {
        let fd = file.as_raw_fd();
        LISTED
            .iter()
            .position(|s| {
                s.compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            })
            .map(|slot| (slot, fd))
    }

    /// Unlists `fd` if it is still at `slot`. In a child the handler has
    /// cleared the list, and the place may hold a descriptor of the
    /// child's since; it cannot hold the same number, which stays taken
    /// (by /dev/null) until the `File` is closed, after this.
    pub fn unlist((slot, fd): (usize, i32)) {
        if let Some(s) = LISTED.get(slot) {
            let _ = s.compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// Whether `file`'s descriptor is listed.
    #[cfg(test)]
    pub fn is_listed(file: &super::File) -> bool {
        let fd = file.as_raw_fd();
        LISTED.iter().any(|s| s.load(Ordering::SeqCst) == fd)
    }

    fn install() {
        INSTALL.call_once(|| {
            // SAFETY: the handlers are plain extern "C" functions that live
            // for the process; pthread_atfork only records them.
            unsafe {
                libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
            }
        });
    }

    extern "C" fn prepare() {
        FORKING.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + FORK_WAIT;
        while OPENING.load(Ordering::SeqCst) != 0 && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }

    extern "C" fn parent() {
        FORKING.store(false, Ordering::SeqCst);
    }

    /// Runs in the child right after `fork()`: only async-signal-safe
    /// calls (open, dup2, fcntl, close) and atomics.
    extern "C" fn child() {
        // The threads that were opening are not in the child.
        OPENING.store(0, Ordering::SeqCst);
        FORKING.store(false, Ordering::SeqCst);
        // SAFETY: a static NUL-terminated path; open is async-signal-safe.
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if null < 0 {
            // No /dev/null (a bare chroot): keep the descriptors rather
            // than close numbers that leaked `File`s still own.
            return;
        }
        for slot in &LISTED {
            let fd = slot.swap(-1, Ordering::SeqCst);
            if fd < 0 || fd == null {
                continue;
            }
            // SAFETY: `fd` is a descriptor the parent listed and the child
            // inherited; dup2 replaces it atomically with /dev/null, and
            // fcntl sets close-on-exec again (dup2 clears it). Both are
            // async-signal-safe.
            unsafe {
                if libc::dup2(null, fd) == fd {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
        }
        // SAFETY: our own descriptor from the open above.
        unsafe { libc::close(null) };
    }
}

/// A listed descriptor: unlisted when dropped. Declare it before the
/// `File` it lists in a struct, so that it is unlisted before the file is
/// closed (fields drop in order).
#[derive(Debug)]
pub struct Listed {
    #[cfg(unix)]
    slot: Option<(usize, i32)>,
}

impl Drop for Listed {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(slot) = self.slot {
            imp::unlist(slot);
        }
    }
}

/// Opens a file with `open` and lists its descriptor, with no fork in
/// between (see the module documentation).
pub fn open_listed<E>(open: impl FnOnce() -> Result<File, E>) -> Result<(File, Listed), E> {
    #[cfg(unix)]
    {
        let _opening = imp::Opening::start();
        let file = open()?;
        let slot = imp::list(&file);
        Ok((file, Listed { slot }))
    }
    #[cfg(not(unix))]
    {
        Ok((open()?, Listed {}))
    }
}

#[cfg(all(test, unix))]
pub use imp::is_listed;
