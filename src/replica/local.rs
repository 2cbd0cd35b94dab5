//! The replica's side of the local page store ([`crate::store`]): which
//! store a configuration names, the span a snapshot knows for a page, and
//! the hooks the read path and the poller call. Everything here is best
//! effort: without a store, or when the disk fails, reads go to storage.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use crate::cache::{Page, PageCache};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log;
use crate::ltx::{PageNo, Txid};
use crate::store::{
    Attached, Blobs, Capacity, DiskStore, Followed, Identity, OpenError, Span, StateFacts, identity,
};

use super::load::Loaded;
use super::{FrameLoc, Snapshot};

/// After an attach failed, reads skip the store's lineage check for this
/// long instead of retrying it at every read.
const ATTACH_RETRY_MS: i64 = 5_000;
/// After an attach found the stored lineage behind this state while another
/// process follows it: that process polls about once a second.
const BEHIND_RETRY_MS: i64 = 200;
/// Files known beyond those the current state references: the newest
/// this many stay, for readers pinned to an older state that still read
/// files the current one superseded (at one commit a second, about 17
/// minutes of them); older ones are forgotten, and such a reader attaches
/// its state again. Bounds the set at about the file table plus this.
const KNOWN_RECENT: u64 = 1024;

/// The local store of one replica, once its page size is known.
#[derive(Default)]
pub struct Local {
    store: OnceLock<Arc<DiskStore>>,
    known: Mutex<Known>,
    /// Pages read from the store ahead of a scan (see `local_read`).
    ahead: Mutex<read::Ahead>,
    /// `(lineage, TXID)` of a state the fill found wholly held: prefetch
    /// asks the store nothing about its pages.
    complete: Mutex<Option<(u64, Txid)>>,
}

/// The files whose pages may be read from and written to the store: those
/// of states attached to the lineage the store serves this process. A
/// snapshot built elsewhere (time travel, a re-plan after compaction) from
/// files not in the set is attached first, so a replica that was reset
/// under this process never mixes with the stored lineage.
///
/// Every file in the set was proven in `lineage` (an attach or a follow
/// that returned it), and every read and write of its pages names that
/// lineage to the store, which refuses it once another lineage is served:
/// an attach of a reset replica may start a new lineage at any moment,
/// between any proof and the read or write that relies on it.
#[derive(Default)]
struct Known {
    lineage: u64,
    /// Each file with the count of files made known before it.
    files: HashMap<Identity, u64>,
    /// Files made known so far (the next one's number).
    added: u64,
    /// Until when reads skip the lineage check after an attach that did
    /// not bind the store.
    retry_at_ms: i64,
}

impl Known {
    fn add(&mut self, id: Identity) {
        self.files.insert(id, self.added);
        self.added += 1;
    }

    /// The lineage in which every file of `ids` is known, if the store
    /// still serves it.
    fn proves(&self, store: &DiskStore, ids: &[Identity]) -> Option<u64> {
        (self.lineage != 0
            && self.lineage == store.lineage()
            && ids.iter().all(|id| self.files.contains_key(id)))
        .then_some(self.lineage)
    }
}

impl Local {
    pub fn get(&self) -> Option<&Arc<DiskStore>> {
        self.store.get()
    }

    /// Whether pages of `loc`'s file in `snap` may use the store, and in
    /// which lineage; attaches `snap` when its files are new to the
    /// store's lineage.
    fn verified(&self, snap: &Snapshot, loc: &FrameLoc) -> Option<(&Arc<DiskStore>, u64)> {
        let store = self.get()?;
        let id = file_identity(&loc.file);
        {
            let known = self.known.lock().ok()?;
            if let Some(lineage) = known.proves(store, &[id]) {
                return Some((store, lineage));
            }
            if super::now_ms() < known.retry_at_ms {
                return None;
            }
        }
        self.attach(store, snap);
        let known = self.known.lock().ok()?;
        known.proves(store, &[id]).map(|lineage| (store, lineage))
    }

    /// Whether `loc`'s file is known in `lineage` (no attach: what a run's
    /// neighbours of a verified page check).
    fn known(&self, lineage: u64, loc: &FrameLoc) -> bool {
        let id = file_identity(&loc.file);
        self.known
            .lock()
            .is_ok_and(|k| k.lineage == lineage && k.files.contains_key(&id))
    }

    /// The fill found every page of `snap` held in the store, in `lineage`
    /// (the one `covers` returned).
    pub(super) fn set_complete(&self, snap: &Snapshot, lineage: u64) {
        if let Ok(mut c) = self.complete.lock() {
            *c = Some((lineage, snap.txid));
        }
    }

    fn is_complete(&self, lineage: u64, snap: &Snapshot) -> bool {
        self.complete
            .lock()
            .is_ok_and(|c| *c == Some((lineage, snap.txid)))
    }

    /// The lineage in which every file of `snap` may use the store
    /// (attaching it first if needed): what a hydration round checks
    /// before it fills, and names in each write and record it makes.
    pub(super) fn covers(&self, snap: &Snapshot) -> Option<u64> {
        let store = self.get()?;
        let files = identities(snap);
        let proven = || self.known.lock().ok()?.proves(store, &files);
        if let Some(lineage) = proven() {
            return Some(lineage);
        }
        self.attach(store, snap);
        proven()
    }

    /// Attaches `snap` and records its files as known in the lineage the
    /// attach bound them to. If another attach moved the store to another
    /// lineage meanwhile, they are not recorded at all (a later read
    /// attaches again): recorded in the lineage the store serves now, they
    /// would read and write that lineage's pages, which another history
    /// wrote.
    fn attach(&self, store: &DiskStore, snap: &Snapshot) {
        let files = identities(snap);
        let attached = store.attach(&StateFacts {
            txid: snap.txid,
            page_count: snap.page_count,
            checkpoints: &files,
            since: &|p: PageNo| snap.frame(p).map(|l| l.file.header.max_txid),
        });
        #[cfg(any(test, feature = "test-hooks"))]
        crate::pause::point("local.attached", &pause_scope(store, snap));
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        let lineage = match attached {
            Attached::Serving(lineage) if lineage != 0 => lineage,
            Attached::Behind => {
                known.retry_at_ms = super::now_ms() + BEHIND_RETRY_MS;
                return;
            }
            Attached::Serving(_) | Attached::Failed => {
                known.retry_at_ms = super::now_ms() + ATTACH_RETRY_MS;
                return;
            }
        };
        if lineage != store.lineage() {
            return;
        }
        if known.lineage != lineage {
            *known = Known {
                lineage,
                ..Known::default()
            };
        }
        for id in files {
            known.add(id);
        }
    }

    /// A file the poller applied on top of a known state, proven in
    /// `lineage` (by `DiskStore::follow`): known too, if the files known
    /// are that lineage's.
    fn followed(&self, id: Identity, lineage: u64) {
        if let Ok(mut known) = self.known.lock()
            && known.lineage != 0
            && known.lineage == lineage
        {
            known.add(id);
        }
    }

    /// Opens the store `config` names (hydration's file, else the disk
    /// tier's) for a database of `snap`'s page size. A network filesystem,
    /// another replica's file or a store other accounts could write fails
    /// the open; a disk that cannot be written only loses the store, with
    /// a warning.
    pub fn open(&self, config: &Config, snap: &Snapshot) -> Result<()> {
        let ident = config.replica_url.redacted();
        let (path, capacity, temporary) = match (&config.hydration, &config.disk_cache) {
            (Some(h), _) => match &h.path {
                Some(p) => (p.clone(), Capacity::Unbounded, false),
                None => (temp_path(), Capacity::Unbounded, true),
            },
            (None, Some(dir)) => (
                dir.join(format!("{:016x}.pages", name_hash(ident))),
                Capacity::Bytes(config.disk_cache_size),
                false,
            ),
            (None, None) => return Ok(()),
        };
        match DiskStore::open(&path, ident, snap.page_size, capacity, temporary) {
            Ok(store) => {
                store.bound_lock_wait(config.storage_timeout);
                let store = Arc::new(store);
                self.attach(&store, snap);
                let _ = self.store.set(store);
                Ok(())
            }
            Err(
                e @ (OpenError::NetworkFs { .. }
                | OpenError::OtherReplica { .. }
                | OpenError::NotPrivate(_)),
            ) => Err(Error::Config(e.to_string())),
            Err(e) => {
                log::warn!("local store unavailable, reading from storage only: {e}");
                Ok(())
            }
        }
    }

    /// Whether the store holds the page (its metadata read, no page; no
    /// read at all for a state the fill found wholly held).
    pub(super) fn holds(&self, snap: &Snapshot, pgno: PageNo, loc: &FrameLoc) -> bool {
        self.verified(snap, loc).is_some_and(|(s, lineage)| {
            self.is_complete(lineage, snap) || s.has(lineage, pgno, span(snap, loc))
        })
    }

    /// The TXID up to which pages of `loc`'s file fetched for `snap` may be
    /// kept in the store (`None`: not kept). A fetch run reads one file, so
    /// this is asked once per run, when the run is made.
    pub(super) fn keep_until(&self, snap: &Snapshot, loc: &FrameLoc) -> Option<Txid> {
        self.verified(snap, loc).map(|_| snap.txid)
    }

    /// Keeps pages fetched from one file, constant from the end of that
    /// file to `until` (what `keep_until` gave), in the store: in the
    /// lineage the file is known in now, which is the one `keep_until`
    /// proved it in (a lineage started since knows none of the files known
    /// before it, and the store refuses a write named for a lineage it no
    /// longer serves).
    pub(super) fn keep(&self, file: &super::FileRef, until: Txid, pages: &[(PageNo, Page)]) {
        let Some(store) = self.get() else {
            return;
        };
        let id = file_identity(file);
        let Some(lineage) = self
            .known
            .lock()
            .ok()
            .and_then(|k| (k.lineage != 0 && k.files.contains_key(&id)).then_some(k.lineage))
        else {
            return;
        };
        let span = Span::new(file.header.max_txid, until);
        let batch: Vec<(PageNo, Span, &[u8])> = pages
            .iter()
            .map(|(p, page)| (*p, span, &page[..]))
            .collect();
        store.put(lineage, &batch);
    }

    /// Keeps in the store the first `pages` pages of `snap` that the open
    /// brought into the memory cache (a snapshot's first frames come with
    /// its header): a restart that finds the file's index on disk finds
    /// page 1 and the schema there too.
    pub fn keep_cached(&self, cache: &PageCache, snap: &Snapshot, pages: u32) {
        // Pages of one file go to the store in one write.
        struct Run {
            loc: FrameLoc,
            until: Txid,
            pages: Vec<(PageNo, Page)>,
        }
        let mut runs: Vec<Run> = Vec::new();
        for p in 1..=pages.min(snap.page_count) {
            let Some(loc) = snap.frame(PageNo(p)) else {
                continue;
            };
            let Some(page) = cache.get(&loc.key()) else {
                continue;
            };
            match runs
                .iter_mut()
                .find(|r| Arc::ptr_eq(&r.loc.file, &loc.file))
            {
                Some(run) => run.pages.push((PageNo(p), page)),
                None => {
                    if let Some(until) = self.keep_until(snap, &loc) {
                        let pages = vec![(PageNo(p), page)];
                        runs.push(Run { loc, until, pages });
                    }
                }
            }
        }
        for run in runs {
            self.keep(&run.loc.file, run.until, &run.pages);
        }
    }

    /// Counters for `PRAGMA litestream_stats`.
    pub fn render(&self) -> String {
        self.get()
            .map(|s| format!(" {}", s.render()))
            .unwrap_or_default()
    }
}

/// The scope of this module's pause points: the store file and the TXID
/// of the state at hand.
#[cfg(any(test, feature = "test-hooks"))]
fn pause_scope(store: &DiskStore, snap: &Snapshot) -> String {
    format!("{} at {}", store.path().to_string_lossy(), snap.txid)
}

/// What names the files of a replica in a shared folder.
fn name_hash(ident: &str) -> u64 {
    twox_hash::XxHash3_64::oneshot(ident.as_bytes())
}

/// Where the file metadata of the replica `config` names is kept, next to
/// its local store: `<hash>.index/` in the disk tier's folder, or
/// `<hydration path>.index/`. None without a store, or for a temporary
/// hydration copy.
pub fn blobs_for(config: &Config) -> Option<Blobs> {
    let dir = match (&config.hydration, &config.disk_cache) {
        (Some(h), _) => {
            let mut p = h.path.clone()?.into_os_string();
            p.push(".index");
            PathBuf::from(p)
        }
        (None, Some(dir)) => dir.join(format!(
            "{:016x}.index",
            name_hash(config.replica_url.redacted())
        )),
        (None, None) => return None,
    };
    Some(Blobs::new(dir, super::load::blob_is_level0))
}

/// A file name of this process under the temporary directory.
fn temp_path() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "litestream-vfs-{}-{}-{n}.hydrate",
        std::process::id(),
        super::now_ms()
    ))
}

/// The states over which `snap` knows the page at `loc` is constant: from
/// the end of the file holding it to the snapshot's TXID.
pub fn span(snap: &Snapshot, loc: &FrameLoc) -> Span {
    Span::new(loc.file.header.max_txid, snap.txid)
}

/// The identity of a file for the store's lineage checks. A compaction
/// (levels 1–8) keeps the header timestamp of the newest file it merges, so
/// every file of a lineage that ends at TXID `t` below level 9 carries the
/// time of transaction `t`: those files share one identity, `(t, time)`,
/// and a replica reset since wrote its TXID `t` at another time. A snapshot
/// (level 9) has a timestamp of its own, so it is known by its own bytes.
fn file_identity(f: &super::FileRef) -> Identity {
    let h = &f.header;
    if f.id.level == crate::storage::Level::SNAPSHOT {
        identity(
            f.id.level.get(),
            h.min_txid,
            h.max_txid,
            h.timestamp_ms,
            f.file_checksum.get().copied().unwrap_or(0),
        )
    } else {
        identity(0, crate::ltx::Txid(0), h.max_txid, h.timestamp_ms, 0)
    }
}

/// The identities of the files `snap` was built from: all of its file
/// table, not only the files that still hold a page. A state opened on a
/// new snapshot holds most pages in that snapshot (unknown to the store)
/// and the rest in its newest file (often not yet followed by the process
/// that keeps the store); the files in between are what it shares with the
/// stored lineage.
fn identities(snap: &Snapshot) -> Vec<Identity> {
    let mut out: Vec<Identity> = snap.files().map(|f| file_identity(f)).collect();
    out.sort();
    out.dedup();
    out
}

impl Local {
    /// Follows files the poller applied, oldest first: the store learns
    /// which pages changed, and keeps the pages of files read whole.
    pub(super) fn follow_loaded(&self, loaded: &[Loaded]) {
        let Some(store) = self.get() else {
            return;
        };
        for l in loaded {
            let h = &l.file.header;
            let pages: Vec<PageNo> = l
                .index
                .entries()
                .map(|e| e.pgno)
                .filter(|p| p.0 <= h.commit)
                .collect();
            let identity = file_identity(&l.file);
            let proven = store.follow(&Followed {
                min: h.min_txid,
                max: h.max_txid,
                identity,
                pages: &pages,
            });
            crate::pause::point("local.follow_proven", &store.path().to_string_lossy());
            let Some(lineage) = proven else {
                // Not known to the stored lineage: its pages are neither
                // read from the store nor written to it (an attach of a
                // state that holds it may prove it later).
                continue;
            };
            self.followed(identity, lineage);
            if l.file.corrupt.get().is_some() {
                continue;
            }
            let span = Span::new(h.max_txid, h.max_txid);
            let batch: Vec<(PageNo, Span, &[u8])> = l
                .pages
                .iter()
                .filter(|(p, _)| p.0 <= h.commit)
                .map(|(p, page)| (*p, span, page.as_slice()))
                .collect();
            store.put(lineage, &batch);
        }
    }

    /// Forgets known files that `current` (the state just published) does
    /// not reference, but for the newest [`KNOWN_RECENT`]: what the poller
    /// follows would otherwise grow the set by one file per commit, forever.
    pub(super) fn retain_known(&self, current: &Snapshot) {
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        if (known.files.len() as u64) < 2 * KNOWN_RECENT {
            return;
        }
        let referenced = identities(current);
        let floor = known.added.saturating_sub(KNOWN_RECENT);
        known
            .files
            .retain(|id, n| *n >= floor || referenced.binary_search(id).is_ok());
    }

    /// Files known now (for tests of the bound).
    #[cfg(test)]
    fn known_len(&self) -> usize {
        self.known.lock().map_or(0, |k| k.files.len())
    }

    /// Re-binds the store after a re-plan built a new state.
    pub(super) fn attach_built(&self, snap: &Snapshot) {
        if let Some(store) = self.get() {
            self.attach(store, snap);
        }
    }
}

#[path = "local_read.rs"]
mod read;

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
