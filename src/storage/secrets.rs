//! Keeping credentials out of messages. Every backend records the secrets it
//! was configured with (keys, passwords, tokens) in a [`Secrets`], and runs
//! every message it produces, including those of the libraries below it,
//! through [`Secrets::scrub`] before the message leaves the backend.

use std::fmt;

/// Shorter values are not scrubbed: replacing every `1` or `ab` in a
/// message would destroy it, and a secret that short protects nothing.
const MIN_SECRET_LEN: usize = 4;

#[derive(Clone, Default)]
pub struct Secrets(Vec<String>);

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Remembers a secret (ignores empty and very short values).
    pub fn add(&mut self, secret: impl AsRef<str>) {
        let s = secret.as_ref();
        if s.len() >= MIN_SECRET_LEN && !self.0.iter().any(|x| x == s) {
            self.0.push(s.to_owned());
            // Longest first, so a secret that contains another is removed whole.
            self.0.sort_by_key(|x| std::cmp::Reverse(x.len()));
        }
    }

    /// `message` with every known secret, and its percent-encoded form,
    /// replaced by `REDACTED`.
    pub fn scrub(&self, message: &str) -> String {
        let mut out = message.to_owned();
        for s in &self.0 {
            out = out.replace(s.as_str(), "REDACTED");
            let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
            if encoded != *s {
                out = out.replace(encoded.as_str(), "REDACTED");
            }
        }
        out
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} hidden)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_plain_and_encoded() {
        let mut s = Secrets::new();
        s.add("abc/def+ghi=");
        s.add("xy");
        let m = s.scrub("key abc/def+ghi= or abc%2Fdef%2Bghi%3D, xy stays");
        assert_eq!(m, "key REDACTED or REDACTED, xy stays");
        assert!(!format!("{s:?}").contains("abc"));
    }
}
