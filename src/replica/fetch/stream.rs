//! The scan stream: a confirmed scan over storage that streams response
//! bodies reads the pages ahead of it as ONE long ranged read (up to
//! [`STREAM_MAX_BYTES`] of one file), consumed as the scan reads.
//!
//! - **One request's bandwidth.** Where 4 MiB requests each paid the
//!   service's cost per request and a round trip, the stream pays one.
//! - **Backpressure.** The stream decodes at most [`STREAM_LEAD_BYTES`] of
//!   pages ahead of the page its scan reads; past that it stops polling
//!   the body, so the rest waits in the kernel's socket buffers and the
//!   sender slows down (TCP flow control), not in our heap.
//! - **Claims only near the wire.** It claims the flights of the frames
//!   whose bytes arrived or are due next ([`CLAIM_AHEAD_BYTES`]), so a
//!   reader waits for the stream only for bytes already on their way. A
//!   read of its own connection that waits for one wakes it (the read
//!   moves the scan's position first). Paused longer than [`CLAIM_HOLD`],
//!   it lets go of the frames it has not decoded (another connection's
//!   waiters fetch them themselves), and takes them again when it resumes
//!   (a frame someone else took meanwhile is skipped).
//! - **Dropped cleanly.** It stops when the read transaction ends (the
//!   scan buffer is cleared), when the connection closes, when its scan
//!   did not move for `storage_timeout`, or when storage fails; dropping
//!   the body cancels the request, every claim not landed lands failed,
//!   and its share of the read budget goes back once its pages are read
//!   or dropped (its [`Lease`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::cache::{FrameKey, Page};
use crate::error::{Error, Result};
use crate::ltx::{self, PageNo, Txid};
use crate::storage::{StorageError, StorageErrorKind};
use crate::{log, pause, runtime};

use super::super::flight::{Claim, Claimed};
use super::super::{FileRef, Snapshot, Stats};
use super::Fetcher;
use super::decode::{Cutter, Ended, decode_page};
use super::window::{Lease, MAX_WINDOW, ScanBuf};

/// Bytes of decoded pages a stream keeps ahead of its scan at most (and
/// holds of the read budget). Small: the stream's bandwidth does not come
/// from pages held ahead but from the one request, whose unread bytes wait
/// in the socket; a scan that reads faster than the network catches up
/// with the stream whatever the lead.
pub const STREAM_LEAD_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes one stream asks for at most. A stream dropped early costs what
/// was transferred (the lead and the socket buffers), not the range; the
/// range bounds the frame list a stream keeps (16 bytes a frame). Large
/// enough that a scan of a snapshot of a few hundred megabytes is one
/// request: each new one costs a round trip (and, on some servers, a pass
/// over the whole object: s3s-fs hashes it for its ETag on every GET,
/// 0.2 s for 87 MB), which measured 64 MiB streams paid in the middle of
/// the 1,000,001-row scan.
pub const STREAM_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Frames one stream reads at most (its frame list holds 16 bytes a frame,
/// twice: a file of pages that compress to a few bytes would otherwise
/// make the list of a [`STREAM_MAX_BYTES`] range large).
const STREAM_MAX_FRAMES: usize = 65_536;
/// Bytes past those received whose frames a stream claims: a reader that
/// wants one of them waits for the stream rather than asking storage for
/// bytes that are already on their way.
const CLAIM_AHEAD_BYTES: u64 = 1024 * 1024;
/// A paused stream keeps its claims this long (a scan that reads on
/// resumes it and finds its next frames claimed), then lets go of them
/// (another connection that waits for one of them waits no longer).
const CLAIM_HOLD: Duration = Duration::from_millis(250);
/// Pages a stream writes to the local store at once.
const STORE_BATCH: usize = 256;
/// Fewer frames than this left in the file are not streamed: a demand
/// read's read-ahead brings them.
const STREAM_MIN_FRAMES: usize = 64;
/// Pages a stream may skip at its start (cached, or fetched by others)
/// looking for the first one to fetch.
const SKIP_AT_START: u32 = 2 * MAX_WINDOW;

/// What one stream reads: frames of one file, in offset order.
struct Plan {
    file: Arc<FileRef>,
    frames: Vec<(PageNo, u64)>,
    /// The range's end (the last frame's bound).
    end: u64,
    /// The first frame's claim.
    first: Claimed,
    /// The claim of a frame a reader waits for further on (a leftmost
    /// descent's page), by frame index.
    want: Option<(usize, Claimed)>,
}

/// The scan streams running on one fetcher: the warm-up waits for them
/// to end (see [`Fetcher::wait_for_streams`]).
#[derive(Debug, Default)]
pub(super) struct Streaming {
    running: AtomicUsize,
    /// Notified when a stream ends.
    ended: Notify,
}

/// One running stream: sets its flag to false and counts it out when
/// dropped (on every path).
pub(super) struct Running(Arc<AtomicBool>, Arc<Streaming>);

impl Running {
    fn new(flag: Arc<AtomicBool>, streaming: &Arc<Streaming>) -> Running {
        streaming.running.fetch_add(1, Ordering::SeqCst);
        Running(flag, Arc::clone(streaming))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
        // Counted out before the waiters are woken: a waiter registers
        // before it reads the count (`streams_ended`).
        self.1.running.fetch_sub(1, Ordering::SeqCst);
        self.1.ended.notify_waiters();
    }
}

impl Fetcher {
    /// Whether a scan streams its read-ahead (see the module doc): storage
    /// hands bodies over as they arrive.
    pub fn streams(&self) -> bool {
        !self.storage.is_local() && self.storage.streams_bodies()
    }

    /// Waits (blocking, at most `storage_timeout`) while a scan stream
    /// runs: the warm-up's requests would compete with the scan's one for
    /// the server, and the scan reads the interior pages on its way.
    /// Returns whether it waited. Call it on tokio's blocking pool.
    pub(super) fn wait_for_streams(&self) -> bool {
        if self.streams_running() == 0 {
            return false;
        }
        tokio::runtime::Handle::current().block_on(self.streams_ended());
        true
    }

    /// Waits (async, at most `storage_timeout`) until no scan stream runs.
    /// `true` when none runs at the end, `false` when the wait ran out.
    pub(super) async fn streams_ended(&self) -> bool {
        let until = tokio::time::Instant::now() + self.storage_timeout;
        loop {
            // Registered before the count is read: an end between the two
            // still wakes it.
            let ended = self.streaming.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.streams_running() == 0 {
                return true;
            }
            if tokio::time::timeout_at(until, ended).await.is_err() {
                return self.streams_running() == 0;
            }
        }
    }

    /// Counts a scan stream as running until the guard is dropped (tests
    /// of what yields to one).
    #[cfg(test)]
    pub(super) fn pretend_stream(&self) -> Running {
        Running::new(Arc::new(AtomicBool::new(true)), &self.streaming)
    }

    /// Scan streams running now.
    pub(super) fn streams_running(&self) -> usize {
        self.streaming.running.load(Ordering::SeqCst)
    }

    /// Pages a stream keeps ahead of its scan at most.
    pub fn stream_lead(&self, page_size: ltx::PageSize) -> u32 {
        u32::try_from(self.stream_lead_bytes / u64::from(page_size.get()))
            .unwrap_or(u32::MAX)
            .max(2)
    }

    /// Starts a stream of the pages of `snap` from `from` on (from the end
    /// of the connection's running stream, if that holds `from`) for the
    /// scan of `scan`. `false` when its pages are not for a stream (a
    /// corrupt file): the caller reads ahead as before.
    /// Otherwise `true`, also when none started for now (nothing worth
    /// streaming, no request or read budget left: demand reads go on).
    pub fn stream_ahead(
        self: &Arc<Self>,
        snap: &Arc<Snapshot>,
        from: PageNo,
        scan: &Arc<ScanBuf>,
    ) -> bool {
        let asked = from.0;
        // A running stream that holds `from`: the new one follows it, and
        // the two together hold the pages from where the first began.
        let running = scan.stream_span(from.0);
        let from = running.map_or(from, |(_, end)| PageNo(end));
        let asked = running.map_or(asked, |(start, _)| start.min(asked));
        self.start_stream(snap, from, asked, None, scan)
    }

    /// SQLite is about to read `want` on a leftmost descent of the table
    /// rooted at `root` (how a full scan starts): if the read would go to
    /// storage, the scan's stream starts now, from the first page after
    /// the root not in memory, and brings `want` on its way (the reader
    /// waits for its claim). One request, where the descent's demand read
    /// and then the stream started behind the first leaves were two, each
    /// a round trip. Not when `want` lies further into the stream than
    /// half its lead (the reader would wait for the pages before it), nor
    /// more than once per read transaction. Returns whether it started.
    pub fn stream_descent(
        self: &Arc<Self>,
        snap: &Arc<Snapshot>,
        want: PageNo,
        root: PageNo,
        scan: &Arc<ScanBuf>,
    ) -> bool {
        if !self.streams() || scan.stream_span(want.0).is_some() {
            return false;
        }
        let Some(loc) = snap.frame(want) else {
            return false;
        };
        if self.cache.get(&loc.key()).is_some()
            || scan.holds(&loc.key())
            || self.local.holds(snap, want, &loc)
            || !scan.try_descent()
        {
            return false;
        }
        let from = root.0.saturating_add(1);
        self.start_stream(snap, PageNo(from), from, Some(want), scan)
            && scan.stream_span(want.0).is_some()
    }

    /// Starts a stream from `from` (`asked`: where the scan asked, which
    /// it holds the pages from) that brings `want` too, if given.
    fn start_stream(
        self: &Arc<Self>,
        snap: &Arc<Snapshot>,
        from: PageNo,
        asked: u32,
        want: Option<PageNo>,
        scan: &Arc<ScanBuf>,
    ) -> bool {
        let Some(head) = snap.frame(from) else {
            return true;
        };
        if head.file.corrupt.get().is_some() {
            return false;
        }
        // A local store is filled from the stream too.
        let keep_until = self.local.keep_until(snap, &head);
        let Some(held) = self.in_flight.try_hold(self.stream_lead_bytes) else {
            return true;
        };
        let Some(mut plan) = self.plan_stream(snap, from, scan) else {
            return true;
        };
        // A descent's page that is the stream's first is claimed already.
        if let Some(want) = want.filter(|w| plan.frames.first().is_none_or(|f| f.0 != *w)) {
            let lead = self.stream_lead(snap.page_size);
            match self.claim_want(snap, &plan, want, lead) {
                Some(claim) => plan.want = Some(claim),
                // Dropped, the first claim lands failed.
                None => return true,
            }
        }
        // The descent's page by frame index: its claim's, or the first.
        let want_at = match &plan.want {
            Some((i, _)) => Some(*i),
            None => want.and(Some(0)),
        };
        // Dropped on a refusal, the first claim lands failed.
        if !super::budget::charge_stream() {
            return true;
        }
        let process = runtime::process();
        let rt = match process.runtime() {
            Ok(rt) => rt,
            Err(e) => {
                log::debug!("scan stream skipped: {e}");
                return true;
            }
        };
        let (first, last) = match (plan.frames.first(), plan.frames.last()) {
            (Some(f), Some(l)) => (f.0.0, l.0.0),
            _ => return true,
        };
        log::debug!(
            "scan stream: pages {first}..={last}, bytes {}..{} of {}{}",
            plan.frames.first().map_or(0, |f| f.1),
            plan.end,
            plan.file.id,
            want.map_or(String::new(), |w| format!(
                " (it brings page {}, which a leftmost descent reads)",
                w.0
            ))
        );
        Stats::add(&self.stats.prefetched, plan.frames.len() as u64);
        // It holds the pages from where the scan asked (those before its
        // first frame are in memory or on their way).
        let running = Running::new(
            scan.stream_started(asked.min(first), last.saturating_add(1)),
            &self.streaming,
        );
        let lease = Arc::new(scan.lease(self.stream_lead_bytes).with(held));
        let (me, weak, moved, epoch) = (
            Arc::clone(self),
            Arc::downgrade(scan),
            scan.moved(),
            scan.epoch(),
        );
        let page_size = snap.page_size;
        let owned_snap = Arc::clone(snap);
        // Should the blocking job never run (the runtime going away), it is
        // dropped with the plan: its claim lands failed, the flag drops,
        // the lease goes back.
        drop(rt.spawn_blocking(move || {
            let _running = running;
            let stream = Stream {
                fetcher: &me,
                page_size,
                lead: me.stream_lead(page_size),
                file: Arc::clone(&plan.file),
                claims: VecDeque::new(),
                claimed_to: first,
                next_claim: 1,
                received: 0,
                done: 0,
                decoded: first.saturating_sub(1),
                furthest: first.saturating_sub(1),
                range_pages: (first, last),
                kept: VecDeque::new(),
                keep: false,
                speculative: want.is_some(),
                want_page: want.map_or(0, |w| w.0),
                want: want_at,
                scan: weak,
                snap: owned_snap,
                keep_until,
                to_store: Vec::new(),
                moved,
                epoch,
                lease,
                pauses: 0,
                paused_for: Duration::ZERO,
            };
            let handle = tokio::runtime::Handle::current();
            let started = std::time::Instant::now();
            let (result, pauses, paused_for, decoded) = handle.block_on(stream.run(plan));
            let took = started.elapsed();
            match result {
                Ok(why) => log::debug!(
                    "scan stream from page {first} ended at page {decoded} after {took:?} \
                     ({pauses} pauses, {paused_for:?} paused): {why}"
                ),
                Err(e) => log::debug!(
                    "scan stream from page {first} failed at page {decoded} after {took:?}: {e}"
                ),
            }
        }));
        true
    }

    /// The frames of one file from `from` on, in offset order, up to
    /// [`STREAM_MAX_BYTES`], the first being one nobody holds or fetches
    /// (claimed). Pages in other files are left to demand reads; the stream
    /// ends where the file's frames stop running forward.
    fn plan_stream(&self, snap: &Snapshot, from: PageNo, scan: &ScanBuf) -> Option<Plan> {
        let file = Arc::clone(&snap.frame(from)?.file);
        let mut frames: Vec<(PageNo, u64)> = Vec::new();
        let mut first: Option<Claimed> = None;
        let (mut start, mut end) = (0u64, 0u64);
        for p in from.0..=snap.page_count {
            let Some(loc) = snap.frame(PageNo(p)) else {
                continue;
            };
            if !Arc::ptr_eq(&loc.file, &file) {
                continue;
            }
            if first.is_none() {
                if p.saturating_sub(from.0) > SKIP_AT_START {
                    return None;
                }
                let key = loc.key();
                if self.cache.get(&key).is_some()
                    || scan.holds(&key)
                    || self.local.holds(snap, PageNo(p), &loc)
                {
                    continue;
                }
                // Fetched already (a demand read's read-ahead): the stream
                // starts after it. A queued prefetch's frame it takes over.
                let Claim::Mine(claim) = self.flights.claim_demand(key) else {
                    continue;
                };
                first = Some(claim);
                start = loc.offset;
            } else if frames.last().is_some_and(|&(_, last)| loc.offset <= last)
                || loc.end().saturating_sub(start) > STREAM_MAX_BYTES
                || frames.len() >= STREAM_MAX_FRAMES
            {
                break;
            }
            end = loc.end();
            frames.push((PageNo(p), loc.offset));
        }
        // A few frames are a demand read's read-ahead, not a stream.
        if frames.len() < STREAM_MIN_FRAMES {
            return None;
        }
        Some(Plan {
            file,
            frames,
            end,
            first: first?,
            want: None,
        })
    }

    /// The claim of `want`'s frame in `plan`, by frame index, if the
    /// stream brings it within half a lead of its start (before it would
    /// wait for its scan) and nobody holds or fetches it.
    fn claim_want(
        &self,
        snap: &Snapshot,
        plan: &Plan,
        want: PageNo,
        lead: u32,
    ) -> Option<(usize, Claimed)> {
        let first = plan.frames.first()?.0;
        if want.0 <= first.0 || want.0 >= first.0.saturating_add(lead / 2) {
            return None;
        }
        let i = plan.frames.iter().position(|&(p, _)| p == want)?;
        let loc = snap.frame(want)?;
        match self.flights.claim_demand(loc.key()) {
            Claim::Mine(c) => Some((i, c)),
            Claim::Wait(_) => None,
        }
    }
}

/// One running stream: what it claimed, decoded and kept.
struct Stream<'a> {
    fetcher: &'a Fetcher,
    page_size: ltx::PageSize,
    /// Pages it decodes ahead of its scan at most.
    lead: u32,
    file: Arc<FileRef>,
    /// Claims of frames not decoded yet, by frame index, in order.
    claims: VecDeque<(usize, Claimed)>,
    /// The page of the last frame claimed.
    claimed_to: u32,
    /// The next frame to claim.
    next_claim: usize,
    /// The file offset up to which bytes arrived.
    received: u64,
    /// Frames the cutter handed over.
    done: usize,
    /// The page of the last frame handed over.
    decoded: u32,
    /// The furthest page of the stream's range the scan read.
    furthest: u32,
    range_pages: (u32, u32),
    /// Pages kept in the scan buffer, in order (to drop those passed).
    kept: VecDeque<(u32, FrameKey)>,
    /// Pages go to the scan buffer (the cache is full), not the cache.
    keep: bool,
    /// A descent's stream whose scan has not read past the descent's page
    /// yet: it may be a lookup of the table's smallest rows, not a scan, so
    /// what it decodes stays with the connection (its scan buffer, dropped
    /// at the end of the transaction) rather than in the shared cache.
    speculative: bool,
    /// The frame index of the descent's page (see [`Plan::want`]; 0 when
    /// it is the stream's first frame).
    want: Option<usize>,
    /// The descent's page: a scan reads on past it, a lookup does not.
    want_page: u32,
    scan: Weak<ScanBuf>,
    snap: Arc<Snapshot>,
    /// Pages fetched go to the local store too, constant up to this TXID
    /// (see `Local::keep_until`), in batches.
    keep_until: Option<Txid>,
    to_store: Vec<(PageNo, Page)>,
    moved: Arc<Notify>,
    epoch: u64,
    lease: Arc<Lease>,
    /// Times it paused, and the time it waited paused (for the log).
    pauses: u32,
    paused_for: Duration,
}

impl Stream<'_> {
    /// Reads the plan's range; returns why it stopped, with its pauses, the
    /// time it waited paused and the last page it decoded.
    async fn run(mut self, plan: Plan) -> (Result<&'static str>, u32, Duration, u32) {
        let result = self.read(plan).await;
        self.store();
        if let Some(scan) = self.scan.upgrade() {
            scan.wake_at(0);
        }
        (result, self.pauses, self.paused_for, self.decoded)
    }

    /// Reads the plan's range; returns why it stopped.
    async fn read(&mut self, plan: Plan) -> Result<&'static str> {
        let f = self.fetcher;
        let wait = f.storage_timeout;
        let file = Arc::clone(&self.file);
        let describe = move || format!("{} {}", f.storage.describe(), file.id);
        let start = plan.frames.first().map_or(plan.end, |fr| fr.1);
        let range = start..plan.end;
        self.claims.push_back((0, plan.first));
        if let Some((i, claim)) = plan.want {
            self.claims.push_back((i, claim));
        }
        // The first megabyte's frames are claimed before the request goes
        // out: the scan reads them next.
        self.received = range.start;
        self.claim_to(&plan.frames);
        Stats::add(&f.stats.reads, 1);
        let chunks = tokio::time::timeout(
            wait,
            f.storage
                .read_version_chunks(self.file.id, self.file.version, range.clone()),
        );
        let mut chunks = chunks.await.map_err(|_| timed_out(&describe(), wait))??;
        pause::point_async("fetch.stream_started", f.storage.describe()).await;
        let mut cutter = Cutter::new(range, plan.frames.clone());
        let frames = plan.frames;
        let describe = &describe;
        loop {
            if let Some(why) = self.wait_for_scan(&frames).await {
                return Ok(why);
            }
            let next = tokio::time::timeout(wait, chunks.next()).await;
            let Some(chunk) = next.map_err(|_| timed_out(&describe(), wait))? else {
                break;
            };
            let chunk = chunk?;
            self.received = self.received.saturating_add(chunk.len() as u64);
            Stats::add(&f.stats.read_bytes, chunk.len() as u64);
            self.keep = f.scan_keeps_ahead();
            self.claim_to(&frames);
            cutter.push(&chunk, describe, &mut |i, pgno, raw| {
                self.each(&frames, i, pgno, raw, describe)
            })?;
            self.drop_passed();
        }
        drop(chunks);
        // A last frame longer than its bound is left to the reader that
        // wants it (its claim lands failed).
        let ended = cutter.finish(describe, &mut |i, pgno, raw| {
            self.each(&frames, i, pgno, raw, describe)
        })?;
        Ok(if ended == Ended::Done {
            "all read"
        } else {
            "all read but a long last frame"
        })
    }

    /// Waits while the stream is a lead ahead of its scan; `Some(why)` when
    /// it must stop instead. Once paused, it goes on when the scan is half
    /// a lead behind, claiming again at once what it let go of: the scan
    /// has half a lead of pages to read before it reaches those frames.
    async fn wait_for_scan(&mut self, frames: &[(PageNo, u64)]) -> Option<&'static str> {
        let mut paused = false;
        // Whether it let go of its claims in this pause.
        let mut released = false;
        loop {
            // Created before the position is read: a move after the read
            // wakes it.
            let moved = Arc::clone(&self.moved);
            let notified = moved.notified();
            let Some(scan) = self.scan.upgrade() else {
                return Some("the connection closed");
            };
            if scan.epoch() != self.epoch {
                return Some("the read transaction ended");
            }
            self.saw(scan.at());
            let lead = if paused { self.lead / 2 } else { self.lead };
            if self.decoded < self.furthest.saturating_add(lead) {
                if paused {
                    scan.wake_at(0);
                    log::debug!(
                        "scan stream resumed at page {} (scan at {})",
                        self.decoded,
                        self.furthest
                    );
                    self.claim_to(frames);
                    pause::point_async("fetch.stream_resumed", self.fetcher.storage.describe())
                        .await;
                }
                return None;
            }
            if !paused {
                paused = true;
                self.pauses += 1;
                log::debug!(
                    "scan stream paused at page {} (scan at {})",
                    self.decoded,
                    self.furthest
                );
                self.drop_passed();
                self.store();
                pause::point_async("fetch.stream_paused", self.fetcher.storage.describe()).await;
            }
            // Woken when the scan is half a lead behind, not at each read
            // before that; the position is read again after the mark is
            // set (a read that stored it before saw the old mark, 0 or
            // lower, and woke us or is seen here). A read of this
            // connection that waits for a frame the stream claimed moved
            // the mark past it first: it wakes the stream.
            let wake = self.decoded.saturating_sub(self.lead / 2).saturating_add(1);
            scan.wake_at(wake);
            self.saw(scan.at());
            drop(scan);
            if self.decoded < self.furthest.saturating_add(self.lead / 2) {
                continue;
            }
            let wait = if released {
                self.fetcher.storage_timeout
            } else {
                CLAIM_HOLD.min(self.fetcher.storage_timeout)
            };
            let since = std::time::Instant::now();
            let woke = tokio::time::timeout(wait, notified).await;
            self.paused_for += since.elapsed();
            match woke {
                Ok(()) => {}
                Err(_) if released => return Some("its scan did not move within storage_timeout"),
                Err(_) => {
                    // The scan stalled: let go of the frames not decoded,
                    // so that another connection that wants one fetches it
                    // rather than wait for this scan.
                    released = true;
                    self.claims.clear();
                    self.next_claim = self.done;
                    self.claimed_to = self.decoded;
                    pause::point_async("fetch.stream_released", self.fetcher.storage.describe())
                        .await;
                }
            }
        }
    }

    /// The scan reads `at`: it counts if it lies in the stream's range, at
    /// a page decoded or claimed (a read that waits for the stream). An
    /// interior page of the scan's B-tree read further ahead does not move
    /// the scan: its leaves before it are still to be read.
    fn saw(&mut self, at: u32) {
        if (self.range_pages.0..=self.range_pages.1).contains(&at)
            && at <= self.decoded.max(self.claimed_to)
        {
            self.furthest = self.furthest.max(at);
            // Read on past the descent's page: a scan, not a lookup (whose
            // leaf, under the descent's page, lies before it in a table
            // written in rowid order; if not, its pages only go to the
            // cache).
            if at > self.want_page {
                self.speculative = false;
            }
        }
    }

    /// Claims the frames that start before [`CLAIM_AHEAD_BYTES`] past the
    /// bytes received and that nobody holds or fetches.
    fn claim_to(&mut self, frames: &[(PageNo, u64)]) {
        let f = self.fetcher;
        let upto = self.received.saturating_add(CLAIM_AHEAD_BYTES);
        let scan = self.scan.upgrade();
        while let Some(&(_, offset)) = frames.get(self.next_claim) {
            if offset >= upto {
                break;
            }
            let i = self.next_claim;
            self.next_claim += 1;
            let key = self.file.key(offset);
            let pgno = frames.get(i).map_or(PageNo(0), |fr| fr.0);
            let local = self.keep_until.is_some()
                && self
                    .snap
                    .frame(pgno)
                    .is_some_and(|loc| f.local.holds(&self.snap, pgno, &loc));
            if local || f.cache.get(&key).is_some() || scan.as_ref().is_some_and(|s| s.holds(&key))
            {
                continue;
            }
            // A queued prefetch's frame it takes over; a frame being
            // fetched it skips.
            if let Claim::Mine(c) = f.flights.claim_demand(key) {
                // In frame order: a descent's page, claimed at the start,
                // may lie further on.
                let at = self.claims.partition_point(|(j, _)| *j < i);
                self.claims.insert(at, (i, c));
                self.claimed_to = frames.get(i).map_or(0, |fr| fr.0.0);
            }
        }
    }

    /// A frame the cutter handed over: decoded and landed if claimed.
    fn each(
        &mut self,
        frames: &[(PageNo, u64)],
        i: usize,
        pgno: PageNo,
        raw: &[u8],
        describe: &dyn Fn() -> String,
    ) -> Result<()> {
        self.done = i.saturating_add(1);
        self.decoded = pgno.0;
        while self.claims.front().is_some_and(|(j, _)| *j < i) {
            self.claims.pop_front();
        }
        // Not claimed: someone else has it, or it is in memory.
        if self.claims.front().is_none_or(|(j, _)| *j != i) {
            return Ok(());
        }
        let Some((_, claim)) = self.claims.pop_front() else {
            return Ok(());
        };
        let page = decode_page(raw, pgno, self.page_size, describe)?;
        let key = self.file.key(frames.get(i).map_or(0, |fr| fr.1));
        // The descent's own page goes to the cache: the descent reads it
        // whether it is a scan's or a lookup's.
        let speculative = self.speculative && Some(i) != self.want;
        match self.scan.upgrade() {
            Some(scan) if self.keep || speculative => {
                // Before it lands: a reader woken by the landing finds it
                // there, and takes it out.
                pause::point("fetch.stream_keep", self.fetcher.storage.describe());
                // Not once the transaction ended: nothing would take the
                // page out, nor give its lease back, before the next end.
                if scan.keep_ahead_in(self.epoch, key, Arc::clone(&page), &self.lease) {
                    self.kept.push_back((pgno.0, key));
                }
            }
            _ => self.fetcher.cache.insert(key, Arc::clone(&page)),
        }
        if self.keep_until.is_some() {
            self.to_store.push((pgno, Arc::clone(&page)));
        }
        claim.land(Some(page));
        if self.to_store.len() >= STORE_BATCH {
            self.store();
        }
        Ok(())
    }

    /// Writes the pages fetched since the last write to the local store.
    fn store(&mut self) {
        let pages = std::mem::take(&mut self.to_store);
        if let (Some(until), false) = (self.keep_until, pages.is_empty()) {
            self.fetcher.local.keep(&self.file, until, &pages);
        }
    }

    /// Drops the pages kept for the scan that it passed by a lead without
    /// reading them (pages of another B-tree between the scan's): what the
    /// stream keeps stays within two leads.
    fn drop_passed(&mut self) {
        let Some(scan) = self.scan.upgrade() else {
            return;
        };
        while let Some(&(pgno, key)) = self.kept.front() {
            if pgno.saturating_add(self.lead) >= self.furthest {
                break;
            }
            self.kept.pop_front();
            drop(scan.take(&key));
        }
    }
}

/// A stream's wait for storage ran out.
fn timed_out(describe: &str, wait: Duration) -> Error {
    Error::Storage(StorageError::new(
        "replica",
        StorageErrorKind::Transient,
        format!("{describe}: the scan stream got no bytes within {wait:?} (storage_timeout)"),
    ))
}
