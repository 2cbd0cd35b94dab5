//! # litestream-vfs
//!
//! A loadable SQLite extension that reads a [Litestream] replica in place:
//! open `file:NAME?vfs=litestream&replica_url=…` and query the replica in a
//! local folder, S3 (and S3-compatible services), GCS, Azure Blob Storage,
//! Alibaba OSS, SFTP, WebDAV or a NATS object store, without restoring it.
//!
//! ```text
//! sqlite/    C trampolines, the only unsafe code      (SQLite ⇄ Rust)
//! config     one open's settings: URI, environment, defaults, parsed once
//! vfs/       one open database: locks, pinned snapshot, page-1 patch, pragmas
//! replica/   one per URL per process: snapshot, restore plan, poller, registry
//! prefetch/  which pages SQLite reads next, from the B-tree pages it read
//! btree/     pure parsing of SQLite B-tree pages, for prefetch (a leaf)
//! cache      page cache keyed by frame location
//! store/     host-wide local page store on disk (disk tier, hydration)
//! storage/   where replicas live (the Storage trait and its backends)
//! ltx/       pure decoding of LTX files (a leaf)
//! runtime    the tokio runtime and per-fork-epoch state
//! error      the crate's error type (mapped to SQLite codes in sqlite/)
//! log        log lines to stderr or a file, never stdout
//! timefmt    RFC 3339 times (a leaf)
//! pause      named pause points for interleaving tests (test builds only)
//! alloc      the global allocator: the system's, with page-sized blocks reused
//! ```
//!
//! [Litestream]: https://litestream.io

mod alloc;
pub mod btree;
pub mod cache;
pub mod config;
pub mod error;
pub mod log;
pub mod ltx;
pub mod pause;
pub mod prefetch;
pub mod replica;
pub mod runtime;
pub mod sqlite;
pub mod storage;
pub mod store;
pub mod timefmt;
pub mod vfs;

/// Page-sized blocks are reused across threads (see `alloc.rs`).
#[global_allocator]
pub(crate) static ALLOCATOR: alloc::PageAlloc = alloc::PageAlloc::new();

use std::ffi::{c_char, c_int};

use sqlite::ApiRoutines;
use sqlite::ffi::sqlite3;

/// Entry point for `litestream-vfs.so` and `liblitestream_vfs.so`.
///
/// # Safety
/// Called by SQLite's extension loader with its own arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sqlite3_litestreamvfs_init(
    db: *mut sqlite3,
    err: *mut *mut c_char,
    api: *const ApiRoutines,
) -> c_int {
    // SAFETY: forwarding SQLite's entry-point arguments unchanged.
    unsafe { sqlite::ext::init(db, err, api) }
}

/// Entry point for `litestream.so`.
///
/// # Safety
/// Called by SQLite's extension loader with its own arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sqlite3_litestream_init(
    db: *mut sqlite3,
    err: *mut *mut c_char,
    api: *const ApiRoutines,
) -> c_int {
    // SAFETY: forwarding SQLite's entry-point arguments unchanged.
    unsafe { sqlite::ext::init(db, err, api) }
}

/// The generic entry point, for hosts that name it explicitly.
///
/// # Safety
/// Called by SQLite's extension loader with its own arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sqlite3_extension_init(
    db: *mut sqlite3,
    err: *mut *mut c_char,
    api: *const ApiRoutines,
) -> c_int {
    // SAFETY: forwarding SQLite's entry-point arguments unchanged.
    unsafe { sqlite::ext::init(db, err, api) }
}

/// Copies the message of the last replica open that failed in the calling
/// thread into `buf` (at most `len - 1` bytes and a NUL) and returns the
/// message's full length in bytes, 0 when there is none. Hosts that see only
/// SQLite's "unable to open database file" call it right after the failed
/// open (Python: `ctypes`, through the same loaded library).
///
/// # Safety
/// `buf` must be null or point to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn litestream_vfs_last_error(buf: *mut c_char, len: c_int) -> c_int {
    // SAFETY: forwarding the caller's buffer under the same contract.
    sqlite::guard_int(0, || unsafe { sqlite::last_error::copy_into(buf, len) })
}

/// Forgets the calling thread's last failed open (call it before an open to
/// be sure a message read afterwards is that open's).
#[unsafe(no_mangle)]
pub extern "C" fn litestream_vfs_clear_last_error() {
    sqlite::guard_int(0, || {
        sqlite::last_error::clear();
        0
    });
}
