//! One set of checks every storage backend passes (the way object_store's
//! `integration.rs` does): listing with and without `after`, every level at
//! once, exact ranged reads, several ranges, a read past the end, a missing
//! file, and files that are not LTX files ignored.
//!
//! `file://` always runs. S3 (s3s-fs), SFTP, WebDAV (rclone), NATS
//! JetStream (nats-server) and OSS (s3s-fs, reached through the OSS URL
//! form) run against the shared test servers (`tests/harness/servers.sh`).
//! Their endpoints come from the environment (`. "$(tests/harness/servers.sh
//! envfile)"`) or, when it is not set, from the servers' env file.
//!
//! A backend is required, and its absence FAILS the test, when `CI` is set
//! (CI runs `.ci/run`, which starts every server) or when servers.sh
//! recorded the server as started (its pid file in the servers' folder).
//! Only then, with no server started and outside CI, is a backend skipped,
//! with a line saying why and how to run it. Each backend that ran says so
//! too (`--nocapture`).

mod conformance_servers;

use conformance_servers::required::{required, servers_dir};

use std::path::{Path, PathBuf};
use std::time::Duration;

use litestream_vfs::ltx::{FileName, Txid, parse_name};
use litestream_vfs::storage::{
    self, FileId, Level, ReplicaUrl, Storage, StorageErrorKind, Timeouts,
};

/// The test replica: (level, name, bytes). The bytes need not be LTX: the
/// storage layer does not decode.
fn tree() -> Vec<(u8, &'static str, Vec<u8>)> {
    let bytes = |n: usize, seed: u8| (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
    vec![
        (9, "0000000000000001-0000000000000003.ltx", bytes(5000, 9)),
        (1, "0000000000000001-0000000000000002.ltx", bytes(300, 1)),
        (0, "0000000000000001-0000000000000001.ltx", bytes(100, 2)),
        (0, "0000000000000002-0000000000000002.ltx", bytes(200, 3)),
        (0, "0000000000000003-0000000000000003.ltx", bytes(70_000, 4)),
        (0, "0000000000000004-0000000000000005.ltx", bytes(1, 5)),
    ]
}

/// The tree as (relative path, bytes), each level in `dir_of(level)`, plus
/// a file that is not an LTX file in level 0.
fn tree_files(dir_of: impl Fn(u8) -> String) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = tree()
        .into_iter()
        .map(|(level, name, bytes)| (format!("{}/{name}", dir_of(level)), bytes))
        .collect();
    files.push((
        format!("{}/notes.txt", dir_of(0)),
        b"not an LTX file".to_vec(),
    ));
    files
}

/// Writes the tree under `root`.
fn write_tree(root: &Path, dir_of: impl Fn(u8) -> String) {
    for (rel, bytes) in tree_files(dir_of) {
        let file = root.join(rel);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
}

fn id(level: u8, name: &str) -> FileId {
    FileId {
        level: Level::new(level).unwrap(),
        name: parse_name(name).unwrap(),
    }
}

fn open(url: &str) -> std::sync::Arc<dyn Storage> {
    let url = ReplicaUrl::parse(url).unwrap();
    storage::open(&url, Timeouts::within(Duration::from_secs(20))).unwrap()
}

async fn conformance(backend: &str, s: &dyn Storage) {
    let all = tree();
    // list, sorted by name, sizes exact, foreign files ignored
    let l0 = s.list(Level::L0, None).await.unwrap();
    let want: Vec<(FileId, u64)> = all
        .iter()
        .filter(|(l, ..)| *l == 0)
        .map(|(l, n, b)| (id(*l, n), b.len() as u64))
        .collect();
    let got: Vec<(FileId, u64)> = l0.iter().map(|f| (f.id, f.size)).collect();
    assert_eq!(got, want, "{backend}: level 0");
    // after: strictly greater names only
    let after = FileName {
        min: Txid(2),
        max: Txid(2),
    };
    let later = s.list(Level::L0, Some(after)).await.unwrap();
    let names: Vec<String> = later.iter().map(|f| f.id.name.to_string()).collect();
    assert_eq!(
        names,
        [
            "0000000000000003-0000000000000003.ltx",
            "0000000000000004-0000000000000005.ltx"
        ],
        "{backend}: after"
    );
    assert!(
        s.list(Level::new(5).unwrap(), None)
            .await
            .unwrap()
            .is_empty(),
        "{backend}: empty level"
    );
    // every level at once
    let mut everything: Vec<(FileId, u64)> = s
        .list_all()
        .await
        .unwrap()
        .iter()
        .map(|f| (f.id, f.size))
        .collect();
    everything.sort();
    let mut want_all: Vec<(FileId, u64)> = all
        .iter()
        .map(|(l, n, b)| (id(*l, n), b.len() as u64))
        .collect();
    want_all.sort();
    assert_eq!(everything, want_all, "{backend}: list_all");
    // exact ranged reads
    let (l, n, big) = &all[4];
    let f = id(*l, n);
    let len = big.len() as u64;
    for r in [0..100, 0..len, 65_000..len, len - 1..len, 12_345..12_346] {
        let got = s.read(f, r.clone()).await.unwrap();
        assert_eq!(
            got,
            big[r.start as usize..r.end as usize],
            "{backend}: read {r:?}"
        );
    }
    let ranges = vec![10..20, 0..5, 69_990..70_000];
    let got = s.read_ranges(f, ranges.clone()).await.unwrap();
    for (r, g) in ranges.iter().zip(&got) {
        assert_eq!(
            g[..],
            big[r.start as usize..r.end as usize],
            "{backend}: read_ranges {r:?}"
        );
    }
    // past the end: an error, not short data
    assert!(
        s.read(f, len - 10..len + 10).await.is_err(),
        "{backend}: read past the end"
    );
    // a file that does not exist
    let e = s
        .read(id(0, "0000000000000009-0000000000000009.ltx"), 0..10)
        .await
        .unwrap_err();
    assert_eq!(e.kind, StorageErrorKind::NotFound, "{backend}: {e}");
    // messages name the replica, never a password
    assert!(
        e.message.contains(s.describe()) || e.message.contains(backend),
        "{backend}: {e}"
    );
    eprintln!("ran: {backend} conforms ({})", s.describe());
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn unique(what: &str) -> String {
    format!(
        "conformance-{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// The `export NAME='value'` lines of the servers' env file.
fn env_file() -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(servers_dir().join("env.sh")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// A variable of the environment, else of the servers' env file.
fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| {
            env_file()
                .into_iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
                .filter(|v| !v.is_empty())
        })
}

/// A backend whose settings are missing: a failure when it is required,
/// else a skip that says how to run it.
fn missing(backend: &str, service: &str) {
    if let Some(why) = required(service) {
        panic!(
            "{backend}: the server is required here ({why}) but its settings are missing: \
             source the servers' env file (. \"$(tests/harness/servers.sh envfile)\")"
        );
    }
    eprintln!(
        "skipped: {backend}: no {service} server (not CI, and tests/harness/servers.sh did not \
         start one; run `tests/harness/servers.sh up` to test it)"
    );
}

/// Says which backend runs and why it is required, so that a connection
/// failure below reads as a server that should have been there.
fn running(backend: &str, service: &str) {
    match required(service) {
        Some(why) => eprintln!("running: {backend} (required: {why})"),
        None => eprintln!("running: {backend} (its settings are in the environment)"),
    }
}

/// One test, the backends one after another: the S3 part sets environment
/// variables, which must not race with another thread's open.
#[test]
fn every_backend_conforms() {
    file_backend_conforms();
    sftp_backend_conforms();
    s3_backend_conforms();
    oss_backend_conforms();
    webdav_backend_conforms();
    nats_backend_conforms();
}

fn file_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), |l| format!("ltx/{l}"));
    let url = url::Url::from_directory_path(dir.path())
        .unwrap()
        .to_string();
    let s = open(&url);
    rt().block_on(conformance("file", s.as_ref()));
}

fn sftp_backend_conforms() {
    let (Some(home), Some(user), Some(host), Some(port), Some(key), Some(known)) = (
        env("LSVFS_SFTP_HOME"),
        env("LSVFS_SFTP_USER"),
        env("LSVFS_SFTP_HOST"),
        env("LSVFS_SFTP_PORT"),
        env("LSVFS_SFTP_KEY"),
        env("LSVFS_SFTP_KNOWN_HOSTS"),
    ) else {
        missing("sftp", "sftp");
        return;
    };
    running("sftp", "sftp");
    let path = unique("sftp");
    let root = PathBuf::from(home).join(&path);
    write_tree(&root, |l| format!("ltx/{l}"));
    let q = |v: &str| {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let url = format!(
        "sftp://{user}@{host}:{port}/{path}?key={}&known-hosts={}",
        q(&key),
        q(&known)
    );
    let s = open(&url);
    rt().block_on(conformance("sftp", s.as_ref()));
    let _ = std::fs::remove_dir_all(root);
}

fn s3_backend_conforms() {
    let (Some(dir), Some(bucket), Some(endpoint), Some(key), Some(secret)) = (
        env("LSVFS_S3_DIR"),
        env("LSVFS_BUCKET"),
        env("LSVFS_S3_ENDPOINT"),
        env("LSVFS_S3_KEY"),
        env("LSVFS_S3_SECRET"),
    ) else {
        missing("s3", "s3");
        return;
    };
    running("s3", "s3");
    let path = unique("s3");
    // s3s-fs keeps objects as plain files under its root; S3's layout has
    // the level as four hex digits.
    let root = PathBuf::from(dir).join(&path);
    write_tree(&root, |l| format!("{l:04x}"));
    // The credentials: the URL has no place for them, so the LITESTREAM_*
    // variables (read at open; checked to be already set or set to the
    // same values, so no other test sees a change).
    for (k, v) in [
        ("LITESTREAM_ACCESS_KEY_ID", key),
        ("LITESTREAM_SECRET_ACCESS_KEY", secret),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ] {
        if env(k).as_deref() != Some(v.as_str()) {
            // SAFETY: this binary's only test runs the backends one after
            // another on this thread; nothing else reads the environment
            // while it is set.
            unsafe { std::env::set_var(k, v) };
        }
    }
    let url =
        format!("s3://{bucket}/{path}?endpoint={endpoint}&region=us-east-1&force-path-style=true");
    let s = open(&url);
    rt().block_on(conformance("s3", s.as_ref()));
    let _ = std::fs::remove_dir_all(root);
}

/// OSS through its S3-compatible API, here s3s-fs: the OSS host form with a
/// region, the test server as `endpoint`, the key layout S3's. Runs after
/// the S3 part, which set the LITESTREAM_* credentials OSS reads too.
fn oss_backend_conforms() {
    let (Some(dir), Some(bucket), Some(endpoint), Some(_), Some(_)) = (
        env("LSVFS_S3_DIR"),
        env("LSVFS_BUCKET"),
        env("LSVFS_S3_ENDPOINT"),
        env("LITESTREAM_ACCESS_KEY_ID"),
        env("LITESTREAM_SECRET_ACCESS_KEY"),
    ) else {
        missing("oss", "s3");
        return;
    };
    running("oss", "s3");
    let path = unique("oss");
    let root = PathBuf::from(dir).join(&path);
    write_tree(&root, |l| format!("{l:04x}"));
    let url = format!(
        "oss://{bucket}.oss-cn-hangzhou.aliyuncs.com/{path}?endpoint={endpoint}&force-path-style=true"
    );
    let s = open(&url);
    rt().block_on(conformance("oss", s.as_ref()));
    let _ = std::fs::remove_dir_all(root);
}

fn webdav_backend_conforms() {
    let (Some(host), Some(user), Some(password)) = (
        env("LSVFS_WEBDAV_HOST"),
        env("LSVFS_WEBDAV_USER"),
        env("LSVFS_WEBDAV_PASSWORD"),
    ) else {
        missing("webdav", "webdav");
        return;
    };
    running("webdav", "webdav");
    let path = unique("webdav");
    let dav = conformance_servers::webdav::Dav {
        host: host.clone(),
        user: user.clone(),
        password: password.clone(),
    };
    for (rel, bytes) in tree_files(|l| format!("ltx/{l}")) {
        dav.put(&format!("{path}/{rel}"), &bytes);
    }
    let s = open(&format!("webdav://{user}:{password}@{host}/{path}"));
    rt().block_on(conformance("webdav", s.as_ref()));
    assert!(!s.describe().contains(&password), "{}", s.describe());
    dav.delete(&path);
}

fn nats_backend_conforms() {
    let (Some(host), Some(user), Some(password)) = (
        env("LSVFS_NATS_HOST"),
        env("LSVFS_NATS_USER"),
        env("LSVFS_NATS_PASSWORD"),
    ) else {
        missing("nats", "nats");
        return;
    };
    // The bucket is the replica; object names are `ltx/<level>/<name>`.
    running("nats", "nats");
    let bucket = unique("nats");
    let mut nats = conformance_servers::nats::Nats::create_bucket(&host, &user, &password, &bucket);
    for (i, (rel, bytes)) in tree_files(|l| format!("ltx/{l}")).iter().enumerate() {
        nats.put(rel, bytes, &format!("conformance{i}"));
    }
    let s = open(&format!("nats://{user}:{password}@{host}/{bucket}"));
    rt().block_on(conformance("nats", s.as_ref()));
    assert!(!s.describe().contains(&password), "{}", s.describe());
    nats.delete_bucket();
}
