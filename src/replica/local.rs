//! The replica's side of the local page store ([`crate::store`]): which
//! store a configuration names, the span a snapshot knows for a page, and
//! the hooks the read path and the poller call. Everything here is best
//! effort: without a store, or when the disk fails, reads go to storage.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::cache::{FrameKey, Page};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log;
use crate::ltx::PageNo;
use crate::store::{
    Capacity, DiskStore, Followed, Identity, OpenError, PageStore, Span, StateFacts, identity,
};

use super::load::Loaded;
use super::{FrameLoc, Io, Snapshot};

/// The local store of one replica, once its page size is known.
#[derive(Default)]
pub struct Local {
    store: OnceLock<Arc<DiskStore>>,
}

impl Local {
    pub fn get(&self) -> Option<&Arc<DiskStore>> {
        self.store.get()
    }

    /// Opens the store `config` names (hydration's file, else the disk
    /// tier's) for a database of `snap`'s page size. A network filesystem
    /// or another replica's file fails the open; a disk that cannot be
    /// written only loses the store, with a warning.
    pub fn open(&self, config: &Config, snap: &Snapshot) -> Result<()> {
        let ident = config.replica_url.redacted();
        let (path, capacity, temporary) = match (&config.hydration, &config.disk_cache) {
            (Some(h), _) => match &h.path {
                Some(p) => (p.clone(), Capacity::Unbounded, false),
                None => (temp_path(), Capacity::Unbounded, true),
            },
            (None, Some(dir)) => (
                dir.join(format!(
                    "{:016x}.pages",
                    twox_hash::XxHash3_64::oneshot(ident.as_bytes())
                )),
                Capacity::Bytes(config.disk_cache_size),
                false,
            ),
            (None, None) => return Ok(()),
        };
        match DiskStore::open(&path, ident, snap.page_size, capacity, temporary) {
            Ok(store) => {
                let store = Arc::new(store);
                attach(store.as_ref(), snap);
                let _ = self.store.set(store);
                Ok(())
            }
            Err(e @ (OpenError::NetworkFs { .. } | OpenError::OtherReplica { .. })) => {
                Err(Error::Config(e.to_string()))
            }
            Err(e) => {
                log::warn!("local store unavailable, reading from storage only: {e}");
                Ok(())
            }
        }
    }

    /// Counters for `PRAGMA litestream_stats`.
    pub fn render(&self) -> String {
        self.get()
            .map(|s| format!(" {}", s.render()))
            .unwrap_or_default()
    }
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

/// The identity of a file for the store's lineage checks.
fn file_identity(f: &super::FileRef) -> Identity {
    identity(
        f.id.level.get(),
        f.header.min_txid,
        f.header.max_txid,
        f.header.timestamp_ms,
        f.file_checksum.get().copied().unwrap_or(0),
    )
}

/// Binds `store` to the lineage of `snap` and catches it up.
pub fn attach(store: &dyn PageStore, snap: &Snapshot) {
    let mut checkpoints: Vec<Identity> = Vec::new();
    let mut seen: std::collections::HashSet<*const super::FileRef> = Default::default();
    let mut last: *const super::FileRef = std::ptr::null();
    for p in 1..=snap.page_count {
        let Some(loc) = snap.frame(PageNo(p)) else {
            continue;
        };
        let ptr = Arc::as_ptr(&loc.file);
        if ptr == last || !seen.insert(ptr) {
            continue;
        }
        last = ptr;
        checkpoints.push(file_identity(&loc.file));
    }
    checkpoints.sort();
    checkpoints.dedup();
    let since = |p: PageNo| snap.frame(p).map(|l| l.file.header.max_txid);
    store.attach(&StateFacts {
        txid: snap.txid,
        page_count: snap.page_count,
        checkpoints: &checkpoints,
        since: &since,
    });
}

impl Io {
    /// The page from the local store, put into the memory cache as well
    /// while that has room: a page the disk holds is never worth evicting
    /// another for (a scan of a hydrated database larger than the memory
    /// cache would otherwise churn it on every page).
    pub(super) fn local_get(&self, snap: &Snapshot, pgno: PageNo, loc: &FrameLoc) -> Option<Page> {
        let page = self.local.get()?.get(pgno, span(snap, loc))?;
        if self.cache.weight() + 2 * page.len() as u64 > self.cache.budget() {
            return Some(page);
        }
        self.cache.insert(
            FrameKey {
                file: loc.file.id,
                offset: loc.offset,
            },
            Arc::clone(&page),
        );
        Some(page)
    }

    /// Keeps pages fetched for `snap` in the local store.
    pub(super) fn local_put(&self, snap: &Snapshot, pages: &[(PageNo, &FrameLoc, Page)]) {
        let Some(store) = self.local.get() else {
            return;
        };
        let batch: Vec<(PageNo, Span, &[u8])> = pages
            .iter()
            .map(|(p, loc, page)| (*p, span(snap, loc), &page[..]))
            .collect();
        store.put(&batch);
    }

    /// Follows files the poller applied, oldest first: the store learns
    /// which pages changed, and keeps the pages of files read whole.
    pub(super) fn local_follow(&self, loaded: &[Loaded]) {
        let Some(store) = self.local.get() else {
            return;
        };
        for l in loaded {
            let h = &l.file.header;
            let pages: Vec<PageNo> = l
                .index
                .entries
                .iter()
                .map(|e| e.pgno)
                .filter(|p| p.0 <= h.commit)
                .collect();
            store.follow(&Followed {
                min: h.min_txid,
                max: h.max_txid,
                identity: file_identity(&l.file),
                pages: &pages,
            });
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
            store.put(&batch);
        }
    }

    /// Re-binds the store after a re-plan built a new state.
    pub(super) fn local_attach(&self, snap: &Snapshot) {
        if let Some(store) = self.local.get() {
            attach(store.as_ref(), snap);
        }
    }
}
