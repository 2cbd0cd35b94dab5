//! One B-tree page: its kind, its cells, its children.

use super::varint::read_varint;

/// Bytes of the database header that precedes page 1's B-tree header.
const DB_HEADER: usize = 100;

/// The four kinds of B-tree page (SQLite's page-type byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 0x02: keys and child pointers of an index.
    IndexInterior,
    /// 0x05: rowid keys and child pointers of a table.
    TableInterior,
    /// 0x0a: keys of an index.
    IndexLeaf,
    /// 0x0d: rows of a table.
    TableLeaf,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0x02 => Kind::IndexInterior,
            0x05 => Kind::TableInterior,
            0x0a => Kind::IndexLeaf,
            0x0d => Kind::TableLeaf,
            _ => return None,
        })
    }

    pub fn is_interior(self) -> bool {
        matches!(self, Kind::IndexInterior | Kind::TableInterior)
    }

    pub fn is_index(self) -> bool {
        matches!(self, Kind::IndexInterior | Kind::IndexLeaf)
    }
}

/// One cell, as far as prefetch needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell<'a> {
    /// The child left of this cell (interior pages).
    pub left_child: Option<u32>,
    /// The rowid: the key of a table cell.
    pub rowid: Option<i64>,
    /// Total payload bytes (0 for table interior cells).
    pub payload_len: u64,
    /// The part of the payload stored on this page.
    pub local: &'a [u8],
    /// First page of the overflow chain, when the payload spills.
    pub overflow: Option<u32>,
}

/// A parsed B-tree page, borrowing the page bytes.
#[derive(Clone, Copy, Debug)]
pub struct BtreePage<'a> {
    data: &'a [u8],
    kind: Kind,
    cells: u16,
    /// Offset of the cell pointer array.
    pointers: usize,
    right_child: Option<u32>,
    /// Usable bytes per page (page size minus reserved bytes).
    usable: usize,
}

fn be_u16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

fn be_u32(data: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

impl<'a> BtreePage<'a> {
    /// Parses page `pgno` (page 1 carries the database header first).
    /// `usable` is the page size minus the reserved bytes at the end of
    /// each page; `None` for anything that is not a B-tree page (an
    /// overflow page, a freelist page, garbage).
    pub fn parse(data: &'a [u8], pgno: u32, usable: usize) -> Option<BtreePage<'a>> {
        if usable < 480 || usable > data.len() {
            return None;
        }
        let hdr = if pgno == 1 { DB_HEADER } else { 0 };
        let kind = Kind::from_byte(*data.get(hdr)?)?;
        let cells = be_u16(data, hdr.checked_add(3)?)?;
        let (pointers, right_child) = if kind.is_interior() {
            (
                hdr.checked_add(12)?,
                Some(be_u32(data, hdr.checked_add(8)?)?),
            )
        } else {
            (hdr.checked_add(8)?, None)
        };
        let end = pointers.checked_add(usize::from(cells).checked_mul(2)?)?;
        if end > usable {
            return None;
        }
        Some(BtreePage {
            data: data.get(..usable)?,
            kind,
            cells,
            pointers,
            right_child,
            usable,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn cell_count(&self) -> usize {
        usize::from(self.cells)
    }

    /// The right-most child of an interior page.
    pub fn right_child(&self) -> Option<u32> {
        self.right_child
    }

    /// Cell `i`, or `None` when it does not parse.
    pub fn cell(&self, i: usize) -> Option<Cell<'a>> {
        if i >= self.cell_count() {
            return None;
        }
        let at = be_u16(self.data, self.pointers.checked_add(i.checked_mul(2)?)?)?;
        let body = self.data.get(usize::from(at)..)?;
        match self.kind {
            Kind::TableInterior => {
                let left = be_u32(body, 0)?;
                let (key, _) = read_varint(body.get(4..)?)?;
                Some(Cell {
                    left_child: Some(left),
                    rowid: Some(key as i64),
                    payload_len: 0,
                    local: &[],
                    overflow: None,
                })
            }
            Kind::TableLeaf => {
                let (len, n1) = read_varint(body)?;
                let (rowid, n2) = read_varint(body.get(n1..)?)?;
                let rest = body.get(n1.checked_add(n2)?..)?;
                self.payload(None, Some(rowid as i64), len, rest)
            }
            Kind::IndexLeaf => {
                let (len, n) = read_varint(body)?;
                self.payload(None, None, len, body.get(n..)?)
            }
            Kind::IndexInterior => {
                let left = be_u32(body, 0)?;
                let after = body.get(4..)?;
                let (len, n) = read_varint(after)?;
                self.payload(Some(left), None, len, after.get(n..)?)
            }
        }
    }

    fn payload(
        &self,
        left_child: Option<u32>,
        rowid: Option<i64>,
        len: u64,
        rest: &'a [u8],
    ) -> Option<Cell<'a>> {
        let local_len = self.local_len(len)?;
        let local = rest.get(..local_len)?;
        let overflow = if (local_len as u64) < len {
            Some(be_u32(rest, local_len)?).filter(|p| *p != 0)
        } else {
            None
        };
        Some(Cell {
            left_child,
            rowid,
            payload_len: len,
            local,
            overflow,
        })
    }

    /// Bytes of a payload of `len` bytes kept on the page (the rest goes to
    /// overflow pages), by the rule of SQLite's file format, section 1.6.
    fn local_len(&self, len: u64) -> Option<usize> {
        let u = self.usable as u64;
        let max_local = if self.kind == Kind::TableLeaf {
            u.checked_sub(35)?
        } else {
            (u.checked_sub(12)?.checked_mul(64)? / 255).checked_sub(23)?
        };
        let min_local = (u.checked_sub(12)?.checked_mul(32)? / 255).checked_sub(23)?;
        if len <= max_local {
            return usize::try_from(len).ok();
        }
        let k =
            min_local.checked_add(len.checked_sub(min_local)?.checked_rem(u.checked_sub(4)?)?)?;
        usize::try_from(if k <= max_local { k } else { min_local }).ok()
    }

    /// Every child page of an interior page, left to right (empty for a
    /// leaf). Stops at the first cell that does not parse.
    pub fn children(&self) -> Vec<u32> {
        if !self.kind.is_interior() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.cell_count().saturating_add(1));
        for i in 0..self.cell_count() {
            match self.cell(i).and_then(|c| c.left_child) {
                Some(p) => out.push(p),
                None => return out,
            }
        }
        out.extend(self.right_child);
        out
    }

    /// The child of a table interior page whose subtree holds `rowid`: the
    /// first cell whose key is at least `rowid`, else the right-most child.
    pub fn child_for_rowid(&self, rowid: i64) -> Option<u32> {
        if self.kind != Kind::TableInterior {
            return None;
        }
        let (mut lo, mut hi) = (0usize, self.cell_count());
        while lo < hi {
            let mid = lo.checked_add(hi.checked_sub(lo)? / 2)?;
            if self.cell(mid)?.rowid? < rowid {
                lo = mid.checked_add(1)?;
            } else {
                hi = mid;
            }
        }
        match self.cell(lo) {
            Some(c) => c.left_child,
            None => self.right_child,
        }
    }

    /// The smallest and largest rowid on a table leaf.
    pub fn rowid_range(&self) -> Option<(i64, i64)> {
        if self.kind != Kind::TableLeaf {
            return None;
        }
        let first = self.cell(0)?.rowid?;
        let last = self.cell(self.cell_count().checked_sub(1)?)?.rowid?;
        Some((first, last))
    }

    /// The rowids an index page names, in key order: the last column of
    /// each cell's record. Cells whose rowid is not on the page (spilled to
    /// overflow) or does not parse are skipped.
    pub fn index_rowids(&self) -> Vec<i64> {
        self.index_entries().into_iter().map(|(_, r)| r).collect()
    }

    /// The (key hash, rowid) of each cell of an index page, in key order:
    /// equal keys have equal hashes, so the rows of one key form a run.
    pub fn index_entries(&self) -> Vec<(u64, i64)> {
        if !self.kind.is_index() {
            return Vec::new();
        }
        (0..self.cell_count())
            .filter_map(|i| {
                let c = self.cell(i)?;
                if c.overflow.is_some() {
                    return None;
                }
                super::record::Record::new(c.local)?.key_and_rowid()
            })
            .collect()
    }

    /// First overflow page and payload length of every cell that spills.
    pub fn overflows(&self) -> Vec<(u32, u64)> {
        (0..self.cell_count())
            .filter_map(|i| {
                let c = self.cell(i)?;
                Some((
                    c.overflow?,
                    c.payload_len.checked_sub(c.local.len() as u64)?,
                ))
            })
            .collect()
    }

    /// Usable bytes of the page.
    pub fn usable(&self) -> usize {
        self.usable
    }
}

/// The next page of an overflow chain: the first four bytes of an overflow
/// page (0 ends the chain).
pub fn next_overflow(data: &[u8]) -> Option<u32> {
    be_u32(data, 0).filter(|p| *p != 0)
}

/// How many overflow pages hold `spilled` bytes: each carries `usable - 4`.
pub fn overflow_pages(spilled: u64, usable: usize) -> u64 {
    let per = (usable as u64).saturating_sub(4).max(1);
    spilled.div_ceil(per)
}
