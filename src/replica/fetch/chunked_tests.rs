//! A test storage that answers as an object store does: a replica folder
//! whose bodies are handed over in chunks as they "arrive". It counts the
//! requests, the bytes they asked for and the chunks polled; a body can be
//! made to stop after its first chunk until released, or to fail after a
//! number of chunks. The scan stream's and the warm-up's tests share it.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use crate::ltx::FileName;
use crate::storage::{Chunks, FileId, FileInfo, FileStorage, Level, Storage, StorageError};

/// A folder's storage whose bodies stream in chunks of `chunk` bytes.
pub(super) struct Chunked {
    inner: FileStorage,
    describe: String,
    chunk: usize,
    /// Requests sent (whole reads and streamed ones).
    pub requests: AtomicU64,
    /// Bytes the requests asked for.
    pub asked: AtomicU64,
    /// Chunks polled out of the streamed bodies.
    pub polled: Arc<AtomicU64>,
    /// A body longer than this many bytes stops after its first chunk
    /// until released (see [`Chunked::stall`]).
    stall_over: AtomicU64,
    stalled: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    go: Arc<tokio::sync::Semaphore>,
    /// The next body fails after this many chunks.
    pub cut_after: AtomicU64,
}

impl std::fmt::Debug for Chunked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunked").finish_non_exhaustive()
    }
}

impl Chunked {
    /// The storage of the folder `inner`, named `describe`.
    pub(super) fn new(inner: FileStorage, describe: &str, chunk: usize) -> Chunked {
        Chunked {
            inner,
            describe: describe.to_string(),
            chunk,
            requests: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            polled: Arc::new(AtomicU64::new(0)),
            stall_over: AtomicU64::new(u64::MAX),
            stalled: Mutex::new(None),
            go: Arc::new(tokio::sync::Semaphore::new(0)),
            cut_after: AtomicU64::new(u64::MAX),
        }
    }

    /// Makes a body longer than `over` bytes stop after its first chunk;
    /// returns where its stop is reported, and a guard that lets it go on.
    pub(super) fn stall(&self, over: u64) -> (std::sync::mpsc::Receiver<()>, Release) {
        let (tx, rx) = std::sync::mpsc::channel();
        *self.stalled.lock().unwrap() = Some(tx);
        self.stall_over.store(over, Ordering::SeqCst);
        (rx, Release(Arc::clone(&self.go)))
    }
}

/// Lets stalled bodies go on when dropped (on every path of a test).
pub(super) struct Release(Arc<tokio::sync::Semaphore>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.add_permits(1 << 20);
    }
}

impl Storage for Chunked {
    fn describe(&self) -> &str {
        &self.describe
    }

    fn list(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> BoxFuture<'_, Result<Vec<FileInfo>, StorageError>> {
        self.inner.list(level, after)
    }

    fn read(
        &self,
        file: FileId,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StorageError>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.asked
            .fetch_add(range.end - range.start, Ordering::SeqCst);
        self.inner.read(file, range)
    }

    fn streams_bodies(&self) -> bool {
        true
    }

    fn read_version_chunks(
        &self,
        file: FileId,
        version: u64,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Chunks<'_>, StorageError>> {
        Box::pin(async move {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let len = range.end - range.start;
            self.asked.fetch_add(len, Ordering::SeqCst);
            let body = self.inner.read_version(file, version, range).await?;
            let chunks: Arc<Vec<bytes::Bytes>> = Arc::new(
                body.chunks(self.chunk)
                    .map(bytes::Bytes::copy_from_slice)
                    .collect(),
            );
            let stall = len > self.stall_over.load(Ordering::SeqCst);
            // One body is cut.
            let cut = self.cut_after.swap(u64::MAX, Ordering::SeqCst);
            let stream = futures_util::stream::unfold(0usize, move |i| {
                let chunks = Arc::clone(&chunks);
                async move {
                    if stall && i == 1 {
                        let tx = self.stalled.lock().unwrap().clone();
                        if let Some(tx) = tx {
                            let _ = tx.send(());
                        }
                        if let Ok(p) = self.go.acquire().await {
                            p.forget();
                        }
                    }
                    if i as u64 == cut {
                        let e = StorageError::new(
                            "test",
                            crate::storage::StorageErrorKind::Transient,
                            "cut",
                        );
                        return Some((Err(e), usize::MAX));
                    }
                    let chunk = chunks.get(i)?.clone();
                    self.polled.fetch_add(1, Ordering::SeqCst);
                    Some((Ok(chunk), i + 1))
                }
            });
            let chunks: Chunks<'_> = Box::pin(stream);
            Ok(chunks)
        })
    }
}
