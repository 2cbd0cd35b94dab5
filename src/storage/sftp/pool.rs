//! A few open handles per file, so that concurrent reads of one file (a
//! scan's read-ahead and another connection's lookups) do not queue behind
//! one handle: an SFTP handle has one file position, so a read takes it
//! for a seek and a read.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Handles opened per file at most; a reader that finds all of them busy
/// waits for one. Four covers a scan plus a few point lookups.
pub const HANDLES_PER_FILE: usize = 4;

/// The open handles of one file.
pub struct Handles<T> {
    slots: Mutex<Vec<Arc<AsyncMutex<T>>>>,
}

impl<T> Default for Handles<T> {
    fn default() -> Self {
        Handles {
            slots: Mutex::new(Vec::new()),
        }
    }
}

impl<T> Handles<T> {
    /// A free handle, a new one (opened with `open`) if all are busy and
    /// there is room, else the first to come free.
    pub async fn acquire<E, F>(&self, open: impl FnOnce() -> F) -> Result<OwnedMutexGuard<T>, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let (busy, room) = {
            let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            for s in slots.iter() {
                if let Ok(g) = Arc::clone(s).try_lock_owned() {
                    return Ok(g);
                }
            }
            (slots.first().cloned(), slots.len() < HANDLES_PER_FILE)
        };
        match busy {
            Some(first) if !room => Ok(first.lock_owned().await),
            _ => {
                let handle = Arc::new(AsyncMutex::new(open().await?));
                let guard = Arc::clone(&handle)
                    .try_lock_owned()
                    .unwrap_or_else(|_| unreachable_guard());
                let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
                if slots.len() < HANDLES_PER_FILE {
                    slots.push(handle);
                }
                Ok(guard)
            }
        }
    }

    /// How many handles are open.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A fresh mutex is never locked: its first `try_lock_owned` succeeds.
fn unreachable_guard<T>() -> OwnedMutexGuard<T> {
    unreachable!("a new mutex is unlocked")
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn concurrent_readers_get_their_own_handles_up_to_the_limit() {
        let h: Handles<u32> = Handles::default();
        let mut opened = 0;
        let mut open = || {
            opened += 1;
            let n = opened;
            async move { Ok::<_, ()>(n) }
        };
        let a = h.acquire(&mut open).now_or_never().unwrap().unwrap();
        // While `a` is held, a second reader does not wait: it gets another.
        let b = h
            .acquire(&mut open)
            .now_or_never()
            .expect("waited")
            .unwrap();
        assert_ne!(*a, *b);
        drop(a);
        let c = h.acquire(&mut open).now_or_never().unwrap().unwrap();
        assert_eq!(*c, 1, "a free handle is reused");
        let d = h.acquire(&mut open).now_or_never().unwrap().unwrap();
        let e = h.acquire(&mut open).now_or_never().unwrap().unwrap();
        assert_eq!(h.len(), HANDLES_PER_FILE);
        // All four busy: the fifth waits instead of opening more.
        assert!(h.acquire(&mut open).now_or_never().is_none());
        assert_eq!(opened, 4);
        drop((b, c, d, e));
    }
}
