//! Query parameters of a replica URL (`?endpoint=…&region=…`), read by the
//! backend that owns them. A parameter nobody read is an error that names it,
//! so a typo never silently falls back to a default.

use super::error::{StorageError, StorageErrorKind};
use super::url::ReplicaUrl;

pub struct Params {
    backend: &'static str,
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn new(backend: &'static str, url: &ReplicaUrl) -> Params {
        let pairs = url
            .url()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Params { backend, pairs }
    }

    /// The value of `name` (the last one if repeated), removed from the set.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let mut found = None;
        self.pairs.retain(|(k, v)| {
            if k == name {
                found = Some(v.clone());
                false
            } else {
                true
            }
        });
        found.filter(|v| !v.is_empty())
    }

    /// The first of `names` that has a value, with the name it came under;
    /// every spelling is removed from the set. Litestream reads some
    /// parameters under two names (`forcePathStyle`, `force-path-style`),
    /// the camelCase one first.
    pub fn take_first(&mut self, names: &[&'static str]) -> Option<(&'static str, String)> {
        let mut found = None;
        for &name in names {
            if let Some(v) = self.take(name) {
                found = found.or(Some((name, v)));
            }
        }
        found
    }

    /// A boolean parameter: `true`/`false`, `1`/`0`, `t`/`f`, `yes`/`no`.
    pub fn take_bool(&mut self, name: &'static str) -> Result<Option<bool>, StorageError> {
        self.take_bool_first(&[name])
    }

    /// [`take_bool`](Self::take_bool) under any of `names` (see
    /// [`take_first`](Self::take_first)).
    pub fn take_bool_first(
        &mut self,
        names: &[&'static str],
    ) -> Result<Option<bool>, StorageError> {
        let Some((name, v)) = self.take_first(names) else {
            return Ok(None);
        };
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "t" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "f" | "no" | "off" => Ok(Some(false)),
            _ => Err(StorageError::new(
                self.backend,
                StorageErrorKind::Config,
                format!("replica URL parameter {name}={v:?} is not a boolean (use true or false)"),
            )),
        }
    }

    /// A positive integer under any of `names`, as Litestream requires of
    /// `concurrency` and `partSize`.
    pub fn take_positive_first(
        &mut self,
        names: &[&'static str],
    ) -> Result<Option<u64>, StorageError> {
        let Some((name, v)) = self.take_first(names) else {
            return Ok(None);
        };
        match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(StorageError::new(
                self.backend,
                StorageErrorKind::Config,
                format!("replica URL parameter {name}={v:?} is not a positive integer"),
            )),
        }
    }

    /// Fails if any parameter was not read.
    pub fn finish(self, known: &[&str]) -> Result<(), StorageError> {
        match self.pairs.first() {
            None => Ok(()),
            Some((k, _)) => Err(StorageError::new(
                self.backend,
                StorageErrorKind::Config,
                format!(
                    "unknown replica URL parameter {k:?} for {}:// (known: {})",
                    self.backend,
                    known.join(", ")
                ),
            )),
        }
    }
}

/// Reads an environment variable, treating empty as unset.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The path part of a replica URL: percent-decoded, without leading or
/// trailing slashes.
pub fn url_prefix(url: &ReplicaUrl) -> String {
    let path = url.url().path();
    let decoded = percent_decode(path);
    decoded.trim_matches('/').to_owned()
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_rejects_leftovers() {
        let u = ReplicaUrl::parse("s3://b/p?region=x&force-path-style=true&bogus=1").unwrap();
        let mut p = Params::new("s3", &u);
        assert_eq!(p.take("region").as_deref(), Some("x"));
        assert_eq!(p.take_bool("force-path-style").unwrap(), Some(true));
        let err = p.finish(&["region"]).unwrap_err();
        assert!(err.message.contains("\"bogus\""), "{err}");
    }

    #[test]
    fn bad_bool_is_named() {
        let u = ReplicaUrl::parse("s3://b/p?skip-verify=maybe").unwrap();
        let mut p = Params::new("s3", &u);
        let err = p.take_bool("skip-verify").unwrap_err();
        assert!(err.message.contains("skip-verify"), "{err}");
    }

    #[test]
    fn prefix_is_decoded_and_trimmed() {
        let u = ReplicaUrl::parse("s3://b/a%20b/c+d/").unwrap();
        assert_eq!(url_prefix(&u), "a b/c+d");
        let u = ReplicaUrl::parse("gs://b").unwrap();
        assert_eq!(url_prefix(&u), "");
    }
}
