//! Whether a test server must run here: a backend test that finds no
//! settings for a required server FAILS instead of skipping (a skip would
//! let CI pass without testing the backend).

use std::path::PathBuf;

/// The folder of tests/harness/servers.sh: its env file and pid files.
pub fn servers_dir() -> PathBuf {
    std::env::var_os("LSVFS_SERVERS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/lsvfs-servers"))
}

/// Why `service` (a servers.sh name) must run here, if it must: CI, or a
/// pid file servers.sh wrote when it started the server (and removes when
/// it stops it).
pub fn required(service: &str) -> Option<String> {
    if let Some(ci) = std::env::var("CI")
        .ok()
        .filter(|v| !v.is_empty() && v != "false" && v != "0")
    {
        return Some(format!("CI={ci} (.ci/run starts every server)"));
    }
    let pid_file = servers_dir().join(format!("{service}.pid"));
    let text = std::fs::read_to_string(&pid_file).ok()?;
    let mut fields = text.split_whitespace();
    let (pid, started) = (fields.next()?, fields.next()?);
    // The same test as servers.sh's `alive`: the process exists and started
    // when the pid file says (field 22 of /proc/PID/stat).
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .is_some_and(|stat| stat.split_whitespace().nth(21) == Some(started));
    Some(format!(
        "{} records {service} as started (pid {pid}, {})",
        pid_file.display(),
        if alive { "running" } else { "NOT running" }
    ))
}
