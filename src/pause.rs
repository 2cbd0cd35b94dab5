//! Named pause points, for tests that force an interleaving.
//!
//! Code where two threads or tasks race marks the moment between its steps
//! with `pause::point("replan.after_build", scope)` (or `point_async` in
//! async code; the scope names the replica, so that a test arming a point
//! with [`arm_in`] parks only its own). A test arms the point, starts the thread that will reach it,
//! waits until it is parked there, runs the other side of the race, and
//! then releases it:
//!
//! ```ignore
//! let gate = pause::arm("replan.after_build");
//! let h = std::thread::spawn(move || replica.replan(..));
//! gate.wait_reached(Duration::from_secs(10)).expect("replan reached its point");
//! /* publish TXID N+1 here */
//! gate.release();
//! ```
//!
//! Only unit tests and builds with the `test-hooks` feature have them; in
//! every other build `point` and `point_async` compile to nothing, so a
//! release pays nothing and cannot be parked by anyone.
//!
//! An armed point parks every thread that reaches it until released; a
//! point nobody armed is passed straight through. Arming a point takes it
//! for the caller alone (a second `arm` of the same name waits until the
//! first gate is dropped), so tests that share a point run one at a time.
//! Dropping a gate releases whatever is parked, so a failing test never
//! leaves a thread parked.

#[cfg(any(test, feature = "test-hooks"))]
mod imp {
    use std::collections::HashMap;
    use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
    use std::time::{Duration, Instant};

    #[derive(Default)]
    struct State {
        /// A gate holds the point (one test at a time).
        owned: bool,
        armed: bool,
        /// Only threads passing this scope park (any scope when `None`).
        scope: Option<String>,
        released: bool,
        /// Threads that reached the point while it was armed.
        reached: u32,
    }

    #[derive(Default)]
    struct Point {
        state: Mutex<State>,
        changed: Condvar,
    }

    /// Points are created once per name and live for the whole process.
    fn registry() -> &'static Mutex<HashMap<&'static str, &'static Point>> {
        static POINTS: OnceLock<Mutex<HashMap<&'static str, &'static Point>>> = OnceLock::new();
        POINTS.get_or_init(Default::default)
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(name: &'static str) -> &'static Point {
        lock(registry())
            .entry(name)
            .or_insert_with(|| Box::leak(Box::default()))
    }

    fn find(name: &str) -> Option<&'static Point> {
        lock(registry()).get(name).copied()
    }

    /// Parks the calling thread while `name` is armed for `scope` (the
    /// replica's description, say) and not released.
    pub fn point(name: &'static str, scope: &str) {
        let Some(p) = find(name) else { return };
        let mut s = lock(&p.state);
        if !s.armed || s.scope.as_deref().is_some_and(|want| want != scope) {
            return;
        }
        s.reached += 1;
        p.changed.notify_all();
        while s.armed && !s.released {
            s = p.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// As [`point`], for async code: parks the task, not the worker thread.
    pub async fn point_async(name: &'static str, scope: &str) {
        if find(name).is_none_or(|p| !lock(&p.state).armed) {
            return;
        }
        // The wait itself blocks; run it where blocking is allowed.
        let scope = scope.to_owned();
        let _ = tokio::task::spawn_blocking(move || point(name, &scope)).await;
    }

    /// A point armed by a test; see the module docs.
    pub struct Gate {
        point: &'static Point,
        name: &'static str,
    }

    /// Arms `name`: from now on, every thread reaching it parks, whatever
    /// its scope. Tests that share a binary with others reaching the same
    /// point use [`arm_in`].
    pub fn arm(name: &'static str) -> Gate {
        arm_scoped(name, None)
    }

    /// Arms `name` for the threads that pass `scope` only.
    pub fn arm_in(name: &'static str, scope: &str) -> Gate {
        arm_scoped(name, Some(scope.to_owned()))
    }

    fn arm_scoped(name: &'static str, scope: Option<String>) -> Gate {
        let point = get(name);
        let mut s = lock(&point.state);
        while s.owned {
            s = point.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        *s = State {
            owned: true,
            armed: true,
            scope,
            ..State::default()
        };
        Gate { point, name }
    }

    impl Gate {
        /// Waits until at least `n` threads have reached the point.
        pub fn wait_reached_n(&self, n: u32, timeout: Duration) -> Result<(), String> {
            let deadline = Instant::now() + timeout;
            let mut s = lock(&self.point.state);
            while s.reached < n {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(format!(
                        "pause point {:?}: {} of {n} threads arrived within {timeout:?}",
                        self.name, s.reached
                    ));
                }
                s = self
                    .point
                    .changed
                    .wait_timeout(s, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            Ok(())
        }

        /// Waits until a thread has reached the point.
        pub fn wait_reached(&self, timeout: Duration) -> Result<(), String> {
            self.wait_reached_n(1, timeout)
        }

        /// How many threads have reached the point so far.
        pub fn reached(&self) -> u32 {
            lock(&self.point.state).reached
        }

        /// Lets every parked thread (and every later one) go on.
        pub fn release(&self) {
            lock(&self.point.state).released = true;
            self.point.changed.notify_all();
        }
    }

    impl Drop for Gate {
        fn drop(&mut self) {
            let mut s = lock(&self.point.state);
            s.owned = false;
            s.armed = false;
            s.released = true;
            self.point.changed.notify_all();
        }
    }
}

#[cfg(any(test, feature = "test-hooks"))]
pub use imp::{Gate, arm, arm_in, point, point_async};

/// Does nothing: this build has no pause points.
#[cfg(not(any(test, feature = "test-hooks")))]
#[inline(always)]
pub fn point(_name: &'static str, _scope: &str) {}

/// Does nothing: this build has no pause points.
#[cfg(not(any(test, feature = "test-hooks")))]
#[inline(always)]
pub async fn point_async(_name: &'static str, _scope: &str) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn an_unarmed_point_does_not_park() {
        point("pause.test.unarmed", "");
    }

    #[test]
    fn an_armed_point_parks_until_released() {
        let gate = arm("pause.test.parks");
        let passed = Arc::new(AtomicBool::new(false));
        let p = Arc::clone(&passed);
        let h = std::thread::spawn(move || {
            point("pause.test.parks", "");
            p.store(true, Ordering::SeqCst);
        });
        gate.wait_reached(Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !passed.load(Ordering::SeqCst),
            "the thread went past an armed point"
        );
        gate.release();
        h.join().unwrap();
        assert!(passed.load(Ordering::SeqCst));
    }

    #[test]
    fn dropping_the_gate_releases_parked_threads() {
        let gate = arm("pause.test.drop");
        let h = std::thread::spawn(|| point("pause.test.drop", ""));
        gate.wait_reached(Duration::from_secs(10)).unwrap();
        drop(gate);
        h.join().unwrap();
    }

    #[test]
    fn a_scoped_gate_parks_only_its_scope() {
        let gate = arm_in("pause.test.scoped", "mine");
        point("pause.test.scoped", "another test's");
        assert_eq!(gate.reached(), 0);
        let h = std::thread::spawn(|| point("pause.test.scoped", "mine"));
        gate.wait_reached(Duration::from_secs(10)).unwrap();
        gate.release();
        h.join().unwrap();
    }

    #[test]
    fn waiting_for_a_point_nobody_reaches_times_out() {
        let gate = arm("pause.test.timeout");
        assert!(gate.wait_reached(Duration::from_millis(20)).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_async_point_parks_the_task() {
        let gate = arm("pause.test.async");
        let h = tokio::spawn(async { point_async("pause.test.async", "").await });
        tokio::task::spawn_blocking(move || {
            gate.wait_reached(Duration::from_secs(10)).unwrap();
            gate.release();
        })
        .await
        .unwrap();
        h.await.unwrap();
    }
}
