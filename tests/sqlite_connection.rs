//! The VFS driven through a real SQLite connection in this process: the
//! system's libsqlite3 loads the built library (`target/<profile>/
//! liblitestream_vfs.so`), opens replicas with `vfs=litestream` and runs
//! SQL, so `DbFile`, `Replica` and the poller run under SQLite's own calls.
//! (This test does not link the crate itself: one copy of it per process.)
#![cfg(target_os = "linux")]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::ptr;

#[allow(non_camel_case_types)]
type sqlite3 = c_void;
#[allow(non_camel_case_types)]
type stmt = c_void;

#[link(name = "sqlite3")]
unsafe extern "C" {
    fn sqlite3_open_v2(
        name: *const c_char,
        db: *mut *mut sqlite3,
        flags: c_int,
        vfs: *const c_char,
    ) -> c_int;
    fn sqlite3_close(db: *mut sqlite3) -> c_int;
    fn sqlite3_enable_load_extension(db: *mut sqlite3, on: c_int) -> c_int;
    fn sqlite3_load_extension(
        db: *mut sqlite3,
        file: *const c_char,
        entry: *const c_char,
        err: *mut *mut c_char,
    ) -> c_int;
    fn sqlite3_prepare_v2(
        db: *mut sqlite3,
        sql: *const c_char,
        n: c_int,
        st: *mut *mut stmt,
        tail: *mut *const c_char,
    ) -> c_int;
    fn sqlite3_step(st: *mut stmt) -> c_int;
    fn sqlite3_column_count(st: *mut stmt) -> c_int;
    fn sqlite3_column_text(st: *mut stmt, i: c_int) -> *const u8;
    fn sqlite3_finalize(st: *mut stmt) -> c_int;
    fn sqlite3_errmsg(db: *mut sqlite3) -> *const c_char;
}

const SQLITE_OK: c_int = 0;
const SQLITE_ROW: c_int = 100;
const SQLITE_DONE: c_int = 101;
const OPEN_READONLY: c_int = 0x1;
const OPEN_READWRITE_CREATE: c_int = 0x2 | 0x4;
const OPEN_URI: c_int = 0x40;

/// The built library: `cargo test` does not rebuild the cdylib, so this
/// takes `target/release` or `target/debug`, whichever was built after the
/// last change to `src/` (scripts/test runs `cargo build --release` first),
/// and refuses a stale one rather than testing old code.
fn library() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let newest_source = newest_mtime(&manifest.join("src"));
    let target = std::env::current_exe().unwrap();
    let target = target.parent().unwrap().parent().unwrap().parent().unwrap();
    let fresh: Vec<PathBuf> = ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("liblitestream_vfs.so"))
        .filter(|p| {
            p.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= newest_source)
        })
        .collect();
    fresh.into_iter().next().unwrap_or_else(|| {
        panic!("no liblitestream_vfs.so built after the last change to src/: run `cargo build --release` (or `cargo build`) first")
    })
}

fn newest_mtime(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let t = if p.is_dir() {
            newest_mtime(&p)
        } else {
            p.metadata().unwrap().modified().unwrap()
        };
        newest = newest.max(t);
    }
    newest
}

struct Db(*mut sqlite3);

impl Db {
    fn open(uri: &str, flags: c_int) -> Result<Db, String> {
        let name = CString::new(uri).unwrap();
        let mut db = ptr::null_mut();
        // SAFETY: a NUL-terminated name and a slot for the handle.
        let rc = unsafe { sqlite3_open_v2(name.as_ptr(), &mut db, flags | OPEN_URI, ptr::null()) };
        let db = Db(db);
        if rc != SQLITE_OK {
            return Err(db.errmsg());
        }
        Ok(db)
    }

    fn errmsg(&self) -> String {
        // SAFETY: errmsg returns a NUL-terminated string owned by SQLite.
        unsafe { CStr::from_ptr(sqlite3_errmsg(self.0)) }
            .to_string_lossy()
            .into_owned()
    }

    /// Every row of `sql` as text.
    fn query(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        let sql = CString::new(sql).unwrap();
        let mut st = ptr::null_mut();
        // SAFETY: an open connection, a NUL-terminated statement.
        if unsafe { sqlite3_prepare_v2(self.0, sql.as_ptr(), -1, &mut st, ptr::null_mut()) }
            != SQLITE_OK
        {
            return Err(self.errmsg());
        }
        let mut rows = Vec::new();
        loop {
            // SAFETY: a prepared statement of this connection.
            match unsafe { sqlite3_step(st) } {
                SQLITE_ROW => {
                    // SAFETY: the statement is on a row; text pointers are
                    // valid until the next step, and copied at once.
                    let row = (0..unsafe { sqlite3_column_count(st) })
                        .map(|i| {
                            // SAFETY: column `i` of the current row.
                            let p = unsafe { sqlite3_column_text(st, i) };
                            if p.is_null() {
                                "NULL".to_string()
                            } else {
                                // SAFETY: a non-null result is NUL-terminated.
                                unsafe { CStr::from_ptr(p.cast()) }
                                    .to_string_lossy()
                                    .into_owned()
                            }
                        })
                        .collect();
                    rows.push(row);
                }
                SQLITE_DONE => break,
                _ => {
                    let e = self.errmsg();
                    // SAFETY: finalising the statement once.
                    unsafe { sqlite3_finalize(st) };
                    return Err(e);
                }
            }
        }
        // SAFETY: finalising the statement once.
        unsafe { sqlite3_finalize(st) };
        Ok(rows)
    }

    fn one(&self, sql: &str) -> String {
        self.query(sql).unwrap().remove(0).remove(0)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: closing the handle once.
        unsafe { sqlite3_close(self.0) };
    }
}

/// Loads the library (once is enough: it registers the VFS process-wide
/// and an automatic extension for the SQL functions).
fn load() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let db = Db::open(":memory:", OPEN_READWRITE_CREATE).unwrap();
        let file = CString::new(library().to_str().unwrap()).unwrap();
        let mut err = ptr::null_mut();
        // SAFETY: an open connection; SQLite owns the error message.
        unsafe {
            sqlite3_enable_load_extension(db.0, 1);
            assert_eq!(
                sqlite3_load_extension(db.0, file.as_ptr(), ptr::null(), &mut err),
                SQLITE_OK
            );
        }
    });
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .join("replica")
}

fn replica(dir: &Path, name: &str, params: &str) -> Db {
    load();
    let url = url::Url::from_directory_path(dir).unwrap();
    Db::open(
        &format!("file:{name}?vfs=litestream&replica_url={url}{params}"),
        OPEN_READONLY,
    )
    .unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

#[test]
fn a_fixture_reads_as_sqlite_sees_it() {
    let db = replica(&fixture("basic-4k"), "conn-basic.db", "");
    assert_eq!(db.one("PRAGMA integrity_check"), "ok");
    assert_eq!(db.one("SELECT litestream_txid()"), "0000000000000007");
    assert_eq!(db.one("SELECT count(*) FROM seed"), "2373");
    assert_eq!(db.one("PRAGMA journal_mode"), "delete");
    let e = db.query("CREATE TABLE nope(x)").unwrap_err();
    assert!(e.contains("readonly"), "{e}");
}

#[test]
fn a_held_connection_follows_a_reset_replica_to_the_new_database() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture("basic-4k"), dir.path());
    let db = replica(dir.path(), "conn-reset.db", "&poll_interval=20ms");
    assert_eq!(db.one("SELECT count(*) FROM seed"), "2373");
    let version = db.one("PRAGMA data_version");
    // The reset: another database's replica in the same place, TXIDs
    // restarting below ours (shrink-4k ends at TXID 6, basic-4k at 7).
    std::fs::remove_dir_all(dir.path().join("ltx")).unwrap();
    copy_tree(&fixture("shrink-4k"), dir.path());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while db.one("PRAGMA page_count") != "32" {
        assert!(
            std::time::Instant::now() < deadline,
            "the reset was never seen"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(db.one("SELECT litestream_txid()"), "0000000000000006");
    assert_eq!(db.one("PRAGMA integrity_check"), "ok");
    assert_ne!(db.one("PRAGMA data_version"), version);
    let stats = db.one("PRAGMA litestream_stats");
    assert!(stats.contains("resets=1"), "{stats}");
}
