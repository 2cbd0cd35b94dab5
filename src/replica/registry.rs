//! The process-wide registry: one [`Replica`] per URL and options, shared by
//! every connection, kept for a grace period after the last one closes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::runtime;

use super::{Replica, now_ms, poller};

/// One registry entry. `users` counts open connections; it lives here, not
/// in the replica, so that an open and the reaper agree under one lock.
struct Slot {
    users: AtomicUsize,
    idle_since_ms: AtomicI64,
    replica: tokio::sync::OnceCell<Arc<Replica>>,
}

/// The registry of this process (of this fork epoch: a child after `fork()`
/// starts with an empty one, its parent's replicas have no threads there).
pub fn registry() -> Arc<runtime::Epoch<Registry>> {
    runtime::per_epoch(&REGISTRY)
}

static REGISTRY: runtime::Epochal<Registry> = runtime::Epochal::new();

#[derive(Default)]
pub struct Registry {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

/// A connection's hold on a replica. Dropping it releases the hold.
pub struct ReplicaHandle {
    slot: Arc<Slot>,
    replica: Arc<Replica>,
    epoch: u64,
}

impl ReplicaHandle {
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    /// The fork epoch the replica belongs to; a child must reopen.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Drop for ReplicaHandle {
    fn drop(&mut self) {
        release(&self.slot);
    }
}

fn release(slot: &Slot) {
    // Only atomics here: this also runs in a forked child, where a lock held
    // by a parent thread would never be released.
    slot.idle_since_ms.store(now_ms(), Ordering::Release);
    slot.users.fetch_sub(1, Ordering::AcqRel);
}

/// What identifies a shared replica: the full URL and the options that
/// change how it is read.
fn key(config: &Config) -> String {
    format!(
        "{}\u{0}{:?}\u{0}{}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{}\u{0}{:?}",
        config.replica_url.url().as_str(),
        config.poll_interval,
        config.cache_size,
        config.verify,
        config.storage_timeout,
        config.disk_cache,
        config.disk_cache_size,
        config.hydration
    )
}

impl Registry {
    /// The shared replica for `config`, opened on first use.
    pub fn open(&self, config: &Config) -> Result<ReplicaHandle> {
        let key = key(config);
        let slot = {
            let mut slots = self.slots.lock().map_err(|_| poisoned())?;
            let slot = slots.entry(key.clone()).or_insert_with(|| {
                Arc::new(Slot {
                    users: AtomicUsize::new(0),
                    idle_since_ms: AtomicI64::new(now_ms()),
                    replica: tokio::sync::OnceCell::new(),
                })
            });
            slot.users.fetch_add(1, Ordering::AcqRel);
            Arc::clone(slot)
        };
        let idle = config.idle_timeout;
        let init = slot.replica.get_or_try_init(|| async {
            let replica = Replica::open(config.clone()).await?;
            let (r, k, s) = (Arc::clone(&replica), key.clone(), Arc::downgrade(&slot));
            poller::spawn(r, move || {
                s.upgrade().is_none_or(|s| registry().reap(&k, &s, idle))
            });

            Ok::<_, Error>(replica)
        });
        match runtime::block_on(init).and_then(|r| r) {
            Ok(replica) => Ok(ReplicaHandle {
                replica: Arc::clone(replica),
                slot,
                epoch: runtime::fork_epoch(),
            }),
            Err(e) => {
                release(&slot);
                self.forget_unopened(&key, &slot);
                Err(e)
            }
        }
    }

    /// Removes the slot of a replica whose poller asks, if no connection
    /// used it for `idle`. Returns whether the poller should stop.
    fn reap(&self, key: &str, slot: &Arc<Slot>, idle: std::time::Duration) -> bool {
        let Ok(mut slots) = self.slots.lock() else {
            return false;
        };
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        let unused = slot.users.load(Ordering::Acquire) == 0
            && now_ms() - slot.idle_since_ms.load(Ordering::Acquire) >= idle_ms;
        if unused && slots.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(key);
        }
        unused
    }

    fn forget_unopened(&self, key: &str, slot: &Arc<Slot>) {
        if let Ok(mut slots) = self.slots.lock() {
            let unused = slot.users.load(Ordering::Acquire) == 0 && slot.replica.get().is_none();
            if unused && slots.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                slots.remove(key);
            }
        }
    }

    /// How many replicas are registered (open or in their grace period).
    pub fn len(&self) -> usize {
        self.slots.lock().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn poisoned() -> Error {
    Error::Internal("replica registry lock poisoned".into())
}
