//! `webdav://[user[:password]@]host[:port]/path` (HTTP) and `webdavs://…`
//! (HTTPS): a replica on a WebDAV server, laid out as Litestream writes it,
//! `<path>/ltx/<level>/<name>`.
//!
//! Folders are listed with PROPFIND and files read with ranged GETs, the
//! page index of a large file included. The whole replica is listed with one
//! `Depth: infinity` PROPFIND where the server allows it (rclone, wsgidav,
//! nginx) and with one `Depth: 1` PROPFIND per level where it refuses
//! (Apache's default). Credentials: the user and password of the URL, as
//! Litestream takes them, or `LITESTREAM_WEBDAV_USERNAME` /
//! `LITESTREAM_WEBDAV_PASSWORD` to keep the password out of the URL.
//! Certificates are verified unless `?skip-verify=true`.

mod http;
pub(crate) mod propfind;
#[cfg(test)]
mod tests_server;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};

use super::error::{StorageError, StorageErrorKind};
use super::listed::{ListedTags, Tie};
use super::params::{Params, env, url_prefix};
use super::retry::{CONNECT_TIMEOUT, Timeouts};
use super::secrets::Secrets;
use super::url::{ReplicaUrl, Scheme};
use super::{BoxFuture, FileId, FileInfo, Level, Storage, tls};
use crate::ltx::{FileName, parse_name};
use http::Call;

const BACKEND: &str = "webdav";
const PARAMS: &[&str] = &["skip-verify"];
/// Ranges of one `read_ranges` fetched at once.
const PARALLEL_RANGES: usize = 8;

/// Whether the server answers `Depth: infinity`: not yet known, yes, no.
const INFINITY_UNKNOWN: u8 = 0;
const INFINITY_YES: u8 = 1;
const INFINITY_NO: u8 = 2;

pub struct WebdavStorage {
    client: reqwest::Client,
    /// `http(s)://host[:port]/path/ltx/`, always with the trailing slash.
    ltx_root: url::Url,
    /// The decoded server path of `ltx_root`, without the trailing slash.
    ltx_path: String,
    user: Option<(String, String)>,
    describe: String,
    secrets: Secrets,
    infinity: AtomicU8,
    last_list_requests: AtomicU64,
    warned_full_get: AtomicBool,
    /// `storage_timeout`: bounds each request and the retry window.
    timeouts: Timeouts,
    /// The ETag each file was last listed with (`getetag`): what a read
    /// tied to that version sends as `If-Match`.
    tags: ListedTags,
}

impl std::fmt::Debug for WebdavStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebdavStorage({})", self.describe)
    }
}

/// What a URL says about the server, before any client is built.
#[derive(Debug, PartialEq, Eq)]
struct Config {
    ltx_root: url::Url,
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
    let authority = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let mut root = url::Url::parse(&format!("{scheme}://{authority}/")).map_err(|e| {
        StorageError::new(
            BACKEND,
            StorageErrorKind::Config,
            format!("bad WebDAV host in {url}: {e}"),
        )
    })?;
    {
        let mut segs = root
            .path_segments_mut()
            .map_err(|()| StorageError::new(BACKEND, StorageErrorKind::Config, "bad URL"))?;
        segs.clear();
        let prefix = url_prefix(url);
        segs.extend(prefix.split('/').filter(|s| !s.is_empty()));
        segs.push("ltx");
        segs.push(""); // trailing slash: a folder
    }
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
        ltx_root: root,
        user,
        skip_verify,
    })
}

pub fn open(url: &ReplicaUrl, timeouts: Timeouts) -> Result<Arc<dyn Storage>, StorageError> {
    tls::ensure_provider();
    let cfg = parse(url)?;
    let mut secrets = Secrets::new();
    if let Some((_, pw)) = &cfg.user {
        secrets.add(pw);
    }
    let client = reqwest::Client::builder()
        .user_agent(concat!("litestream-vfs/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT.min(timeouts.request))
        .timeout(timeouts.request)
        .tls_danger_accept_invalid_certs(cfg.skip_verify)
        .build()
        .map_err(|e| {
            StorageError::new(
                BACKEND,
                StorageErrorKind::Config,
                secrets.scrub(&format!("cannot set up WebDAV for {url}: {e}")),
            )
        })?;
    let ltx_path = percent_encoding::percent_decode_str(cfg.ltx_root.path())
        .decode_utf8_lossy()
        .trim_end_matches('/')
        .to_owned();
    Ok(Arc::new(WebdavStorage {
        client,
        ltx_root: cfg.ltx_root,
        ltx_path,
        user: cfg.user,
        describe: url.redacted().to_owned(),
        secrets,
        infinity: AtomicU8::new(INFINITY_UNKNOWN),
        last_list_requests: AtomicU64::new(1),
        warned_full_get: AtomicBool::new(false),
        timeouts,
        tags: ListedTags::default(),
    }))
}

impl WebdavStorage {
    fn call<'a>(&'a self, op: &'a str, what: &'a str) -> Call<'a> {
        Call {
            op,
            what,
            describe: &self.describe,
            secrets: &self.secrets,
            retry_window: self.timeouts.retry,
        }
    }

    fn request(&self, method: Method, url: &url::Url) -> reqwest::RequestBuilder {
        let b = self.client.request(method, url.as_str());
        match &self.user {
            Some((name, pw)) => b.basic_auth(name, Some(pw)),
            None => b,
        }
    }

    fn level_url(&self, level: Level) -> url::Url {
        let mut u = self.ltx_root.clone();
        if let Ok(mut s) = u.path_segments_mut() {
            s.pop_if_empty().push(&level.get().to_string()).push("");
        }
        u
    }

    fn file_url(&self, file: FileId) -> url::Url {
        let mut u = self.ltx_root.clone();
        if let Ok(mut s) = u.path_segments_mut() {
            s.pop_if_empty()
                .push(&file.level.get().to_string())
                .push(&file.name.to_string());
        }
        u
    }

    /// PROPFIND of `url`; `None` when the folder does not exist.
    async fn propfind(
        &self,
        url: &url::Url,
        depth: &'static str,
    ) -> Result<Option<Vec<propfind::Entry>>, StorageError> {
        let method = Method::from_bytes(b"PROPFIND").expect("valid method");
        let what = url.path().to_owned();
        let call = self.call("list", &what);
        let answer = call
            .send(&[StatusCode::MULTI_STATUS], || {
                self.request(method.clone(), url)
                    .header("Depth", depth)
                    .header("Content-Type", "application/xml; charset=utf-8")
                    .body(propfind::REQUEST_BODY)
            })
            .await;
        match answer {
            Ok(a) => propfind::parse(&a.body)
                .map(Some)
                .map_err(|e| call.error(StorageErrorKind::Other, "unexpected answer", &e)),
            Err(e) if e.kind == StorageErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The files among `entries` that sit directly in `<ltx>/<level>/`,
    /// their ETags remembered (`only` none: the whole replica, so names it
    /// lacks are forgotten).
    fn files_in(&self, entries: Vec<propfind::Entry>, only: Option<Level>) -> Vec<FileInfo> {
        let mut files = Vec::new();
        for e in entries {
            if e.collection {
                continue;
            }
            let Some(rest) = e
                .path
                .strip_prefix(&self.ltx_path)
                .and_then(|r| r.strip_prefix('/'))
            else {
                continue;
            };
            let Some((dir, name)) = rest.split_once('/') else {
                continue;
            };
            let (Some(level), Some(name)) = (
                dir.parse::<u8>().ok().and_then(Level::new),
                parse_name(name),
            ) else {
                continue; // not a level folder, or not an LTX file
            };
            if only.is_some_and(|l| l != level) {
                continue;
            }
            let Some(size) = e.size else {
                crate::log::warn!(
                    "{}: the server reports no size for {}; skipped",
                    self.describe,
                    e.path
                );
                continue;
            };
            files.push((
                FileInfo {
                    id: FileId { level, name },
                    size,
                    version: e
                        .version
                        .as_deref()
                        .map_or(0, |v| super::version_of(v.as_bytes())),
                },
                e.etag,
            ));
        }
        files.sort_by_key(|(f, _)| f.id);
        files.dedup_by_key(|(f, _)| f.id);
        self.tags.remember(
            files
                .iter()
                .map(|(f, tag)| (f.id, f.version, tag.as_deref())),
            only.is_none(),
        );
        files.into_iter().map(|(f, _)| f).collect()
    }

    async fn list_level(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> Result<Vec<FileInfo>, StorageError> {
        let entries = self
            .propfind(&self.level_url(level), "1")
            .await?
            .unwrap_or_default();
        let mut files = self.files_in(entries, Some(level));
        files.retain(|f| after.is_none_or(|a| f.id.name > a));
        Ok(files)
    }

    async fn list_everything(&self) -> Result<Vec<FileInfo>, StorageError> {
        if self.infinity.load(Ordering::Relaxed) != INFINITY_NO {
            match self.propfind(&self.ltx_root, "infinity").await {
                Ok(entries) => {
                    self.infinity.store(INFINITY_YES, Ordering::Relaxed);
                    self.last_list_requests.store(1, Ordering::Relaxed);
                    return Ok(self.files_in(entries.unwrap_or_default(), None));
                }
                // Servers that do not serve infinite depth answer 403 (RFC
                // 4918 `propfind-finite-depth`), 400 or 501.
                Err(e) if e.kind != StorageErrorKind::Transient && !self.refused_auth(&e) => {
                    crate::log::debug!(
                        "{}: no Depth: infinity listing ({e}); listing level by level",
                        self.describe
                    );
                    self.infinity.store(INFINITY_NO, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        // Which level folders exist, then each of those.
        let Some(top) = self.propfind(&self.ltx_root, "1").await? else {
            self.last_list_requests.store(1, Ordering::Relaxed);
            return Ok(Vec::new());
        };
        let levels: Vec<Level> = top
            .iter()
            .filter(|e| e.collection)
            .filter_map(|e| e.path.strip_prefix(&self.ltx_path)?.strip_prefix('/'))
            .filter_map(|dir| dir.parse::<u8>().ok().and_then(Level::new))
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

    /// A 403 on infinite depth is ambiguous; a 401 is not.
    fn refused_auth(&self, e: &StorageError) -> bool {
        e.kind == StorageErrorKind::Auth && e.message.contains("HTTP 401")
    }

    /// A ranged GET; with `if_match`, only of the file with that ETag (a
    /// 412 is [`StorageErrorKind::Changed`]).
    async fn read_range(
        &self,
        file: FileId,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Vec<u8>, StorageError> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        let url = self.file_url(file);
        let what = format!("{file}");
        let call = self.call("read", &what);
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        let answer = call
            .send(&[StatusCode::PARTIAL_CONTENT, StatusCode::OK], || {
                let request = self.request(Method::GET, &url).header("Range", &header);
                match if_match {
                    Some(tag) => request.header("If-Match", tag),
                    None => request,
                }
            })
            .await?;
        let want = usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
        let bytes = if answer.status == StatusCode::OK {
            // The server ignored the range and sent the whole file.
            if !self.warned_full_get.swap(true, Ordering::Relaxed) {
                crate::log::warn!(
                    "{}: the server ignores HTTP ranges; every read downloads a whole file",
                    self.describe
                );
            }
            let from = usize::try_from(range.start).unwrap_or(usize::MAX);
            answer
                .body
                .get(from..from.saturating_add(want))
                .map(<[u8]>::to_vec)
                .unwrap_or_default()
        } else {
            answer.body
        };
        if bytes.len() != want {
            return Err(call.error(
                StorageErrorKind::Other,
                "short read",
                &format!(
                    "asked for bytes {}..{}, got {} bytes",
                    range.start,
                    range.end,
                    bytes.len()
                ),
            ));
        }
        Ok(bytes)
    }
}

impl Storage for WebdavStorage {
    fn describe(&self) -> &str {
        &self.describe
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
        // An OPTIONS request: cheap, and it leaves a pooled connection.
        Box::pin(async move {
            let _ = self.request(Method::OPTIONS, &self.ltx_root).send().await;
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
            match self.tags.tie(BACKEND, &self.describe, file, version)? {
                Tie::IfMatch(tag) => self.read_range(file, range, Some(&tag)).await,
                Tie::Plain => self.read_range(file, range, None).await,
            }
        })
    }

    fn read_ranges(
        &self,
        file: FileId,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StorageError>> {
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
        assert_eq!(
            c.ltx_root.as_str(),
            "http://127.0.0.1:8080/backups/db%201/ltx/"
        );
        assert_eq!(c.user, Some(("alice".into(), "p@ss".into())));
        assert!(!c.skip_verify);
        let c = cfg("webdavs://dav.example.com/db?skip-verify=true");
        assert_eq!(c.ltx_root.as_str(), "https://dav.example.com/db/ltx/");
        assert!(c.skip_verify);
        let c = cfg("webdavs://dav.example.com");
        assert_eq!(c.ltx_root.as_str(), "https://dav.example.com/ltx/");
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
    fn file_and_level_urls() {
        tls::ensure_provider(); // before any reqwest client is built
        let c = cfg("webdav://h:1/a/b");
        let st = WebdavStorage {
            client: reqwest::Client::new(),
            ltx_path: "/a/b/ltx".into(),
            ltx_root: c.ltx_root,
            user: None,
            describe: String::new(),
            secrets: Secrets::new(),
            infinity: AtomicU8::new(0),
            last_list_requests: AtomicU64::new(0),
            warned_full_get: AtomicBool::new(false),
            timeouts: Timeouts::default(),
            tags: ListedTags::default(),
        };
        assert_eq!(
            st.level_url(Level::SNAPSHOT).as_str(),
            "http://h:1/a/b/ltx/9/"
        );
        let name = parse_name("0000000000000001-0000000000000002.ltx").unwrap();
        let id = FileId {
            level: Level::L0,
            name,
        };
        assert_eq!(
            st.file_url(id).as_str(),
            "http://h:1/a/b/ltx/0/0000000000000001-0000000000000002.ltx"
        );
        let entries = vec![
            propfind::Entry {
                path: "/a/b/ltx/0/0000000000000001-0000000000000002.ltx".into(),
                collection: false,
                size: Some(10),
                version: Some("\"abc\"".into()),
                etag: Some("\"abc\"".into()),
            },
            propfind::Entry {
                path: "/a/b/ltx/0/junk.txt".into(),
                collection: false,
                size: Some(1),
                version: None,
                etag: None,
            },
            propfind::Entry {
                path: "/a/b/ltx/0/sub/0000000000000003-0000000000000003.ltx".into(),
                collection: false,
                size: Some(1),
                version: None,
                etag: None,
            },
            propfind::Entry {
                path: "/a/b/ltx/9".into(),
                collection: true,
                size: None,
                version: None,
                etag: None,
            },
        ];
        let got = st.files_in(entries, None);
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
