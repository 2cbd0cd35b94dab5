//! The WebDAV backend against a small server on loopback that answers as
//! Apache's mod_dav does by default: `Depth: infinity` refused,
//! `allprop` answers with `lp1:`-prefixed live properties, `Content-Range`
//! on partial answers. Shows the fallback to one listing per level, real
//! `Range` headers, `If-Match`, Basic auth and its refusal.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::storage::{FileId, Level, ReplicaUrl, StorageErrorKind, Timeouts, open as open_storage};

const L0: &str = "0000000000000002-0000000000000002.ltx";
const L9: &str = "0000000000000001-0000000000000001.ltx";
const BODY: &[u8] = b"0123456789abcdefghij";
/// `u:pw` in Basic auth.
const AUTH: &str = "Basic dTpwdw==";
const ETAG: &str = "\"14-5f0a2b3c4d5e6\"";

#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    method: String,
    path: String,
    depth: Option<String>,
    range: Option<String>,
    if_match: Option<String>,
}

fn multistatus(entries: &[(&str, Option<usize>)]) -> String {
    let mut out = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:" xmlns:ns0="DAV:">"#,
    );
    for (href, size) in entries {
        let props = match size {
            Some(n) => format!(
                "<lp1:resourcetype/><lp1:getcontentlength>{n}</lp1:getcontentlength>\
                 <lp1:getetag>{ETAG}</lp1:getetag><lp2:executable>F</lp2:executable>"
            ),
            None => "<lp1:resourcetype><D:collection/></lp1:resourcetype>\
                     <D:getcontenttype>httpd/unix-directory</D:getcontenttype>"
                .to_owned(),
        };
        out.push_str(&format!(
            "<D:response xmlns:lp1=\"DAV:\" xmlns:lp2=\"http://apache.org/dav/props/\">\
             <D:href>{href}</D:href><D:propstat><D:prop>{props}\
             <lp1:creationdate>2026-12-04T10:00:00Z</lp1:creationdate>\
             <lp1:getlastmodified>Fri, 04 Dec 2026 10:00:00 GMT</lp1:getlastmodified>\
             <D:supportedlock><D:lockentry><D:lockscope><D:exclusive/></D:lockscope>\
             <D:locktype><D:write/></D:locktype></D:lockentry></D:supportedlock>\
             <D:lockdiscovery/></D:prop>\
             <D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
        ));
    }
    out.push_str("</D:multistatus>");
    out
}

/// The status, extra headers and body of the answer to `seen`.
fn answer(seen: &Seen, auth_ok: bool) -> (u16, String, Vec<u8>) {
    if !auth_ok {
        return (401, String::new(), b"login".to_vec());
    }
    // Folders are asked for with the trailing slash (Apache redirects the
    // form without it).
    let p = seen.path.trim_end_matches('/');
    match (seen.method.as_str(), seen.depth.as_deref()) {
        ("PROPFIND", Some("infinity")) => (
            403,
            String::new(),
            br#"<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>"#.to_vec(),
        ),
        ("PROPFIND", Some("1")) if p == "/db/ltx" => (
            207,
            String::new(),
            multistatus(&[
                ("/db/ltx/", None),
                ("/db/ltx/0/", None),
                ("/db/ltx/9/", None),
            ])
            .into(),
        ),
        ("PROPFIND", Some("1")) if p == "/db/ltx/0" => (
            207,
            String::new(),
            multistatus(&[("/db/ltx/0/", None), (&format!("/db/ltx/0/{L0}"), Some(10))]).into(),
        ),
        ("PROPFIND", Some("1")) if p == "/db/ltx/9" => (
            207,
            String::new(),
            multistatus(&[(&format!("/db/ltx/9/{L9}"), Some(BODY.len()))]).into(),
        ),
        // A server that ignores `Range` and sends the whole file.
        ("GET", _) if p == format!("/db/ltx/0/{L0}") => (200, String::new(), BODY[..10].to_vec()),
        ("GET", _) if p == format!("/db/ltx/9/{L9}") => {
            if seen.if_match.as_deref().is_some_and(|m| m != ETAG) {
                return (412, String::new(), Vec::new());
            }
            let Some((a, b)) = seen
                .range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.split_once('-'))
            else {
                return (200, String::new(), BODY.to_vec());
            };
            let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
            match BODY.get(a..=b) {
                Some(part) => (
                    206,
                    format!("Content-Range: bytes {a}-{b}/{}\r\n", BODY.len()),
                    part.to_vec(),
                ),
                None => (
                    416,
                    format!("Content-Range: bytes */{}\r\n", BODY.len()),
                    Vec::new(),
                ),
            }
        }
        _ => (404, String::new(), Vec::new()),
    }
}

/// Serves on 127.0.0.1 until the test ends; returns the port and the
/// requests seen.
async fn serve() -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = Arc::clone(&log);
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let log = Arc::clone(&log2);
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_owned();
                    let path = parts.next().unwrap_or_default().to_owned();
                    let (mut depth, mut range, mut if_match, mut auth, mut len) =
                        (None, None, None, false, 0usize);
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).await.unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap();
                        let v = v.trim().to_owned();
                        match k.to_ascii_lowercase().as_str() {
                            "depth" => depth = Some(v),
                            "range" => range = Some(v),
                            "if-match" => if_match = Some(v),
                            "authorization" => auth = v == AUTH,
                            "content-length" => len = v.parse().unwrap(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).await.unwrap();
                    let seen = Seen {
                        method,
                        path,
                        depth,
                        range,
                        if_match,
                    };
                    let (status, extra, out) = answer(&seen, auth);
                    log.lock().unwrap().push(seen);
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{extra}Content-Type: application/xml\r\n\r\n",
                        out.len()
                    );
                    if w.write_all(head.as_bytes()).await.is_err()
                        || w.write_all(&out).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, log)
}

fn listings(log: &Mutex<Vec<Seen>>) -> Vec<(String, String)> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "PROPFIND")
        .map(|s| (s.path.clone(), s.depth.clone().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn falls_back_to_one_listing_per_level_and_reads_real_ranges() {
    let (port, log) = serve().await;
    let url = ReplicaUrl::parse(&format!("webdav://u:pw@127.0.0.1:{port}/db")).unwrap();
    let s = open_storage(&url, Timeouts::default()).unwrap();

    let files = s.list_all().await.unwrap();
    let got: Vec<_> = files
        .iter()
        .map(|f| (f.id.level.get(), f.id.name.to_string(), f.size))
        .collect();
    assert_eq!(got, vec![(0, L0.into(), 10), (9, L9.into(), 20)]);
    let mut first = listings(&log);
    first[2..].sort();
    assert_eq!(
        first,
        vec![
            ("/db/ltx/".to_owned(), "infinity".to_owned()),
            ("/db/ltx/".to_owned(), "1".to_owned()),
            ("/db/ltx/0/".to_owned(), "1".to_owned()),
            ("/db/ltx/9/".to_owned(), "1".to_owned()),
        ]
    );
    assert_eq!(s.list_all_requests(), 3);

    // Refused once, never asked again.
    log.lock().unwrap().clear();
    s.list_all().await.unwrap();
    assert!(listings(&log).iter().all(|(_, d)| d == "1"));

    let id = FileId {
        level: Level::SNAPSHOT,
        name: crate::ltx::parse_name(L9).unwrap(),
    };
    log.lock().unwrap().clear();
    assert_eq!(s.read(id, 15..20).await.unwrap(), b"fghij");
    assert_eq!(
        s.read_ranges(id, vec![0..2, 5..7]).await.unwrap(),
        vec![b"01".to_vec(), b"56".to_vec()]
    );
    let ranges: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.range.clone())
        .collect();
    assert_eq!(ranges.len(), 3);
    assert!(ranges.contains(&Some("bytes=15-19".into())), "{ranges:?}");
    assert!(ranges.contains(&Some("bytes=0-1".into())), "{ranges:?}");
    let err = s.read(id, 15..25).await.unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Other, "{err}");
}

#[tokio::test]
async fn versions_are_the_etags_and_if_match_pins_them() {
    let (port, log) = serve().await;
    let url = ReplicaUrl::parse(&format!("webdav://u:pw@127.0.0.1:{port}/db")).unwrap();
    let s = open_storage(&url, Timeouts::default()).unwrap();
    let files = s.list(Level::SNAPSHOT, None).await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].version,
        crate::storage::version_of(ETAG.as_bytes())
    );

    let st = super::build(&url, Timeouts::default()).unwrap();
    let id = files[0].id;
    assert_eq!(
        st.read_range(id, 0..2, Some(ETAG.into())).await.unwrap(),
        b"01"
    );
    let err = st
        .read_range(id, 0..2, Some("\"other\"".into()))
        .await
        .unwrap_err();
    assert_ne!(err.kind, StorageErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("412"), "{err}");
    let sent: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.if_match.clone())
        .collect();
    assert_eq!(sent, vec![ETAG.to_owned(), "\"other\"".to_owned()]);
}

#[tokio::test]
async fn wrong_password_is_refused_and_not_shown() {
    let (port, _log) = serve().await;
    let url = ReplicaUrl::parse(&format!("webdav://u:s3cr3t-pw@127.0.0.1:{port}/db")).unwrap();
    let s = open_storage(&url, Timeouts::default()).unwrap();
    let err = s.list_all().await.unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Auth, "{err}");
    assert!(!err.to_string().contains("s3cr3t-pw"), "{err}");
    assert!(err.to_string().contains("credentials"), "{err}");
}

#[tokio::test]
async fn a_server_that_ignores_ranges_is_refused_not_downloaded_whole() {
    let (port, _log) = serve().await;
    let url = ReplicaUrl::parse(&format!("webdav://u:pw@127.0.0.1:{port}/db")).unwrap();
    let s = open_storage(&url, Timeouts::default()).unwrap();
    let id = FileId {
        level: Level::L0,
        name: crate::ltx::parse_name(L0).unwrap(),
    };
    let err = s.read(id, 2..4).await.unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Other, "{err}");
    assert!(
        err.to_string().contains("Range request not supported"),
        "{err}"
    );
}
