//! `litestream_history`: an eponymous virtual table listing the states the
//! replica can be read at, newest first.
//!
//! ```sql
//! SELECT txid, time, level, file FROM litestream_history;
//! ```

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;

use super::api::{self, alloc_cstr};
use super::ffi::*;
use super::guard::guard;
use super::vfs::main_file_of;
use crate::replica::State;
use crate::runtime;
use crate::timefmt::format_rfc3339_nano;

pub const NAME: &CStr = c"litestream_history";
const SCHEMA: &CStr = c"CREATE TABLE x(txid TEXT, time TEXT, level INTEGER, file TEXT)";

#[repr(C)]
struct Vtab {
    base: sqlite3_vtab,
    db: *mut sqlite3,
}

#[repr(C)]
struct Cursor {
    base: sqlite3_vtab_cursor,
    rows: Vec<State>,
    at: usize,
}

pub static MODULE: sqlite3_module = sqlite3_module {
    iVersion: 1,
    xCreate: None, // eponymous-only: no CREATE VIRTUAL TABLE
    xConnect: Some(x_connect),
    xBestIndex: Some(x_best_index),
    xDisconnect: Some(x_disconnect),
    xDestroy: Some(x_disconnect),
    xOpen: Some(x_open),
    xClose: Some(x_close),
    xFilter: Some(x_filter),
    xNext: Some(x_next),
    xEof: Some(x_eof),
    xColumn: Some(x_column),
    xRowid: Some(x_rowid),
    xUpdate: ptr::null(),
    xBegin: ptr::null(),
    xSync: ptr::null(),
    xCommit: ptr::null(),
    xRollback: ptr::null(),
    xFindFunction: ptr::null(),
    xRename: ptr::null(),
    xSavepoint: ptr::null(),
    xRelease: ptr::null(),
    xRollbackTo: ptr::null(),
    xShadowName: ptr::null(),
};

unsafe extern "C" fn x_connect(
    db: *mut sqlite3,
    _aux: *mut c_void,
    _argc: c_int,
    _argv: *const *const c_char,
    out: *mut *mut sqlite3_vtab,
    _err: *mut *mut c_char,
) -> c_int {
    guard(SQLITE_ERROR, || {
        let Some(declare) = api::get().and_then(|a| a.declare_vtab) else {
            return SQLITE_ERROR;
        };
        // SAFETY: `db` is the connection SQLite is connecting the table on.
        let rc = unsafe { declare(db, SCHEMA.as_ptr()) };
        if rc != SQLITE_OK {
            return rc;
        }
        let vtab = Box::new(Vtab {
            base: sqlite3_vtab {
                pModule: ptr::null(),
                nRef: 0,
                zErrMsg: ptr::null_mut(),
            },
            db,
        });
        // SAFETY: SQLite passes a writable slot; the box is freed in xDisconnect.
        unsafe { *out = Box::into_raw(vtab).cast() };
        SQLITE_OK
    })
}

unsafe extern "C" fn x_best_index(_vtab: *mut sqlite3_vtab, _info: *mut c_void) -> c_int {
    // A full scan is the only plan; SQLite's default estimates are fine.
    SQLITE_OK
}

unsafe extern "C" fn x_disconnect(vtab: *mut sqlite3_vtab) -> c_int {
    guard(SQLITE_ERROR, || {
        // SAFETY: `vtab` came from Box::into_raw in x_connect and is freed once.
        drop(unsafe { Box::from_raw(vtab.cast::<Vtab>()) });
        SQLITE_OK
    })
}

unsafe extern "C" fn x_open(_vtab: *mut sqlite3_vtab, out: *mut *mut sqlite3_vtab_cursor) -> c_int {
    guard(SQLITE_ERROR, || {
        let cursor = Box::new(Cursor {
            base: sqlite3_vtab_cursor {
                pVtab: ptr::null_mut(),
            },
            rows: Vec::new(),
            at: 0,
        });
        // SAFETY: SQLite passes a writable slot; the box is freed in xClose.
        unsafe { *out = Box::into_raw(cursor).cast() };
        SQLITE_OK
    })
}

unsafe extern "C" fn x_close(cursor: *mut sqlite3_vtab_cursor) -> c_int {
    guard(SQLITE_ERROR, || {
        // SAFETY: `cursor` came from Box::into_raw in x_open and is freed once.
        drop(unsafe { Box::from_raw(cursor.cast::<Cursor>()) });
        SQLITE_OK
    })
}

unsafe extern "C" fn x_filter(
    cursor: *mut sqlite3_vtab_cursor,
    _idx: c_int,
    _idx_str: *const c_char,
    _argc: c_int,
    _argv: *mut *mut sqlite3_value,
) -> c_int {
    guard(SQLITE_ERROR, || {
        // SAFETY: `cursor` is one of ours; SQLite set its pVtab to our table.
        let c = unsafe { &mut *cursor.cast::<Cursor>() };
        let vtab = c.base.pVtab.cast::<Vtab>();
        // SAFETY: the table outlives its cursors.
        let db = unsafe { (*vtab).db };
        // SAFETY: `db` is the live connection the table belongs to.
        let rows = unsafe { main_file_of(db) }
            .and_then(|f| f.replica())
            .and_then(|r| runtime::block_on(async move { r.io.catalog.history().await })?);
        match rows {
            Ok(rows) => {
                c.rows = rows;
                c.at = 0;
                SQLITE_OK
            }
            Err(e) => {
                // SAFETY: zErrMsg is ours to set with an sqlite3_malloc string;
                // SQLite frees it.
                unsafe { (*vtab).base.zErrMsg = alloc_cstr(&format!("litestream_history: {e}")) };
                SQLITE_ERROR
            }
        }
    })
}

unsafe extern "C" fn x_next(cursor: *mut sqlite3_vtab_cursor) -> c_int {
    // SAFETY: `cursor` is one of ours.
    let c = unsafe { &mut *cursor.cast::<Cursor>() };
    c.at += 1;
    SQLITE_OK
}

unsafe extern "C" fn x_eof(cursor: *mut sqlite3_vtab_cursor) -> c_int {
    // SAFETY: `cursor` is one of ours.
    let c = unsafe { &*cursor.cast::<Cursor>() };
    c_int::from(c.at >= c.rows.len())
}

unsafe extern "C" fn x_rowid(cursor: *mut sqlite3_vtab_cursor, out: *mut i64) -> c_int {
    // SAFETY: `cursor` is one of ours; SQLite passes a writable i64.
    unsafe { *out = (*cursor.cast::<Cursor>()).at as i64 };
    SQLITE_OK
}

unsafe extern "C" fn x_column(
    cursor: *mut sqlite3_vtab_cursor,
    ctx: *mut sqlite3_context,
    col: c_int,
) -> c_int {
    guard(SQLITE_ERROR, || {
        // SAFETY: `cursor` is one of ours.
        let c = unsafe { &*cursor.cast::<Cursor>() };
        let (Some(row), Some(api)) = (c.rows.get(c.at), api::get()) else {
            return SQLITE_ERROR;
        };
        let text = match col {
            0 => row.txid.to_string(),
            1 => format_rfc3339_nano(row.timestamp_ms),
            2 => {
                if let Some(ri) = api.result_int64 {
                    // SAFETY: `ctx` is the live column context.
                    unsafe { ri(ctx, i64::from(row.file.level.get())) };
                }
                return SQLITE_OK;
            }
            _ => row.file.name.to_string(),
        };
        if let (Some(rt), Ok(n)) = (api.result_text, c_int::try_from(text.len())) {
            // SAFETY: TRANSIENT makes SQLite copy the bytes before returning.
            unsafe { rt(ctx, text.as_ptr().cast(), n, SQLITE_TRANSIENT) };
        }
        SQLITE_OK
    })
}

/// Registers the `litestream_history` table-valued module on `db`.
///
/// # Safety
/// `db` must be an open connection of the host whose API table is set.
pub unsafe fn register(db: *mut sqlite3) -> c_int {
    let Some(module) = api::get().and_then(|a| a.create_module_v2) else {
        return SQLITE_ERROR;
    };
    // SAFETY: `db` is open (caller's contract); the module is a static that
    // outlives it.
    unsafe {
        module(
            db,
            NAME.as_ptr(),
            (&raw const MODULE).cast(),
            std::ptr::null_mut(),
            None,
        )
    }
}
