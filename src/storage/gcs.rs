//! `gs://bucket/path` (also `gcs://`): Google Cloud Storage.
//!
//! Credentials: the service-account or authorized-user JSON named by
//! `GOOGLE_APPLICATION_CREDENTIALS`, else the application-default
//! credentials file of `gcloud`, else the instance metadata server.
//! Emulators: `STORAGE_EMULATOR_HOST` (as Google's own clients: plain HTTP
//! unless a scheme is given, no authentication) or `?endpoint=` (which keeps
//! authentication when `GOOGLE_APPLICATION_CREDENTIALS` is set).
//! object_store itself ignores `STORAGE_EMULATOR_HOST`; it is mapped here.

use std::sync::Arc;

use object_store::gcp::GoogleCloudStorageBuilder;

use super::error::StorageError;
use super::object::{Context, Layout, ObjectStorage};
use super::params::{Params, env, url_prefix};
use super::secrets::Secrets;
use super::url::ReplicaUrl;
use super::{Storage, retry, tls};

const BACKEND: &str = "gs";
const PARAMS: &[&str] = &["endpoint", "skip-verify"];

pub fn open(url: &ReplicaUrl, timeouts: retry::Timeouts) -> Result<Arc<dyn Storage>, StorageError> {
    tls::ensure_provider();
    let mut params = Params::new(BACKEND, url);
    let param_endpoint = params.take("endpoint");
    let skip_verify = params.take_bool("skip-verify")?.unwrap_or(false);
    params.finish(PARAMS)?;

    let bucket = url.url().host_str().unwrap_or_default().to_owned();
    let has_credentials = env("GOOGLE_APPLICATION_CREDENTIALS").is_some()
        || env("GOOGLE_SERVICE_ACCOUNT").is_some()
        || env("GOOGLE_SERVICE_ACCOUNT_KEY").is_some();
    let (endpoint, anonymous) = match (param_endpoint, env("STORAGE_EMULATOR_HOST")) {
        (Some(e), _) => (Some(with_scheme(&e, "https")), !has_credentials),
        (None, Some(h)) => (Some(with_scheme(&h, "http")), true),
        (None, None) => (None, false),
    };

    let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(&bucket);
    let allow_http = endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    if let Some(e) = &endpoint {
        builder = builder.with_base_url(e.trim_end_matches('/'));
    }
    if anonymous {
        builder = builder.with_skip_signature(true);
    }
    let secrets = Secrets::new();
    let cx = Context {
        backend: BACKEND,
        describe: url.redacted().to_owned(),
        bucket,
        credential_hint: "GOOGLE_APPLICATION_CREDENTIALS or the application-default credentials",
        secrets,
    };
    ObjectStorage::build(
        "Google Cloud Storage",
        url_prefix(url),
        Layout::Decimal,
        cx,
        || {
            builder
                .with_client_options(retry::client_options(allow_http, skip_verify, timeouts))
                .with_retry(retry::object_store_retry(timeouts))
                .build()
        },
    )
}

/// `host:port` → `{default}://host:port`; a URL stays as it is.
fn with_scheme(endpoint: &str, default: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("{default}://{endpoint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_host_defaults_to_http() {
        assert_eq!(
            with_scheme("127.0.0.1:4443", "http"),
            "http://127.0.0.1:4443"
        );
        assert_eq!(
            with_scheme("https://gcs.local", "http"),
            "https://gcs.local"
        );
    }
}
