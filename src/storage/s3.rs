//! `s3://bucket/path`: Amazon S3 and S3-compatible services.
//!
//! URL parameters: every one Litestream's S3 client takes, in both its
//! spellings (see [`s3_params`](super::s3_params)), including the customer
//! key of SSE-C, sent with every read. Credentials, first found:
//! `LITESTREAM_ACCESS_KEY_ID`/`LITESTREAM_SECRET_ACCESS_KEY`; the standard
//! `AWS_*` variables; the profile of the shared config/credentials files;
//! web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`); container
//! and instance metadata (unless `AWS_EC2_METADATA_DISABLED=true`).
//! The endpoint may also come from `LITESTREAM_S3_ENDPOINT`, or from the
//! host as Litestream accepts it (`s3://bucket.minio:9000/db` is plain HTTP
//! to `minio:9000`; `s3://bucket.nyc3.digitaloceanspaces.com/db`); the
//! well-known S3-compatible services (MinIO, Cloudflare R2, Backblaze B2,
//! DigitalOcean Spaces, Tigris) need nothing but their endpoint.

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use super::error::{StorageError, StorageErrorKind};
use super::object::{Context, Layout, ObjectStorage};
use super::params::{env, url_prefix};
use super::s3_params::{S3Params, check_key_transport};
use super::secrets::Secrets;
use super::url::ReplicaUrl;
use super::{Storage, aws_profile, retry, tls};

const BACKEND: &str = "s3";
const DEFAULT_REGION: &str = "us-east-1";

pub fn open(url: &ReplicaUrl, timeouts: retry::Timeouts) -> Result<Arc<dyn Storage>, StorageError> {
    tls::ensure_provider();
    let mut secrets = Secrets::new();
    let S3Params {
        endpoint: param_endpoint,
        region: param_region,
        path_style,
        skip_verify,
        sse_c,
    } = S3Params::parse(url, &mut secrets)?;

    let host = url.url().host_str().unwrap_or_default();
    let parsed = parse_host(host, url.url().port());
    let endpoint = param_endpoint
        .or_else(|| env("LITESTREAM_S3_ENDPOINT"))
        .or(parsed.endpoint)
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .map(|e| with_scheme(&e));

    let mut builder = AmazonS3Builder::from_env().with_bucket_name(&parsed.bucket);
    builder = credentials(builder, &mut secrets)?;
    // object_store's own variable for an SSE-C key, read by from_env.
    if let Ok(k) = "aws_sse_customer_key_base64".parse::<AmazonS3ConfigKey>()
        && let Some(v) = builder.get_config_value(&k)
    {
        secrets.add(v);
    }
    if let Some(key) = &sse_c {
        check_key_transport(endpoint.as_deref())?;
        // object_store sends the key and its MD5 (as sensitive headers,
        // which its Debug hides) with every GET and HEAD.
        builder = builder.with_ssec_encryption(key.base64());
    }

    let profile_region = aws_profile::load().region;
    let region = param_region
        .or(parsed.region)
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or(profile_region)
        .or_else(|| endpoint.as_deref().and_then(known_region))
        .unwrap_or_else(|| DEFAULT_REGION.to_owned());
    builder = builder.with_region(region);

    let allow_http = endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    match &endpoint {
        Some(e) if path_style.unwrap_or(true) => {
            builder = builder
                .with_endpoint(e.trim_end_matches('/'))
                .with_virtual_hosted_style_request(false);
        }
        Some(e) => {
            // object_store expects the bucket in a virtual-hosted endpoint.
            builder = builder
                .with_endpoint(bucket_host(e, &parsed.bucket))
                .with_virtual_hosted_style_request(true);
        }
        None => builder = builder.with_virtual_hosted_style_request(!path_style.unwrap_or(false)),
    }
    let cx = Context {
        backend: BACKEND,
        describe: url.redacted().to_owned(),
        bucket: parsed.bucket,
        credential_hint: "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY or the AWS profile",
        secrets,
    };
    ObjectStorage::build("S3", url_prefix(url), Layout::Hex, cx, || {
        builder
            .with_client_options(retry::client_options(allow_http, skip_verify, timeouts))
            .with_retry(retry::object_store_retry(timeouts))
            .build()
    })
}

/// Applies the credentials found, in order of precedence, and records
/// the secrets for scrubbing.
fn credentials(
    mut builder: AmazonS3Builder,
    secrets: &mut Secrets,
) -> Result<AmazonS3Builder, StorageError> {
    if let (Some(id), Some(secret)) = (
        env("LITESTREAM_ACCESS_KEY_ID"),
        env("LITESTREAM_SECRET_ACCESS_KEY"),
    ) {
        secrets.add(&secret);
        return Ok(builder
            .with_access_key_id(id)
            .with_secret_access_key(secret));
    }
    if let Some(secret) = builder.get_config_value(&AmazonS3ConfigKey::SecretAccessKey) {
        secrets.add(secret);
        if let Some(token) = builder.get_config_value(&AmazonS3ConfigKey::Token) {
            secrets.add(token);
        }
        return Ok(builder);
    }
    let profile = aws_profile::load();
    if let (Some(id), Some(secret)) = (profile.access_key_id, profile.secret_access_key) {
        secrets.add(&secret);
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
        if let Some(token) = profile.session_token {
            secrets.add(&token);
            builder = builder.with_token(token);
        }
        return Ok(builder);
    }
    let federated = env("AWS_WEB_IDENTITY_TOKEN_FILE").is_some()
        || env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
        || env("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some();
    let imds_off = env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !federated && imds_off {
        return Err(StorageError::new(
            BACKEND,
            StorageErrorKind::Auth,
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
             LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY), or an AWS profile \
             (instance metadata is disabled by AWS_EC2_METADATA_DISABLED)",
        ));
    }
    // object_store falls back to web identity, then container, then
    // instance metadata.
    Ok(builder)
}

/// What the URL's host says: usually just the bucket, but Litestream also
/// accepts `bucket.host:port` (MinIO) and provider hosts such as
/// `bucket.nyc3.digitaloceanspaces.com`.
#[derive(Debug, PartialEq, Eq)]
struct HostInfo {
    bucket: String,
    region: Option<String>,
    endpoint: Option<String>,
}

fn parse_host(host: &str, port: Option<u16>) -> HostInfo {
    let plain = |bucket: &str| HostInfo {
        bucket: bucket.to_owned(),
        region: None,
        endpoint: None,
    };
    if let Some(port) = port {
        // bucket.host:port, as Litestream documents for MinIO: plain HTTP.
        if let Some((bucket, server)) = host.split_once('.') {
            return HostInfo {
                bucket: bucket.to_owned(),
                region: Some(DEFAULT_REGION.to_owned()),
                endpoint: Some(format!("http://{server}:{port}")),
            };
        }
    }
    if let Some(rest) = host.strip_suffix(".digitaloceanspaces.com") {
        // bucket.region.digitaloceanspaces.com
        if let Some((bucket, region)) = rest.rsplit_once('.') {
            return HostInfo {
                bucket: bucket.to_owned(),
                region: Some(region.to_owned()),
                endpoint: Some(format!("https://{region}.digitaloceanspaces.com")),
            };
        }
    }
    if let Some(rest) = host.strip_suffix(".backblazeb2.com") {
        // bucket.s3.region.backblazeb2.com
        if let Some((bucket, region)) = rest.split_once(".s3.") {
            return HostInfo {
                bucket: bucket.to_owned(),
                region: Some(region.to_owned()),
                endpoint: Some(format!("https://s3.{region}.backblazeb2.com")),
            };
        }
    }
    plain(host)
}

/// The region a well-known S3-compatible endpoint implies.
fn known_region(endpoint: &str) -> Option<String> {
    let host = url::Url::parse(endpoint).ok()?.host_str()?.to_owned();
    if host.ends_with(".r2.cloudflarestorage.com")
        || host == "fly.storage.tigris.dev"
        || host.ends_with(".storage.dev")
        || host.ends_with(".tigris.dev")
    {
        return Some("auto".to_owned());
    }
    if let Some(rest) = host.strip_suffix(".backblazeb2.com") {
        return rest.strip_prefix("s3.").map(str::to_owned);
    }
    if let Some(region) = host.strip_suffix(".digitaloceanspaces.com") {
        return Some(region.rsplit('.').next().unwrap_or(region).to_owned());
    }
    None
}

/// An endpoint without a scheme means HTTPS.
fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    }
}

/// `https://host` → `https://bucket.host` for virtual-hosted requests.
fn bucket_host(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{bucket}.{}", rest.trim_end_matches('/')),
        None => format!("https://{bucket}.{endpoint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_hosts() {
        assert_eq!(
            parse_host("mybucket.nyc3.digitaloceanspaces.com", None),
            HostInfo {
                bucket: "mybucket".into(),
                region: Some("nyc3".into()),
                endpoint: Some("https://nyc3.digitaloceanspaces.com".into())
            }
        );
        let b2 = parse_host("b.s3.us-west-002.backblazeb2.com", None);
        assert_eq!(b2.bucket, "b");
        assert_eq!(b2.region.as_deref(), Some("us-west-002"));
        assert_eq!(parse_host("plain", None).bucket, "plain");
        let minio = parse_host("mybkt.localhost", Some(9000));
        assert_eq!(minio.bucket, "mybkt");
        assert_eq!(minio.endpoint.as_deref(), Some("http://localhost:9000"));
    }

    #[test]
    fn regions_from_endpoints() {
        let r = |e: &str| known_region(e);
        assert_eq!(
            r("https://acc.r2.cloudflarestorage.com").as_deref(),
            Some("auto")
        );
        assert_eq!(r("https://fly.storage.tigris.dev").as_deref(), Some("auto"));
        assert_eq!(r("https://t3.storage.dev").as_deref(), Some("auto"));
        assert_eq!(
            r("https://s3.eu-central-003.backblazeb2.com").as_deref(),
            Some("eu-central-003")
        );
        assert_eq!(
            r("https://fra1.digitaloceanspaces.com").as_deref(),
            Some("fra1")
        );
        assert_eq!(r("http://127.0.0.1:9000"), None);
    }

    #[test]
    fn endpoint_forms() {
        assert_eq!(with_scheme("minio:9000"), "https://minio:9000");
        assert_eq!(with_scheme("http://minio:9000"), "http://minio:9000");
        assert_eq!(
            bucket_host("https://h.example/", "b"),
            "https://b.h.example"
        );
    }
}
