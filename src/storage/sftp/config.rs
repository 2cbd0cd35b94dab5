//! What an `sftp://` URL asks for: where, as whom, with which credentials,
//! and how the server's host key is checked.

use std::fmt;
use std::path::PathBuf;

use super::super::error::{StorageError, StorageErrorKind};
use super::super::params::{Params, env};
use super::super::url::ReplicaUrl;
use super::BACKEND;

const PARAMS: &[&str] = &["key", "host-key", "known-hosts", "skip-host-key-check"];

/// How the server proves who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// The server's key must equal this one (`?host-key=ssh-ed25519 AAAA…`,
    /// the same form as Litestream's `host-key` setting).
    Pinned(String),
    /// The server must be listed, with this key, in a known_hosts file.
    KnownHosts(PathBuf),
    /// No check at all (`?skip-host-key-check=true`): anyone on the path
    /// can impersonate the server.
    Skip,
}

#[derive(Clone)]
pub struct SftpConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub key_path: Option<PathBuf>,
    pub host_key: HostKeyPolicy,
    /// The replica folder; relative paths start at the login directory.
    pub root: String,
}

impl fmt::Debug for SftpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "REDACTED"))
            .field("key_path", &self.key_path)
            .field("host_key", &self.host_key)
            .field("root", &self.root)
            .finish()
    }
}

impl SftpConfig {
    pub fn parse(url: &ReplicaUrl) -> Result<SftpConfig, StorageError> {
        let u = url.url();
        let mut params = Params::new(BACKEND, url);
        let key_path = params
            .take("key")
            .or_else(|| env("LITESTREAM_SFTP_KEY_PATH"))
            .map(PathBuf::from);
        let pinned = params.take("host-key");
        let known_hosts = params.take("known-hosts").map(PathBuf::from);
        let skip = params.take_bool("skip-host-key-check")?.unwrap_or(false);
        params.finish(PARAMS)?;

        let host_key = match (skip, pinned, known_hosts) {
            (true, None, None) => HostKeyPolicy::Skip,
            (true, _, _) => {
                return Err(config(
                    "skip-host-key-check=true cannot be combined with host-key or known-hosts",
                ));
            }
            (false, Some(k), None) => HostKeyPolicy::Pinned(k),
            (false, None, Some(p)) => HostKeyPolicy::KnownHosts(p),
            (false, Some(_), Some(_)) => {
                return Err(config("give either host-key or known-hosts, not both"));
            }
            (false, None, None) => HostKeyPolicy::KnownHosts(default_known_hosts()?),
        };
        let user = percent_decode(u.username());
        let user = if user.is_empty() {
            env("USER").ok_or_else(|| config("no user in the sftp:// URL and USER is not set"))?
        } else {
            user
        };
        let password = u.password().map(percent_decode);
        let path = percent_decode(u.path());
        // sftp://host/db is `db` in the login directory; sftp://host//srv/db
        // is the absolute /srv/db.
        let root = path
            .strip_prefix('/')
            .unwrap_or(&path)
            .trim_end_matches('/');
        Ok(SftpConfig {
            host: u.host_str().unwrap_or_default().to_owned(),
            port: u.port().unwrap_or(22),
            user,
            password,
            key_path,
            host_key,
            root: if root.is_empty() {
                ".".into()
            } else {
                root.to_owned()
            },
        })
    }
}

fn default_known_hosts() -> Result<PathBuf, StorageError> {
    let home = env("HOME").ok_or_else(|| {
        config("HOME is not set, so there is no ~/.ssh/known_hosts: give ?known-hosts=PATH or ?host-key=…")
    })?;
    Ok(PathBuf::from(home).join(".ssh").join("known_hosts"))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn config(msg: &str) -> StorageError {
    StorageError::new(BACKEND, StorageErrorKind::Config, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<SftpConfig, StorageError> {
        SftpConfig::parse(&ReplicaUrl::parse(raw).unwrap())
    }

    #[test]
    fn full_url() {
        let c = parse("sftp://bob:p%40ss@host:2222/rel/db?known-hosts=/kh&key=/k").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str()),
            ("host", 2222, "bob")
        );
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert_eq!(c.key_path, Some(PathBuf::from("/k")));
        assert_eq!(c.host_key, HostKeyPolicy::KnownHosts("/kh".into()));
        assert_eq!(c.root, "rel/db");
        assert!(!format!("{c:?}").contains("p@ss"));
    }

    #[test]
    fn absolute_path_and_options() {
        let c = parse("sftp://bob@host//srv/db?skip-host-key-check=true").unwrap();
        assert_eq!(c.root, "/srv/db");
        assert_eq!(c.port, 22);
        assert_eq!(c.host_key, HostKeyPolicy::Skip);
        assert!(parse("sftp://bob@host/x?skip-host-key-check=true&host-key=a").is_err());
        assert!(parse("sftp://bob@host/x?bogus=1").is_err());
    }
}
