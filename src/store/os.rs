//! What the store needs from the operating system: positional reads and
//! writes, whole-file locks shared between processes, the machine's boot,
//! and whether a directory is on a network filesystem.

use std::fs::File;
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

/// Takes the exclusive `flock` of `file` if no other open file description
/// holds it: `Ok(false)` when one does. Held per open file description until
/// [`unlock`] or the last close, released by the kernel when the process
/// dies (even by `kill -9`). It never waits: callers that may wait retry
/// until a deadline of their own (see `DiskStore::lock`).
#[cfg(unix)]
pub fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: the descriptor belongs to `file`, open for this call;
        // flock reads no memory of ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Releases the lock of [`try_lock`].
#[cfg(unix)]
pub fn unlock(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: as in `try_lock`.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Without `flock` (Windows) the store does not open: see
/// [`super::OpenError`].
#[cfg(not(unix))]
pub fn try_lock(_file: &File) -> io::Result<bool> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the local store needs flock(2), which this platform lacks: disk_cache and hydration \
         work on Linux and macOS",
    ))
}

#[cfg(not(unix))]
pub fn unlock(_file: &File) -> io::Result<()> {
    Ok(())
}

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
}
