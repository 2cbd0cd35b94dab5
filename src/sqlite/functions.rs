//! SQL functions: `litestream_txid()`, `litestream_time()`, `litestream_lag()`.
//! Registered on every connection (an automatic extension), they report on
//! the connection's main database and fail with a clear message on a
//! connection that is not a replica.

use std::ffi::{CStr, c_int, c_void};
use std::ptr;

use super::api;
use super::ffi::*;
use super::guard::guard_unit;
use super::vfs::db_file;
use crate::error::{Error, Result};
use crate::vfs::DbFile;

type Impl = fn(&DbFile) -> Result<Value>;

enum Value {
    Text(String),
    Int(i64),
}

const FUNCTIONS: &[(&CStr, Impl)] = &[
    (c"litestream_txid", |f| f.txid_text().map(Value::Text)),
    (c"litestream_time", |f| f.time_text().map(Value::Text)),
    (c"litestream_lag", |f| f.lag().map(Value::Int)),
];

/// Registers the functions on `db`. Returns the first failing code.
///
/// # Safety
/// `db` must be an open connection of the host whose API table is set.
pub unsafe fn register(db: *mut sqlite3) -> c_int {
    let Some(create) = api::get().and_then(|a| a.create_function_v2) else {
        return SQLITE_ERROR;
    };
    for (i, (name, _)) in FUNCTIONS.iter().enumerate() {
        // SAFETY: `db` is open (caller's contract); the name is a static C
        // string; user data is the function's index, read back in `call`.
        let rc = unsafe {
            create(
                db,
                name.as_ptr(),
                0,
                SQLITE_UTF8,
                i as *mut c_void,
                Some(call),
                None,
                None,
                None,
            )
        };
        if rc != SQLITE_OK {
            return rc;
        }
    }
    SQLITE_OK
}

unsafe extern "C" fn call(ctx: *mut sqlite3_context, _argc: c_int, _argv: *mut *mut sqlite3_value) {
    guard_unit(|| {
        let Some(api) = api::get() else { return };
        // SAFETY: `ctx` is the live context of this call.
        let index = api
            .user_data
            .map_or(usize::MAX, |f| unsafe { f(ctx) } as usize);
        let Some((name, f)) = FUNCTIONS.get(index) else {
            return;
        };
        // SAFETY: `ctx` is the live context of this call.
        let result = unsafe { main_file(ctx) }.and_then(f);
        match result {
            Ok(Value::Text(s)) => {
                if let (Some(rt), Ok(n)) = (api.result_text, c_int::try_from(s.len())) {
                    // SAFETY: TRANSIENT makes SQLite copy the bytes before returning.
                    unsafe { rt(ctx, s.as_ptr().cast(), n, SQLITE_TRANSIENT) };
                }
            }
            Ok(Value::Int(v)) => {
                if let Some(ri) = api.result_int64 {
                    // SAFETY: `ctx` is live.
                    unsafe { ri(ctx, v) };
                }
            }
            Err(e) => {
                let msg = format!("{}(): {e}", name.to_string_lossy());
                if let (Some(re), Ok(n)) = (api.result_error, c_int::try_from(msg.len())) {
                    // SAFETY: SQLite copies the message of the given length.
                    unsafe { re(ctx, msg.as_ptr().cast(), n) };
                }
            }
        }
    });
}

/// The replica file behind the connection's main database.
///
/// # Safety
/// `ctx` must be the live context of a function call.
unsafe fn main_file<'a>(ctx: *mut sqlite3_context) -> Result<&'a DbFile> {
    let api = api::get().ok_or_else(|| Error::Internal("no API table".into()))?;
    let (Some(db_of), Some(fcntl)) = (api.context_db_handle, api.file_control) else {
        return Err(Error::Internal("host lacks sqlite3_file_control".into()));
    };
    // SAFETY: `ctx` is live, so is its connection.
    let db = unsafe { db_of(ctx) };
    let mut file: *mut sqlite3_file = ptr::null_mut();
    // SAFETY: FILE_POINTER writes the main database's sqlite3_file pointer.
    unsafe {
        fcntl(
            db,
            c"main".as_ptr(),
            SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast(),
        )
    };
    // SAFETY: `file` is null or the connection's open main database file,
    // which stays open for the duration of this call.
    unsafe { db_file(file) }.ok_or_else(|| {
        Error::Usage("this connection's main database is not a Litestream replica (open it with vfs=litestream)".into())
    })
}
