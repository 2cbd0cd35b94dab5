//! Time travel: which states the replica's files still describe, and the
//! snapshot of the newest state committed at or before a given time.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use futures_util::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::ltx::{Header, Txid};
use crate::storage::{FileId, FileInfo};
use crate::timefmt::format_rfc3339_nano;

use super::super::{Snapshot, Stats, plan};
use super::Catalog;

/// Header reads in flight at once when time travel or the history needs
/// the headers of files it has not seen: a replica of thousands of files
/// would otherwise open thousands of connections at once (and be throttled
/// for it); 32 reads of a few hundred bytes each still take a 1,000-file
/// listing through in about 30 round trips.
const HEADER_FETCHES: usize = 32;

/// Time travel to before the oldest reachable state: the official
/// extension's text (its own scenario `PragmaRelativeTime` accepts exactly
/// this), which tools match on.
pub const BEFORE_EARLIEST: &str = "timestamp is before earliest LTX file";

/// Time travel on a replica that holds no reachable state at all: the
/// official extension's text.
pub const NO_BACKUP_FILES: &str = "no backup files available";

/// A state the replica can be read at: the TXID a file ends at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub txid: Txid,
    /// When the file was written (its header timestamp), Unix milliseconds.
    pub timestamp_ms: i64,
    pub file: FileId,
}

/// A snapshot for a point in time, and whether it is the newest state
/// committed by then (or an older one, because compaction removed the
/// files that described the newer).
pub struct AtTime {
    pub snapshot: Snapshot,
    pub exact: bool,
}

impl Catalog {
    /// Headers of `listing`, from the cache or fetched concurrently. Files
    /// never change, so a header is fetched once (per name and size: a
    /// reset replica reuses names, and the cache is cleared on a reset).
    async fn headers(&self, listing: &[FileInfo]) -> Result<HashMap<FileId, Header>> {
        let missing: Vec<FileInfo> = {
            let cache = self.headers.lock().map_err(|_| poisoned())?;
            listing
                .iter()
                .filter(|f| !cache.contains_key(&(f.id, f.size)))
                .copied()
                .collect()
        };
        Stats::add(&self.stats.reads, missing.len() as u64);
        // Collected first: a stream of a closure's futures is not `Send` for
        // every lifetime, which the callers' `block_on` needs.
        let reads: Vec<_> = missing
            .iter()
            .map(|&f| async move {
                let header = self.fetch_header(f.id).await?;
                Ok::<_, Error>(((f.id, f.size), header))
            })
            .collect();
        let fetched: Vec<((FileId, u64), Header)> = futures_util::stream::iter(reads)
            .buffer_unordered(HEADER_FETCHES)
            .try_collect()
            .await?;
        let mut cache = self.headers.lock().map_err(|_| poisoned())?;
        cache.extend(fetched);
        cache.retain(|(id, size), _| listing.iter().any(|f| f.id == *id && f.size == *size));
        Ok(listing
            .iter()
            .filter_map(|f| cache.get(&(f.id, f.size)).map(|h| (f.id, h.clone())))
            .collect())
    }

    /// Every reachable state, newest first.
    pub async fn history(&self) -> Result<Vec<State>> {
        let listing = self.list_all().await?;
        let headers = self.headers(&listing).await?;
        let mut states: Vec<State> = listing
            .iter()
            .filter(|f| {
                plan::plan(&listing, Some(f.id.name.max)).and_then(|p| p.txid())
                    == Some(f.id.name.max)
            })
            .filter_map(|f| {
                headers.get(&f.id).map(|h| State {
                    txid: f.id.name.max,
                    timestamp_ms: h.timestamp_ms,
                    file: f.id,
                })
            })
            .collect();
        states.sort_by(|a, b| b.txid.cmp(&a.txid).then(a.file.level.cmp(&b.file.level)));
        Ok(states)
    }

    /// The newest state whose files were all written before `at_ms`.
    pub async fn build_at_time(&self, at_ms: i64) -> Result<AtTime> {
        let listing = self.list_all().await?;
        let headers = self.headers(&listing).await?;
        let written_by = |f: &&FileInfo| headers.get(&f.id).is_some_and(|h| h.timestamp_ms < at_ms);
        let eligible: Vec<FileInfo> = listing.iter().filter(written_by).copied().collect();
        let Some(p) = plan::plan(&eligible, None) else {
            let oldest = listing
                .iter()
                .filter(|f| plan::plan(&listing, Some(f.id.name.max)).is_some())
                .filter_map(|f| headers.get(&f.id).map(|h| h.timestamp_ms))
                .min();
            // The message is the official extension's, word for word: tools
            // match on it. The detail goes to the log and litestream_stats.
            return Err(Error::Usage(match oldest {
                Some(ms) => {
                    self.stats.earliest_state_ms.store(ms, Ordering::Relaxed);
                    crate::log::warn!(
                        "{}: no state of the replica at {}: the oldest reachable state is from {}; pick a later time",
                        self.storage.describe(),
                        format_rfc3339_nano(at_ms),
                        format_rfc3339_nano(ms)
                    );
                    BEFORE_EARLIEST.into()
                }
                None => {
                    crate::log::warn!(
                        "{}: no state of the replica at {}: it holds no reachable state",
                        self.storage.describe(),
                        format_rfc3339_nano(at_ms)
                    );
                    NO_BACKUP_FILES.into()
                }
            }));
        };
        let newest_committed = eligible.iter().map(|f| f.id.name.max).max();
        let loaded = self.load(&p.files).await?;
        let snapshot = Snapshot::build(loaded.iter().map(|l| (&l.file, &l.index)))?;
        let exact = newest_committed == Some(snapshot.txid);
        Ok(AtTime { snapshot, exact })
    }
}

fn poisoned() -> Error {
    Error::Internal("header cache lock poisoned".into())
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::cache::PageCache;
    use crate::config::Verify;
    use crate::ltx::{FileName, LtxBuilder, PageSize};
    use crate::replica::Verifier;
    use crate::storage::{BoxFuture, FileStorage, Level, Storage, StorageError};

    /// A folder replica that counts the reads in flight at once.
    #[derive(Debug)]
    struct Counting {
        inner: FileStorage,
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl Storage for Counting {
        fn describe(&self) -> &str {
            self.inner.describe()
        }

        fn list(
            &self,
            level: Level,
            after: Option<FileName>,
        ) -> BoxFuture<'_, Result<Vec<FileInfo>, StorageError>> {
            self.inner.list(level, after)
        }

        fn read(
            &self,
            file: FileId,
            range: Range<u64>,
        ) -> BoxFuture<'_, Result<Vec<u8>, StorageError>> {
            Box::pin(async move {
                let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.most.fetch_max(now, Ordering::SeqCst);
                // In flight for a while: every read the caller lets start
                // starts before any ends.
                for _ in 0..8 {
                    tokio::task::yield_now().await;
                }
                let bytes = self.inner.read(file, range).await;
                self.now.fetch_sub(1, Ordering::SeqCst);
                bytes
            })
        }
    }

    #[tokio::test]
    async fn missing_headers_are_fetched_a_bounded_number_at_a_time() {
        const FILES: u64 = 300;
        let dir = tempfile::tempdir().unwrap();
        let l0 = dir.path().join("ltx").join("0");
        std::fs::create_dir_all(&l0).unwrap();
        let ps = PageSize::new(4096).unwrap();
        for t in 1..=FILES {
            let mut b = LtxBuilder::new(ps, t, t, 1).timestamp_ms(1_000 + t as i64);
            b = b.page(1, format!("txid {t}").as_bytes());
            std::fs::write(l0.join(format!("{t:016x}-{t:016x}.ltx")), b.build()).unwrap();
        }
        let storage = Arc::new(Counting {
            inner: FileStorage::new(dir.path().to_path_buf()),
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        });
        let (cache, stats) = (
            Arc::new(PageCache::new(1 << 20)),
            Arc::new(Stats::default()),
        );
        let verifier = Arc::new(Verifier::new(
            Arc::clone(&storage) as Arc<dyn Storage>,
            Arc::clone(&cache),
            Arc::clone(&stats),
            Verify::Fetched,
            std::time::Duration::from_secs(10),
        ));
        let catalog = Catalog::new(storage.clone(), cache, stats, verifier, None);
        let states = catalog.history().await.unwrap();
        assert_eq!(states.len(), FILES as usize);
        let most = storage.most.load(Ordering::SeqCst);
        assert!(
            most <= HEADER_FETCHES,
            "{most} header reads in flight at once (bound {HEADER_FETCHES})"
        );
    }
}
