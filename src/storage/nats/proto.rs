//! The NATS client protocol, the little of it a reader needs: the lines a
//! server sends (`INFO`, `MSG`, `HMSG`, `PING`, `-ERR`) and message
//! headers (`NATS/1.0 <status>` plus `Key: value` lines).

/// One line from the server, with the sizes of the payload that follows.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Info(String),
    /// `MSG` or `HMSG`: subject, subscription id, reply subject, header
    /// bytes, total bytes. A JetStream delivery carries the subject the
    /// message was stored under, so deliveries are told apart by `sid`.
    Msg {
        subject: String,
        sid: u64,
        reply: Option<String>,
        header_len: usize,
        total_len: usize,
    },
    Ping,
    Pong,
    Ok,
    Err(String),
    Other,
}

pub fn parse_line(line: &str) -> Result<Line, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (op, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
    let bad = || format!("bad line from the server: {line:?}");
    Ok(match op.to_ascii_uppercase().as_str() {
        "INFO" => Line::Info(rest.trim().to_owned()),
        "PING" => Line::Ping,
        "PONG" => Line::Pong,
        "+OK" => Line::Ok,
        "-ERR" => Line::Err(rest.trim().trim_matches('\'').to_owned()),
        "MSG" => {
            // MSG <subject> <sid> [reply-to] <#bytes>
            let f: Vec<&str> = rest.split_whitespace().collect();
            let (reply, n) = match f.as_slice() {
                [_, _, n] => (None, n),
                [_, _, r, n] => (Some((*r).to_owned()), n),
                _ => return Err(bad()),
            };
            Line::Msg {
                subject: f[0].to_owned(),
                sid: f[1].parse().map_err(|_| bad())?,
                reply,
                header_len: 0,
                total_len: n.parse().map_err(|_| bad())?,
            }
        }
        "HMSG" => {
            // HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
            let f: Vec<&str> = rest.split_whitespace().collect();
            let (reply, h, n) = match f.as_slice() {
                [_, _, h, n] => (None, h, n),
                [_, _, r, h, n] => (Some((*r).to_owned()), h, n),
                _ => return Err(bad()),
            };
            let header_len: usize = h.parse().map_err(|_| bad())?;
            let total_len: usize = n.parse().map_err(|_| bad())?;
            if header_len > total_len {
                return Err(bad());
            }
            Line::Msg {
                subject: f[0].to_owned(),
                sid: f[1].parse().map_err(|_| bad())?,
                reply,
                header_len,
                total_len,
            }
        }
        _ => Line::Other,
    })
}

/// The status of a header block (`NATS/1.0 503`), if it has one.
pub fn status(headers: &[u8]) -> Option<u16> {
    let first = headers.split(|b| *b == b'\n').next()?;
    let first = std::str::from_utf8(first).ok()?.trim();
    let rest = first.strip_prefix("NATS/1.0")?.trim();
    rest.split_whitespace().next()?.parse().ok()
}

/// The pending count a JetStream delivery carries in its reply subject:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`,
/// or the newer form with domain and account hash before the stream and a
/// token after the pending count.
pub fn pending(reply: &str) -> Option<u64> {
    let t: Vec<&str> = reply.split('.').collect();
    if t.len() < 2 || t[0] != "$JS" || t[1] != "ACK" {
        return None;
    }
    match t.len() {
        9 => t[8].parse().ok(),
        n if n >= 12 => t[10].parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lines() {
        assert_eq!(
            parse_line("INFO {\"a\":1}\r\n").unwrap(),
            Line::Info("{\"a\":1}".into())
        );
        assert_eq!(parse_line("PING\r\n").unwrap(), Line::Ping);
        assert_eq!(
            parse_line("-ERR 'Authorization Violation'\r\n").unwrap(),
            Line::Err("Authorization Violation".into())
        );
        assert_eq!(
            parse_line("MSG _INBOX.x.1 1 11\r\n").unwrap(),
            Line::Msg {
                subject: "_INBOX.x.1".into(),
                sid: 1,
                reply: None,
                header_len: 0,
                total_len: 11
            }
        );
        assert_eq!(
            parse_line("HMSG $O.b.M.bHR4 7 $JS.ACK.S.C.1.2.3.4.0 12 30\r\n").unwrap(),
            Line::Msg {
                subject: "$O.b.M.bHR4".into(),
                sid: 7,
                reply: Some("$JS.ACK.S.C.1.2.3.4.0".into()),
                header_len: 12,
                total_len: 30
            }
        );
        assert!(parse_line("HMSG a 1 40 30").is_err());
        assert!(parse_line("MSG a").is_err());
    }

    #[test]
    fn statuses_and_pending() {
        assert_eq!(status(b"NATS/1.0 503\r\n\r\n"), Some(503));
        assert_eq!(status(b"NATS/1.0 100 Idle Heartbeat\r\n\r\n"), Some(100));
        assert_eq!(status(b"NATS/1.0\r\nNats-Rollup: sub\r\n\r\n"), None);
        assert_eq!(pending("$JS.ACK.OBJ_b.c.1.5.1.1700000000.3"), Some(3));
        assert_eq!(
            pending("$JS.ACK.dom.acc.OBJ_b.c.1.5.1.1700000000.0.tok"),
            Some(0)
        );
        assert_eq!(pending("_INBOX.x"), None);
    }
}
