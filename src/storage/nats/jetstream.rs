//! The read side of a JetStream object store, as the NATS clients lay it
//! out: bucket `B` is the stream `OBJ_B`; an object's metadata (JSON:
//! name, size, chunk count, SHA-256 digest, nuid) is the last message on
//! `$O.B.M.<base64url(name)>`, its bytes the messages on `$O.B.C.<nuid>`.
//! Both are read through short-lived push consumers delivering to our
//! inbox, flow control answered.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::conn::{Conn, Failure};
use super::proto;

/// A JetStream call failed.
#[derive(Debug)]
pub enum JsError {
    Conn(Failure),
    /// JetStream answered with an error: its HTTP-like code and text.
    Api {
        code: u64,
        err_code: u64,
        text: String,
    },
    NotFound(String),
    Corrupt(String),
}

impl From<Failure> for JsError {
    fn from(f: Failure) -> JsError {
        JsError::Conn(f)
    }
}

/// A listed object.
pub struct Listed {
    pub name: String,
    pub size: u64,
    /// The nuid of its chunks: new at every put of the object.
    pub nuid: String,
}

struct Meta {
    nuid: String,
    size: u64,
    chunks: u64,
    digest: Option<String>,
}

async fn api(conn: &Conn, subject: &str, body: &Value, t: Duration) -> Result<Value, JsError> {
    let msg = conn
        .request(subject, body.to_string().as_bytes(), t)
        .await?;
    let v: Value = serde_json::from_slice(&msg.payload)
        .map_err(|e| JsError::Conn(Failure::Protocol(format!("bad JetStream answer: {e}"))))?;
    if let Some(err) = v.get("error") {
        return Err(JsError::Api {
            code: err["code"].as_u64().unwrap_or(0),
            err_code: err["err_code"].as_u64().unwrap_or(0),
            text: err["description"].as_str().unwrap_or("error").to_owned(),
        });
    }
    Ok(v)
}

/// Fails unless the bucket's stream exists.
pub async fn check_bucket(conn: &Conn, bucket: &str, t: Duration) -> Result<(), JsError> {
    api(
        conn,
        &format!("$JS.API.STREAM.INFO.OBJ_{bucket}"),
        &json!({}),
        t,
    )
    .await
    .map(|_| ())
}

/// Every message on `filter` (the last per subject if `last_only`), as
/// payloads, through an ephemeral push consumer. `t` bounds each wait.
async fn consume(
    conn: &Conn,
    bucket: &str,
    filter: &str,
    last_only: bool,
    t: Duration,
) -> Result<Vec<Vec<u8>>, JsError> {
    let mut deliveries = conn.deliveries().await?;
    let stream = format!("OBJ_{bucket}");
    let config = json!({
        "stream_name": stream,
        "config": {
            "deliver_subject": deliveries.subject,
            "deliver_policy": if last_only { "last_per_subject" } else { "all" },
            "ack_policy": "none",
            "replay_policy": "instant",
            "filter_subject": filter,
            "flow_control": true,
            "idle_heartbeat": 5_000_000_000u64,
            "inactive_threshold": 30_000_000_000u64,
            "mem_storage": true,
            "num_replicas": 1,
        }
    });
    let created = api(
        conn,
        &format!("$JS.API.CONSUMER.CREATE.{stream}"),
        &config,
        t,
    )
    .await?;
    let consumer = created["name"].as_str().unwrap_or_default().to_owned();
    let mut out = Vec::new();
    let result = async {
        if created["num_pending"].as_u64() == Some(0) {
            return Ok(());
        }
        loop {
            let msg = deliveries.next(t).await?;
            if msg.status == Some(100) {
                // A heartbeat, or a flow-control request to answer.
                if let Some(reply) = msg.reply.as_deref() {
                    conn.publish(reply, None, b"").await?;
                }
                continue;
            }
            if msg.status.is_some() {
                continue;
            }
            let pending = msg.reply.as_deref().and_then(proto::pending);
            out.push(msg.payload);
            if pending.unwrap_or(0) == 0 {
                return Ok::<(), JsError>(());
            }
        }
    }
    .await;
    if !consumer.is_empty() {
        // Fire and forget: the server also drops it when idle.
        let _ = conn
            .publish(
                &format!("$JS.API.CONSUMER.DELETE.{stream}.{consumer}"),
                None,
                b"",
            )
            .await;
    }
    result.map(|()| out)
}

/// Every live object of the bucket: one listing of the metadata subjects.
pub async fn list(conn: &Conn, bucket: &str, t: Duration) -> Result<Vec<Listed>, JsError> {
    let metas = consume(conn, bucket, &format!("$O.{bucket}.M.>"), true, t).await?;
    let mut out = Vec::with_capacity(metas.len());
    for raw in metas {
        let Ok(v) = serde_json::from_slice::<Value>(&raw) else {
            continue;
        };
        if v["deleted"].as_bool().unwrap_or(false) {
            continue;
        }
        if let (Some(name), Some(size)) = (v["name"].as_str(), v["size"].as_u64()) {
            out.push(Listed {
                name: name.to_owned(),
                size,
                nuid: v["nuid"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    Ok(out)
}

async fn meta(conn: &Conn, bucket: &str, name: &str, t: Duration) -> Result<Meta, JsError> {
    let subject = format!("$O.{bucket}.M.{}", URL_SAFE.encode(name));
    let got = api(
        conn,
        &format!("$JS.API.STREAM.MSG.GET.OBJ_{bucket}"),
        &json!({ "last_by_subj": subject }),
        t,
    )
    .await;
    let v = match got {
        Err(JsError::Api {
            err_code: 10037, ..
        })
        | Err(JsError::Api { code: 404, .. }) => {
            return Err(JsError::NotFound(format!("no object {name}")));
        }
        other => other?,
    };
    let data = v["message"]["data"].as_str().unwrap_or_default();
    let raw = STANDARD
        .decode(data)
        .map_err(|e| JsError::Corrupt(format!("metadata of {name} is not base64: {e}")))?;
    let m: Value = serde_json::from_slice(&raw)
        .map_err(|e| JsError::Corrupt(format!("metadata of {name} is not JSON: {e}")))?;
    if m["deleted"].as_bool().unwrap_or(false) {
        return Err(JsError::NotFound(format!("object {name} was deleted")));
    }
    Ok(Meta {
        nuid: m["nuid"].as_str().unwrap_or_default().to_owned(),
        size: m["size"].as_u64().unwrap_or(0),
        chunks: m["chunks"].as_u64().unwrap_or(0),
        digest: m["digest"].as_str().map(str::to_owned),
    })
}

/// The whole object `name`, checked against its size and digest. `t`
/// bounds each wait (the metadata, each chunk).
pub async fn get(conn: &Conn, bucket: &str, name: &str, t: Duration) -> Result<Vec<u8>, JsError> {
    let m = meta(conn, bucket, name, t).await?;
    if m.size == 0 || m.chunks == 0 {
        return Ok(Vec::new());
    }
    if m.nuid.is_empty() {
        return Err(JsError::Corrupt(format!("metadata of {name} has no nuid")));
    }
    let chunks = consume(conn, bucket, &format!("$O.{bucket}.C.{}", m.nuid), false, t).await?;
    let mut bytes = Vec::with_capacity(usize::try_from(m.size).unwrap_or(0));
    for c in &chunks {
        bytes.extend_from_slice(c);
    }
    if bytes.len() as u64 != m.size || chunks.len() as u64 != m.chunks {
        return Err(JsError::Conn(Failure::Transient(format!(
            "{name}: got {} bytes in {} chunks, expected {} in {}",
            bytes.len(),
            chunks.len(),
            m.size,
            m.chunks
        ))));
    }
    if let Some(d) = m.digest.as_deref()
        && !digest_matches(d, &bytes)
    {
        return Err(JsError::Corrupt(format!(
            "{name}: SHA-256 digest does not match"
        )));
    }
    Ok(bytes)
}

/// `SHA-256=<base64url>` (padded or not) against the bytes; other
/// algorithms are not checked.
fn digest_matches(digest: &str, bytes: &[u8]) -> bool {
    let Some(want) = digest.strip_prefix("SHA-256=") else {
        return true;
    };
    let got = ring::digest::digest(&ring::digest::SHA256, bytes);
    let want = want.trim_end_matches('=');
    want == URL_SAFE_NO_PAD.encode(got.as_ref())
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

    #[test]
    fn meta_subject_encoding_is_padded_base64url() {
        // As the Go and Rust clients name the subject of "ltx/0/a".
        assert_eq!(URL_SAFE.encode("ltx/0/a"), "bHR4LzAvYQ==");
    }
}
