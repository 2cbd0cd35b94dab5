//! What a `nats://` URL says: the server, the bucket, and how to sign in.
//!
//! Litestream takes `nats://[user:pass@]host[:port]/bucket` and, in its
//! config file, a token, a credentials file, TLS and root CAs. The same are
//! URL parameters here: `?token=`, `?creds=PATH`, `?tls=true`,
//! `?root-cas=PATH[,PATH]`, `?client-cert=PATH&client-key=PATH`. A user
//! name without a password (`nats://TOKEN@host/bucket`) is a token, as in
//! NATS's own URLs.

use std::path::PathBuf;

use crate::storage::error::{StorageError, StorageErrorKind};
use crate::storage::params::Params;
use crate::storage::url::ReplicaUrl;

use super::BACKEND;

const PARAMS: &[&str] = &[
    "token",
    "creds",
    "tls",
    "root-cas",
    "client-cert",
    "client-key",
];
const DEFAULT_PORT: u16 = 4222;

#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Token(String),
    UserPassword(String, String),
    CredsFile(PathBuf),
}

/// Names the form, never the token or password.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(REDACTED)"),
            Auth::UserPassword(u, _) => write!(f, "UserPassword({u:?}, REDACTED)"),
            Auth::CredsFile(p) => write!(f, "CredsFile({p:?})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConfig {
    /// `host:port`.
    pub server: String,
    pub bucket: String,
    pub auth: Auth,
    pub tls: bool,
    pub root_cas: Vec<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl NatsConfig {
    pub fn parse(url: &ReplicaUrl) -> Result<NatsConfig, StorageError> {
        let u = url.url();
        let mut params = Params::new(BACKEND, url);
        let token = params.take("token");
        let creds = params.take("creds").map(PathBuf::from);
        let tls = params.take_bool("tls")?;
        let root_cas: Vec<PathBuf> = params
            .take("root-cas")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        let cert = params.take("client-cert").map(PathBuf::from);
        let key = params.take("client-key").map(PathBuf::from);
        params.finish(PARAMS)?;

        let host = u.host_str().unwrap_or_default();
        let server = format!("{host}:{}", u.port().unwrap_or(DEFAULT_PORT));
        let bucket = crate::storage::params::url_prefix(url);
        if bucket.is_empty() {
            return Err(config(format!(
                "{url} names no bucket: use nats://host:port/BUCKET"
            )));
        }
        if !bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(config(format!(
                "{url}: {bucket:?} is not a NATS object store bucket name (letters, digits, - and _ only; \
                 the replica's files sit at ltx/<level>/ in the bucket, as Litestream writes them)"
            )));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = (!u.username().is_empty()).then(|| decode(u.username()));
        let password = u.password().map(decode);
        let auth = match (user, password, token, creds) {
            (_, _, _, Some(path)) => Auth::CredsFile(path),
            (Some(user), Some(pw), _, None) => Auth::UserPassword(user, pw),
            (_, _, Some(token), None) => Auth::Token(token),
            (Some(token), None, None, None) => Auth::Token(token),
            (None, _, None, None) => Auth::None,
        };
        let client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(config(
                    "client-cert and client-key must both be given for mutual TLS",
                ));
            }
        };
        Ok(NatsConfig {
            server,
            bucket,
            auth,
            tls: tls.unwrap_or(false) || !root_cas.is_empty() || client_cert.is_some(),
            root_cas,
            client_cert,
        })
    }

    /// The secrets to keep out of messages.
    pub fn secrets(&self) -> Vec<&str> {
        match &self.auth {
            Auth::Token(t) => vec![t],
            Auth::UserPassword(_, p) => vec![p],
            Auth::None | Auth::CredsFile(_) => Vec::new(),
        }
    }
}

fn config(msg: impl Into<String>) -> StorageError {
    StorageError::new(BACKEND, StorageErrorKind::Config, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<NatsConfig, StorageError> {
        NatsConfig::parse(&ReplicaUrl::parse(raw).unwrap())
    }

    #[test]
    fn auth_forms() {
        let c = parse("nats://alice:s%40cret@127.0.0.1:4333/backups").unwrap();
        assert_eq!(c.server, "127.0.0.1:4333");
        assert_eq!(c.bucket, "backups");
        assert_eq!(c.auth, Auth::UserPassword("alice".into(), "s@cret".into()));
        assert!(!c.tls);
        assert_eq!(c.secrets(), vec!["s@cret"]);
        assert!(!format!("{c:?}").contains("s@cret"), "{c:?}");

        let c = parse("nats://tok3n@h/b").unwrap();
        assert_eq!(c.auth, Auth::Token("tok3n".into()));
        assert!(!format!("{c:?}").contains("tok3n"), "{c:?}");
        assert_eq!(c.server, "h:4222");
        let c = parse("nats://h/b?token=t2").unwrap();
        assert_eq!(c.auth, Auth::Token("t2".into()));
        let c = parse("nats://u:p@h/b?creds=/etc/nats/user.creds").unwrap();
        assert_eq!(c.auth, Auth::CredsFile("/etc/nats/user.creds".into()));
        assert_eq!(parse("nats://h/b").unwrap().auth, Auth::None);
    }

    #[test]
    fn tls_forms() {
        let c = parse("nats://h/b?tls=true").unwrap();
        assert!(c.tls && c.root_cas.is_empty());
        let c = parse("nats://h/b?root-cas=/a.pem,/b.pem").unwrap();
        assert!(c.tls);
        assert_eq!(
            c.root_cas,
            vec![PathBuf::from("/a.pem"), PathBuf::from("/b.pem")]
        );
        let c = parse("nats://h/b?client-cert=/c.pem&client-key=/k.pem").unwrap();
        assert!(c.tls && c.client_cert.is_some());
        let e = parse("nats://h/b?client-cert=/c.pem").unwrap_err();
        assert!(e.message.contains("client-key"), "{e}");
    }

    #[test]
    fn bucket_is_required_and_single() {
        assert!(
            parse("nats://h:4222")
                .unwrap_err()
                .message
                .contains("no bucket")
        );
        assert!(parse("nats://h:4222/").is_err());
        let e = parse("nats://h/a/b").unwrap_err();
        assert!(e.message.contains("bucket name"), "{e}");
        let e = parse("nats://h/b?bogus=1").unwrap_err();
        assert!(e.message.contains("bogus"), "{e}");
    }
}
