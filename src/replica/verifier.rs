//! The background verification task of a replica: which large files were
//! checked, which are being checked, and which were found corrupt (the
//! streaming check itself is in `verify.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::cache::{FrameKey, PageCache};
use crate::config::Verify;
use crate::error::Error;
use crate::log;
use crate::storage::Storage;

use super::load::Loaded;
use super::{Snapshot, Stats, verify};

/// What the background verification of a large file found.
#[derive(Clone, Debug)]
enum Verdict {
    Pending,
    Good,
    Corrupt(String),
}

/// Verifies, once per file, the large files that were not read whole.
pub struct Verifier {
    storage: Arc<dyn Storage>,
    cache: Arc<PageCache>,
    stats: Arc<Stats>,
    /// Which files get their checksum verified.
    mode: Verify,
    /// How long a chunk waits for its bytes of the read budget.
    wait: std::time::Duration,
    /// Outcome of the background verification of large files, by the
    /// file's identity (the key of its offset 0: name, size, timestamp).
    verdicts: Arc<Mutex<HashMap<FrameKey, Verdict>>>,
}

impl Verifier {
    pub fn new(
        storage: Arc<dyn Storage>,
        cache: Arc<PageCache>,
        stats: Arc<Stats>,
        mode: Verify,
        wait: std::time::Duration,
    ) -> Verifier {
        Verifier {
            storage,
            cache,
            stats,
            mode,
            wait,
            verdicts: Default::default(),
        }
    }

    /// A file just loaded: when it was not checksum-verified on arrival and
    /// the mode asks for it, it is streamed and checked in the background
    /// (once per file); a file already found corrupt is marked so at once.
    pub fn check(&self, l: &Loaded) {
        if !l.verified && self.mode == Verify::Full {
            self.in_background(l);
        }
    }

    /// Forgets the verdicts of files `current` does not reference (but not
    /// a verification still running): a file seen again is verified again.
    /// Bounds the map by the file table instead of every file ever read.
    pub fn retain(&self, current: &Snapshot) {
        let Ok(mut verdicts) = self.verdicts.lock() else {
            return;
        };
        if verdicts.is_empty() {
            return;
        }
        let referenced: HashSet<FrameKey> = current.files().map(|f| f.key(0)).collect();
        verdicts.retain(|k, v| matches!(v, Verdict::Pending) || referenced.contains(k));
    }

    /// Verdicts held now (for tests of the bound).
    #[cfg(test)]
    pub(super) fn verdicts_len(&self) -> usize {
        self.verdicts.lock().map_or(0, |v| v.len())
    }

    fn in_background(&self, l: &Loaded) {
        let Ok(mut verdicts) = self.verdicts.lock() else {
            return;
        };
        let identity = l.file.key(0);
        match verdicts.get(&identity) {
            Some(Verdict::Corrupt(reason)) => {
                let _ = l.file.corrupt.set(reason.clone());
                return;
            }
            Some(Verdict::Good | Verdict::Pending) => return,
            None => {}
        }
        verdicts.insert(identity, Verdict::Pending);
        drop(verdicts);
        let (storage, file, index) = (
            Arc::clone(&self.storage),
            Arc::clone(&l.file),
            Arc::new(l.index.clone()),
        );
        let (stats, verdicts) = (Arc::clone(&self.stats), Arc::clone(&self.verdicts));
        let (cache, wait) = (Arc::clone(&self.cache), self.wait);
        // The check runs as a task of its own, watched by this one: a panic
        // in it is counted and logged, and its file is left unverified (the
        // next load of the file verifies it again), never silently Pending.
        let check = tokio::spawn(async move {
            #[cfg(any(test, feature = "test-hooks"))]
            super::poller::hooks::panic_if_armed_for("verification", storage.describe());
            match verify::verify(storage, cache, Arc::clone(&file), index, wait).await {
                Ok(()) => {
                    Stats::add(&stats.verified, 1);
                    log::debug!("verified {}", file.id);
                    Some(Verdict::Good)
                }
                Err(e @ (Error::Corrupt { .. } | Error::Missing(_))) => {
                    Stats::add(&stats.corrupt, 1);
                    log::error!("{e}: reads of its pages will fail");
                    let _ = file.corrupt.set(e.to_string());
                    Some(Verdict::Corrupt(e.to_string()))
                }
                Err(e) => {
                    log::info!("could not verify {}: {e}", file.id);
                    None
                }
            }
        });
        let panics = Arc::clone(&self.stats);
        tokio::spawn(async move {
            let verdict = match check.await {
                Ok(v) => v,
                Err(e) => {
                    if e.is_panic() {
                        Stats::add(&panics.task_panics, 1);
                        let why = crate::runtime::panic_message(e.into_panic().as_ref());
                        log::error!(
                            "the verification of a file panicked ({why}); it will be verified again"
                        );
                    }
                    None
                }
            };
            if let Ok(mut v) = verdicts.lock() {
                match verdict {
                    Some(verdict) => v.insert(identity, verdict),
                    None => v.remove(&identity),
                };
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{FileName, Header, LtxBuilder, PageIndex, PageSize, Txid};
    use crate::replica::FileRef;
    use crate::storage::{FileId, FileStorage, Level};

    fn file(txid: u64) -> Arc<FileRef> {
        let bytes = LtxBuilder::new(PageSize::new(4096).unwrap(), 1, txid, 1)
            .page(1, b"one")
            .build();
        let id = FileId {
            level: Level::SNAPSHOT,
            name: FileName {
                min: Txid(1),
                max: Txid(txid),
            },
        };
        Arc::new(FileRef::new(
            id,
            bytes.len() as u64,
            Header::decode(&bytes).unwrap(),
        ))
    }

    #[test]
    fn verdicts_are_pruned_to_the_files_the_current_state_references() {
        let storage = Arc::new(FileStorage::new(std::env::temp_dir()));
        let verifier = Verifier::new(
            storage,
            Arc::new(PageCache::new(1 << 20)),
            Arc::default(),
            Verify::Full,
            std::time::Duration::from_secs(10),
        );
        let current = file(5_000);
        {
            let mut v = verifier.verdicts.lock().unwrap();
            // Verdicts of many files that came and went (snapshots
            // replaced by newer ones), one still being verified, and the
            // current one.
            for t in 1..5_000 {
                v.insert(file(t).key(0), Verdict::Good);
            }
            v.insert(file(7_000).key(0), Verdict::Pending);
            v.insert(current.key(0), Verdict::Corrupt("bad".into()));
        }
        let index = PageIndex {
            entries: vec![crate::ltx::IndexEntry {
                pgno: crate::ltx::PageNo(1),
                offset: 100,
                size: 10,
            }],
        };
        let snap = Snapshot::build([(&current, &index)]).unwrap();
        verifier.retain(&snap);
        assert_eq!(
            verifier.verdicts_len(),
            2,
            "the current file's and the pending one"
        );
        let v = verifier.verdicts.lock().unwrap();
        assert!(matches!(v.get(&current.key(0)), Some(Verdict::Corrupt(_))));
    }
}
