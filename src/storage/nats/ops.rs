//! The two calls a reader makes on a bucket: list the objects, and fetch
//! one object's bytes. The object store's own handles do the metadata;
//! the chunks are read through an ordered consumer on the bucket's stream
//! (what `ObjectStore::get` does inside): async-nats 0.46's `Object` reader
//! panicked (`unwrap`) when that consumer could not be created, a panic
//! must not reach SQLite, and reading the chunks ourselves lets us bound
//! every wait by `t` and check size and digest. (0.52 is in use now.)

use std::time::Duration;

use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::object_store::{InfoErrorKind, ObjectInfo};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;

use super::client::{Bucket, bounded};
use super::failure::Failure;
use crate::storage::error::{StorageErrorKind, chain};

/// Every live object of the bucket, from one listing of the metadata. If a
/// name was written more than once without a roll-up, its last write wins.
pub async fn list(bucket: &Bucket, t: Duration) -> Result<Vec<ObjectInfo>, Failure> {
    let failed = |e: &(dyn std::error::Error + 'static)| {
        Failure::new(
            StorageErrorKind::Transient,
            format!("listing: {}", chain(e)),
        )
    };
    let mut listing = bounded(t, bucket.store.list())
        .await?
        .map_err(|e| failed(&e))?;
    let mut out: Vec<ObjectInfo> = Vec::new();
    while let Some(next) = bounded(t, listing.next()).await? {
        let info = next.map_err(|e| failed(&e))?;
        out.retain(|o| o.name != info.name);
        out.push(info);
    }
    Ok(out)
}

/// The whole object `name`, checked against its size, chunk count and
/// SHA-256 digest.
pub async fn get(bucket: &Bucket, name: &str, t: Duration) -> Result<Vec<u8>, Failure> {
    let info = bounded(t, bucket.store.info(name)).await?.map_err(|e| {
        let kind = match e.kind() {
            InfoErrorKind::NotFound => StorageErrorKind::NotFound,
            InfoErrorKind::InvalidName => StorageErrorKind::Config,
            InfoErrorKind::TimedOut | InfoErrorKind::Other => StorageErrorKind::Transient,
        };
        Failure::new(kind, chain(&e))
    })?;
    if info.deleted {
        return Err(Failure::new(
            StorageErrorKind::NotFound,
            format!("object {name} was deleted"),
        ));
    }
    if info.size == 0 || info.chunks == 0 {
        return Ok(Vec::new());
    }
    let bytes = chunks(bucket, &info, t).await?;
    if bytes.len() != info.size {
        return Err(Failure::new(
            StorageErrorKind::Transient,
            format!("{name}: got {} bytes, expected {}", bytes.len(), info.size),
        ));
    }
    if let Some(d) = info.digest.as_deref()
        && !digest_matches(d, &bytes)
    {
        return Err(Failure::new(
            StorageErrorKind::Other,
            format!("{name}: SHA-256 digest does not match"),
        ));
    }
    Ok(bytes)
}

/// The object's chunks in order, through one ordered push consumer (flow
/// control and heartbeats are the client's).
async fn chunks(bucket: &Bucket, info: &ObjectInfo, t: Duration) -> Result<Vec<u8>, Failure> {
    let transient = |e: &(dyn std::error::Error + 'static)| {
        Failure::new(
            StorageErrorKind::Transient,
            format!("reading {}: {}", info.name, chain(e)),
        )
    };
    let config = OrderedConfig {
        deliver_subject: bucket.inbox(),
        filter_subject: format!("$O.{}.C.{}", info.bucket, info.nuid),
        ..Default::default()
    };
    let consumer = bounded(t, bucket.stream.create_consumer(config))
        .await?
        .map_err(|e| transient(&e))?;
    let mut messages = bounded(t, consumer.messages())
        .await?
        .map_err(|e| transient(&e))?;
    // The listed size is the object's metadata, which whoever may write the
    // bucket sets: reserved up to a bound, so that a size the chunks do not
    // hold (a petabyte) costs nothing, and held to as the chunks arrive.
    let mut bytes = Vec::with_capacity(info.size.min(RESERVE_MAX));
    for _ in 0..info.chunks {
        let msg = bounded(t, messages.next())
            .await?
            .ok_or_else(|| {
                Failure::new(
                    StorageErrorKind::Transient,
                    format!("reading {}: the chunks ended early", info.name),
                )
            })?
            .map_err(|e| transient(&e))?;
        if bytes.len().saturating_add(msg.payload.len()) > info.size {
            return Err(Failure::new(
                StorageErrorKind::Transient,
                format!(
                    "reading {}: its chunks hold more than its {} bytes",
                    info.name, info.size
                ),
            ));
        }
        bytes.extend_from_slice(&msg.payload);
    }
    Ok(bytes)
}

/// Bytes of an object's body reserved before its chunks arrive: its listed
/// size up to this (a snapshot of 16 MiB; larger bodies grow as they come).
const RESERVE_MAX: usize = 16 << 20;

/// `SHA-256=<base64url>` (padded or not) against the bytes; other
/// algorithms are not checked.
fn digest_matches(digest: &str, bytes: &[u8]) -> bool {
    let Some(want) = digest.strip_prefix("SHA-256=") else {
        return true;
    };
    let got = ring::digest::digest(&ring::digest::SHA256, bytes);
    want.trim_end_matches('=') == URL_SAFE_NO_PAD.encode(got.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        // SHA-256 of "abc"
        let d = "SHA-256=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0=";
        assert!(digest_matches(d, b"abc"));
        assert!(digest_matches(d.trim_end_matches('='), b"abc"));
        assert!(!digest_matches(d, b"abd"));
        assert!(digest_matches("MD5=xyz", b"anything"));
    }
}
