//! `sftp://user[:password]@host[:port]/path`: a replica on an SSH server,
//! laid out as `<path>/ltx/<level>/<name>`.
//!
//! One connection per replica, opened on first use (opening a database is
//! synchronous; connecting is not) and reopened after it fails. Every call
//! is retried on transient failures and bounded in time. Unlike the official
//! extension, the server's host key is checked: against `~/.ssh/known_hosts`
//! by default, `?known-hosts=PATH`, or a pinned `?host-key=`; only an
//! explicit `?skip-host-key-check=true` turns the check off.

mod config;
mod connect;
mod pool;

use std::io::SeekFrom;
use std::ops::Range;
use std::sync::Arc;

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::StatusCode;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::Mutex;

use super::error::{StorageError, StorageErrorKind};
use super::retry::{REQUEST_TIMEOUT, RETRY_TIMEOUT, with_retries};
use super::secrets::Secrets;
use super::url::ReplicaUrl;
use super::{BoxFuture, FileId, FileInfo, Level, Storage};
use crate::ltx::{FileName, parse_name};
use config::SftpConfig;
use connect::Conn;

const BACKEND: &str = "sftp";

pub struct SftpStorage {
    cfg: SftpConfig,
    conn: Mutex<Option<Arc<Conn>>>,
    describe: String,
    secrets: Secrets,
}

impl std::fmt::Debug for SftpStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SftpStorage({})", self.describe)
    }
}

pub fn open(url: &ReplicaUrl) -> Result<Arc<dyn Storage>, StorageError> {
    let cfg = SftpConfig::parse(url)?;
    let mut secrets = Secrets::new();
    if let Some(pw) = &cfg.password {
        secrets.add(pw);
    }
    Ok(Arc::new(SftpStorage {
        cfg,
        conn: Mutex::new(None),
        describe: url.redacted().to_owned(),
        secrets,
    }))
}

impl SftpStorage {
    /// The live connection, connecting if there is none.
    async fn conn(&self) -> Result<Arc<Conn>, StorageError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.handle.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(connect::connect(&self.cfg).await?);
        *slot = Some(Arc::clone(&c));
        Ok(c)
    }

    /// Forgets a connection that failed, so the next call reconnects.
    async fn drop_conn(&self, failed: &Arc<Conn>) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, failed)) {
            *slot = None;
        }
    }

    fn level_dir(&self, level: Level) -> String {
        format!("{}/ltx/{}", self.cfg.root, level.get())
    }

    /// One attempt of `op` on the current connection, bounded in time; a
    /// transport failure drops the connection.
    async fn attempt<T, F, Fut>(&self, what: &str, op: F) -> Result<T, StorageError>
    where
        F: FnOnce(Arc<Conn>) -> Fut,
        Fut: Future<Output = Result<T, SftpError>>,
    {
        let conn = self.conn().await?;
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, op(Arc::clone(&conn))).await {
            Ok(r) => r.map_err(|e| self.error(what, &e)),
            Err(_) => Err(self.fail(
                StorageErrorKind::Transient,
                format!("{what}: no answer in {REQUEST_TIMEOUT:?}"),
            )),
        };
        if matches!(&result, Err(e) if e.kind == StorageErrorKind::Transient) {
            self.drop_conn(&conn).await;
        }
        result
    }

    async fn list_once(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> Result<Vec<FileInfo>, StorageError> {
        let dir = self.level_dir(level);
        let listed = self
            .attempt(&format!("list {dir}"), |c| {
                let dir = dir.clone();
                async move { c.sftp.read_dir(dir).await }
            })
            .await;
        let entries = match listed {
            Ok(entries) => entries,
            Err(e) if e.kind == StorageErrorKind::NotFound => {
                // A level nobody wrote yet is empty; a missing replica is not.
                let root = self.cfg.root.clone();
                self.attempt(&format!("stat {root}"), |c| async move {
                    c.sftp.metadata(root).await
                })
                .await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut files: Vec<FileInfo> = entries
            .filter_map(|entry| {
                let name = parse_name(&entry.file_name())?;
                let meta = entry.metadata();
                (meta.is_regular() && after.is_none_or(|a| name > a)).then(|| FileInfo {
                    id: FileId { level, name },
                    size: meta.size.unwrap_or(0),
                    version: meta
                        .mtime
                        .map_or(0, |t| super::version_of(&t.to_le_bytes())),
                })
            })
            .collect();
        files.sort_by_key(|f| f.id.name);
        Ok(files)
    }

    async fn read_once(&self, file: FileId, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
        let path = format!("{}/{}", self.level_dir(file.level), file.name);
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| self.fail(StorageErrorKind::Other, "range too large".into()))?;
        self.attempt(&format!("read {path}"), |c| async move {
            let mut f = c.file(file, &path).await?;
            let mut buf = vec![0u8; len];
            let read = async {
                f.seek(SeekFrom::Start(range.start)).await?;
                f.read_exact(&mut buf).await
            };
            if let Err(e) = read.await {
                c.forget(file);
                return Err(e.into());
            }
            Ok(buf)
        })
        .await
    }

    fn error(&self, what: &str, e: &SftpError) -> StorageError {
        let kind = match e {
            SftpError::Status(s) => match s.status_code {
                StatusCode::NoSuchFile => StorageErrorKind::NotFound,
                StatusCode::PermissionDenied => StorageErrorKind::Auth,
                StatusCode::Eof => StorageErrorKind::Other,
                StatusCode::ConnectionLost | StatusCode::NoConnection => {
                    StorageErrorKind::Transient
                }
                _ => StorageErrorKind::Other,
            },
            // A read past the end: retrying cannot help.
            SftpError::IO(msg)
                if msg.contains("end of file") || msg.contains("fill whole buffer") =>
            {
                StorageErrorKind::Other
            }
            SftpError::IO(_) | SftpError::Timeout | SftpError::UnexpectedBehavior(_) => {
                StorageErrorKind::Transient
            }
            _ => StorageErrorKind::Other,
        };
        self.fail(kind, format!("{what}: {e}"))
    }

    fn fail(&self, kind: StorageErrorKind, msg: String) -> StorageError {
        StorageError::new(
            BACKEND,
            kind,
            self.secrets.scrub(&format!("{}: {msg}", self.describe)),
        )
    }
}

impl Storage for SftpStorage {
    fn describe(&self) -> &str {
        &self.describe
    }

    fn list(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> BoxFuture<'_, Result<Vec<FileInfo>, StorageError>> {
        Box::pin(async move {
            with_retries(RETRY_TIMEOUT, || self.list_once(level, after))
                .await
                .map_err(|e| self.scrubbed(e))
        })
    }

    fn read(
        &self,
        file: FileId,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StorageError>> {
        Box::pin(async move {
            with_retries(RETRY_TIMEOUT, || self.read_once(file, range.clone()))
                .await
                .map_err(|e| self.scrubbed(e))
        })
    }

    fn forget_open_files(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(c) = self.conn.lock().await.as_ref() {
                c.forget_all();
            }
        })
    }
}

impl SftpStorage {
    /// Errors from the connection code carry no describe prefix yet.
    fn scrubbed(&self, mut e: StorageError) -> StorageError {
        if !e.message.starts_with(&self.describe) {
            e.message = format!("{}: {}", self.describe, e.message);
        }
        e.message = self.secrets.scrub(&e.message);
        e
    }
}
