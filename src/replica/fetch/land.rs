//! Fetch, decode, land: the one place where a miss goes to storage. Runs
//! are read (each in one ranged read, all at once), their frames decoded
//! into the cache, their flights landed, and their pages kept in the local
//! store.

use std::sync::Arc;

use futures_util::StreamExt;

use crate::cache::Page;
use crate::error::{Error, Result};
use crate::ltx::{self, PageNo};
use crate::{log, pause, runtime};

use super::super::Stats;
use super::Fetcher;
use super::decode::{Cutter, Ended, decode_page};
use super::inflight::Held;
use super::runs::Run;
use super::window::{Lease, ScanBuf};

/// Where the pages of a fetch go, besides its flights and the caller.
pub(super) enum Dest {
    /// The shared cache.
    Cache,
    /// Nowhere else (a demand read of a scan through a full cache).
    Caller,
    /// The connection's scan buffer, until its scan reads them: the
    /// scan-ahead while the cache is full.
    Ahead(Arc<ScanBuf>, Lease),
}

impl Fetcher {
    /// Fetches runs, each in one ranged read, all at once; decodes their
    /// frames into the cache and lands their flights. The one place where
    /// a miss goes to storage. `in_pool`: called on tokio's blocking pool
    /// (else on a caller's thread outside the runtime, or inside a foreign
    /// one). The runs' bytes are held from the read budget (`held`, when the
    /// caller took them already) until they are decoded.
    pub(super) fn fetch_runs(
        &self,
        runs: &[Run],
        page_size: ltx::PageSize,
        in_pool: bool,
        dest: Dest,
        held: Option<Held>,
    ) -> Vec<Result<Vec<(PageNo, Page)>>> {
        let bytes = Run::bytes(runs);
        let hold = async move {
            match held {
                Some(held) => Ok(held),
                None => self.hold(bytes).await,
            }
        };
        let held = if in_pool {
            tokio::runtime::Handle::current().block_on(hold)
        } else {
            runtime::block_on(hold).and_then(|h| h)
        };
        let held = match held {
            Ok(held) => held,
            Err(e) => {
                for run in runs {
                    for (_, _, c) in &run.frames {
                        c.land(None);
                    }
                }
                return runs.iter().map(|_| Err(e.clone())).collect();
            }
        };
        // Every run streams at once; each frame is decoded as soon as its
        // bytes are in (on this thread: the caller's, or the blocking
        // pool's), lands its flight then, and no body is held whole.
        // Pages the scan-ahead keeps out of the cache hold their share of
        // the budget until the scan reads them.
        let to_cache = matches!(dest, Dest::Cache);
        let (held, lease) = match dest {
            Dest::Ahead(scan, lease) => (None, Some((scan, Arc::new(lease.with(held))))),
            _ => (Some(held), None),
        };
        let lease = lease.as_ref().map(|(s, l)| (&**s, l));
        let reads = runs.iter().map(|run| async move {
            let result = self.stream_run(run, page_size, to_cache, lease).await;
            if result.is_err() {
                // The frames not landed yet fail (landed ones stay).
                for (_, _, c) in &run.frames {
                    c.land(None);
                }
            }
            result
        });
        let all = futures_util::future::join_all(reads);
        let out = if in_pool {
            tokio::runtime::Handle::current().block_on(all)
        } else {
            match runtime::block_on(all) {
                Ok(v) => v,
                Err(e) => {
                    for (_, _, c) in runs.iter().flat_map(|r| &r.frames) {
                        c.land(None);
                    }
                    runs.iter().map(|_| Err(e.clone())).collect()
                }
            }
        };
        // The pages are in the cache (or with the caller): the bytes go
        // back to the budget (those of the scan-ahead's pages once the
        // scan read them).
        drop(held);
        // ...and filled after it, once every waiter has its page: the store
        // write (a lock other processes share, and disk I/O) never delays
        // them.
        for (run, result) in runs.iter().zip(&out) {
            if let (Ok(pages), Some(until)) = (result, run.keep_until) {
                pause::point("fetch.store_write", self.storage.describe());
                self.local.keep(&run.file, until, pages);
            }
        }
        out
    }

    /// One run's ranged read, its frames decoded as they arrive: each
    /// page goes to the cache (`to_cache`) and lands its flight at once.
    async fn stream_run(
        &self,
        run: &Run,
        page_size: ltx::PageSize,
        to_cache: bool,
        ahead: Option<(&ScanBuf, &Arc<Lease>)>,
    ) -> Result<Vec<(PageNo, Page)>> {
        let range = run.range().unwrap_or(0..0);
        Stats::add(&self.stats.reads, 1);
        let mut chunks = self
            .storage
            .read_version_chunks(run.file.id, run.file.version, range.clone())
            .await?;
        pause::point_async("fetch.fetched", self.storage.describe()).await;
        let describe = || format!("{} {}", self.storage.describe(), run.file.id);
        let frames = run.frames.iter().map(|(p, loc, _)| (*p, loc.offset));
        let mut cutter = Cutter::new(range, frames.collect());
        let mut pages = Vec::with_capacity(run.frames.len());
        let mut each = |i: usize, pgno: PageNo, raw: &[u8]| -> Result<()> {
            let page = decode_page(raw, pgno, page_size, &describe)?;
            if let Some((_, loc, c)) = run.frames.get(i) {
                if to_cache {
                    self.cache.insert(loc.key(), Arc::clone(&page));
                } else if let Some((scan, lease)) = ahead {
                    // Before it lands: a reader woken by the landing finds
                    // it here, and takes it out. Not once its transaction
                    // ended (the page only lands then).
                    scan.keep_ahead(loc.key(), Arc::clone(&page), lease);
                }
                c.land(Some(Arc::clone(&page)));
            }
            pages.push((pgno, page));
            Ok(())
        };
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            Stats::add(&self.stats.read_bytes, chunk.len() as u64);
            cutter.push(&chunk, &describe, &mut each)?;
        }
        drop(chunks);
        // A frame longer than a page can compress to: read it exactly.
        while let Ended::Exact(offset, len) = cutter.finish(&describe, &mut each)? {
            let raw = self.read_exact(run, offset, len).await?;
            cutter.exact(&raw, &mut each)?;
        }
        Ok(pages)
    }

    /// `len` bytes of a run's file from `offset`: a frame longer than the
    /// bound the run was read with.
    pub(super) async fn read_exact(&self, run: &Run, offset: u64, len: usize) -> Result<Vec<u8>> {
        Stats::add(&self.stats.reads, 1);
        log::debug!("exact read of {len} bytes at {offset} of {}", run.file.id);
        let range = offset..offset.saturating_add(len as u64);
        let bytes = self
            .storage
            .read_version(run.file.id, run.file.version, range)
            .await?;
        if bytes.len() != len {
            return Err(Error::Missing(format!(
                "short read of {} {}",
                self.storage.describe(),
                run.file.id
            )));
        }
        Ok(bytes)
    }
}
