//! A JetStream object store bucket and its objects, laid out as the NATS
//! clients (and so Litestream) write them: the stream `OBJ_<bucket>`, an
//! object's chunks on `$O.<bucket>.C.<nuid>` and its metadata on
//! `$O.<bucket>.M.<base64url(name)>`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use serde_json::{Value, json};

/// Small chunks, so that the larger test files come in several.
const CHUNK: usize = 32 * 1024;
const INBOX: &str = "_INBOX.conformance";

pub struct Nats {
    out: TcpStream,
    input: BufReader<TcpStream>,
    bucket: String,
}

impl Nats {
    /// Signs in and creates the bucket.
    pub fn create_bucket(host: &str, user: &str, password: &str, bucket: &str) -> Nats {
        let out = TcpStream::connect(host).unwrap();
        out.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut input = BufReader::new(out.try_clone().unwrap());
        let mut info = String::new();
        input.read_line(&mut info).unwrap();
        assert!(info.starts_with("INFO"), "not a NATS server: {info:.60}");
        let mut n = Nats {
            out,
            input,
            bucket: bucket.to_owned(),
        };
        let connect = json!({
            "user": user, "pass": password, "verbose": false, "pedantic": false,
            "headers": true, "lang": "rust", "version": "0", "protocol": 1,
        });
        n.send(format!("CONNECT {connect}\r\nSUB {INBOX} 1\r\n").as_bytes());
        let stream = format!("OBJ_{bucket}");
        let config = json!({
            "name": stream,
            "subjects": [format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
            "retention": "limits", "max_consumers": -1, "max_msgs": -1, "max_bytes": -1,
            "max_age": 0, "max_msgs_per_subject": -1, "max_msg_size": -1, "discard": "new",
            "storage": "file", "num_replicas": 1, "duplicate_window": 120_000_000_000u64,
            "allow_rollup_hdrs": true, "allow_direct": true,
        });
        n.request(
            &format!("$JS.API.STREAM.CREATE.{stream}"),
            config.to_string().as_bytes(),
        );
        n
    }

    /// Stores `bytes` as the object `name`, in chunks, each acknowledged.
    pub fn put(&mut self, name: &str, bytes: &[u8], nuid: &str) {
        self.put_claiming(name, bytes, nuid, bytes.len());
    }

    /// [`Nats::put`], with metadata that claims `size` bytes (a hostile or
    /// damaged bucket when it is not `bytes.len()`).
    pub fn put_claiming(&mut self, name: &str, bytes: &[u8], nuid: &str, size: usize) {
        let bucket = self.bucket.clone();
        let mut chunks = 0;
        for c in bytes.chunks(CHUNK) {
            self.request(&format!("$O.{bucket}.C.{nuid}"), c);
            chunks += 1;
        }
        let meta = json!({
            "name": name, "bucket": bucket, "nuid": nuid,
            "size": size, "chunks": chunks,
        });
        self.request(
            &format!("$O.{bucket}.M.{}", URL_SAFE.encode(name)),
            meta.to_string().as_bytes(),
        );
    }

    /// Drops the bucket and everything in it.
    pub fn delete_bucket(mut self) {
        let subject = format!("$JS.API.STREAM.DELETE.OBJ_{}", self.bucket);
        self.request(&subject, b"");
    }

    fn send(&mut self, bytes: &[u8]) {
        self.out.write_all(bytes).unwrap();
    }

    /// Publishes with our inbox as the reply subject and returns the
    /// answer, failing on any JetStream error.
    fn request(&mut self, subject: &str, payload: &[u8]) -> Value {
        let head = format!("PUB {subject} {INBOX} {}\r\n", payload.len());
        self.send(head.as_bytes());
        self.send(payload);
        self.send(b"\r\n");
        loop {
            let mut line = String::new();
            assert!(self.input.read_line(&mut line).unwrap() > 0, "NATS closed");
            if line.starts_with("PING") {
                self.send(b"PONG\r\n");
            } else if line.starts_with("-ERR") {
                panic!("NATS refused {subject}: {}", line.trim());
            } else if line.starts_with("MSG ") {
                let size: usize = line.split_whitespace().last().unwrap().parse().unwrap();
                let mut body = vec![0; size + 2];
                self.input.read_exact(&mut body).unwrap();
                let v: Value = serde_json::from_slice(&body[..size]).unwrap();
                assert!(v.get("error").is_none(), "{subject}: {v}");
                return v;
            }
        }
    }
}
