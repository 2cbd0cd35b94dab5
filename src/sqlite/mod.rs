//! The boundary with SQLite, and the only module with `unsafe` code besides
//! the `pthread_atfork` call in `runtime`: C structures, the extension API
//! table, the VFS and SQL-function trampolines. Every trampoline catches
//! panics and turns `Result`s into SQLite result codes.

pub mod api;
#[allow(clippy::all)]
mod api_table;
mod codes;
pub mod ext;
pub mod ffi;
#[cfg(unix)]
mod fork;
mod functions;
mod guard;
mod history_vtab;
pub mod last_error;
mod vfs;

pub use api_table::ApiRoutines;

/// Runs `f`, a panic becoming `on_panic`: for the C functions of `lib.rs`.
pub fn guard_int(
    on_panic: std::ffi::c_int,
    f: impl FnOnce() -> std::ffi::c_int,
) -> std::ffi::c_int {
    guard::guard(on_panic, f)
}
