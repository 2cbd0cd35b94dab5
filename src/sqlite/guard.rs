//! Nothing unwinds into C: every callback runs inside [`guard`].

use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Error, Result};
use crate::log;

/// Runs `f`; a panic becomes `on_panic` and a log line.
pub fn guard(on_panic: c_int, f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        logged(payload.as_ref());
        on_panic
    })
}

/// Runs `f`; a panic becomes an [`Error::Internal`] (and a log line), for
/// callbacks that report errors as values (SQL functions).
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(Error::Internal(format!(
            "panic caught at the SQLite boundary: {}",
            logged(payload.as_ref())
        )))
    })
}

/// Logs a caught panic; returns its message.
fn logged(payload: &(dyn std::any::Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    log::error!("internal error (panic caught at the SQLite boundary): {msg}");
    msg
}

/// Like [`guard`] for callbacks that return nothing.
pub fn guard_unit(f: impl FnOnce()) {
    let _ = guard(0, || {
        f();
        0
    });
}
