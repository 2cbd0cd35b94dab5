//! Reading ahead for one connection: the pages SQLite reads go to its
//! [`Prefetcher`], and the pages it predicts go to the [`Fetcher`], which
//! hands back every page that lands so that descents can go on.

use std::sync::{Arc, Weak};

use crate::cache::Page;
use crate::ltx::PageNo;
use crate::prefetch::{Pages, Prefetcher};

use super::Snapshot;
use super::fetch::{Fetcher, Landed, MAX_WINDOW, SCAN_AHEAD_WINDOWS, ScanBuf};

/// A scan is taken as confirmed once the read-ahead window reaches this
/// many pages (a few reads in a row in page order).
const SCAN_FROM_WINDOW: u32 = 64;
/// Over storage that streams bodies, a scan is streamed from the third
/// read in a row (the window at 16 pages): a stream dropped early costs
/// only what it transferred (its lead and the socket buffers), and each
/// read of a growing window it saves is a round trip.
const STREAM_FROM_WINDOW: u32 = 16;
/// A scan that has no stream (or whose stream nears its end) tries to
/// start one at a miss, or this many pages past its last try.
const STREAM_STEP: u32 = 64;
/// While a scan goes on, the pages in flight ahead of it are topped up
/// each time it crosses a multiple of this many pages (and at each miss).
/// A top-up asks only for pages not asked for yet, so it is about one
/// request of up to `SCAN_RUN_BYTES`.
const SCAN_STEP: u32 = 1024;
/// Bytes per request of the reads ahead of a scan: the lead (4,096 pages)
/// goes out in a few parallel requests, each large enough that the
/// service's cost per request does not dominate. Measured with cold.py
/// (250,000 rows, s3s-fs, 20 ms): 1 MiB requests and top-ups every 256
/// pages scanned in 0.96-1.03 s with 45-47 requests, 4 MiB and every 1,024
/// pages in 0.63-0.66 s with 17-18, against 0.21-0.33 s for one GET.
const SCAN_RUN_BYTES: u64 = 4 * 1024 * 1024;

/// The pages of one snapshot that are in memory.
struct InMemory<'a> {
    fetcher: &'a Fetcher,
    snap: &'a Snapshot,
}

impl Pages for InMemory<'_> {
    fn cached(&self, pgno: u32) -> Option<Page> {
        self.fetcher.cached(self.snap, PageNo(pgno))
    }
}

/// SQLite is about to read `pgno` through a connection. A read on the
/// leftmost path of a table's B-tree (how a full scan starts) that would
/// miss starts the scan's stream at once, which brings the page on its way
/// (`Fetcher::stream_descent`): one request where the descent's demand read
/// and then the stream were two.
pub fn before_read(
    fetcher: &Arc<Fetcher>,
    snap: &Arc<Snapshot>,
    (pf, scan): (&Arc<Prefetcher>, &Arc<ScanBuf>),
    pgno: PageNo,
) {
    if !fetcher.prefetches() || !fetcher.streams() {
        return;
    }
    if let Some(root) = pf.leftmost_of_table(pgno.0) {
        fetcher.stream_descent(snap, pgno, PageNo(root), scan);
    }
}

/// SQLite read `page` (`missed`: from storage; `window`: the read-ahead
/// window of that read) through a connection (its predictor and its scan
/// buffer). Starts whatever prefetch that predicts.
pub fn after_read(
    fetcher: &Arc<Fetcher>,
    snap: &Arc<Snapshot>,
    (pf, scan): (&Arc<Prefetcher>, &Arc<ScanBuf>),
    pgno: PageNo,
    page: &Page,
    missed: bool,
    window: u32,
) {
    if !fetcher.prefetches() {
        return;
    }
    let mut wants = pf.on_read(pgno.0, page, missed, &InMemory { fetcher, snap });
    let from = pgno.0.saturating_add(1);
    let fetched = scan.take_fetched();
    // Over storage that streams bodies, a scan reads ahead in one long
    // request consumed as it reads (`fetch/stream.rs`), from the third
    // read in a row or the second leaf of one parent read in order.
    let streamed = fetcher.streams()
        && (window >= STREAM_FROM_WINDOW || pf.scanning())
        && (scan.streams(from, fetcher.stream_lead(snap.page_size))
            || !scan.try_stream_at(from, missed, STREAM_STEP)
            || fetcher.stream_ahead(snap, PageNo(from), scan));
    // A scan's stream brings the pages ahead of it: no requests of their
    // own for them.
    if let Some(end) = scan.stream_end(from) {
        wants.retain(|p| !(from..end).contains(p));
    }
    launch(fetcher, snap, Arc::downgrade(pf), pf.generation(), wants);
    if streamed {
        return;
    }
    // A confirmed scan keeps a few windows in flight ahead of itself, in
    // parallel requests, so that it reads near the bandwidth of one large
    // request.
    if window >= SCAN_FROM_WINDOW && (missed || pgno.0.is_multiple_of(SCAN_STEP)) {
        let window = MAX_WINDOW;
        let ahead = window
            .saturating_mul(SCAN_AHEAD_WINDOWS)
            .min(fetcher.scan_ahead_limit(snap.page_size));
        let to = from
            .saturating_add(ahead)
            .min(snap.page_count.saturating_add(1));
        // While the cache is full, the pages go to the connection's scan
        // buffer, where nothing evicts them before the scan reads them;
        // there they hold their share of the in-flight budget, of which a
        // scan leases at most half (it tops up again as it reads them).
        let keep = fetcher.scan_keeps_ahead().then_some(scan);
        if keep.is_some_and(|s| s.leased() >= fetcher.scan_lease_limit()) {
            return;
        }
        // A page the read fetched itself was a hole in what was asked for
        // (a failed read, or a page evicted before the scan reached it):
        // ask for the whole span again (only what is missing goes out).
        // Otherwise a miss is a page still on the wire (the scan caught up
        // with its read-ahead, whose pages land as they stream in): it tops
        // up like a step does, never with a request of a few pages.
        let (from, to) = pf.ahead_span(from, to, fetched, SCAN_STEP / 2);
        crate::log::debug!(
            "scan at page {} (missed {missed}): ahead {from}..{to}",
            pgno.0
        );
        let pages: Vec<PageNo> = (from..to).map(PageNo).collect();
        fetcher.prefetch_runs_of(snap, &pages, None, SCAN_RUN_BYTES, keep);
    }
}

fn launch(
    fetcher: &Arc<Fetcher>,
    snap: &Arc<Snapshot>,
    pf: Weak<Prefetcher>,
    generation: u64,
    wants: Vec<u32>,
) {
    if wants.is_empty() {
        return;
    }
    let pgnos: Vec<PageNo> = wants.into_iter().map(PageNo).collect();
    let landed = landed(Arc::clone(fetcher), Arc::clone(snap), pf, generation);
    fetcher.prefetch(snap, &pgnos, Some(landed));
}

/// What to do with a prefetched page: feed it to the connection's
/// predictor (while its transaction lasts) and fetch what that names.
fn landed(
    fetcher: Arc<Fetcher>,
    snap: Arc<Snapshot>,
    pf: Weak<Prefetcher>,
    generation: u64,
) -> Landed {
    Arc::new(move |pgno: PageNo, page: &Page| {
        let Some(strong) = pf.upgrade() else { return };
        let wants = strong.on_landed(
            generation,
            pgno.0,
            page,
            &InMemory {
                fetcher: &fetcher,
                snap: &snap,
            },
        );
        launch(&fetcher, &snap, Weak::clone(&pf), generation, wants);
    })
}
