use std::fmt;

/// What went wrong, in terms a caller can branch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The object or folder does not exist (deleted by compaction, wrong path).
    NotFound,
    /// Credentials missing or refused.
    Auth,
    /// The URL or an option is wrong.
    Config,
    /// A failure a retry may cure: timeouts, resets, throttling, 5xx.
    Transient,
    /// The file was written again since it was listed: its name now holds
    /// other bytes (HTTP 412 to a read tied to the listed version). The
    /// replica was reset; never a file to look for elsewhere.
    Changed,
    /// Anything else.
    Other,
}

/// An error from a backend. Its message never holds credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageError {
    pub backend: &'static str,
    pub kind: StorageErrorKind,
    pub message: String,
}

impl StorageError {
    pub fn new(
        backend: &'static str,
        kind: StorageErrorKind,
        message: impl Into<String>,
    ) -> StorageError {
        StorageError {
            backend,
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} storage: {}", self.backend, self.message)
    }
}

impl std::error::Error for StorageError {}

/// An error and all its sources, as one line (a source whose text the line
/// already holds is left out).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
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
