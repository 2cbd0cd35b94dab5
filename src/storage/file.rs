//! The `file://` backend: `<root>/ltx/<level>/<min>-<max>.ltx`.
//!
//! Reads are plain positioned reads. They run on whichever thread polls the
//! future: the local file system is fast enough that handing them to a
//! blocking pool would cost more than it saves.

use std::fs::File;
use std::io::ErrorKind;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::error::{StorageError, StorageErrorKind};
use super::{BoxFuture, FileId, FileInfo, Level, Storage};
use crate::ltx::{FileName, parse_name};

const BACKEND: &str = "file";

#[derive(Debug)]
pub struct FileStorage {
    root: PathBuf,
    describe: String,
}

impl FileStorage {
    pub fn new(root: PathBuf) -> FileStorage {
        let describe = format!("file://{}", root.display());
        FileStorage { root, describe }
    }

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
            if meta.is_file() {
                files.push(FileInfo {
                    id: FileId { level, name },
                    size: meta.len(),
                    // Local files are read directly: nothing to cache.
                    version: 0,
                });
            }
        }
        files.sort_by_key(|f| f.id.name);
        Ok(files)
    }

    fn read_sync(&self, file: FileId, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
        let path = self.path(file);
        let f = File::open(&path).map_err(|e| io_error(&path, &e))?;
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| StorageError::new(BACKEND, StorageErrorKind::Other, "range too large"))?;
        let mut buf = vec![0u8; len];
        read_exact_at(&f, &mut buf, range.start).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
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
        Box::pin(async move { self.list_sync(level, after) })
    }

    fn read(
        &self,
        file: FileId,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StorageError>> {
        Box::pin(async move { self.read_sync(file, range) })
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
