//! The message of the last replica open that failed, per thread, for hosts
//! that see only SQLite's "unable to open database file" (Python, Django):
//! they read it through the exported `litestream_vfs_last_error` right after
//! the failed open, in the same thread.

use std::cell::RefCell;
use std::ffi::{c_char, c_int};

thread_local! {
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Remembers `msg` as this thread's last failed open.
pub fn record(msg: String) {
    LAST.with(|l| *l.borrow_mut() = Some(msg));
}

/// Forgets this thread's last failed open.
pub fn clear() {
    LAST.with(|l| *l.borrow_mut() = None);
}

/// This thread's last failed open, if any.
pub fn get() -> Option<String> {
    LAST.with(|l| l.borrow().clone())
}

/// Copies this thread's message into `buf` (at most `len - 1` bytes, cut at
/// a character boundary, then a NUL) and returns the message's full length in
/// bytes: 0 when there is none, more than `len - 1` when it was cut.
///
/// # Safety
/// `buf` must be null or point to `len` writable bytes.
pub unsafe fn copy_into(buf: *mut c_char, len: c_int) -> c_int {
    let Some(msg) = get() else {
        if !buf.is_null() && len > 0 {
            // SAFETY: `buf` has at least one writable byte (len > 0).
            unsafe { *buf = 0 };
        }
        return 0;
    };
    let full = c_int::try_from(msg.len()).unwrap_or(c_int::MAX);
    let Ok(room) = usize::try_from(len) else {
        return full;
    };
    if buf.is_null() || room == 0 {
        return full;
    }
    let mut n = msg.len().min(room - 1);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: `buf` has `room` > n writable bytes (caller's contract); the
    // source is `n` bytes of `msg`, which does not overlap a caller buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_cuts_at_a_character_and_clears() {
        clear();
        let mut buf = [1 as c_char; 8];
        // SAFETY: an 8-byte buffer.
        assert_eq!(unsafe { copy_into(buf.as_mut_ptr(), 8) }, 0);
        assert_eq!(buf[0], 0);
        record("replica folder é missing".into());
        // SAFETY: an 8-byte buffer.
        let full = unsafe { copy_into(buf.as_mut_ptr(), 8) };
        assert_eq!(full as usize, "replica folder é missing".len());
        // SAFETY: copy_into wrote a NUL-terminated string.
        let got = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        assert_eq!(got.to_str().unwrap(), "replica");
        let mut big = [0 as c_char; 64];
        // SAFETY: a 64-byte buffer.
        unsafe { copy_into(big.as_mut_ptr(), 64) };
        // SAFETY: NUL-terminated.
        let got = unsafe { std::ffi::CStr::from_ptr(big.as_ptr()) };
        assert_eq!(got.to_str().unwrap(), "replica folder é missing");
        let mut cut = [0 as c_char; 17];
        // SAFETY: a 17-byte buffer; "é" spans bytes 15..17, so 16 bytes cut it.
        unsafe { copy_into(cut.as_mut_ptr(), 17) };
        // SAFETY: NUL-terminated.
        let got = unsafe { std::ffi::CStr::from_ptr(cut.as_ptr()) };
        assert_eq!(got.to_str().unwrap(), "replica folder ");
        clear();
        assert_eq!(get(), None);
    }
}
