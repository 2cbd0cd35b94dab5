//! Time travel: which states the replica's files still describe, and the
//! snapshot of the newest state committed at or before a given time.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::ltx::{Header, Txid};
use crate::storage::{FileId, FileInfo};
use crate::timefmt::format_rfc3339_nano;

use super::super::{Snapshot, Stats, plan};
use super::Catalog;

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
        let fetched = futures_util::future::try_join_all(missing.iter().map(|f| async move {
            let header = self.fetch_header(f.id).await?;
            Ok::<_, Error>(((f.id, f.size), header))
        }))
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
