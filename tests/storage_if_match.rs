//! Reads tied to the listed version: a file written again between its
//! listing and a read of it fails the read with `StorageErrorKind::Changed`
//! (the reset error upstream), instead of returning the new bytes.
//!
//! `file://` always runs (the open file's header). The servers of
//! `tests/harness/servers.sh` run when their environment is set
//! (`. /tmp/lsvfs-servers/env.sh`): fake-gcs-server (GCS), Azurite (Azure),
//! rclone (WebDAV) and s3s-fs (S3, and OSS through an `oss://` URL with
//! `endpoint=`: OSS's S3-compatible API). Each rewrite goes through the server's
//! own API, so its ETag is the server's. What each server does with
//! `If-Match` on a ranged GET is asserted per server below. A server whose
//! environment is missing FAILS the test when it is required (`CI` set, or
//! servers.sh recorded it as started), as in `storage_conformance`; only
//! otherwise is it skipped.

#[path = "conformance_servers/required.rs"]
mod required;
#[path = "conformance_servers/webdav.rs"]
mod webdav;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use litestream_vfs::ltx::parse_name;
use litestream_vfs::storage::{
    self, FileId, Level, ReplicaUrl, Storage, StorageErrorKind, Timeouts,
};
use object_store::{ObjectStore, ObjectStoreExt};

const NAME: &str = "0000000000000001-0000000000000001.ltx";

fn id() -> FileId {
    FileId {
        level: Level::L0,
        name: parse_name(NAME).unwrap(),
    }
}

/// Two contents of the same size: the old lineage's file and the new one's.
fn old_bytes() -> Vec<u8> {
    (0..4000u32).map(|i| (i % 251) as u8).collect()
}

fn new_bytes() -> Vec<u8> {
    (0..4000u32).map(|i| (i % 241) as u8 ^ 0x5a).collect()
}

/// The new lineage's file, of another size.
fn longer_new_bytes() -> Vec<u8> {
    (0..4100u32).map(|i| (i % 239) as u8 ^ 0x33).collect()
}

fn open(url: &str) -> Arc<dyn Storage> {
    storage::open(
        &ReplicaUrl::parse(url).unwrap(),
        Timeouts::within(Duration::from_secs(20)),
    )
    .unwrap()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn unique(what: &str) -> String {
    format!(
        "ifmatch-{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// What a read of the old version did after the rewrite.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Refused: the server answered 412 to `If-Match`.
    Refused,
    /// The server ignored `If-Match` and sent the new bytes.
    NewBytes,
}

/// The file [`NAME`] as a listing of level 0 names it now.
async fn listed(backend: &str, s: &dyn Storage) -> storage::FileInfo {
    let listed = s.list(Level::L0, None).await.unwrap();
    *listed
        .iter()
        .find(|f| f.id == id())
        .unwrap_or_else(|| panic!("{backend}: {NAME} not listed: {listed:?}"))
}

/// Lists the file, reads it tied to the listed version, rewrites it with
/// `rewrite`, and reads it again tied to the same version (before any new
/// listing). Then lists again and checks that the old version is refused
/// without asking the server. Returns what the second read did.
async fn rewritten_between_listing_and_read(
    backend: &str,
    s: &dyn Storage,
    rewrite: impl std::future::Future<Output = ()>,
) -> Seen {
    let info = listed(backend, s).await;
    assert_ne!(info.version, 0, "{backend}: the listing names no version");
    let got = s.read_version(info.id, info.version, 0..64).await;
    assert_eq!(
        got.as_deref().map_err(|e| e.to_string()),
        Ok(&old_bytes()[..64]),
        "{backend}: a read tied to the version just listed"
    );

    rewrite.await;
    let seen = match s.read_version(info.id, info.version, 100..164).await {
        Err(e) if e.kind == StorageErrorKind::Changed => {
            eprintln!("{backend}: the read of the old version was refused: {e}");
            Seen::Refused
        }
        Ok(bytes) if bytes[..] == new_bytes()[100..164] => Seen::NewBytes,
        other => panic!("{backend}: unexpected answer to the tied read: {other:?}"),
    };

    // A listing that saw the new version: the old one is refused at once.
    let now = listed(backend, s).await;
    assert_ne!(
        now.version, info.version,
        "{backend}: the rewritten file lists the same version"
    );
    let e = s
        .read_version(info.id, info.version, 0..64)
        .await
        .expect_err("a version the listing saw replaced was read");
    assert_eq!(e.kind, StorageErrorKind::Changed, "{backend}: {e}");
    assert_eq!(
        s.read_version(now.id, now.version, 0..64).await.unwrap(),
        new_bytes()[..64],
        "{backend}: the new version"
    );
    seen
}

/// Lists the file, rewrites it with `rewrite` (another size), then reads it
/// tied to the listed version for the first time. Returns the error kind of
/// that read, or `None` when it returned bytes.
async fn rewritten_before_its_first_read(
    backend: &str,
    s: &dyn Storage,
    rewrite: impl std::future::Future<Output = ()>,
) -> Option<StorageErrorKind> {
    let info = listed(backend, s).await;
    rewrite.await;
    match s.read_version(info.id, info.version, 100..164).await {
        Err(e) => {
            eprintln!("{backend}: the first read of the old version: {e}");
            Some(e.kind)
        }
        Ok(_) => None,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// `file://`: the new lineage's file has another LTX header (here: other
/// first bytes), checked on the open file before it is read.
#[test]
fn file_reads_are_tied_to_the_listed_file() {
    let dir = tempfile::tempdir().unwrap();
    let level0 = dir.path().join("ltx/0");
    std::fs::create_dir_all(&level0).unwrap();
    std::fs::write(level0.join(NAME), old_bytes()).unwrap();
    let url = url::Url::from_directory_path(dir.path())
        .unwrap()
        .to_string();
    let s = open(&url);
    let rewrite = async {
        let tmp = level0.join("new.tmp");
        std::fs::write(&tmp, new_bytes()).unwrap();
        std::fs::rename(&tmp, level0.join(NAME)).unwrap();
    };
    let seen = rt().block_on(rewritten_between_listing_and_read(
        "file",
        s.as_ref(),
        rewrite,
    ));
    assert_eq!(seen, Seen::Refused);
}

/// One test for the servers, one after another: opening a backend reads
/// environment variables this sets.
#[test]
fn servers_refuse_a_read_of_a_rewritten_object() {
    let rt = rt();
    let mut ran = Vec::new();
    // Azurite and rclone answer 412: the read is refused.
    if let Some(seen) = azure(&rt) {
        assert_eq!(seen, Seen::Refused, "Azurite");
        ran.push("azure");
    }
    if let Some(seen) = dav(&rt) {
        assert_eq!(seen, Seen::Refused, "rclone serve webdav");
        ran.push("webdav");
    }
    // fake-gcs-server ignores If-Match on a GET altogether (an ETag that
    // matches nothing is served too), but names the object it served in
    // its ETag header, which the GCS backend holds to the listed one: the
    // read of the old version is refused all the same. (Real GCS answers
    // 412, which maps to `Changed` as Azurite's does.)
    if let Some((seen, ignores)) = gcs(&rt) {
        assert!(ignores, "fake-gcs-server now honours If-Match itself");
        assert_eq!(seen, Seen::Refused, "fake-gcs-server");
        ran.push("gcs");
    }
    // s3s-fs ignores If-Match too, and is caught the same way, through the
    // S3 backend and through the OSS one (OSS's S3-compatible API, here
    // s3s-fs reached through an oss:// URL, as Litestream's own OSS client
    // cannot reach a local server).
    if let Some((seen, ignores)) = s3(&rt, "s3") {
        assert!(ignores, "s3s-fs now honours If-Match itself");
        assert_eq!(seen, Seen::Refused, "s3s-fs");
        ran.push("s3");
    }
    if let Some((seen, _)) = s3(&rt, "oss") {
        assert_eq!(seen, Seen::Refused, "s3s-fs as OSS");
        ran.push("oss");
    }
    eprintln!("ran: {ran:?}");
}

/// A server whose settings are missing: a failure when it is required
/// (CI, or servers.sh started it), else a skip that says so.
fn skip(backend: &str, service: &str, what: &str) {
    if let Some(why) = required::required(service) {
        panic!(
            "{backend}: the server is required here ({why}) but {what}: source the servers' \
             env file (. \"$(tests/harness/servers.sh envfile)\")"
        );
    }
    eprintln!("skipped: {backend}: {what}");
}

/// Sets an environment variable the backends read at open.
fn set_env(k: &str, v: &str) {
    if env(k).as_deref() != Some(v) {
        // SAFETY: this binary's tests that read these variables run on one
        // thread one after another (the file test reads none of them).
        unsafe { std::env::set_var(k, v) };
    }
}

/// What the reads did, and whether the server serves a GET whose
/// `If-Match` names an ETag the object never had.
fn gcs(rt: &tokio::runtime::Runtime) -> Option<(Seen, bool)> {
    let (Some(host), Some(bucket)) = (env("LSVFS_GCS_HOST"), env("LSVFS_BUCKET")) else {
        skip("gcs", "gcs", "no fake-gcs-server in the environment");
        return None;
    };
    set_env("STORAGE_EMULATOR_HOST", &host);
    let path = unique("gcs");
    let key = format!("{path}/ltx/0/{NAME}");
    // Opened first: the open installs the TLS provider the HTTP clients need.
    let s = open(&format!("gs://{bucket}/{path}"));
    let put = |bytes: Vec<u8>| {
        let url = url::Url::parse_with_params(
            &format!("http://{host}/upload/storage/v1/b/{bucket}/o"),
            [("uploadType", "media"), ("name", key.as_str())],
        )
        .unwrap();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("Content-Type", "application/octet-stream")
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "GCS upload: {}", r.status());
        }
    };
    rt.block_on(put(old_bytes()));
    let seen = rt.block_on(rewritten_between_listing_and_read(
        "gcs",
        s.as_ref(),
        put(new_bytes()),
    ));
    let ignores = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{host}/{bucket}/{key}"))
            .header("If-Match", "\"matches-nothing\"")
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    });
    Some((seen, ignores))
}

fn azure(rt: &tokio::runtime::Runtime) -> Option<Seen> {
    let (Some(account), Some(key), Some(endpoint), Some(bucket)) = (
        env("LSVFS_ABS_ACCOUNT"),
        env("LSVFS_ABS_KEY"),
        env("LSVFS_ABS_ENDPOINT"),
        env("LSVFS_BUCKET"),
    ) else {
        skip("azure", "abs", "no Azurite in the environment");
        return None;
    };
    set_env("LITESTREAM_AZURE_ACCOUNT_KEY", &key);
    let path = unique("abs");
    let s = open(&format!(
        "abs://{account}@{bucket}/{path}?endpoint={endpoint}"
    ));
    let store = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(&account)
        .with_access_key(&key)
        .with_container_name(&bucket)
        .with_endpoint(endpoint.clone())
        .with_allow_http(true)
        .build()
        .unwrap();
    let key_path = object_store::path::Path::from(format!("{path}/ltx/0/{NAME}"));
    let put = |bytes: Vec<u8>| {
        let (store, key_path) = (&store, key_path.clone());
        async move {
            store.put(&key_path, bytes.into()).await.unwrap();
        }
    };
    rt.block_on(put(old_bytes()));
    Some(rt.block_on(rewritten_between_listing_and_read(
        "azure",
        s.as_ref(),
        put(new_bytes()),
    )))
}

fn dav(rt: &tokio::runtime::Runtime) -> Option<Seen> {
    let (Some(host), Some(user), Some(password)) = (
        env("LSVFS_WEBDAV_HOST"),
        env("LSVFS_WEBDAV_USER"),
        env("LSVFS_WEBDAV_PASSWORD"),
    ) else {
        skip("webdav", "webdav", "no WebDAV server in the environment");
        return None;
    };
    let dav = webdav::Dav {
        host: host.clone(),
        user: user.clone(),
        password: password.clone(),
    };
    let path = unique("webdav");
    let name = format!("{path}/ltx/0/{NAME}");
    dav.put(&name, &old_bytes());
    let s = open(&format!("webdav://{user}:{password}@{host}/{path}"));
    let rewrite = async { dav.put(&name, &new_bytes()) };
    let seen = rt.block_on(rewritten_between_listing_and_read(
        "webdav",
        s.as_ref(),
        rewrite,
    ));
    dav.delete(&path);
    Some(seen)
}

/// As [`gcs`], through the `s3://` or the `oss://` backend (`scheme`).
fn s3(rt: &tokio::runtime::Runtime, scheme: &str) -> Option<(Seen, bool)> {
    let (Some(dir), Some(bucket), Some(endpoint), Some(key), Some(secret)) = (
        env("LSVFS_S3_DIR"),
        env("LSVFS_BUCKET"),
        env("LSVFS_S3_ENDPOINT"),
        env("LSVFS_S3_KEY"),
        env("LSVFS_S3_SECRET"),
    ) else {
        skip(scheme, "s3", "no S3 server in the environment");
        return None;
    };
    set_env("LITESTREAM_ACCESS_KEY_ID", &key);
    set_env("LITESTREAM_SECRET_ACCESS_KEY", &secret);
    set_env("AWS_EC2_METADATA_DISABLED", "true");
    let path = unique(scheme);
    let url = format!(
        "{scheme}://{bucket}/{path}?endpoint={endpoint}&region=us-east-1&force-path-style=true"
    );
    let s = open(&url);
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&bucket)
        .with_endpoint(&endpoint)
        .with_region("us-east-1")
        .with_access_key_id(&key)
        .with_secret_access_key(&secret)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap();
    let key_path = object_store::path::Path::from(format!("{path}/0000/{NAME}"));
    let put = |bytes: Vec<u8>| {
        let (store, key_path) = (&store, key_path.clone());
        async move {
            store.put(&key_path, bytes.into()).await.unwrap();
        }
    };
    rt.block_on(put(old_bytes()));
    let seen = rt.block_on(rewritten_between_listing_and_read(
        scheme,
        s.as_ref(),
        put(new_bytes()),
    ));
    let ignores = rt.block_on(async {
        let opts = object_store::GetOptions {
            if_match: Some("\"matches-nothing\"".into()),
            ..Default::default()
        };
        store.get_opts(&key_path, opts).await.is_ok()
    });
    // The same, but the first read comes after the rewrite: s3s-fs lists no
    // ETag, so there is none to hold the answer to yet; its size (or time)
    // is not the listed one. (The new lineage's file of a reset, read by a
    // process that had served that file from its disk tier until then.)
    rt.block_on(put(old_bytes()));
    let s = open(&url);
    let first = rt.block_on(rewritten_before_its_first_read(
        scheme,
        s.as_ref(),
        put(longer_new_bytes()),
    ));
    assert_eq!(
        first,
        Some(StorageErrorKind::Changed),
        "s3s-fs ({scheme}): the first read of a file written again since its listing returned the new bytes"
    );
    let _ = std::fs::remove_dir_all(Path::new(&dir).join(&path));
    Some((seen, ignores))
}
