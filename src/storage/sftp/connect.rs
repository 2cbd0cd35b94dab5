//! One SSH connection with an SFTP session on it: TCP connect, host key
//! check, authentication (key file, then ssh-agent, then password), then
//! the `sftp` subsystem. Bounded in time as a whole.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use russh::client::{self, Handle};
use russh::keys::{self, PrivateKeyWithHashAlg, PublicKey};
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::fs::File;

use super::super::FileId;
use super::super::error::{StorageError, StorageErrorKind};
use super::super::retry::{CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use super::BACKEND;
use super::config::{HostKeyPolicy, SftpConfig};
use super::pool::Handles;

/// A live connection: the SSH handle keeps the session's channel alive.
pub struct Conn {
    pub handle: Handle<Checker>,
    pub sftp: SftpSession,
    /// Files kept open, so that a page read costs one round trip instead of
    /// open + read + close. LTX files never change once written, and a file
    /// deleted by compaction stays readable through an open handle.
    files: std::sync::Mutex<HashMap<FileId, OpenFile>>,
}

pub type OpenFile = Arc<Handles<File>>;

/// Open handles kept per connection; past this many, all are closed and the
/// count starts again (a replica reads from a handful of files at a time).
const MAX_OPEN_FILES: usize = 32;

impl Conn {
    /// A handle of `path` (the file `id`) for this read alone: a free one
    /// of the file's handles, or a new one (see [`Handles`]).
    pub async fn file(
        &self,
        id: FileId,
        path: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<File>, SftpError> {
        let handles = {
            let mut m = self.files.lock().unwrap_or_else(PoisonError::into_inner);
            if !m.contains_key(&id) && m.len() >= MAX_OPEN_FILES {
                m.clear();
            }
            Arc::clone(m.entry(id).or_default())
        };
        handles.acquire(|| self.sftp.open(path)).await
    }

    /// Closes every kept handle: after a replica reset the same names
    /// belong to other files, and a handle would still read the old one.
    pub fn forget_all(&self) {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Closes the handle of `id` after a failed read.
    pub fn forget(&self, id: FileId) {
        if let Ok(mut m) = self.files.lock() {
            m.remove(&id);
        }
    }
}

/// Checks the server's host key; records why it refused, for the message.
pub struct Checker {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
    refusal: Arc<Mutex<Option<String>>>,
}

impl Checker {
    fn decide(&self, key: &PublicKey) -> Result<(), String> {
        let shown = || {
            key.to_openssh()
                .unwrap_or_else(|_| key.algorithm().to_string())
        };
        match &self.policy {
            HostKeyPolicy::Skip => Ok(()),
            HostKeyPolicy::Pinned(want) => {
                let want_key = keys::parse_public_key_base64(
                    want.split_whitespace().nth(1).unwrap_or(want.as_str()),
                )
                .map_err(|e| format!("the host-key parameter is not a public key: {e}"))?;
                if want_key.key_data() == key.key_data() {
                    Ok(())
                } else {
                    Err(format!(
                        "the server's host key ({}) does not match the host-key parameter",
                        shown()
                    ))
                }
            }
            HostKeyPolicy::KnownHosts(path) => {
                match keys::check_known_hosts_path(&self.host, self.port, key, path) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(format!(
                        "the server's host key ({}) is not in {}: add it (ssh-keyscan -p {} {}), \
                         or pass ?host-key=…",
                        shown(),
                        path.display(),
                        self.port,
                        self.host
                    )),
                    Err(keys::Error::KeyChanged { line }) => Err(format!(
                        "the server's host key ({}) does NOT MATCH the one in {} line {line}: \
                         someone may be impersonating the server, or its key changed",
                        shown(),
                        path.display()
                    )),
                    Err(e) => Err(format!("cannot read {}: {e}", path.display())),
                }
            }
        }
    }
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = server_public_key.public_key();
        match self.decide(&key) {
            Ok(()) => Ok(true),
            Err(why) => {
                if let Ok(mut r) = self.refusal.lock() {
                    *r = Some(why);
                }
                Ok(false)
            }
        }
    }
}

/// Connects, checks, authenticates and starts SFTP, within a time bound.
pub async fn connect(cfg: &SftpConfig) -> Result<Conn, StorageError> {
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, connect_inner(cfg)).await {
        Ok(r) => r,
        Err(_) => Err(err(
            StorageErrorKind::Transient,
            format!(
                "connecting to {}:{} timed out after {:?}",
                cfg.host,
                cfg.port,
                CONNECT_TIMEOUT * 2
            ),
        )),
    }
}

async fn connect_inner(cfg: &SftpConfig) -> Result<Conn, StorageError> {
    let refusal = Arc::new(Mutex::new(None));
    let checker = Checker {
        host: cfg.host.clone(),
        port: cfg.port,
        policy: cfg.host_key.clone(),
        refusal: Arc::clone(&refusal),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(REQUEST_TIMEOUT * 4),
        keepalive_interval: Some(REQUEST_TIMEOUT),
        nodelay: true,
        ..Default::default()
    });
    let mut handle = client::connect(config, (cfg.host.as_str(), cfg.port), checker)
        .await
        .map_err(|e| {
            let why = refusal.lock().ok().and_then(|mut r| r.take());
            match why {
                Some(why) => err(
                    StorageErrorKind::Auth,
                    format!("refused {}:{}: {why}", cfg.host, cfg.port),
                ),
                None => err(
                    StorageErrorKind::Transient,
                    format!("cannot connect to {}:{}: {e}", cfg.host, cfg.port),
                ),
            }
        })?;
    authenticate(&mut handle, cfg).await?;
    let channel = handle.channel_open_session().await.map_err(|e| {
        err(
            StorageErrorKind::Transient,
            format!("opening a session: {e}"),
        )
    })?;
    channel.request_subsystem(true, "sftp").await.map_err(|e| {
        err(
            StorageErrorKind::Other,
            format!("starting the sftp subsystem: {e}"),
        )
    })?;
    let sftp = SftpSession::new(channel.into_stream())
        .await
        .map_err(|e| err(StorageErrorKind::Other, format!("starting SFTP: {e}")))?;
    sftp.set_timeout(REQUEST_TIMEOUT.as_secs());
    Ok(Conn {
        handle,
        sftp,
        files: std::sync::Mutex::new(HashMap::new()),
    })
}

/// Key file, then ssh-agent, then password: the first that the server
/// accepts wins.
async fn authenticate(handle: &mut Handle<Checker>, cfg: &SftpConfig) -> Result<(), StorageError> {
    let mut tried = Vec::new();
    if let Some(path) = &cfg.key_path {
        tried.push("key file");
        let key = keys::load_secret_key(path, None).map_err(|e| {
            err(
                StorageErrorKind::Config,
                format!("cannot load the SSH key {}: {e}", path.display()),
            )
        })?;
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten();
        let r = handle
            .authenticate_publickey(&cfg.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| err(StorageErrorKind::Transient, format!("authenticating: {e}")))?;
        if r.success() {
            return Ok(());
        }
    }
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        tried.push("ssh-agent");
        if agent(handle, cfg).await {
            return Ok(());
        }
    }
    if let Some(pw) = &cfg.password {
        tried.push("password");
        let r = handle
            .authenticate_password(&cfg.user, pw)
            .await
            .map_err(|e| err(StorageErrorKind::Transient, format!("authenticating: {e}")))?;
        if r.success() {
            return Ok(());
        }
    }
    let tried = if tried.is_empty() {
        "nothing to try: give a password in the URL, ?key=PATH, LITESTREAM_SFTP_KEY_PATH or an ssh-agent".to_owned()
    } else {
        format!("tried {}", tried.join(", "))
    };
    Err(err(
        StorageErrorKind::Auth,
        format!(
            "{}:{} refused to authenticate user {:?} ({tried})",
            cfg.host, cfg.port, cfg.user
        ),
    ))
}

/// Tries every identity the agent holds; false when none was accepted.
/// (Unix agents only: on Windows, Pageant is not supported yet.)
#[cfg(not(unix))]
async fn agent(_handle: &mut Handle<Checker>, _cfg: &SftpConfig) -> bool {
    false
}

#[cfg(unix)]
async fn agent(handle: &mut Handle<Checker>, cfg: &SftpConfig) -> bool {
    let Ok(mut agent) = keys::agent::client::AgentClient::connect_env().await else {
        return false;
    };
    let Ok(ids) = agent.request_identities().await else {
        return false;
    };
    let hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    for id in ids {
        let key = id.public_key().into_owned();
        if let Ok(r) = handle
            .authenticate_publickey_with(&cfg.user, key, hash, &mut agent)
            .await
            && r.success()
        {
            return true;
        }
    }
    false
}

fn err(kind: StorageErrorKind, msg: String) -> StorageError {
    StorageError::new(BACKEND, kind, msg)
}
