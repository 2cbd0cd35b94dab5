//! The catalog of a replica: what storage lists, the headers of its files,
//! the plan of a state and the snapshot built from it, and the history of
//! reachable states (in `history.rs`).

mod history;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::cache::{Page, PageCache};
use crate::error::{Error, Result};
use crate::ltx::{FileName, HEADER_SIZE, Header, Txid};
use crate::storage::{FileId, FileInfo, Level, Storage};
use crate::store::Blobs;

pub use history::{AtTime, State};

use super::load::{self, Loaded};
use super::{Plan, Snapshot, Stats, Verifier, plan};

/// Listing, headers, plans and builds of one replica.
pub struct Catalog {
    storage: Arc<dyn Storage>,
    cache: Arc<PageCache>,
    stats: Arc<Stats>,
    /// Checks the large files each load brings in.
    verifier: Arc<Verifier>,
    /// Headers of listed files (by name and size), for time travel.
    headers: Mutex<HashMap<(FileId, u64), Header>>,
    /// What earlier loads learnt of the files, kept on disk next to the
    /// local store (when one is configured).
    blobs: Option<Arc<Blobs>>,
}

impl Catalog {
    pub fn new(
        storage: Arc<dyn Storage>,
        cache: Arc<PageCache>,
        stats: Arc<Stats>,
        verifier: Arc<Verifier>,
        blobs: Option<Arc<Blobs>>,
    ) -> Catalog {
        Catalog {
            storage,
            cache,
            stats,
            verifier,
            headers: Default::default(),
            blobs,
        }
    }

    /// The file metadata kept on disk, when configured.
    pub fn blobs(&self) -> Option<&Blobs> {
        self.blobs.as_deref()
    }

    /// Every LTX file of every level, listed concurrently.
    pub async fn list_all(&self) -> Result<Vec<FileInfo>> {
        Stats::add(&self.stats.lists, self.storage.list_all_requests());
        Ok(self.storage.list_all().await?)
    }

    /// The level-0 files after `after`, in one listing.
    pub async fn list_l0(&self, after: FileName) -> Result<Vec<FileInfo>> {
        Stats::add(&self.stats.lists, 1);
        Ok(self.storage.list(Level::L0, Some(after)).await?)
    }

    /// The header of `id` as storage holds it now, read past the header
    /// cache (a reset rewrites a file under the same name and size).
    pub async fn read_header(&self, id: FileId) -> Result<Header> {
        Stats::add(&self.stats.reads, 1);
        self.fetch_header(id).await
    }

    async fn fetch_header(&self, id: FileId) -> Result<Header> {
        let bytes = self.storage.read(id, 0..HEADER_SIZE as u64).await?;
        Header::decode(&bytes)
            .map_err(|e| Error::corrupt(format!("{} {}", self.storage.describe(), id), e))
    }

    /// Loads files and puts the pages of those read whole into the cache.
    pub async fn load(&self, files: &[FileInfo]) -> Result<Vec<Loaded>> {
        let loaded = load::load_all(self.storage.as_ref(), files, self.blobs()).await?;
        let fetched = loaded.iter().filter(|l| !l.kept).count();
        Stats::add(&self.stats.reads, fetched as u64);
        for l in &loaded {
            self.cache_pages(l);
            self.verifier.check(l);
        }
        Ok(loaded)
    }

    fn cache_pages(&self, l: &Loaded) {
        for (entry, (_, page)) in l.index.entries().zip(&l.pages) {
            self.cache
                .insert(l.file.key(entry.offset), Page::from(page.as_slice()));
        }
    }

    /// Forgets what was learnt of the files so far (their headers, and the
    /// handles storage keeps open): after a reset the same names hold other
    /// files.
    pub async fn forget(&self) {
        if let Ok(mut h) = self.headers.lock() {
            h.clear();
        }
        self.storage.forget_open_files().await;
    }

    /// The newest state at or before `limit`, from what storage holds now.
    pub async fn build(&self, limit: Option<Txid>) -> Result<Option<(Snapshot, Plan)>> {
        let listing = self.list_all().await?;
        if let Some(b) = self.blobs() {
            let names = load::blob_names(&listing);
            b.retain(|n| names.contains(n));
        }
        let Some(plan) = plan::plan(&listing, limit) else {
            return Ok(None);
        };
        let loaded = self.load(&plan.files).await?;
        let snap = Snapshot::build(loaded.iter().map(|l| (&l.file, &l.index)))?;
        Ok(Some((snap, plan)))
    }
}
