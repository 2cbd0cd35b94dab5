//! `abs://container/path` and `abs://account@container/path`: Azure Blob
//! Storage.
//!
//! Account: the URL's user part, else `AZURE_STORAGE_ACCOUNT`, else the
//! connection string. Credentials, first found: account key
//! (`LITESTREAM_AZURE_ACCOUNT_KEY`, `AZURE_STORAGE_KEY`,
//! `AZURE_STORAGE_ACCOUNT_KEY`); SAS token (`AZURE_STORAGE_SAS_TOKEN`);
//! `AZURE_STORAGE_CONNECTION_STRING`; otherwise object_store's chain
//! (service principal, workload identity, managed identity).
//! `?endpoint=` points it anywhere, Azurite included
//! (`http://127.0.0.1:10000/devstoreaccount1`).

use std::sync::Arc;

use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};

use super::error::{StorageError, StorageErrorKind};
use super::object::{Context, Layout, ObjectStorage};
use super::params::{Params, env, url_prefix};
use super::secrets::Secrets;
use super::url::ReplicaUrl;
use super::{Storage, retry, tls};

const BACKEND: &str = "abs";
const PARAMS: &[&str] = &["endpoint", "skip-verify"];

pub fn open(url: &ReplicaUrl, timeouts: retry::Timeouts) -> Result<Arc<dyn Storage>, StorageError> {
    tls::ensure_provider();
    let mut params = Params::new(BACKEND, url);
    let param_endpoint = params.take("endpoint");
    let skip_verify = params.take_bool("skip-verify")?.unwrap_or(false);
    params.finish(PARAMS)?;

    let container = url.url().host_str().unwrap_or_default().to_owned();
    let conn = env("AZURE_STORAGE_CONNECTION_STRING")
        .map(|s| ConnectionString::parse(&s))
        .unwrap_or_default();
    let user = url.url().username();
    let account = (!user.is_empty())
        .then(|| user.to_owned())
        .or_else(|| env("AZURE_STORAGE_ACCOUNT"))
        .or_else(|| conn.account.clone())
        .ok_or_else(|| {
            config(format!(
                "no Azure storage account for {url}: write abs://ACCOUNT@{container}/… or set AZURE_STORAGE_ACCOUNT"
            ))
        })?;

    let mut secrets = Secrets::new();
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_account(&account)
        .with_container_name(&container);
    let key = env("LITESTREAM_AZURE_ACCOUNT_KEY")
        .or_else(|| env("AZURE_STORAGE_KEY"))
        .or_else(|| builder.get_config_value(&AzureConfigKey::AccessKey))
        .or_else(|| conn.key.clone());
    let sas = builder
        .get_config_value(&AzureConfigKey::SasKey)
        .or_else(|| conn.sas.clone());
    if let Some(k) = key {
        secrets.add(&k);
        builder = builder.with_access_key(k);
    } else if let Some(s) = sas {
        secrets.add(&s);
        for (_, v) in url::form_urlencoded::parse(s.trim_start_matches('?').as_bytes()) {
            secrets.add(v);
        }
        builder = builder.with_config(AzureConfigKey::SasKey, s);
    }

    let endpoint = param_endpoint
        .or_else(|| conn.blob_endpoint.clone())
        .map(|e| account_endpoint(&e, &account));
    let allow_http = endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    if let Some(e) = endpoint {
        builder = builder.with_endpoint(e);
    }
    let cx = Context {
        backend: BACKEND,
        describe: url.redacted().to_owned(),
        bucket: container,
        credential_hint: "LITESTREAM_AZURE_ACCOUNT_KEY/AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING",
        secrets,
    };
    ObjectStorage::build(
        "Azure Blob Storage",
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

fn config(msg: String) -> StorageError {
    StorageError::new(BACKEND, StorageErrorKind::Config, msg)
}

/// An endpoint given as bare `http://host:port` for an emulator gets the
/// account appended, as Azurite serves accounts path-style.
fn account_endpoint(endpoint: &str, account: &str) -> String {
    let e = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    };
    let Ok(u) = url::Url::parse(&e) else {
        return e;
    };
    let path_empty = u.path().trim_matches('/').is_empty();
    let host = u.host_str().unwrap_or_default();
    let emulator_like = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok();
    if path_empty && emulator_like {
        format!("{}/{account}", e.trim_end_matches('/'))
    } else {
        e.trim_end_matches('/').to_owned()
    }
}

/// The parts of an Azure connection string this backend uses.
#[derive(Default)]
struct ConnectionString {
    account: Option<String>,
    key: Option<String>,
    sas: Option<String>,
    blob_endpoint: Option<String>,
}

impl ConnectionString {
    fn parse(s: &str) -> ConnectionString {
        let mut c = ConnectionString::default();
        let mut protocol = "https".to_owned();
        let mut suffix = None;
        for part in s.split(';') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            let v = v.trim().to_owned();
            match k.trim() {
                "AccountName" => c.account = Some(v),
                "AccountKey" => c.key = Some(v),
                "SharedAccessSignature" => c.sas = Some(v),
                "BlobEndpoint" => c.blob_endpoint = Some(v),
                "DefaultEndpointsProtocol" => protocol = v,
                "EndpointSuffix" => suffix = Some(v),
                _ => {}
            }
        }
        if let (None, Some(a), Some(sfx)) = (&c.blob_endpoint, &c.account, suffix) {
            c.blob_endpoint = Some(format!("{protocol}://{a}.blob.{sfx}"));
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_endpoints_get_the_account() {
        assert_eq!(
            account_endpoint("http://127.0.0.1:10000", "dev"),
            "http://127.0.0.1:10000/dev"
        );
        assert_eq!(
            account_endpoint("http://127.0.0.1:10000/dev/", "dev"),
            "http://127.0.0.1:10000/dev"
        );
        assert_eq!(
            account_endpoint("https://acc.blob.core.windows.net", "acc"),
            "https://acc.blob.core.windows.net"
        );
    }

    #[test]
    fn connection_strings() {
        let c = ConnectionString::parse(
            "DefaultEndpointsProtocol=https;AccountName=acc;AccountKey=a2V5Cg==;EndpointSuffix=core.windows.net",
        );
        assert_eq!(c.account.as_deref(), Some("acc"));
        assert_eq!(c.key.as_deref(), Some("a2V5Cg=="));
        assert_eq!(
            c.blob_endpoint.as_deref(),
            Some("https://acc.blob.core.windows.net")
        );
        let c = ConnectionString::parse(
            "BlobEndpoint=http://127.0.0.1:10000/dev;SharedAccessSignature=sv=1&sig=x",
        );
        assert_eq!(c.sas.as_deref(), Some("sv=1&sig=x"));
    }
}
