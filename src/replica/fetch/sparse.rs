//! A sparse streamed read: ONE ranged read over frames of one file that
//! lie far apart (a warm-up wave's interior pages), over storage that hands
//! bodies over as they arrive. Each wanted frame is cut out and decoded as
//! its bytes come in; the bytes between frames are thrown away as they
//! arrive. Nothing holds the span: memory is a chunk, the start of a frame
//! and the kept pages, and the read budget holds only those.
//!
//! - **Claims near the wire.** Its frames come claimed as queued; a claim
//!   is started (a reader then waits for it) only once the bytes received
//!   are within [`CLAIM_NEAR`] of its frame. A demand read that wants a
//!   frame further on takes it over and fetches it itself, so it never
//!   waits behind the gap bytes before its frame; the span then skips it.
//! - **Bounded waits.** Every chunk comes within `storage_timeout`, or the
//!   read fails; a reader waits for a started frame at most the flights'
//!   bound.
//! - **Cut, it goes on.** The HTTP client bounds one request, body included,
//!   by `storage_timeout`: a long read over a slow link is cut, as is one
//!   whose connection resets. A read cut after it brought some frames goes
//!   on with a new request from the first frame it did not bring; one that
//!   brought none fails.
//! - **Behind a scan's stream.** When a scan starts its stream while a
//!   sparse read runs, the read steps aside between two frames (no claim
//!   of its own started and not landed, so no reader waits on it): it
//!   drops its body, gives its bytes of the read budget back, waits for
//!   the stream to end (at most `storage_timeout`), holds its bytes again
//!   and goes on with a new request from the first frame it did not
//!   bring. After a wait that ran out it reads on.
//! - **Cancelled** when `alive` says the replica went away: the body is
//!   dropped (the request cancelled). On every failure the caller lands
//!   the claims not landed as failed (the claims' guards do too).

use std::sync::Arc;

use futures_util::StreamExt;

use crate::cache::Page;
use crate::error::{Error, Result};
use crate::ltx::{self, PageNo};
use crate::storage::{StorageError, StorageErrorKind};
use crate::{log, pause};

use super::super::Stats;
use super::Fetcher;
use super::decode::{Cutter, Ended, decode_page};
use super::runs::Run;

/// Bytes ahead of those received within which a frame's claim is started:
/// a reader that wants it then waits for bytes already on their way (well
/// under a round trip's worth on any link), never for a gap.
const CLAIM_NEAR: u64 = 64 * 1024;
/// Bytes held from the read budget beyond the span's frames: the chunk
/// being cut and the start of a frame carried to the next.
const SPAN_SLACK: u64 = 256 * 1024;

/// What one sparse read brought.
#[derive(Debug, Default)]
pub(super) struct Sparse {
    /// The frames it fetched (not those a demand read took over).
    pub pages: Vec<(PageNo, Page)>,
    /// Bytes received, gaps included.
    pub bytes: u64,
    /// Requests it sent (none when a demand read took every frame over
    /// first; more than one when a body was cut and the read went on).
    pub requests: u64,
}

/// How one request of a sparse read ended without an error.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Every frame from where it started was brought (or taken over).
    Done,
    /// It stepped aside for a scan's stream between two frames.
    Aside,
}

/// Where a sparse read is, across the requests of a read that was cut.
struct At {
    /// Each frame's claim: `None` not started yet, `Some(true)` this
    /// read's, `Some(false)` a demand read took it over.
    mine: Vec<Option<bool>>,
    /// Frames the bodies brought so far (the next read starts there).
    done: std::cell::Cell<usize>,
}

impl Fetcher {
    /// Reads the frames of `run` (claimed as queued) in one ranged read
    /// from its first frame a demand read did not take over to its last,
    /// streaming; lands each claim it starts. A body cut after some frames
    /// (a client's time limit on one request, a reset connection) goes on
    /// in a new read from the first frame it did not bring. `alive` is
    /// asked between chunks. On an error the pages fetched before it are in
    /// `got` and landed; the caller fails the rest.
    pub(super) async fn read_sparse(
        &self,
        run: &Run,
        page_size: ltx::PageSize,
        alive: &(dyn Fn() -> bool + Sync),
        got: &mut Sparse,
    ) -> Result<()> {
        let kept: u64 = run
            .frames
            .iter()
            .map(|(_, loc, _)| u64::from(loc.size))
            .sum();
        let held_bytes = kept.saturating_add(SPAN_SLACK);
        let mut _held = Some(self.hold(held_bytes).await?);
        let mut at = At {
            mine: vec![None; run.frames.len()],
            done: std::cell::Cell::new(0),
        };
        let mut may_step_aside = true;
        loop {
            let from = at.done.get();
            match self
                .read_sparse_from(run, page_size, alive, may_step_aside, &mut at, got)
                .await
            {
                Ok(Step::Done) => return Ok(()),
                Ok(Step::Aside) => {
                    log::debug!(
                        "warm-up read of {} stepped aside for a scan stream after {} of {} frames",
                        run.file.id,
                        at.done.get(),
                        run.frames.len()
                    );
                    // Nothing of it is in flight while it waits: its bytes
                    // go back to the budget (no hold-and-wait; a demand
                    // read of the scan may need them), and are held again
                    // before the next request.
                    _held = None;
                    pause::point_async("fetch.sparse_aside", self.storage.describe()).await;
                    // A wait that ran out: the stream is long; read on.
                    may_step_aside = self.streams_ended().await;
                    _held = Some(self.hold(held_bytes).await?);
                }
                Err(Error::Storage(e))
                    if e.kind == StorageErrorKind::Transient
                        && at.done.get() > from
                        && at.done.get() < run.frames.len()
                        && alive() =>
                {
                    log::debug!(
                        "warm-up read of {} cut after {} of {} frames, going on: {e}",
                        run.file.id,
                        at.done.get(),
                        run.frames.len()
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One ranged read of the frames of `run` from `at.done` on; `at.done`
    /// moves past each frame the body brings. With `may_step_aside`, it
    /// ends early ([`Step::Aside`]) when a scan stream runs and every frame
    /// it started has landed.
    async fn read_sparse_from(
        &self,
        run: &Run,
        page_size: ltx::PageSize,
        alive: &(dyn Fn() -> bool + Sync),
        may_step_aside: bool,
        at: &mut At,
        got: &mut Sparse,
    ) -> Result<Step> {
        let (mine, done) = (&mut at.mine, &at.done);
        let from = done.get();
        // The first frame still queued is claimed as the request goes out;
        // those before it a demand read took over.
        let start = |i: usize, mine: &mut [Option<bool>]| -> bool {
            match mine.get(i).copied().flatten() {
                Some(m) => m,
                None => {
                    let m = run.frames.get(i).is_some_and(|(_, _, c)| c.start());
                    if let Some(slot) = mine.get_mut(i) {
                        *slot = Some(m);
                    }
                    m
                }
            }
        };
        let Some(first) = (from..run.frames.len()).find(|&i| start(i, mine)) else {
            return Ok(Step::Done);
        };
        let frames = run.frames.get(first..).unwrap_or_default();
        let (Some(head), Some(tail)) = (frames.first(), frames.last()) else {
            return Ok(Step::Done);
        };
        let range = head.1.offset..tail.1.end();
        let describe = || format!("{} {}", self.storage.describe(), run.file.id);
        let wait = self.storage_timeout;
        Stats::add(&self.stats.reads, 1);
        got.requests += 1;
        let chunks = self
            .storage
            .read_version_chunks(run.file.id, run.file.version, range.clone());
        let mut chunks = tokio::time::timeout(wait, chunks)
            .await
            .map_err(|_| timed_out(&describe(), wait))??;
        pause::point_async("fetch.fetched", self.storage.describe()).await;
        let mut next = first + 1;
        let mut received = range.start;
        let mut cutter = Cutter::new(
            range,
            frames.iter().map(|(p, loc, _)| (*p, loc.offset)).collect(),
        );
        let mut each = |i: usize, pgno: PageNo, raw: &[u8], mine: &[Option<bool>]| -> Result<()> {
            let at = first + i;
            done.set(at + 1);
            let (Some((_, loc, claim)), Some(Some(true))) = (run.frames.get(at), mine.get(at))
            else {
                // A demand read took it over: it is that read's.
                return Ok(());
            };
            let page = decode_page(raw, pgno, page_size, &describe)?;
            self.cache.insert(loc.key(), Arc::clone(&page));
            claim.land(Some(Arc::clone(&page)));
            got.pages.push((pgno, page));
            Ok(())
        };
        loop {
            if !alive() {
                return Err(Error::Internal(format!(
                    "{}: the warm-up's read stopped: the replica was closed",
                    describe()
                )));
            }
            // Started only near the wire: a reader of a frame further on
            // takes it over.
            while let Some((_, loc, _)) = run.frames.get(next) {
                if loc.offset >= received.saturating_add(CLAIM_NEAR) {
                    break;
                }
                start(next, mine);
                next += 1;
            }
            // Between two frames (every one started has landed: no reader
            // waits on this read) a scan's stream takes the server.
            if may_step_aside
                && next == done.get()
                && done.get() < run.frames.len()
                && self.streams_running() > 0
            {
                return Ok(Step::Aside);
            }
            let chunk = tokio::time::timeout(wait, chunks.next())
                .await
                .map_err(|_| timed_out(&describe(), wait))?;
            let Some(chunk) = chunk else { break };
            let chunk = chunk?;
            received = received.saturating_add(chunk.len() as u64);
            got.bytes = got.bytes.saturating_add(chunk.len() as u64);
            Stats::add(&self.stats.read_bytes, chunk.len() as u64);
            // Every frame that starts in this chunk is started before it
            // is cut.
            while let Some((_, loc, _)) = run.frames.get(next) {
                if loc.offset >= received {
                    break;
                }
                start(next, mine);
                next += 1;
            }
            cutter.push(&chunk, &describe, &mut |i, p, raw| each(i, p, raw, mine))?;
        }
        drop(chunks);
        // The last frame, when longer than its bound: read it exactly.
        while let Ended::Exact(offset, len) =
            cutter.finish(&describe, &mut |i, p, raw| each(i, p, raw, mine))?
        {
            let raw = self.read_exact(run, offset, len).await?;
            cutter.exact(&raw, &mut |i, p, raw| each(i, p, raw, mine))?;
        }
        Ok(Step::Done)
    }
}

/// A sparse read's wait for storage ran out.
fn timed_out(describe: &str, wait: std::time::Duration) -> Error {
    Error::Storage(StorageError::new(
        "replica",
        StorageErrorKind::Transient,
        format!("{describe}: the warm-up's read got no bytes within {wait:?} (storage_timeout)"),
    ))
}
