//! The page parser and the prediction logic on real B-tree pages: a
//! database that the real `sqlite3` shell builds here (table and index
//! B-trees three levels deep, rows that spill to overflow chains), and the
//! fixtures that Litestream wrote.

mod ltx_common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use litestream_vfs::btree::{BtreePage, Kind, Schema, next_overflow, overflow_pages};
use litestream_vfs::cache::Page;
use litestream_vfs::ltx::decode_file;
use litestream_vfs::prefetch::{Pages, Predictor};

const PAGE: usize = 4096;
const ROWS: u32 = 60_000;

struct Db {
    pages: HashMap<u32, Page>,
}

impl Db {
    fn build(dir: &Path) -> Db {
        let path = dir.join("t.db");
        let sql = format!(
            "PRAGMA page_size={PAGE};
             CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, note TEXT);
             WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<{ROWS})
               INSERT INTO orders SELECT i, printf('cust%04d', (i*7919) % 240), hex(randomblob(24)) FROM c;
             CREATE INDEX orders_customer ON orders(customer);
             CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB);
             INSERT INTO blobs VALUES (1, randomblob(30000)), (2, randomblob(9000));"
        );
        let out = Command::new("/usr/bin/sqlite3")
            .arg(&path)
            .arg(sql)
            .output()
            .expect("sqlite3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&path).unwrap();
        let pages = bytes
            .chunks(PAGE)
            .enumerate()
            .map(|(i, p)| (i as u32 + 1, Page::from(p)))
            .collect();
        Db { pages }
    }

    fn page(&self, pgno: u32) -> BtreePage<'_> {
        BtreePage::parse(&self.pages[&pgno], pgno, PAGE).unwrap()
    }

    fn schema(&self) -> Schema {
        Schema::read(&|p| self.pages.get(&p).cloned(), PAGE)
    }

    fn root(&self, name: &str) -> u32 {
        self.schema()
            .entries
            .iter()
            .find(|e| e.name == name)
            .unwrap()
            .root
    }

    /// The leaf of the table rooted at `root` that holds `rowid`, and the
    /// pages on the way.
    fn path_to(&self, root: u32, rowid: i64) -> Vec<u32> {
        let mut path = vec![root];
        let mut p = root;
        while self.page(p).kind() == Kind::TableInterior {
            p = self.page(p).child_for_rowid(rowid).unwrap();
            path.push(p);
        }
        path
    }
}

/// A page cache holding some pages of the database.
struct Held<'a> {
    db: &'a Db,
    held: HashSet<u32>,
}

impl Pages for Held<'_> {
    fn cached(&self, pgno: u32) -> Option<Page> {
        self.held
            .contains(&pgno)
            .then(|| self.db.pages.get(&pgno).cloned())
            .flatten()
    }
}

fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::build(dir.path());
    (dir, db)
}

/// Every interior page of the tree rooted at `root`.
fn interiors(db: &Db, root: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        let page = db.page(p);
        if page.kind().is_interior() {
            out.push(p);
            todo.extend(page.children());
        }
    }
    out
}

fn leaves_in_order(db: &Db, root: u32) -> Vec<u32> {
    let page = db.page(root);
    if !page.kind().is_interior() {
        return vec![root];
    }
    page.children()
        .into_iter()
        .flat_map(|c| leaves_in_order(db, c))
        .collect()
}

#[test]
fn schema_names_each_index_table() {
    let (_dir, db) = db();
    let s = db.schema();
    let (t, i) = (db.root("orders"), db.root("orders_customer"));
    assert_eq!(s.table_of_index(i), Some(t));
    assert_eq!(s.table_of_index(t), None);
    assert!(s.is_root(t) && s.is_root(i) && s.is_root(db.root("blobs")));
}

#[test]
fn table_interior_routes_every_rowid_to_its_leaf() {
    let (_dir, db) = db();
    let root = db.root("orders");
    assert_eq!(db.page(root).kind(), Kind::TableInterior);
    let mut seen = 0;
    for rowid in (1..=i64::from(ROWS)).step_by(97) {
        let path = db.path_to(root, rowid);
        assert!(path.len() >= 3, "three levels: {path:?}");
        let leaf = db.page(*path.last().unwrap());
        let (lo, hi) = leaf.rowid_range().unwrap();
        assert!(lo <= rowid && rowid <= hi, "{rowid} in {lo}..={hi}");
        seen += 1;
    }
    assert!(seen > 600);
    // Leaves in child order hold every row once, ascending.
    let mut next = 1;
    for leaf in leaves_in_order(&db, root) {
        let (lo, hi) = db.page(leaf).rowid_range().unwrap();
        assert_eq!(lo, next);
        next = hi + 1;
    }
    assert_eq!(next, i64::from(ROWS) + 1);
}

#[test]
fn index_pages_name_every_row_once() {
    let (_dir, db) = db();
    let root = db.root("orders_customer");
    assert_eq!(db.page(root).kind(), Kind::IndexInterior);
    let mut all: Vec<i64> = Vec::new();
    for p in interiors(&db, root) {
        all.extend(db.page(p).index_rowids());
    }
    for leaf in leaves_in_order(&db, root) {
        assert_eq!(db.page(leaf).kind(), Kind::IndexLeaf);
        all.extend(db.page(leaf).index_rowids());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=i64::from(ROWS)).collect::<Vec<_>>());
}

#[test]
fn overflow_chains_are_found_and_counted() {
    let (_dir, db) = db();
    let leaf = db.page(db.root("blobs"));
    assert_eq!(leaf.kind(), Kind::TableLeaf);
    let chains = leaf.overflows();
    assert_eq!(chains.len(), 2);
    for (first, spilled) in chains {
        let mut n = 0;
        let mut p = Some(first);
        while let Some(pgno) = p {
            n += 1;
            p = next_overflow(&db.pages[&pgno]);
        }
        assert_eq!(n, overflow_pages(spilled, PAGE), "chain from {first}");
    }
}

#[test]
fn a_confirmed_lookup_fetches_the_leaves_of_the_next_rows() {
    let (_dir, db) = db();
    let (table, index) = (db.root("orders"), db.root("orders_customer"));
    // Warm: page 1 (schema) and every interior page; no leaf.
    let mut held: HashSet<u32> = interiors(&db, table).into_iter().collect();
    held.extend(interiors(&db, index));
    held.insert(1);
    let pages = Held { db: &db, held };
    let leaf = leaves_in_order(&db, index)[7];
    let rowids = db.page(leaf).index_rowids();
    let mut p = Predictor::new(PAGE, 4096);
    // SQLite descends the index (from its own cache: warm reads)...
    let mut at = index;
    while at != leaf {
        p.on_read(at, &db.pages[&at], false, &pages);
        let kids = db.page(at).children();
        at = *kids
            .iter()
            .find(|c| {
                *c == &leaf
                    || interiors(&db, **c)
                        .iter()
                        .any(|_| leaves_in_order(&db, **c).contains(&leaf))
            })
            .unwrap();
    }
    // SQLite reads the index leaf (a miss)...
    let first = p.on_read(leaf, &db.pages[&leaf], true, &pages);
    assert!(
        first.is_empty(),
        "nothing before the pattern is confirmed: {first:?}"
    );
    // ... then the table leaf of the first row of a key: confirmed. (A key
    // whose first row shares no table leaf with an earlier entry.)
    let entries = db.page(leaf).index_entries();
    let run_of = |k: usize| {
        entries[k..]
            .iter()
            .take_while(|(key, _)| *key == entries[k].0)
            .map(|(_, r)| *r)
            .collect::<Vec<i64>>()
    };
    let leaf_of = |r: i64| *db.path_to(table, r).last().unwrap();
    let k = (1..entries.len())
        .filter(|&k| entries[k].0 != entries[k - 1].0 && run_of(k).len() > 100)
        .find(|&k| {
            rowids[..k]
                .iter()
                .all(|r| leaf_of(*r) != leaf_of(rowids[k]))
        })
        .expect("a long run");
    let row_leaf = leaf_of(rowids[k]);
    // (SQLite's read put that leaf in the cache.)
    let pages = Held {
        db: &db,
        held: pages.held.iter().copied().chain([row_leaf]).collect(),
    };
    let wants: HashSet<u32> = p
        .on_read(row_leaf, &db.pages[&row_leaf], true, &pages)
        .into_iter()
        .collect();
    // The rows of the same key (customer) after it, and nothing else.
    let run = run_of(k);
    let mut expect: HashSet<u32> = run.iter().map(|r| leaf_of(*r)).collect();
    if k + run.len() == rowids.len() {
        // ... and the next leaf of the index, where the key goes on.
        expect.insert(leaves_in_order(&db, index)[8]);
    }
    expect.remove(&row_leaf);
    assert_eq!(
        (
            wants.difference(&expect).collect::<Vec<_>>(),
            expect.difference(&wants).collect::<Vec<_>>()
        ),
        (vec![], vec![])
    );
    // Reading that leaf again asks for nothing twice.
    assert!(
        p.on_read(row_leaf, &db.pages[&row_leaf], true, &pages)
            .is_empty()
    );
}

#[test]
fn a_cold_lookup_warms_the_table_interior_and_descends_as_pages_land() {
    let (_dir, db) = db();
    let (table, index) = (db.root("orders"), db.root("orders_customer"));
    let mut pages = Held {
        db: &db,
        held: [1u32].into_iter().collect(),
    };
    let mut p = Predictor::new(PAGE, 4096);
    // SQLite reads the index root: the table's root is wanted.
    pages.held.insert(index);
    let w = p.on_read(index, &db.pages[&index], true, &pages);
    assert_eq!(w, vec![table]);
    // It lands: its children (the interior level) are wanted.
    pages.held.insert(table);
    let w = p.on_landed(table, &db.pages[&table], &pages);
    assert_eq!(w, db.page(table).children());
}

#[test]
fn leaves_read_in_order_fetch_the_next_siblings() {
    let (_dir, db) = db();
    let table = db.root("orders");
    let mut held: HashSet<u32> = interiors(&db, table).into_iter().collect();
    held.insert(1);
    let pages = Held { db: &db, held };
    let mut p = Predictor::new(PAGE, 4096);
    let parent = db.page(table).children()[1];
    p.on_read(table, &db.pages[&table], true, &pages);
    p.on_read(parent, &db.pages[&parent], true, &pages);
    let kids = db.page(parent).children();
    assert!(
        p.on_read(kids[0], &db.pages[&kids[0]], true, &pages)
            .is_empty()
    );
    let w = p.on_read(kids[1], &db.pages[&kids[1]], true, &pages);
    assert_eq!(w, kids[2..5].to_vec(), "after two in a row, the next ones");
    let w = p.on_read(kids[2], &db.pages[&kids[2]], true, &pages);
    assert_eq!(w, kids[5..10].to_vec(), "the window grows");
}

#[test]
fn a_leaf_with_spilled_rows_fetches_their_chains() {
    let (_dir, db) = db();
    let root = db.root("blobs");
    let pages = Held {
        db: &db,
        held: [1u32].into_iter().collect(),
    };
    let mut p = Predictor::new(PAGE, 4096);
    let wants: HashSet<u32> = p
        .on_read(root, &db.pages[&root], true, &pages)
        .into_iter()
        .collect();
    for (first, _) in db.page(root).overflows() {
        let mut at = Some(first);
        while let Some(pgno) = at {
            assert!(wants.contains(&pgno), "chain page {pgno} predicted");
            at = next_overflow(&db.pages[&pgno]);
        }
    }
}

#[test]
fn warm_reads_predict_nothing() {
    let (_dir, db) = db();
    let index = db.root("orders_customer");
    let pages = Held {
        db: &db,
        held: db.pages.keys().copied().collect(),
    };
    let mut p = Predictor::new(PAGE, 4096);
    for leaf in leaves_in_order(&db, index).into_iter().take(20) {
        assert!(p.on_read(leaf, &db.pages[&leaf], false, &pages).is_empty());
    }
}

#[test]
fn fixture_pages_parse_or_predict_nothing() {
    // Page 1 of every fixture snapshot parses as the schema table; every
    // other page parses or is refused, never panics.
    let mut schemas = 0;
    for fixture in ["basic-4k", "page-512", "page-64k", "shrink-4k"] {
        let dir = ltx_common::fixtures_dir()
            .join(fixture)
            .join("replica/ltx/9");
        for e in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            let file = decode_file(&bytes).unwrap();
            let usable = file.header.page_size.bytes();
            let pages: HashMap<u32, Page> = file
                .pages
                .iter()
                .map(|(p, b)| (p.0, Page::from(b.as_slice())))
                .collect();
            let schema = Schema::read(&|p| pages.get(&p).cloned(), usable);
            assert!(
                schema.entries.iter().any(|e| e.kind == "table"),
                "{fixture}"
            );
            schemas += 1;
            let held = Held2(&pages);
            let mut pred = Predictor::new(usable, 4096);
            for (pgno, page) in &pages {
                if let Some(p) = BtreePage::parse(page, *pgno, usable) {
                    let _ = (
                        p.children(),
                        p.index_rowids(),
                        p.overflows(),
                        p.rowid_range(),
                    );
                }
                let _ = pred.on_read(*pgno, page, true, &held);
            }
        }
    }
    assert!(schemas >= 4);
}

struct Held2<'a>(&'a HashMap<u32, Page>);

impl Pages for Held2<'_> {
    fn cached(&self, pgno: u32) -> Option<Page> {
        self.0.get(&pgno).map(Arc::clone)
    }
}

#[test]
fn a_read_on_a_tables_leftmost_path_names_the_table() {
    let (_dir, db) = db();
    let table = db.root("orders");
    let index = db.root("orders_customer");
    let pages = Held {
        db: &db,
        held: [1].into_iter().collect(),
    };
    let mut p = Predictor::new(PAGE, 4096);
    // Nothing read yet: no page is known to lie on a leftmost path.
    let first_child = db.page(table).children()[0];
    assert_eq!(p.leftmost_of_table(first_child), None);
    // The descent a full scan makes: the root, then the first child at
    // every level down to the first leaf.
    let mut at = table;
    let mut path = Vec::new();
    while db.page(at).kind() == Kind::TableInterior {
        p.on_read(at, &db.pages[&at], false, &pages);
        let kids = db.page(at).children();
        // A read of any other child is not a scan's descent.
        assert_eq!(p.leftmost_of_table(kids[1]), None);
        at = kids[0];
        assert_eq!(p.leftmost_of_table(at), Some(table), "page {at}");
        path.push(at);
    }
    assert!(path.len() >= 2, "a table three levels deep: {path:?}");
    assert_eq!(leaves_in_order(&db, table)[0], at);
    // An index's leftmost path is a lookup of its smallest key as often as
    // a scan: not named.
    p.on_read(index, &db.pages[&index], false, &pages);
    let kid = db.page(index).children()[0];
    assert_eq!(p.leftmost_of_table(kid), None);
}
