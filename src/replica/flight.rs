//! Single-flight: one fetch per missing frame, however many connections
//! want it. A frame being fetched has a [`Flight`]; whoever else needs it
//! waits for that flight instead of asking storage again.
//!
//! A prefetch claims its frames as *queued* before it waits for a slot.
//! A demand read that finds its frame still queued takes it over and fetches
//! it at once, so a page SQLite waits for never queues behind prefetches.
//! (quick_cache's placeholder guards, a model for the rest of this, have no
//! such take-over, which is why this is a structure of its own.)
//!
//! **Every claim lands, on every path.** A claim is a [`Claimed`] guard:
//! landing it wakes the waiters; dropping it unlanded (a panic, an early
//! `?`, a prefetch task that never ran) lands it as failed, and a waiter of
//! a failed flight fetches the frame itself. **Every wait is bounded**: a
//! waiter gives up after the wait bound the replica's `storage_timeout`
//! sets (see [`Flights::new`]), with a transient storage error.
//!
//! With the `loom` feature, the locks are loom's, and `model` checks the
//! protocol under every interleaving of a few threads:
//! `cargo test --lib --release --features loom replica::flight::model`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[cfg(feature = "loom")]
use loom::sync::{Arc, Condvar, Mutex};
#[cfg(not(feature = "loom"))]
use std::sync::{Arc, Condvar, Mutex};

use crate::cache::{FrameKey, Page};

#[derive(Clone, Debug)]
enum State {
    /// Claimed by a prefetch that has not started.
    Queued,
    /// Being fetched.
    Running,
    /// Fetched (`None`: the fetch failed; the waiter fetches it itself).
    Done(Option<Page>),
}

/// One frame being fetched.
#[derive(Debug)]
pub struct Flight {
    state: Mutex<(State, Waiters)>,
    done: Condvar,
}

/// Readers blocked on a flight: the condvar is signalled only when there
/// are some (a wake-up is a system call, and most flights have no waiter).
type Waiters = u32;

/// How a wait for someone else's flight ended.
#[derive(Debug)]
pub enum Waited {
    Landed(Page),
    /// The fetch failed (or its claimant went away without landing it).
    Failed,
    /// Not landed within the wait bound.
    TimedOut,
}

impl Flight {
    fn new(state: State) -> Arc<Flight> {
        Arc::new(Flight {
            state: Mutex::new((state, 0)),
            done: Condvar::new(),
        })
    }

    /// Moves a queued flight to running; `false` when someone else runs it
    /// (a demand read took it over) or it is done.
    fn start(&self) -> bool {
        match self.state.lock() {
            Ok(mut s) if matches!(s.0, State::Queued) => {
                s.0 = State::Running;
                true
            }
            _ => false,
        }
    }

    fn is_done(&self) -> bool {
        self.state
            .lock()
            .map_or(true, |s| matches!(s.0, State::Done(_)))
    }

    /// Blocks until the flight lands, for at most `bound`.
    fn wait(&self, bound: Duration) -> Waited {
        let deadline = Instant::now().checked_add(bound);
        let Ok(mut s) = self.state.lock() else {
            return Waited::Failed;
        };
        s.1 = s.1.saturating_add(1);
        loop {
            if let State::Done(p) = &s.0 {
                let p = p.clone();
                s.1 = s.1.saturating_sub(1);
                return p.map_or(Waited::Failed, Waited::Landed);
            }
            let left = deadline.map_or(bound, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                s.1 = s.1.saturating_sub(1);
                return Waited::TimedOut;
            }
            s = match self.done.wait_timeout(s, left) {
                Ok((s, _)) => s,
                Err(_) => return Waited::Failed,
            };
        }
    }

    /// Lands the flight with `page` if `running` (this claim runs it), or
    /// fails it if it is still queued; a flight a demand read took over is
    /// left to that read.
    fn finish(&self, page: Option<Page>, running: bool) {
        let waiters = match self.state.lock() {
            Ok(mut s) => {
                match (&s.0, running) {
                    (State::Running, true) | (State::Queued, _) => {}
                    (State::Running, false) | (State::Done(_), _) => return,
                }
                s.0 = State::Done(page);
                s.1
            }
            Err(_) => 1,
        };
        if waiters > 0 {
            self.done.notify_all();
        }
    }
}

type Map = Mutex<HashMap<FrameKey, Arc<Flight>>>;

/// A claim on a frame: its holder fetches the frame and lands the flight.
/// Dropping it unlanded lands it as failed, so that no path (a panic, an
/// early return) strands the readers waiting for it.
#[derive(Debug)]
pub struct Claimed {
    flight: Arc<Flight>,
    /// The map the flight is in and its key there (`None`: unshared).
    home: Option<(FrameKey, Arc<Map>)>,
    /// This claim runs the flight (claimed running, or started from queued).
    running: AtomicBool,
    landed: AtomicBool,
}

impl Claimed {
    fn new(flight: Arc<Flight>, home: Option<(FrameKey, Arc<Map>)>, running: bool) -> Claimed {
        Claimed {
            flight,
            home,
            running: AtomicBool::new(running),
            landed: AtomicBool::new(false),
        }
    }

    /// Starts a queued claim; `false` when a demand read took the frame
    /// over (or it is done): then this claim has nothing to fetch.
    pub fn start(&self) -> bool {
        let started = self.flight.start();
        if started {
            self.running.store(true, Ordering::Release);
        }
        started
    }

    /// Lands the flight: wakes its waiters with `page` (`None`: failed)
    /// and forgets it. Only the first call counts.
    pub fn land(&self, page: Option<Page>) {
        if self.landed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.flight
            .finish(page, self.running.load(Ordering::Acquire));
        if let Some((key, map)) = &self.home
            && let Ok(mut map) = map.lock()
        {
            // A flight a demand read took over is still running: its
            // entry stays for that read's waiters.
            if map.get(key).is_some_and(|g| Arc::ptr_eq(g, &self.flight)) && self.flight.is_done() {
                map.remove(key);
            }
        }
    }

    #[cfg(test)]
    pub fn flight(&self) -> &Arc<Flight> {
        &self.flight
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        self.land(None);
    }
}

/// What a reader gets for a missing frame.
pub enum Claim {
    /// Nobody fetches it: this reader must, and land the flight.
    Mine(Claimed),
    /// Someone else fetches it: wait.
    Wait(Arc<Flight>),
}

/// The flights of one replica.
#[derive(Debug)]
pub struct Flights {
    map: Arc<Map>,
    /// How long a reader waits for someone else's flight.
    wait_bound: Duration,
}

impl Flights {
    /// Flights whose waiters give up after `wait_bound`.
    pub fn new(wait_bound: Duration) -> Flights {
        Flights {
            map: Arc::new(Mutex::new(HashMap::new())),
            wait_bound,
        }
    }

    fn claimed(&self, key: FrameKey, f: &Arc<Flight>, running: bool) -> Claimed {
        Claimed::new(Arc::clone(f), Some((key, Arc::clone(&self.map))), running)
    }

    /// Claims `key` for a demand read: a queued prefetch of it is taken
    /// over, a running one is waited for.
    pub fn claim_demand(&self, key: FrameKey) -> Claim {
        let Ok(mut map) = self.map.lock() else {
            return Claim::Mine(self.unshared());
        };
        if let Some(f) = map.get(&key) {
            if f.start() {
                return Claim::Mine(self.claimed(key, f, true));
            }
            return Claim::Wait(Arc::clone(f));
        }
        let f = Flight::new(State::Running);
        map.insert(key, Arc::clone(&f));
        Claim::Mine(self.claimed(key, &f, true))
    }

    /// Claims `key` as running when nobody has it (extra frames of a demand
    /// read's range); `None` when it is taken.
    pub fn claim_free(&self, key: FrameKey) -> Option<Claimed> {
        self.claim_new(key, State::Running)
    }

    /// Claims `key` as queued for a prefetch; `None` when it is taken.
    pub fn claim_queued(&self, key: FrameKey) -> Option<Claimed> {
        self.claim_new(key, State::Queued)
    }

    fn claim_new(&self, key: FrameKey, state: State) -> Option<Claimed> {
        let mut map = self.map.lock().ok()?;
        if map.contains_key(&key) {
            return None;
        }
        let running = matches!(state, State::Running);
        let f = Flight::new(state);
        map.insert(key, Arc::clone(&f));
        Some(self.claimed(key, &f, running))
    }

    /// A flight of this reader alone, in no map: for a frame whose shared
    /// flights failed twice, fetched outside single-flight so that the
    /// reader meets the error itself.
    pub fn unshared(&self) -> Claimed {
        Claimed::new(Flight::new(State::Running), None, true)
    }

    /// Waits for a flight someone else runs, at most the wait bound.
    pub fn wait(&self, f: &Flight) -> Waited {
        f.wait(self.wait_bound)
    }

    /// How long [`Flights::wait`] waits at most.
    pub fn wait_bound(&self) -> Duration {
        self.wait_bound
    }

    /// Fails a flight but leaves it in the map, as a failure looks to a
    /// reader that claims the frame before the fetcher forgets it.
    #[cfg(test)]
    pub fn fail_in_place(&self, f: &Flight) {
        f.finish(None, true);
    }

    /// Frames being fetched or queued now.
    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }
}

#[cfg(all(test, not(feature = "loom")))]
mod tests {
    use super::*;
    use crate::ltx::{FileName, Txid};
    use std::sync::mpsc;

    /// Long enough for any landing in these tests, short enough that a
    /// stranded waiter fails the test instead of hanging it.
    const BOUND: Duration = Duration::from_secs(10);

    pub(super) fn key(offset: u64) -> FrameKey {
        let name = FileName {
            min: Txid(1),
            max: Txid(1),
        };
        FrameKey::of(0, name, 1, 0, offset)
    }

    #[test]
    fn second_reader_waits_for_the_first() {
        let flights = Arc::new(Flights::new(BOUND));
        let Claim::Mine(f) = flights.claim_demand(key(1)) else {
            panic!("first claim is mine")
        };
        let Claim::Wait(w) = flights.claim_demand(key(1)) else {
            panic!("second claim waits")
        };
        let t = {
            let flights = Arc::clone(&flights);
            std::thread::spawn(move || flights.wait(&w))
        };
        f.land(Some(Page::from(&b"page"[..])));
        match t.join().unwrap() {
            Waited::Landed(p) => assert_eq!(&p[..], b"page"),
            other => panic!("the waiter got {other:?}"),
        }
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn demand_takes_over_a_queued_prefetch() {
        let flights = Flights::new(BOUND);
        let q = flights.claim_queued(key(2)).unwrap();
        assert!(flights.claim_queued(key(2)).is_none());
        let Claim::Mine(d) = flights.claim_demand(key(2)) else {
            panic!("a queued frame is taken over")
        };
        assert!(Arc::ptr_eq(q.flight(), d.flight()));
        assert!(!q.start(), "the prefetch finds it taken");
        // The prefetch's claim goes away: the frame stays the demand's.
        drop(q);
        assert_eq!(flights.len(), 1);
        let Claim::Wait(_) = flights.claim_demand(key(2)) else {
            panic!("the demand read still runs it")
        };
        d.land(None);
        assert_eq!(flights.len(), 0);
    }

    /// Starts a reader waiting for `key` (claimed by someone else); its
    /// outcome arrives on the channel.
    fn waiter(flights: &Arc<Flights>, key: FrameKey) -> mpsc::Receiver<Waited> {
        let Claim::Wait(w) = flights.claim_demand(key) else {
            panic!("the frame is claimed")
        };
        let (tx, rx) = mpsc::channel();
        let flights = Arc::clone(flights);
        std::thread::spawn(move || {
            let _ = tx.send(flights.wait(&w));
        });
        rx
    }

    #[test]
    fn a_claimant_that_panics_fails_its_waiters_at_once() {
        let flights = Arc::new(Flights::new(Duration::from_secs(3600)));
        let Claim::Mine(mine) = flights.claim_demand(key(3)) else {
            panic!("first claim is mine")
        };
        let rx = waiter(&flights, key(3));
        let claimant = std::thread::spawn(move || {
            let _mine = mine;
            panic!("the claimant panics between claim and land");
        });
        assert!(claimant.join().is_err());
        match rx.recv_timeout(BOUND) {
            Ok(Waited::Failed) => {}
            other => panic!("waiter still blocked after its claimant panicked: {other:?}"),
        }
        assert_eq!(flights.len(), 0, "the frame can be claimed again");
    }

    #[test]
    fn a_claimant_that_returns_early_fails_its_waiters_at_once() {
        fn fetch(
            flights: &Flights,
            k: FrameKey,
            held: mpsc::Sender<()>,
            ready: mpsc::Receiver<()>,
        ) -> Result<(), String> {
            let Claim::Mine(_mine) = flights.claim_demand(k) else {
                return Err("not mine".into());
            };
            held.send(()).map_err(|e| e.to_string())?;
            ready.recv().map_err(|e| e.to_string())?;
            // An early `?` of a failed storage call, with the claim held.
            Err("storage failed".to_string())
        }
        let flights = Arc::new(Flights::new(Duration::from_secs(3600)));
        let ((go, ready), (held, claimed)) = (mpsc::channel(), mpsc::channel());
        let f = Arc::clone(&flights);
        let claimant = std::thread::spawn(move || fetch(&f, key(4), held, ready));
        // The waiter joins once the claimant holds the frame. (It used to
        // claim in a loop until it found the frame taken: when the loop's
        // own claim was what the claimant met, the claimant gave up and
        // the loop spun for ever, 2 runs in 150.)
        claimed
            .recv_timeout(BOUND)
            .expect("the claimant never claimed the frame");
        let rx = waiter(&flights, key(4));
        go.send(()).unwrap();
        assert!(claimant.join().unwrap().is_err());
        match rx.recv_timeout(BOUND) {
            Ok(Waited::Failed) => {}
            other => panic!("waiter still blocked after its claimant returned: {other:?}"),
        }
    }

    #[test]
    fn a_queued_claim_dropped_unstarted_fails_its_waiters() {
        let flights = Arc::new(Flights::new(Duration::from_secs(3600)));
        let q = flights.claim_queued(key(5)).unwrap();
        assert!(q.start());
        let rx = waiter(&flights, key(5));
        drop(q);
        assert!(matches!(rx.recv_timeout(BOUND), Ok(Waited::Failed)));
        // Never started: dropped, it frees the frame too.
        let q = flights.claim_queued(key(6)).unwrap();
        drop(q);
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn a_wait_is_bounded() {
        let flights = Arc::new(Flights::new(Duration::from_millis(50)));
        let Claim::Mine(_stuck) = flights.claim_demand(key(7)) else {
            panic!("first claim is mine")
        };
        let rx = waiter(&flights, key(7));
        match rx.recv_timeout(BOUND) {
            Ok(Waited::TimedOut) => {}
            other => panic!("a wait for a stuck claimant did not time out: {other:?}"),
        }
    }
}

/// The single-flight protocol under every interleaving (loom).
#[cfg(all(test, feature = "loom"))]
mod model {
    use super::*;
    use crate::ltx::{FileName, Txid};
    use loom::thread;

    fn key() -> FrameKey {
        let name = FileName {
            min: Txid(1),
            max: Txid(1),
        };
        FrameKey::of(0, name, 1, 0, 0)
    }

    /// Loom ignores the bound of a timed wait: a waiter that is never woken
    /// is a deadlock it reports.
    const NEVER: Duration = Duration::from_secs(3600);

    /// What a demand reader does (as `Fetcher::read`): claim, then fetch
    /// or wait; when the flight it waited for failed, claim again, and
    /// after a second failure fetch outside single-flight. `fail`: its own
    /// fetch panics or returns early (the guard goes away unlanded).
    fn demand(flights: &Flights, fail: bool) -> Option<Page> {
        let fetch = |c: Claimed| {
            if fail {
                drop(c);
                return None;
            }
            let page = Page::from(&b"page"[..]);
            c.land(Some(page.clone()));
            Some(page)
        };
        let mut failed_once = false;
        loop {
            match flights.claim_demand(key()) {
                Claim::Mine(c) => return fetch(c),
                Claim::Wait(f) => match flights.wait(&f) {
                    Waited::Landed(p) => return Some(p),
                    Waited::TimedOut => return None,
                    Waited::Failed if !std::mem::replace(&mut failed_once, true) => {}
                    Waited::Failed => return fetch(flights.unshared()),
                },
            }
        }
    }

    #[test]
    fn every_waiter_wakes_even_when_a_claimant_fails() {
        the_other_is_never_stranded(|f| demand(f, true));
    }

    /// Under every interleaving: `first` (a reader that fails or panics)
    /// and a reader that succeeds demand one page; the second gets it and
    /// the flight is forgotten. The first fails, or got the other's page.
    fn the_other_is_never_stranded(first: fn(&Flights) -> Option<Page>) {
        loom::model(move || {
            let flights = Arc::new(Flights::new(NEVER));
            let a = {
                let f = Arc::clone(&flights);
                thread::spawn(move || first(&f))
            };
            let b = {
                let f = Arc::clone(&flights);
                thread::spawn(move || demand(&f, false))
            };
            let _ = a.join().unwrap();
            assert!(b.join().unwrap().is_some(), "the other is never stranded");
            assert_eq!(flights.len(), 0, "a landed flight is forgotten");
        });
    }

    const EXPECTED_PANIC: &str = "the claimant panics between claim and land";

    /// A demand reader whose fetch panics with the claim held: the claim is
    /// dropped while the panic unwinds (caught here, as `catch_unwind`
    /// around every FFI entry catches it in the extension).
    fn demand_that_panics(flights: &Flights) -> Option<Page> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match flights.claim_demand(key()) {
                Claim::Mine(_held) => std::panic::panic_any(EXPECTED_PANIC),
                Claim::Wait(f) => match flights.wait(&f) {
                    Waited::Landed(p) => Some(p),
                    _ => None,
                },
            }
        }))
        .unwrap_or(None)
    }

    #[test]
    fn a_claimant_that_panics_never_strands_a_waiter() {
        // The panic is expected: keep its message (only) out of the output
        // of each of loom's runs.
        let previous = std::sync::Arc::new(std::panic::take_hook());
        let others = std::sync::Arc::clone(&previous);
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&EXPECTED_PANIC) {
                others(info);
            }
        }));
        the_other_is_never_stranded(demand_that_panics);
        drop(std::panic::take_hook());
        if let Ok(hook) = std::sync::Arc::try_unwrap(previous) {
            std::panic::set_hook(hook);
        }
    }

    #[test]
    fn a_prefetch_and_a_demand_read_never_strand_a_waiter() {
        loom::model(|| {
            let flights = Arc::new(Flights::new(NEVER));
            let queued = flights.claim_queued(key()).unwrap();
            // The prefetch task: starts its claim and lands it, or finds it
            // taken over and drops it.
            let prefetch = thread::spawn(move || {
                if queued.start() {
                    queued.land(Some(Page::from(&b"page"[..])));
                }
            });
            let f = Arc::clone(&flights);
            let reader = thread::spawn(move || demand(&f, false));
            prefetch.join().unwrap();
            let got = reader.join().unwrap();
            assert!(got.is_some(), "the demand read got its page");
            assert_eq!(flights.len(), 0);
        });
    }

    #[test]
    fn a_prefetch_task_that_dies_before_starting_fails_its_waiters() {
        loom::model(|| {
            let flights = Arc::new(Flights::new(NEVER));
            let queued = flights.claim_queued(key()).unwrap();
            let prefetch = thread::spawn(move || drop(queued));
            let f = Arc::clone(&flights);
            let reader = thread::spawn(move || demand(&f, false));
            prefetch.join().unwrap();
            // Took it over, or claimed it afresh after the drop.
            assert!(reader.join().unwrap().is_some());
            assert_eq!(flights.len(), 0);
        });
    }
}
