//! The `file://` backend: `<root>/ltx/<level>/<min>-<max>.ltx`.
//!
//! Listings and reads are blocking file system calls: they run on tokio's
//! blocking pool, never on an async worker, and each is bounded by
//! `storage_timeout` (a hung network file system fails the call instead of
//! stalling the poller and every query behind it).
//!
//! A listed file's version is its LTX header (100 bytes, read with the
//! listing: local reads are cheap). A reset replica rewrites files under the
//! old names, often with the same sizes; their headers differ (another
//! timestamp, other checksums), so they list with another version, and a
//! read tied to the version listed fails with [`StorageErrorKind::Changed`]
//! instead of returning the new file's bytes. What the file system says of
//! a file (inode, modification time) is no version: Litestream sets a
//! file's times after writing it, and a folder deleted and written again
//! may hand out the same inodes.

use std::fs::File;
use std::io::ErrorKind;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::{StorageError, StorageErrorKind};
use super::{BoxFuture, FileId, FileInfo, Level, Storage};
use crate::ltx::{FileName, HEADER_SIZE, parse_name};

const BACKEND: &str = "file";

/// The default bound of one call, when no `storage_timeout` is given.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct FileStorage {
    folder: Arc<Folder>,
    describe: String,
    /// Bound of one call (`storage_timeout`).
    timeout: Duration,
}

/// The replica's folder: what the blocking calls need.
#[derive(Debug)]
struct Folder {
    root: PathBuf,
}

impl FileStorage {
    pub fn new(root: PathBuf) -> FileStorage {
        let describe = format!("file://{}", root.display());
        FileStorage {
            folder: Arc::new(Folder { root }),
            describe,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Bounds every call by `timeout` (the `storage_timeout` setting).
    pub fn with_timeout(mut self, timeout: Duration) -> FileStorage {
        self.timeout = timeout;
        self
    }

    /// Runs `call` on the blocking pool, bounded by the timeout.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Folder) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let folder = Arc::clone(&self.folder);
        let task = tokio::task::spawn_blocking(move || call(&folder));
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(StorageError::new(
                BACKEND,
                StorageErrorKind::Other,
                format!("{}: a file system call failed: {e}", self.describe),
            )),
            Err(_) => Err(StorageError::new(
                BACKEND,
                StorageErrorKind::Transient,
                format!(
                    "{}: the file system did not answer within {:?} (storage_timeout)",
                    self.describe, self.timeout
                ),
            )),
        }
    }
}

impl Folder {
    fn level_dir(&self, level: Level) -> PathBuf {
        self.root.join("ltx").join(level.get().to_string())
    }

    fn path(&self, file: FileId) -> PathBuf {
        self.level_dir(file.level).join(file.name.to_string())
    }

    /// Why the root cannot be listed: missing, or a file (often the
    /// primary database itself, named instead of Litestream's folder).
    fn not_a_folder(&self) -> StorageError {
        let root = self.root.display();
        if !self.root.is_file() {
            return StorageError::new(
                BACKEND,
                StorageErrorKind::NotFound,
                format!("replica folder {root} does not exist"),
            );
        }
        let mut magic = [0u8; 16];
        let sqlite = std::fs::File::open(&self.root)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && &magic == b"SQLite format 3\0";
        let what = if sqlite {
            "is a SQLite database file, not a replica folder: this is the database; point \
             replica_url at Litestream's replica folder (the `path` of the replica in litestream.yml)"
        } else {
            "is a file, not a replica folder: point replica_url at the folder Litestream \
             replicates into (the `path` of the replica in litestream.yml)"
        };
        StorageError::new(BACKEND, StorageErrorKind::Config, format!("{root} {what}"))
    }

    fn list_sync(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> Result<Vec<FileInfo>, StorageError> {
        if !self.root.is_dir() {
            return Err(self.not_a_folder());
        }
        let dir = self.level_dir(level);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir, &e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, &e))?;
            let Some(name) = entry.file_name().to_str().and_then(parse_name) else {
                continue;
            };
            if after.is_some_and(|a| name <= a) {
                continue;
            }
            // A file deleted between readdir and stat is simply not listed.
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let version = match File::open(entry.path()) {
                Ok(f) => header_version(&f).unwrap_or(0),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(_) => 0,
            };
            files.push(FileInfo {
                id: FileId { level, name },
                size: meta.len(),
                version,
            });
        }
        files.sort_by_key(|f| f.id.name);
        Ok(files)
    }

    /// Reads `range` of `file`; with a `version`, only from the file that
    /// was listed with it (its header checked on the open handle, so the
    /// bytes come from the file that was checked).
    fn read_sync(
        &self,
        file: FileId,
        version: Option<u64>,
        range: Range<u64>,
    ) -> Result<Vec<u8>, StorageError> {
        let path = self.path(file);
        let f = File::open(&path).map_err(|e| io_error(&path, &e))?;
        if let Some(want) = version.filter(|v| *v != 0)
            && header_version(&f).map_err(|e| io_error(&path, &e))? != want
        {
            return Err(StorageError::new(
                BACKEND,
                StorageErrorKind::Changed,
                format!(
                    "{} was written again since it was listed (another file under its name)",
                    path.display()
                ),
            ));
        }
        let past_end = || {
            StorageError::new(
                BACKEND,
                StorageErrorKind::Other,
                format!(
                    "{}: range {}..{} is past the end of the file",
                    path.display(),
                    range.start,
                    range.end
                ),
            )
        };
        // Before the buffer is sized by the range: a range that a damaged
        // index names may be far larger than the file.
        let file_len = f.metadata().map_err(|e| io_error(&path, &e))?.len();
        if range.end > file_len {
            return Err(past_end());
        }
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| StorageError::new(BACKEND, StorageErrorKind::Other, "range too large"))?;
        let mut buf = vec![0u8; len];
        read_exact_at(&f, &mut buf, range.start).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                past_end()
            } else {
                io_error(&path, &e)
            }
        })?;
        Ok(buf)
    }
}

impl Storage for FileStorage {
    fn describe(&self) -> &str {
        &self.describe
    }

    fn is_local(&self) -> bool {
        true
    }

    fn list(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> BoxFuture<'_, Result<Vec<FileInfo>, StorageError>> {
        Box::pin(self.blocking(move |f| f.list_sync(level, after)))
    }

    /// The ten level folders in one blocking call (one hop to the pool).
    fn list_all(&self) -> BoxFuture<'_, Result<Vec<FileInfo>, StorageError>> {
        Box::pin(self.blocking(|f| {
            let mut all = Vec::new();
            for level in Level::all_descending() {
                all.extend(f.list_sync(level, None)?);
            }
            Ok(all)
        }))
    }

    fn read(
        &self,
        file: FileId,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StorageError>> {
        Box::pin(self.blocking(move |f| f.read_sync(file, None, range)))
    }

    fn read_version(
        &self,
        file: FileId,
        version: u64,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StorageError>> {
        Box::pin(self.blocking(move |f| f.read_sync(file, Some(version), range)))
    }
}

/// A local file's version: a hash of its LTX header, which holds the time
/// it was written and its TXIDs and checksums; 0 while the file is too short
/// to hold one (being written). The same bytes written again are the same
/// version; a new lineage's file under the same name is another.
fn header_version(f: &File) -> std::io::Result<u64> {
    let mut header = [0u8; HEADER_SIZE];
    match read_exact_at(f, &mut header, 0) {
        Ok(()) => Ok(super::version_of(&header)),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(0),
        Err(e) => Err(e),
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> StorageError {
    let kind = match e.kind() {
        ErrorKind::NotFound => StorageErrorKind::NotFound,
        ErrorKind::PermissionDenied => StorageErrorKind::Auth,
        ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            StorageErrorKind::Transient
        }
        _ => StorageErrorKind::Other,
    };
    StorageError::new(BACKEND, kind, format!("{}: {e}", path.display()))
}

/// Fills `buf` from `offset` without a shared cursor.
#[cfg(unix)]
fn read_exact_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
}

/// Fills `buf` from `offset`. `seek_read` moves the file's cursor, which is
/// harmless here: every read opens its own `File`.
#[cfg(windows)]
fn read_exact_at(f: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match f.seek_read(buf, offset) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::mpsc;

    /// The level-0 folder of a replica at `root` (created) and the name of
    /// its file of TXID 1.
    fn first_level0_file(root: &std::path::Path) -> (std::path::PathBuf, FileName) {
        let level0 = root.join("ltx").join("0");
        std::fs::create_dir_all(&level0).unwrap();
        let one = crate::ltx::Txid(1);
        (level0, FileName { min: one, max: one })
    }

    /// A range past the end of a file fails before anything is sized by
    /// it: 64 TiB asked of a file of 10 bytes is an error, not an abort.
    #[test]
    fn a_range_past_the_end_fails_without_a_buffer_of_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let (level0, name) = first_level0_file(dir.path());
        std::fs::write(level0.join(name.to_string()), b"ten bytes!").unwrap();
        let storage = FileStorage::new(dir.path().to_path_buf());
        let file = FileId {
            level: Level::L0,
            name,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        for range in [0..11, 5..(1 << 46), (1 << 46)..(1 << 47)] {
            let e = rt.block_on(storage.read(file, range.clone())).unwrap_err();
            assert!(e.to_string().contains("past the end"), "{range:?}: {e}");
        }
        assert_eq!(rt.block_on(storage.read(file, 4..10)).unwrap(), b"bytes!");
    }

    /// A file system call that never returns (a FIFO in place of an LTX
    /// file: its open waits for a writer, as a call on a hung network file
    /// system waits for the server) fails as transient within
    /// `storage_timeout`, and the async worker runs other tasks meanwhile.
    #[test]
    fn a_read_that_hangs_is_bounded_by_the_timeout_and_leaves_the_worker_free() {
        let dir = tempfile::tempdir().unwrap();
        let (level0, name) = first_level0_file(dir.path());
        let fifo = level0.join(name.to_string());
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let storage =
            FileStorage::new(dir.path().to_path_buf()).with_timeout(Duration::from_millis(300));
        let file = FileId {
            level: Level::L0,
            name,
        };

        // One worker thread: a read that blocks it starves every other task.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let got = rt.block_on(async {
                let other = tokio::spawn(async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                });
                let read = storage.read(file, 0..100).await;
                (read, other.is_finished())
            });
            let _ = tx.send(got);
            // The pool's thread still waits in open(): leave it behind.
            rt.shutdown_background();
        });
        let got = rx.recv_timeout(Duration::from_secs(20));
        // Wake the open() (a writer appears), whatever happened.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
        let (read, other_ran) = got.expect(
            "a read of a file that never answers was still running after 20 s: \
             it is not bounded by storage_timeout",
        );
        let e = read.expect_err("a read that never answers");
        assert_eq!(e.kind, StorageErrorKind::Transient, "{e}");
        assert!(e.to_string().contains("storage_timeout"), "{e}");
        assert!(
            other_ran,
            "another task could not run while the read waited: the read blocks the async worker"
        );
        reader.join().unwrap();
    }
}
