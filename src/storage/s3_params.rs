//! The query parameters of an `s3://` replica URL, read as Litestream's S3
//! client reads them (`NewReplicaClientFromURL`): each under its camelCase
//! and its kebab-case name (`forcePathStyle`, `force-path-style`), the
//! camelCase one first. Users paste the URL they give `litestream
//! replicate`, so every parameter Litestream takes opens here too:
//! - the ones that matter to a reader are used: `endpoint`, `region`,
//!   `forcePathStyle`, `skipVerify` and the customer key of SSE-C, which
//!   every GET and HEAD of an object written with it must repeat;
//! - the ones that only shape writes (`signPayload`, `requireContentMD5`,
//!   `concurrency`, `partSize`, `storageClass`, and `sseKmsKeyId`: S3
//!   decrypts SSE-KMS objects without any header) are checked as Litestream
//!   checks them, then ignored with a debug line;
//! - anything else is a typo and fails the open, naming it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest, Md5};

use super::error::{StorageError, StorageErrorKind};
use super::params::Params;
use super::secrets::Secrets;
use super::url::ReplicaUrl;
use crate::log;

const BACKEND: &str = "s3";

const ENDPOINT: &[&str] = &["endpoint"];
const REGION: &[&str] = &["region"];
const FORCE_PATH_STYLE: &[&str] = &["forcePathStyle", "force-path-style"];
const SKIP_VERIFY: &[&str] = &["skipVerify", "skip-verify"];
const SSE_ALGORITHM: &[&str] = &["sseCustomerAlgorithm", "sse-customer-algorithm"];
const SSE_KEY: &[&str] = &["sseCustomerKey", "sse-customer-key"];
const SSE_KEY_MD5: &[&str] = &["sseCustomerKeyMD5", "sse-customer-key-md5"];
const SIGN_PAYLOAD: &[&str] = &["signPayload", "sign-payload"];
const REQUIRE_MD5: &[&str] = &["requireContentMD5", "require-content-md5"];
const CONCURRENCY: &[&str] = &["concurrency"];
const PART_SIZE: &[&str] = &["partSize", "part-size"];
const STORAGE_CLASS: &[&str] = &["storageClass", "storage-class"];
const SSE_KMS_KEY_ID: &[&str] = &["sseKmsKeyId", "sse-kms-key-id"];

/// Every name an `s3://` URL may carry, for the message about a typo.
const KNOWN: &[&[&str]] = &[
    ENDPOINT,
    REGION,
    FORCE_PATH_STYLE,
    SKIP_VERIFY,
    SSE_ALGORITHM,
    SSE_KEY,
    SSE_KEY_MD5,
    SIGN_PAYLOAD,
    REQUIRE_MD5,
    CONCURRENCY,
    PART_SIZE,
    STORAGE_CLASS,
    SSE_KMS_KEY_ID,
];

/// The only algorithm S3 offers for customer keys.
const SSE_C_ALGORITHM: &str = "AES256";

/// What an `s3://` URL's query says to a reader.
#[derive(Debug, Default)]
pub struct S3Params {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub skip_verify: bool,
    pub sse_c: Option<CustomerKey>,
}

/// The customer-provided key of SSE-C (a base64-encoded 256-bit AES key).
/// Never shown: `Debug` prints `REDACTED`.
pub struct CustomerKey(String);

impl CustomerKey {
    /// The key as S3 takes it in `x-amz-server-side-encryption-customer-key`.
    pub fn base64(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomerKey(REDACTED)")
    }
}

impl S3Params {
    /// Reads every parameter of `url`; the SSE-C key goes into `secrets`
    /// before anything can print it.
    pub fn parse(url: &ReplicaUrl, secrets: &mut Secrets) -> Result<S3Params, StorageError> {
        let mut params = Params::new(BACKEND, url);
        let value = |p: &mut Params, names: &[&'static str]| p.take_first(names).map(|(_, v)| v);
        let key = value(&mut params, SSE_KEY);
        if let Some(k) = &key {
            secrets.add(k);
        }
        let out = S3Params {
            endpoint: value(&mut params, ENDPOINT),
            region: value(&mut params, REGION),
            path_style: params.take_bool_first(FORCE_PATH_STYLE)?,
            skip_verify: params.take_bool_first(SKIP_VERIFY)?.unwrap_or(false),
            sse_c: None,
        };
        let algorithm = value(&mut params, SSE_ALGORITHM);
        let key_md5 = value(&mut params, SSE_KEY_MD5);
        let kms = value(&mut params, SSE_KMS_KEY_ID);
        let writer_only = [
            (
                "signPayload",
                params.take_bool_first(SIGN_PAYLOAD)?.is_some(),
            ),
            (
                "requireContentMD5",
                params.take_bool_first(REQUIRE_MD5)?.is_some(),
            ),
            (
                "concurrency",
                params.take_positive_first(CONCURRENCY)?.is_some(),
            ),
            ("partSize", params.take_positive_first(PART_SIZE)?.is_some()),
            ("storageClass", value(&mut params, STORAGE_CLASS).is_some()),
            ("sseKmsKeyId", kms.is_some()),
        ];
        let known: Vec<&str> = KNOWN.iter().flat_map(|n| n.iter().copied()).collect();
        params.finish(&known)?;
        for (name, _) in writer_only.iter().filter(|(_, given)| *given) {
            log::debug!(
                "s3: replica URL parameter {name} only shapes what Litestream writes; a reader ignores it"
            );
        }
        let sse_c = customer_key(key, algorithm, key_md5, kms.is_some())?;
        Ok(S3Params { sse_c, ..out })
    }
}

/// Checks SSE-C as Litestream does: AES256, a base64 key of 32 bytes, not
/// together with SSE-KMS; and, since S3 recomputes it, an MD5 given with
/// the key must be the key's.
fn customer_key(
    key: Option<String>,
    algorithm: Option<String>,
    key_md5: Option<String>,
    kms: bool,
) -> Result<Option<CustomerKey>, StorageError> {
    let Some(key) = key else {
        if algorithm.is_some() || key_md5.is_some() {
            return Err(config(
                "sseCustomerAlgorithm and sseCustomerKeyMD5 need sseCustomerKey (the base64 key the replica was written with)",
            ));
        }
        return Ok(None);
    };
    if kms {
        return Err(config(
            "sseCustomerKey and sseKmsKeyId cannot be used together (Litestream refuses both)",
        ));
    }
    if let Some(a) = algorithm.filter(|a| a != SSE_C_ALGORITHM) {
        return Err(config(format!(
            "sseCustomerAlgorithm must be {SSE_C_ALGORITHM}, not {a:?}"
        )));
    }
    let bytes = BASE64
        .decode(key.as_bytes())
        .map_err(|_| config("sseCustomerKey is not valid base64 (give the key as Litestream takes it: 32 bytes, base64)"))?;
    if bytes.len() != 32 {
        return Err(config(format!(
            "sseCustomerKey must decode to 32 bytes (a 256-bit AES key), not {}",
            bytes.len()
        )));
    }
    if let Some(given) = key_md5 {
        let md5 = BASE64.encode(Md5::digest(&bytes));
        if given != md5 {
            return Err(config(
                "sseCustomerKeyMD5 is not the MD5 of sseCustomerKey (leave it out: it is computed from the key)",
            ));
        }
    }
    Ok(Some(CustomerKey(key)))
}

/// A customer key travels in a header of every request: only over HTTPS,
/// or (as Litestream allows, for testing) plain HTTP to this machine or a
/// private network.
pub fn check_key_transport(endpoint: Option<&str>) -> Result<(), StorageError> {
    let Some(endpoint) = endpoint.filter(|e| e.starts_with("http://")) else {
        return Ok(());
    };
    let host = url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()));
    let local = match host {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_private(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback() || ip.is_unique_local(),
        None => false,
    };
    if local {
        Ok(())
    } else {
        Err(config(
            "sseCustomerKey needs an HTTPS endpoint (plain HTTP only to localhost or a private network): the key travels in every request",
        ))
    }
}

fn config(msg: impl Into<String>) -> StorageError {
    StorageError::new(BACKEND, StorageErrorKind::Config, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// base64 of the 32 bytes 0..32, and its MD5.
    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn parse(query: &str) -> Result<S3Params, StorageError> {
        let url = ReplicaUrl::parse(&format!("s3://bucket/db?{query}")).unwrap();
        S3Params::parse(&url, &mut Secrets::new())
    }

    fn md5_of_key() -> String {
        BASE64.encode(Md5::digest(BASE64.decode(KEY).unwrap()))
    }

    #[test]
    fn both_spellings_of_what_a_reader_uses() {
        for q in ["forcePathStyle=true", "force-path-style=true"] {
            assert_eq!(parse(q).unwrap().path_style, Some(true), "{q}");
        }
        for q in ["forcePathStyle=false", "force-path-style=0"] {
            assert_eq!(parse(q).unwrap().path_style, Some(false), "{q}");
        }
        for q in ["skipVerify=true", "skip-verify=t"] {
            assert!(parse(q).unwrap().skip_verify, "{q}");
        }
        let p = parse("endpoint=http://127.0.0.1:9000&region=eu-west-1").unwrap();
        assert_eq!(p.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(p.region.as_deref(), Some("eu-west-1"));
        assert_eq!(parse("").unwrap().path_style, None);
    }

    #[test]
    fn camel_case_wins_as_in_litestream() {
        let p = parse("force-path-style=false&forcePathStyle=true").unwrap();
        assert_eq!(p.path_style, Some(true));
    }

    #[test]
    fn writer_only_parameters_are_accepted() {
        for q in [
            "signPayload=true",
            "sign-payload=false",
            "requireContentMD5=false",
            "require-content-md5=true",
            "concurrency=8",
            "partSize=5242880",
            "part-size=10485760",
            "storageClass=STANDARD_IA",
            "storage-class=GLACIER_IR",
            "sseKmsKeyId=arn:aws:kms:us-east-1:1:key/abc",
            "sse-kms-key-id=alias/litestream",
        ] {
            let p = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert!(p.sse_c.is_none(), "{q}");
        }
    }

    #[test]
    fn bad_values_are_named_as_litestream_names_them() {
        for (q, name) in [
            ("concurrency=0", "concurrency"),
            ("partSize=big", "partSize"),
            ("part-size=-1", "part-size"),
            ("signPayload=perhaps", "signPayload"),
            ("skip-verify=maybe", "skip-verify"),
        ] {
            let err = parse(q).unwrap_err();
            assert!(err.message.contains(name), "{q}: {err}");
        }
    }

    #[test]
    fn typos_still_fail() {
        for q in [
            "forcepathstyle=true",
            "forcePathstyle=true",
            "sseCustomerkey=x",
            "bogus=1",
        ] {
            let err = parse(q).unwrap_err();
            assert!(
                err.message.contains("unknown replica URL parameter"),
                "{q}: {err}"
            );
            assert!(err.message.contains("forcePathStyle"), "{q}: {err}");
        }
    }

    #[test]
    fn customer_key_in_both_spellings() {
        let md5 = md5_of_key();
        for q in [
            format!("sseCustomerKey={}", urlenc(KEY)),
            format!(
                "sse-customer-key={}&sse-customer-algorithm=AES256",
                urlenc(KEY)
            ),
            format!(
                "sseCustomerAlgorithm=AES256&sseCustomerKey={}&sseCustomerKeyMD5={}",
                urlenc(KEY),
                urlenc(&md5)
            ),
            format!(
                "sse-customer-key={}&sse-customer-key-md5={}",
                urlenc(KEY),
                urlenc(&md5)
            ),
        ] {
            let p = parse(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(p.sse_c.as_ref().map(CustomerKey::base64), Some(KEY), "{q}");
        }
    }

    #[test]
    fn customer_key_is_checked_and_never_shown() {
        let k = urlenc(KEY);
        let cases = [
            (
                format!("sseCustomerKey={k}&sseCustomerAlgorithm=aws:kms"),
                "AES256",
            ),
            ("sseCustomerKey=bm90IDMyIGJ5dGVz".to_owned(), "32 bytes"),
            ("sseCustomerKey=%%%".to_owned(), "base64"),
            (
                format!("sseCustomerKey={k}&sseKmsKeyId=alias/x"),
                "together",
            ),
            (
                format!("sseCustomerKey={k}&sseCustomerKeyMD5=AAAAAAAAAAAAAAAAAAAAAA%3D%3D"),
                "MD5",
            ),
            (
                "sseCustomerAlgorithm=AES256".to_owned(),
                "need sseCustomerKey",
            ),
        ];
        for (q, what) in cases {
            let err = parse(&q).unwrap_err();
            assert!(err.message.contains(what), "{q}: {err}");
            assert!(!err.to_string().contains(KEY), "{err}");
        }
        let p = parse(&format!("sseCustomerKey={k}")).unwrap();
        let shown = format!("{p:?}");
        assert!(
            !shown.contains(KEY) && shown.contains("REDACTED"),
            "{shown}"
        );
        let mut secrets = Secrets::new();
        let url = ReplicaUrl::parse(&format!("s3://b/db?sse-customer-key={k}")).unwrap();
        S3Params::parse(&url, &mut secrets).unwrap();
        assert_eq!(secrets.scrub(&format!("x {KEY} y")), "x REDACTED y");
        assert!(
            url.to_string().ends_with("?sse-customer-key=REDACTED"),
            "{url}"
        );
    }

    #[test]
    fn customer_key_only_over_https_or_a_local_network() {
        for ok in [
            None,
            Some("https://s3.example.com"),
            Some("http://127.0.0.1:9000"),
            Some("http://localhost:9000"),
            Some("http://10.1.2.3:9000"),
            Some("http://192.168.1.2"),
            Some("http://[::1]:9000"),
        ] {
            assert!(check_key_transport(ok).is_ok(), "{ok:?}");
        }
        for bad in ["http://s3.example.com", "http://8.8.8.8:9000"] {
            let err = check_key_transport(Some(bad)).unwrap_err();
            assert!(err.message.contains("HTTPS"), "{bad}: {err}");
        }
    }

    fn urlenc(s: &str) -> String {
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }
}
