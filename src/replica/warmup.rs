//! The warm-up: after the open, the interior pages of every table and
//! index, so that a cold lookup costs one request (its leaf) instead of one
//! per B-tree level.
//!
//! It walks every B-tree from its root in `sqlite_schema` one level per
//! wave and stops above the leaves. A B-tree is balanced, so all children
//! of a level are interior or all are leaves; which, a page's parent does
//! not say: each wave first fetches one child per tree (the probe), and
//! fetches the whole level only for trees whose probe is interior. A wave
//! is fetched in wide ranged reads behind demand reads
//! ([`super::fetch::Fetcher::warm`]; over storage that streams bodies, the
//! fewest reads within what is left of `warmup_read_max`, gaps included:
//! the bound is the whole warm-up's, see [`read_left`]);
//! its pages land in the memory cache and
//! in the local store, so the next process has them without a request.
//!
//! It warms the snapshot current when it starts, pinned for the whole walk:
//! pages are cached by frame, so a state published meanwhile finds the
//! pages it shares with this one and fetches the rest as usual.
//!
//! Bounded: at most the cap's bytes of pages (`warmup_max`, by default a
//! quarter of the cache and of the disk tier), upper levels first.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::btree::{BtreePage, Schema};
use crate::cache::Page;
use crate::ltx::PageNo;
use crate::{log, runtime};

use super::{Replica, Snapshot, Stats};

/// Levels walked at most: a B-tree of 4 KiB pages with 10 levels holds
/// more rows than a database can; a deeper walk is a cycle in garbage.
const MAX_LEVELS: usize = 12;
/// Bytes at the start of page 1 before its B-tree header; byte 20 of them
/// is the reserved space at the end of each page.
const RESERVED_AT: usize = 20;

/// Where the warm-up is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Off = 0,
    Running = 1,
    Done = 2,
    /// Stopped at its cap.
    Capped = 3,
    /// Ended with reads that failed, or could not start (logged); reads
    /// go on as without the pages it lacks.
    Failed = 4,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Off => "off",
            State::Running => "running",
            State::Done => "done",
            State::Capped => "capped",
            State::Failed => "failed",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Running,
            2 => State::Done,
            3 => State::Capped,
            4 => State::Failed,
            _ => State::Off,
        }
    }
}

/// Progress of the warm-up, for `PRAGMA litestream_stats`.
#[derive(Debug, Default)]
pub struct Progress {
    state: AtomicU8,
    /// Interior pages at hand (from memory, the local store or storage).
    pages: AtomicU64,
    /// Pages it fetched from storage (probes included).
    fetched: AtomicU64,
    /// Ranged reads it sent.
    requests: AtomicU64,
    /// Levels below the roots it walked.
    levels: AtomicU64,
    /// Ranged reads that failed: the walk went on without their pages.
    failed: AtomicU64,
    /// Bytes it read from storage, the gaps between its pages included.
    read_bytes: AtomicU64,
}

impl Progress {
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }
}

impl Replica {
    /// ` warmup_state=… warmup_pages=… …` for `PRAGMA litestream_stats`.
    pub fn warmup_render(&self) -> String {
        let w = &self.warmup;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            " warmup_state={} warmup_pages={} warmup_fetched={} warmup_requests={} warmup_read_bytes={} warmup_levels={} warmup_failed_reads={}",
            w.state().name(),
            g(&w.pages),
            g(&w.fetched),
            g(&w.requests),
            g(&w.read_bytes),
            g(&w.levels),
            g(&w.failed)
        )
    }
}

/// Starts the warm-up of `replica` when its configuration asks for one and
/// its storage has latency to hide. Supervised: a panic is counted in the
/// stats (`task_panics`), logged, and the walk starts again.
pub fn spawn(replica: &Arc<Replica>) {
    if replica.config.warmup.is_none() || !replica.io.fetcher.prefetches() {
        return;
    }
    replica.warmup.set(State::Running);
    replica.supervise_weakly("warm-up", run);
}

async fn run(weak: Weak<Replica>) {
    let Some((snap, cap)) = weak
        .upgrade()
        .and_then(|r| Some((r.current(), r.config.warmup?)))
    else {
        return;
    };
    let w = Weak::clone(&weak);
    let walked = runtime::off_worker("the warm-up", move || walk(&w, &snap, cap)).await;
    let Some(r) = weak.upgrade() else { return };
    let failed = r.warmup.failed.load(Ordering::Relaxed);
    let state = match walked {
        // Reads failed: what they would have brought is missing.
        Ok(Some(Walked::Done | Walked::Capped)) if failed > 0 => {
            log::warn!(
                "{}: warm-up ended with {failed} failed reads",
                r.io.storage.describe()
            );
            State::Failed
        }
        Ok(Some(Walked::Done)) => State::Done,
        Ok(Some(Walked::Capped)) => State::Capped,
        Ok(Some(Walked::Failed)) => {
            log::warn!(
                "{}: warm-up stopped: page 1 could not be read",
                r.io.storage.describe()
            );
            State::Failed
        }
        // The replica went away.
        Ok(None) => return,
        Err(e) => {
            log::warn!("{}: warm-up failed: {e}", r.io.storage.describe());
            State::Failed
        }
    };
    log::debug!("{}:{}", r.io.storage.describe(), r.warmup_render());
    r.warmup.set(state);
}

/// One level of one B-tree: its pages, all interior.
type Level = Vec<(u32, Page)>;

/// Fetches `pgnos` for the warm-up, counting; `None` once the replica is
/// gone. The replica is not held while the pages come: a long read stops
/// when it goes away.
fn fetch(weak: &Weak<Replica>, snap: &Snapshot, pgnos: &[u32]) -> Option<Vec<(u32, Page)>> {
    let (fetcher, read_max) = {
        let r = weak.upgrade()?;
        let used = r.warmup.read_bytes.load(Ordering::Relaxed);
        (
            Arc::clone(&r.io.fetcher),
            read_left(r.config.warmup_read_max, used),
        )
    };
    let pgnos: Vec<PageNo> = pgnos.iter().copied().map(PageNo).collect();
    let alive = || weak.strong_count() > 0;
    let got = fetcher.warm(snap, &pgnos, read_max, &alive);
    let r = weak.upgrade()?;
    Stats::add(&r.warmup.requests, got.requests);
    Stats::add(&r.warmup.fetched, got.fetched);
    Stats::add(&r.warmup.failed, got.failed);
    Stats::add(&r.warmup.read_bytes, got.read_bytes);
    Some(got.pages.into_iter().map(|(p, page)| (p.0, page)).collect())
}

/// What the next wave may read of `warmup_read_max` (`max`) after the
/// warm-up read `used` bytes: the bound is the warm-up's, not each
/// wave's, so a fresh host reads at most about `max` for its interior
/// pages whatever the database's depth. Spent, waves keep the fixed
/// merging (a bound of one byte joins no gap the fixed merging would not);
/// `0` is the fixed merging from the start.
fn read_left(max: u64, used: u64) -> u64 {
    if max == 0 {
        0
    } else {
        max.saturating_sub(used).max(1)
    }
}

/// How a walk ended.
#[derive(Debug, PartialEq, Eq)]
enum Walked {
    Done,
    Capped,
    /// Page 1 could not be read.
    Failed,
}

/// Walks the B-trees of `snap`; `None` when the replica went away.
fn walk(weak: &Weak<Replica>, snap: &Snapshot, cap: u64) -> Option<Walked> {
    let page_size = u64::from(snap.page_size.get());
    let Some((_, page1)) = fetch(weak, snap, &[1])?.into_iter().next() else {
        // Page 1 could not be read (storage failed): nothing to walk.
        return Some(Walked::Failed);
    };
    let reserved = usize::from(*page1.get(RESERVED_AT).unwrap_or(&0));
    let usable = snap.page_size.bytes().saturating_sub(reserved);
    let schema = Schema::read(
        &|p| {
            let page = fetch(weak, snap, &[p])?.into_iter().next()?.1;
            Some(page)
        },
        usable,
    );
    let mut roots: Vec<u32> = schema
        .entries
        .iter()
        .map(|e| e.root)
        .filter(|&p| p > 1 && p <= snap.page_count)
        .collect();
    roots.sort_unstable();
    roots.dedup();
    let mut budget = cap / page_size.max(1);
    let mut seen: HashSet<u32> = roots.iter().copied().collect();
    seen.insert(1);
    // The roots, then one level per wave.
    let mut levels: Vec<Level> = interior(usable, fetch(weak, snap, &take(&mut budget, roots))?)
        .into_iter()
        .map(|page| vec![page])
        .collect();
    count(weak, &levels);
    let mut capped = budget == 0;
    for _ in 0..MAX_LEVELS {
        if levels.is_empty() || capped {
            break;
        }
        // Each tree's next level, new pages only.
        let next: Vec<Vec<u32>> = levels
            .iter()
            .map(|level| {
                let mut kids = Vec::new();
                for (pgno, page) in level {
                    let parsed = BtreePage::parse(page, *pgno, usable);
                    for c in parsed.map(|b| b.children()).unwrap_or_default() {
                        if c > 1 && c <= snap.page_count && seen.insert(c) {
                            kids.push(c);
                        }
                    }
                }
                kids
            })
            .collect();
        // The probes: one child per tree, to tell interiors from leaves.
        let probes: Vec<u32> = next.iter().filter_map(|k| k.first().copied()).collect();
        let probed: HashSet<u32> = interior(usable, fetch(weak, snap, &probes)?)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let mut wanted: Vec<(usize, u32)> = Vec::new();
        for (tree, kids) in next.iter().enumerate() {
            if kids.first().is_some_and(|p| probed.contains(p)) {
                wanted.extend(kids.iter().map(|&k| (tree, k)));
            }
        }
        if wanted.is_empty() {
            break;
        }
        if wanted.len() as u64 > budget {
            wanted.truncate(usize::try_from(budget).unwrap_or(usize::MAX));
            capped = true;
        }
        let pgnos: Vec<u32> = wanted.iter().map(|(_, p)| *p).collect();
        budget = budget.saturating_sub(pgnos.len() as u64);
        let mut got: HashMap<u32, Page> = interior(usable, fetch(weak, snap, &pgnos)?)
            .into_iter()
            .collect();
        let mut grown: Vec<Level> = vec![Vec::new(); next.len()];
        for (tree, pgno) in wanted {
            if let (Some(page), Some(level)) = (got.remove(&pgno), grown.get_mut(tree)) {
                level.push((pgno, page));
            }
        }
        grown.retain(|l| !l.is_empty());
        levels = grown;
        count(weak, &levels);
        if let Some(r) = weak.upgrade() {
            Stats::add(&r.warmup.levels, 1);
        }
    }
    Some(if capped { Walked::Capped } else { Walked::Done })
}

/// The interior pages among `pages`.
fn interior(usable: usize, pages: Vec<(u32, Page)>) -> Vec<(u32, Page)> {
    pages
        .into_iter()
        .filter(|(p, page)| {
            BtreePage::parse(page, *p, usable).is_some_and(|b| b.kind().is_interior())
        })
        .collect()
}

/// The first `budget` of `pgnos`, taken from the budget.
fn take(budget: &mut u64, mut pgnos: Vec<u32>) -> Vec<u32> {
    pgnos.truncate(usize::try_from(*budget).unwrap_or(usize::MAX));
    *budget = budget.saturating_sub(pgnos.len() as u64);
    pgnos
}

fn count(weak: &Weak<Replica>, levels: &[Level]) {
    if let Some(r) = weak.upgrade() {
        let n: usize = levels.iter().map(Vec::len).sum();
        Stats::add(&r.warmup.pages, n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::read_left;

    #[test]
    fn the_read_bound_is_the_whole_warm_ups_and_spent_keeps_the_fixed_merging() {
        assert_eq!(read_left(0, 0), 0, "0: the fixed merging");
        assert_eq!(read_left(100, 0), 100);
        assert_eq!(read_left(100, 30), 70);
        assert_eq!(read_left(100, 100), 1);
        assert_eq!(read_left(100, 500), 1);
    }
}
