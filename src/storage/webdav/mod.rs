//! `webdav://[user[:password]@]host[:port]/path` (HTTP) and `webdavs://…`
//! (HTTPS): a replica on a WebDAV server, laid out as Litestream writes it,
//! `<path>/ltx/<level>/<name>`.
//!
//! The client is object_store's HTTP store (`object_store::http::HttpStore`,
//! feature `http-base`): it lists folders with PROPFIND (sizes, ETags, else
//! modification times), reads with ranged GETs (`If-Match` included),
//! retries, and maps 401/403/404/412 to typed errors. Tried against rclone
//! `serve webdav` and an Apache-style `lp1:`-prefixed answer (see
//! `tests_server.rs`) and Apache 2.4 mod_dav_fs. What stays here: the URL,
//! the credentials, the level layout, and two policies object_store does
//! not have. The whole replica is listed with one `Depth: infinity`
//! PROPFIND where the server allows it (rclone, wsgidav, nginx) and with
//! one `Depth: 1` PROPFIND per level where it refuses (Apache's default
//! `DavDepthInfinity Off`). And a folder is listed by its URL with the
//! trailing slash: `HttpStore` lists a prefix without it, which Apache
//! (mod_dir) answers with a 301 and so doubles every listing; so each
//! listing goes through a store rooted at the folder (`list(None)`), all of
//! them on one shared HTTP client and its connection pool.
//!
//! Credentials: the user and password of the URL, as Litestream takes them,
//! or `LITESTREAM_WEBDAV_USERNAME` / `LITESTREAM_WEBDAV_PASSWORD` to keep the
//! password out of the URL. They travel as a default `Authorization: Basic`
//! header marked sensitive (hidden from `Debug`), and the password and the
//! header value are scrubbed from every message. Certificates are verified
//! unless `?skip-verify=true`.

#[cfg(test)]
mod tests_server;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use base64::Engine as _;
use futures_util::{StreamExt, TryStreamExt};
use object_store::client::{HttpClient, HttpConnector, ReqwestConnector};
use object_store::http::{HttpBuilder, HttpStore};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig,
};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use super::error::{StorageError, StorageErrorKind};
use super::listed::{Entry, ListedTags, Tie};
use super::object_error::{Context, classify};
use super::params::{Params, env, url_prefix};
use super::retry::{self, Timeouts};
use super::secrets::Secrets;
use super::url::{ReplicaUrl, Scheme};
use super::{BoxFuture, FileId, FileInfo, Level, Storage, tls};
use crate::ltx::{FileName, parse_name};

const BACKEND: &str = "webdav";
const PARAMS: &[&str] = &["skip-verify"];
/// Ranges of one `read_ranges` fetched at once.
const PARALLEL_RANGES: usize = 8;
const CREDENTIAL_HINT: &str = "the user and password in the URL, or \
                               LITESTREAM_WEBDAV_USERNAME/LITESTREAM_WEBDAV_PASSWORD";

/// Whether the server answers `Depth: infinity`: not yet known, yes, no.
const INFINITY_UNKNOWN: u8 = 0;
const INFINITY_YES: u8 = 1;
const INFINITY_NO: u8 = 2;

pub struct WebdavStorage {
    /// Rooted at `scheme://host[:port]`: reads. Listed paths are server
    /// paths whatever the store's root.
    store: HttpStore,
    /// What builds a store rooted at a folder, on the same client.
    options: ClientOptions,
    retry: RetryConfig,
    client: SharedClient,
    /// `http(s)://host[:port]/<path>/ltx/`, with the trailing slash.
    ltx_url: url::Url,
    /// `<path>/ltx` on the server.
    ltx: Path,
    cx: Context,
    infinity: AtomicU8,
    last_list_requests: AtomicU64,
    /// The ETag each file was last listed with (`getetag`): what a read
    /// tied to that version sends as `If-Match`.
    tags: ListedTags,
}

/// Hands every store the same HTTP client, so they share one pool.
#[derive(Clone, Debug)]
struct SharedClient(HttpClient);

impl HttpConnector for SharedClient {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(self.0.clone())
    }
}

impl std::fmt::Debug for WebdavStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebdavStorage({})", self.cx.describe)
    }
}

/// What a URL says about the server, before any client is built.
#[derive(Debug, PartialEq, Eq)]
struct Config {
    /// `http(s)://host[:port]`: the store's root.
    origin: String,
    /// `<path>/ltx`, decoded, relative to the origin.
    ltx: Path,
    /// The URL of that folder, with the trailing slash.
    ltx_url: url::Url,
    user: Option<(String, String)>,
    skip_verify: bool,
}

fn parse(url: &ReplicaUrl) -> Result<Config, StorageError> {
    let mut params = Params::new(BACKEND, url);
    let skip_verify = params.take_bool("skip-verify")?.unwrap_or(false);
    params.finish(PARAMS)?;
    let u = url.url();
    let scheme = if url.scheme() == Scheme::Webdavs {
        "https"
    } else {
        "http"
    };
    let host = u.host_str().unwrap_or_default();
    let origin = match u.port() {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    };
    let prefix = url_prefix(url);
    let segments: Vec<&str> = prefix
        .split('/')
        .filter(|s| !s.is_empty())
        .chain(["ltx"])
        .collect();
    let ltx = Path::from_iter(segments.iter().copied());
    let bad = |e: &dyn std::fmt::Display| {
        StorageError::new(
            BACKEND,
            StorageErrorKind::Config,
            format!("bad WebDAV URL {}: {e}", url.redacted()),
        )
    };
    let mut ltx_url = url::Url::parse(&origin).map_err(|e| bad(&e))?;
    ltx_url
        .path_segments_mut()
        .map_err(|()| bad(&"no path"))?
        .clear()
        .extend(&segments)
        .push(""); // trailing slash: a folder
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = if u.username().is_empty() {
        env("LITESTREAM_WEBDAV_USERNAME").map(|name| {
            let pw = env("LITESTREAM_WEBDAV_PASSWORD").unwrap_or_default();
            (name, pw)
        })
    } else {
        let pw = u
            .password()
            .map(decode)
            .or_else(|| env("LITESTREAM_WEBDAV_PASSWORD"))
            .unwrap_or_default();
        Some((decode(u.username()), pw))
    };
    Ok(Config {
        origin,
        ltx,
        ltx_url,
        user,
        skip_verify,
    })
}

pub fn open(url: &ReplicaUrl, timeouts: Timeouts) -> Result<Arc<dyn Storage>, StorageError> {
    Ok(Arc::new(build(url, timeouts)?))
}

fn build(url: &ReplicaUrl, timeouts: Timeouts) -> Result<WebdavStorage, StorageError> {
    tls::ensure_provider();
    let cfg = parse(url)?;
    let mut secrets = Secrets::new();
    let mut options =
        retry::client_options(cfg.origin.starts_with("http://"), cfg.skip_verify, timeouts)
            .with_user_agent(HeaderValue::from_static(concat!(
                "litestream-vfs/",
                env!("CARGO_PKG_VERSION")
            )));
    if let Some((name, pw)) = &cfg.user {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{pw}"));
        secrets.add(pw);
        secrets.add(&token);
        let mut value = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
            StorageError::new(
                BACKEND,
                StorageErrorKind::Config,
                format!("cannot encode the WebDAV credentials of {}", url.redacted()),
            )
        })?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        options = options.with_default_headers(headers);
    }
    let cx = Context {
        backend: BACKEND,
        describe: url.redacted().to_owned(),
        bucket: String::new(),
        credential_hint: CREDENTIAL_HINT,
        secrets,
    };
    let setup = |e: object_store::Error| {
        StorageError::new(
            BACKEND,
            StorageErrorKind::Config,
            cx.secrets
                .scrub(&format!("cannot set up WebDAV for {}: {e}", cx.describe)),
        )
    };
    let client = SharedClient(
        ReqwestConnector::default()
            .connect(&options)
            .map_err(setup)?,
    );
    let retry = retry::object_store_retry(timeouts);
    let store = store_at(&cfg.origin, &options, &retry, &client).map_err(setup)?;
    Ok(WebdavStorage {
        store,
        options,
        retry,
        client,
        ltx_url: cfg.ltx_url,
        ltx: cfg.ltx,
        cx,
        infinity: AtomicU8::new(INFINITY_UNKNOWN),
        last_list_requests: AtomicU64::new(1),
        tags: ListedTags::default(),
    })
}

/// An `HttpStore` rooted at `root`, on the shared client.
fn store_at(
    root: &str,
    options: &ClientOptions,
    retry: &RetryConfig,
    client: &SharedClient,
) -> object_store::Result<HttpStore> {
    HttpBuilder::new()
        .with_url(root)
        .with_client_options(options.clone())
        .with_retry(retry.clone())
        .with_http_connector(client.clone())
        .build()
}

impl WebdavStorage {
    /// A store rooted at `<ltx>/` or `<ltx>/<level>/` (with the trailing
    /// slash), whose `list(None)` lists that folder.
    fn folder(&self, level: Option<Level>) -> Result<(HttpStore, Path), StorageError> {
        let mut url = self.ltx_url.clone();
        let mut path = self.ltx.clone();
        if let Some(l) = level {
            if let Ok(mut s) = url.path_segments_mut() {
                s.pop_if_empty().push(&l.get().to_string()).push("");
            }
            path = path.join(l.get().to_string());
        }
        let store = store_at(url.as_str(), &self.options, &self.retry, &self.client)
            .map_err(|e| self.error("list", &path, &e))?;
        Ok((store, path))
    }

    fn error(&self, op: &str, what: &Path, e: &object_store::Error) -> StorageError {
        classify(&self.cx, op, what.as_ref(), e)
    }

    fn level_dir(&self, level: Level) -> Path {
        self.ltx.clone().join(level.get().to_string())
    }

    fn file_path(&self, file: FileId) -> Path {
        self.level_dir(file.level).join(file.name.to_string())
    }

    /// The LTX files among `objects` that sit directly in `<ltx>/<level>/`,
    /// their ETags remembered (`only` none: the whole replica, so names it
    /// lacks are forgotten).
    fn files_in(
        &self,
        objects: impl IntoIterator<Item = ObjectMeta>,
        only: Option<Level>,
    ) -> Vec<FileInfo> {
        let depth = self.ltx.parts().count() + 2;
        let mut files = Vec::new();
        for meta in objects {
            let parts: Vec<_> = meta.location.parts().collect();
            if parts.len() != depth || !meta.location.prefix_matches(&self.ltx) {
                continue;
            }
            let (dir, name) = (parts[depth - 2].as_ref(), parts[depth - 1].as_ref());
            let (Some(level), Some(name)) = (
                dir.parse::<u8>().ok().and_then(Level::new),
                parse_name(name),
            ) else {
                continue; // not a level folder, or not an LTX file
            };
            if only.is_some_and(|l| l != level) {
                continue;
            }
            files.push(Entry {
                info: FileInfo {
                    id: FileId { level, name },
                    size: meta.size,
                    version: version(&meta),
                },
                tag: meta.e_tag,
                stamp: None,
            });
        }
        self.tags.record(files, only.is_none())
    }

    async fn list_level(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> Result<Vec<FileInfo>, StorageError> {
        let (store, dir) = self.folder(Some(level))?;
        // A folder that does not exist lists as empty.
        let listed = store
            .list_with_delimiter(None)
            .await
            .map_err(|e| self.error("list", &dir, &e))?;
        let mut files = self.files_in(listed.objects, Some(level));
        files.retain(|f| after.is_none_or(|a| f.id.name > a));
        Ok(files)
    }

    async fn list_everything(&self) -> Result<Vec<FileInfo>, StorageError> {
        let (store, _) = self.folder(None)?;
        if self.infinity.load(Ordering::Relaxed) != INFINITY_NO {
            let all: Result<Vec<ObjectMeta>, _> = store.list(None).try_collect().await;
            match all {
                Ok(objects) => {
                    self.infinity.store(INFINITY_YES, Ordering::Relaxed);
                    self.last_list_requests.store(1, Ordering::Relaxed);
                    return Ok(self.files_in(objects, None));
                }
                // Servers that do not serve infinite depth answer 403 (RFC
                // 4918 `propfind-finite-depth`), 400 or 501; a 401 is a
                // refusal of the credentials.
                Err(e) => {
                    let err = self.error("list", &self.ltx, &e);
                    if err.kind == StorageErrorKind::Transient
                        || matches!(e, object_store::Error::Unauthenticated { .. })
                    {
                        return Err(err);
                    }
                    crate::log::debug!(
                        "{}: no Depth: infinity listing ({err}); listing level by level",
                        self.cx.describe
                    );
                    self.infinity.store(INFINITY_NO, Ordering::Relaxed);
                }
            }
        }
        // Which level folders exist, then each of those.
        let top = store
            .list_with_delimiter(None)
            .await
            .map_err(|e| self.error("list", &self.ltx, &e))?;
        let levels: Vec<Level> = top
            .common_prefixes
            .iter()
            .filter(|p| {
                p.prefix_matches(&self.ltx) && p.parts().count() == self.ltx.parts().count() + 1
            })
            .filter_map(|p| p.filename()?.parse::<u8>().ok().and_then(Level::new))
            .collect();
        self.last_list_requests
            .store(1 + levels.len() as u64, Ordering::Relaxed);
        let lists = levels.into_iter().map(|l| self.list_level(l, None));
        let all = futures_util::future::try_join_all(lists).await?;
        let mut files: Vec<FileInfo> = all.into_iter().flatten().collect();
        files.sort_by_key(|f| f.id);
        files.dedup_by_key(|f| f.id);
        self.tags.keep_only(files.iter().map(|f| f.id));
        Ok(files)
    }

    /// The bytes `range` of `file`; with `if_match`, only of that version
    /// (a 412 when the file changed).
    async fn read_range(
        &self,
        file: FileId,
        range: Range<u64>,
        if_match: Option<String>,
    ) -> Result<Vec<u8>, StorageError> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        let path = self.file_path(file);
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            if_match,
            ..GetOptions::default()
        };
        let bytes = async { self.store.get_opts(&path, options).await?.bytes().await }
            .await
            .map_err(|e| self.error("read", &path, &e))?;
        let want = range.end - range.start;
        if u64::try_from(bytes.len()).ok() != Some(want) {
            return Err(StorageError::new(
                BACKEND,
                StorageErrorKind::Other,
                format!(
                    "read of {file} at {}: short read: asked for bytes {}..{}, got {} bytes",
                    self.cx.describe,
                    range.start,
                    range.end,
                    bytes.len()
                ),
            ));
        }
        Ok(bytes.to_vec())
    }
}

/// A file's version: its ETag, else its modification time.
fn version(meta: &ObjectMeta) -> u64 {
    match meta.e_tag.as_deref() {
        Some(tag) => super::version_of(tag.as_bytes()),
        None => super::version_of(&meta.last_modified.timestamp_millis().to_le_bytes()),
    }
}

impl Storage for WebdavStorage {
    fn describe(&self) -> &str {
        &self.cx.describe
    }

    fn list(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> BoxFuture<'_, Result<Vec<FileInfo>, StorageError>> {
        Box::pin(self.list_level(level, after))
    }

    fn list_all(&self) -> BoxFuture<'_, Result<Vec<FileInfo>, StorageError>> {
        Box::pin(self.list_everything())
    }

    fn list_all_requests(&self) -> u64 {
        self.last_list_requests.load(Ordering::Relaxed)
    }

    fn prewarm(&self) -> BoxFuture<'_, ()> {
        // A HEAD of a file that does not exist: a cheap 404 whose only
        // purpose is the pooled connection it leaves behind.
        let probe = self.ltx.clone().join(".litestream-vfs-connect");
        Box::pin(async move {
            let _ = self.store.head(&probe).await;
        })
    }

    fn read(
        &self,
        file: FileId,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StorageError>> {
        Box::pin(self.read_range(file, range, None))
    }

    fn read_version(
        &self,
        file: FileId,
        version: u64,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StorageError>> {
        Box::pin(async move {
            match self.tags.tie(BACKEND, &self.cx.describe, file, version)? {
                Tie::IfMatch(tag) => self.read_range(file, range, Some(tag.to_string())).await,
                Tie::Plain => self.read_range(file, range, None).await,
            }
        })
    }

    fn read_ranges(
        &self,
        file: FileId,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StorageError>> {
        // One exact GET per range (object_store's `get_ranges` would merge
        // ranges up to 1 MiB apart and download the gaps).
        Box::pin(async move {
            futures_util::stream::iter(ranges)
                .map(|r| self.read_range(file, r, None))
                .buffered(PARALLEL_RANGES)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(raw: &str) -> Config {
        parse(&ReplicaUrl::parse(raw).unwrap()).unwrap()
    }

    #[test]
    fn url_forms() {
        let c = cfg("webdav://alice:p%40ss@127.0.0.1:8080/backups/db%201");
        assert_eq!(c.origin, "http://127.0.0.1:8080");
        assert_eq!(c.ltx, Path::from("backups/db 1/ltx"));
        assert_eq!(
            c.ltx_url.as_str(),
            "http://127.0.0.1:8080/backups/db%201/ltx/"
        );
        assert_eq!(c.user, Some(("alice".into(), "p@ss".into())));
        assert!(!c.skip_verify);
        let c = cfg("webdavs://dav.example.com/db?skip-verify=true");
        assert_eq!(c.origin, "https://dav.example.com");
        assert_eq!(c.ltx, Path::from("db/ltx"));
        assert!(c.skip_verify);
        let c = cfg("webdavs://dav.example.com");
        assert_eq!(c.ltx, Path::from("ltx"));
        assert_eq!(c.ltx_url.as_str(), "https://dav.example.com/ltx/");
    }

    #[test]
    fn unknown_parameter_and_missing_host_are_named() {
        let u = ReplicaUrl::parse("webdav://h/db?regoin=x").unwrap();
        assert!(parse(&u).unwrap_err().message.contains("regoin"));
        assert!(ReplicaUrl::parse("webdav:///db").is_err());
    }

    #[test]
    fn password_never_in_describe() {
        let s = open(
            &ReplicaUrl::parse("webdav://u:hunter22@127.0.0.1:1/db").unwrap(),
            Timeouts::default(),
        )
        .unwrap();
        assert!(!s.describe().contains("hunter22"));
        assert!(!format!("{s:?}").contains("hunter22"));
    }

    #[test]
    fn the_authorization_header_is_hidden_from_debug() {
        let mut v = HeaderValue::from_static("Basic dTpodW50ZXIyMg==");
        v.set_sensitive(true);
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, v);
        let o = object_store::ClientOptions::new().with_default_headers(h);
        assert!(!format!("{o:?}").contains("dTpodW50ZXIyMg"), "{o:?}");
    }

    #[test]
    fn file_paths_and_listed_files() {
        let name = parse_name("0000000000000001-0000000000000002.ltx").unwrap();
        let id = FileId {
            level: Level::L0,
            name,
        };
        let st = build(
            &ReplicaUrl::parse("webdav://h:1/a/b").unwrap(),
            Timeouts::default(),
        )
        .unwrap();
        assert_eq!(
            st.file_path(id).as_ref(),
            "a/b/ltx/0/0000000000000001-0000000000000002.ltx"
        );
        let meta = |p: &str, e_tag: Option<&str>| ObjectMeta {
            location: Path::from(p),
            last_modified: Default::default(),
            size: 10,
            e_tag: e_tag.map(str::to_owned),
            version: None,
        };
        let got = st.files_in(
            vec![
                meta(
                    "a/b/ltx/0/0000000000000001-0000000000000002.ltx",
                    Some("\"abc\""),
                ),
                meta("a/b/ltx/0/junk.txt", None),
                meta("a/b/ltx/0/sub/0000000000000003-0000000000000003.ltx", None),
                meta("other/ltx/0/0000000000000004-0000000000000004.ltx", None),
            ],
            None,
        );
        assert_eq!(
            got,
            vec![FileInfo {
                id,
                size: 10,
                version: crate::storage::version_of(b"\"abc\"")
            }]
        );
    }
}
