//! Replica URLs: which backend, where, and a redacted form for messages.

use std::fmt;
use std::path::PathBuf;

use super::error::{StorageError, StorageErrorKind};

/// The backends a URL can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    File,
    S3,
    Gs,
    Abs,
    Sftp,
    /// `webdav://` (HTTP) and `webdavs://` (HTTPS).
    Webdav,
    Webdavs,
    Nats,
    Oss,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::File => "file",
            Scheme::S3 => "s3",
            Scheme::Gs => "gs",
            Scheme::Abs => "abs",
            Scheme::Sftp => "sftp",
            Scheme::Webdav => "webdav",
            Scheme::Webdavs => "webdavs",
            Scheme::Nats => "nats",
            Scheme::Oss => "oss",
        }
    }
}

/// Query parameters whose values are secrets and are never printed.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "secret",
    "secret-access-key",
    "access-key",
    "account-key",
    "sas",
    "sig",
    "token",
    "credential",
    "connection-string",
    "jwt",
    "seed",
    "nkey",
    // S3's SSE-C key (and its MD5, a fingerprint of it), in both spellings.
    "sseCustomerKey",
    "sse-customer-key",
    "sseCustomerKeyMD5",
    "sse-customer-key-md5",
];

/// A parsed replica URL. `Display` shows it with credentials removed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReplicaUrl {
    scheme: Scheme,
    url: url::Url,
    redacted: String,
}

impl ReplicaUrl {
    /// Parses `file:///path`, a bare local path, `s3://`, `gs://`, `gcs://`,
    /// `abs://`, `sftp://`, `webdav://`, `webdavs://`, `nats://` or `oss://`.
    pub fn parse(raw: &str) -> Result<ReplicaUrl, StorageError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(config("file", "the replica URL is empty"));
        }
        if !raw.contains("://") {
            return Self::from_local_path(raw);
        }
        let url = url::Url::parse(raw).map_err(|e| {
            config(
                "url",
                format!("cannot parse replica URL {}: {e}", redact_raw(raw)),
            )
        })?;
        let scheme = match url.scheme() {
            "file" => Scheme::File,
            "s3" => Scheme::S3,
            "gs" | "gcs" => Scheme::Gs,
            "abs" => Scheme::Abs,
            "sftp" => Scheme::Sftp,
            "webdav" => Scheme::Webdav,
            "webdavs" => Scheme::Webdavs,
            "nats" => Scheme::Nats,
            "oss" => Scheme::Oss,
            other => {
                return Err(config(
                    "url",
                    format!(
                        "unsupported replica URL scheme {other:?}: use file://, s3://, gs://, abs://, sftp://, webdav://, webdavs://, nats:// or oss://"
                    ),
                ));
            }
        };
        if scheme != Scheme::File && url.host_str().is_none_or(str::is_empty) {
            return Err(config(
                scheme.name(),
                format!("replica URL {} names no bucket or host", redact(&url)),
            ));
        }
        let redacted = redact(&url);
        Ok(ReplicaUrl {
            scheme,
            url,
            redacted,
        })
    }

    fn from_local_path(raw: &str) -> Result<ReplicaUrl, StorageError> {
        let path = std::path::absolute(raw)
            .map_err(|e| config("file", format!("bad replica path {raw:?}: {e}")))?;
        let url = url::Url::from_file_path(&path)
            .map_err(|()| config("file", format!("bad replica path {raw:?}")))?;
        let redacted = url.to_string();
        Ok(ReplicaUrl {
            scheme: Scheme::File,
            url,
            redacted,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The full URL, credentials included: only for backends to read.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The local folder of a `file://` URL.
    pub fn file_path(&self) -> Option<PathBuf> {
        (self.scheme == Scheme::File)
            .then(|| self.url.to_file_path().ok())
            .flatten()
    }

    /// The URL with credentials removed.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

impl fmt::Display for ReplicaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for ReplicaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplicaUrl({})", self.redacted)
    }
}

fn config(backend: &'static str, msg: impl Into<String>) -> StorageError {
    StorageError::new(backend, StorageErrorKind::Config, msg)
}

/// The URL without its password and without the values of secret parameters.
pub fn redact(url: &url::Url) -> String {
    let mut out = url.clone();
    // A replica URL has no use for a fragment, and a fragment is free text
    // that could repeat a secret: never print it.
    out.set_fragment(None);
    if out.password().is_some() {
        let _ = out.set_password(Some("REDACTED"));
    } else if out.scheme() == "nats" && !out.username().is_empty() {
        // nats://TOKEN@host: a user name without a password is a token.
        let _ = out.set_username("REDACTED");
    }
    if out.query().is_some() {
        let pairs: Vec<(String, String)> = out
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s));
                (
                    k.into_owned(),
                    if secret {
                        "REDACTED".to_owned()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        out.query_pairs_mut().clear().extend_pairs(pairs);
    }
    out.to_string()
}

/// Best effort for a string that did not parse: drop everything between
/// `://` and the last `@`, and the whole query.
fn redact_raw(raw: &str) -> String {
    let no_query = raw.split('?').next().unwrap_or_default();
    match (no_query.find("://"), no_query.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            format!("{}://REDACTED@{}", &no_query[..s], &no_query[at + 1..])
        }
        _ => no_query.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_scheme() {
        let cases = [
            ("file:///var/lib/replica", Scheme::File),
            ("/var/lib/replica", Scheme::File),
            ("s3://bucket/db?endpoint=http://127.0.0.1:9000", Scheme::S3),
            ("gs://bucket/db", Scheme::Gs),
            ("gcs://bucket/db", Scheme::Gs),
            ("abs://account@container/db", Scheme::Abs),
            ("sftp://user:pw@host:22/db", Scheme::Sftp),
            ("webdav://u:p@127.0.0.1:8080/db", Scheme::Webdav),
            ("webdavs://dav.example.com/db", Scheme::Webdavs),
            ("nats://127.0.0.1:4222/bucket", Scheme::Nats),
            ("oss://bucket.oss-cn-hangzhou.aliyuncs.com/db", Scheme::Oss),
        ];
        for (raw, scheme) in cases {
            assert_eq!(
                ReplicaUrl::parse(raw).map(|u| u.scheme()),
                Ok(scheme),
                "{raw}"
            );
        }
    }

    #[test]
    fn redaction_drops_the_fragment() {
        // Found by the config_url fuzz target: a fragment repeating the
        // password was printed as it was.
        let url = ReplicaUrl::parse("sftp://u:s3cr3t@host/db#u:s3cr3t@host").unwrap();
        assert_eq!(url.redacted(), "sftp://u:REDACTED@host/db");
        assert!(!format!("{url:?}").contains("s3cr3t"));
    }

    #[test]
    fn rejects_unknown_scheme_and_empty() {
        let err = ReplicaUrl::parse("ftp://host/x").unwrap_err();
        assert!(
            err.message
                .contains("unsupported replica URL scheme \"ftp\""),
            "{err}"
        );
        assert!(ReplicaUrl::parse("  ").is_err());
        assert!(ReplicaUrl::parse("s3:///nobucket").is_err());
    }

    #[test]
    fn never_shows_secrets() {
        let u = ReplicaUrl::parse("sftp://user:hunter2@host/db?sas=sv%3Dtop&key=/k").unwrap();
        let shown = format!("{u} {u:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("top"),
            "{shown}"
        );
        assert!(
            shown.contains("key=%2Fk") || shown.contains("key=/k"),
            "{shown}"
        );
        let n = ReplicaUrl::parse("nats://s3cr3t-token@127.0.0.1:4222/b").unwrap();
        assert!(!n.to_string().contains("s3cr3t"), "{n}");
        assert_eq!(
            redact_raw("sftp://u:secret@h/x?sig=1"),
            "sftp://REDACTED@h/x"
        );
    }
}
