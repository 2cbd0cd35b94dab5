//! The per-query request budget (`max_requests_per_query`, `PRAGMA
//! litestream_max_requests_per_query`): a connection may cap the storage
//! requests one statement causes, so that a query that would quietly pay
//! thousands of GETs fails instead.
//!
//! What counts: the ranged reads a read of the connection waits for (a
//! demand miss), and the prefetch requests its reads start (read-ahead of a
//! scan, B-tree prefetch, and the prefetches those chain to as they land).
//! Requests another connection already has in flight cost nothing; the
//! replica's own background work (polls, warm-up, hydration, verification)
//! never counts. A demand read past the budget fails; a prefetch past it is
//! not sent (only the part that fits). So a statement sends at most its
//! budget of requests (plus, rarely, the exact re-read of a frame longer
//! than its bound).
//!
//! The connection sets its budget as current on its thread for the length
//! of a read (`enter`); the fetcher charges it from there, so the rooms in
//! between need no parameter for it.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

use super::Landed;
use super::runs::Run;

/// The request budget of one connection.
#[derive(Debug, Default)]
pub struct Budget {
    /// Requests per statement; 0: no budget.
    limit: AtomicU64,
    /// Requests the current statement made.
    used: AtomicU64,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Budget>>> = const { RefCell::new(None) };
}

/// The budget current on this thread until dropped (the previous one then).
pub struct Scope(Option<Arc<Budget>>);

impl Drop for Scope {
    fn drop(&mut self) {
        let prev = self.0.take();
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = prev);
    }
}

impl Budget {
    pub fn new(limit: Option<u64>) -> Arc<Budget> {
        let b = Budget::default();
        b.set_limit(limit.unwrap_or(0));
        Arc::new(b)
    }

    /// Sets the limit (0: none) from the next statement on.
    pub fn set_limit(&self, n: u64) {
        self.limit.store(n, Ordering::Relaxed);
    }

    /// The limit, `None` without one.
    pub fn limit(&self) -> Option<u64> {
        Some(self.limit.load(Ordering::Relaxed)).filter(|n| *n > 0)
    }

    /// Requests the current statement made so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// A new statement (read transaction) starts with the whole budget.
    pub fn reset(&self) {
        self.used.store(0, Ordering::Relaxed);
    }

    /// Makes this budget current on the calling thread (when it has a
    /// limit) until the returned scope is dropped.
    pub fn enter(self: &Arc<Self>) -> Scope {
        let this = self.limit().map(|_| Arc::clone(self));
        Scope(CURRENT.try_with(|c| c.replace(this)).ok().flatten())
    }

    /// Takes up to `n` requests; returns how many were granted.
    fn take_up_to(&self, n: u64) -> u64 {
        let Some(limit) = self.limit() else {
            return n;
        };
        let mut granted = 0;
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                granted = n.min(limit.saturating_sub(used));
                Some(used.saturating_add(granted))
            });
        granted
    }

    fn exceeded(&self) -> Error {
        Error::Budget(format!(
            "litestream: query exceeded its budget of {} storage requests (max_requests_per_query / \
             PRAGMA litestream_max_requests_per_query); raise it, set it to 0 to lift it, or make the \
             query cheaper (an index, a LIMIT)",
            self.limit().unwrap_or(0)
        ))
    }
}

fn current() -> Option<Arc<Budget>> {
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// Charges one request of a demand read to the current budget; fails when
/// none is left.
pub(super) fn charge_demand() -> Result<()> {
    match current() {
        Some(b) if b.take_up_to(1) == 0 => Err(b.exceeded()),
        _ => Ok(()),
    }
}

/// Charges a scan stream's one request to the current budget; `false`
/// when none is left (the stream is not sent).
pub(super) fn charge_stream() -> bool {
    current().is_none_or(|b| b.take_up_to(1) == 1)
}

/// Charges a prefetch's runs to the current budget: the runs that fit go
/// out, the rest are dropped (their claims land failed, so a reader that
/// waits for one of them fetches it itself, and is charged then). `None`
/// when none fit. `landed` is wrapped so that prefetches chained from the
/// pages landing are charged to the same budget.
pub(super) fn charge_prefetch(
    mut runs: Vec<Run>,
    landed: Option<Landed>,
) -> Option<(Vec<Run>, Option<Landed>)> {
    let Some(b) = current() else {
        return Some((runs, landed));
    };
    let granted = usize::try_from(b.take_up_to(runs.len() as u64)).unwrap_or(usize::MAX);
    runs.truncate(granted);
    if runs.is_empty() {
        return None;
    }
    let landed = landed.map(|inner| -> Landed {
        let b = Arc::clone(&b);
        Arc::new(move |pgno, page| {
            let _scope = b.enter();
            inner(pgno, page);
        })
    });
    Some((runs, landed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_grants_up_to_its_limit_per_statement() {
        let b = Budget::new(Some(5));
        assert_eq!(b.take_up_to(3), 3);
        assert_eq!(b.take_up_to(3), 2);
        assert_eq!(b.take_up_to(1), 0);
        assert_eq!(b.used(), 5);
        b.reset();
        assert_eq!(b.take_up_to(1), 1);
        let none = Budget::new(None);
        assert_eq!(none.take_up_to(1000), 1000);
    }

    #[test]
    fn the_budget_is_current_only_inside_its_scope() {
        let b = Budget::new(Some(1));
        assert!(charge_demand().is_ok(), "no budget outside a scope");
        {
            let _s = b.enter();
            assert!(charge_demand().is_ok());
            let e = charge_demand().unwrap_err().to_string();
            assert!(e.contains("budget of 1 storage requests"), "{e}");
        }
        assert!(charge_demand().is_ok(), "the scope ended");
        b.reset();
        let unlimited = Budget::new(None);
        let _s = unlimited.enter();
        for _ in 0..10 {
            assert!(charge_demand().is_ok());
        }
    }
}
