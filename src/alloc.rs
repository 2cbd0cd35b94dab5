//! The library's allocator: the system's, with one difference. A block the
//! size of a cached page (a page of 512 to 65,536 bytes and its reference
//! counts) that is freed goes to a free list of its size, and the next
//! page of that size takes it from there, whatever thread asks.
//!
//! Why: pages are decoded on the blocking pool's threads, and glibc gives
//! each thread an arena of its own. A full cache frees a page for every
//! page it takes in; freed into the arena of the thread that decoded it
//! and taken from the arena of the thread that decodes next, the memory
//! of the pages spreads over every arena, each keeping its own high-water
//! mark: a cold scan with `cache_size=64MB` measured 174 MB of RSS for
//! 94 MB of live heap, 142 MB of it in eleven arenas. Reused from one
//! list, a page's memory is taken again as soon as it is freed.
//!
//! The blocks of the lists are carved from slabs of [`SLAB`] bytes mapped
//! from the kernel (Unix), never from the arenas, so that pages and the
//! small allocations between them do not fragment each other. Page blocks
//! are not given back to the kernel: the memory of pages stays at the
//! high-water mark of the pages alive at once (about `cache_size`, plus the
//! pages of the reads in flight), reused from then on.
//!
//! And a block of [`LARGE`] bytes or more (a response body of a ranged
//! read, up to a few MiB) is mapped from the kernel on its own and unmapped
//! when freed (on Unix): glibc would serve the first from `mmap` and then,
//! having seen one freed, raise its threshold and serve the next ones from
//! the arenas, where they stay as holes between pages long after the read.
//!
//! Everything else goes to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Smallest and largest SQLite page sizes, as powers of two.
const MIN_SHIFT: u32 = 9;
const MAX_SHIFT: u32 = 16;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// What a shared page (`Arc<[u8]>`) adds to its bytes: its two counts.
const ARC_HEADER: usize = 2 * std::mem::size_of::<usize>();
/// Bytes of a slab that page blocks are carved from.
const SLAB: usize = 1024 * 1024;
/// Alignment every block of the lists satisfies (what `malloc` returns).
const BLOCK_ALIGN: usize = 16;
/// Blocks at least this large are mapped on their own (Unix).
const LARGE: usize = 1024 * 1024;

/// A free list (the first word of each free block points to the next), and
/// the slab the next new block is carved from (`next..end`).
struct List {
    head: usize,
    next: usize,
    end: usize,
}

/// The library's global allocator (see the module docs).
pub struct PageAlloc {
    lists: [Slot; CLASSES],
    /// The slots `before_fork` took (one bit per size class), released
    /// again after the fork in the parent and in the child.
    taken_for_fork: AtomicU32,
}

impl PageAlloc {
    pub const fn new() -> PageAlloc {
        PageAlloc {
            lists: [const {
                Slot {
                    busy: AtomicBool::new(false),
                    list: UnsafeCell::new(List {
                        head: 0,
                        next: 0,
                        end: 0,
                    }),
                }
            }; CLASSES],
            taken_for_fork: AtomicU32::new(0),
        }
    }
}

impl Default for PageAlloc {
    fn default() -> Self {
        PageAlloc::new()
    }
}

/// The list of blocks of `layout`, if it is a page-sized block.
fn class_of(layout: Layout) -> Option<usize> {
    if !cfg!(unix) || layout.align() > BLOCK_ALIGN {
        return None;
    }
    let page = layout.size().checked_sub(ARC_HEADER)?;
    if !page.is_power_of_two() {
        return None;
    }
    let shift = page.trailing_zeros();
    if !(MIN_SHIFT..=MAX_SHIFT).contains(&shift) {
        return None;
    }
    usize::try_from(shift - MIN_SHIFT).ok()
}

/// A list behind a spin lock (held for a few instructions, or one `mmap`):
/// unlike a mutex it can be reset in a forked child, where the thread that
/// held it no longer exists (see [`after_fork_in_child`]).
struct Slot {
    busy: AtomicBool,
    list: UnsafeCell<List>,
}

// SAFETY: `list` is only reached through a `Held`, which exists only while
// `busy` is set by its holder (one at a time).
unsafe impl Sync for Slot {}

struct Held<'a>(&'a Slot);

impl std::ops::Deref for Held<'_> {
    type Target = List;
    fn deref(&self) -> &List {
        // SAFETY: this guard holds the slot's lock: no other reference.
        unsafe { &*self.0.list.get() }
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut List {
        // SAFETY: this guard holds the slot's lock: no other reference.
        unsafe { &mut *self.0.list.get() }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

fn lock(slot: &Slot) -> Held<'_> {
    let mut spins = 0u32;
    while slot
        .busy
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins = spins.saturating_add(1);
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    Held(slot)
}

/// Attempts `before_fork` makes per slot: a holder keeps a slot for a few
/// instructions or one `mmap`, so this is only ever reached when a thread
/// was stopped while holding one (then the child resets the slot instead).
const FORK_TRIES: u32 = 100_000;

impl PageAlloc {
    /// Before a fork: takes every slot, so that no other thread is half-way
    /// through changing a list when the child's copy of memory is taken
    /// (as glibc's malloc does with its arenas).
    fn before_fork(&self) {
        let mut taken = 0u32;
        for (i, slot) in self.lists.iter().enumerate() {
            for n in 0..FORK_TRIES {
                if slot
                    .busy
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    taken |= 1 << i;
                    break;
                }
                if n % 64 == 63 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        self.taken_for_fork.store(taken, Ordering::Release);
    }

    /// After a fork, in the parent: gives back what `before_fork` took.
    fn after_fork_in_parent(&self) {
        let taken = self.taken_for_fork.swap(0, Ordering::AcqRel);
        for (i, slot) in self.lists.iter().enumerate() {
            if taken & (1 << i) != 0 {
                slot.busy.store(false, Ordering::Release);
            }
        }
    }

    /// In a child just forked (one thread): the slots `before_fork` took
    /// are released. One it could not take (its holder was stopped) is
    /// released too, and a slab the holder was half-way through taking is
    /// dropped (its blocks are lost to the child, never handed out twice).
    fn after_fork_in_child(&self) {
        let taken = self.taken_for_fork.swap(0, Ordering::AcqRel);
        for (i, slot) in self.lists.iter().enumerate() {
            if slot.busy.swap(false, Ordering::AcqRel) && taken & (1 << i) == 0 {
                // SAFETY: the child has one thread and no guard of this slot
                // lives in it (its holder was another thread of the parent).
                let l = unsafe { &mut *slot.list.get() };
                l.next = 0;
                l.end = 0;
            }
        }
    }
}

#[cfg(unix)]
extern "C" fn before_fork() {
    crate::ALLOCATOR.before_fork();
}

#[cfg(unix)]
extern "C" fn after_fork_in_parent() {
    crate::ALLOCATOR.after_fork_in_parent();
}

#[cfg(unix)]
extern "C" fn after_fork_in_child() {
    crate::ALLOCATOR.after_fork_in_child();
}

/// Registered at the first page-sized allocation.
#[cfg(unix)]
fn register_fork_handler() {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if !REGISTERED.load(Ordering::Relaxed) && !REGISTERED.swap(true, Ordering::AcqRel) {
        // SAFETY: registers handlers that only touch atomics and the lists
        // of the global allocator, and allocate nothing; glibc allocates
        // its record with its own malloc, not through this allocator.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_in_parent),
                Some(after_fork_in_child),
            )
        };
    }
}

// SAFETY: every block handed out is either fresh from `System` with the
// caller's layout, a large block mapped for it alone, or a page block of
// its size class: carved once from a slab (each byte of a slab belongs to
// one block) or taken off the class's free list, where only its previous
// owner's `dealloc` put it. A freed block is written only while it is on a
// list, under the list's lock, and leaves the list before it is handed out
// again. Page blocks are never given to `System`.
unsafe impl GlobalAlloc for PageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        #[cfg(test)]
        meter::add(layout.size());
        if let Some(list) = class_of(layout).and_then(|c| self.lists.get(c)) {
            // Before the lock: glibc's fork holds its own lock while it
            // calls `before_fork`, which waits for this one.
            #[cfg(unix)]
            register_fork_handler();
            let mut l = lock(list);
            if l.head != 0 {
                let block = l.head as *mut usize;
                // SAFETY: `head` is a block on this list (see above), at
                // least a word long and word aligned; its first word holds
                // the next block's address.
                l.head = unsafe { block.read() };
                return block.cast();
            }
            let size = layout.size().next_multiple_of(BLOCK_ALIGN);
            if l.end - l.next < size {
                let slab = map(SLAB);
                if slab.is_null() {
                    return slab;
                }
                l.next = slab as usize;
                l.end = l.next + SLAB;
            }
            let block = l.next;
            l.next += size;
            return block as *mut u8;
        }
        if is_large(layout) {
            return map(layout.size());
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        #[cfg(test)]
        meter::sub(layout.size());
        if let Some(list) = class_of(layout).and_then(|c| self.lists.get(c)) {
            let mut l = lock(list);
            // SAFETY: the caller gives the block up; it is at least a word
            // long and aligned to `BLOCK_ALIGN`, so its first word may hold
            // the link.
            unsafe { ptr.cast::<usize>().write(l.head) };
            l.head = ptr as usize;
            return;
        }
        if is_large(layout) {
            // SAFETY: a large block was mapped by `map` with this size.
            return unsafe { unmap(ptr, layout.size()) };
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class_of(layout).is_some() {
            // SAFETY: as `alloc`; a reused block is zeroed here.
            let ptr = unsafe { self.alloc(layout) };
            if !ptr.is_null() {
                // SAFETY: `ptr` holds `layout.size()` writable bytes.
                unsafe { ptr.write_bytes(0, layout.size()) };
            }
            return ptr;
        }
        #[cfg(test)]
        meter::add(layout.size());
        if is_large(layout) {
            // Fresh mappings are zeroed by the kernel.
            return map(layout.size());
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align(new_size, layout.align());
        let ours = |l: Layout| class_of(l).is_some() || is_large(l);
        let either = ours(layout) || new.as_ref().is_ok_and(|n| ours(*n));
        if !either {
            #[cfg(test)]
            meter::moved(layout.size(), new_size);
            // SAFETY: neither size is a class: the block is the system's.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let Ok(new) = new else {
            return std::ptr::null_mut();
        };
        #[cfg(target_os = "linux")]
        if is_large(layout) && is_large(new) {
            #[cfg(test)]
            meter::moved(layout.size(), new_size);
            // A growing buffer (a body being collected) moves its pages
            // instead of copying them, as glibc does for its own mappings.
            // SAFETY: `ptr` is a mapping of `layout.size()` bytes that `map`
            // made; on success the old mapping is gone and the new one
            // holds its bytes.
            let moved =
                unsafe { libc::mremap(ptr.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE) };
            return if moved == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                moved.cast()
            };
        }
        // SAFETY: a fresh block of the new layout, the old bytes copied
        // (the smaller of both sizes), then the old block freed by the
        // path that allocated it.
        unsafe {
            let fresh = self.alloc(new);
            if !fresh.is_null() {
                std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            fresh
        }
    }
}

/// What the current thread holds of the heap, in test builds: the bytes it
/// allocated and has not freed, and their peak. Tests of the decoders of
/// untrusted files assert with it that a number a file merely claims (a
/// page count of billions) costs no memory. Blocks freed by another thread
/// than the one that took them skew both threads' counts: measure work
/// that runs on one thread.
#[cfg(test)]
pub mod meter {
    use std::cell::Cell;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn signed(n: usize) -> isize {
        isize::try_from(n).unwrap_or(isize::MAX)
    }

    pub(super) fn add(n: usize) {
        let _ = LIVE.try_with(|live| {
            let now = live.get().saturating_add(signed(n));
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    pub(super) fn sub(n: usize) {
        let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(signed(n))));
    }

    pub(super) fn moved(old: usize, new: usize) {
        add(new);
        sub(old);
    }

    /// Runs `f`; returns its answer and the most bytes this thread held
    /// at once while it ran, beyond what it held before.
    pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(before));
        let out = f();
        let peak = PEAK.with(Cell::get);
        (
            out,
            usize::try_from(peak.saturating_sub(before)).unwrap_or(0),
        )
    }
}

/// Whether `layout` is a large block, mapped on its own.
fn is_large(layout: Layout) -> bool {
    cfg!(unix) && layout.size() >= LARGE && layout.align() <= page_size()
}

/// The smallest page the kernel maps (4 KiB is a lower bound everywhere).
fn page_size() -> usize {
    4096
}

/// `size` bytes mapped from the kernel, or null.
#[cfg(unix)]
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(not(unix))]
fn map(_size: usize) -> *mut u8 {
    std::ptr::null_mut()
}

/// Unmaps a block [`map`] mapped.
///
/// # Safety
/// `ptr` came from `map(size)` and is not used again.
#[cfg(unix)]
unsafe fn unmap(ptr: *mut u8, size: usize) {
    // SAFETY: the caller's promise: the whole mapping, no longer used.
    unsafe { libc::munmap(ptr.cast(), size) };
}

#[cfg(not(unix))]
unsafe fn unmap(_ptr: *mut u8, _size: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_blocks_are_classed_and_reused() {
        assert_eq!(
            class_of(Layout::from_size_align(4096 + 16, 8).unwrap()),
            Some(3)
        );
        assert_eq!(
            class_of(Layout::from_size_align(512 + 16, 8).unwrap()),
            Some(0)
        );
        assert_eq!(
            class_of(Layout::from_size_align(65536 + 16, 8).unwrap()),
            Some(7)
        );
        assert_eq!(class_of(Layout::from_size_align(4096, 8).unwrap()), None);
        assert_eq!(
            class_of(Layout::from_size_align(4096 + 16, 32).unwrap()),
            None
        );
        assert_eq!(
            class_of(Layout::from_size_align(256 + 16, 8).unwrap()),
            None
        );
        let a = PageAlloc::new();
        let layout = Layout::from_size_align(4096 + 16, 8).unwrap();
        // SAFETY: blocks of `layout` from `a`, freed once each with it.
        unsafe {
            let p = a.alloc(layout);
            p.write_bytes(7, layout.size());
            a.dealloc(p, layout);
            let q = a.alloc_zeroed(layout);
            assert_eq!(p, q, "the freed block is taken again");
            assert!(
                std::slice::from_raw_parts(q, layout.size())
                    .iter()
                    .all(|b| *b == 0)
            );
            let r = a.realloc(q, layout, 100);
            assert!(!r.is_null());
            a.dealloc(r, Layout::from_size_align(100, 8).unwrap());
            let s = a.alloc(layout);
            assert_eq!(s, q);
            a.dealloc(s, layout);
            // A large block: mapped, zeroed, grown by a copy, unmapped.
            let big = Layout::from_size_align(LARGE, 8).unwrap();
            let b = a.alloc_zeroed(big);
            assert!(!b.is_null());
            b.write_bytes(5, LARGE);
            let c = a.realloc(b, big, 3 * LARGE);
            assert_eq!(*c.add(LARGE - 1), 5);
            a.dealloc(c, Layout::from_size_align(3 * LARGE, 8).unwrap());
        }
    }

    #[test]
    fn a_lock_held_by_a_thread_gone_in_a_forked_child_is_released() {
        let a = PageAlloc::new();
        let held = lock(&a.lists[3]);
        // As in a child forked while another thread held the lock (stopped
        // there, so that `before_fork` could not take it).
        std::mem::forget(held);
        a.before_fork();
        assert_eq!(
            a.taken_for_fork.load(Ordering::Acquire),
            0xff & !(1 << 3),
            "every free slot is taken before the fork"
        );
        a.after_fork_in_child();
        for slot in &a.lists {
            assert!(!slot.busy.load(Ordering::Acquire));
        }
        let again = lock(&a.lists[3]);
        assert_eq!((again.next, again.end), (0, 0));
    }

    #[test]
    fn a_fork_waits_for_a_list_being_changed_and_the_parent_gets_every_slot_back() {
        let a = std::sync::Arc::new(PageAlloc::new());
        let held = lock(&a.lists[2]);
        let (tx, rx) = std::sync::mpsc::channel();
        let forking = {
            let a = std::sync::Arc::clone(&a);
            std::thread::spawn(move || {
                a.before_fork();
                tx.send(a.taken_for_fork.load(Ordering::Acquire)).unwrap();
            })
        };
        // The holder finishes its change while the fork waits for it.
        std::thread::yield_now();
        drop(held);
        forking.join().unwrap();
        let taken = rx.recv().unwrap();
        if taken == 0xff {
            a.after_fork_in_parent();
            for slot in &a.lists {
                assert!(!slot.busy.load(Ordering::Acquire));
            }
        } else {
            // The holder was not scheduled within the tries: the slot is
            // reset in a child, never taken twice.
            assert_eq!(taken, 0xff & !(1 << 2));
            a.after_fork_in_parent();
        }
    }
}
