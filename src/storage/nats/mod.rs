//! `nats://[user:pass@]host[:port]/bucket`: a replica in a NATS JetStream
//! object store, as Litestream writes it: one object per LTX file, named
//! `ltx/<level>/<name>`, in a bucket created beforehand.
//!
//! One connection per replica, made on first use (the client reconnects by
//! itself after that). The bucket is listed whole in one request. Objects
//! have no ranged reads, so each is downloaded once, in chunks, and kept
//! within a budget ([`objects`]); ranges are cut from the kept bytes.

mod config;
mod objects;

use std::ops::Range;
use std::sync::Arc;

use async_nats::jetstream::object_store::ObjectStore;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

use super::error::{StorageError, StorageErrorKind};
use super::retry::{CONNECT_TIMEOUT, Timeouts, with_retries};
use super::secrets::Secrets;
use super::url::ReplicaUrl;
use super::{BoxFuture, FileId, FileInfo, Level, Storage, tls};
use crate::ltx::{FileName, parse_name};
use config::{Auth, NatsConfig};
use objects::Objects;

const BACKEND: &str = "nats";

/// Bytes of downloaded objects kept per replica. Files up to 1 MiB are read
/// whole by the replica layer anyway and need no keeping; this holds the
/// larger snapshots and compactions whose pages are read one at a time.
const KEEP_BYTES: usize = 128 * 1024 * 1024;

/// Bytes asked of the object reader at once.
const CHUNK: usize = 256 * 1024;

pub struct NatsStorage {
    cfg: NatsConfig,
    store: Mutex<Option<ObjectStore>>,
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
        store: Mutex::new(None),
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

    /// The bucket, connecting first if needed.
    async fn store(&self) -> Result<ObjectStore, StorageError> {
        let mut slot = self.store.lock().await;
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let store = with_retries(|| self.connect()).await?;
        *slot = Some(store.clone());
        Ok(store)
    }

    async fn connect(&self) -> Result<ObjectStore, StorageError> {
        tls::ensure_provider();
        let opts = self.options().await?;
        let connect = opts.connect(self.cfg.server.as_str());
        let client = tokio::time::timeout(self.timeouts.request, connect)
            .await
            .map_err(|_| {
                self.error(
                    StorageErrorKind::Transient,
                    "connect",
                    "server",
                    "timed out",
                )
            })?
            .map_err(|e| {
                use async_nats::ConnectErrorKind as K;
                let kind = match e.kind() {
                    K::Authentication | K::AuthorizationViolation => StorageErrorKind::Auth,
                    K::TimedOut | K::Io | K::Dns | K::MaxReconnects => StorageErrorKind::Transient,
                    K::ServerParse => StorageErrorKind::Config,
                    K::Tls => StorageErrorKind::Other,
                };
                self.error(kind, "connect", "server", &chain(&e))
            })?;
        let js = async_nats::jetstream::new(client);
        let got =
            tokio::time::timeout(self.timeouts.request, js.get_object_store(&self.cfg.bucket))
                .await
                .map_err(|_| {
                    self.error(StorageErrorKind::Transient, "open", "bucket", "timed out")
                })?;
        got.map_err(|e| {
            let cause = chain(&e);
            self.error(classify(&cause), "open", "bucket", &cause)
        })
    }

    async fn options(&self) -> Result<async_nats::ConnectOptions, StorageError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name("litestream-vfs")
            .connection_timeout(CONNECT_TIMEOUT.min(self.timeouts.request))
            .request_timeout(Some(self.timeouts.request));
        opts = match &self.cfg.auth {
            Auth::None => opts,
            Auth::Token(t) => opts.token(t.clone()),
            Auth::UserPassword(u, p) => opts.user_and_password(u.clone(), p.clone()),
            Auth::CredsFile(path) => opts.credentials_file(path).await.map_err(|e| {
                self.error(
                    StorageErrorKind::Config,
                    "read",
                    &format!("credentials file {}", path.display()),
                    &e.to_string(),
                )
            })?,
        };
        if self.cfg.tls {
            opts = opts.require_tls(true);
        }
        if !self.cfg.root_cas.is_empty() {
            opts = opts.tls_client_config(self.tls_config()?);
        } else if let Some((cert, key)) = &self.cfg.client_cert {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(opts)
    }

    /// A TLS set-up trusting exactly `root-cas`, with the client certificate
    /// if one is given.
    fn tls_config(&self) -> Result<rustls::ClientConfig, StorageError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |what: &std::path::Path, e: &dyn std::fmt::Display| {
            self.error(
                StorageErrorKind::Config,
                "read",
                &what.display().to_string(),
                &e.to_string(),
            )
        };
        let mut roots = rustls::RootCertStore::empty();
        for path in &self.cfg.root_cas {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(path, &e))?;
            for cert in certs {
                roots
                    .add(cert.map_err(|e| bad(path, &e))?)
                    .map_err(|e| bad(path, &e))?;
            }
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        match &self.cfg.client_cert {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => {
                let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| bad(cert, &e))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(cert, &e))?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| bad(cert, &e))
            }
        }
    }

    /// Forgets the bucket after a failure that may be the connection's.
    async fn reset(&self) {
        *self.store.lock().await = None;
    }

    async fn list_everything(&self) -> Result<Vec<FileInfo>, StorageError> {
        with_retries(|| async {
            let store = self.store().await?;
            let listed = tokio::time::timeout(self.timeouts.request, async {
                let mut list = store.list().await.map_err(|e| chain(&e))?;
                let mut files = Vec::new();
                while let Some(item) = list.next().await {
                    let info = item.map_err(|e| chain(&e))?;
                    if let Some(f) = file_info(&info.name, info.size) {
                        files.push(f);
                    }
                }
                Ok::<_, String>(files)
            })
            .await;
            match listed {
                Ok(Ok(mut files)) => {
                    files.sort_by_key(|f| f.id);
                    files.dedup_by_key(|f| f.id);
                    Ok(files)
                }
                Ok(Err(cause)) => {
                    self.reset().await;
                    Err(self.error(classify(&cause), "list", "bucket", &cause))
                }
                Err(_) => {
                    self.reset().await;
                    Err(self.error(StorageErrorKind::Transient, "list", "bucket", "timed out"))
                }
            }
        })
        .await
    }

    /// The whole object, downloaded in chunks; each chunk must arrive
    /// within the request timeout.
    async fn download(&self, file: FileId) -> Result<Vec<u8>, StorageError> {
        let name = object_name(file);
        with_retries(|| async {
            let store = self.store().await?;
            let what = format!("{file}");
            let t = self.timeouts.request;
            let mut object = match tokio::time::timeout(t, store.get(&name)).await {
                Err(_) => {
                    return Err(self.error(
                        StorageErrorKind::Transient,
                        "read",
                        &what,
                        "timed out",
                    ));
                }
                Ok(Err(e)) => {
                    use async_nats::jetstream::object_store::GetErrorKind as K;
                    let kind = match e.kind() {
                        K::NotFound => StorageErrorKind::NotFound,
                        K::TimedOut => StorageErrorKind::Transient,
                        _ => classify(&chain(&e)),
                    };
                    return Err(self.error(kind, "read", &what, &chain(&e)));
                }
                Ok(Ok(o)) => o,
            };
            let size = object.info().size;
            let mut bytes = Vec::with_capacity(size);
            let mut chunk = vec![0u8; CHUNK];
            loop {
                let n = match tokio::time::timeout(t, object.read(&mut chunk)).await {
                    Err(_) => {
                        return Err(self.error(
                            StorageErrorKind::Transient,
                            "read",
                            &what,
                            "timed out",
                        ));
                    }
                    Ok(Err(e)) => {
                        return Err(self.error(
                            classify(&e.to_string()),
                            "read",
                            &what,
                            &e.to_string(),
                        ));
                    }
                    Ok(Ok(n)) => n,
                };
                if n == 0 {
                    break;
                }
                bytes.extend_from_slice(&chunk[..n]);
            }
            if bytes.len() != size {
                return Err(self.error(
                    StorageErrorKind::Transient,
                    "read",
                    &what,
                    &format!("got {} of {size} bytes", bytes.len()),
                ));
            }
            Ok(bytes)
        })
        .await
    }

    async fn read_range(&self, file: FileId, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
        let bytes = self.objects.get(file, || self.download(file)).await?;
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

    fn prewarm(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.store().await;
        })
    }

    fn read(
        &self,
        file: FileId,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StorageError>> {
        Box::pin(self.read_range(file, range))
    }

    fn read_ranges(
        &self,
        file: FileId,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StorageError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(ranges.len());
            for r in ranges {
                out.push(self.read_range(file, r).await?);
            }
            Ok(out)
        })
    }
}

/// Litestream's object name for a file (its `Path` is empty for NATS).
fn object_name(file: FileId) -> String {
    format!("ltx/{}/{}", file.level.get(), file.name)
}

/// The file an object name stands for, if it is one of the replica's.
fn file_info(name: &str, size: usize) -> Option<FileInfo> {
    let rest = name.strip_prefix("ltx/")?;
    let (dir, file) = rest.split_once('/')?;
    let level = dir.parse::<u8>().ok().and_then(Level::new)?;
    let name = parse_name(file)?;
    Some(FileInfo {
        id: FileId { level, name },
        size: u64::try_from(size).ok()?,
    })
}

/// A NATS error's kind, from its text (the client's error kinds differ per
/// call and do not always say more).
fn classify(cause: &str) -> StorageErrorKind {
    let c = cause.to_ascii_lowercase();
    if c.contains("authorization") || c.contains("authentication") || c.contains("permission") {
        StorageErrorKind::Auth
    } else if c.contains("stream not found") || c.contains("not found") {
        StorageErrorKind::NotFound
    } else if c.contains("timed out")
        || c.contains("timeout")
        || c.contains("no responders")
        || c.contains("connection")
        || c.contains("broken pipe")
        || c.contains("disconnected")
    {
        StorageErrorKind::Transient
    } else {
        StorageErrorKind::Other
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
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
            file_info(&object_name(id), 77),
            Some(FileInfo { id, size: 77 })
        );
        assert_eq!(
            file_info("ltx/10/0000000000000001-0000000000000005.ltx", 1),
            None
        );
        assert_eq!(
            file_info("db/ltx/0/0000000000000001-0000000000000005.ltx", 1),
            None
        );
        assert_eq!(file_info("ltx/0/notes.txt", 1), None);
    }

    #[test]
    fn error_kinds_from_text() {
        assert_eq!(classify("authorization violation"), StorageErrorKind::Auth);
        assert_eq!(
            classify("failed to get Object Store: stream not found"),
            StorageErrorKind::NotFound
        );
        assert_eq!(classify("request timed out"), StorageErrorKind::Transient);
        assert_eq!(classify("weird"), StorageErrorKind::Other);
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
            store: Mutex::new(None),
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
