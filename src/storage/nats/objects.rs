//! The bytes of whole objects, downloaded once and kept, within a budget.
//!
//! A JetStream object store has no ranged reads: an object arrives whole,
//! in chunks. The replica layer asks for ranges (a large file's header, its
//! page index, then single pages), so each object is fetched once and every
//! range is cut from the kept bytes. Concurrent asks for the same object
//! share one download. Least recently used objects are dropped past the
//! budget, but the newest one is always kept, so reading a file larger than
//! the budget still costs one download, not one per page.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::storage::FileId;
use crate::storage::error::StorageError;

type Cell = Arc<OnceCell<Arc<Vec<u8>>>>;

struct Slot {
    id: FileId,
    cell: Cell,
    /// Bytes accounted for this slot (0 until its download finished).
    size: usize,
}

pub struct Objects {
    budget: usize,
    /// Least recently used first.
    slots: Mutex<Vec<Slot>>,
}

impl Objects {
    pub fn new(budget: usize) -> Objects {
        Objects {
            budget,
            slots: Mutex::new(Vec::new()),
        }
    }

    /// The bytes of `id`, downloaded by `fetch` unless kept or on the way.
    pub async fn get<F, Fut>(&self, id: FileId, fetch: F) -> Result<Arc<Vec<u8>>, StorageError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, StorageError>>,
    {
        let cell = self.cell(id);
        let got = cell
            .get_or_try_init(|| async { fetch().await.map(Arc::new) })
            .await
            .cloned();
        let mut slots = self.lock();
        match &got {
            Ok(bytes) => {
                if let Some(s) = slots
                    .iter_mut()
                    .find(|s| Arc::ptr_eq(&s.cell, &cell) && s.size == 0)
                {
                    s.size = bytes.len().max(1);
                }
                evict(&mut slots, self.budget);
            }
            // A failed download leaves nothing behind: the next ask retries.
            Err(_) => slots.retain(|s| !Arc::ptr_eq(&s.cell, &cell)),
        }
        got
    }

    /// Stops keeping `id` (its download, if finished).
    pub fn forget(&self, id: FileId) {
        self.lock().retain(|s| s.id != id || s.size == 0);
    }

    /// Stops keeping anything: after a replica reset the same names stand
    /// for other files.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The objects kept, least recently used first.
    #[cfg(test)]
    pub fn kept(&self) -> Vec<FileId> {
        self.lock().iter().map(|s| s.id).collect()
    }

    fn cell(&self, id: FileId) -> Cell {
        let mut slots = self.lock();
        let slot = match slots.iter().position(|s| s.id == id) {
            Some(i) => slots.remove(i),
            None => Slot {
                id,
                cell: Arc::new(OnceCell::new()),
                size: 0,
            },
        };
        let cell = Arc::clone(&slot.cell);
        slots.push(slot); // most recently used
        cell
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drops the least recently used finished objects until the kept bytes fit
/// the budget, always keeping the most recent one.
fn evict(slots: &mut Vec<Slot>, budget: usize) {
    let mut total: usize = slots.iter().map(|s| s.size).sum();
    let mut i = 0;
    while total > budget && i + 1 < slots.len() {
        if slots[i].size > 0 {
            total -= slots[i].size;
            slots.remove(i);
        } else {
            i += 1; // still downloading: someone waits on it
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{FileName, Txid};
    use crate::storage::{Level, StorageErrorKind};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn id(n: u64) -> FileId {
        FileId {
            level: Level::L0,
            name: FileName {
                min: Txid(n),
                max: Txid(n),
            },
        }
    }

    #[tokio::test]
    async fn one_download_per_object_even_when_asked_together() {
        let objects = Objects::new(1000);
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(vec![7u8; 10])
        };
        let (a, b) = tokio::join!(objects.get(id(1), fetch), objects.get(id(1), fetch));
        assert_eq!(a.unwrap().len(), 10);
        assert_eq!(b.unwrap().len(), 10);
        objects.get(id(1), fetch).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn budget_drops_the_oldest_but_keeps_the_newest() {
        let objects = Objects::new(25);
        for n in 1..=3 {
            objects
                .get(id(n), || async { Ok(vec![0u8; 10]) })
                .await
                .unwrap();
        }
        assert_eq!(objects.kept(), vec![id(2), id(3)]);
        objects
            .get(id(9), || async { Ok(vec![0u8; 100]) })
            .await
            .unwrap();
        assert_eq!(objects.kept(), vec![id(9)]);
    }

    #[tokio::test]
    async fn forgotten_objects_are_fetched_again() {
        let objects = Objects::new(100);
        objects.get(id(1), || async { Ok(vec![1]) }).await.unwrap();
        objects.forget(id(1));
        assert!(objects.kept().is_empty());
        let again = objects.get(id(1), || async { Ok(vec![2]) }).await.unwrap();
        assert_eq!(*again, vec![2]);
        objects.clear();
        let third = objects.get(id(1), || async { Ok(vec![3]) }).await.unwrap();
        assert_eq!(*third, vec![3]);
    }

    #[tokio::test]
    async fn failures_are_not_kept() {
        let objects = Objects::new(100);
        let err = objects
            .get(id(1), || async {
                Err(StorageError::new("t", StorageErrorKind::Transient, "x"))
            })
            .await;
        assert!(err.is_err());
        assert!(objects.kept().is_empty());
        let ok = objects.get(id(1), || async { Ok(vec![1]) }).await.unwrap();
        assert_eq!(*ok, vec![1]);
    }
}
