//! Signing in to the server and opening the bucket, through `async-nats`.
//!
//! The URL's forms map onto the client's options: user and password,
//! token, credentials file (JWT + NKEY signature, done by the client);
//! TLS with our own rustls configuration (the system's trust store or
//! exactly the `root-cas` given, verified always). The client tries
//! one reconnect of its own at most: a connection that fails is dropped by
//! the storage and made anew on the next call, inside the caller's budget.

use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::object_store::ObjectStore;
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::{self, context::ObjectStoreErrorKind};
use async_nats::{Client, ConnectErrorKind, ConnectOptions};

use super::config::{Auth, NatsConfig};
use super::failure::Failure;
use super::tls;
use crate::storage::error::{StorageErrorKind, chain};

const SIGN_IN_LATE: &str = "the server did not finish the sign-in in time";

/// A signed-in connection and the bucket's handles.
pub struct Bucket {
    client: Client,
    /// The object store: metadata (listing, one object's info).
    pub store: ObjectStore,
    /// The stream behind it (`OBJ_<bucket>`): an object's chunks.
    pub stream: Stream<()>,
}

impl Bucket {
    /// Whether the connection has gone (it is not made again by itself).
    pub fn is_closed(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Disconnected
    }

    /// A fresh inbox subject for a consumer's deliveries.
    pub fn inbox(&self) -> String {
        self.client.new_inbox()
    }
}

/// Connects (`connect` bounds the TCP, TLS and sign-in steps), then opens
/// the bucket (`request` bounds each JetStream call).
pub async fn open(
    cfg: &NatsConfig,
    connect: Duration,
    request: Duration,
) -> Result<Bucket, Failure> {
    let options = options(cfg, connect, request).await?;
    let client = tokio::time::timeout(connect, options.connect(cfg.server.as_str()))
        .await
        .map_err(|_| Failure::new(StorageErrorKind::Transient, SIGN_IN_LATE))?
        .map_err(|e| {
            if e.kind() == ConnectErrorKind::TimedOut {
                return Failure::new(StorageErrorKind::Transient, SIGN_IN_LATE);
            }
            let kind = match e.kind() {
                ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                    StorageErrorKind::Auth
                }
                ConnectErrorKind::ServerParse => StorageErrorKind::Config,
                ConnectErrorKind::Tls => StorageErrorKind::Other,
                // A refused certificate comes as an I/O error: not retried.
                _ if refused_by_tls(&e) => StorageErrorKind::Other,
                _ => StorageErrorKind::Transient,
            };
            Failure::new(kind, chain(&e))
        })?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(request);
    let store = bounded(request, js.get_object_store(&cfg.bucket))
        .await?
        .map_err(|e| {
            let missing = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<jetstream::context::GetStreamError>())
                .is_some_and(
                    |g| matches!(g.kind(), GetStreamErrorKind::JetStream(j) if j.code() == 404),
                );
            let kind = match e.kind() {
                _ if missing => StorageErrorKind::NotFound,
                ObjectStoreErrorKind::InvalidBucketName => StorageErrorKind::Config,
                ObjectStoreErrorKind::GetStore => StorageErrorKind::Transient,
            };
            Failure::new(kind, chain(&e))
        })?;
    // A handle only (no request): the bucket's stream was checked above.
    let stream = js
        .get_stream_no_info(format!("OBJ_{}", cfg.bucket))
        .await
        .map_err(|e| Failure::new(StorageErrorKind::Config, chain(&e)))?;
    Ok(Bucket {
        client,
        store,
        stream,
    })
}

async fn options(
    cfg: &NatsConfig,
    connect: Duration,
    request: Duration,
) -> Result<ConnectOptions, Failure> {
    let options = ConnectOptions::new()
        .name("litestream-vfs")
        .connection_timeout(connect)
        .request_timeout(Some(request))
        .max_reconnects(1)
        .ignore_discovered_servers();
    let options = match &cfg.auth {
        Auth::None => options,
        Auth::Token(t) => options.token(t.clone()),
        Auth::UserPassword(u, p) => options.user_and_password(u.clone(), p.clone()),
        Auth::CredsFile(path) => options.credentials_file(path).await.map_err(|e| {
            // The client's messages name what is wrong, never the file's text.
            Failure::new(
                StorageErrorKind::Config,
                format!("credentials file {}: {e}", path.display()),
            )
        })?,
    };
    if !cfg.tls {
        return Ok(options);
    }
    let config = tls::client_config(cfg)
        .map_err(|e| Failure::new(StorageErrorKind::Config, format!("TLS set-up: {e}")))?;
    Ok(options.require_tls(true).tls_client_config(config))
}

/// `fut`, failing as transient if it takes longer than `t`.
pub async fn bounded<T>(t: Duration, fut: impl Future<Output = T>) -> Result<T, Failure> {
    tokio::time::timeout(t, fut)
        .await
        .map_err(|_| Failure::new(StorageErrorKind::Transient, format!("no answer in {t:?}")))
}

/// Whether rustls refused the handshake somewhere in `e`'s sources.
fn refused_by_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let io_inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<rustls::Error>());
        if err.is::<rustls::Error>() || io_inner {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::url::ReplicaUrl;

    #[tokio::test]
    async fn a_bad_credentials_file_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user.creds");
        let (jwt, seed) = (
            "eyJhbGciOiJlZDI1NTE5In0.e30.c2ln",
            "SUAJUNKSEEDNOTBASE32!!!!",
        );
        std::fs::write(
            &path,
            format!(
                "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
                 -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
            ),
        )
        .unwrap();
        let url = format!("nats://127.0.0.1:1/b?creds={}", path.display());
        let cfg = NatsConfig::parse(&ReplicaUrl::parse(&url).unwrap()).unwrap();
        let t = Duration::from_secs(1);
        let Err(f) = options(&cfg, t, t).await else {
            panic!("a seed that is not base32 was accepted");
        };
        assert_eq!(f.kind, StorageErrorKind::Config);
        assert!(f.text.contains("credentials file"), "{}", f.text);
        assert!(
            !f.text.contains(seed) && !f.text.contains(jwt),
            "{}",
            f.text
        );
    }
}
