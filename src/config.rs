//! Configuration of one open: URI parameters first, then environment
//! variables read at open time, then defaults. Parsed once into [`Config`];
//! anything unknown or malformed fails the open with a message naming it.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::storage::ReplicaUrl;

/// How often to look for new LTX files when nothing says otherwise: the
/// official extension's default, and Litestream's own sync cadence.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Page cache budget per replica. Large enough to hold the hot part of a
/// database of a few hundred MB, small enough for a web worker.
pub const DEFAULT_CACHE_SIZE: u64 = 128 * 1024 * 1024;

/// How long an open waits for a replica that has no LTX files yet (Litestream
/// was just started) before failing.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a replica (its poller, index and cache) outlives its last
/// connection, so that a pool that closes and reopens connections does not
/// re-plan from scratch each time.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Budget of one storage call on object storage, retries included: long
/// enough to ride out a blip and a slow multi-MiB read, short enough that a
/// query against an unreachable server fails while someone still waits.
pub const DEFAULT_STORAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Disk tier budget per replica: room for a database of about a gigabyte,
/// bounded so that a forgotten cache directory cannot fill a disk.
pub const DEFAULT_DISK_CACHE_SIZE: u64 = 1 << 30;

/// Share of the page cache (and of the disk tier, when there is one) that
/// the warm-up of interior pages may fill by default: the interior levels
/// of a B-tree are about 1/300 of it, so a quarter of the cache covers the
/// interiors of a database some 75 times the cache, and leaves three
/// quarters to the pages queries read.
pub const DEFAULT_WARMUP_SHARE: u64 = 4;

/// Bytes the warm-up may read from storage in wide reads, the gaps between
/// its pages included, where storage streams bodies (S3, GCS, Azure,
/// OSS): the gaps arrive and are thrown away as they stream, so this
/// bounds transfer, not memory. The bound is the whole warm-up's: once
/// spent, its later waves keep the fixed merging. A level's
/// interior pages lie up to a few hundred KiB (an index) or MB (a table
/// with long rows) apart: reading the gaps is what makes it one request
/// instead of one per page. 128 MiB covers the whole file of a database
/// up to that size (its waves are then one request per file region), costs
/// about a second of one in-region connection in the background, and
/// nothing in-region on S3, where transfer is free and a request is not;
/// a 10 GB database reads about this in all, not the file. Across
/// regions or the internet, transfer is billed (about $0.02–0.09/GB: a
/// MB costs as much as 50–225 GETs): set `warmup_read_max=0` there, which
/// keeps the fixed merging of frames up to 512 KiB apart.
pub const DEFAULT_WARMUP_READ_MAX: u64 = 128 * 1024 * 1024;

/// Smallest cache we accept: a few 64 KiB pages.
const MIN_CACHE_SIZE: u64 = 1024 * 1024;

/// SQLite's own URI parameters, which keep their SQLite meaning.
const SQLITE_PARAMS: &[&str] = &[
    "vfs",
    "mode",
    "cache",
    "psow",
    "nolock",
    "immutable",
    "modeof",
];

/// Query parameters of replica URLs (S3's in both of Litestream's
/// spellings, and the other backends'): found among the URI's own, they
/// mean a replica URL was pasted without percent-encoding.
const REPLICA_URL_PARAMS: &[&str] = &[
    "endpoint",
    "region",
    "forcePathStyle",
    "force-path-style",
    "skipVerify",
    "skip-verify",
    "signPayload",
    "sign-payload",
    "requireContentMD5",
    "require-content-md5",
    "concurrency",
    "partSize",
    "part-size",
    "storageClass",
    "storage-class",
    "sseCustomerAlgorithm",
    "sse-customer-algorithm",
    "sseCustomerKey",
    "sse-customer-key",
    "sseCustomerKeyMD5",
    "sse-customer-key-md5",
    "sseKmsKeyId",
    "sse-kms-key-id",
    "key",
    "known-hosts",
    "host-key",
    "skip-host-key-check",
    "tls",
    "root-cas",
    "client-cert",
    "client-key",
    "creds",
    "token",
];

/// Settings of one replica open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub replica_url: ReplicaUrl,
    pub poll_interval: Duration,
    pub cache_size: u64,
    pub open_timeout: Duration,
    pub idle_timeout: Duration,
    pub verify: Verify,
    /// The time budget of one storage call (request and retries) on object
    /// storage: how long a query waits for an unreachable server.
    pub storage_timeout: Duration,
    /// The directory of the host-wide disk tier, if any.
    pub disk_cache: Option<PathBuf>,
    /// Bytes the disk tier may use per replica.
    pub disk_cache_size: u64,
    /// Hydration: a full local copy filled in the background.
    pub hydration: Option<Hydration>,
    /// The warm-up of interior B-tree pages after the open: the bytes of
    /// pages it may fetch at most (`None`: off).
    pub warmup: Option<u64>,
    /// Bytes one wave of the warm-up may read, gaps included, over storage
    /// that streams bodies (0: only the fixed merging of nearby frames).
    pub warmup_read_max: u64,
    /// Storage requests one statement of a connection may cause before its
    /// read fails (`None`: no budget); `PRAGMA
    /// litestream_max_requests_per_query` changes it per connection.
    pub max_requests_per_query: Option<u64>,
}

/// Where hydration keeps its copy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Hydration {
    /// `hydration_path`; `None`: a temporary file removed with the replica.
    pub path: Option<PathBuf>,
}

/// Which LTX files have their file checksum verified.
///
/// Files up to 1 MiB are always fetched whole, so always verified. A larger
/// file (a snapshot) is read frame by frame, and a single frame carries no
/// checksum: verifying it means streaming the whole file once in the
/// background. That is cheap on a local disk and costs a full download on
/// object storage, hence the per-backend default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verify {
    /// Only files fetched whole (the default for remote storage).
    Fetched,
    /// Every file, large ones in the background (the default for `file://`).
    Full,
}

fn parse_verify(s: &str) -> Option<Verify> {
    match s.to_ascii_lowercase().as_str() {
        "full" | "all" => Some(Verify::Full),
        "fetched" | "light" => Some(Verify::Fetched),
        _ => None,
    }
}

/// One parameter we know: its URI name, its environment variable.
struct Param {
    uri: &'static str,
    env: &'static str,
}

const REPLICA_URL: Param = Param {
    uri: "replica_url",
    env: "LITESTREAM_REPLICA_URL",
};
const POLL_INTERVAL: Param = Param {
    uri: "poll_interval",
    env: "LITESTREAM_POLL_INTERVAL",
};
const CACHE_SIZE: Param = Param {
    uri: "cache_size",
    env: "LITESTREAM_CACHE_SIZE",
};
const OPEN_TIMEOUT: Param = Param {
    uri: "open_timeout",
    env: "LITESTREAM_OPEN_TIMEOUT",
};
const IDLE_TIMEOUT: Param = Param {
    uri: "idle_timeout",
    env: "LITESTREAM_IDLE_TIMEOUT",
};
const STORAGE_TIMEOUT: Param = Param {
    uri: "storage_timeout",
    env: "LITESTREAM_STORAGE_TIMEOUT",
};
const VERIFY: Param = Param {
    uri: "verify",
    env: "LITESTREAM_VERIFY",
};
const HYDRATION_ENABLED: Param = Param {
    uri: "hydration_enabled",
    env: "LITESTREAM_HYDRATION_ENABLED",
};
const HYDRATION_PATH: Param = Param {
    uri: "hydration_path",
    env: "LITESTREAM_HYDRATION_PATH",
};
const DISK_CACHE: Param = Param {
    uri: "disk_cache",
    env: "LITESTREAM_DISK_CACHE",
};
const DISK_CACHE_SIZE: Param = Param {
    uri: "disk_cache_size",
    env: "LITESTREAM_DISK_CACHE_SIZE",
};
const WARMUP: Param = Param {
    uri: "warmup",
    env: "LITESTREAM_WARMUP",
};
const WARMUP_MAX: Param = Param {
    uri: "warmup_max",
    env: "LITESTREAM_WARMUP_MAX",
};
const WARMUP_READ_MAX: Param = Param {
    uri: "warmup_read_max",
    env: "LITESTREAM_WARMUP_READ_MAX",
};
const MAX_REQUESTS_PER_QUERY: Param = Param {
    uri: "max_requests_per_query",
    env: "LITESTREAM_MAX_REQUESTS_PER_QUERY",
};
const WRITE_ENABLED: Param = Param {
    uri: "write_enabled",
    env: "LITESTREAM_WRITE_ENABLED",
};
const SYNC_INTERVAL: Param = Param {
    uri: "sync_interval",
    env: "LITESTREAM_SYNC_INTERVAL",
};
const BUFFER_PATH: Param = Param {
    uri: "buffer_path",
    env: "LITESTREAM_BUFFER_PATH",
};

const ALL: &[&Param] = &[
    &REPLICA_URL,
    &POLL_INTERVAL,
    &CACHE_SIZE,
    &OPEN_TIMEOUT,
    &IDLE_TIMEOUT,
    &VERIFY,
    &STORAGE_TIMEOUT,
    &HYDRATION_ENABLED,
    &HYDRATION_PATH,
    &DISK_CACHE,
    &DISK_CACHE_SIZE,
    &WARMUP,
    &WARMUP_MAX,
    &WARMUP_READ_MAX,
    &MAX_REQUESTS_PER_QUERY,
    &WRITE_ENABLED,
    &SYNC_INTERVAL,
    &BUFFER_PATH,
];

/// Where values come from: the open's URI parameters and an environment.
pub struct Sources<'a> {
    pub uri: &'a [(String, String)],
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Sources<'_> {
    /// The value and where it came from, for messages.
    fn get(&self, p: &Param) -> Option<(String, String)> {
        if let Some((_, v)) = self.uri.iter().rev().find(|(k, _)| k == p.uri) {
            return Some((v.clone(), format!("URI parameter {}", p.uri)));
        }
        (self.env)(p.env)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (v, format!("environment variable {}", p.env)))
    }
}

impl Config {
    /// Parses the configuration of one open.
    pub fn parse(src: &Sources<'_>) -> Result<Config> {
        for (k, _) in src.uri {
            if !SQLITE_PARAMS.contains(&k.as_str()) && !ALL.iter().any(|p| p.uri == k) {
                let known: Vec<&str> = ALL.iter().map(|p| p.uri).collect();
                let hint = if REPLICA_URL_PARAMS.contains(&k.as_str()) {
                    " (it is a parameter of the replica URL, pasted raw into the URI: \
                     percent-encode the replica URL, '?' as %3F and '&' as %26, or set \
                     LITESTREAM_REPLICA_URL)"
                } else {
                    ""
                };
                return Err(Error::Config(format!(
                    "unknown URI parameter {k:?} for the litestream VFS{hint}; known: {}",
                    known.join(", ")
                )));
            }
        }
        let (raw_url, _) = src.get(&REPLICA_URL).ok_or_else(|| {
            Error::Config(
                "no replica URL: set the URI parameter replica_url or the environment variable \
                 LITESTREAM_REPLICA_URL"
                    .into(),
            )
        })?;
        let replica_url = ReplicaUrl::parse(&raw_url).map_err(|e| Error::Config(e.message))?;
        reject_enabled(
            src,
            &WRITE_ENABLED,
            "write mode is not supported: this VFS only reads replicas",
        )?;
        // sync_interval and buffer_path are accepted for compatibility with
        // the official extension; with write mode off they mean nothing, as
        // hydration_path does without hydration_enabled.
        let hydration = parse_with(src, &HYDRATION_ENABLED, parse_bool)?
            .unwrap_or(false)
            .then(|| Hydration {
                path: src
                    .get(&HYDRATION_PATH)
                    .map(|(v, _)| PathBuf::from(v.trim()))
                    .filter(|p| !p.as_os_str().is_empty()),
            });
        let disk_cache = src
            .get(&DISK_CACHE)
            .map(|(v, _)| PathBuf::from(v.trim()))
            .filter(|p| !p.as_os_str().is_empty());
        let disk_cache_size =
            parse_with(src, &DISK_CACHE_SIZE, parse_size)?.unwrap_or(DEFAULT_DISK_CACHE_SIZE);
        if disk_cache_size < MIN_CACHE_SIZE {
            return Err(Error::Config(format!(
                "disk_cache_size {disk_cache_size} is below the minimum of 1MiB"
            )));
        }
        let poll_interval =
            parse_with(src, &POLL_INTERVAL, parse_duration)?.unwrap_or(DEFAULT_POLL_INTERVAL);
        if poll_interval < Duration::from_millis(1) {
            return Err(Error::Config(format!(
                "poll_interval {poll_interval:?} is below 1ms: give a positive duration such as 100ms or 1s"
            )));
        }
        let cache_size = parse_with(src, &CACHE_SIZE, parse_size)?.unwrap_or(DEFAULT_CACHE_SIZE);
        if cache_size < MIN_CACHE_SIZE {
            return Err(Error::Config(format!(
                "cache_size {cache_size} is below the minimum of 1MiB"
            )));
        }
        let open_timeout =
            parse_with(src, &OPEN_TIMEOUT, parse_duration)?.unwrap_or(DEFAULT_OPEN_TIMEOUT);
        let idle_timeout =
            parse_with(src, &IDLE_TIMEOUT, parse_duration)?.unwrap_or(DEFAULT_IDLE_TIMEOUT);
        let local = replica_url.scheme() == crate::storage::Scheme::File;
        let verify = parse_with(src, &VERIFY, parse_verify)?.unwrap_or(if local {
            Verify::Full
        } else {
            Verify::Fetched
        });
        let storage_timeout =
            parse_with(src, &STORAGE_TIMEOUT, parse_duration)?.unwrap_or(DEFAULT_STORAGE_TIMEOUT);
        if storage_timeout < Duration::from_millis(100) {
            return Err(Error::Config(format!(
                "storage_timeout {storage_timeout:?} is below 100ms"
            )));
        }
        let warmup = parse_warmup(
            src,
            cache_size,
            disk_cache.as_ref().map(|_| disk_cache_size),
        )?;
        let warmup_read_max =
            parse_with(src, &WARMUP_READ_MAX, parse_size)?.unwrap_or(DEFAULT_WARMUP_READ_MAX);
        // 0 is "no budget", as for the PRAGMA.
        let max_requests_per_query =
            parse_with(src, &MAX_REQUESTS_PER_QUERY, |v| v.parse::<u64>().ok())?.filter(|n| *n > 0);
        Ok(Config {
            replica_url,
            poll_interval,
            cache_size,
            open_timeout,
            idle_timeout,
            verify,
            storage_timeout,
            disk_cache,
            disk_cache_size,
            hydration,
            warmup,
            warmup_read_max,
            max_requests_per_query,
        })
    }
}

/// The warm-up's cap in bytes, `None` when it is off: `warmup_max` when
/// given, else a share of the cache; never more than the cache, nor than
/// the disk tier (`disk`) when there is one.
fn parse_warmup(src: &Sources<'_>, cache_size: u64, disk: Option<u64>) -> Result<Option<u64>> {
    if !parse_with(src, &WARMUP, parse_bool)?.unwrap_or(true) {
        return Ok(None);
    }
    let share = |n: u64| n / DEFAULT_WARMUP_SHARE;
    let default = disk.map_or(share(cache_size), |d| share(cache_size).min(share(d)));
    let cap = parse_with(src, &WARMUP_MAX, parse_size)?.unwrap_or(default);
    let cap = disk.map_or(cap.min(cache_size), |d| cap.min(cache_size).min(d));
    Ok((cap > 0).then_some(cap))
}

fn parse_with<T>(src: &Sources<'_>, p: &Param, f: fn(&str) -> Option<T>) -> Result<Option<T>> {
    match src.get(p) {
        None => Ok(None),
        Some((v, from)) => f(v.trim())
            .map(Some)
            .ok_or_else(|| Error::Config(format!("bad value {v:?} for {from}"))),
    }
}

fn reject_enabled(src: &Sources<'_>, p: &Param, why: &str) -> Result<()> {
    match parse_with(src, p, parse_bool)? {
        Some(true) => Err(Error::Config(format!("{}: {why}", p.uri))),
        _ => Ok(()),
    }
}

/// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Go-style durations (`1s`, `500ms`, `1m30s`, `1.5s`) or bare seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let mut rest = s;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        // Checked: parts that each fit can still add up past Duration::MAX.
        total = total
            .checked_add(Duration::try_from_secs_f64(num.parse::<f64>().ok()? * scale).ok()?)?;
        rest = next;
    }
    (!s.is_empty()).then_some(total)
}

/// Byte sizes: `1048576`, `64KB`/`64MB`/`1GB` (powers of 1000),
/// `64KiB`/`64MiB`/`1GiB` (powers of 1024); case and a space are ignored.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.replace(' ', "").to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Config> {
        let uri: Vec<(String, String)> = uri
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Config::parse(&Sources {
            uri: &uri,
            env: &lookup,
        })
    }

    #[test]
    fn a_replica_url_pasted_raw_is_explained() {
        let url = [("replica_url", "s3://b/db?endpoint=http://h:9000")];
        for k in [
            "forcePathStyle",
            "force-path-style",
            "sseCustomerKey",
            "region",
        ] {
            let mut uri = url.to_vec();
            uri.push((k, "x"));
            let err = parse(&uri, &[]).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{k:?}")) && err.contains("percent-encode"),
                "{err}"
            );
            assert!(!err.contains("=x"), "{err}");
        }
        let err = parse(&[("replica_url", "file:///a"), ("bogus", "1")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"bogus\"") && !err.contains("percent-encode"),
            "{err}"
        );
    }

    #[test]
    fn uri_wins_over_environment() {
        let c = parse(
            &[("replica_url", "file:///a")],
            &[("LITESTREAM_REPLICA_URL", "file:///b")],
        )
        .unwrap();
        assert_eq!(c.replica_url.redacted(), "file:///a");
        let c = parse(
            &[("mode", "ro")],
            &[("LITESTREAM_REPLICA_URL", "file:///b")],
        )
        .unwrap();
        assert_eq!(c.replica_url.redacted(), "file:///b");
        assert_eq!(c.poll_interval, DEFAULT_POLL_INTERVAL);
        assert_eq!(c.cache_size, DEFAULT_CACHE_SIZE);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse(&[], &[]).unwrap_err().to_string();
        assert!(
            e.contains("replica_url") && e.contains("LITESTREAM_REPLICA_URL"),
            "{e}"
        );
        let e = parse(&[("replica_url", "file:///a"), ("pol_interval", "1s")], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"pol_interval\""), "{e}");
        let e = parse(
            &[("replica_url", "file:///a"), ("poll_interval", "soon")],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("poll_interval") && e.contains("soon"), "{e}");
        // Down to 1 ms, as the official accepts 5 ms; zero is refused.
        for (v, ms) in [("5ms", 5), ("1ms", 1), ("0.002", 2)] {
            let c = parse(&[("replica_url", "file:///a"), ("poll_interval", v)], &[]).unwrap();
            assert_eq!(c.poll_interval, Duration::from_millis(ms), "{v}");
        }
        for v in ["0", "0ms", "500us", "-1s"] {
            let e = parse(&[("replica_url", "file:///a"), ("poll_interval", v)], &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("poll_interval"), "{v}: {e}");
        }
        let e = parse(
            &[("replica_url", "file:///a")],
            &[("LITESTREAM_CACHE_SIZE", "lots")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("LITESTREAM_CACHE_SIZE"), "{e}");
        let e = parse(
            &[("replica_url", "file:///a"), ("write_enabled", "true")],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("write_enabled"), "{e}");
    }

    #[test]
    fn disk_tier_and_hydration_settings() {
        let c = parse(&[("replica_url", "file:///a")], &[]).unwrap();
        assert_eq!(
            (c.disk_cache, c.hydration),
            (None, None),
            "off unless configured"
        );
        assert_eq!(c.disk_cache_size, DEFAULT_DISK_CACHE_SIZE);
        let c = parse(
            &[
                ("replica_url", "file:///a"),
                ("disk_cache", "/var/cache/ls"),
            ],
            &[
                ("LITESTREAM_DISK_CACHE_SIZE", "64MiB"),
                ("LITESTREAM_HYDRATION_ENABLED", "true"),
            ],
        )
        .unwrap();
        assert_eq!(c.disk_cache, Some(PathBuf::from("/var/cache/ls")));
        assert_eq!(c.disk_cache_size, 64 << 20);
        assert_eq!(c.hydration, Some(Hydration { path: None }));
        let c = parse(
            &[
                ("replica_url", "file:///a"),
                ("hydration_enabled", "1"),
                ("hydration_path", "/d/h.db"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.hydration.unwrap().path, Some(PathBuf::from("/d/h.db")));
        let c = parse(
            &[("replica_url", "file:///a"), ("hydration_path", "/d/h.db")],
            &[],
        )
        .unwrap();
        assert_eq!(c.hydration, None, "a path alone enables nothing");
        let e = parse(
            &[("replica_url", "file:///a"), ("disk_cache_size", "1KB")],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("disk_cache_size"), "{e}");
        assert!(
            parse(
                &[("replica_url", "file:///a"), ("hydration_enabled", "maybe")],
                &[]
            )
            .is_err()
        );
    }

    #[test]
    fn warmup_and_request_budget_settings() {
        let c = parse(&[("replica_url", "s3://b/p")], &[]).unwrap();
        assert_eq!(
            c.warmup,
            Some(DEFAULT_CACHE_SIZE / 4),
            "on, a quarter of the cache"
        );
        assert_eq!(c.max_requests_per_query, None, "no budget by default");
        let c = parse(
            &[
                ("replica_url", "s3://b/p"),
                ("cache_size", "64MiB"),
                ("disk_cache", "/d"),
                ("disk_cache_size", "8MiB"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.warmup, Some(2 << 20), "a quarter of the smaller tier");
        let c = parse(
            &[("replica_url", "s3://b/p"), ("warmup_max", "1GiB")],
            &[("LITESTREAM_MAX_REQUESTS_PER_QUERY", "50")],
        )
        .unwrap();
        assert_eq!(
            c.warmup,
            Some(DEFAULT_CACHE_SIZE),
            "never more than the cache"
        );
        assert_eq!(c.max_requests_per_query, Some(50));
        assert_eq!(c.warmup_read_max, DEFAULT_WARMUP_READ_MAX);
        let c = parse(
            &[("replica_url", "s3://b/p"), ("warmup_read_max", "0")],
            &[("LITESTREAM_WARMUP_READ_MAX", "1GiB")],
        )
        .unwrap();
        assert_eq!(c.warmup_read_max, 0, "the URI first, 0 kept");
        let c = parse(
            &[("replica_url", "s3://b/p")],
            &[("LITESTREAM_WARMUP_READ_MAX", "16MiB")],
        )
        .unwrap();
        assert_eq!(c.warmup_read_max, 16 << 20);
        let c = parse(&[("replica_url", "s3://b/p"), ("warmup", "off")], &[]).unwrap();
        assert_eq!(c.warmup, None);
        let c = parse(&[("replica_url", "s3://b/p"), ("warmup_max", "0")], &[]).unwrap();
        assert_eq!(c.warmup, None);
        let c = parse(
            &[("replica_url", "s3://b/p"), ("max_requests_per_query", "0")],
            &[],
        )
        .unwrap();
        assert_eq!(c.max_requests_per_query, None);
        for (k, v) in [
            ("warmup", "maybe"),
            ("warmup_max", "lots"),
            ("warmup_read_max", "-1"),
            ("max_requests_per_query", "-1"),
        ] {
            let e = parse(&[("replica_url", "s3://b/p"), (k, v)], &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(k), "{e}");
        }
    }

    #[test]
    fn verification_defaults_by_backend() {
        let local = parse(&[("replica_url", "file:///a")], &[]).unwrap();
        assert_eq!(local.verify, Verify::Full);
        let remote = parse(&[("replica_url", "s3://b/p")], &[]).unwrap();
        assert_eq!(remote.verify, Verify::Fetched);
        let asked = parse(&[("replica_url", "s3://b/p"), ("verify", "full")], &[]).unwrap();
        assert_eq!(asked.verify, Verify::Full);
        assert!(parse(&[("replica_url", "file:///a"), ("verify", "maybe")], &[]).is_err());
    }

    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_size("64MB"), Some(64_000_000));
        assert_eq!(parse_size("64 MiB"), Some(64 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1TB"), None);
    }

    #[test]
    fn out_of_range_values_are_errors_not_panics() {
        let big = "5000000000000000000s".repeat(4);
        assert_eq!(parse_duration(&big), None);
        assert_eq!(parse_duration("1e400"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("NaN"), None);
        assert_eq!(parse_duration("inf"), None);
        assert_eq!(parse_duration(".s"), None);
        assert_eq!(parse_size("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_size("18446744073709551616"), None);
        assert_eq!(parse_size("20000000000GiB"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("kib"), None);
        let e = parse(
            &[("replica_url", "file:///a"), ("poll_interval", &big)],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("poll_interval"), "{e}");
    }
}
