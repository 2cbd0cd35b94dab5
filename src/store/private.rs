//! The store is private to its user.
//!
//! Its files hold the replica's pages (the application's data) and what
//! the replica learnt of its LTX files, and their checksums catch tearing,
//! not a forger: anyone who can write a store file can write a slot that
//! verifies. So, the way OpenSSH treats `~/.ssh`:
//! - every folder the store creates is `0700` and every file `0600`,
//!   whatever the umask;
//! - files are opened without following symbolic links (`O_NOFOLLOW`; std
//!   adds `O_CLOEXEC`), and only regular files are used;
//! - a store folder, or a file in it, that another account owns or that
//!   its group or others may write is refused, with a message that names
//!   the path and says why. Root gets no exception: a root process must not
//!   trust what another account planted either;
//! - a store of ours from an earlier version, readable by others, is
//!   tightened (with a log line); one writable by others is refused like
//!   any other.
//!
//! On Windows there are no owner and mode bits to check: the files get the
//! default ACL of their folder (under the user's profile, private to the
//! user), and the checks here do nothing (documented in the README).

// What only the Unix checks use is unused on Windows.
#![cfg_attr(not(unix), allow(dead_code, unused_imports, unused_mut))]

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::log;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};

/// Mode of every folder the store creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the store creates.
pub const FILE_MODE: u32 = 0o600;

/// Tries at creating a file that another process removes and re-creates
/// in between, before giving up: a race that never settles is not ours.
const CREATE_TRIES: usize = 8;

/// A path the store will not use, and why.
#[derive(Debug)]
pub struct Refused {
    pub path: PathBuf,
    pub why: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refusing the local store at {}: it {}; the store holds the replica's pages and must \
             be private to this account: use a folder only this account can write (for a \
             service, its own cache folder such as /var/cache/<app> owned by the service user)",
            self.path.display(),
            self.why
        )
    }
}

/// Why a store path could not be used: refused, or an I/O error.
#[derive(Debug)]
pub enum Failure {
    Refused(Refused),
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(r) => r.fmt(f),
            Failure::Io(e) => e.fmt(f),
        }
    }
}

fn refused(path: &Path, why: String) -> Failure {
    Failure::Refused(Refused {
        path: path.to_path_buf(),
        why,
    })
}

/// Whose folder it is: the store's own (the disk tier's folder, an index
/// folder), whose modes the store may tighten, or one it shares with the
/// user's other files (the folder of a `hydration_path`), which it only
/// checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Folder {
    Own,
    Shared,
}

/// Creates `dir` and its missing parents as `0700`, then checks it.
pub fn ensure_dir(dir: &Path, folder: Folder) -> Result<(), Failure> {
    create_missing(dir)?;
    check_dir(dir, folder)
}

/// Creates the missing components of `dir`, outermost first, each `0700`
/// whatever the umask. Those that exist are left as they are.
fn create_missing(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        match fs::symlink_metadata(at) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(at);
                match at.parent() {
                    Some(p) if !p.as_os_str().is_empty() => at = p,
                    _ => break,
                }
            }
            Err(e) => return Err(e),
        }
    }
    for d in missing.into_iter().rev() {
        let mut b = fs::DirBuilder::new();
        #[cfg(unix)]
        b.mode(DIR_MODE);
        match b.create(d) {
            // The umask may have taken bits off: set exactly 0700.
            Ok(()) => set_mode(d, DIR_MODE)?,
            // Another process made it meanwhile: checked like any other.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Checks an existing folder of the store (following a symbolic link the
/// user made: what counts is the folder it leads to).
pub fn check_dir(dir: &Path, folder: Folder) -> Result<(), Failure> {
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory").into());
    }
    #[cfg(unix)]
    {
        check_owner_and_writers(dir, &meta)?;
        let mode = meta.mode() & 0o7777;
        if folder == Folder::Own && mode & 0o077 != 0 {
            set_mode(dir, DIR_MODE)?;
            log::info!(
                "local store: {} was open to other accounts (mode {mode:04o}); made it {DIR_MODE:04o}",
                dir.display()
            );
        }
    }
    let _ = folder;
    Ok(())
}

/// How [`open_file`] treats a missing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Only an existing file.
    No,
    /// Create it if missing (`0600`).
    IfMissing,
    /// Only a new file (`0600`); an existing one is an error.
    New,
}

/// Opens a store file without following a symbolic link, for reading (and
/// writing if `write`), creating it `0600` as `create` says, and checks it.
pub fn open_file(path: &Path, create: Create, write: bool) -> Result<File, Failure> {
    let options = |new: bool| {
        let mut o = OpenOptions::new();
        o.read(true).write(write || new);
        if new {
            o.create_new(true);
        }
        #[cfg(unix)]
        {
            // A planted FIFO must not block the open either; it is then
            // refused as not a regular file.
            o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
            o.mode(FILE_MODE);
        }
        o
    };
    for _ in 0..CREATE_TRIES {
        if create != Create::New {
            match options(false).open(path) {
                Ok(f) => {
                    check_file(path, &f)?;
                    return Ok(f);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create == Create::IfMissing => {}
                Err(e) => return Err(open_error(path, e)),
            }
        }
        match options(true).open(path) {
            Ok(f) => {
                // Ours and new: exactly 0600, whatever the umask took off.
                #[cfg(unix)]
                f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
                return Ok(f);
            }
            // Another process created it meanwhile: open that one.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && create == Create::IfMissing => {}
            Err(e) => return Err(open_error(path, e)),
        }
    }
    Err(io::Error::other("the file keeps appearing and disappearing").into())
}

/// A symbolic link where a store file should be is refused, and so is a
/// file of another account that the open could not even use (permission
/// denied); other errors stay I/O errors.
fn open_error(path: &Path, e: io::Error) -> Failure {
    #[cfg(unix)]
    if let Ok(meta) = fs::symlink_metadata(path) {
        // Linux and macOS say ELOOP for O_NOFOLLOW on a link, FreeBSD EMLINK.
        let link = matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EMLINK));
        if link && meta.file_type().is_symlink() {
            return refused(
                path,
                "is a symbolic link, which the store never follows (another account may have \
                 planted it to redirect the store's writes or reads)"
                    .into(),
            );
        }
        if e.kind() == io::ErrorKind::PermissionDenied
            && let Err(refusal) = check_owner_and_writers(path, &meta)
        {
            return refusal;
        }
    }
    let _ = path;
    Failure::Io(e)
}

/// Checks a file the store opened: a regular file of ours that no one
/// else can write; readable by others (an earlier version), it is made
/// `0600`.
pub fn check_file(path: &Path, file: &File) -> Result<(), Failure> {
    #[cfg(unix)]
    {
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(refused(path, "is not a regular file".into()));
        }
        check_owner_and_writers(path, &meta)?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
            log::info!(
                "local store: {} was readable by other accounts (mode {mode:04o}); made it {FILE_MODE:04o}",
                path.display()
            );
        }
    }
    let _ = (path, file);
    Ok(())
}

/// Refuses what another account owns or what its group or others can
/// write.
#[cfg(unix)]
fn check_owner_and_writers(path: &Path, meta: &fs::Metadata) -> Result<(), Failure> {
    let me = super::os::euid();
    if meta.uid() != me {
        return Err(refused(
            path,
            format!(
                "is owned by another account (uid {}, this process runs as uid {me}), which could \
                 have planted or altered it",
                meta.uid()
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refused(
            path,
            format!(
                "is writable by its group or by others (mode {mode:04o}), who could plant or \
                 alter store files; make it private (chmod go-w) or remove it"
            ),
        ));
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    /// Runs `f` under `umask`. The umask is per process: these tests run
    /// one at a time, and only with masks that leave the owner's bits, so
    /// that tests running meanwhile still use what they create.
    fn with_umask<T>(umask: u32, f: impl FnOnce() -> T) -> T {
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: umask only sets the process's file mode mask.
        let old = unsafe { libc::umask(umask as libc::mode_t) };
        let out = f();
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        out
    }

    #[test]
    fn folders_are_0700_and_files_0600_whatever_the_umask() {
        for umask in [0o000, 0o022, 0o077] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("a/b");
            let file = dir.join("f");
            with_umask(umask, || {
                ensure_dir(&dir, Folder::Own).unwrap();
                drop(open_file(&file, Create::IfMissing, true).unwrap());
            });
            assert_eq!(mode(&tmp.path().join("a")), 0o700, "umask {umask:o}");
            assert_eq!(mode(&dir), 0o700, "umask {umask:o}");
            assert_eq!(mode(&file), 0o600, "umask {umask:o}");
        }
    }

    #[test]
    fn a_planted_symlink_is_refused_and_its_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        fs::write(&target, b"theirs").unwrap();
        let link = tmp.path().join("store.pages");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for create in [Create::No, Create::IfMissing] {
            let e = open_file(&link, create, true).unwrap_err().to_string();
            assert!(
                e.contains("symbolic link") && e.contains("store.pages"),
                "{e}"
            );
        }
        assert!(open_file(&link, Create::New, true).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"theirs");
    }

    #[test]
    fn writable_by_others_is_refused_and_readable_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o775).unwrap();
        let e = ensure_dir(&dir, Folder::Own).unwrap_err().to_string();
        assert!(
            e.contains("writable by its group") && e.contains("0775"),
            "{e}"
        );
        assert!(e.contains(&dir.display().to_string()), "{e}");
        assert_eq!(mode(&dir), 0o775, "a refused folder is left alone");

        // An earlier version's folder and file, readable by all: tightened.
        set_mode(&dir, 0o755).unwrap();
        ensure_dir(&dir, Folder::Own).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("x.pages");
        fs::write(&file, b"").unwrap();
        set_mode(&file, 0o644).unwrap();
        drop(open_file(&file, Create::IfMissing, true).unwrap());
        assert_eq!(mode(&file), 0o600);
        set_mode(&file, 0o664).unwrap();
        let e = open_file(&file, Create::No, false).unwrap_err().to_string();
        assert!(e.contains("writable") && e.contains("x.pages"), "{e}");

        // A shared folder (a hydration path's) is checked, not tightened.
        let shared = tmp.path().join("data");
        fs::create_dir(&shared).unwrap();
        set_mode(&shared, 0o755).unwrap();
        ensure_dir(&shared, Folder::Shared).unwrap();
        assert_eq!(mode(&shared), 0o755);
    }

    #[test]
    fn what_another_account_owns_is_refused_even_for_root() {
        if super::super::os::euid() != 0 {
            // Only root can give a file away; CI runs as root.
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o700).unwrap();
        let file = dir.join("x.pages");
        fs::write(&file, b"").unwrap();
        set_mode(&file, 0o600).unwrap();
        std::os::unix::fs::lchown(&file, Some(65534), Some(65534)).unwrap();
        let e = open_file(&file, Create::IfMissing, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("owned by another account (uid 65534") && e.contains("x.pages"),
            "{e}"
        );
        std::os::unix::fs::lchown(&dir, Some(65534), Some(65534)).unwrap();
        let e = ensure_dir(&dir, Folder::Own).unwrap_err().to_string();
        assert!(
            e.contains("owned by another account") && e.contains("cache"),
            "{e}"
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("blob");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open_file(&fifo, Create::No, false).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
