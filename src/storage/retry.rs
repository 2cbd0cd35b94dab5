//! How hard and how long the network backends try: every tunable of retries
//! and timeouts lives here, each with the reason for its value, plus the
//! small retry loop of the backends that have none of their own (SFTP).

use std::future::Future;
use std::time::Duration;

use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use super::error::{StorageError, StorageErrorKind};

/// Establishing a TCP (and TLS) connection. Object stores answer in
/// milliseconds; a host that has not answered in 5 s is down or filtered,
/// and the retries below give it a few more chances.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One whole request, body included. The largest single read is a whole
/// LTX file of a few MiB; 30 s covers that on a slow link while still
/// turning a stalled connection into an error instead of a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Retries of one failed request (connection errors, timeouts, 5xx, 429).
/// Four retries with the backoff below span about 3 s of outage before the
/// error surfaces: long enough for a blip, short enough that SQLite gets an
/// answer while a user still waits for it.
pub const MAX_RETRIES: usize = 4;

/// No retry starts after this much time since the first attempt, whatever
/// `MAX_RETRIES` says: bounds the total time of one storage call. The
/// default of `storage_timeout`; SFTP, which has no such setting, always
/// uses it.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(20);

/// First backoff; doubles each retry (with full jitter), up to `MAX_BACKOFF`.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// The time budget of one storage call, from the `storage_timeout` setting:
/// a single request may take that long, and no retry starts after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub request: Duration,
    pub retry: Duration,
}

impl Timeouts {
    /// Budget `total` for one call: requests and the retry window both get
    /// it, connection set-up at most `CONNECT_TIMEOUT`.
    pub fn within(total: Duration) -> Timeouts {
        Timeouts {
            request: total,
            retry: total,
        }
    }

    fn connect(self) -> Duration {
        CONNECT_TIMEOUT.min(self.request)
    }
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            request: REQUEST_TIMEOUT,
            retry: RETRY_TIMEOUT,
        }
    }
}

/// Retry policy for the object_store backends (object_store jitters).
pub fn object_store_retry(t: Timeouts) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: INITIAL_BACKOFF,
            max_backoff: MAX_BACKOFF,
            base: 2.0,
        },
        max_retries: MAX_RETRIES,
        retry_timeout: t.retry,
    }
}

/// HTTP client options shared by S3, GCS and Azure. TLS certificates are
/// verified unless the user asked otherwise (`skip-verify=true`).
pub fn client_options(allow_http: bool, skip_verify: bool, t: Timeouts) -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(t.connect())
        .with_timeout(t.request)
        .with_allow_http(allow_http)
        .with_allow_invalid_certificates(skip_verify)
}

/// Runs `op` until it succeeds, fails with an error a retry cannot cure, or
/// the retry budget is spent: `MAX_RETRIES` retries, none started later
/// than `window` after the first attempt (as object_store's `retry_timeout`
/// for S3, GCS and Azure). Only `Transient` errors are retried.
pub async fn with_retries<T, F, Fut>(window: Duration, mut op: F) -> Result<T, StorageError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StorageError>>,
{
    let start = tokio::time::Instant::now();
    let mut backoff = INITIAL_BACKOFF;
    let mut retries = 0;
    loop {
        match op().await {
            Err(e)
                if e.kind == StorageErrorKind::Transient
                    && retries < MAX_RETRIES
                    && start.elapsed() < window =>
            {
                retries += 1;
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            other => return other,
        }
    }
}

/// A random duration in `[d/2, d]`: spreads out clients that failed together.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded randomly per instance: a cheap source of noise
    // that needs no extra dependency.
    let noise = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let half = d / 2;
    let extra = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(if extra == 0 { 0 } else { noise % extra })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(100));
            assert!(j >= Duration::from_millis(50) && j <= Duration::from_millis(100));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_transient_errors() {
        let calls = AtomicUsize::new(0);
        let r: Result<(), _> = with_retries(RETRY_TIMEOUT, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StorageError::new("t", StorageErrorKind::Transient, "x"))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), MAX_RETRIES + 1);

        calls.store(0, Ordering::SeqCst);
        let r: Result<(), _> = with_retries(RETRY_TIMEOUT, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StorageError::new("t", StorageErrorKind::Auth, "x"))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
