//! What the store needs from the operating system: positional reads and
//! writes, whole-file locks shared between processes, the machine's boot,
//! and whether a directory is on a network filesystem.

use std::fs::{File, TryLockError};
use std::io;
use std::path::Path;

/// Reads exactly `buf.len()` bytes at `offset`; a short file is an error.
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0usize;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(
                file,
                &mut buf[done..],
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

/// Writes all of `buf` at `offset`.
pub fn write_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0usize;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_write(
                file,
                &buf[done..],
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            done += n;
        }
        Ok(())
    }
}

/// Takes the exclusive lock of `file` if no other open file description
/// (on Windows: no other handle) holds it: `Ok(false)` when one does. It
/// never waits: callers that may wait retry until a deadline of their own
/// (see `DiskStore::lock`). Held until [`unlock`] or the last close,
/// released by the system when the process dies (even by `kill -9`).
///
/// `std::fs::File::try_lock`: `flock(LOCK_EX | LOCK_NB)` on Unix, so
/// processes of an earlier version (which called `flock` themselves) and
/// of this one exclude each other; `LockFileEx` of the whole file on
/// Windows. There the lock is mandatory: while a writer holds it, a read
/// through another handle fails (`ERROR_LOCK_VIOLATION`), which the store
/// takes as a miss (the page comes from storage), never as data. Writers
/// hold it for milliseconds.
pub fn try_lock(file: &File) -> io::Result<bool> {
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(TryLockError::WouldBlock) => return Ok(false),
            Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Releases the lock of [`try_lock`].
pub fn unlock(file: &File) -> io::Result<()> {
    match file.unlock() {
        // On Windows std unlocks twice (a handle may hold an exclusive and
        // a shared lock, which take one unlock each) and takes the second
        // call's "not locked" as success. Wine answers that call with
        // ERROR_LOCK_VIOLATION instead of ERROR_NOT_LOCKED, after the
        // first one released the lock.
        #[cfg(windows)]
        Err(e) if e.raw_os_error() == Some(ERROR_LOCK_VIOLATION) => Ok(()),
        other => other,
    }
}

/// Windows' `ERROR_LOCK_VIOLATION`.
#[cfg(windows)]
const ERROR_LOCK_VIOLATION: i32 = 33;

/// The effective user id of this process: whom store files must belong to.
#[cfg(unix)]
pub fn euid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// An identity of the current boot of the machine, 0 when unknown. After a
/// reboot, writes that were only in the page cache may be lost, so the
/// store stops trusting its open entries past what each one recorded.
pub fn boot_id() -> u64 {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| twox_hash::XxHash3_64::oneshot(s.trim().as_bytes()).max(1))
        .unwrap_or(0)
}

/// Filesystem types shared between hosts, where another machine's writes
/// and locks cannot be relied on.
const NETWORK_FS: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "9p",
    "ceph",
    "afs",
    "lustre",
    "gpfs",
    "glusterfs",
    "fuse.sshfs",
    "fuse.glusterfs",
    "fuse.s3fs",
    "fuse.rclone",
    "fuse.juicefs",
    "davfs",
    "fuse.davfs2",
];

/// The type of the filesystem holding `dir`, when the system says.
pub fn fs_type(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    fs_type_in(&mounts, &dir)
}

/// The longest mount point that contains `dir`, from `/proc/self/mounts`.
fn fs_type_in(mounts: &str, dir: &Path) -> Option<String> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            let point = point.replace("\\040", " ");
            dir.starts_with(&point)
                .then(|| (point.len(), kind.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
}

/// Whether a filesystem type is one shared between hosts.
pub fn is_network_fs(kind: &str) -> bool {
    NETWORK_FS.contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_filesystem_of_a_directory() {
        let mounts = "/dev/sda1 / ext4 rw 0 0\n\
                      srv:/export /mnt/shared nfs4 rw 0 0\n\
                      tmpfs /mnt/shared/tmp tmpfs rw 0 0\n";
        let kind = |p: &str| fs_type_in(mounts, Path::new(p)).unwrap();
        assert_eq!(kind("/var/cache"), "ext4");
        assert_eq!(kind("/mnt/shared/app"), "nfs4");
        assert_eq!(kind("/mnt/shared/tmp/x"), "tmpfs");
        assert!(is_network_fs("nfs4") && is_network_fs("cifs"));
        assert!(!is_network_fs("ext4") && !is_network_fs("tmpfs"));
    }

    #[test]
    fn positional_io_round_trips_and_short_reads_fail() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        write_at(&f, b"hello", 10).unwrap();
        let mut buf = [0u8; 5];
        read_at(&f, &mut buf, 10).unwrap();
        assert_eq!(&buf, b"hello");
        assert!(read_at(&f, &mut buf, 12).is_err());
    }

    fn open_rw(path: &Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap()
    }

    /// Two opens of one file (two processes, or two stores of one process):
    /// one holds the lock at a time; an unlock or the holder's close hands
    /// it over, and it is never reentrant across opens.
    #[test]
    fn the_lock_admits_one_open_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let a = open_rw(&path);
        let b = open_rw(&path);
        assert!(try_lock(&a).unwrap());
        assert!(!try_lock(&b).unwrap(), "a second open is excluded");
        unlock(&a).unwrap();
        assert!(try_lock(&b).unwrap(), "the unlock handed it over");
        assert!(!try_lock(&a).unwrap());
        drop(b);
        assert!(try_lock(&a).unwrap(), "the holder's close released it");
        unlock(&a).unwrap();
    }

    /// A lock taken in another process is seen, and goes with that
    /// process even when it is killed: what `try_lock` documents, with a
    /// real second process (`flock(1)` from util-linux, where installed).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_lock_held_by_another_process_excludes_until_it_dies() {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let Ok(out) = Command::new("flock").arg("--version").output() else {
            eprintln!("skipped: no flock(1)");
            return;
        };
        assert!(out.status.success());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let ours = open_rw(&path);
        let ready = dir.path().join("ready");
        // Holds the lock, says so, then sleeps until killed. `--close`:
        // only flock(1) holds the lock, not its command, so that the lock
        // goes when the process we wait for is gone; both are in a
        // process group of their own, killed together.
        let mut child = Command::new("flock")
            .arg("--exclusive")
            .arg("--close")
            .arg(&path)
            .arg("sh")
            .arg("-c")
            .arg(format!("touch '{}'; exec sleep 600", ready.display()))
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !ready.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "flock(1) never took the lock"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let held = try_lock(&ours);
        let group = i32::try_from(child.id()).unwrap();
        // SAFETY: signals the process group this test made; kill reads no
        // memory of ours.
        assert_eq!(unsafe { libc::kill(-group, libc::SIGKILL) }, 0);
        child.wait().unwrap();
        assert!(!held.unwrap(), "the other process's lock excludes ours");
        assert!(
            try_lock(&ours).unwrap(),
            "the lock went with the killed process"
        );
    }

    /// Processes of an earlier version call `flock` themselves during an
    /// upgrade: theirs, shared or exclusive, excludes ours, and ours
    /// excludes theirs.
    #[cfg(unix)]
    #[test]
    fn the_lock_and_raw_flock_of_earlier_versions_exclude_each_other() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let ours = open_rw(&path);
        let theirs = open_rw(&path);
        let flock = |how: i32| {
            // SAFETY: `theirs` is open for the whole test; flock reads no
            // memory of ours.
            unsafe { libc::flock(theirs.as_raw_fd(), how | libc::LOCK_NB) == 0 }
        };
        for how in [libc::LOCK_SH, libc::LOCK_EX] {
            assert!(flock(how));
            assert!(
                !try_lock(&ours).unwrap(),
                "their lock ({how}) excludes ours"
            );
            assert!(flock(libc::LOCK_UN));
        }
        assert!(try_lock(&ours).unwrap());
        assert!(!flock(libc::LOCK_SH), "ours excludes their shared lock");
        assert!(!flock(libc::LOCK_EX), "ours excludes their exclusive lock");
        unlock(&ours).unwrap();
        assert!(flock(libc::LOCK_EX));
    }
}
