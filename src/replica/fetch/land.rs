//! Fetch, decode, land: the one place where a miss goes to storage. Runs
//! are read (each in one ranged read, all at once), their frames decoded
//! into the cache, their flights landed, and their pages kept in the local
//! store.

use std::ops::Range;
use std::sync::Arc;

use crate::cache::Page;
use crate::error::{Error, Result};
use crate::ltx::{self, PageNo};
use crate::{log, pause, runtime};

use super::super::Stats;
use super::Fetcher;
use super::decode::decode_pages;
use super::inflight::Held;
use super::runs::Run;

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
        to_cache: bool,
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
        let reads = runs.iter().map(|run| async move {
            let range = run.range().unwrap_or(0..0);
            Stats::add(&self.stats.reads, 1);
            let bytes = self
                .storage
                .read_version(run.file.id, run.file.version, range.clone())
                .await?;
            Stats::add(&self.stats.read_bytes, bytes.len() as u64);
            Ok::<_, Error>((range, bytes))
        });
        let all = futures_util::future::join_all(reads);
        let fetched = if in_pool {
            tokio::runtime::Handle::current().block_on(all)
        } else {
            match runtime::block_on(all) {
                Ok(v) => v,
                Err(e) => runs.iter().map(|_| Err(e.clone())).collect(),
            }
        };
        pause::point("fetch.fetched", self.storage.describe());
        let mut out = Vec::with_capacity(runs.len());
        for (run, bytes) in runs.iter().zip(fetched) {
            let result = bytes.and_then(|(range, bytes)| {
                self.decode_run(run, range, &bytes, page_size, in_pool, to_cache)
            });
            let landed: Vec<Option<Page>> = match &result {
                Ok(pages) => pages.iter().map(|(_, p)| Some(Arc::clone(p))).collect(),
                Err(_) => vec![None; run.frames.len()],
            };
            for ((_, _, c), page) in run.frames.iter().zip(landed) {
                c.land(page);
            }
            out.push(result);
        }
        // The bodies are dropped and the pages in the cache (or with the
        // caller): the bytes go back to the budget.
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

    fn decode_run(
        &self,
        run: &Run,
        range: Range<u64>,
        bytes: &[u8],
        page_size: ltx::PageSize,
        in_pool: bool,
        to_cache: bool,
    ) -> Result<Vec<(PageNo, Page)>> {
        let describe = || format!("{} {}", self.storage.describe(), run.file.id);
        let frames = run.frames.iter().map(|(pgno, loc, _)| (*pgno, loc.offset));
        // A frame longer than a page can compress to: read it exactly.
        let beyond = |offset, len| self.read_exact(run, offset, len, in_pool);
        // Each page goes to the cache as soon as it is decoded.
        let each = |i: usize, page: &Page| {
            if let (true, Some((_, loc, _))) = (to_cache, run.frames.get(i)) {
                self.cache.insert(loc.key(), Arc::clone(page));
            }
        };
        let pages = decode_pages(bytes, &range, frames, page_size, &describe, beyond, each)?;
        Ok(pages)
    }

    /// `len` bytes of a run's file from `offset`: a frame longer than the
    /// bound the run was read with.
    fn read_exact(&self, run: &Run, offset: u64, len: usize, in_pool: bool) -> Result<Vec<u8>> {
        Stats::add(&self.stats.reads, 1);
        log::debug!("exact read of {len} bytes at {offset} of {}", run.file.id);
        let range = offset..offset.saturating_add(len as u64);
        let read = self
            .storage
            .read_version(run.file.id, run.file.version, range);
        let bytes = if in_pool {
            tokio::runtime::Handle::current().block_on(read)?
        } else {
            runtime::block_on(read)??
        };
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
