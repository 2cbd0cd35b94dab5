//! A folder of small immutable blobs by name, shared by the processes of a
//! host: what the replica learnt of its LTX files (headers, page indexes,
//! small files whole), so that a restart needs only the listing.
//!
//! Each blob is one file, written under a temporary name and renamed into
//! place, so a reader sees a whole blob or none. Its last 8 bytes are an
//! XXH3 of its name and contents: a torn, truncated or foreign file is a
//! miss, never data. Everything is best effort: a folder that cannot be
//! written only costs the requests it would have saved.
//!
//! Private like the store file (see `private`): the folder is `0700`, each
//! blob and temporary file `0600`, opened without following links; a
//! folder or blob another account owns or can write is refused (a miss,
//! with one warning that names it).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crate::log;

use super::private::{self, Create, Failure, Folder};

/// What is known of the folder: not checked yet (or missing), checked,
/// refused.
const UNCHECKED: u8 = 0;
const CHECKED: u8 = 1;
const REFUSED: u8 = 2;

/// Blob files end with this; anything else in the folder is not ours.
const SUFFIX: &str = ".blob";
/// Every this many writes, blobs whose names `prune` matches and that were
/// written longer than `PRUNE_AGE` ago are removed: a follower writes one
/// per new level-0 file, and those go from storage within minutes.
const PRUNE_EVERY: u64 = 256;
const PRUNE_AGE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The blobs of one replica.
#[derive(Debug)]
pub struct Blobs {
    dir: PathBuf,
    /// Which blobs age out (see `PRUNE_EVERY`).
    prune: fn(&str) -> bool,
    folder: AtomicU8,
    warned: AtomicBool,
    hits: AtomicU64,
    writes: AtomicU64,
}

impl Blobs {
    /// The blobs kept in `dir` (created at the first write); those `prune`
    /// matches age out.
    pub fn new(dir: PathBuf, prune: fn(&str) -> bool) -> Blobs {
        Blobs {
            dir,
            prune,
            folder: AtomicU8::new(UNCHECKED),
            warned: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{SUFFIX}"))
    }

    /// Whether the folder may be used, creating it (and its missing
    /// parents, `0700`) first if `create`. The folder is the store's own;
    /// the one holding it needs no check of its own: whoever could swap
    /// this folder for another could only put one there that is not ours,
    /// and that one is refused.
    fn usable(&self, create: bool) -> bool {
        match self.folder.load(Ordering::Relaxed) {
            CHECKED => return true,
            REFUSED => return false,
            _ => {}
        }
        let checked = if create {
            private::ensure_dir(&self.dir, Folder::Own)
        } else {
            private::check_dir(&self.dir, Folder::Own)
        };
        match checked {
            Ok(()) => {
                self.folder.store(CHECKED, Ordering::Relaxed);
                true
            }
            Err(Failure::Io(e)) if e.kind() == std::io::ErrorKind::NotFound && !create => false,
            Err(e) => {
                if matches!(e, Failure::Refused(_)) {
                    self.folder.store(REFUSED, Ordering::Relaxed);
                }
                self.warn(&e);
                false
            }
        }
    }

    fn warn(&self, e: &Failure) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "cannot keep file indexes in {}: {e}; a restart will fetch them again",
                self.dir.display()
            );
        } else {
            log::debug!("file indexes in {}: {e}", self.dir.display());
        }
    }

    /// The blob `name`, if it is present, ours and whole.
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        if !self.usable(false) {
            return None;
        }
        let path = self.path(name);
        let mut bytes = Vec::new();
        let read = private::open_file(&path, Create::No, false)
            .and_then(|mut f| Ok(f.read_to_end(&mut bytes)?));
        match read {
            Ok(_) => {}
            Err(Failure::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.warn(&e);
                return None;
            }
        }
        let body = bytes.len().checked_sub(8)?;
        let stored = u64::from_le_bytes(bytes.get(body..)?.try_into().ok()?);
        bytes.truncate(body);
        (sum(name, &bytes) == stored).then(|| {
            self.hits.fetch_add(1, Ordering::Relaxed);
            bytes
        })
    }

    /// Keeps `bytes` as the blob `name`.
    pub fn put(&self, name: &str, bytes: &[u8]) {
        if !self.usable(true) {
            return;
        }
        let tmp = self
            .dir
            .join(format!(".{name}.{}.{}", std::process::id(), unique()));
        let written = (|| {
            let mut f = private::open_file(&tmp, Create::New, true)?;
            f.write_all(bytes)?;
            f.write_all(&sum(name, bytes).to_le_bytes())?;
            drop(f);
            fs::rename(&tmp, self.path(name))?;
            Ok::<_, Failure>(())
        })();
        match written {
            Ok(()) => {
                let n = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(PRUNE_EVERY) {
                    self.prune_old();
                }
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                self.warn(&e);
            }
        }
    }

    /// Removes every blob whose name `keep` refuses (files the replica no
    /// longer lists).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(name) = file.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
                continue;
            };
            if !name.starts_with('.') && !keep(name) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn prune_old(&self) {
        let prune = self.prune;
        let old = |path: &Path| {
            fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > PRUNE_AGE)
        };
        let dir = self.dir.clone();
        self.retain(|name| !(prune(name) && old(&dir.join(format!("{name}{SUFFIX}")))));
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `name=value` counters for `PRAGMA litestream_stats`.
    pub fn render(&self) -> String {
        format!(
            "index_hits={} index_writes={}",
            self.hits.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed)
        )
    }
}

fn sum(name: &str, bytes: &[u8]) -> u64 {
    let seed = twox_hash::XxHash3_64::oneshot(name.as_bytes());
    twox_hash::XxHash3_64::oneshot_with_seed(seed, bytes)
}

/// A number no other call of this process gets.
fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_comes_back_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::new(dir.path().join("idx"), |_| false);
        assert_eq!(b.get("a"), None, "nothing yet");
        b.put("a", b"hello");
        assert_eq!(b.get("a").as_deref(), Some(&b"hello"[..]));
        // Torn: cut short.
        let path = b.path("a");
        let full = fs::read(&path).unwrap();
        fs::write(&path, &full[..full.len() - 3]).unwrap();
        assert_eq!(b.get("a"), None);
        // Another blob's bytes under this name.
        b.put("b", b"hello");
        fs::copy(b.path("b"), &path).unwrap();
        assert_eq!(b.get("a"), None);
        // Damaged inside.
        let mut bad = full.clone();
        bad[1] ^= 1;
        fs::write(&path, &bad).unwrap();
        assert_eq!(b.get("a"), None);
    }

    #[test]
    fn retain_removes_what_is_no_longer_listed() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::new(dir.path().to_owned(), |_| false);
        b.put("keep", b"1");
        b.put("drop", b"2");
        fs::write(dir.path().join("not-ours.txt"), b"x").unwrap();
        b.retain(|n| n == "keep");
        assert!(b.get("keep").is_some());
        assert!(b.get("drop").is_none());
        assert!(dir.path().join("not-ours.txt").exists());
    }

    #[test]
    fn old_blobs_that_age_out_are_pruned_as_writes_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::new(dir.path().to_owned(), |n| n.starts_with("0-"));
        b.put("0-old", b"1");
        b.put("9-old", b"2");
        let long_ago = std::time::SystemTime::now() - 2 * PRUNE_AGE;
        for name in ["0-old", "9-old"] {
            fs::File::options()
                .write(true)
                .open(b.path(name))
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        for i in 2..PRUNE_EVERY {
            assert!(
                b.get("0-old").is_some(),
                "not before the {PRUNE_EVERY}th write"
            );
            b.put(&format!("0-new{i}"), b"3");
        }
        assert!(b.get("0-old").is_none(), "an old level-0 blob goes");
        assert!(b.get("9-old").is_some(), "one that does not age out stays");
        assert!(b.get("0-new2").is_some(), "a new one stays");
    }

    #[cfg(unix)]
    #[test]
    fn blobs_are_private_and_planted_ones_are_misses() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::new(dir.path().join("cache/idx"), |_| false);
        b.put("a", b"hello");
        assert_eq!(mode(&dir.path().join("cache")), 0o700);
        assert_eq!(mode(b.dir()), 0o700);
        assert_eq!(mode(&b.path("a")), 0o600);
        // A link planted in place of a blob is not followed.
        let theirs = dir.path().join("theirs");
        fs::write(&theirs, fs::read(b.path("a")).unwrap()).unwrap();
        fs::remove_file(b.path("a")).unwrap();
        std::os::unix::fs::symlink(&theirs, b.path("a")).unwrap();
        assert_eq!(b.get("a"), None);
        // One others may write is refused; one only readable (an earlier
        // version's) is tightened and used.
        fs::remove_file(b.path("a")).unwrap();
        b.put("a", b"hello");
        fs::set_permissions(b.path("a"), fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(b.get("a"), None);
        fs::set_permissions(b.path("a"), fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(b.get("a").as_deref(), Some(&b"hello"[..]));
        assert_eq!(mode(&b.path("a")), 0o600);
        // A folder others may write is not used at all.
        let open = Blobs::new(dir.path().join("open"), |_| false);
        fs::create_dir(open.dir()).unwrap();
        fs::set_permissions(open.dir(), fs::Permissions::from_mode(0o777)).unwrap();
        open.put("a", b"x");
        assert!(fs::read_dir(open.dir()).unwrap().next().is_none());
        assert_eq!(open.get("a"), None);
    }

    #[test]
    fn an_unwritable_folder_is_a_miss_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        fs::write(&file, b"x").unwrap();
        let b = Blobs::new(file.join("idx"), |_| false);
        b.put("a", b"1");
        assert_eq!(b.get("a"), None);
    }
}
