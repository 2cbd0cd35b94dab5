//! The crate's error type. Its mapping to SQLite result codes lives at the
//! SQLite edge, in `sqlite/codes.rs`.

use std::fmt;

use crate::ltx::{LtxError, Txid};
use crate::storage::{StorageError, StorageErrorKind};

/// Everything that can go wrong between SQLite and the replica.
#[derive(Clone, Debug)]
pub enum Error {
    /// A bad URL, parameter or environment variable.
    Config(String),
    /// Storage failed (after the backend's retries).
    Storage(StorageError),
    /// An LTX file is not what Litestream writes.
    Corrupt { file: String, source: LtxError },
    /// A page the database needs is in no file, or some other inconsistency.
    Missing(String),
    /// The replica cannot be opened (empty, gap at the start, no such folder).
    Unavailable(String),
    /// The state at `txid` is no longer in the replica: compaction or
    /// retention removed a file of it while a transaction read it.
    Compacted { txid: Txid },
    /// The replica was reset (a new lineage) under a snapshot of the old one.
    Reset(String),
    /// A write was attempted: the replica is read-only.
    ReadOnly,
    /// An SQL function or pragma was used wrongly.
    Usage(String),
    /// A statement used up its connection's storage request budget.
    Budget(String),
    /// A bug: a panic was caught at the boundary.
    Internal(String),
}

impl Error {
    /// A storage failure that may pass if tried again (a timeout, throttling,
    /// a 5xx). This and the two below are the one place that looks inside a
    /// storage error for the layers above (the VFS, SQLite's codes).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Storage(e) if e.kind == StorageErrorKind::Transient)
    }

    /// A file of the state was not found (compaction or retention removed
    /// it, or a reset did): the VFS re-plans the state it reads.
    pub fn is_vanished(&self) -> bool {
        matches!(self, Error::Storage(e) if e.kind == StorageErrorKind::NotFound)
    }

    /// A file was written again since it was listed (a reset): the VFS
    /// raises the reset at once, never through the re-plan.
    pub fn is_rewritten(&self) -> bool {
        matches!(self, Error::Storage(e) if e.kind == StorageErrorKind::Changed)
    }

    pub fn corrupt(file: impl fmt::Display, source: LtxError) -> Error {
        Error::Corrupt {
            file: file.to_string(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m)
            | Error::Missing(m)
            | Error::Unavailable(m)
            | Error::Usage(m)
            | Error::Reset(m)
            | Error::Budget(m) => f.write_str(m),
            Error::Storage(e) => write!(f, "{e}"),
            Error::Compacted { txid } => write!(
                f,
                "the state at TXID {txid} is no longer in the replica (compacted away); retry the transaction"
            ),
            Error::Corrupt { file, source } => write!(f, "corrupt LTX file {file}: {source}"),
            Error::ReadOnly => f.write_str(
                "attempt to write a readonly database: a Litestream replica is read-only",
            ),
            Error::Internal(m) => write!(f, "internal error in litestream-vfs: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Error {
        Error::Storage(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
