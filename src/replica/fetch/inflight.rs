//! The bytes in flight: every ranged read of the page reader, of hydration
//! and of verification holds its length from one budget, shared by the
//! whole process, from before its request goes out until its bytes are
//! decoded and dropped. However many scans, prefetches, hydrations and
//! verifications run at once, the response bodies and the pages decoded
//! from them that are not yet in the cache stay within [`IN_FLIGHT_BYTES`]
//! (and the pages in the cache within `cache_size`).
//!
//! A holder takes all it needs at once and waits for nothing else while it
//! holds it (no hold-and-wait), so holders never deadlock; a read larger
//! than the whole budget takes the whole budget. A wait is bounded: past
//! it the read fails as a transient storage error.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};
use crate::pause;
use crate::storage::{StorageError, StorageErrorKind};

/// Bytes of ranged reads in flight at once in the process. Large enough
/// for six 4 MiB scan requests (a 20 ms round trip hidden behind the
/// bandwidth of one connection each), small enough that `cache_size` plus
/// this plus the process itself stays within `cache_size` + 40 MB.
pub const IN_FLIGHT_BYTES: u64 = 24 * 1024 * 1024;
/// The budget is counted in units of this many bytes (semaphore permits).
const UNIT: u64 = 1024;

/// A byte budget for reads in flight.
#[derive(Debug)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    units: u32,
}

/// Bytes held from a [`InFlight`]; given back when dropped (on every path).
#[derive(Debug)]
pub struct Held {
    _permit: OwnedSemaphorePermit,
}

impl InFlight {
    /// A budget of `bytes` (at least one unit).
    pub fn new(bytes: u64) -> InFlight {
        let units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        InFlight {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// The budget every replica of this process shares.
    pub fn process() -> Arc<InFlight> {
        static PROCESS: OnceLock<Arc<InFlight>> = OnceLock::new();
        Arc::clone(PROCESS.get_or_init(|| Arc::new(InFlight::new(IN_FLIGHT_BYTES))))
    }

    /// The budget in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// Units `bytes` takes: at least one, at most the whole budget.
    fn units_of(&self, bytes: u64) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.units)
    }

    /// Holds `bytes` (capped at the whole budget) if they are free now.
    pub fn try_hold(&self, bytes: u64) -> Option<Held> {
        let units = self.units_of(bytes);
        let permit = Arc::clone(&self.permits)
            .try_acquire_many_owned(units)
            .ok()?;
        Some(Held { _permit: permit })
    }

    /// Holds `bytes` (capped at the whole budget), waiting at most `wait`
    /// for others to give them back. `scope` names the replica in the
    /// error and scopes the pause point of tests.
    pub async fn hold(&self, bytes: u64, wait: Duration, scope: &str) -> Result<Held> {
        let units = self.units_of(bytes);
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_many_owned(units) {
            return Ok(Held { _permit: permit });
        }
        pause::point_async("fetch.budget_wait", scope).await;
        let acquire = Arc::clone(&self.permits).acquire_many_owned(units);
        match tokio::time::timeout(wait, acquire).await {
            Ok(Ok(permit)) => Ok(Held { _permit: permit }),
            Ok(Err(_)) => Err(Error::Internal("the read budget was closed".into())),
            Err(_) => Err(Error::Storage(StorageError::new(
                "replica",
                StorageErrorKind::Transient,
                format!(
                    "{scope}: a read of {bytes} bytes waited {wait:?} for the {} bytes other \
                     reads held in flight to be given back; retry, or raise storage_timeout",
                    self.bytes()
                ),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_are_capped_and_given_back_on_drop() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let b = InFlight::new(10 * UNIT);
            let wait = Duration::from_secs(5);
            // Larger than the budget: takes all of it, not more.
            let all = b.hold(100 * UNIT, wait, "t").await.unwrap();
            assert_eq!(b.permits.available_permits(), 0);
            let short = b.hold(1, Duration::from_millis(1), "t").await;
            assert!(
                matches!(&short, Err(Error::Storage(e)) if e.kind == StorageErrorKind::Transient),
                "{short:?}"
            );
            drop(all);
            let a = b.hold(3 * UNIT, wait, "t").await.unwrap();
            let c = b.hold(7 * UNIT, wait, "t").await.unwrap();
            assert_eq!(b.permits.available_permits(), 0);
            drop((a, c));
            assert_eq!(b.permits.available_permits(), 10);
        });
    }
}
