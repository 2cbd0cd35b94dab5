//! Where replicas live. One trait, [`Storage`], that every backend
//! implements; the rest of the crate never knows which one it talks to.
//!
//! The trait is async: storage is reached from the background poller and,
//! through `runtime::block_on`, from SQLite's threads.

mod abs;
mod aws_profile;
mod error;
mod file;
mod gcs;
mod listed;
mod nats;
mod object;
mod object_error;
mod oss;
mod params;
mod retry;
mod s3;
mod s3_params;
mod secrets;
mod sftp;
mod tls;
mod url;
mod webdav;
#[cfg(test)]
mod window_tests;

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

pub use error::{StorageError, StorageErrorKind};
pub use file::FileStorage;
pub use retry::Timeouts;
pub use url::{ReplicaUrl, Scheme, redact};

use crate::ltx::FileName;

/// A boxed future, so that the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The bytes of a ranged read as they arrive, in order: the reader decodes
/// each chunk while the next one is on the wire, and never holds the whole
/// body. Ends after the last byte of the range; a body shorter or longer
/// than the range ends with an error.
pub type Chunks<'a> =
    Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, StorageError>> + Send + 'a>>;

/// A body read whole, handed over as [`Chunks`] of one chunk.
pub fn one_chunk<'a>(body: Vec<u8>) -> Chunks<'a> {
    let body = bytes::Bytes::from(body);
    Box::pin(futures_util::stream::once(async move { Ok(body) }))
}

/// A Litestream level: 0 holds one file per replicated batch, 1..=8
/// compactions of the level below, 9 full snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level(u8);

impl Level {
    pub const L0: Level = Level(0);
    pub const SNAPSHOT: Level = Level(9);

    pub fn new(level: u8) -> Option<Level> {
        (level <= 9).then_some(Level(level))
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// Every level, from the snapshot level down to 0.
    pub fn all_descending() -> impl Iterator<Item = Level> {
        (0..=9u8).rev().map(Level)
    }
}

/// One LTX file of a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId {
    pub level: Level,
    pub name: FileName,
}

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "level {} file {}", self.level.get(), self.name)
    }
}

/// A listed file: its size in bytes and the version the listing names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub id: FileId,
    pub size: u64,
    /// A hash of what the service says identifies this object's bytes (its
    /// ETag or generation, else its modification time): a file written
    /// again under the same name lists another version. 0 when the backend
    /// tells none.
    pub version: u64,
}

/// The version of a listed object, from what its listing tells.
pub fn version_of(tag: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(tag).max(1)
}

/// Read access to one replica.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The replica's URL with any credentials removed, for messages.
    fn describe(&self) -> &str;

    /// The LTX files of `level` whose names sort after `after` (all when
    /// `None`), sorted by name. Backends filter and sort themselves: listing
    /// APIs differ in both.
    fn list(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> BoxFuture<'_, Result<Vec<FileInfo>, StorageError>>;

    /// Every LTX file of every level. The default lists the ten level
    /// folders concurrently; a backend that can list the whole replica in
    /// one request does so (one round trip and one connection at open).
    fn list_all(&self) -> BoxFuture<'_, Result<Vec<FileInfo>, StorageError>> {
        Box::pin(async move {
            let lists = Level::all_descending().map(|l| self.list(l, None));
            let levels = futures_util::future::try_join_all(lists).await?;
            Ok(levels.into_iter().flatten().collect())
        })
    }

    /// Opens a connection ahead of need, where connections exist: called
    /// while the first listing is in flight, so that the reads that follow
    /// it in parallel find a second connection ready instead of paying a
    /// handshake on the critical path. Failures are ignored.
    fn prewarm(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Closes any file handles kept open between reads. Called when the
    /// replica was reset: the same names now belong to other files, and a
    /// kept handle would still read the old one.
    fn forget_open_files(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Whether reads are local (no network round trip): the page reader
    /// then skips prefetch, which only hides latency and would cost CPU and
    /// cache room here.
    fn is_local(&self) -> bool {
        false
    }

    /// Whether [`Storage::read_version_chunks`] hands a body over as it
    /// arrives (a listed version given), not as one whole chunk: a long
    /// read can then be one request without holding its bytes at once.
    fn streams_bodies(&self) -> bool {
        false
    }

    /// Listing requests one `list_all` costs (for the statistics).
    fn list_all_requests(&self) -> u64 {
        10
    }

    /// The bytes `range` of a file. A range past the end is an error.
    fn read(&self, file: FileId, range: Range<u64>)
    -> BoxFuture<'_, Result<Vec<u8>, StorageError>>;

    /// The bytes `range` of a file as listed with `version` (a
    /// [`FileInfo::version`]): fails with [`StorageErrorKind::Changed`] when
    /// the name now holds other bytes, instead of returning them. Backends
    /// that can tie a read to a version (an `If-Match` on the listed ETag,
    /// the identity of a local file) do; the default reads whatever is
    /// there. A version of 0 (none listed) is a plain read.
    fn read_version(
        &self,
        file: FileId,
        version: u64,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StorageError>> {
        let _ = version;
        self.read(file, range)
    }

    /// [`Storage::read_version`], its bytes handed over as they arrive.
    /// Backends that stream a response body (the object stores) do; the
    /// default reads the whole range, then hands it over as one chunk.
    fn read_version_chunks(
        &self,
        file: FileId,
        version: u64,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Chunks<'_>, StorageError>> {
        Box::pin(async move { Ok(one_chunk(self.read_version(file, version, range).await?)) })
    }

    /// Several ranges of one file, fetched together; backends that can
    /// coalesce or parallelise do.
    fn read_ranges(
        &self,
        file: FileId,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StorageError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(ranges.len());
            for r in ranges {
                out.push(self.read(file, r).await?);
            }
            Ok(out)
        })
    }
}

/// Opens the backend a URL names.
///
/// `timeouts` bounds each request and the retry window of the object-store
/// backends (S3, GCS, Azure, OSS), WebDAV and NATS; SFTP keeps its own
/// fixed timeouts.
pub fn open(url: &ReplicaUrl, timeouts: Timeouts) -> Result<Arc<dyn Storage>, StorageError> {
    match url.scheme() {
        Scheme::File => {
            let path = url.file_path().ok_or_else(|| {
                StorageError::new(
                    "file",
                    StorageErrorKind::Config,
                    format!("{url} is not a local path"),
                )
            })?;
            Ok(Arc::new(
                FileStorage::new(path).with_timeout(timeouts.request),
            ))
        }
        Scheme::S3 => s3::open(url, timeouts),
        Scheme::Gs => gcs::open(url, timeouts),
        Scheme::Abs => abs::open(url, timeouts),
        Scheme::Sftp => sftp::open(url),
        Scheme::Webdav | Scheme::Webdavs => webdav::open(url, timeouts),
        Scheme::Nats => nats::open(url, timeouts),
        Scheme::Oss => oss::open(url, timeouts),
    }
}
