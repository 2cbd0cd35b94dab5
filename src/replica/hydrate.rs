//! Hydration: filling the local store with the whole current state in the
//! background, so that every read becomes local.
//!
//! One process per store file fills (it holds the fill lock); the others
//! read what it wrote and report its progress. The fill asks storage for
//! large ranges of frames, several at a time, never for single pages.
//! Catching up needs no request of its own: the poller fetches each new
//! small LTX file whole and its pages go into the store as it follows
//! (see `Local::follow_loaded`); a round after a new snapshot only looks at the
//! pages whose frame moved, and fetches those the store does not hold.
//!
//! The first round of a process also sweeps the copy: it reads and hashes
//! every page the store holds, in runs, and drops those that fail (a page
//! a power loss tore), so that the round fetches them again. A round that
//! leaves every page held tells the read path (`Local::set_complete`),
//! which then stops asking the store about pages to prefetch.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::ltx::{PageNo, lock_page};
use crate::store::{DiskStore, Fill, Span};
use crate::{log, runtime};

use super::fetch::decode_frames;
use super::local::span;
use super::{FileRef, FrameLoc, Replica, Snapshot, Stats};

/// Largest ranged read of a fill: a few round trips' worth of bandwidth,
/// and a bounded buffer per request in flight.
const FILL_RANGE_MAX: u64 = 8 * 1024 * 1024;
/// Smallest: below this a request's round trip costs more than its bytes.
const FILL_RANGE_MIN: u64 = 1024 * 1024;
/// A fill aims at this many ranged reads per request slot, so that all
/// slots stay busy and progress moves in steps a user can see.
const RANGES_PER_SLOT: u64 = 4;
/// Bytes of frames the store already holds that a range may span rather
/// than start another request: a request costs a round trip, 512 KiB cost
/// about as much on a fast link.
const FILL_GAP: u64 = 512 * 1024;
/// Ranged reads in flight.
const FILL_PARALLEL: usize = 4;

/// Hydration progress of the process that fills.
#[derive(Debug, Default)]
pub struct Progress {
    filling: AtomicBool,
    filled: AtomicU64,
    wanted: AtomicU64,
    /// Storage requests the fill made.
    requests: AtomicU64,
}

/// One ranged read of a fill: frames of one file.
struct Run {
    file: Arc<FileRef>,
    bytes: Range<u64>,
    pages: Vec<(PageNo, FrameLoc)>,
}

impl Replica {
    /// Hydration progress in percent, `None` without hydration.
    pub fn hydration_progress(&self) -> Option<f64> {
        self.config.hydration.as_ref()?;
        let store = self.io.local.get()?;
        let (filled, wanted) = if self.hydration.filling.load(Ordering::Relaxed) {
            (
                self.hydration.filled.load(Ordering::Relaxed),
                self.hydration.wanted.load(Ordering::Relaxed),
            )
        } else {
            store.fill().map_or((0, 0), |f| (f.filled, f.wanted))
        };
        Some(if wanted == 0 {
            0.0
        } else {
            (filled.min(wanted) as f64) * 100.0 / wanted as f64
        })
    }

    /// Storage requests this process made to fill its copy.
    pub fn hydration_requests(&self) -> u64 {
        self.hydration.requests.load(Ordering::Relaxed)
    }

    /// The file hydration fills, `None` without hydration.
    pub fn hydration_file(&self) -> Option<PathBuf> {
        self.config.hydration.as_ref()?;
        Some(self.io.local.get()?.path().to_path_buf())
    }
}

/// Starts the fill task of `replica`; it ends with the replica. It is
/// supervised: a panic is counted in the stats (`task_panics`), logged, and
/// the task starts again after a backoff.
pub fn spawn(replica: &Arc<Replica>) {
    replica.supervise_weakly("hydration", run);
}

async fn run(weak: Weak<Replica>) {
    // Held for as long as this process fills.
    let mut claim = None;
    let mut done: Option<Arc<Snapshot>> = None;
    let mut failing = false;
    loop {
        let Some(r) = weak.upgrade() else { return };
        let Some(store) = r.io.local.get().cloned() else {
            return;
        };
        #[cfg(any(test, feature = "test-hooks"))]
        super::poller::hooks::panic_if_armed("hydration", &r);
        if claim.is_none() {
            let s = Arc::clone(&store);
            claim = runtime::off_worker("the fill lock", move || s.try_fill_lock())
                .await
                .ok()
                .flatten();
            r.hydration
                .filling
                .store(claim.is_some(), Ordering::Relaxed);
        }
        if claim.is_some() {
            match fill(&r, &store, done.as_ref()).await {
                Ok(snap) => {
                    if std::mem::take(&mut failing) {
                        log::info!("{}: hydration works again", r.io.storage.describe());
                    }
                    done = Some(snap);
                }
                Err(e) if failing => log::debug!("hydration: {e}"),
                Err(e) => {
                    failing = true;
                    log::warn!(
                        "{}: hydration paused, retrying: {e}",
                        r.io.storage.describe()
                    );
                }
            }
        }
        let interval = r.config.poll_interval;
        drop((r, store));
        tokio::time::sleep(interval).await;
    }
}

/// One round: brings the store to the current snapshot. Returns the
/// snapshot it completed. The store is read and written on the blocking
/// pool, never on a worker.
async fn fill(
    r: &Arc<Replica>,
    store: &Arc<DiskStore>,
    done: Option<&Arc<Snapshot>>,
) -> Result<Arc<Snapshot>> {
    let snap = r.current();
    if done.is_some_and(|d| Arc::ptr_eq(d, &snap)) {
        return Ok(snap);
    }
    // After a wait for the store's lock timed out, a round starts only
    // once the lock is free again (tried once, on the blocking pool).
    let s = Arc::clone(store);
    if store.recently_busy()
        && !runtime::off_worker("the store lock", move || s.lock_is_free()).await?
    {
        return Err(lock_held(store));
    }
    let (rr, s, sn, d) = (
        Arc::clone(r),
        Arc::clone(store),
        Arc::clone(&snap),
        done.cloned(),
    );
    let Scanned {
        lineage,
        wanted,
        missing,
    } = runtime::off_worker("a hydration scan", move || scan(&rr, &s, &sn, d.as_ref())).await??;
    let progress = &r.hydration;
    progress.wanted.store(wanted, Ordering::Relaxed);
    progress
        .filled
        .store(wanted - missing.len() as u64, Ordering::Relaxed);
    let record = {
        let (r, store, txid) = (Arc::clone(r), Arc::clone(store), snap.txid);
        move || {
            store.set_fill(
                lineage,
                Fill {
                    filled: r.hydration.filled.load(Ordering::Relaxed),
                    wanted,
                    txid,
                },
            )
        }
    };
    let rec = record.clone();
    runtime::off_worker("a hydration record", rec).await?;
    if missing.is_empty() {
        r.io.local.set_complete(&snap, lineage);
        return Ok(snap);
    }
    log::debug!(
        "{}: hydrating {} of {wanted} pages at TXID {}",
        r.io.storage.describe(),
        missing.len(),
        snap.txid
    );
    let runs = plan_runs(missing);
    let mut results = futures_util::stream::iter(
        runs.into_iter()
            .map(|run| fetch_run(r, store, lineage, &snap, run)),
    )
    .buffer_unordered(FILL_PARALLEL);
    let mut first_error = None;
    while let Some(result) = results.next().await {
        match result {
            Ok(n) => {
                progress.filled.fetch_add(n, Ordering::Relaxed);
                let rec = record.clone();
                if let Err(e) = runtime::off_worker("a hydration record", rec).await {
                    first_error.get_or_insert(e);
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    drop(results);
    // Every run stored its pages, or the round failed (a run whose write
    // was skipped is an error): only a round that stored everything it
    // found missing completes the copy and is remembered as `done`.
    match first_error {
        Some(e) => Err(e),
        None => {
            r.io.local.set_complete(&snap, lineage);
            Ok(snap)
        }
    }
}

fn not_written(store: &DiskStore, what: &str) -> Error {
    Error::Unavailable(format!(
        "{what} could not be written to the local store {}",
        store.path().display()
    ))
}

fn lock_held(store: &DiskStore) -> Error {
    Error::Unavailable(format!(
        "the write lock of the local store {} is held elsewhere",
        store.path().display()
    ))
}

/// What a round's scan found.
struct Scanned {
    /// The lineage the store serves the state in: the round reads, writes
    /// and records in it only, so that a reset's new lineage, started
    /// meanwhile, gets nothing of this round.
    lineage: u64,
    /// How many pages the state has.
    wanted: u64,
    /// The frames to fetch.
    missing: Vec<(PageNo, FrameLoc)>,
}

/// The pages of `snap` the store lacks (one metadata read each, on the
/// blocking pool; the first round of a process reads and checks the pages
/// too, see `held`), after storing those the memory cache holds.
fn scan(
    r: &Replica,
    store: &DiskStore,
    snap: &Snapshot,
    done: Option<&Arc<Snapshot>>,
) -> Result<Scanned> {
    let Some(lineage) = r.io.local.covers(snap) else {
        return Err(Error::Unavailable(format!(
            "the local store {} does not serve the lineage of TXID {} (yet)",
            store.path().display(),
            snap.txid
        )));
    };
    let lock = lock_page(snap.page_size);
    let mut wanted = 0u64;
    let mut todo = Vec::new();
    for p in (1..=snap.page_count).map(PageNo).filter(|&p| p != lock) {
        let Some(loc) = snap.frame(p) else { continue };
        wanted += 1;
        // A page whose frame did not move since a complete round is held.
        let same = done
            .and_then(|d| d.frame(p))
            .is_some_and(|o| Arc::ptr_eq(&o.file, &loc.file) && o.offset == loc.offset);
        if !same {
            todo.push((p, loc));
        }
    }
    let held = held(store, lineage, snap, &todo, done.is_none());
    let mut missing = Vec::new();
    let mut cached = Vec::new();
    for ((p, loc), held) in todo.into_iter().zip(held) {
        if held {
            continue;
        }
        // Pages the open already fetched (small files, the head of a
        // snapshot) need no request.
        let key = loc.key();
        match r.io.cache.get(&key) {
            Some(page) => cached.push((p, span(snap, &loc), page)),
            None => missing.push((p, loc.clone())),
        }
    }
    let batch: Vec<(PageNo, Span, &[u8])> =
        cached.iter().map(|(p, s, b)| (*p, *s, &b[..])).collect();
    if !store.put(lineage, &batch) {
        return Err(not_written(store, "pages of the memory cache"));
    }
    Ok(Scanned {
        lineage,
        wanted,
        missing,
    })
}

/// Whether the store holds each page of `todo` for `snap`: by its metadata,
/// or when `sweep`, by reading and hashing runs of neighbours and dropping
/// those that fail (`DiskStore::sweep_run`).
fn held(
    store: &DiskStore,
    lineage: u64,
    snap: &Snapshot,
    todo: &[(PageNo, FrameLoc)],
    sweep: bool,
) -> Vec<bool> {
    if !sweep {
        return todo
            .iter()
            .map(|(p, loc)| store.has(lineage, *p, span(snap, loc)))
            .collect();
    }
    let mut out = Vec::with_capacity(todo.len());
    while out.len() < todo.len() {
        let rest = &todo[out.len()..];
        let first = rest[0].0;
        let run: Vec<Span> = rest
            .iter()
            .take(crate::store::RUN_MAX)
            .enumerate()
            .take_while(|(i, (p, _))| p.0 == first.0.saturating_add(*i as u32))
            .map(|(_, (_, loc))| span(snap, loc))
            .collect();
        let checked = store.sweep_run(lineage, first, &run);
        if checked.is_empty() {
            out.push(false);
        }
        out.extend(checked);
    }
    out
}

/// Groups missing frames into ranged reads: one file each, frames close
/// together, each at most a share of the total between
/// [`FILL_RANGE_MIN`] and [`FILL_RANGE_MAX`] bytes.
fn plan_runs(mut missing: Vec<(PageNo, FrameLoc)>) -> Vec<Run> {
    missing.sort_by_key(|(_, l)| (Arc::as_ptr(&l.file) as usize, l.offset));
    let total: u64 = missing.iter().map(|(_, l)| u64::from(l.size)).sum();
    let range_max =
        (total / (FILL_PARALLEL as u64 * RANGES_PER_SLOT)).clamp(FILL_RANGE_MIN, FILL_RANGE_MAX);
    let mut runs: Vec<Run> = Vec::new();
    for (p, loc) in missing {
        let end = loc.offset + u64::from(loc.size);
        // `size` bounds a frame from above, so a run's end may lie past the
        // start of the next frame: frames in order, within the gap of the
        // run's end, join it.
        if let Some(run) = runs.last_mut() {
            let after_last = run.pages.last().is_some_and(|(_, l)| loc.offset > l.offset);
            if Arc::ptr_eq(&run.file, &loc.file)
                && after_last
                && loc.offset <= run.bytes.end.saturating_add(FILL_GAP)
                && end.max(run.bytes.end) - run.bytes.start <= range_max
            {
                run.bytes.end = end.max(run.bytes.end);
                run.pages.push((p, loc));
                continue;
            }
        }
        runs.push(Run {
            file: Arc::clone(&loc.file),
            bytes: loc.offset..end,
            pages: vec![(p, loc)],
        });
    }
    runs
}

/// Fetches one run, then decodes its frames and keeps them on the
/// blocking pool. Returns how many pages it stored.
async fn fetch_run(
    r: &Replica,
    store: &Arc<DiskStore>,
    lineage: u64,
    snap: &Arc<Snapshot>,
    run: Run,
) -> Result<u64> {
    if let Some(reason) = run.file.corrupt.get() {
        return Err(Error::Missing(reason.clone()));
    }
    // A lock that another process or thread sits on skips the write this
    // run is for: it is not fetched (the round ends, and the next one
    // comes at the next poll), instead of downloading what will be thrown
    // away.
    if store.recently_busy() {
        return Err(lock_held(store));
    }
    // The run's bytes of the read budget, until its pages are stored.
    let held = r.io.fetcher.hold(run.bytes.end - run.bytes.start).await?;
    Stats::add(&r.io.stats.reads, 1);
    Stats::add(&r.hydration.requests, 1);
    let bytes =
        r.io.storage
            .read_version(run.file.id, run.file.version, run.bytes.clone())
            .await?;
    Stats::add(&r.io.stats.read_bytes, bytes.len() as u64);
    let describe = format!("{} {}", r.io.storage.describe(), run.file.id);
    let (store, snap) = (Arc::clone(store), Arc::clone(snap));
    runtime::off_worker("a hydration write", move || {
        let describe = || describe.clone();
        let frames = run.pages.iter().map(|(p, loc)| (*p, loc.offset));
        let short = |_, _| Err(Error::Missing(format!("short read of {}", describe())));
        let decoded = decode_frames(&bytes, &run.bytes, frames, snap.page_size, &describe, short)?;
        let batch: Vec<(PageNo, Span, &[u8])> = decoded
            .iter()
            .zip(&run.pages)
            .map(|((p, page), (_, loc))| (*p, span(&snap, loc), page.as_slice()))
            .collect();
        let stored = store.put(lineage, &batch);
        drop(held);
        if stored {
            Ok(batch.len() as u64)
        } else {
            // Not counted as filled, and the round ends incomplete: the
            // next one fetches these pages again.
            Err(not_written(&store, &format!("pages of {}", describe())))
        }
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{FileName, Header, LtxBuilder, PageSize, Txid};
    use crate::storage::{FileId, Level};

    fn file(txid: u64) -> Arc<FileRef> {
        let bytes = LtxBuilder::new(PageSize::new(4096).unwrap(), 1, txid, 10).build();
        let id = FileId {
            level: Level::L0,
            name: FileName {
                min: Txid(1),
                max: Txid(txid),
            },
        };
        Arc::new(FileRef::new(id, 1 << 30, Header::decode(&bytes).unwrap()))
    }

    fn frames(f: &Arc<FileRef>, pages: std::ops::Range<u32>, at: u64) -> Vec<(PageNo, FrameLoc)> {
        pages
            .enumerate()
            .map(|(i, p)| {
                let loc = FrameLoc {
                    file: Arc::clone(f),
                    offset: at + i as u64 * 4000,
                    size: 4000,
                };
                (PageNo(p), loc)
            })
            .collect()
    }

    #[test]
    fn fills_in_large_ranges_per_file_never_page_by_page() {
        let (a, b) = (file(5), file(6));
        let mut missing = frames(&a, 1..2001, 100);
        // A hole of 1 MiB (pages the store holds) starts another range.
        missing.extend(frames(&a, 3000..3010, 100 + 2000 * 4000 + (1 << 20)));
        missing.extend(frames(&b, 5000..5100, 100));
        missing.reverse();
        let runs = plan_runs(missing);
        let pages: usize = runs.iter().map(|r| r.pages.len()).sum();
        assert_eq!(pages, 2110);
        assert!(runs.len() <= 12, "{} runs", runs.len());
        for r in &runs {
            assert!(r.bytes.end - r.bytes.start <= FILL_RANGE_MAX);
            assert!(r.pages.iter().all(|(_, l)| Arc::ptr_eq(&l.file, &r.file)));
            assert!(r.pages.windows(2).all(|w| w[0].1.offset < w[1].1.offset));
        }
        // 8 MB of frames in file a: several ranges, all slots busy.
        let in_a = runs.iter().filter(|r| Arc::ptr_eq(&r.file, &a)).count();
        assert!(
            (FILL_PARALLEL..=10).contains(&in_a),
            "{in_a} ranges for file a"
        );
    }
}
