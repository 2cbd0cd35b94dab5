//! A replica that was reset: Litestream's state and the replica's files were
//! removed and replication restarted (or the replica was re-created from
//! another database), so TXIDs start again at 1 and the new files reuse the
//! old names for other bytes.
//!
//! The poller watches for the signs of a new lineage and then rebuilds the
//! state from scratch with the lineage number one higher. Cache keys hold
//! each file's size and header timestamp (`FileRef::key`), so no page cached
//! from the old lineage is found for the new one; the page-1 change counter
//! mixes in the lineage (`vfs/page1.rs`), so SQLite drops its own cache; and a
//! snapshot of the old lineage that a read transaction or a time-travelling
//! connection still holds fails its reads instead of mixing the two.
//!
//! Litestream 0.5 writes no database checksums, so the signs are what the
//! listing and the headers show:
//! - the newest level-0 file we applied (the *tip*) is listed with another
//!   size, or its header has another timestamp;
//! - a level-0 file spans our TXID (within one lineage level-0 files follow
//!   each other, and our TXID always ends one);
//! - TXIDs went backwards: every file of the replica ends before our TXID.
//!   Checked only when the tip is not listed any more (or we have none),
//!   at most every [`PROBE_INTERVAL`], because it lists every level.
//!
//! The tip's header is read when new files arrive, and while the replica is
//! quiet at most every [`PROBE_INTERVAL`]: a new lineage that reached our
//! TXID with files of the same names and sizes is seen within that interval.
//! Until a reset is seen, a reader of the old state whose page is not cached
//! may read it from a file that now holds the new lineage's bytes (a frame
//! that does not decode as the page asked for is refused as corrupt).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::log;
use crate::ltx::Txid;
use crate::storage::{FileInfo, Level};

use super::{Replica, Stats};

/// How often the poller lists every level to see whether TXIDs went
/// backwards, while the tip is not in the level-0 listing: a full listing
/// costs ten requests on some backends, and a reset is rare.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// The newest level-0 file of the current state, as listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tip {
    /// The state it ends (the file's max TXID).
    pub txid: Txid,
    pub file: FileInfo,
    /// Its header timestamp, when known.
    pub written_ms: Option<i64>,
}

/// What a level-0 listing says about the lineage of the state at `cur`.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// Same lineage; whether the tip was in the listing.
    Same { tip_listed: bool },
    /// A new lineage, and why we think so.
    Reset(String),
}

/// Checks a level-0 listing against the state at `cur` and its tip.
pub fn check_listing(cur: Txid, tip: Option<&Tip>, listed: &[FileInfo]) -> Seen {
    let tip = tip.filter(|t| t.txid == cur);
    let mut tip_listed = false;
    for f in listed {
        if let Some(t) = tip.filter(|t| t.file.id == f.id) {
            if t.file.size != f.size {
                return Seen::Reset(format!(
                    "{} is now {} bytes, it was {}",
                    f.id, f.size, t.file.size
                ));
            }
            if t.file.version != 0 && f.version != 0 && t.file.version != f.version {
                return Seen::Reset(format!("{} was written again", f.id));
            }
            tip_listed = true;
        } else if f.id.level == Level::L0 && f.id.name.min <= cur && f.id.name.max > cur {
            return Seen::Reset(format!(
                "{} spans TXID {cur}, where a level-0 file of the state we read ends",
                f.id
            ));
        }
    }
    Seen::Same { tip_listed }
}

/// Whether a listing of every level shows TXIDs gone backwards: the
/// replica holds files, and all of them end before `cur`.
pub fn went_backwards(cur: Txid, listing: &[FileInfo]) -> Option<String> {
    let newest = listing.iter().map(|f| f.id.name.max).max()?;
    (newest < cur).then(|| format!("its newest file ends at TXID {newest}, before ours ({cur})"))
}

/// The tip of a freshly built state: the plan's last file when it is at
/// level 0 (its timestamp is the snapshot's), else the level-0 file listed
/// with the same end (its timestamp learnt at the first check).
pub fn tip_of(snap: &super::Snapshot, plan: &super::Plan) -> Option<Tip> {
    match plan.files.last() {
        Some(f) if f.id.level == Level::L0 => Some(Tip {
            txid: snap.txid,
            file: *f,
            written_ms: Some(snap.timestamp_ms),
        }),
        _ => plan.level0_end.filter(can_be_whole).map(|f| Tip {
            txid: snap.txid,
            file: f,
            written_ms: None,
        }),
    }
}

/// Whether a listed file can be a whole LTX file (at least a header). A
/// file still being written is listed with the size it has so far: taken
/// for a tip, its growth would look like a reset.
fn can_be_whole(f: &FileInfo) -> bool {
    f.size >= crate::ltx::HEADER_SIZE as u64
}

/// The tip a listing offers for the state at `cur`: the level-0 file that
/// ends there.
pub fn tip_in(cur: Txid, listing: &[FileInfo]) -> Option<Tip> {
    listing
        .iter()
        .find(|f| f.id.level == Level::L0 && f.id.name.max == cur)
        .filter(|f| can_be_whole(f))
        .map(|f| Tip {
            txid: cur,
            file: *f,
            written_ms: None,
        })
}

impl Replica {
    /// The lineage of the newest state (see [`Snapshot::lineage`](super::Snapshot)).
    pub fn lineage(&self) -> u32 {
        self.current.load().lineage
    }

    pub(super) fn tip(&self) -> Option<Tip> {
        self.tip.lock().map_or(None, |t| *t)
    }

    /// Sets the tip of `snap`, if `snap` is still the current state: a
    /// publisher sets the tip after its compare-and-swap, and one that lost
    /// the state to a reset since must not leave its tip for the new
    /// lineage. (Checked under the tip's lock: a reset that publishes after
    /// the check sets its own tip after this one.)
    pub(super) fn set_tip(&self, snap: &super::Snapshot, tip: Option<Tip>) {
        if let Ok(mut t) = self.tip.lock()
            && std::ptr::eq(&*self.current.load_full(), snap)
        {
            *t = tip;
        }
    }

    /// Replaces the tip `old` with `new` (its timestamp learnt), if `old`
    /// is still the tip.
    fn refine_tip(&self, old: &Tip, new: Tip) {
        if let Ok(mut t) = self.tip.lock()
            && t.as_ref() == Some(old)
        {
            *t = Some(new);
        }
    }

    /// Whether the header of the tip still has the timestamp we know; a
    /// tip without a known timestamp learns it here.
    pub(super) async fn tip_header_matches(&self, tip: &Tip) -> Result<Option<String>> {
        let header = self.io.catalog.read_header(tip.file.id).await?;
        match tip.written_ms {
            Some(ms) if ms != header.timestamp_ms => Ok(Some(format!(
                "{} was written at {} ms, it now says {} ms",
                tip.file.id, ms, header.timestamp_ms
            ))),
            Some(_) => Ok(None),
            // A tip adopted from a listing after the state was read may be
            // a file a reset wrote under the same name: the file that ends
            // the state was written no later than the state's newest file
            // (the same time when read from level 1, earlier than a
            // snapshot), and a reset's file is written after it.
            None if self.current().txid == tip.txid
                && header.timestamp_ms > self.current().timestamp_ms =>
            {
                Ok(Some(format!(
                    "{} was written at {} ms, after the state read (written at {} ms)",
                    tip.file.id,
                    header.timestamp_ms,
                    self.current().timestamp_ms
                )))
            }
            None => {
                self.refine_tip(
                    tip,
                    Tip {
                        written_ms: Some(header.timestamp_ms),
                        ..*tip
                    },
                );
                Ok(None)
            }
        }
    }

    /// Lists every level to see whether TXIDs went backwards (at most every
    /// [`PROBE_INTERVAL`]); adopts a tip when the listing offers one.
    pub(super) async fn probe(&self, next_probe: &mut Option<Instant>) -> Result<Option<String>> {
        if next_probe.is_some_and(|t| Instant::now() < t) {
            return Ok(None);
        }
        let cur = self.current();
        let listing = self.io.catalog.list_all().await?;
        // An empty replica is what a reset looks like halfway (the files
        // removed, the new lineage not written yet): look again next poll.
        if !listing.is_empty() {
            *next_probe = Some(Instant::now() + PROBE_INTERVAL);
        }
        if let Some(why) = went_backwards(cur.txid, &listing) {
            return Ok(Some(why));
        }
        if let Some(tip) = tip_in(cur.txid, &listing) {
            self.set_tip(&cur, Some(tip));
        }
        Ok(None)
    }

    /// Rebuilds the state from scratch after the replica was found reset:
    /// a new lineage, whose snapshots never share a cache key, a page-1
    /// change counter or a read with the old one.
    pub(super) async fn reset(&self, why: &str) -> Result<()> {
        let _guard = self.replan_lock.lock().await;
        self.reset_locked(self.lineage(), why).await
    }

    /// [`reset`](Self::reset) with the re-plan lock held: moves the replica
    /// from `lineage` to the next one, unless it has left `lineage` already
    /// (another caller saw the same reset first).
    pub(super) async fn reset_locked(&self, lineage: u32, why: &str) -> Result<()> {
        let old = self.current();
        if old.lineage != lineage {
            return Ok(());
        }
        log::warn!(
            "{}: the replica was reset ({why}): its TXIDs started again; rebuilding from scratch \
             (the old state at TXID {} is gone)",
            self.io.storage.describe(),
            old.txid
        );
        self.io.catalog.forget().await;
        let Some((snap, plan)) = self.io.catalog.build(None).await? else {
            return Err(Error::Unavailable(format!(
                "{}: the replica was reset and holds no snapshot to start from yet",
                self.io.storage.describe()
            )));
        };
        // The poller publishes without the re-plan lock: a state of the old
        // lineage it published meanwhile is replaced all the same.
        let mut from = old;
        let snap = loop {
            let mut next = snap.clone();
            next.lineage = lineage.wrapping_add(1);
            match self.publish(&from, next) {
                super::Published::Done(s) => break s,
                super::Published::Lost(now)
                    if now.lineage == lineage && !Arc::ptr_eq(&now, &from) =>
                {
                    from = now;
                }
                super::Published::Lost(_) => return Ok(()),
            }
        };
        // Counted once it took: a rebuild that failed (a file still being
        // written) is tried again, and is the same reset.
        Stats::add(&self.io.stats.resets, 1);
        self.set_tip(&snap, tip_of(&snap, &plan));
        log::info!(
            "{}: now at TXID {} of the new lineage ({} pages)",
            self.io.storage.describe(),
            snap.txid,
            snap.page_count
        );
        Ok(())
    }
}

impl Replica {
    /// A read of `snap` found one of its files written again since it was
    /// listed (a read tied to the listed version was refused): the replica
    /// was reset. Moves it to the new lineage at once, without waiting for
    /// the poller to notice, and returns the reset error for the reader.
    pub async fn rewritten(&self, snap: &super::Snapshot, cause: &str) -> Error {
        {
            let _guard = self.replan_lock.lock().await;
            if let Err(e) = self.reset_locked(snap.lineage, cause).await {
                log::warn!("{}: {e}", self.io.storage.describe());
            }
        }
        Error::Reset(format!(
            "{}: the replica was reset (its TXIDs started again) while this connection read TXID {} \
             of the old one ({cause}); retry the transaction",
            self.io.storage.describe(),
            snap.txid
        ))
    }
}

/// Whether `rebuilt`, a state rebuilt from what storage holds now, is the
/// state `old` was: the same TXID, database size and page size, the same
/// header timestamp of the newest file applied (a compaction gives its
/// output the timestamp of its newest input, so the file that ends the
/// state keeps it whatever level it is read from; a state read from a
/// snapshot, which has a time of its own, may be rebuilt from files no
/// newer than the snapshot), and the same identity
/// (size, header) for every file both read. A reset replica that reached
/// the same TXID has other timestamps: it was written at other times.
pub fn same_state(old: &super::Snapshot, rebuilt: &super::Snapshot) -> Result<(), String> {
    if (rebuilt.txid, rebuilt.page_size, rebuilt.page_count)
        != (old.txid, old.page_size, old.page_count)
    {
        return Err(format!(
            "it is TXID {} with {} pages of {} bytes, it was TXID {} with {} pages of {} bytes",
            rebuilt.txid,
            rebuilt.page_count,
            rebuilt.page_size.get(),
            old.txid,
            old.page_count,
            old.page_size.get()
        ));
    }
    // A snapshot (level 9) is written from the database after the TXID it
    // ends at, at a time of its own: a state read from one is rebuilt from
    // files written no later than it. A reset's files come after it.
    let from_snapshot = ends_with_snapshot(old) && !ends_with_snapshot(rebuilt);
    if rebuilt.timestamp_ms != old.timestamp_ms
        && !(from_snapshot && rebuilt.timestamp_ms <= old.timestamp_ms)
    {
        return Err(format!(
            "its newest file was written at {} ms, the state read was written at {} ms",
            rebuilt.timestamp_ms, old.timestamp_ms
        ));
    }
    same_files(old, rebuilt)
}

/// Whether a snapshot file (level 9) ends `snap`'s state.
fn ends_with_snapshot(snap: &super::Snapshot) -> bool {
    snap.files()
        .any(|f| f.id.level == Level::SNAPSHOT && f.id.name.max == snap.txid)
}

/// Whether every file that `old` and `new` both read (by level and name) is
/// the same file in both: the same size and header timestamp. A build that
/// picked up a file a reset wrote under an old name fails it.
pub fn same_files(old: &super::Snapshot, new: &super::Snapshot) -> Result<(), String> {
    let known: std::collections::HashMap<_, _> = old.files().map(|f| (f.id, f)).collect();
    for f in new.files() {
        if let Some(o) = known.get(&f.id)
            && (o.size, o.header.timestamp_ms) != (f.size, f.header.timestamp_ms)
        {
            return Err(format!(
                "{} is now {} bytes written at {} ms, it was {} bytes written at {} ms",
                f.id, f.size, f.header.timestamp_ms, o.size, o.header.timestamp_ms
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{FileName, Header};
    use crate::storage::FileId;

    fn f(level: u8, min: u64, max: u64, size: u64) -> FileInfo {
        FileInfo {
            id: FileId {
                level: Level::new(level).unwrap(),
                name: FileName {
                    min: Txid(min),
                    max: Txid(max),
                },
            },
            size,
            version: 0,
        }
    }

    fn tip(file: FileInfo) -> Tip {
        Tip {
            txid: file.id.name.max,
            file,
            written_ms: Some(1),
        }
    }

    #[test]
    fn the_tip_with_another_size_is_a_reset() {
        let t = tip(f(0, 5, 5, 100));
        let same = check_listing(Txid(5), Some(&t), &[f(0, 5, 5, 100), f(0, 6, 6, 80)]);
        assert_eq!(same, Seen::Same { tip_listed: true });
        let gone = check_listing(Txid(5), Some(&t), &[f(0, 6, 6, 80)]);
        assert_eq!(gone, Seen::Same { tip_listed: false });
        let Seen::Reset(why) = check_listing(Txid(5), Some(&t), &[f(0, 5, 5, 101)]) else {
            panic!("a resized tip is a reset");
        };
        assert!(why.contains("101") && why.contains("100"), "{why}");
        // A tip of another state is not compared.
        let stale = check_listing(Txid(6), Some(&t), &[f(0, 5, 5, 101)]);
        assert_eq!(stale, Seen::Same { tip_listed: false });
    }

    #[test]
    fn the_tip_listed_with_another_version_is_a_reset() {
        let v = |file: FileInfo, version| FileInfo { version, ..file };
        let t = tip(v(f(0, 5, 5, 100), 7));
        let same = check_listing(Txid(5), Some(&t), &[v(f(0, 5, 5, 100), 7)]);
        assert_eq!(same, Seen::Same { tip_listed: true });
        // A backend that tells no version compares sizes only.
        let untold = check_listing(Txid(5), Some(&t), &[f(0, 5, 5, 100)]);
        assert_eq!(untold, Seen::Same { tip_listed: true });
        let Seen::Reset(why) = check_listing(Txid(5), Some(&t), &[v(f(0, 5, 5, 100), 8)]) else {
            panic!("a rewritten tip is a reset");
        };
        assert!(why.contains("written again"), "{why}");
    }

    #[test]
    fn a_level_zero_file_across_our_txid_is_a_reset() {
        assert!(matches!(
            check_listing(Txid(5), None, &[f(0, 4, 6, 10)]),
            Seen::Reset(_)
        ));
        // Compactions span any TXID; level 0 ending at ours is fine.
        assert_eq!(
            check_listing(
                Txid(5),
                None,
                &[f(1, 4, 6, 10), f(0, 5, 5, 1), f(0, 6, 6, 1)]
            ),
            Seen::Same { tip_listed: false }
        );
    }

    #[test]
    fn a_file_of_another_lineage_has_other_cache_keys() {
        use crate::ltx::{LtxBuilder, PageSize};
        use crate::replica::FileRef;
        let id = f(0, 2, 2, 0).id;
        let ps = PageSize::new(4096).unwrap();
        let header =
            |ts| Header::decode(&LtxBuilder::new(ps, 2, 2, 2).timestamp_ms(ts).build()).unwrap();
        let old = FileRef::new(id, 500, header(1));
        assert_eq!(old.key(100), FileRef::new(id, 500, header(1)).key(100));
        assert_ne!(
            old.key(100),
            FileRef::new(id, 500, header(2)).key(100),
            "other timestamp"
        );
        assert_ne!(
            old.key(100),
            FileRef::new(id, 501, header(1)).key(100),
            "other size"
        );
        assert_ne!(old.key(100), old.key(101));
    }

    #[test]
    fn backwards_only_when_everything_ends_before_us() {
        assert!(went_backwards(Txid(3000), &[f(9, 1, 1, 1), f(0, 1, 1, 1)]).is_some());
        assert_eq!(
            went_backwards(Txid(3), &[f(9, 1, 1, 1), f(1, 2, 3, 1)]),
            None
        );
        assert_eq!(
            went_backwards(Txid(3), &[]),
            None,
            "an empty listing is no proof"
        );
        assert_eq!(
            tip_in(Txid(3), &[f(1, 2, 3, 1), f(0, 3, 3, 700)])
                .unwrap()
                .file,
            f(0, 3, 3, 700)
        );
        assert_eq!(
            tip_in(Txid(3), &[f(0, 3, 3, 7)]),
            None,
            "a file still being written (shorter than a header) is no tip"
        );
    }
}
