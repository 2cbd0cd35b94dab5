//! The schema table (`sqlite_schema`, rooted at page 1): which B-tree is
//! which, and which table each index belongs to.

use std::collections::HashMap;

use super::page::{BtreePage, Kind};
use super::record::{Record, Value};

/// The schema table never has more levels than this in practice; a deeper
/// (or cyclic) tree is garbage and yields what was found so far.
const MAX_DEPTH: usize = 8;
/// Schema pages visited at most (a cyclic or hostile tree stops here).
const MAX_PAGES: usize = 4096;

/// One row of the schema table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaEntry {
    /// "table", "index", "view" or "trigger".
    pub kind: String,
    pub name: String,
    pub table: String,
    /// Root page of its B-tree (0 for views and triggers).
    pub root: u32,
}

/// The B-trees of a database, as far as prefetch needs them.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    pub entries: Vec<SchemaEntry>,
    /// Root page of an index → root page of its table.
    index_table: HashMap<u32, u32>,
}

fn text(v: Option<&Value<'_>>) -> Option<String> {
    match v? {
        Value::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        _ => None,
    }
}

impl Schema {
    /// Reads the schema table from page 1 down, asking `page` for each
    /// page (`None`: not available, that part of the schema is skipped).
    pub fn read(page: &dyn Fn(u32) -> Option<std::sync::Arc<[u8]>>, usable: usize) -> Schema {
        let mut entries = Vec::new();
        let mut todo = vec![(1u32, 0usize)];
        let mut visited = 0usize;
        while let Some((pgno, depth)) = todo.pop() {
            visited = visited.saturating_add(1);
            if visited > MAX_PAGES || depth > MAX_DEPTH {
                break;
            }
            let Some(bytes) = page(pgno) else { continue };
            let Some(p) = BtreePage::parse(&bytes, pgno, usable) else {
                continue;
            };
            match p.kind() {
                Kind::TableInterior => {
                    let next = depth.saturating_add(1);
                    todo.extend(p.children().into_iter().rev().map(|c| (c, next)));
                }
                Kind::TableLeaf => {
                    for i in 0..p.cell_count() {
                        if let Some(e) = p.cell(i).and_then(|c| entry(c.local)) {
                            entries.push(e);
                        }
                    }
                }
                Kind::IndexInterior | Kind::IndexLeaf => {}
            }
        }
        Schema::from_entries(entries)
    }

    pub fn from_entries(entries: Vec<SchemaEntry>) -> Schema {
        let tables: HashMap<&str, u32> = entries
            .iter()
            .filter(|e| e.kind == "table" && e.root != 0)
            .map(|e| (e.table.as_str(), e.root))
            .collect();
        let index_table = entries
            .iter()
            .filter(|e| e.kind == "index" && e.root != 0)
            .filter_map(|e| Some((e.root, *tables.get(e.table.as_str())?)))
            .collect();
        Schema {
            entries,
            index_table,
        }
    }

    /// Root page of the table that the index rooted at `index_root`
    /// belongs to.
    pub fn table_of_index(&self, index_root: u32) -> Option<u32> {
        self.index_table.get(&index_root).copied()
    }

    /// Whether `pgno` is the root of some table or index.
    pub fn is_root(&self, pgno: u32) -> bool {
        pgno == 1 || self.entries.iter().any(|e| e.root == pgno)
    }
}

/// A schema row from the local part of its payload: `type`, `name`,
/// `tbl_name` and `rootpage` come first, so a long `sql` that spilled to
/// overflow pages does not matter.
fn entry(local: &[u8]) -> Option<SchemaEntry> {
    let values = Record::new(local)?.values();
    let root = match values.get(3)? {
        Value::Integer(r) => u32::try_from(*r).ok()?,
        Value::Null => 0,
        _ => return None,
    };
    Some(SchemaEntry {
        kind: text(values.first())?,
        name: text(values.get(1))?,
        table: text(values.get(2))?,
        root,
    })
}
