//! PROPFIND answers (RFC 4918 multistatus): the entries of a folder, each
//! with its path, whether it is a folder, its size and what names its
//! version (the ETag, else the modification time).
//!
//! Servers differ in namespace prefixes (`D:`, `d:`, none), in absolute or
//! path-only hrefs, and in splitting properties over several `propstat`
//! blocks (one 200 OK, one 404 for properties they lack); all of that is
//! accepted. Only properties from a 2xx `propstat` count.

use quick_xml::Reader;
use quick_xml::events::Event;

/// The request body: ask for just the properties we use, so that a large
/// folder's answer stays small.
pub const REQUEST_BODY: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8"?>"#,
    r#"<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/>"#,
    r#"<D:getetag/><D:getlastmodified/></D:prop></D:propfind>"#
);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The percent-decoded path on the server, without a trailing slash.
    pub path: String,
    pub collection: bool,
    pub size: Option<u64>,
    /// The ETag, else the last-modified date, as the server wrote it.
    pub version: Option<String>,
    /// The ETag alone (what a read tied to this version sends as `If-Match`).
    pub etag: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Href,
    Length,
    Etag,
    Modified,
    Status,
}

#[derive(Default)]
struct PropStat {
    collection: bool,
    size: Option<u64>,
    etag: Option<String>,
    modified: Option<String>,
    status: Option<String>,
}

#[derive(Default)]
struct Response {
    href: Option<String>,
    collection: bool,
    size: Option<u64>,
    etag: Option<String>,
    modified: Option<String>,
    /// A `status` directly in the `response` (a member that failed).
    status: Option<String>,
}

/// Parses a multistatus body.
pub fn parse(body: &[u8]) -> Result<Vec<Entry>, String> {
    let mut reader = Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut out = Vec::new();
    let mut response: Option<Response> = None;
    let mut propstat: Option<PropStat> = None;
    let mut in_resourcetype = false;
    let mut field: Option<Field> = None;
    let mut text = String::new();
    let mut saw_multistatus = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("PROPFIND answer is not XML: {e}"))?;
        match event {
            Event::Empty(e) => {
                // `<D:collection/>` is the one empty element that says
                // something; an empty `<D:getcontentlength/>` says nothing.
                if in_resourcetype
                    && e.local_name().as_ref() == b"collection"
                    && let Some(p) = propstat.as_mut()
                {
                    p.collection = true;
                }
            }
            Event::Start(e) if field.is_none() => match e.local_name().as_ref() {
                b"multistatus" => saw_multistatus = true,
                b"response" => response = Some(Response::default()),
                b"propstat" if response.is_some() => propstat = Some(PropStat::default()),
                b"resourcetype" => in_resourcetype = true,
                b"collection" if in_resourcetype => {
                    if let Some(p) = propstat.as_mut() {
                        p.collection = true;
                    }
                }
                b"href" if response.is_some() && propstat.is_none() => {
                    field = Some(Field::Href);
                    text.clear();
                }
                b"getcontentlength" if propstat.is_some() => {
                    field = Some(Field::Length);
                    text.clear();
                }
                b"getetag" if propstat.is_some() => {
                    field = Some(Field::Etag);
                    text.clear();
                }
                b"getlastmodified" if propstat.is_some() => {
                    field = Some(Field::Modified);
                    text.clear();
                }
                b"status" if response.is_some() => {
                    field = Some(Field::Status);
                    text.clear();
                }
                _ => {}
            },
            Event::Text(t) if field.is_some() => {
                let s = t
                    .decode()
                    .map_err(|e| format!("PROPFIND answer is not UTF-8: {e}"))?;
                text.push_str(&s);
            }
            Event::CData(t) if field.is_some() => {
                text.push_str(&String::from_utf8_lossy(&t));
            }
            Event::GeneralRef(r) if field.is_some() => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else {
                    match r.as_ref() {
                        b"amp" => text.push('&'),
                        b"lt" => text.push('<'),
                        b"gt" => text.push('>'),
                        b"quot" => text.push('"'),
                        b"apos" => text.push('\''),
                        _ => {}
                    }
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"href" if field == Some(Field::Href) => {
                    if let Some(r) = response.as_mut() {
                        r.href = Some(std::mem::take(&mut text));
                    }
                    field = None;
                }
                b"getcontentlength" if field == Some(Field::Length) => {
                    if let Some(p) = propstat.as_mut() {
                        p.size = text.trim().parse().ok();
                    }
                    field = None;
                }
                b"getetag" if field == Some(Field::Etag) => {
                    if let Some(p) = propstat.as_mut() {
                        p.etag = non_empty(&text);
                    }
                    field = None;
                }
                b"getlastmodified" if field == Some(Field::Modified) => {
                    if let Some(p) = propstat.as_mut() {
                        p.modified = non_empty(&text);
                    }
                    field = None;
                }
                b"status" if field == Some(Field::Status) => {
                    let status = Some(std::mem::take(&mut text));
                    match (propstat.as_mut(), response.as_mut()) {
                        (Some(p), _) => p.status = status,
                        (None, Some(r)) => r.status = status,
                        (None, None) => {}
                    }
                    field = None;
                }
                b"resourcetype" => in_resourcetype = false,
                b"propstat" => {
                    if let (Some(p), Some(r)) = (propstat.take(), response.as_mut())
                        && p.status.as_deref().is_none_or(is_success)
                    {
                        r.collection |= p.collection;
                        r.size = r.size.or(p.size);
                        r.etag = r.etag.take().or(p.etag);
                        r.modified = r.modified.take().or(p.modified);
                    }
                }
                b"response" => {
                    if let Some(r) = response.take()
                        && r.status.as_deref().is_none_or(is_success)
                        && let Some(href) = r.href
                    {
                        out.push(Entry {
                            path: href_path(&href),
                            collection: r.collection,
                            size: r.size,
                            etag: r.etag.clone(),
                            version: r.etag.or(r.modified),
                        });
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_multistatus {
        return Err("the answer to PROPFIND is not a DAV multistatus".into());
    }
    Ok(out)
}

fn non_empty(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// `HTTP/1.1 200 OK` and friends.
fn is_success(status: &str) -> bool {
    status
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'))
}

/// The decoded path of an href, which may be a full URL or a path.
fn href_path(href: &str) -> String {
    let href = href.trim();
    let path = match href.find("://") {
        Some(i) => {
            let rest = &href[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => href,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let trimmed = decoded.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apache_style_with_prefixes_and_a_404_propstat() {
        let body = br#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:">
  <D:response>
    <D:href>/dav/db/ltx/0/</D:href>
    <D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop>
      <D:status>HTTP/1.1 200 OK</D:status></D:propstat>
    <D:propstat><D:prop><D:getcontentlength/></D:prop>
      <D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>
  </D:response>
  <D:response>
    <D:href>/dav/db/ltx/0/0000000000000001-0000000000000001.ltx</D:href>
    <D:propstat><D:prop><D:resourcetype/><D:getcontentlength>4096</D:getcontentlength></D:prop>
      <D:status>HTTP/1.1 200 OK</D:status></D:propstat>
  </D:response>
</D:multistatus>"#;
        let got = parse(body).unwrap();
        assert_eq!(
            got,
            vec![
                Entry {
                    path: "/dav/db/ltx/0".into(),
                    collection: true,
                    size: None,
                    version: None,
                    etag: None
                },
                Entry {
                    path: "/dav/db/ltx/0/0000000000000001-0000000000000001.ltx".into(),
                    collection: false,
                    size: Some(4096),
                    version: None,
                    etag: None
                },
            ]
        );
    }

    #[test]
    fn default_namespace_full_urls_and_escapes() {
        let body = br#"<?xml version="1.0"?>
<multistatus xmlns="DAV:"><response>
<href>http://127.0.0.1:8080/a%20b/it&amp;s.ltx</href>
<propstat><prop><getcontentlength> 12 </getcontentlength><resourcetype></resourcetype></prop>
<status>HTTP/1.1 200 OK</status></propstat></response>
<response><href>/gone</href><status>HTTP/1.1 404 Not Found</status></response>
</multistatus>"#;
        let got = parse(body).unwrap();
        assert_eq!(
            got,
            vec![Entry {
                path: "/a b/it&s.ltx".into(),
                collection: false,
                size: Some(12),
                version: None,
                etag: None
            }]
        );
    }

    #[test]
    fn the_etag_names_the_version_else_the_modification_time() {
        let body = br#"<D:multistatus xmlns:D="DAV:">
<D:response><D:href>/a.ltx</D:href><D:propstat><D:prop><D:getcontentlength>1</D:getcontentlength>
<D:getetag>"e1"</D:getetag><D:getlastmodified>Tue, 01 Dec 2026 10:00:00 GMT</D:getlastmodified>
</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/b.ltx</D:href><D:propstat><D:prop><D:getcontentlength>1</D:getcontentlength>
<D:getlastmodified>Tue, 01 Dec 2026 10:00:00 GMT</D:getlastmodified></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat>
<D:propstat><D:prop><D:getetag/></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>
</D:response>
<D:response><D:href>/c.ltx</D:href><D:propstat><D:prop><D:getcontentlength>1</D:getcontentlength>
<D:getetag></D:getetag></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
</D:multistatus>"#;
        let got: Vec<_> = parse(body)
            .unwrap()
            .into_iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(
            got,
            vec![
                Some("\"e1\"".to_owned()),
                Some("Tue, 01 Dec 2026 10:00:00 GMT".to_owned()),
                None
            ]
        );
    }

    #[test]
    fn lowercase_prefix_and_no_status() {
        let body = br#"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/x/</d:href>
<d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop></d:propstat>
</d:response></d:multistatus>"#;
        let got = parse(body).unwrap();
        assert!(got[0].collection && got[0].path == "/x");
    }

    #[test]
    fn rejects_what_is_not_a_multistatus() {
        assert!(parse(b"<html><body>login</body></html>").is_err());
        assert!(parse(b"<D:multistatus xmlns:D='DAV:'><D:response>").is_ok_and(|v| v.is_empty()));
        assert!(parse(b"\xff\xfe<<<").is_err());
    }

    #[test]
    fn href_forms() {
        assert_eq!(href_path("https://h/p/q/"), "/p/q");
        assert_eq!(href_path("https://h"), "/");
        assert_eq!(href_path("/"), "/");
        assert_eq!(href_path("/a%2Fb"), "/a/b");
    }
}
