//! SQL functions: `litestream_txid()`, `litestream_time()`, `litestream_lag()`
//! (whole seconds since the last successful poll, as the official extension
//! has it), `litestream_confirmed_lag()` (REAL seconds since the replica last
//! confirmed that it holds the newest state storage has) and
//! `litestream_confirmed_time()` (that moment, RFC 3339).
//! Registered on every connection (an automatic extension), they report on
//! the connection's main database and fail with a clear message on a
//! connection that is not a replica.

use std::ffi::{CStr, c_int, c_void};
use std::ptr;

use super::api;
use super::ffi::*;
use super::guard::{catch_panic, guard_unit};
use super::vfs::main_file_of;
use crate::error::{Error, Result};
use crate::vfs::{DbFile, PanicHook};

type Impl = fn(&DbFile, Option<String>) -> Result<Value>;

enum Value {
    Text(String),
    Int(i64),
    Real(f64),
    Null,
}

struct Function {
    name: &'static CStr,
    args: c_int,
    flags: c_int,
    run: Impl,
}

const FUNCTIONS: &[Function] = &[
    Function {
        name: c"litestream_txid",
        args: 0,
        flags: SQLITE_UTF8,
        run: |f, _| f.txid_text().map(Value::Text),
    },
    Function {
        name: c"litestream_time",
        args: 0,
        flags: SQLITE_UTF8,
        run: |f, _| f.time_text().map(Value::Text),
    },
    Function {
        name: c"litestream_lag",
        args: 0,
        flags: SQLITE_UTF8,
        run: |f, _| f.lag().map(Value::Int),
    },
    Function {
        name: c"litestream_confirmed_lag",
        args: 0,
        flags: SQLITE_UTF8,
        run: |f, _| f.replica().map(|r| Value::Real(r.confirmed_lag())),
    },
    Function {
        name: c"litestream_confirmed_time",
        args: 0,
        flags: SQLITE_UTF8,
        run: |f, _| {
            f.replica()
                .map(|r| Value::Text(crate::timefmt::format_rfc3339_millis(r.confirmed_ms())))
        },
    },
    // DIRECTONLY: a view or trigger must not move a connection in time.
    Function {
        name: c"litestream_set_time",
        args: 1,
        flags: SQLITE_UTF8 | SQLITE_DIRECTONLY,
        run: |f, t| {
            let t = t.ok_or_else(|| {
                Error::Usage(format!(
                    "needs a time; accepted: {}",
                    crate::vfs::ACCEPTED_TIMES
                ))
            })?;
            f.set_time_text(&t).map(|()| Value::Null)
        },
    },
];

/// Registers the functions on `db`. Returns the first failing code.
///
/// # Safety
/// `db` must be an open connection of the host whose API table is set.
pub unsafe fn register(db: *mut sqlite3) -> c_int {
    let Some(create) = api::get().and_then(|a| a.create_function_v2) else {
        return SQLITE_ERROR;
    };
    for (i, f) in FUNCTIONS.iter().enumerate() {
        // SAFETY: `db` is open (caller's contract); the name is a static C
        // string; user data is the function's index, read back in `call`.
        let rc = unsafe {
            create(
                db,
                f.name.as_ptr(),
                f.args,
                f.flags,
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

unsafe extern "C" fn call(ctx: *mut sqlite3_context, argc: c_int, argv: *mut *mut sqlite3_value) {
    guard_unit(|| {
        let Some(api) = api::get() else { return };
        // SAFETY: `ctx` is the live context of this call.
        let index = api
            .user_data
            .map_or(usize::MAX, |f| unsafe { f(ctx) } as usize);
        let Some(f) = FUNCTIONS.get(index) else {
            return;
        };
        // SAFETY: argv holds argc live values for the duration of the call.
        let arg = (argc > 0 && !argv.is_null())
            .then(|| unsafe { text_of(*argv) })
            .flatten();
        // A panic in the function is an error on the context, not a NULL
        // that looks like data.
        let result = catch_panic(|| {
            // SAFETY: `ctx` is the live context of this call.
            unsafe { main_file(ctx) }.and_then(|file| {
                file.hooks().fire(PanicHook::Function);
                (f.run)(file, arg)
            })
        });
        // SAFETY: `ctx` is the live context of this call.
        unsafe { set_result(api, ctx, result) };
    });
}

/// The text of a value (numbers as SQLite prints them); `None` for NULL.
///
/// # Safety
/// `v` must be a live `sqlite3_value`.
unsafe fn text_of(v: *mut sqlite3_value) -> Option<String> {
    let api = api::get()?;
    // SAFETY: `v` is live (caller's contract).
    if api.value_type.map(|t| unsafe { t(v) }) == Some(SQLITE_NULL) {
        return None;
    }
    // SAFETY: value_text returns a NUL-terminated UTF-8 string or null, valid
    // until the value changes; we copy it at once.
    let p = api.value_text.map_or(ptr::null(), |t| unsafe { t(v) });
    (!p.is_null()).then(|| {
        // SAFETY: a non-null result is NUL-terminated.
        unsafe { CStr::from_ptr(p.cast()) }
            .to_string_lossy()
            .into_owned()
    })
}

/// Hands a function's outcome to SQLite.
///
/// # Safety
/// `ctx` must be the live context of the call.
unsafe fn set_result(api: &super::ApiRoutines, ctx: *mut sqlite3_context, result: Result<Value>) {
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
        Ok(Value::Real(v)) => {
            if let Some(rd) = api.result_double {
                // SAFETY: `ctx` is live.
                unsafe { rd(ctx, v) };
            }
        }
        Ok(Value::Null) => {
            if let Some(rn) = api.result_null {
                // SAFETY: `ctx` is live.
                unsafe { rn(ctx) };
            }
        }
        Err(e) => {
            // The bare message, as the official extension's functions
            // return it: code matches on its exact text.
            let msg = e.to_string();
            if let (Some(re), Ok(n)) = (api.result_error, c_int::try_from(msg.len())) {
                // SAFETY: SQLite copies the message of the given length.
                unsafe { re(ctx, msg.as_ptr().cast(), n) };
            }
        }
    }
}

/// The replica file behind the connection's main database.
///
/// # Safety
/// `ctx` must be the live context of a function call.
unsafe fn main_file<'a>(ctx: *mut sqlite3_context) -> Result<&'a DbFile> {
    let api = api::get().ok_or_else(|| Error::Internal("no API table".into()))?;
    let Some(db_of) = api.context_db_handle else {
        return Err(Error::Internal(
            "host lacks sqlite3_context_db_handle".into(),
        ));
    };
    // SAFETY: `ctx` is live, so is its connection.
    unsafe { main_file_of(db_of(ctx)) }
}
