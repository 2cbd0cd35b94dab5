//! The extension entry point.

use std::ffi::{c_char, c_int};

use super::api::{self, alloc_cstr};
use super::api_table::ApiRoutines;
use super::ffi::*;
use super::guard::guard;
use super::{functions, history_vtab, vfs};

/// Oldest SQLite whose API table has every entry we use (`uri_key`).
const MIN_SQLITE_VERSION: c_int = 3_031_000;

/// Loads the extension into the connection `db`: registers the `litestream`
/// VFS (once per process) and the SQL functions on `db` and, through an
/// automatic extension, on every later connection.
///
/// # Safety
/// The arguments must be those SQLite passes to an extension entry point.
pub unsafe fn init(
    db: *mut sqlite3,
    err: *mut *mut c_char,
    api_table: *const ApiRoutines,
) -> c_int {
    guard(SQLITE_ERROR, || {
        if api_table.is_null() {
            return SQLITE_ERROR;
        }
        let fail = |msg: String| {
            if !err.is_null() {
                // SAFETY: SQLite passes a writable char* slot for the message,
                // which it frees with sqlite3_free.
                unsafe { *err = alloc_cstr(&format!("litestream-vfs: {msg}")) };
            }
            SQLITE_ERROR
        };
        if let Err(msg) = api::set(api_table) {
            return fail(msg);
        }
        let Some(api) = api::get() else {
            return fail("no API table".into());
        };
        // SAFETY: libversion_number takes no arguments.
        let version = api.libversion_number.map_or(0, |f| unsafe { f() });
        if version < MIN_SQLITE_VERSION {
            return fail(format!(
                "needs SQLite 3.31.0 or newer, this host has {version}"
            ));
        }
        if let Err(msg) = vfs::register() {
            return fail(msg);
        }
        #[cfg(unix)]
        super::fork::install();
        // SAFETY: `db` is the connection loading us.
        let rc = unsafe { register_sql(db) };
        if rc != SQLITE_OK {
            return fail(format!("cannot register SQL functions (code {rc})"));
        }
        if let Some(auto) = api.auto_extension {
            // SAFETY: SQLite calls automatic extensions with the entry-point
            // signature, which `auto_init` has; the cast to a bare fn() is how
            // sqlite3_auto_extension is declared. Registering twice is a no-op.
            let rc = unsafe {
                auto(Some(std::mem::transmute::<
                    unsafe extern "C" fn(
                        *mut sqlite3,
                        *mut *mut c_char,
                        *const ApiRoutines,
                    ) -> c_int,
                    unsafe extern "C" fn(),
                >(auto_init)))
            };
            if rc != SQLITE_OK {
                return fail(format!(
                    "cannot register the automatic extension (code {rc})"
                ));
            }
        }
        SQLITE_OK_LOAD_PERMANENTLY
    })
}

/// Runs for every connection opened after loading: adds the SQL functions.
/// It never fails, so that no later open can fail because of us.
unsafe extern "C" fn auto_init(
    db: *mut sqlite3,
    _err: *mut *mut c_char,
    _api: *const ApiRoutines,
) -> c_int {
    guard(SQLITE_OK, || {
        // SAFETY: SQLite passes the new connection.
        let _ = unsafe { register_sql(db) };
        SQLITE_OK
    })
}

/// The SQL functions and the history table, on one connection.
///
/// # Safety
/// `db` must be an open connection of the host whose API table is set.
unsafe fn register_sql(db: *mut sqlite3) -> c_int {
    // SAFETY: forwarded from the caller's contract.
    match unsafe { functions::register(db) } {
        // SAFETY: as above.
        SQLITE_OK => unsafe { history_vtab::register(db) },
        rc => rc,
    }
}
