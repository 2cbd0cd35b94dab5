//! The restore plan: which files, applied in order, make up the newest state
//! (or the newest state at or before a TXID).

use crate::ltx::Txid;
use crate::storage::{FileInfo, Level};

/// Files to apply, oldest first, and what lies beyond reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub files: Vec<FileInfo>,
    /// The first file that starts after the plan's end, leaving a hole.
    pub gap: Option<FileInfo>,
    /// The level-0 file that ends where the plan ends, when one is listed
    /// (the plan itself may end with a compaction): what the poller watches
    /// to see the replica reset.
    pub level0_end: Option<FileInfo>,
}

impl Plan {
    /// The TXID the plan reaches.
    pub fn txid(&self) -> Option<Txid> {
        self.files.last().map(|f| f.id.name.max)
    }

    /// The TXIDs no file covers between the plan's end and the next file,
    /// when there is a hole.
    pub fn missing(&self) -> Option<(Txid, Txid)> {
        let gap = self.gap?;
        let from = self.txid()?.next();
        Some((from, Txid(gap.id.name.min.0.saturating_sub(1))))
    }
}

/// Chooses the files for the newest state whose TXID is at most `limit`:
/// the newest snapshot of level 9, then from levels 8..=0 repeatedly the file
/// that continues the chain and reaches furthest (ties: smaller min TXID,
/// then higher level). `None` when nothing starts the chain.
pub fn plan(listing: &[FileInfo], limit: Option<Txid>) -> Option<Plan> {
    let within = |f: &&FileInfo| limit.is_none_or(|l| f.id.name.max <= l);
    let snapshot = listing
        .iter()
        .filter(|f| f.id.level == Level::SNAPSHOT && f.id.name.min == Txid(1))
        .filter(within)
        .max_by_key(|f| f.id.name.max);
    let mut files: Vec<FileInfo> = snapshot.into_iter().copied().collect();
    let mut cur = snapshot.map_or(Txid(0), |f| f.id.name.max);
    loop {
        let next = listing
            .iter()
            .filter(|f| f.id.level < Level::SNAPSHOT)
            .filter(within)
            .filter(|f| f.id.name.min <= cur.next() && f.id.name.max > cur)
            .max_by(|a, b| {
                a.id.name
                    .max
                    .cmp(&b.id.name.max)
                    .then(b.id.name.min.cmp(&a.id.name.min))
                    .then(a.id.level.cmp(&b.id.level))
            });
        match next {
            Some(f) => {
                cur = f.id.name.max;
                files.push(*f);
            }
            None => break,
        }
    }
    if files.is_empty() {
        return None;
    }
    let gap = listing
        .iter()
        .filter(|f| f.id.level < Level::SNAPSHOT && f.id.name.min > cur.next())
        .min_by_key(|f| f.id.name)
        .copied();
    let level0_end = listing
        .iter()
        .find(|f| f.id.level == Level::L0 && f.id.name.max == cur)
        .copied();
    Some(Plan {
        files,
        gap,
        level0_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::FileName;
    use crate::storage::FileId;

    fn f(level: u8, min: u64, max: u64) -> FileInfo {
        FileInfo {
            id: FileId {
                level: Level::new(level).unwrap(),
                name: FileName {
                    min: Txid(min),
                    max: Txid(max),
                },
            },
            size: 1,
            version: 0,
        }
    }

    fn names(p: &Plan) -> Vec<(u8, u64, u64)> {
        p.files
            .iter()
            .map(|x| (x.id.level.get(), x.id.name.min.0, x.id.name.max.0))
            .collect()
    }

    #[test]
    fn snapshot_then_furthest_reaching_files() {
        let listing = [
            f(9, 1, 1),
            f(0, 1, 1),
            f(0, 2, 2),
            f(0, 3, 3),
            f(0, 4, 4),
            f(1, 1, 1),
            f(1, 2, 3),
            f(1, 4, 4),
        ];
        let p = plan(&listing, None).unwrap();
        assert_eq!(names(&p), vec![(9, 1, 1), (1, 2, 3), (1, 4, 4)]);
        assert_eq!(p.txid(), Some(Txid(4)));
        assert_eq!(p.gap, None);
        assert_eq!(
            p.level0_end,
            Some(f(0, 4, 4)),
            "ends with level 1, level 0 listed"
        );
    }

    #[test]
    fn without_a_snapshot_starts_at_txid_one() {
        let p = plan(&[f(0, 2, 2), f(0, 1, 1)], None).unwrap();
        assert_eq!(names(&p), vec![(0, 1, 1), (0, 2, 2)]);
        assert_eq!(plan(&[f(0, 2, 2)], None), None);
        assert_eq!(plan(&[], None), None);
    }

    #[test]
    fn reports_gaps_and_honours_the_limit() {
        let p = plan(&[f(9, 1, 5), f(0, 6, 6), f(0, 8, 8)], None).unwrap();
        assert_eq!(p.txid(), Some(Txid(6)));
        assert_eq!(p.gap, Some(f(0, 8, 8)));
        assert_eq!(p.missing(), Some((Txid(7), Txid(7))));
        let p = plan(&[f(9, 1, 5), f(0, 9, 12)], None).unwrap();
        assert_eq!(p.missing(), Some((Txid(6), Txid(8))));
        assert_eq!(
            plan(&[f(9, 1, 5), f(0, 6, 6)], None).unwrap().missing(),
            None
        );
        let p = plan(
            &[f(9, 1, 5), f(9, 1, 9), f(0, 6, 6), f(1, 6, 9)],
            Some(Txid(6)),
        )
        .unwrap();
        assert_eq!(names(&p), vec![(9, 1, 5), (0, 6, 6)]);
    }

    #[test]
    fn overlapping_compactions_are_fine() {
        let p = plan(&[f(9, 1, 3), f(1, 2, 7), f(0, 4, 4), f(0, 8, 8)], None).unwrap();
        assert_eq!(names(&p), vec![(9, 1, 3), (1, 2, 7), (0, 8, 8)]);
    }
}
