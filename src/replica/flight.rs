//! Single-flight: one fetch per missing frame, however many connections
//! want it. A frame being fetched has a [`Flight`]; whoever else needs it
//! waits for that flight instead of asking storage again.
//!
//! A prefetch claims its frames as *queued* before it waits for a slot.
//! A demand read that finds its frame still queued takes it over and fetches
//! it at once, so a page SQLite waits for never queues behind prefetches.

use std::collections::HashMap;
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

impl Flight {
    fn new(state: State) -> Arc<Flight> {
        Arc::new(Flight {
            state: Mutex::new((state, 0)),
            done: Condvar::new(),
        })
    }

    /// Moves a queued flight to running; `false` when someone else runs it
    /// (a demand read took it over) or it is done.
    pub fn start(&self) -> bool {
        match self.state.lock() {
            Ok(mut s) if matches!(s.0, State::Queued) => {
                s.0 = State::Running;
                true
            }
            _ => false,
        }
    }

    /// Blocks until the flight lands. `None` when it failed.
    fn wait(&self) -> Option<Page> {
        let Ok(mut s) = self.state.lock() else {
            return None;
        };
        s.1 = s.1.saturating_add(1);
        loop {
            if let State::Done(p) = &s.0 {
                let p = p.clone();
                s.1 = s.1.saturating_sub(1);
                return p;
            }
            s = match self.done.wait(s) {
                Ok(s) => s,
                Err(_) => return None,
            };
        }
    }

    fn finish(&self, page: Option<Page>) {
        let waiters = match self.state.lock() {
            Ok(mut s) => {
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

/// What a reader gets for a missing frame.
pub enum Claim {
    /// Nobody fetches it: this reader must, and land the flight.
    Mine(Arc<Flight>),
    /// Someone else fetches it: wait.
    Wait(Arc<Flight>),
}

/// The flights of one replica.
#[derive(Debug, Default)]
pub struct Flights {
    map: Mutex<HashMap<FrameKey, Arc<Flight>>>,
}

impl Flights {
    /// Claims `key` for a demand read: a queued prefetch of it is taken
    /// over, a running one is waited for.
    pub fn claim_demand(&self, key: FrameKey) -> Claim {
        let Ok(mut map) = self.map.lock() else {
            return Claim::Mine(Flight::new(State::Running));
        };
        if let Some(f) = map.get(&key) {
            if f.start() {
                return Claim::Mine(Arc::clone(f));
            }
            return Claim::Wait(Arc::clone(f));
        }
        let f = Flight::new(State::Running);
        map.insert(key, Arc::clone(&f));
        Claim::Mine(f)
    }

    /// Claims `key` as running when nobody has it (extra frames of a demand
    /// read's range); `None` when it is taken.
    pub fn claim_free(&self, key: FrameKey) -> Option<Arc<Flight>> {
        self.claim_new(key, State::Running)
    }

    /// Claims `key` as queued for a prefetch; `None` when it is taken.
    pub fn claim_queued(&self, key: FrameKey) -> Option<Arc<Flight>> {
        self.claim_new(key, State::Queued)
    }

    fn claim_new(&self, key: FrameKey, state: State) -> Option<Arc<Flight>> {
        let mut map = self.map.lock().ok()?;
        if map.contains_key(&key) {
            return None;
        }
        let f = Flight::new(state);
        map.insert(key, Arc::clone(&f));
        Some(f)
    }

    /// A flight of this reader alone, in no map: for a frame whose shared
    /// flights failed twice, fetched outside single-flight so that the
    /// reader meets the error itself.
    pub fn unshared(&self) -> Arc<Flight> {
        Flight::new(State::Running)
    }

    /// Waits for a flight someone else runs.
    pub fn wait(&self, f: &Flight) -> Option<Page> {
        f.wait()
    }

    /// Lands a flight: wakes its waiters and forgets it.
    pub fn land(&self, key: FrameKey, f: &Arc<Flight>, page: Option<Page>) {
        f.finish(page);
        if let Ok(mut map) = self.map.lock() {
            if map.get(&key).is_some_and(|g| Arc::ptr_eq(g, f)) {
                map.remove(&key);
            }
        }
    }

    /// Fails a flight but leaves it in the map, as a failure looks to a
    /// reader that claims the frame before the fetcher forgets it.
    #[cfg(test)]
    pub fn fail_in_place(&self, f: &Flight) {
        f.finish(None);
    }

    /// Frames being fetched or queued now.
    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{FileName, Txid};
    use crate::storage::{FileId, Level};

    fn key(offset: u64) -> FrameKey {
        FrameKey::of(
            FileId {
                level: Level::L0,
                name: FileName {
                    min: Txid(1),
                    max: Txid(1),
                },
            },
            1,
            0,
            offset,
        )
    }

    #[test]
    fn second_reader_waits_for_the_first() {
        let flights = Arc::new(Flights::default());
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
        flights.land(key(1), &f, Some(Page::from(&b"page"[..])));
        assert_eq!(t.join().unwrap().as_deref(), Some(&b"page"[..]));
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn demand_takes_over_a_queued_prefetch() {
        let flights = Flights::default();
        let q = flights.claim_queued(key(2)).unwrap();
        assert!(flights.claim_queued(key(2)).is_none());
        let Claim::Mine(d) = flights.claim_demand(key(2)) else {
            panic!("a queued frame is taken over")
        };
        assert!(Arc::ptr_eq(&q, &d));
        assert!(!q.start(), "the prefetch finds it taken");
        flights.land(key(2), &d, None);
        assert_eq!(flights.len(), 0);
    }
}
