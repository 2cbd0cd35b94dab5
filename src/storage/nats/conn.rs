//! One connection to a NATS server: sign-in (user/password, token,
//! credentials file), TLS, request/reply and deliveries to a subject.
//!
//! Replies come to one wildcard subscription on a random inbox and are
//! routed by subject; JetStream deliveries (which carry the subject the
//! message was stored under) each get a subscription of their own and are
//! routed by its id. A reader task does the routing. When the connection
//! fails, every waiting call gets an error and the owner connects anew on
//! its next call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::config::{Auth, NatsConfig};
use super::creds::Creds;
use super::proto::{self, Line};

/// How a call failed, before the storage layer words it.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// Connection refused, reset or closed, or no answer in time.
    Transient(String),
    Auth(String),
    Tls(String),
    /// The credentials file or a TLS file could not be used.
    Setup(String),
    Protocol(String),
}

impl Failure {
    pub fn text(&self) -> &str {
        match self {
            Failure::Transient(s)
            | Failure::Auth(s)
            | Failure::Tls(s)
            | Failure::Setup(s)
            | Failure::Protocol(s) => s,
        }
    }
}

/// A message from the server.
#[derive(Debug)]
pub struct Msg {
    pub reply: Option<String>,
    /// `NATS/1.0 <status>` of the headers (100 heartbeats and flow control,
    /// 503 no responders, 404/408 from JetStream).
    pub status: Option<u16>,
    pub payload: Vec<u8>,
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Writer = tokio::io::WriteHalf<Box<dyn Io>>;

#[derive(Default)]
struct Routes {
    replies: HashMap<String, oneshot::Sender<Msg>>,
    /// Deliveries by subscription id.
    streams: HashMap<u64, mpsc::UnboundedSender<Msg>>,
}

pub struct Conn {
    writer: Arc<tokio::sync::Mutex<Writer>>,
    routes: Arc<Mutex<Routes>>,
    closed: Arc<AtomicBool>,
    inbox: String,
    next: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Deliveries to one subject (its own subscription), unsubscribed when
/// dropped.
pub struct Deliveries {
    pub subject: String,
    sid: u64,
    rx: mpsc::UnboundedReceiver<Msg>,
    routes: Arc<Mutex<Routes>>,
    writer: Arc<tokio::sync::Mutex<Writer>>,
}

impl Deliveries {
    /// The next delivery, `None` when the connection closed.
    pub async fn next(&mut self, timeout: Duration) -> Result<Msg, Failure> {
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(Failure::Transient("the connection closed".into())),
            Err(_) => Err(Failure::Transient("timed out waiting for data".into())),
        }
    }
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        lock(&self.routes).streams.remove(&self.sid);
        let writer = Arc::clone(&self.writer);
        let unsub = format!("UNSUB {}\r\n", self.sid);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let mut w = writer.lock().await;
                let _ = w.write_all(unsub.as_bytes()).await;
                let _ = w.flush().await;
            });
        }
    }
}

fn lock(m: &Mutex<Routes>) -> std::sync::MutexGuard<'_, Routes> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    /// Connects, signs in and subscribes to the inbox, all within `timeout`.
    pub async fn connect(
        cfg: &NatsConfig,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Conn, Failure> {
        let creds = match &cfg.auth {
            Auth::CredsFile(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Failure::Setup(format!(
                        "cannot read credentials file {}: {e}",
                        path.display()
                    ))
                })?;
                Some(Creds::parse(&text).map_err(|e| {
                    Failure::Setup(format!("credentials file {}: {e}", path.display()))
                })?)
            }
            _ => None,
        };
        let tls = if cfg.tls {
            Some(super::tls::client_config(cfg).map_err(Failure::Setup)?)
        } else {
            None
        };
        let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(&cfg.server))
            .await
            .map_err(|_| Failure::Transient(format!("connecting to {} timed out", cfg.server)))?
            .map_err(|e| Failure::Transient(format!("cannot connect to {}: {e}", cfg.server)))?;
        let _ = tcp.set_nodelay(true);
        tokio::time::timeout(timeout, Self::handshake(cfg, tcp, tls, creds.as_ref()))
            .await
            .map_err(|_| {
                Failure::Transient("the server did not finish the sign-in in time".into())
            })?
    }

    async fn handshake(
        cfg: &NatsConfig,
        mut tcp: TcpStream,
        tls: Option<rustls::ClientConfig>,
        creds: Option<&Creds>,
    ) -> Result<Conn, Failure> {
        let info = read_info(&mut tcp).await?;
        let info: serde_json::Value = serde_json::from_str(&info)
            .map_err(|e| Failure::Protocol(format!("bad INFO from the server: {e}")))?;
        let server_wants_tls = info["tls_required"].as_bool().unwrap_or(false);
        let stream: Box<dyn Io> = match (tls, server_wants_tls) {
            (Some(config), _) => Box::new(upgrade(cfg, tcp, config).await?),
            (None, true) => {
                let config = super::tls::client_config(cfg).map_err(Failure::Setup)?;
                Box::new(upgrade(cfg, tcp, config).await?)
            }
            (None, false) => Box::new(tcp),
        };
        let (read, mut write) = tokio::io::split(stream);
        let mut read = BufReader::with_capacity(64 * 1024, read);

        let mut connect = serde_json::json!({
            "verbose": false, "pedantic": false, "lang": "rust", "name": "litestream-vfs",
            "version": env!("CARGO_PKG_VERSION"), "protocol": 1, "headers": true,
            "no_responders": true, "tls_required": cfg.tls || server_wants_tls,
        });
        match (&cfg.auth, creds) {
            (_, Some(c)) => {
                let nonce = info["nonce"].as_str().unwrap_or_default();
                connect["jwt"] = c.jwt.clone().into();
                connect["sig"] = c.sign(nonce).into();
            }
            (Auth::UserPassword(u, p), None) => {
                connect["user"] = u.clone().into();
                connect["pass"] = p.clone().into();
            }
            (Auth::Token(t), None) => connect["auth_token"] = t.clone().into(),
            _ => {}
        }
        let inbox = format!("_INBOX.{}", random_token());
        // Replies come to `<inbox>.r.<n>` (sid 1); each delivery subject
        // `<inbox>.d<n>` gets its own subscription, outside that wildcard.
        let hello = format!("CONNECT {connect}\r\nPING\r\nSUB {inbox}.r.* 1\r\n");
        write
            .write_all(hello.as_bytes())
            .await
            .map_err(io_failure)?;
        write.flush().await.map_err(io_failure)?;
        // The answer to PING (PONG) means the sign-in was accepted.
        let mut line = String::new();
        loop {
            line.clear();
            if read.read_line(&mut line).await.map_err(io_failure)? == 0 {
                return Err(Failure::Transient(
                    "the server closed the connection during sign-in".into(),
                ));
            }
            match proto::parse_line(&line).map_err(Failure::Protocol)? {
                Line::Pong => break,
                Line::Err(e) => return Err(err_failure(&e)),
                _ => {}
            }
        }

        let writer = Arc::new(tokio::sync::Mutex::new(write));
        let routes = Arc::new(Mutex::new(Routes::default()));
        let closed = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_loop(
            read,
            Arc::clone(&writer),
            Arc::clone(&routes),
            Arc::clone(&closed),
        ));
        Ok(Conn {
            writer,
            routes,
            closed,
            inbox,
            next: AtomicU64::new(1),
            reader,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    pub async fn publish(
        &self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> Result<(), Failure> {
        let head = match reply {
            Some(r) => format!("PUB {subject} {r} {}\r\n", payload.len()),
            None => format!("PUB {subject} {}\r\n", payload.len()),
        };
        let mut w = self.writer.lock().await;
        w.write_all(head.as_bytes()).await.map_err(io_failure)?;
        w.write_all(payload).await.map_err(io_failure)?;
        w.write_all(b"\r\n").await.map_err(io_failure)?;
        w.flush().await.map_err(io_failure)
    }

    /// Sends a request and waits `timeout` for its one reply.
    pub async fn request(
        &self,
        subject: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Msg, Failure> {
        let reply = format!(
            "{}.r.{}",
            self.inbox,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        lock(&self.routes).replies.insert(reply.clone(), tx);
        if let Err(e) = self.publish(subject, Some(&reply), payload).await {
            lock(&self.routes).replies.remove(&reply);
            return Err(e);
        }
        let got = tokio::time::timeout(timeout, rx).await;
        lock(&self.routes).replies.remove(&reply);
        match got {
            Ok(Ok(m)) if m.status == Some(503) => Err(Failure::Protocol(format!(
                "no responders for {subject} (is JetStream enabled on the server?)"
            ))),
            Ok(Ok(m)) => Ok(m),
            Ok(Err(_)) => Err(Failure::Transient("the connection closed".into())),
            Err(_) => Err(Failure::Transient(format!(
                "no answer to {subject} in time"
            ))),
        }
    }

    /// A fresh subject, subscribed, whose deliveries are routed to the
    /// result.
    pub async fn deliveries(&self) -> Result<Deliveries, Failure> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let subject = format!("{}.d{n}", self.inbox);
        // sid 1 is the inbox; each delivery subject has its own.
        let sid = n + 1;
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.routes).streams.insert(sid, tx);
        let d = Deliveries {
            subject,
            sid,
            rx,
            routes: Arc::clone(&self.routes),
            writer: Arc::clone(&self.writer),
        };
        let sub = format!("SUB {} {sid}\r\n", d.subject);
        let mut w = self.writer.lock().await;
        w.write_all(sub.as_bytes()).await.map_err(io_failure)?;
        w.flush().await.map_err(io_failure)?;
        Ok(d)
    }
}

async fn upgrade(
    cfg: &NatsConfig,
    tcp: TcpStream,
    config: rustls::ClientConfig,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let host = cfg
        .server
        .rsplit_once(':')
        .map_or(cfg.server.as_str(), |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| Failure::Setup(format!("bad TLS server name {host:?}: {e}")))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| {
            Failure::Tls(format!(
                "TLS handshake failed (certificate not trusted?): {e}"
            ))
        })
}

/// The server's first line, read without buffering past it (TLS may
/// start right after).
async fn read_info(tcp: &mut TcpStream) -> Result<String, Failure> {
    let mut line = Vec::with_capacity(1024);
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if tcp.read(&mut byte).await.map_err(io_failure)? == 0 {
            return Err(Failure::Transient(
                "the server closed the connection".into(),
            ));
        }
        line.push(byte[0]);
        if line.len() > 64 * 1024 {
            return Err(Failure::Protocol(
                "the server's INFO line is too long".into(),
            ));
        }
    }
    let text = String::from_utf8_lossy(&line).into_owned();
    match proto::parse_line(&text).map_err(Failure::Protocol)? {
        Line::Info(json) => Ok(json),
        Line::Err(e) => Err(err_failure(&e)),
        _ => Err(Failure::Protocol(format!(
            "not a NATS server (it said {:?})",
            text.chars().take(40).collect::<String>()
        ))),
    }
}

async fn read_loop(
    mut read: BufReader<tokio::io::ReadHalf<Box<dyn Io>>>,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    routes: Arc<Mutex<Routes>>,
    closed: Arc<AtomicBool>,
) {
    let mut line = String::new();
    loop {
        line.clear();
        match read.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let parsed = match proto::parse_line(&line) {
            Ok(p) => p,
            Err(e) => {
                crate::log::warn!("nats: {e}; closing the connection");
                break;
            }
        };
        match parsed {
            Line::Ping => {
                let mut w = writer.lock().await;
                if w.write_all(b"PONG\r\n").await.is_err() || w.flush().await.is_err() {
                    break;
                }
            }
            Line::Err(e) => crate::log::warn!("nats: the server says: {e}"),
            Line::Msg {
                subject,
                sid,
                reply,
                header_len,
                total_len,
            } => {
                let mut body = vec![0u8; total_len + 2];
                if read.read_exact(&mut body).await.is_err() {
                    break;
                }
                body.truncate(total_len);
                let status = (header_len > 0)
                    .then(|| proto::status(&body[..header_len]))
                    .flatten();
                let payload = body.split_off(header_len);
                let msg = Msg {
                    reply,
                    status,
                    payload,
                };
                let mut r = lock(&routes);
                if let Some(tx) = r.replies.remove(&subject) {
                    let _ = tx.send(msg);
                } else if let Some(tx) = r.streams.get(&sid)
                    && tx.send(msg).is_err()
                {
                    r.streams.remove(&sid);
                }
            }
            Line::Info(_) | Line::Pong | Line::Ok | Line::Other => {}
        }
    }
    closed.store(true, Ordering::Relaxed);
    // Waiting calls see their channel close.
    let mut r = lock(&routes);
    r.replies.clear();
    r.streams.clear();
}

fn io_failure(e: std::io::Error) -> Failure {
    Failure::Transient(format!("connection failed: {e}"))
}

/// A `-ERR` at sign-in.
fn err_failure(e: &str) -> Failure {
    let l = e.to_ascii_lowercase();
    if l.contains("authorization") || l.contains("authentication") || l.contains("user") {
        Failure::Auth(format!("the server refused the sign-in: {e}"))
    } else {
        Failure::Protocol(format!("the server says: {e}"))
    }
}

/// 22 random characters for the inbox, from the OS.
fn random_token() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
