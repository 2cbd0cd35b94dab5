//! One WebDAV request with retries: what a status or a transport failure
//! means, and a message with every secret removed.

use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};

use super::BACKEND;
use crate::storage::error::{StorageError, StorageErrorKind, chain};
use crate::storage::retry::with_retries;
use crate::storage::secrets::Secrets;

/// A finished request: its status and whole body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// Where a failure happened, for the message.
pub struct Call<'a> {
    pub op: &'a str,
    pub what: &'a str,
    pub describe: &'a str,
    pub secrets: &'a Secrets,
    /// No retry starts later than this after the first attempt.
    pub retry_window: Duration,
}

impl Call<'_> {
    /// Sends the request `build` makes until it answers with one of `ok`,
    /// fails in a way a retry cannot cure, or the retry budget is spent.
    /// 404 is `NotFound`; the caller decides what an absent folder means.
    pub async fn send(
        &self,
        ok: &[StatusCode],
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Answer, StorageError> {
        with_retries(self.retry_window, || async {
            let resp = build().send().await.map_err(|e| self.transport(&e))?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| self.transport(&e))?.to_vec();
            if ok.contains(&status) {
                return Ok(Answer { status, body });
            }
            Err(self.status(status, &body))
        })
        .await
    }

    fn transport(&self, e: &reqwest::Error) -> StorageError {
        let kind = if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() {
            StorageErrorKind::Transient
        } else {
            StorageErrorKind::Other
        };
        let advice = if e.is_timeout() {
            "the server did not answer in time"
        } else if e.is_connect() {
            "cannot connect to the server"
        } else {
            "the request failed"
        };
        self.error(kind, advice, &chain(e))
    }

    pub fn status(&self, status: StatusCode, body: &[u8]) -> StorageError {
        let (kind, advice) = match status.as_u16() {
            401 | 403 => (
                StorageErrorKind::Auth,
                "credentials missing or refused (check the user and password in the URL, or \
                 LITESTREAM_WEBDAV_USERNAME/LITESTREAM_WEBDAV_PASSWORD)",
            ),
            404 | 410 => (StorageErrorKind::NotFound, "not found"),
            // A read tied to the listed ETag (If-Match) of a file written
            // again since.
            412 => (
                StorageErrorKind::Changed,
                "written again since it was listed (precondition failed)",
            ),
            408 | 429 | 500..=599 => (
                StorageErrorKind::Transient,
                "the server is failing or throttling; retries were exhausted",
            ),
            416 => (
                StorageErrorKind::Other,
                "the range is past the end of the file",
            ),
            _ => (StorageErrorKind::Other, "unexpected answer"),
        };
        let snippet: String = String::from_utf8_lossy(body)
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        let cause = if snippet.trim().is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", snippet.trim())
        };
        self.error(kind, advice, &cause)
    }

    pub fn error(&self, kind: StorageErrorKind, advice: &str, cause: &str) -> StorageError {
        StorageError::new(
            BACKEND,
            kind,
            self.secrets.scrub(&format!(
                "{} of {} at {}: {advice}: {cause}",
                self.op, self.what, self.describe
            )),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds_and_secrets_stay_out() {
        let mut secrets = Secrets::new();
        secrets.add("pa55word");
        let call = Call {
            op: "list",
            what: "db/ltx/0",
            describe: "webdav://u:REDACTED@h/db",
            secrets: &secrets,
            retry_window: Duration::from_secs(1),
        };
        let cases = [
            (401, StorageErrorKind::Auth),
            (403, StorageErrorKind::Auth),
            (404, StorageErrorKind::NotFound),
            (503, StorageErrorKind::Transient),
            (429, StorageErrorKind::Transient),
            (400, StorageErrorKind::Other),
        ];
        for (code, kind) in cases {
            let e = call.status(StatusCode::from_u16(code).unwrap(), b"echo pa55word");
            assert_eq!(e.kind, kind, "{code}");
            assert!(!e.message.contains("pa55word"), "{e}");
            assert!(
                e.message.starts_with("list of db/ltx/0 at webdav://"),
                "{e}"
            );
        }
    }
}
