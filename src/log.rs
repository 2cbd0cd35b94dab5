//! Logging: nothing on stdout, ever. Warnings and errors go to stderr by
//! default; `LITESTREAM_LOG_LEVEL` changes the threshold and
//! `LITESTREAM_LOG_FILE` sends lines to a file instead.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_uppercase().as_str() {
            "DEBUG" | "TRACE" => Some(Level::Debug),
            "INFO" => Some(Level::Info),
            "WARN" | "WARNING" => Some(Level::Warn),
            "ERROR" => Some(Level::Error),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

struct Logger {
    threshold: Level,
    /// Opened in append mode: each line is one `write`, atomic with respect
    /// to other writers, and no lock is taken (a lock held by another thread
    /// at `fork()` would block a child forever).
    file: Option<File>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| {
        let threshold = std::env::var("LITESTREAM_LOG_LEVEL")
            .ok()
            .and_then(|v| Level::parse(&v))
            .unwrap_or(Level::Warn);
        let file = std::env::var_os("LITESTREAM_LOG_FILE")
            .filter(|p| !p.is_empty())
            .and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
        Logger { threshold, file }
    })
}

/// Whether a message at `level` would be written.
pub fn enabled(level: Level) -> bool {
    level >= logger().threshold
}

/// Writes one line. Callers never pass credentials: URLs are redacted where
/// they are parsed.
pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    let l = logger();
    if level < l.threshold {
        return;
    }
    let now = timestamp();
    let line = format!("{now} {} litestream-vfs: {args}\n", level.name());
    let _ = match &l.file {
        Some(f) => (&*f).write_all(line.as_bytes()),
        // Unbuffered: one write per line, no lock held across calls.
        None => std::io::stderr().write_all(line.as_bytes()),
    };
}

/// The time now, RFC 3339 in UTC with milliseconds.
fn timestamp() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    crate::timefmt::format_rfc3339_millis(ms)
}

macro_rules! debug { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($t)*)) } }
macro_rules! info { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($t)*)) } }
macro_rules! warn_ { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($t)*)) } }
macro_rules! error { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($t)*)) } }
pub(crate) use warn_ as warn;
pub(crate) use {debug, error, info};
