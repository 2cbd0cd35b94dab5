//! `storage_timeout` bounds the retry window of WebDAV and NATS, as it does
//! object_store's on S3, GCS and Azure. The server is a black hole on
//! loopback: it accepts connections and never answers, so every attempt
//! ends in the request timeout, and the connections it accepted count the
//! attempts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use super::retry::{MAX_RETRIES, Timeouts};
use super::{Level, ReplicaUrl, StorageErrorKind, open};

/// A listener that accepts and holds connections without a byte in reply.
/// Returns its port and the count of connections accepted.
async fn black_hole() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (port, accepted)
}

/// Lists level 0 of `url` (with `{port}` filled in) against a black hole
/// and returns the error message and the attempts made.
async fn attempts(url: &str, t: Timeouts) -> (String, usize) {
    let (port, accepted) = black_hole().await;
    let url = ReplicaUrl::parse(&url.replace("{port}", &port.to_string())).unwrap();
    let s = open(&url, t).unwrap();
    let started = std::time::Instant::now();
    let e = s.list(Level::L0, None).await.unwrap_err();
    // Generous: catches a hang, not a slow machine.
    assert!(started.elapsed() < Duration::from_secs(30), "{e}");
    assert_eq!(e.kind, StorageErrorKind::Transient, "{e}");
    assert!(!e.message.contains("s3cr3t"), "{e}");
    (e.message, accepted.load(Ordering::SeqCst))
}

/// A 100 ms `storage_timeout`: the first attempt times out after 100 ms,
/// which closes the retry window, so no retry starts. With the same
/// request timeout and the default 20 s window, every retry runs.
async fn window_bounds_retries(url: &str, timed_out: &str) {
    let short = Duration::from_millis(100);
    let (message, n) = attempts(url, Timeouts::within(short)).await;
    assert_eq!(n, 1, "{message}");
    assert!(message.contains(timed_out), "{message}");
    let wide = Timeouts {
        request: short,
        retry: Timeouts::default().retry,
    };
    let (message, n) = attempts(url, wide).await;
    assert_eq!(n, MAX_RETRIES + 1, "{message}");
}

#[tokio::test]
async fn webdav_retry_window_is_storage_timeout() {
    window_bounds_retries("webdav://u:s3cr3t@127.0.0.1:{port}/db", "timed out").await;
}

#[tokio::test]
async fn nats_retry_window_is_storage_timeout() {
    window_bounds_retries(
        "nats://u:s3cr3t@127.0.0.1:{port}/bucket",
        "did not finish the sign-in in time",
    )
    .await;
}
