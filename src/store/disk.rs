//! One store file on a local disk, shared by every process of the host that
//! reads the same replica.
//!
//! - **Layout.** A header, then fixed-size slots (slot header + page). A
//!   page's slot is its number modulo the slot count (the disk tier,
//!   bounded: a page replaces whatever older page shared its slot), or its
//!   number itself (hydration, unbounded). A hit is one `pread`.
//! - **Readers take no lock.** Every slot header and page carries an XXH3
//!   checksum: a slot being rewritten, torn by `kill -9` or corrupt on
//!   disk decodes as a miss, never as data.
//! - **Writers** hold an exclusive file lock (and a mutex for the threads
//!   of one process), re-read the header under it, and write with
//!   `pwrite`, so a full disk is an error code, never a signal.
//! - **Lineage.** The header holds a random lineage nonce and
//!   `(txid, database checksum)` checkpoints of that lineage (LTX headers
//!   and trailers carry the checksum of the whole database at their TXIDs).
//!   A process uses the store only after its own state matched a
//!   checkpoint with no conflicting one; otherwise it starts a new lineage,
//!   and the old entries are dead for everyone who verified the new one.
//!   A state wholly newer than the stored lineage, while another process
//!   still follows it, waits for that process instead (`Attached::Behind`).
//! - **Open entries and the horizon.** An entry written by a reader at
//!   the store's horizon `H` is *open*: constant from `lo` to `H`, for as
//!   long as every later file is followed. Following file `[a, b]` closes
//!   the open entries of its pages at `H` and moves `H` to `b`. When the
//!   chain of followed files breaks (no process followed for a while, a
//!   reboot), the era ends: its open entries stay valid up to where the era
//!   ended (or, after a reboot, up to what each entry itself recorded).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::cache::Page;
use crate::log;
use crate::ltx::{PageNo, PageSize, Txid};

use super::layout::{FileHeader, HEADER_LEN, OPEN, SLOT_HEADER, SlotHeader, page_sum};
use super::{Attached, Fill, Followed, PageStore, Span, StateFacts, os};

/// After a failed write (disk full, read-only filesystem), writes pause for
/// this long: the next attempt is cheap to make and likely to fail again.
const WRITE_BACKOFF_MS: i64 = 30_000;

/// A store file written this recently has a process following its lineage
/// (every applied file rewrites the header).
pub(super) const FOLLOWED_RECENTLY_MS: u128 = 10_000;

/// Catching up at open closes the pages that changed since the horizon one
/// by one, unless more changed than this (then the era ends instead, in one
/// header write): a slot header read and write each.
const CATCH_UP_MAX: usize = 4096;

/// Fewest slots a bounded store gets.
const MIN_SLOTS: u64 = 16;

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
            OpenError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

/// What readers need from the header, kept in memory and refreshed when
/// it may have moved. Only ever a lineage this process verified.
#[derive(Clone, Debug, Default)]
struct View {
    lineage: u64,
    era: u32,
    horizon: u64,
    era_ends: Vec<(u32, u64)>,
}

impl View {
    fn of(h: &FileHeader) -> View {
        View {
            lineage: h.lineage,
            era: h.era,
            horizon: h.horizon,
            era_ends: h.era_ends.clone(),
        }
    }

    /// The states over which the entry `h` is known to hold its page.
    fn span_of(&self, h: &SlotHeader) -> Option<Span> {
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
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    bad: AtomicU64,
    writes: AtomicU64,
    write_errors: AtomicU64,
}

/// A store file. See the module documentation.
pub struct DiskStore {
    file: File,
    path: PathBuf,
    ident: String,
    page_size: PageSize,
    /// Slots in the file; 0: one per page number.
    slots: u64,
    view: ArcSwap<View>,
    /// One writer per process at a time (the file lock is per open file).
    write: Mutex<()>,
    /// Writes are off until this Unix millisecond (after a failure).
    writes_off_until: AtomicI64,
    warned: AtomicBool,
    remove_on_drop: bool,
    counters: Counters,
}

/// Holds the exclusive file lock (and the process mutex) while alive.
struct Locked<'a> {
    store: &'a DiskStore,
    _mutex: std::sync::MutexGuard<'a, ()>,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = os::unlock(&self.store.file);
    }
}

impl DiskStore {
    /// Opens (or creates) the store file at `path` for the replica `ident`.
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
        std::fs::create_dir_all(dir).map_err(io_err)?;
        if let Some(kind) = os::fs_type(dir).filter(|k| os::is_network_fs(k)) {
            return Err(OpenError::NetworkFs {
                dir: dir.to_path_buf(),
                kind,
            });
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if remove_on_drop {
            // A private copy in a shared temporary folder: a new file only
            // this user can read, never one that is already there (a
            // planted file or symlink would otherwise be truncated).
            options.create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        } else {
            options.create(true).truncate(false);
        }
        let file = options.open(path).map_err(io_err)?;
        let slot_len = (SLOT_HEADER as u64) + u64::from(page_size.get());
        let wanted_slots = match capacity {
            Capacity::Unbounded => 0,
            Capacity::Bytes(b) => (b.saturating_sub(HEADER_LEN) / slot_len).max(MIN_SLOTS),
        };
        let mut store = DiskStore {
            file,
            path: path.to_path_buf(),
            ident: ident.to_string(),
            page_size,
            slots: wanted_slots,
            view: ArcSwap::from_pointee(View::default()),
            write: Mutex::new(()),
            writes_off_until: AtomicI64::new(0),
            warned: AtomicBool::new(false),
            remove_on_drop,
            counters: Counters::default(),
        };
        let lock = store.lock().map_err(io_err)?;
        let existing = store.read_header();
        let header = match existing {
            Some(h) if h.ident != ident => {
                return Err(OpenError::OtherReplica {
                    path: path.to_path_buf(),
                    ident: h.ident,
                });
            }
            // Another process created it, maybe with another size: the
            // file's own geometry wins, so that processes agree.
            Some(h)
                if h.page_size == page_size.get()
                    && (h.slots == 0) == (capacity == Capacity::Unbounded) =>
            {
                h
            }
            _ => {
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
        store.slots = header.slots;
        #[cfg(unix)]
        if remove_on_drop {
            // Private to this process: the name goes now, the file with
            // the last descriptor, even after kill -9.
            let _ = std::fs::remove_file(path);
        }
        Ok(store)
    }

    fn lock(&self) -> std::io::Result<Locked<'_>> {
        let mutex = self
            .write
            .lock()
            .map_err(|_| std::io::Error::other("store lock poisoned"))?;
        os::lock(&self.file, os::LockMode::Wait)?;
        Ok(Locked {
            store: self,
            _mutex: mutex,
        })
    }

    fn read_header(&self) -> Option<FileHeader> {
        let mut buf = vec![0u8; HEADER_LEN as usize];
        os::read_at(&self.file, &mut buf, 0).ok()?;
        FileHeader::decode(&buf)
    }

    fn write_header(&self, h: &FileHeader) -> std::io::Result<()> {
        #[cfg(not(target_os = "linux"))]
        // Without a boot identity, the slot writes must reach the disk
        // before a header that trusts them does.
        self.file.sync_data()?;
        os::write_at(&self.file, &h.encode(), 0)
    }

    fn slot_offset(&self, pgno: PageNo) -> Option<u64> {
        let i = u64::from(pgno.0.checked_sub(1)?);
        let i = if self.slots == 0 { i } else { i % self.slots };
        let slot_len = SLOT_HEADER as u64 + u64::from(self.page_size.get());
        i.checked_mul(slot_len)?.checked_add(HEADER_LEN)
    }

    fn read_slot_header(&self, pgno: PageNo) -> Option<SlotHeader> {
        let mut buf = [0u8; SLOT_HEADER];
        os::read_at(&self.file, &mut buf, self.slot_offset(pgno)?).ok()?;
        SlotHeader::decode(&buf).filter(|h| h.pgno == pgno.0)
    }

    /// Refreshes the readers' view from the header, if it is still the
    /// lineage this process verified.
    fn refresh(&self) -> Arc<View> {
        let cur = self.view.load_full();
        if let Some(h) = self.read_header() {
            if h.lineage == cur.lineage && (h.era != cur.era || h.horizon != cur.horizon) {
                let v = Arc::new(View::of(&h));
                self.view.store(Arc::clone(&v));
                return v;
            }
        }
        cur
    }

    fn writes_paused(&self) -> bool {
        now_ms() < self.writes_off_until.load(Ordering::Relaxed)
    }

    /// A write failed: pause writes, warn once; reads go on.
    fn write_failed(&self, what: &str, e: &std::io::Error) {
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
    fn with_header(&self, what: &str, f: impl FnOnce(&mut FileHeader) -> bool) {
        if self.writes_paused() {
            return;
        }
        let result = (|| {
            let _lock = self.lock()?;
            let Some(mut h) = self.read_header() else {
                return Ok(());
            };
            if f(&mut h) {
                self.write_header(&h)?;
            }
            if h.lineage == self.view.load().lineage {
                self.view.store(Arc::new(View::of(&h)));
            }
            Ok::<_, std::io::Error>(())
        })();
        if let Err(e) = result {
            self.write_failed(what, &e);
        }
    }

    /// Whether the slot `old` should give way to a new entry for `pgno`
    /// over `span`; the span to store (merged when both hold the same
    /// bytes).
    fn replace(
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

impl PageStore for DiskStore {
    fn get(&self, pgno: PageNo, want: Span) -> Option<Page> {
        let mut view = self.view.load_full();
        if view.lineage == 0 {
            return None;
        }
        let off = self.slot_offset(pgno)?;
        let mut buf = vec![0u8; SLOT_HEADER + self.page_size.bytes()];
        let miss = || {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            None
        };
        if os::read_at(&self.file, &mut buf, off).is_err() {
            return miss();
        }
        let (head, page) = buf.split_at(SLOT_HEADER);
        let Some(h) = SlotHeader::decode(head).filter(|h| h.pgno == pgno.0) else {
            return miss();
        };
        let mut span = view.span_of(&h);
        if span.is_some_and(|s| s.hi < want.lo) && h.is_open() {
            // Another process may have moved the horizon since.
            view = self.refresh();
            span = view.span_of(&h);
        }
        if !span.is_some_and(|s| s.overlaps(&want)) {
            return miss();
        }
        if page_sum(page) != h.page_sum {
            self.counters.bad.fetch_add(1, Ordering::Relaxed);
            return miss();
        }
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        Some(Page::from(page))
    }

    fn has(&self, pgno: PageNo, want: Span) -> bool {
        let view = self.view.load();
        self.read_slot_header(pgno)
            .and_then(|h| view.span_of(&h))
            .is_some_and(|s| s.overlaps(&want))
    }

    fn put(&self, pages: &[(PageNo, Span, &[u8])]) {
        if pages.is_empty() || self.view.load().lineage == 0 || self.writes_paused() {
            return;
        }
        let result = (|| {
            let _lock = self.lock()?;
            let Some(h) = self.read_header() else {
                return Ok(());
            };
            let view = View::of(&h);
            if h.lineage != self.view.load().lineage {
                return Ok(());
            }
            let mut buf = vec![0u8; SLOT_HEADER + self.page_size.bytes()];
            for &(pgno, span, bytes) in pages {
                if bytes.len() != self.page_size.bytes() {
                    continue;
                }
                let Some(off) = self.slot_offset(pgno) else {
                    continue;
                };
                let Some(span) = self.replace(&view, self.read_slot_header(pgno), pgno, span)
                else {
                    continue;
                };
                let open = span.hi.0 >= h.horizon;
                let slot = SlotHeader {
                    pgno: pgno.0,
                    lineage: h.lineage,
                    era: h.era,
                    flags: if open { OPEN } else { 0 },
                    lo: span.lo.0,
                    hi: span.hi.0,
                    page_sum: page_sum(bytes),
                };
                buf[..SLOT_HEADER].copy_from_slice(&slot.encode());
                buf[SLOT_HEADER..].copy_from_slice(bytes);
                os::write_at(&self.file, &buf, off)?;
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
            }
            self.view.store(Arc::new(view));
            Ok::<_, std::io::Error>(())
        })();
        if let Err(e) = result {
            self.write_failed("writing pages", &e);
        }
    }

    fn follow(&self, f: &Followed<'_>) {
        self.follow_file(f);
    }

    fn attach(&self, s: &StateFacts<'_>) -> Attached {
        self.attach_state(s)
    }

    fn lineage(&self) -> u64 {
        self.view.load().lineage
    }

    fn fill(&self) -> Option<Fill> {
        let h = self.read_header()?;
        (h.lineage == self.view.load().lineage && h.lineage != 0).then_some(Fill {
            filled: h.filled,
            wanted: h.wanted,
            txid: Txid(h.fill_txid),
        })
    }

    fn set_fill(&self, fill: Fill) {
        let mine = self.view.load().lineage;
        self.with_header("recording progress", |h| {
            if h.lineage != mine {
                return false;
            }
            h.filled = fill.filled;
            h.wanted = fill.wanted;
            h.fill_txid = fill.txid.0;
            true
        });
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn render(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        format!(
            "store_hits={} store_misses={} store_bad={} store_writes={} store_write_errors={}",
            g(&c.hits),
            g(&c.misses),
            g(&c.bad),
            g(&c.writes),
            g(&c.write_errors)
        )
    }
}

impl DiskStore {
    /// Takes the hydration fill lock if no other process holds it: a file
    /// next to the store, locked for as long as the returned file lives.
    pub fn try_fill_lock(&self) -> Option<File> {
        if self.remove_on_drop {
            // A private file: this process is its only filler.
            return self.file.try_clone().ok();
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(fill_lock_path(&self.path))
            .ok()?;
        os::lock(&f, os::LockMode::Try).ok()?;
        Some(f)
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

#[path = "lineage.rs"]
mod lineage;

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
