//! `nats://[user:pass@]host[:port]/bucket`: a replica in a NATS JetStream
//! object store, as Litestream writes it: one object per LTX file, named
//! `ltx/<level>/<name>`, in a bucket created beforehand.
//!
//! The client is `async-nats` ([`client`] signs in and opens the bucket,
//! [`ops`] lists and fetches). One connection per replica, made on first
//! use and made anew after it fails. The bucket is listed whole in one
//! consumer. Objects have no ranged reads (async-nats's `Object` reads from
//! the first chunk on, and the chunks are not addressable by offset), so
//! each is downloaded once, in chunks, and kept within a budget
//! ([`objects`]); ranges are cut from the kept bytes.

mod client;
mod config;
mod failure;
mod objects;
mod ops;
mod tls;

use std::ops::Range;
use std::sync::Arc;

use tokio::sync::Mutex;

use super::error::{StorageError, StorageErrorKind};
use super::retry::{CONNECT_TIMEOUT, Timeouts, with_retries};
use super::secrets::Secrets;
use super::url::ReplicaUrl;
use super::{BoxFuture, FileId, FileInfo, Level, Storage};
use crate::ltx::{FileName, parse_name};
use client::Bucket;
use config::NatsConfig;
use failure::Failure;
use objects::Objects;

const BACKEND: &str = "nats";

/// Bytes of downloaded objects kept per replica, for the larger snapshots
/// and compactions whose header, index and pages are read one range at a
/// time. Files read whole (up to 1 MiB, by the replica layer) are not kept.
const KEEP_BYTES: usize = 128 * 1024 * 1024;

pub struct NatsStorage {
    cfg: NatsConfig,
    conn: Mutex<Option<Arc<Bucket>>>,
    objects: Objects,
    describe: String,
    secrets: Secrets,
    timeouts: Timeouts,
}

impl std::fmt::Debug for NatsStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NatsStorage({})", self.describe)
    }
}

pub fn open(url: &ReplicaUrl, timeouts: Timeouts) -> Result<Arc<dyn Storage>, StorageError> {
    let cfg = NatsConfig::parse(url)?;
    let mut secrets = Secrets::new();
    for s in cfg.secrets() {
        secrets.add(s);
    }
    Ok(Arc::new(NatsStorage {
        cfg,
        conn: Mutex::new(None),
        objects: Objects::new(KEEP_BYTES),
        describe: url.redacted().to_owned(),
        secrets,
        timeouts,
    }))
}

impl NatsStorage {
    fn error(&self, kind: StorageErrorKind, op: &str, what: &str, cause: &str) -> StorageError {
        let advice = match kind {
            StorageErrorKind::Auth => {
                "credentials missing or refused (check the user and password or token in the URL, \
                 or ?creds=)"
                    .to_owned()
            }
            StorageErrorKind::NotFound if what == "bucket" => format!(
                "bucket {:?} does not exist (Litestream needs it created beforehand)",
                self.cfg.bucket
            ),
            StorageErrorKind::NotFound => "not found".into(),
            StorageErrorKind::Transient => {
                "cannot reach the server (connection failed or timed out after retries)".into()
            }
            StorageErrorKind::Config => "bad configuration".into(),
            StorageErrorKind::Other => "request failed".into(),
            StorageErrorKind::Changed => "written again since it was listed".into(),
        };
        StorageError::new(
            BACKEND,
            kind,
            self.secrets.scrub(&format!(
                "{op} of {what} at {}: {advice}: {cause}",
                self.describe
            )),
        )
    }

    fn failure(&self, op: &str, what: &str, f: Failure) -> StorageError {
        self.error(f.kind, op, what, &f.text)
    }

    /// The live connection, connecting (and checking the bucket) if there
    /// is none.
    async fn conn(&self) -> Result<Arc<Bucket>, StorageError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let t = self.timeouts.request;
        let c = client::open(&self.cfg, CONNECT_TIMEOUT.min(t), t)
            .await
            .map_err(|f| {
                let what = if f.kind == StorageErrorKind::NotFound {
                    "bucket"
                } else {
                    "server"
                };
                self.failure("connect", what, f)
            })?;
        let c = Arc::new(c);
        *slot = Some(Arc::clone(&c));
        Ok(c)
    }

    /// Forgets a connection after a transient failure.
    async fn drop_conn(&self, failed: &Arc<Bucket>) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, failed)) {
            *slot = None;
        }
    }

    async fn list_everything(&self) -> Result<Vec<FileInfo>, StorageError> {
        with_retries(self.timeouts.retry, || async {
            let conn = self.conn().await?;
            match ops::list(&conn, self.timeouts.request).await {
                Ok(listed) => {
                    let mut files: Vec<FileInfo> = listed
                        .iter()
                        .filter_map(|o| file_info(&o.name, o.size as u64, &o.nuid))
                        .collect();
                    files.sort_by_key(|f| f.id);
                    files.dedup_by_key(|f| f.id);
                    Ok(files)
                }
                Err(e) => {
                    let err = self.failure("list", "bucket", e);
                    if err.kind == StorageErrorKind::Transient {
                        self.drop_conn(&conn).await;
                    }
                    Err(err)
                }
            }
        })
        .await
    }

    /// The whole object, in chunks; each wait is bounded by the request
    /// timeout.
    async fn download(&self, file: FileId) -> Result<Vec<u8>, StorageError> {
        let name = object_name(file);
        let what = format!("{file}");
        with_retries(self.timeouts.retry, || async {
            let conn = self.conn().await?;
            match ops::get(&conn, &name, self.timeouts.request).await {
                Ok(bytes) => Ok(bytes),
                Err(e) => {
                    let err = self.failure("read", &what, e);
                    if err.kind == StorageErrorKind::Transient {
                        self.drop_conn(&conn).await;
                    }
                    Err(err)
                }
            }
        })
        .await
    }

    async fn read_range(&self, file: FileId, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
        let bytes = self.objects.get(file, || self.download(file)).await?;
        if range.start == 0 && range.end == bytes.len() as u64 {
            // Read whole, as the replica layer reads small files: their
            // pages go to the page cache, so the bytes need no keeping.
            self.objects.forget(file);
        }
        let cut = usize::try_from(range.start)
            .ok()
            .zip(usize::try_from(range.end).ok())
            .and_then(|(a, b)| bytes.get(a..b));
        match cut {
            Some(b) => Ok(b.to_vec()),
            None => Err(self.error(
                StorageErrorKind::Other,
                "read",
                &format!("{file}"),
                &format!(
                    "asked for bytes {}..{} of a {}-byte object",
                    range.start,
                    range.end,
                    bytes.len()
                ),
            )),
        }
    }
}

impl Storage for NatsStorage {
    fn describe(&self) -> &str {
        &self.describe
    }

    fn list(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> BoxFuture<'_, Result<Vec<FileInfo>, StorageError>> {
        // The object store lists all of a bucket or nothing.
        Box::pin(async move {
            let mut files = self.list_everything().await?;
            files.retain(|f| f.id.level == level && after.is_none_or(|a| f.id.name > a));
            Ok(files)
        })
    }

    fn list_all(&self) -> BoxFuture<'_, Result<Vec<FileInfo>, StorageError>> {
        Box::pin(self.list_everything())
    }

    fn list_all_requests(&self) -> u64 {
        1
    }

    fn forget_open_files(&self) -> BoxFuture<'_, ()> {
        // Kept bytes are as good as open handles: after a reset the same
        // names belong to other files.
        Box::pin(async move { self.objects.clear() })
    }

    fn prewarm(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.conn().await;
        })
    }

    fn read(
        &self,
        file: FileId,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StorageError>> {
        Box::pin(self.read_range(file, range))
    }
}

/// Litestream's object name for a file (its `Path` is empty for NATS).
fn object_name(file: FileId) -> String {
    format!("ltx/{}/{}", file.level.get(), file.name)
}

/// The file an object name stands for, if it is one of the replica's;
/// its version is the object's nuid.
fn file_info(name: &str, size: u64, nuid: &str) -> Option<FileInfo> {
    let rest = name.strip_prefix("ltx/")?;
    let (dir, file) = rest.split_once('/')?;
    let level = dir.parse::<u8>().ok().and_then(Level::new)?;
    let name = parse_name(file)?;
    Some(FileInfo {
        id: FileId { level, name },
        size,
        version: if nuid.is_empty() {
            0
        } else {
            super::version_of(nuid.as_bytes())
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_round_trip() {
        let name = parse_name("0000000000000001-0000000000000005.ltx").unwrap();
        let id = FileId {
            level: Level::SNAPSHOT,
            name,
        };
        assert_eq!(
            object_name(id),
            "ltx/9/0000000000000001-0000000000000005.ltx"
        );
        assert_eq!(
            file_info(&object_name(id), 77, "N1"),
            Some(FileInfo {
                id,
                size: 77,
                version: crate::storage::version_of(b"N1")
            })
        );
        assert_eq!(
            file_info("ltx/10/0000000000000001-0000000000000005.ltx", 1, ""),
            None
        );
        assert_eq!(
            file_info("db/ltx/0/0000000000000001-0000000000000005.ltx", 1, ""),
            None
        );
        assert_eq!(file_info("ltx/0/notes.txt", 1, ""), None);
    }

    #[test]
    fn secrets_stay_out_of_messages() {
        let s = open(
            &ReplicaUrl::parse("nats://u:hunter22@127.0.0.1:1/b").unwrap(),
            Timeouts::default(),
        )
        .unwrap();
        assert!(!s.describe().contains("hunter22"));
        let e = NatsStorage {
            cfg: NatsConfig::parse(&ReplicaUrl::parse("nats://u:hunter22@h/b").unwrap()).unwrap(),
            conn: Mutex::new(None),
            objects: Objects::new(1),
            describe: "nats://u:REDACTED@h/b".into(),
            secrets: {
                let mut s = Secrets::new();
                s.add("hunter22");
                s
            },
            timeouts: Timeouts::default(),
        }
        .error(StorageErrorKind::Auth, "connect", "server", "bad hunter22");
        assert!(!e.message.contains("hunter22"), "{e}");
    }
}
