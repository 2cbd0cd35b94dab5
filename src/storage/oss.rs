//! `oss://bucket/path`: Alibaba Cloud OSS, reached through its
//! S3-compatible API, with the key layout Litestream's `oss` client writes
//! (the same as S3's: `<path>/<level as 4 hex digits>/<name>`).
//!
//! The host takes the forms Litestream accepts: a bare bucket (region
//! `cn-hangzhou`), `bucket.oss-<region>.aliyuncs.com` and
//! `bucket.oss-<region>-internal.aliyuncs.com` (the endpoint inside
//! Alibaba Cloud). Parameters: `region`, `endpoint` (any S3-compatible
//! endpoint, e.g. a test server), `force-path-style`, `skip-verify`.
//! Credentials, first found: `LITESTREAM_ACCESS_KEY_ID` /
//! `LITESTREAM_SECRET_ACCESS_KEY`; OSS's own `OSS_ACCESS_KEY_ID` /
//! `OSS_ACCESS_KEY_SECRET` (+ `OSS_SESSION_TOKEN`), which Litestream's OSS
//! SDK reads; `ALIBABA_CLOUD_ACCESS_KEY_ID` /
//! `ALIBABA_CLOUD_ACCESS_KEY_SECRET` (+ `ALIBABA_CLOUD_SECURITY_TOKEN`).

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;

use super::error::{StorageError, StorageErrorKind};
use super::object::{Context, Layout, ObjectStorage};
use super::params::{Params, env, url_prefix};
use super::secrets::Secrets;
use super::url::ReplicaUrl;
use super::{Storage, retry, tls};

const BACKEND: &str = "oss";
const PARAMS: &[&str] = &["endpoint", "region", "force-path-style", "skip-verify"];
/// Litestream's default when the URL names no region.
const DEFAULT_REGION: &str = "cn-hangzhou";
const CREDENTIAL_HINT: &str = "LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY or \
                               OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET";

/// What the URL's host says.
#[derive(Debug, PartialEq, Eq)]
struct HostInfo {
    bucket: String,
    region: Option<String>,
    internal: bool,
}

/// `bucket`, `bucket.oss-<region>.aliyuncs.com` or
/// `bucket.oss-<region>-internal.aliyuncs.com`.
fn parse_host(host: &str) -> HostInfo {
    if host.starts_with("oss-") && host.ends_with(".aliyuncs.com") {
        // An endpoint without a bucket: Litestream refuses it too.
        return HostInfo {
            bucket: String::new(),
            region: None,
            internal: false,
        };
    }
    if let Some(rest) = host.strip_suffix(".aliyuncs.com")
        && let Some((bucket, region)) = rest.split_once(".oss-")
        && !bucket.is_empty()
        && !region.is_empty()
        && !region.contains('.')
    {
        let (region, internal) = match region.strip_suffix("-internal") {
            Some(r) if !r.is_empty() => (r, true),
            _ => (region, false),
        };
        return HostInfo {
            bucket: bucket.to_owned(),
            region: Some(region.to_owned()),
            internal,
        };
    }
    HostInfo {
        bucket: host.to_owned(),
        region: None,
        internal: false,
    }
}

/// OSS's S3-compatible endpoint of a region.
fn default_endpoint(region: &str, internal: bool) -> String {
    let suffix = if internal { "-internal" } else { "" };
    format!("https://s3.oss-{region}{suffix}.aliyuncs.com")
}

pub fn open(url: &ReplicaUrl, timeouts: retry::Timeouts) -> Result<Arc<dyn Storage>, StorageError> {
    tls::ensure_provider();
    let mut params = Params::new(BACKEND, url);
    let endpoint = params.take("endpoint");
    let region = params.take("region");
    let path_style = params.take_bool("force-path-style")?.unwrap_or(false);
    let skip_verify = params.take_bool("skip-verify")?.unwrap_or(false);
    params.finish(PARAMS)?;

    let host = parse_host(url.url().host_str().unwrap_or_default());
    if host.bucket.is_empty() {
        return Err(StorageError::new(
            BACKEND,
            StorageErrorKind::Config,
            format!("{url} names no bucket: use oss://BUCKET.oss-REGION.aliyuncs.com/PATH"),
        ));
    }
    let region = region
        .or(host.region)
        .unwrap_or_else(|| DEFAULT_REGION.to_owned());
    let endpoint = match endpoint {
        Some(e) if e.contains("://") => e,
        Some(e) => format!("https://{e}"),
        None => default_endpoint(&region, host.internal),
    };
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    let allow_http = endpoint.starts_with("http://");

    let mut secrets = Secrets::new();
    let Some((id, secret, token)) = credentials() else {
        return Err(StorageError::new(
            BACKEND,
            StorageErrorKind::Auth,
            format!("no OSS credentials for {url}: set {CREDENTIAL_HINT}"),
        ));
    };
    secrets.add(&secret);
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&host.bucket)
        .with_region(&region)
        .with_access_key_id(id)
        .with_secret_access_key(secret);
    if let Some(t) = token {
        secrets.add(&t);
        builder = builder.with_token(t);
    }
    // OSS serves buckets on their own host names (virtual-hosted style);
    // path style is for S3-compatible test servers.
    builder = if path_style {
        builder
            .with_endpoint(&endpoint)
            .with_virtual_hosted_style_request(false)
    } else {
        builder
            .with_endpoint(bucket_host(&endpoint, &host.bucket))
            .with_virtual_hosted_style_request(true)
    };
    let cx = Context {
        backend: BACKEND,
        describe: url.redacted().to_owned(),
        bucket: host.bucket,
        credential_hint: CREDENTIAL_HINT,
        secrets,
    };
    ObjectStorage::build("OSS", url_prefix(url), Layout::Hex, cx, || {
        builder
            .with_client_options(retry::client_options(allow_http, skip_verify, timeouts))
            .with_retry(retry::object_store_retry(timeouts))
            .build()
    })
}

/// Access key id, secret and session token, from the first set of
/// variables that has both key and secret.
fn credentials() -> Option<(String, String, Option<String>)> {
    let sets = [
        (
            "LITESTREAM_ACCESS_KEY_ID",
            "LITESTREAM_SECRET_ACCESS_KEY",
            None,
        ),
        (
            "OSS_ACCESS_KEY_ID",
            "OSS_ACCESS_KEY_SECRET",
            Some("OSS_SESSION_TOKEN"),
        ),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            Some("ALIBABA_CLOUD_SECURITY_TOKEN"),
        ),
    ];
    sets.into_iter()
        .find_map(|(id, secret, token)| Some((env(id)?, env(secret)?, token.and_then(env))))
}

/// `https://host` → `https://bucket.host`.
fn bucket_host(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{bucket}.{rest}"),
        None => format!("https://{bucket}.{endpoint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        assert_eq!(
            parse_host("mybucket.oss-cn-hangzhou.aliyuncs.com"),
            HostInfo {
                bucket: "mybucket".into(),
                region: Some("cn-hangzhou".into()),
                internal: false
            }
        );
        assert_eq!(
            parse_host("b.oss-ap-southeast-1-internal.aliyuncs.com"),
            HostInfo {
                bucket: "b".into(),
                region: Some("ap-southeast-1".into()),
                internal: true
            }
        );
        assert_eq!(parse_host("plain").bucket, "plain");
        assert_eq!(parse_host("plain").region, None);
        // An endpoint without a bucket names none, as for Litestream.
        assert_eq!(parse_host("oss-cn-hangzhou.aliyuncs.com").bucket, "");
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            default_endpoint("cn-beijing", false),
            "https://s3.oss-cn-beijing.aliyuncs.com"
        );
        assert_eq!(
            default_endpoint("cn-beijing", true),
            "https://s3.oss-cn-beijing-internal.aliyuncs.com"
        );
        assert_eq!(
            bucket_host("https://s3.oss-cn-beijing.aliyuncs.com", "b"),
            "https://b.s3.oss-cn-beijing.aliyuncs.com"
        );
    }
}
