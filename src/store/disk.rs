//! One store file on a local disk, shared by every process of the host that
//! reads the same replica.
//!
//! - **Layout.** A header, then chunks of page-aligned pages, each behind
//!   a block with its slots' metadata (see `layout`). A page's slot is its
//!   number modulo the slot count (the disk tier, bounded: a page replaces
//!   whatever older page shared its slot), or its number itself
//!   (hydration, unbounded: page `N` of a complete copy lies where a
//!   database file holds it, but for one metadata block per 1,024 pages).
//! - **Readers take no lock.** A hit is two `pread`s (the slot's metadata,
//!   then the page straight into the buffer it is served from) and one
//!   XXH3 of the page; a scan reads a run of pages and their metadata in
//!   one `pread` each (`read`). The metadata and the page each carry an
//!   XXH3: a slot being rewritten, torn by `kill -9` or by a power loss,
//!   or corrupt on disk, is a miss, never data.
//! - **Writers** hold an exclusive file lock (and a mutex for the threads
//!   of one process), re-read the header under it, and write with
//!   `pwrite`, so a full disk is an error code, never a signal. They order
//!   a slot's writes so that a torn write leaves no valid metadata behind
//!   (`write`). No one waits for the lock longer than `LOCK_WAIT` (see
//!   `lock`): past it, the operation goes on without the store (a read
//!   from storage, a write skipped).
//! - **Private.** The file and its folder belong to this account and no
//!   one else can write them (see `private`); its descriptors are not kept
//!   by forked children (see `fork`).
//! - **Lineage.** The header holds a random lineage nonce and checkpoints
//!   of that lineage: the identities of LTX files it followed (a file's
//!   place, its last TXID and level, with a hash of what identifies it
//!   there; see [`super::Identity`]). Litestream 0.5 writes no database
//!   checksums, so the files themselves fingerprint the lineage.
//!   A process uses the store only after its own state matched a
//!   checkpoint with no conflicting one; otherwise it starts a new lineage,
//!   and the old entries are dead for everyone who verified the new one.
//!   A state wholly newer than the stored lineage, while another process
//!   still follows it, waits for that process instead (`Attached::Behind`).
//!   The proof is in one lineage, and a reset's attach (this process's or
//!   another's) may start a new one between a proof and its use: so
//!   `attach` and `follow` return the lineage they proved, every read and
//!   write (`get`, `get_run`, `has`, `put`, `sweep_run`, `set_fill`) names
//!   it, and the store refuses one named for a lineage it no longer serves
//!   (a write, under the lock, against the header). An operation skipped
//!   because the lock stayed taken proves nothing and writes nothing.
//! - **Open entries and the horizon.** An entry written by a reader at
//!   the store's horizon `H` is *open*: constant from `lo` to `H`, for as
//!   long as every later file is followed. Following file `[a, b]` closes
//!   the open entries of its pages at `H` and moves `H` to `b`. When the
//!   chain of followed files breaks (no process followed for a while, a
//!   reboot), the era ends: its open entries stay valid up to where the era
//!   ended (or, after a reboot, up to what each entry itself recorded).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::log;
use crate::ltx::{PageNo, PageSize, Txid};

use super::fork::{self, Listed};
use super::layout::{FileHeader, Geometry, HEADER_LEN, META_LEN, SlotHeader, VERSION};
use super::lock::LOCK_WAIT;
use super::private::{self, Create, Folder};
use super::{Fill, Span, os};

/// After a failed write (disk full, read-only filesystem), writes pause for
/// this long: the next attempt is cheap to make and likely to fail again.
const WRITE_BACKOFF_MS: i64 = 30_000;

/// A store file written this recently has a process following its lineage
/// (every applied file rewrites the header).
pub(super) const FOLLOWED_RECENTLY_MS: u128 = 10_000;

/// Catching up at open closes the pages that changed since the horizon one
/// by one, unless more changed than this (then the era ends instead, in one
/// header write): a slot header read and write each.
pub(super) const CATCH_UP_MAX: usize = 4096;

/// Fewest slots a bounded store gets.
const MIN_SLOTS: u64 = 16;

/// Slots whose page failed its check on a read, remembered so that the
/// next write of that page replaces it: a torn page under valid metadata
/// (a power loss) would otherwise stay a miss for ever, as a write of the
/// same version finds the slot "already held". A few suffice: damage is
/// rare, and a sweep drops what this forgets.
const SUSPECTS_MAX: usize = 64;

/// How big the store may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capacity {
    /// At most this many bytes on disk (the disk tier).
    Bytes(u64),
    /// One slot per page, whatever the database size (hydration).
    Unbounded,
}

/// Why a store could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The directory is shared between hosts: refused.
    NetworkFs { dir: PathBuf, kind: String },
    /// The file belongs to another replica.
    OtherReplica { path: PathBuf, ident: String },
    /// The file or its folder is not private to this account: refused.
    NotPrivate(private::Refused),
    /// The file or its directory cannot be created or read.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::NetworkFs { dir, kind } => write!(
                f,
                "{} is on a network filesystem ({kind}): the local store is shared by the processes \
                 of one host through file locks and the page cache, which hosts sharing a {kind} \
                 mount cannot rely on; point disk_cache / hydration_path at a local directory",
                dir.display()
            ),
            OpenError::OtherReplica { path, ident } => write!(
                f,
                "{} holds the local store of another replica ({ident}); remove it or choose another path",
                path.display()
            ),
            OpenError::NotPrivate(r) => r.fmt(f),
            OpenError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

/// What readers need from the header, kept in memory and refreshed when
/// it may have moved. Only ever a lineage this process verified.
#[derive(Clone, Debug, Default)]
pub(super) struct View {
    pub(super) lineage: u64,
    pub(super) era: u32,
    pub(super) horizon: u64,
    era_ends: Vec<(u32, u64)>,
}

impl View {
    pub(super) fn of(h: &FileHeader) -> View {
        View {
            lineage: h.lineage,
            era: h.era,
            horizon: h.horizon,
            era_ends: h.era_ends.clone(),
        }
    }

    /// The states over which the entry `h` is known to hold its page.
    pub(super) fn span_of(&self, h: &SlotHeader) -> Option<Span> {
        if self.lineage == 0 || h.lineage != self.lineage {
            return None;
        }
        let mut hi = h.hi;
        if h.is_open() {
            if h.era == self.era {
                hi = hi.max(self.horizon);
            } else if let Some(&(_, end)) = self.era_ends.iter().find(|(e, _)| *e == h.era) {
                hi = hi.max(end);
            }
        }
        Some(Span::new(Txid(h.lo), Txid(hi)))
    }
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    /// Pages that failed their checksum on a read.
    pub(super) bad: AtomicU64,
    /// Pages a sweep found corrupt and dropped.
    pub(super) dropped: AtomicU64,
    pub(super) writes: AtomicU64,
    write_errors: AtomicU64,
    /// Operations that went on without the store: the lock stayed taken
    /// past `LOCK_WAIT`, or was taken when tried once (see `lock`).
    pub(super) lock_timeouts: AtomicU64,
    /// Of those, the ones that waited the whole bound for it.
    pub(super) lock_waits: AtomicU64,
}

/// A store file. See the module documentation.
pub struct DiskStore {
    /// Unlists `file` before it is closed (fields drop in order).
    _listed: Listed,
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) ident: String,
    pub(super) page_size: PageSize,
    /// Slots in the file; 0: one per page number.
    pub(super) slots: u64,
    pub(super) geometry: Geometry,
    pub(super) view: ArcSwap<View>,
    /// One writer per process at a time (the file lock is per open file).
    pub(super) write: Mutex<()>,
    /// Longest wait for the lock, in microseconds: `LOCK_WAIT`, or less
    /// (see `bound_lock_wait`).
    pub(super) lock_wait_us: AtomicU64,
    /// Until then, an operation tries the lock once instead of waiting for
    /// it: a wait just timed out (see `lock`).
    pub(super) lock_busy_until: Mutex<Option<std::time::Instant>>,
    /// Writes are off until this Unix millisecond (after a failure).
    writes_off_until: AtomicI64,
    warned: AtomicBool,
    remove_on_drop: bool,
    pub(super) counters: Counters,
    /// See `SUSPECTS_MAX`.
    suspects: Mutex<Vec<u64>>,
}

/// The hydration fill role, held for as long as this value lives. The
/// lock's descriptor is listed (see `fork`): a forked child neither keeps
/// nor releases it.
pub struct FillClaim {
    /// `None` for a private copy, whose only filler is its process.
    _lock: Option<(Listed, File)>,
}

impl DiskStore {
    /// Opens (or creates) the store file at `path` for the replica `ident`.
    /// `remove_on_drop`: a private copy in the system's temporary folder,
    /// a new file unlinked at once.
    pub fn open(
        path: &Path,
        ident: &str,
        page_size: PageSize,
        capacity: Capacity,
        remove_on_drop: bool,
    ) -> Result<DiskStore, OpenError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let io_err = |error| OpenError::Io {
            path: path.to_path_buf(),
            error,
        };
        let failed = |e: private::Failure| match e {
            private::Failure::Refused(r) => OpenError::NotPrivate(r),
            private::Failure::Io(error) => io_err(error),
        };
        if !remove_on_drop {
            // The disk tier's folder is the store's own; a hydration path's
            // folder may hold the user's other files: checked, not changed.
            let folder = match capacity {
                Capacity::Bytes(_) => Folder::Own,
                Capacity::Unbounded => Folder::Shared,
            };
            private::ensure_dir(dir, folder).map_err(failed)?;
        }
        if let Some(kind) = os::fs_type(dir).filter(|k| os::is_network_fs(k)) {
            return Err(OpenError::NetworkFs {
                dir: dir.to_path_buf(),
                kind,
            });
        }
        // A private copy in a shared temporary folder is a new file only
        // this user can read, never one that is already there (a planted
        // file or symlink would otherwise be used).
        let create = if remove_on_drop {
            Create::New
        } else {
            Create::IfMissing
        };
        let (file, listed) =
            fork::open_listed(|| private::open_file(path, create, true)).map_err(failed)?;
        let geometry = Geometry::new(page_size.get());
        let wanted_slots = match capacity {
            Capacity::Unbounded => 0,
            Capacity::Bytes(b) => geometry.slots_in(b).max(MIN_SLOTS),
        };
        let mut store = DiskStore {
            _listed: listed,
            file,
            path: path.to_path_buf(),
            ident: ident.to_string(),
            page_size,
            slots: wanted_slots,
            geometry,
            view: ArcSwap::from_pointee(View::default()),
            write: Mutex::new(()),
            lock_wait_us: AtomicU64::new(LOCK_WAIT.as_micros() as u64),
            lock_busy_until: Mutex::new(None),
            writes_off_until: AtomicI64::new(0),
            warned: AtomicBool::new(false),
            remove_on_drop,
            counters: Counters::default(),
            suspects: Mutex::new(Vec::new()),
        };
        let fits = |h: &FileHeader| {
            h.page_size == page_size.get() && (h.slots == 0) == (capacity == Capacity::Unbounded)
        };
        // A whole header read without the lock is one that a writer wrote
        // whole (it is checksummed): an existing store opens without
        // waiting for anyone.
        let header = match store.read_header() {
            Some(h) if h.ident == ident && fits(&h) => h,
            _ => {
                let lock = store.lock().map_err(io_err)?;
                let header = match store.read_header() {
                    Some(h) if h.ident != ident => {
                        return Err(OpenError::OtherReplica {
                            path: path.to_path_buf(),
                            ident: h.ident,
                        });
                    }
                    // Another process created it, maybe with another size:
                    // the file's own geometry wins, so that processes agree.
                    Some(h) if fits(&h) => h,
                    _ => {
                        store.log_old_format();
                        let fresh = FileHeader {
                            page_size: page_size.get(),
                            slots: wanted_slots,
                            ident: ident.to_string(),
                            ..FileHeader::default()
                        };
                        store.file.set_len(0).map_err(io_err)?;
                        os::write_at(&store.file, &fresh.encode(), 0).map_err(io_err)?;
                        fresh
                    }
                };
                drop(lock);
                header
            }
        };
        store.slots = header.slots;
        #[cfg(unix)]
        if remove_on_drop {
            // Private to this process: the name goes now, the file with
            // the last descriptor, even after kill -9.
            let _ = std::fs::remove_file(path);
        }
        Ok(store)
    }

    /// Says so when the file being started afresh was a store of another
    /// format version (it is never read as this one).
    fn log_old_format(&self) {
        let mut buf = vec![0u8; 16];
        if os::read_at(&self.file, &mut buf, 0).is_ok()
            && let Some(v) = FileHeader::other_version(&buf)
        {
            log::info!(
                "local store {}: written in format version {v}, this build reads version \
                 {VERSION}; starting it afresh (its pages are fetched again)",
                self.path.display()
            );
        }
    }

    pub(super) fn read_header(&self) -> Option<FileHeader> {
        let mut buf = vec![0u8; HEADER_LEN as usize];
        os::read_at(&self.file, &mut buf, 0).ok()?;
        FileHeader::decode(&buf)
    }

    pub(super) fn write_header(&self, h: &FileHeader) -> std::io::Result<()> {
        #[cfg(not(target_os = "linux"))]
        // Without a boot identity, the slot writes must reach the disk
        // before a header that trusts them does.
        self.file.sync_data()?;
        os::write_at(&self.file, &h.encode(), 0)
    }

    /// The slot of `pgno`.
    pub(super) fn slot(&self, pgno: PageNo) -> Option<u64> {
        let i = u64::from(pgno.0.checked_sub(1)?);
        Some(if self.slots == 0 { i } else { i % self.slots })
    }

    /// Where the metadata of `pgno`'s slot lies.
    pub(super) fn meta_offset(&self, pgno: PageNo) -> Option<u64> {
        self.geometry.meta_at(self.slot(pgno)?)
    }

    /// Where the page of `pgno`'s slot lies.
    pub(super) fn page_offset(&self, pgno: PageNo) -> Option<u64> {
        self.geometry.page_at(self.slot(pgno)?)
    }

    pub(super) fn read_slot_header(&self, pgno: PageNo) -> Option<SlotHeader> {
        let mut buf = [0u8; META_LEN];
        os::read_at(&self.file, &mut buf, self.meta_offset(pgno)?).ok()?;
        SlotHeader::decode(&buf).filter(|h| h.pgno == pgno.0)
    }

    /// Refreshes the readers' view from the header, if it is still the
    /// lineage this process verified. Published by compare-and-swap: the
    /// header is read without the lock, so a view another thread published
    /// meanwhile (a follow, an attach) is newer than what this read, and
    /// wins (the view moves only forward).
    pub(super) fn refresh(&self) -> Arc<View> {
        let cur = self.view.load_full();
        let header = self.read_header();
        crate::pause::point("store.refresh_read", &self.path.to_string_lossy());
        if let Some(h) = header
            && h.lineage == cur.lineage
            && (h.era != cur.era || h.horizon != cur.horizon)
        {
            let v = Arc::new(View::of(&h));
            let before = self.view.compare_and_swap(&cur, Arc::clone(&v));
            if Arc::ptr_eq(&before, &cur) {
                return v;
            }
            return self.view.load_full();
        }
        cur
    }

    pub(super) fn writes_paused(&self) -> bool {
        now_ms() < self.writes_off_until.load(Ordering::Relaxed)
    }

    /// A write failed: pause writes, warn once; reads go on.
    pub(super) fn write_failed(&self, what: &str, e: &std::io::Error) {
        self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
        self.writes_off_until
            .store(now_ms() + WRITE_BACKOFF_MS, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "local store {}: {what} failed ({e}); queries keep reading from storage",
                self.path.display()
            );
        } else {
            log::debug!("local store {}: {what} failed ({e})", self.path.display());
        }
    }

    /// Runs `f` under the write lock with the current header, writing the
    /// header back if `f` says it changed.
    /// Whether `f` ran on the header and what it changed was written (a
    /// lock that stayed taken, or a failed write, is `false`).
    pub(super) fn with_header(&self, what: &str, f: impl FnOnce(&mut FileHeader) -> bool) -> bool {
        if self.writes_paused() {
            return false;
        }
        let result = (|| {
            let _lock = self.lock()?;
            let Some(mut h) = self.read_header() else {
                return Ok(false);
            };
            if f(&mut h) {
                self.write_header(&h)?;
            }
            if h.lineage == self.view.load().lineage {
                self.view.store(Arc::new(View::of(&h)));
            }
            Ok::<_, std::io::Error>(true)
        })();
        result.unwrap_or_else(|e| {
            self.op_failed(what, &e);
            false
        })
    }

    /// Whether the slot `old` should give way to a new entry for `pgno`
    /// over `span`; the span to store (merged when both hold the same
    /// bytes).
    pub(super) fn replace(
        &self,
        view: &View,
        old: Option<SlotHeader>,
        pgno: PageNo,
        span: Span,
    ) -> Option<Span> {
        let Some(old) = old.filter(|o| o.pgno == pgno.0) else {
            return Some(span);
        };
        let Some(have) = view.span_of(&old) else {
            return Some(span);
        };
        if have.overlaps(&span) {
            // Same bytes: keep the union, write only if it says more.
            let merged = Span::new(have.lo.min(span.lo), have.hi.max(span.hi));
            let gains = merged != have || (old.era != view.era && span.hi.0 >= view.horizon);
            return gains.then_some(merged);
        }
        // Different versions: the newer one stays.
        (span.lo > have.hi).then_some(span)
    }
}

/// What `replica/` asks of the store (reads in `read`, writes in `write`).
impl DiskStore {
    /// Whether this is a hydrated copy (one slot per page), not the
    /// bounded disk tier.
    pub fn is_copy(&self) -> bool {
        self.slots == 0
    }

    /// The page of `slot` failed its check (see `SUSPECTS_MAX`).
    pub(super) fn suspect(&self, slot: u64) {
        let mut s = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        if !s.contains(&slot) {
            if s.len() >= SUSPECTS_MAX {
                s.remove(0);
            }
            s.push(slot);
        }
    }

    /// Whether `slot` was suspect, forgetting it.
    pub(super) fn take_suspect(&self, slot: u64) -> bool {
        let mut s = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        let at = s.iter().position(|&x| x == slot);
        at.map(|i| s.swap_remove(i)).is_some()
    }

    /// Counts a hit served from a run read earlier (`get_run`).
    pub fn note_hit(&self) {
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// The lineage this process verified and reads (0: none yet). It
    /// changes when an `attach` started a new one.
    pub fn lineage(&self) -> u64 {
        self.view.load().lineage
    }

    /// Hydration progress as the filler last wrote it.
    pub fn fill(&self) -> Option<Fill> {
        let h = self.read_header()?;
        (h.lineage == self.view.load().lineage && h.lineage != 0).then_some(Fill {
            filled: h.filled,
            wanted: h.wanted,
            txid: Txid(h.fill_txid),
        })
    }

    /// Records hydration progress for `lineage`, the one the fill proved
    /// its state in; nothing if the store serves another one now (a
    /// reset's new lineage starts at nothing filled).
    pub fn set_fill(&self, lineage: u64, fill: Fill) {
        let _ = self.with_header("recording progress", |h| {
            if h.lineage != lineage {
                return false;
            }
            h.filled = fill.filled;
            h.wanted = fill.wanted;
            h.fill_txid = fill.txid.0;
            true
        });
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name=value` counters for `PRAGMA litestream_stats`.
    pub fn render(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        format!(
            "store_hits={} store_misses={} store_bad={} store_dropped={} store_writes={} \
             store_write_errors={} store_lock_timeouts={} store_lock_waits={}",
            g(&c.hits),
            g(&c.misses),
            g(&c.bad),
            g(&c.dropped),
            g(&c.writes),
            g(&c.write_errors),
            g(&c.lock_timeouts),
            g(&c.lock_waits)
        )
    }
}

impl DiskStore {
    /// Takes the hydration fill role if no other process holds it: the lock
    /// of a file next to the store, held for as long as the claim lives.
    pub fn try_fill_lock(&self) -> Option<FillClaim> {
        if self.remove_on_drop {
            // A private file: this process is its only filler.
            return Some(FillClaim { _lock: None });
        }
        let path = fill_lock_path(&self.path);
        let (file, listed) =
            match fork::open_listed(|| private::open_file(&path, Create::IfMissing, true)) {
                Ok(opened) => opened,
                Err(e) => {
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        log::warn!("local store: cannot take the fill lock: {e}");
                    }
                    return None;
                }
            };
        os::try_lock(&file)
            .ok()
            .filter(|&locked| locked)
            .map(|_| FillClaim {
                _lock: Some((listed, file)),
            })
    }

    /// From now on, waits at most `budget` for the lock when that is less
    /// than `LOCK_WAIT`: the replica's `storage_timeout`, so that a query
    /// never waits longer for the store than it would for storage.
    pub fn bound_lock_wait(&self, budget: Duration) {
        let us = u64::try_from(budget.as_micros()).unwrap_or(u64::MAX);
        self.lock_wait_us.fetch_min(us, Ordering::Relaxed);
    }

    pub(super) fn lock_wait(&self) -> Duration {
        Duration::from_micros(self.lock_wait_us.load(Ordering::Relaxed))
    }
}

/// Unix milliseconds now (the store depends on nothing above it).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn fill_lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".fill-lock");
    PathBuf::from(s)
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::remove_file(fill_lock_path(&self.path));
        }
    }
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
