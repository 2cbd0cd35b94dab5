//! The `litestream` VFS: trampolines from `sqlite3_vfs` and
//! `sqlite3_io_methods` into [`DbFile`].
//!
//! Only main database files are ours. Journals, temporary files and anything
//! else SQLite opens through this VFS are opened by the default VFS, in the
//! same `sqlite3_file` memory (`szOsFile` is the larger of the two sizes), so
//! SQLite calls the default VFS's methods on them directly.

use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use super::api::{self, alloc_cstr};
use super::codes::{self, Call};
use super::ffi::*;
use super::guard::guard;
use crate::config::{Config, Sources};
use crate::error::Error;
use crate::log;
use crate::vfs::{DbFile, LockLevel};

/// The VFS name hosts select with `?vfs=litestream`.
pub const VFS_NAME: &std::ffi::CStr = c"litestream";

/// A main database file: SQLite's base struct, then our state.
#[repr(C)]
struct LsFile {
    base: sqlite3_file,
    db: *mut DbFile,
}

static IO_METHODS: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// Registers the VFS unless it already is. Not the default VFS.
pub fn register() -> Result<(), String> {
    let api = api::get().ok_or("no SQLite API table")?;
    let (Some(find), Some(reg)) = (api.vfs_find, api.vfs_register) else {
        return Err("the host SQLite lacks sqlite3_vfs_find/sqlite3_vfs_register".into());
    };
    // SAFETY: sqlite3_vfs_find takes a NUL-terminated name and returns null
    // or a registered VFS, which lives until unregistered.
    let existing = unsafe { find(VFS_NAME.as_ptr()) };
    if !existing.is_null() {
        // SAFETY: a non-null result points to a registered, live sqlite3_vfs;
        // reading one field copies it without making a reference to a struct
        // SQLite shares (and writes `pNext` of) under its own mutex.
        let name = unsafe { (*existing).zName };
        return if ptr::eq(name, VFS_NAME.as_ptr()) {
            Ok(())
        } else {
            Err("another VFS named \"litestream\" is already registered in this process".into())
        };
    }
    // SAFETY: a null name asks for the default VFS.
    let default = unsafe { find(ptr::null()) };
    if default.is_null() {
        return Err("no default VFS".into());
    }
    // SAFETY: `default` is the live default VFS; the fields are copied, as
    // above, and never borrowed.
    let (os_file, max_path) = unsafe { ((*default).szOsFile, (*default).mxPathname) };
    let size = c_int::try_from(std::mem::size_of::<LsFile>()).unwrap_or(c_int::MAX);
    let vfs = Box::leak(Box::new(sqlite3_vfs {
        iVersion: 2,
        szOsFile: size.max(os_file),
        mxPathname: max_path,
        pNext: ptr::null_mut(),
        zName: VFS_NAME.as_ptr(),
        pAppData: default.cast(),
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: Some(x_current_time_int64),
    }));
    // SAFETY: `vfs` is leaked and so outlives every use; 0 = not the default.
    match unsafe { reg(vfs, 0) } {
        SQLITE_OK => Ok(()),
        rc => Err(format!("sqlite3_vfs_register failed with code {rc}")),
    }
}

/// The file's `DbFile` if `file` is one of our main database files.
///
/// # Safety
/// `file` must be null or an `sqlite3_file` that SQLite opened.
pub unsafe fn db_file<'a>(file: *mut sqlite3_file) -> Option<&'a DbFile> {
    // SAFETY: the caller passes null or a live sqlite3_file.
    let base = unsafe { file.as_ref() }?;
    if !ptr::eq(base.pMethods, &IO_METHODS) {
        return None;
    }
    // SAFETY: files with our methods are LsFile, whose `db` is a live Box
    // until xClose.
    unsafe { (*file.cast::<LsFile>()).db.as_ref() }
}

/// The default VFS stored in our VFS's app data, and one of its methods.
///
/// The default VFS is one struct that every connection on every thread
/// calls at once, and SQLite writes its `pNext` when a VFS is registered:
/// no Rust reference to it may exist (a `&mut` from each callback would
/// alias, a `&` would overlap SQLite's writes). So it stays a raw pointer;
/// the method is copied out of it by a field read through that pointer, and
/// the pointer is what the method receives, exactly as SQLite would pass it.
macro_rules! default_method {
    ($vfs:expr, $method:ident) => {{
        // SAFETY: `$vfs` is the VFS `register` created (SQLite passes it back
        // unchanged); its pAppData is the default VFS, which lives for the
        // process. `(*d).$method` reads a copy of one field: no reference.
        unsafe {
            let d = (*$vfs).pAppData.cast::<sqlite3_vfs>();
            (d, (*d).$method)
        }
    }};
}

/// Logs a failed call and returns its SQLite code.
fn report(what: &str, e: &Error, call: Call) -> c_int {
    log::error!("{what}: {e}");
    let rc = codes::code(e, call);
    api::log(rc, &format!("litestream: {what}: {e}"));
    rc
}

unsafe extern "C" fn x_open(
    vfs: *mut sqlite3_vfs,
    name: *const c_char,
    file: *mut sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    guard(SQLITE_CANTOPEN, || {
        if flags & SQLITE_OPEN_MAIN_DB == 0 || name.is_null() {
            let (default, open) = default_method!(vfs, xOpen);
            let Some(open) = open else {
                return SQLITE_CANTOPEN;
            };
            // SAFETY: `file` has szOsFile bytes, at least the default VFS's.
            return unsafe { open(default, name, file, flags, out_flags) };
        }
        // SAFETY: SQLite zeroes pMethods before xOpen; keep it null on failure
        // so that SQLite does not call xClose.
        unsafe { (*file).pMethods = ptr::null() };
        // SAFETY: `name` is the xOpen file name of a main database.
        let params = unsafe { api::uri_params(name) };
        let env = |k: &str| std::env::var(k).ok();
        let opened = Config::parse(&Sources {
            uri: &params,
            env: &env,
        })
        .and_then(DbFile::open);
        match opened {
            Ok(db) => {
                let lf = file.cast::<LsFile>();
                // SAFETY: `file` has at least size_of::<LsFile>() bytes (szOsFile).
                unsafe {
                    (*lf).db = Box::into_raw(Box::new(db));
                    (*lf).base.pMethods = &IO_METHODS;
                }
                if !out_flags.is_null() {
                    // SAFETY: SQLite passes a writable int or null.
                    unsafe { *out_flags = SQLITE_OPEN_READONLY | (flags & SQLITE_OPEN_MAIN_DB) };
                }
                SQLITE_OK
            }
            Err(e) => {
                super::last_error::record(format!("cannot open replica: {e}"));
                report("cannot open replica", &e, Call::Open)
            }
        }
    })
}

unsafe extern "C" fn x_close(file: *mut sqlite3_file) -> c_int {
    guard(SQLITE_IOERR, || {
        let lf = file.cast::<LsFile>();
        // SAFETY: xClose is only called on files we opened; `db` came from
        // Box::into_raw and is taken back exactly once.
        unsafe {
            let db = std::mem::replace(&mut (*lf).db, ptr::null_mut());
            if !db.is_null() {
                drop(Box::from_raw(db));
            }
            (*lf).base.pMethods = ptr::null();
        }
        SQLITE_OK
    })
}

/// Runs `f` on the file's `DbFile`.
fn with_db(file: *mut sqlite3_file, on_err: c_int, f: impl FnOnce(&DbFile) -> c_int) -> c_int {
    guard(on_err, || {
        // SAFETY: SQLite calls io methods only on files it opened with them.
        match unsafe { db_file(file) } {
            Some(db) => f(db),
            None => on_err,
        }
    })
}

unsafe extern "C" fn x_read(
    file: *mut sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    with_db(file, SQLITE_IOERR_READ, |db| {
        let (Ok(len), Ok(off)) = (usize::try_from(amt), u64::try_from(off)) else {
            return SQLITE_IOERR_READ;
        };
        // SAFETY: SQLite passes a writable buffer of `amt` bytes.
        let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
        match db.read(out, off) {
            Ok(true) => SQLITE_OK,
            Ok(false) => SQLITE_IOERR_SHORT_READ,
            Err(e) => report("read failed", &e, Call::Read),
        }
    })
}

unsafe extern "C" fn x_write(_: *mut sqlite3_file, _: *const c_void, _: c_int, _: i64) -> c_int {
    SQLITE_READONLY
}

unsafe extern "C" fn x_truncate(_: *mut sqlite3_file, _: i64) -> c_int {
    SQLITE_READONLY
}

unsafe extern "C" fn x_sync(_: *mut sqlite3_file, _: c_int) -> c_int {
    SQLITE_OK
}

unsafe extern "C" fn x_file_size(file: *mut sqlite3_file, size: *mut i64) -> c_int {
    with_db(file, SQLITE_IOERR, |db| match db.file_size() {
        Ok(n) => {
            // SAFETY: SQLite passes a writable i64.
            unsafe { *size = i64::try_from(n).unwrap_or(i64::MAX) };
            SQLITE_OK
        }
        Err(e) => report("file size failed", &e, Call::Io),
    })
}

unsafe extern "C" fn x_lock(file: *mut sqlite3_file, level: c_int) -> c_int {
    with_db(file, SQLITE_IOERR_LOCK, |db| {
        let Some(level) = LockLevel::from_raw(level) else {
            return SQLITE_IOERR_LOCK;
        };
        match db.lock(level) {
            Ok(()) => SQLITE_OK,
            Err(Error::ReadOnly) => codes::code(&Error::ReadOnly, Call::Lock),
            Err(e) => report("lock failed", &e, Call::Lock),
        }
    })
}

unsafe extern "C" fn x_unlock(file: *mut sqlite3_file, level: c_int) -> c_int {
    with_db(file, SQLITE_IOERR_LOCK, |db| {
        let Some(level) = LockLevel::from_raw(level) else {
            return SQLITE_IOERR_LOCK;
        };
        match db.unlock(level) {
            Ok(()) => SQLITE_OK,
            Err(_) => SQLITE_IOERR_LOCK,
        }
    })
}

unsafe extern "C" fn x_check_reserved_lock(_: *mut sqlite3_file, out: *mut c_int) -> c_int {
    // Nobody ever writes through this VFS, so no reserved lock exists.
    if !out.is_null() {
        // SAFETY: SQLite passes a writable int.
        unsafe { *out = 0 };
    }
    SQLITE_OK
}

unsafe extern "C" fn x_file_control(file: *mut sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    if op != SQLITE_FCNTL_PRAGMA {
        return SQLITE_NOTFOUND;
    }
    with_db(file, SQLITE_ERROR, |db| {
        // SQLITE_FCNTL_PRAGMA: arg is char*[3]: [0] result (ours to set, from
        // sqlite3_malloc), [1] pragma name, [2] value or null.
        let args = arg.cast::<*mut c_char>();
        // SAFETY: SQLite passes an array of three char pointers.
        let (name, value) = unsafe { (*args.add(1), *args.add(2)) };
        if name.is_null() {
            return SQLITE_NOTFOUND;
        }
        // SAFETY: name and (when not null) value are NUL-terminated strings.
        let name = unsafe { api::cstr(name) };
        // SAFETY: as above.
        let value = (!value.is_null()).then(|| unsafe { api::cstr(value) });
        let Some(result) = db.pragma(&name, value.as_deref()) else {
            return SQLITE_NOTFOUND;
        };
        let (rc, text) = match result {
            Ok(Some(text)) => (SQLITE_OK, Some(text)),
            Ok(None) => (SQLITE_OK, None),
            Err(e) => (codes::code(&e, Call::Sql), Some(e.to_string())),
        };
        if let Some(text) = text {
            // SAFETY: slot 0 is ours to fill with an sqlite3_malloc string.
            unsafe { *args = alloc_cstr(&text) };
        }
        rc
    })
}

unsafe extern "C" fn x_sector_size(_: *mut sqlite3_file) -> c_int {
    0
}

unsafe extern "C" fn x_device_characteristics(_: *mut sqlite3_file) -> c_int {
    SQLITE_IOCAP_POWERSAFE_OVERWRITE | SQLITE_IOCAP_UNDELETABLE_WHEN_OPEN
}

unsafe extern "C" fn x_delete(vfs: *mut sqlite3_vfs, name: *const c_char, sync: c_int) -> c_int {
    guard(SQLITE_IOERR, || {
        let (d, method) = default_method!(vfs, xDelete);
        // SAFETY: delegating with SQLite's own arguments.
        method.map_or(SQLITE_IOERR, |f| unsafe { f(d, name, sync) })
    })
}

unsafe extern "C" fn x_access(
    vfs: *mut sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    guard(SQLITE_IOERR, || {
        // A replica has no journal, WAL or shared-memory file: SQLite must
        // never find (and try to roll back) one left in the working folder.
        let path = if name.is_null() {
            String::new()
        } else {
            // SAFETY: `name` is a NUL-terminated path when not null.
            unsafe { api::cstr(name) }
        };
        if ["-journal", "-wal", "-shm"]
            .iter()
            .any(|s| path.ends_with(s))
        {
            // SAFETY: SQLite passes a writable int.
            unsafe { *out = 0 };
            return SQLITE_OK;
        }
        let (d, method) = default_method!(vfs, xAccess);
        // SAFETY: delegating with SQLite's own arguments.
        method.map_or(SQLITE_IOERR, |f| unsafe { f(d, name, flags, out) })
    })
}

unsafe extern "C" fn x_full_pathname(
    vfs: *mut sqlite3_vfs,
    name: *const c_char,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    guard(SQLITE_IOERR, || {
        let (d, method) = default_method!(vfs, xFullPathname);
        // SAFETY: delegating with SQLite's own arguments.
        method.map_or(SQLITE_IOERR, |f| unsafe { f(d, name, n, out) })
    })
}

unsafe extern "C" fn x_dl_open(vfs: *mut sqlite3_vfs, name: *const c_char) -> *mut c_void {
    let (d, method) = default_method!(vfs, xDlOpen);
    // SAFETY: delegating with SQLite's own arguments.
    method.map_or(ptr::null_mut(), |f| unsafe { f(d, name) })
}

unsafe extern "C" fn x_dl_error(vfs: *mut sqlite3_vfs, n: c_int, out: *mut c_char) {
    let (d, method) = default_method!(vfs, xDlError);
    if let Some(f) = method {
        // SAFETY: delegating with SQLite's own arguments.
        unsafe { f(d, n, out) }
    }
}

unsafe extern "C" fn x_dl_sym(
    vfs: *mut sqlite3_vfs,
    handle: *mut c_void,
    sym: *const c_char,
) -> Option<unsafe extern "C" fn()> {
    let (d, method) = default_method!(vfs, xDlSym);
    // SAFETY: delegating with SQLite's own arguments.
    method.and_then(|f| unsafe { f(d, handle, sym) })
}

unsafe extern "C" fn x_dl_close(vfs: *mut sqlite3_vfs, handle: *mut c_void) {
    let (d, method) = default_method!(vfs, xDlClose);
    if let Some(f) = method {
        // SAFETY: delegating with SQLite's own arguments.
        unsafe { f(d, handle) }
    }
}

unsafe extern "C" fn x_randomness(vfs: *mut sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let (d, method) = default_method!(vfs, xRandomness);
    // SAFETY: delegating with SQLite's own arguments.
    method.map_or(0, |f| unsafe { f(d, n, out) })
}

unsafe extern "C" fn x_sleep(vfs: *mut sqlite3_vfs, micros: c_int) -> c_int {
    let (d, method) = default_method!(vfs, xSleep);
    // SAFETY: delegating with SQLite's own arguments.
    method.map_or(0, |f| unsafe { f(d, micros) })
}

unsafe extern "C" fn x_current_time(vfs: *mut sqlite3_vfs, out: *mut f64) -> c_int {
    let (d, method) = default_method!(vfs, xCurrentTime);
    // SAFETY: delegating with SQLite's own arguments.
    method.map_or(SQLITE_ERROR, |f| unsafe { f(d, out) })
}

unsafe extern "C" fn x_get_last_error(vfs: *mut sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let (d, method) = default_method!(vfs, xGetLastError);
    // SAFETY: delegating with SQLite's own arguments.
    method.map_or(0, |f| unsafe { f(d, n, out) })
}

unsafe extern "C" fn x_current_time_int64(vfs: *mut sqlite3_vfs, out: *mut i64) -> c_int {
    let (d, version) = default_method!(vfs, iVersion);
    if version < 2 {
        return SQLITE_ERROR;
    }
    let (_, method) = default_method!(vfs, xCurrentTimeInt64);
    // SAFETY: delegating with SQLite's own arguments.
    method.map_or(SQLITE_ERROR, |f| unsafe { f(d, out) })
}

/// The replica file behind a connection's main database.
///
/// # Safety
/// `db` must be a live connection, used from the thread that holds its mutex.
pub unsafe fn main_file_of<'a>(db: *mut sqlite3) -> crate::error::Result<&'a DbFile> {
    let api = api::get().ok_or_else(|| Error::Internal("no API table".into()))?;
    let Some(fcntl) = api.file_control else {
        return Err(Error::Internal("host lacks sqlite3_file_control".into()));
    };
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

#[cfg(test)]
mod tests {
    //! The delegating trampolines against a fake default VFS. Run it under
    //! Miri: `cargo +nightly miri test --lib -- sqlite::vfs::tests`. With the
    //! earlier `&mut` to the default VFS, Miri stops in the re-entrant case
    //! ("Undefined Behavior: not granting access to tag ... because that
    //! would remove [Unique for ...] which is strongly protected"): the inner
    //! call's fresh `&mut` invalidates the pointer the outer method is still
    //! using. With the raw pointer it passes.
    use super::*;
    use std::sync::atomic::{AtomicPtr, Ordering};

    static OURS: AtomicPtr<sqlite3_vfs> = AtomicPtr::new(ptr::null_mut());

    fn blank(app: *mut c_void) -> sqlite3_vfs {
        sqlite3_vfs {
            iVersion: 2,
            szOsFile: 0,
            mxPathname: 0,
            pNext: ptr::null_mut(),
            zName: ptr::null(),
            pAppData: app,
            xOpen: None,
            xDelete: None,
            xAccess: None,
            xFullPathname: None,
            xDlOpen: None,
            xDlError: None,
            xDlSym: None,
            xDlClose: None,
            xRandomness: None,
            xSleep: None,
            xCurrentTime: None,
            xGetLastError: None,
            xCurrentTimeInt64: None,
        }
    }

    unsafe extern "C" fn fake_sleep(d: *mut sqlite3_vfs, micros: c_int) -> c_int {
        // SAFETY: `d` is the live fake default VFS.
        micros + unsafe { (*d).iVersion }
    }

    /// Re-enters the VFS through our trampoline (as a default VFS's method
    /// may, and as another thread may at any moment), then uses the pointer
    /// it was given.
    unsafe extern "C" fn fake_randomness(d: *mut sqlite3_vfs, n: c_int, _: *mut c_char) -> c_int {
        let ours = OURS.load(Ordering::SeqCst);
        // SAFETY: `ours` is the test's VFS, alive for the whole test.
        let slept = unsafe { x_sleep(ours, 10) };
        // SAFETY: as in fake_sleep.
        n + slept + unsafe { (*d).iVersion }
    }

    #[test]
    fn default_vfs_is_reached_through_a_raw_pointer() {
        let mut default = blank(ptr::null_mut());
        default.xSleep = Some(fake_sleep);
        default.xRandomness = Some(fake_randomness);
        let default = Box::into_raw(Box::new(default));
        let ours = Box::into_raw(Box::new(blank(default.cast())));
        OURS.store(ours, Ordering::SeqCst);

        // SAFETY: `ours` carries the default VFS in pAppData, as `register`
        // makes it; both live until the end of the test.
        assert_eq!(unsafe { x_randomness(ours, 100, ptr::null_mut()) }, 114);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let ours = OURS.load(Ordering::SeqCst);
                    for _ in 0..50 {
                        // SAFETY: as above.
                        assert_eq!(unsafe { x_randomness(ours, 1, ptr::null_mut()) }, 15);
                    }
                });
            }
        });
        // The fake default has no xCurrentTimeInt64.
        // SAFETY: as above.
        let rc = unsafe { x_current_time_int64(ours, ptr::null_mut()) };
        assert_eq!(rc, SQLITE_ERROR);

        OURS.store(ptr::null_mut(), Ordering::SeqCst);
        // SAFETY: both came from Box::into_raw and nothing uses them now.
        unsafe {
            drop(Box::from_raw(ours));
            drop(Box::from_raw(default));
        }
    }
}
