//! The lineage side of a store file: binding it to the replica's history
//! (`attach`), following new LTX files (`follow`), and catching up after a
//! process was away. See the module documentation of `disk`.

use std::sync::Arc;

use crate::log;
use crate::ltx::{PageNo, Txid};

use super::disk::{CATCH_UP_MAX, DiskStore, FOLLOWED_RECENTLY_MS, View};
use super::layout::{FileHeader, OPEN};
use super::{Attached, Followed, Identity, StateFacts, os};

impl DiskStore {
    /// Closes the open entry of `pgno` at `at`, if it is one of the current
    /// era of `h`'s lineage.
    pub(super) fn close(&self, h: &FileHeader, pgno: PageNo, at: u64) -> std::io::Result<()> {
        let Some(mut s) = self.read_slot_header(pgno) else {
            return Ok(());
        };
        if s.lineage != h.lineage || !s.is_open() || s.era != h.era {
            return Ok(());
        }
        s.flags &= !OPEN;
        s.hi = s.hi.max(at);
        // Only the metadata changes, in one write of its own: torn, it
        // fails its checksum (a miss), and the page is untouched.
        let Some(off) = self.meta_offset(pgno) else {
            return Ok(());
        };
        os::write_at(&self.file, &s.encode(), off)
    }

    /// Starts a new lineage at `txid`: every existing entry is dead.
    fn new_lineage(&self, h: &mut FileHeader, txid: Txid, checkpoints: &[Identity]) {
        h.lineage = nonce();
        h.era = 1;
        h.horizon = txid.0;
        h.era_ends.clear();
        h.checkpoints.clear();
        h.filled = 0;
        h.wanted = 0;
        h.fill_txid = 0;
        for &(k, v) in checkpoints {
            h.add_checkpoint(k, v);
        }
    }

    /// Follows one applied LTX file of the chain: pages it changes stop
    /// being valid past the state before it. Whether the file is now known
    /// to be of the stored lineage (this call followed it, or it was
    /// already a checkpoint): only then may its pages be read from the
    /// store, and only in the lineage returned: its pages are read and
    /// written with it. A follow skipped (the lock stayed taken), or of a
    /// file the horizon passed that no checkpoint proves (a reset
    /// replica's TXIDs start again below it), proves nothing.
    pub fn follow(&self, f: &Followed<'_>) -> Option<u64> {
        let mine = self.view.load().lineage;
        let ours = [f.identity];
        let mut proven = None;
        // A lineage this follow joins or starts is published while the
        // lock is held (`with_header` then keeps the view current with
        // the header it writes): published after, it could undo a newer
        // lineage another thread's attach published in between.
        let adopt = |h: &FileHeader| self.view.store(Arc::new(View::of(h)));
        let ran = self.with_header("following", |h| {
            if h.lineage == 0 {
                return false;
            }
            if h.lineage != mine {
                // Another process started a lineage; join it if this file
                // proves it is ours.
                if compare(&h.checkpoints, &ours) != Verdict::Match {
                    return false;
                }
                adopt(h);
            }
            if compare(&h.checkpoints, &ours) == Verdict::Conflict {
                log::info!(
                    "local store {}: the file ending at TXID {} is not the stored lineage's; \
                     starting a new one",
                    self.path.display(),
                    f.max
                );
                self.new_lineage(h, f.max, &ours);
                adopt(h);
                return true;
            }
            let horizon = h.horizon;
            if f.max.0 <= horizon {
                proven = (compare(&h.checkpoints, &ours) == Verdict::Match).then_some(h.lineage);
                return false;
            }
            if f.min.0 <= horizon.saturating_add(1) {
                for &p in f.pages {
                    if let Err(e) = self.close(h, p, horizon) {
                        self.write_failed("following", &e);
                        return false;
                    }
                }
                h.horizon = f.max.0;
            } else {
                h.next_era(f.max.0, true);
            }
            h.add_checkpoint(f.identity.0, f.identity.1);
            proven = Some(h.lineage);
            true
        });
        crate::pause::point("store.followed", &self.path.to_string_lossy());
        proven.filter(|_| ran)
    }

    /// Binds the store to the lineage of a state the replica built (at
    /// open and after a re-plan): checks the lineage, catches up. A lock
    /// that stays taken past `LOCK_WAIT` fails it (the caller reads from
    /// storage and tries again later). Serving: in which lineage.
    pub fn attach(&self, s: &StateFacts<'_>) -> Attached {
        if self.writes_paused() {
            return Attached::Failed;
        }
        let result = (|| {
            let _lock = self.lock()?;
            let mut h = self.read_header().unwrap_or_else(|| FileHeader {
                page_size: self.page_size.get(),
                slots: self.slots,
                ident: self.ident.clone(),
                ..FileHeader::default()
            });
            let boot = os::boot_id();
            let verdict = compare(&h.checkpoints, s.checkpoints);
            if h.lineage != 0
                && verdict == Verdict::Unknown
                && s.checkpoints.iter().all(|&(k, _)| k >> 4 > h.horizon)
                && self.followed_recently()
            {
                return Ok(Attached::Behind);
            }
            if h.lineage == 0 || verdict != Verdict::Match {
                if h.lineage != 0 {
                    log::info!(
                        "local store {}: the replica's history does not match the stored lineage; \
                         starting a new one at TXID {}",
                        self.path.display(),
                        s.txid
                    );
                }
                self.new_lineage(&mut h, s.txid, s.checkpoints);
            } else {
                if h.boot != 0 && boot != h.boot {
                    // Rebooted: writes of the last boot may be lost, so
                    // open entries keep only what they recorded.
                    h.next_era(h.horizon, false);
                }
                if h.horizon < s.txid.0 {
                    self.catch_up(&mut h, s)?;
                }
                for &(k, v) in s.checkpoints {
                    h.add_checkpoint(k, v);
                }
            }
            h.boot = boot;
            self.write_header(&h)?;
            self.view.store(Arc::new(View::of(&h)));
            Ok::<_, std::io::Error>(Attached::Serving(h.lineage))
        })();
        result.unwrap_or_else(|e| {
            self.op_failed("opening", &e);
            Attached::Failed
        })
    }

    /// Whether some process wrote the store file in the last
    /// `FOLLOWED_RECENTLY_MS`.
    fn followed_recently(&self) -> bool {
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_millis() < FOLLOWED_RECENTLY_MS)
    }

    /// Moves the horizon from `h.horizon` to the state `s`: pages whose
    /// span in `s` starts after the horizon may have changed since and are
    /// closed; the others are unchanged through `s.txid`.
    fn catch_up(&self, h: &mut FileHeader, s: &StateFacts<'_>) -> std::io::Result<()> {
        let horizon = h.horizon;
        let changed: Vec<PageNo> = (1..=s.page_count)
            .map(PageNo)
            .filter(|&p| (s.since)(p).is_none_or(|b| b.0 > horizon))
            .take(CATCH_UP_MAX + 1)
            .collect();
        if changed.len() > CATCH_UP_MAX {
            h.next_era(s.txid.0, true);
            return Ok(());
        }
        for p in changed {
            self.close(h, p, horizon)?;
        }
        h.horizon = s.txid.0;
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Match,
    Conflict,
    Unknown,
}

/// Whether two sets of file identities describe one lineage: a conflict
/// (a file at the same place with other contents) wins over any match.
fn compare(stored: &[(u64, u64)], ours: &[Identity]) -> Verdict {
    let mut verdict = Verdict::Unknown;
    for &(k, v) in ours {
        if let Ok(i) = stored.binary_search_by_key(&k, |&(sk, _)| sk) {
            if stored[i].1 != v {
                return Verdict::Conflict;
            }
            verdict = Verdict::Match;
        }
    }
    verdict
}

/// A random non-zero 64-bit value, new at every call.
fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish().max(1)
}
