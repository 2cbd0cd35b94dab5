//! The background verification task of a replica: which large files were
//! checked, which are being checked, and which were found corrupt (the
//! streaming check itself is in `verify.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::cache::{FrameKey, PageCache};
use crate::config::Verify;
use crate::error::Error;
use crate::log;
use crate::storage::Storage;

use super::load::Loaded;
use super::{Stats, verify};

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
    ) -> Verifier {
        Verifier {
            storage,
            cache,
            stats,
            mode,
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
        let cache = Arc::clone(&self.cache);
        tokio::spawn(async move {
            let verdict = match verify::verify(storage, cache, Arc::clone(&file), index).await {
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
