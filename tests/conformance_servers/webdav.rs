//! MKCOL and PUT over plain HTTP/1.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub struct Dav {
    pub host: String,
    pub user: String,
    pub password: String,
}

impl Dav {
    /// One request; the status code of the answer.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> u16 {
        let mut s = TcpStream::connect(&self.host).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let auth = STANDARD.encode(format!("{}:{}", self.user, self.password));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.host,
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        let line = String::from_utf8_lossy(&answer);
        line.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{method} {path}: no HTTP answer: {line:.80}"))
    }

    /// Writes `bytes` at `name` (`a/b/c`), creating the folders on the way.
    pub fn put(&self, name: &str, bytes: &[u8]) {
        let parts: Vec<&str> = name.split('/').collect();
        for i in 1..parts.len() {
            let folder = format!("/{}/", parts[..i].join("/"));
            let code = self.request("MKCOL", &folder, b"");
            // 405: it exists already
            assert!(matches!(code, 201 | 405), "MKCOL {folder}: HTTP {code}");
        }
        let code = self.request("PUT", &format!("/{name}"), bytes);
        assert!(matches!(code, 200 | 201 | 204), "PUT {name}: HTTP {code}");
    }

    /// Removes `name` and everything under it.
    pub fn delete(&self, name: &str) {
        let _ = self.request("DELETE", &format!("/{name}/"), b"");
    }
}
