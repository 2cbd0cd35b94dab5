//! The prediction logic of one connection: a state machine fed with the
//! pages SQLite reads and the pages prefetch brings in.

use std::collections::HashMap;
use std::sync::Arc;

use crate::btree::{BtreePage, Kind, Schema, next_overflow, overflow_pages};

use super::Pages;

/// Pages one read transaction may prefetch (16 MiB of 4 KiB pages): the
/// cap on what a wrong guess can cost.
pub const MAX_PER_TRANSACTION: usize = 4096;
/// Rows of one key fetched ahead at once when a lookup through an index
/// is confirmed (a couple of round trips' worth of parallel requests).
const MAX_BATCH: usize = 256;
/// Rowids of an index leaf whose interior levels are warmed before the
/// lookup is confirmed.
const SPECULATIVE_ROWS: usize = 64;
/// An interior page with more children than this is not warmed whole.
const WARM_MAX_CHILDREN: usize = 128;
/// Levels below the root that a speculative descent (before the lookup
/// pattern is confirmed) may fetch: the interior levels of a large table.
const SPECULATIVE_DEPTH: usize = 1;
/// Siblings fetched ahead of a scan at most.
const MAX_SCAN_AHEAD: usize = 256;
/// Overflow pages guessed per chain at most.
const MAX_CHAIN: u64 = 256;
/// Cells of one page whose overflow chains are followed.
const MAX_CHAINS_PER_PAGE: usize = 16;
/// Pages whose place in a tree is remembered; beyond this the maps are
/// cleared (they only steer predictions).
const MAX_TRACKED: usize = 1 << 18;
/// Deepest B-tree a descent follows (SQLite's own limit is 20).
const MAX_DEPTH: usize = 20;

/// The rows an index leaf names, which SQLite reads in key order.
#[derive(Debug)]
struct Lookup {
    table: u32,
    /// The index leaf the entries come from.
    leaf: u32,
    rowids: Vec<i64>,
    /// Key hash of each entry: equal keys are one run.
    keys: Vec<u64>,
    /// First entry whose row was not fetched ahead.
    next: usize,
    /// The key SQLite reads the rows of now (confirmed by a table read).
    key: Option<u64>,
}

impl Lookup {
    /// The end of the run of entries with the key of entry `i`.
    fn run_end(&self, i: usize) -> usize {
        let Some(k) = self.keys.get(i) else { return i };
        self.keys
            .iter()
            .skip(i)
            .position(|x| x != k)
            .map_or(self.keys.len(), |n| i.saturating_add(n))
    }
}

/// A scan through the children of one interior page.
#[derive(Debug)]
struct Scan {
    parent: u32,
    index: usize,
    run: u32,
    /// Children of `parent` up to this index were asked for.
    asked: usize,
}

/// A descent waiting for a page to land.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    rowid: i64,
    depth: usize,
    /// Whether the leaf is wanted (a confirmed lookup) or only the
    /// interior levels (speculation).
    leaf: bool,
}

#[derive(Debug)]
pub struct Predictor {
    usable: usize,
    schema: Option<(u32, Arc<Schema>)>,
    /// Page → root of the tree it belongs to.
    tree: HashMap<u32, u32>,
    /// Child → (parent, index among the parent's children).
    parent: HashMap<u32, (u32, usize)>,
    /// Interior page → its children.
    children: HashMap<u32, Arc<[u32]>>,
    /// Table interior pages wanted by descents, with who waits.
    waiting: HashMap<u32, Vec<Waiting>>,
    /// Pages whose children are wanted when they land (warming).
    warm: Vec<u32>,
    /// Overflow page → pages left in its chain after it.
    chains: HashMap<u32, u64>,
    lookup: Option<Lookup>,
    scan: Option<Scan>,
    /// Whether this transaction read from storage: until then, reads are
    /// warm and only interior pages are learned.
    active: bool,
    budget: usize,
    /// What `budget` starts at in each transaction.
    max_budget: usize,
}

impl Predictor {
    /// A predictor for pages of `usable` bytes that prefetches at most
    /// `max_pages` per transaction (at most [`MAX_PER_TRANSACTION`]).
    pub fn new(usable: usize, max_pages: usize) -> Predictor {
        let max_budget = max_pages.min(MAX_PER_TRANSACTION);
        Predictor {
            usable,
            schema: None,
            tree: HashMap::new(),
            parent: HashMap::new(),
            children: HashMap::new(),
            waiting: HashMap::new(),
            warm: Vec::new(),
            chains: HashMap::new(),
            lookup: None,
            scan: None,
            active: false,
            budget: max_budget,
            max_budget,
        }
    }

    pub fn end_transaction(&mut self) {
        self.lookup = None;
        self.scan = None;
        self.waiting.clear();
        self.warm.clear();
        self.chains.clear();
        self.active = false;
        self.budget = self.max_budget;
    }

    /// Whether leaves of one parent are being read in order (a scan).
    pub fn scanning(&self) -> bool {
        self.scan.as_ref().is_some_and(|s| s.run >= 2)
    }

    /// The root of the table whose B-tree a read of `pgno` descends on its
    /// leftmost path (`pgno` is the first child of its parent at every
    /// level up to the root), as far as the interior pages read so far
    /// tell. That is how SQLite starts a full scan of a table (and a
    /// lookup of its smallest rowids); `None` for any other page, for an
    /// index's tree and for the schema's.
    pub fn leftmost_of_table(&self, pgno: u32) -> Option<u32> {
        let schema = self.schema()?;
        let mut at = pgno;
        for _ in 0..MAX_DEPTH {
            let &(parent, index) = self.parent.get(&at)?;
            if index != 0 {
                return None;
            }
            if schema.is_root(parent) {
                let table = parent != 1 && schema.table_of_index(parent).is_none();
                return table.then_some(parent);
            }
            at = parent;
        }
        None
    }

    /// A page SQLite read. Returns the pages to fetch ahead.
    pub fn on_read(&mut self, pgno: u32, page: &[u8], missed: bool, pages: &dyn Pages) -> Vec<u32> {
        let mut wants = Vec::new();
        self.active |= missed;
        if let Some(left) = self.chains.remove(&pgno) {
            self.follow_chain(pgno, page, left, &mut wants);
            return self.spend(wants);
        }
        let Some(p) = BtreePage::parse(page, pgno, self.usable) else {
            return wants;
        };
        if p.kind().is_interior() {
            self.load_schema(pages);
            self.learn(pgno, &p);
        }
        // Descents waiting for this page go on (a demand read may have
        // taken it over from a queued prefetch, whose landing never comes).
        if let Some(list) = self.waiting.remove(&pgno) {
            for w in list {
                self.descend_from(pgno, w, pages, &mut wants);
            }
        }
        if !self.active {
            return self.spend(wants);
        }
        self.load_schema(pages);
        match p.kind() {
            Kind::IndexInterior => self.on_index_root(pgno, pages, &mut wants),
            Kind::TableInterior => {}
            Kind::IndexLeaf => {
                self.on_index_root(pgno, pages, &mut wants);
                self.on_leaf(pgno, &mut wants);
                self.start_lookup(pgno, &p, pages, &mut wants);
                self.chains_of(&p, &mut wants);
            }
            Kind::TableLeaf => {
                self.on_leaf(pgno, &mut wants);
                self.continue_lookup(pgno, &p, pages, &mut wants);
                self.chains_of(&p, &mut wants);
            }
        }
        self.spend(wants)
    }

    /// A page that prefetch brought in. Returns the pages to fetch next.
    pub fn on_landed(&mut self, pgno: u32, page: &[u8], pages: &dyn Pages) -> Vec<u32> {
        let mut wants = Vec::new();
        if let Some(left) = self.chains.get(&pgno).copied() {
            if let Some(next) = next_overflow(page)
                && left > 0
                && !self.chains.contains_key(&next)
            {
                self.chains.insert(next, left.saturating_sub(1));
                if pages.cached(next).is_none() {
                    self.guess_chain(next, left, &mut wants);
                }
            }
            return self.spend(wants);
        }
        let Some(p) = BtreePage::parse(page, pgno, self.usable) else {
            return wants;
        };
        if p.kind().is_interior() {
            self.learn(pgno, &p);
        }
        if let Some(i) = self.warm.iter().position(|w| *w == pgno) {
            self.warm.swap_remove(i);
            let kids = p.children();
            if p.kind() == Kind::TableInterior && kids.len() <= WARM_MAX_CHILDREN {
                wants.extend(kids.into_iter().filter(|c| pages.cached(*c).is_none()));
            }
        }
        if let Some(list) = self.waiting.remove(&pgno) {
            for w in list {
                self.descend_from(pgno, w, pages, &mut wants);
            }
        }
        self.spend(wants)
    }

    /// Takes what the transaction's budget allows, without duplicates.
    fn spend(&mut self, mut wants: Vec<u32>) -> Vec<u32> {
        wants.sort_unstable();
        wants.dedup();
        wants.truncate(self.budget);
        self.budget = self.budget.saturating_sub(wants.len());
        wants
    }

    fn load_schema(&mut self, pages: &dyn Pages) {
        let Some(p1) = pages.cached(1) else { return };
        let Some(cookie) = p1
            .get(40..44)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
        else {
            return;
        };
        if self
            .schema
            .as_ref()
            .is_some_and(|(c, s)| *c == cookie && !s.entries.is_empty())
        {
            return;
        }
        let schema = Schema::read(&|pgno| pages.cached(pgno), self.usable);
        if self.schema.as_ref().is_some_and(|(c, _)| *c != cookie) {
            self.tree.clear();
            self.parent.clear();
            self.children.clear();
        }
        self.schema = Some((cookie, Arc::new(schema)));
    }

    fn schema(&self) -> Option<&Schema> {
        self.schema.as_ref().map(|(_, s)| s.as_ref())
    }

    /// The root of the tree `pgno` belongs to, when known.
    fn root_of(&self, pgno: u32) -> Option<u32> {
        if self.schema().is_some_and(|s| s.is_root(pgno)) {
            return Some(pgno);
        }
        self.tree.get(&pgno).copied()
    }

    /// Records the children of an interior page.
    fn learn(&mut self, pgno: u32, p: &BtreePage<'_>) {
        if self.parent.len() > MAX_TRACKED {
            self.tree.clear();
            self.parent.clear();
            self.children.clear();
        }
        let kids: Arc<[u32]> = p.children().into();
        let root = self.root_of(pgno);
        for (i, c) in kids.iter().enumerate() {
            self.parent.insert(*c, (pgno, i));
            if let Some(r) = root {
                self.tree.insert(*c, r);
            }
        }
        self.children.insert(pgno, kids);
    }

    /// The first read of an index warms its table's upper levels.
    fn on_index_root(&mut self, pgno: u32, pages: &dyn Pages, wants: &mut Vec<u32>) {
        let Some(table) = self.schema().and_then(|s| s.table_of_index(pgno)) else {
            return;
        };
        match pages.cached(table) {
            None => {
                if !self.warm.contains(&table) {
                    self.warm.push(table);
                    wants.push(table);
                }
            }
            Some(bytes) => {
                let Some(p) = BtreePage::parse(&bytes, table, self.usable) else {
                    return;
                };
                if p.kind() == Kind::TableInterior {
                    self.learn(table, &p);
                    let kids = p.children();
                    if kids.len() <= WARM_MAX_CHILDREN {
                        wants.extend(kids.into_iter().filter(|c| pages.cached(*c).is_none()));
                    }
                }
            }
        }
    }

    /// Leaves read in order: fetch the next siblings ahead.
    fn on_leaf(&mut self, pgno: u32, wants: &mut Vec<u32>) {
        let Some(&(parent, index)) = self.parent.get(&pgno) else {
            self.scan = None;
            return;
        };
        let in_order = self
            .scan
            .as_ref()
            .is_some_and(|s| s.parent == parent && index == s.index.saturating_add(1));
        let scan = match (&mut self.scan, in_order) {
            (Some(s), true) => {
                s.index = index;
                s.run = s.run.saturating_add(1);
                s
            }
            _ => self.scan.insert(Scan {
                parent,
                index,
                run: 1,
                asked: index,
            }),
        };
        if scan.run < 2 {
            return;
        }
        let ahead = (1usize << scan.run.min(8)).min(MAX_SCAN_AHEAD);
        let Some(kids) = self.children.get(&parent) else {
            return;
        };
        // Ask in chunks (half a window at least), not one leaf per read:
        // each request costs a round trip's worth of overhead.
        if scan.asked > index.saturating_add(ahead / 2) {
            return;
        }
        let from = scan.asked.max(index).saturating_add(1);
        let to = index.saturating_add(ahead).min(kids.len());
        if from < to {
            wants.extend(kids.get(from..to).unwrap_or_default());
            scan.asked = to.saturating_sub(1);
        }
    }

    /// An index leaf read: remember the entries it names, and warm the
    /// interior levels of its table on their way. When the key SQLite was
    /// reading goes on in this leaf, its rows are fetched at once.
    fn start_lookup(
        &mut self,
        pgno: u32,
        p: &BtreePage<'_>,
        pages: &dyn Pages,
        wants: &mut Vec<u32>,
    ) {
        let Some(root) = self.root_of(pgno) else {
            return;
        };
        let Some(table) = self.schema().and_then(|s| s.table_of_index(root)) else {
            return;
        };
        let (keys, rowids): (Vec<u64>, Vec<i64>) = p.index_entries().into_iter().unzip();
        if rowids.is_empty() {
            return;
        }
        let goes_on = self
            .lookup
            .as_ref()
            .is_some_and(|l| l.table == table && l.key.is_some() && l.key == keys.first().copied());
        let key = if goes_on { keys.first().copied() } else { None };
        if !goes_on {
            for &rowid in rowids.iter().take(SPECULATIVE_ROWS) {
                let w = Waiting {
                    rowid,
                    depth: 0,
                    leaf: false,
                };
                self.descend_from_root(table, w, pages, wants);
            }
        }
        self.lookup = Some(Lookup {
            table,
            leaf: pgno,
            rowids,
            keys,
            next: 0,
            key,
        });
        if goes_on {
            self.fetch_run(0, pages, wants);
        }
    }

    /// The next leaf after `pgno` under the same parent.
    fn next_sibling(&self, pgno: u32) -> Option<u32> {
        let (parent, i) = self.parent.get(&pgno)?;
        self.children.get(parent)?.get(i.checked_add(1)?).copied()
    }

    /// A table leaf read: when it holds a row of the current lookup, the
    /// pattern is confirmed: fetch the leaves of the other rows of the same
    /// key (an equality lookup reads exactly those; a range moves on to the
    /// next key, which the next table read confirms in turn).
    fn continue_lookup(
        &mut self,
        pgno: u32,
        p: &BtreePage<'_>,
        pages: &dyn Pages,
        wants: &mut Vec<u32>,
    ) {
        let Some(l) = &mut self.lookup else { return };
        if self.tree.get(&pgno).is_some_and(|r| *r != l.table) {
            return;
        }
        let Some((lo, hi)) = p.rowid_range() else {
            return;
        };
        // The first entry at or after the rows already fetched whose row
        // lies here (SQLite reads forward).
        let from = l.next.saturating_sub(1);
        let Some(k) = l
            .rowids
            .iter()
            .skip(from)
            .position(|r| (lo..=hi).contains(r))
            .map(|i| i.saturating_add(from))
            .or_else(|| l.rowids.iter().position(|r| (lo..=hi).contains(r)))
        else {
            return;
        };
        l.key = l.keys.get(k).copied();
        self.fetch_run(k, pages, wants);
    }

    /// Fetches the leaves of the rows of the key of entry `k` after it
    /// (those not fetched yet), and the next index leaf when the run
    /// reaches the end of this one.
    fn fetch_run(&mut self, k: usize, pages: &dyn Pages, wants: &mut Vec<u32>) {
        let Some(l) = &mut self.lookup else { return };
        let run_end = l.run_end(k);
        let from = l.next.max(k);
        let end = run_end.min(from.saturating_add(MAX_BATCH));
        if from >= end {
            return;
        }
        let batch: Vec<i64> = l.rowids.get(from..end).unwrap_or_default().to_vec();
        l.next = end;
        let (table, leaf, at_end) = (l.table, l.leaf, run_end == l.rowids.len());
        if at_end {
            wants.extend(
                self.next_sibling(leaf)
                    .filter(|s| pages.cached(*s).is_none()),
            );
        }
        for rowid in batch {
            let w = Waiting {
                rowid,
                depth: 0,
                leaf: true,
            };
            self.descend_from_root(table, w, pages, wants);
        }
    }

    fn descend_from_root(
        &mut self,
        table: u32,
        w: Waiting,
        pages: &dyn Pages,
        wants: &mut Vec<u32>,
    ) {
        if pages.cached(table).is_none() {
            self.wait_for(table, w, wants);
            return;
        }
        self.descend_from(table, w, pages, wants);
    }

    /// Follows `w.rowid` down from `pgno` (in memory) through the pages at
    /// hand; the first page not at hand is wanted, and the descent waits
    /// for it when it may be interior.
    fn descend_from(
        &mut self,
        mut pgno: u32,
        mut w: Waiting,
        pages: &dyn Pages,
        wants: &mut Vec<u32>,
    ) {
        for _ in 0..MAX_DEPTH {
            let Some(bytes) = pages.cached(pgno) else {
                if w.leaf || w.depth <= SPECULATIVE_DEPTH {
                    self.wait_for(pgno, w, wants);
                }
                return;
            };
            let Some(p) = BtreePage::parse(&bytes, pgno, self.usable) else {
                return;
            };
            if p.kind() != Kind::TableInterior {
                return;
            }
            let Some(child) = p.child_for_rowid(w.rowid) else {
                return;
            };
            pgno = child;
            w.depth = w.depth.saturating_add(1);
        }
    }

    fn wait_for(&mut self, pgno: u32, w: Waiting, wants: &mut Vec<u32>) {
        let list = self.waiting.entry(pgno).or_default();
        if list.is_empty() {
            wants.push(pgno);
        }
        list.push(w);
    }

    /// The overflow chains of the cells of a leaf.
    fn chains_of(&mut self, p: &BtreePage<'_>, wants: &mut Vec<u32>) {
        for (first, spilled) in p.overflows().into_iter().take(MAX_CHAINS_PER_PAGE) {
            let n = overflow_pages(spilled, p.usable()).min(MAX_CHAIN);
            if n == 0 || self.chains.contains_key(&first) {
                continue;
            }
            self.chains.insert(first, n.saturating_sub(1));
            self.guess_chain(first, n, wants);
        }
    }

    /// Guesses a chain of `n` pages from `first` on to be contiguous.
    fn guess_chain(&mut self, first: u32, n: u64, wants: &mut Vec<u32>) {
        let n = u32::try_from(n.min(MAX_CHAIN)).unwrap_or(0);
        wants.extend((0..n).filter_map(|i| first.checked_add(i)));
    }

    /// SQLite read overflow page `pgno`: its pointer names the next one.
    fn follow_chain(&mut self, _pgno: u32, page: &[u8], left: u64, wants: &mut Vec<u32>) {
        if left == 0 {
            return;
        }
        if let Some(next) = next_overflow(page)
            && let std::collections::hash_map::Entry::Vacant(e) = self.chains.entry(next)
        {
            e.insert(left.saturating_sub(1));
            self.guess_chain(next, left, wants);
        }
    }
}
