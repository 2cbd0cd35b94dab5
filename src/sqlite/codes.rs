//! The one mapping from crate errors to SQLite result codes. `error.rs`
//! knows nothing of SQLite; each callback says which call failed and gets
//! its code here.

use std::ffi::c_int;

use super::ffi::*;
use crate::error::Error;

/// The SQLite call an error surfaces through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// xOpen.
    Open,
    /// xRead: corruption stays SQLITE_CORRUPT, the rest is an I/O error.
    Read,
    /// xLock: "busy" stays SQLITE_BUSY, a write is SQLITE_READONLY.
    Lock,
    /// xFileSize and other I/O methods.
    Io,
    /// SQL functions, pragmas and the history table.
    Sql,
}

/// The primary result code for an error.
pub fn primary(e: &Error) -> c_int {
    match e {
        Error::Config(_) | Error::Usage(_) => SQLITE_ERROR,
        e if e.is_transient() => SQLITE_BUSY,
        Error::Storage(_)
        | Error::Internal(_)
        | Error::Reset(_)
        | Error::Compacted { .. }
        | Error::Budget(_) => SQLITE_IOERR,
        Error::Corrupt { .. } | Error::Missing(_) => SQLITE_CORRUPT,
        Error::Unavailable(_) => SQLITE_CANTOPEN,
        Error::ReadOnly => SQLITE_READONLY,
    }
}

/// The code `call` returns for `e`.
pub fn code(e: &Error, call: Call) -> c_int {
    let p = primary(e);
    match call {
        Call::Open => SQLITE_CANTOPEN,
        Call::Read if p == SQLITE_CORRUPT => SQLITE_CORRUPT,
        Call::Read => SQLITE_IOERR_READ,
        Call::Lock if p == SQLITE_BUSY || p == SQLITE_READONLY => p,
        Call::Lock => SQLITE_IOERR_LOCK,
        Call::Io => SQLITE_IOERR,
        Call::Sql => SQLITE_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::Txid;

    #[test]
    fn each_call_gets_its_code() {
        let corrupt = Error::Missing("x".into());
        let compacted = Error::Compacted { txid: Txid(5) };
        assert_eq!(code(&corrupt, Call::Read), SQLITE_CORRUPT);
        assert_eq!(code(&compacted, Call::Read), SQLITE_IOERR_READ);
        assert_eq!(code(&Error::ReadOnly, Call::Lock), SQLITE_READONLY);
        assert_eq!(code(&corrupt, Call::Lock), SQLITE_IOERR_LOCK);
        assert_eq!(code(&corrupt, Call::Open), SQLITE_CANTOPEN);
        assert_eq!(primary(&Error::Unavailable("x".into())), SQLITE_CANTOPEN);
        assert_eq!(primary(&Error::Usage("x".into())), SQLITE_ERROR);
    }

    #[test]
    fn a_transient_storage_error_is_busy() {
        use crate::storage::{StorageError, StorageErrorKind};
        let e = |kind| Error::Storage(StorageError::new("s3", kind, "x"));
        assert_eq!(primary(&e(StorageErrorKind::Transient)), SQLITE_BUSY);
        assert_eq!(
            code(&e(StorageErrorKind::Transient), Call::Lock),
            SQLITE_BUSY
        );
        assert_eq!(primary(&e(StorageErrorKind::NotFound)), SQLITE_IOERR);
    }
}
