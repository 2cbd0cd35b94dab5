//! Safe access to the host's extension API table. The extension links no
//! SQLite of its own: every call goes through the table the host passed to
//! the entry point.

use std::ffi::{CStr, CString, c_char, c_int};
use std::sync::atomic::{AtomicPtr, Ordering};

use super::api_table::ApiRoutines;

static API: AtomicPtr<ApiRoutines> = AtomicPtr::new(std::ptr::null_mut());

/// Records the host's API table. One SQLite library passes the same table
/// every time; a second, different SQLite library in the same process (say
/// Python's and an embedded one) cannot share our process-wide VFS, so that
/// load is refused rather than mixing the two.
pub fn set(api: *const ApiRoutines) -> Result<(), String> {
    match API.compare_exchange(
        std::ptr::null_mut(),
        api.cast_mut(),
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Ok(()),
        Err(existing) if std::ptr::eq(existing, api) => Ok(()),
        Err(_) => Err("already loaded by another SQLite library in this process; \
                       load it into one SQLite library per process"
            .into()),
    }
}

/// The host's API table, once an entry point has run.
pub fn get() -> Option<&'static ApiRoutines> {
    let p = API.load(Ordering::Acquire);
    // SAFETY: the pointer came from SQLite's entry-point argument; SQLite's
    // API table is a static that lives as long as the process.
    unsafe { p.as_ref() }
}

/// Sends a message to `sqlite3_log`, where hosts that configured a log
/// callback see it.
pub fn log(code: c_int, msg: &str) {
    let (Some(api), Ok(msg)) = (get(), CString::new(msg.replace('\0', " "))) else {
        return;
    };
    if let Some(f) = api.log {
        // SAFETY: "%s" with one NUL-terminated string argument matches the
        // printf-style contract of sqlite3_log.
        unsafe { f(code, c"%s".as_ptr(), msg.as_ptr()) };
    }
}

/// Copies `s` into memory from `sqlite3_malloc`, as SQLite requires for
/// strings it will free (pragma results, error messages). Null on failure.
pub fn alloc_cstr(s: &str) -> *mut c_char {
    let Some(malloc) = get().and_then(|a| a.malloc) else {
        return std::ptr::null_mut();
    };
    let bytes = s.replace('\0', " ");
    let Ok(len) = c_int::try_from(bytes.len() + 1) else {
        return std::ptr::null_mut();
    };
    // SAFETY: sqlite3_malloc returns null or `len` writable bytes.
    let p = unsafe { malloc(len) }.cast::<u8>();
    if !p.is_null() {
        // SAFETY: `p` has room for the bytes and the terminating NUL.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
            *p.add(bytes.len()) = 0;
        }
    }
    p.cast()
}

/// Every URI parameter of a database file name passed to `xOpen`.
///
/// # Safety
/// `zname` must be a file name that SQLite passed to `xOpen`.
pub unsafe fn uri_params(zname: *const c_char) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(api) = get() else { return out };
    let (Some(key_at), Some(param)) = (api.uri_key, api.uri_parameter) else {
        return out;
    };
    for i in 0.. {
        // SAFETY: zname is an xOpen file name (caller's contract); uri_key
        // returns null past the last parameter.
        let k = unsafe { key_at(zname, i) };
        if k.is_null() {
            break;
        }
        // SAFETY: k is a NUL-terminated string owned by SQLite for the open.
        let v = unsafe { param(zname, k) };
        // SAFETY: k and (when not null) v are NUL-terminated strings.
        let (k, v) = unsafe { (cstr(k), if v.is_null() { String::new() } else { cstr(v) }) };
        out.push((k, v));
    }
    out
}

/// Copies a C string.
///
/// # Safety
/// `p` must be a valid NUL-terminated string.
pub unsafe fn cstr(p: *const c_char) -> String {
    // SAFETY: the caller guarantees a valid NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}
