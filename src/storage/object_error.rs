//! Turning `object_store` errors into [`StorageError`]s whose kind the
//! replica layer can branch on and whose message tells the user what to do,
//! with every secret removed.

use std::error::Error as StdError;

use object_store::client::{HttpError, HttpErrorKind};

use super::error::{StorageError, StorageErrorKind, chain};
use super::secrets::Secrets;

/// What the backend tells the user when something fails: its name, where the
/// replica is, and which secrets to keep out of messages.
#[derive(Debug)]
pub struct Context {
    pub backend: &'static str,
    pub describe: String,
    /// Bucket or container, for "does not exist" messages.
    pub bucket: String,
    /// Environment variables or parameters that hold the credentials, named
    /// in "credentials refused" messages.
    pub credential_hint: &'static str,
    pub secrets: Secrets,
}

pub fn classify(cx: &Context, op: &str, what: &str, e: &object_store::Error) -> StorageError {
    let cause = cx.secrets.scrub(&chain(e));
    let status = http_status(&cause);
    let (kind, advice) = match e {
        object_store::Error::NotFound { .. } if is_missing_bucket(&cause) => (
            StorageErrorKind::NotFound,
            format!("bucket or container {:?} does not exist", cx.bucket),
        ),
        object_store::Error::NotFound { .. } => (StorageErrorKind::NotFound, "not found".into()),
        // A read tied to the listed ETag (If-Match) of an object written
        // again since.
        object_store::Error::Precondition { .. } => (
            StorageErrorKind::Changed,
            "written again since it was listed (precondition failed)".into(),
        ),
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => (StorageErrorKind::Auth, refused(cx)),
        _ => match status {
            Some(404) if is_missing_bucket(&cause) => (
                StorageErrorKind::NotFound,
                format!("bucket or container {:?} does not exist", cx.bucket),
            ),
            Some(404) => (StorageErrorKind::NotFound, "not found".into()),
            Some(412) => (
                StorageErrorKind::Changed,
                "written again since it was listed (precondition failed)".into(),
            ),
            Some(401 | 403) => (StorageErrorKind::Auth, refused(cx)),
            Some(400) if is_auth_complaint(&cause) => (StorageErrorKind::Auth, refused(cx)),
            Some(408 | 429 | 500..=599) => (
                StorageErrorKind::Transient,
                "the service is failing or throttling; retries were exhausted".into(),
            ),
            _ if is_transport(e) => (
                StorageErrorKind::Transient,
                "cannot reach the service (connection failed or timed out after retries)".into(),
            ),
            _ if is_credential_setup(&cause) => (StorageErrorKind::Auth, refused(cx)),
            _ => (StorageErrorKind::Other, "request failed".into()),
        },
    };
    StorageError::new(
        cx.backend,
        kind,
        format!("{} of {what} at {}: {advice}: {cause}", op, cx.describe),
    )
}

fn refused(cx: &Context) -> String {
    format!(
        "credentials missing or refused (check {})",
        cx.credential_hint
    )
}

/// An HTTP transport failure (connect, timeout, reset) anywhere in the chain.
fn is_transport(e: &object_store::Error) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = cur {
        if let Some(h) = s.downcast_ref::<HttpError>() {
            return matches!(
                h.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        cur = s.source();
    }
    false
}

/// The HTTP status object_store reports in its message
/// ("… non-2xx status code: 403 Forbidden …"); its error type is private.
fn http_status(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

fn is_missing_bucket(text: &str) -> bool {
    [
        "NoSuchBucket",
        "ContainerNotFound",
        "bucket does not exist",
        "Bucket not found",
    ]
    .iter()
    .any(|m| text.contains(m))
}

fn is_auth_complaint(text: &str) -> bool {
    [
        "AuthorizationHeaderMalformed",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AuthenticationFailed",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// object_store failed before any request: no usable credentials.
fn is_credential_setup(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("credential") || t.contains("token")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::secrets::Secrets;

    fn cx() -> Context {
        let mut secrets = Secrets::new();
        secrets.add("topsecretvalue");
        Context {
            backend: "s3",
            describe: "s3://b/db".into(),
            bucket: "b".into(),
            credential_hint: "AWS_ACCESS_KEY_ID",
            secrets,
        }
    }

    fn generic(msg: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: msg.to_owned().into(),
        }
    }

    #[test]
    fn status_codes_map_to_kinds() {
        let cases = [
            (
                "Server returned non-2xx status code: 403 Forbidden: <Error>",
                StorageErrorKind::Auth,
            ),
            (
                "Server returned non-2xx status code: 503 Slow Down",
                StorageErrorKind::Transient,
            ),
            (
                "Server returned non-2xx status code: 404 Not Found: NoSuchBucket",
                StorageErrorKind::NotFound,
            ),
            ("something odd", StorageErrorKind::Other),
        ];
        for (msg, kind) in cases {
            assert_eq!(
                classify(&cx(), "list", "db/0000", &generic(msg)).kind,
                kind,
                "{msg}"
            );
        }
        let e = classify(
            &cx(),
            "list",
            "db",
            &generic("status code: 404 x NoSuchBucket"),
        );
        assert!(e.message.contains("\"b\" does not exist"), "{e}");
    }

    #[test]
    fn secrets_never_reach_the_message() {
        let e = classify(&cx(), "read", "x", &generic("bad key topsecretvalue"));
        assert!(!e.to_string().contains("topsecretvalue"), "{e}");
        assert!(
            e.to_string()
                .starts_with("s3 storage: read of x at s3://b/db"),
            "{e}"
        );
    }
}
