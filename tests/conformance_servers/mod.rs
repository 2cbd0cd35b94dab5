//! Putting the conformance tree into the servers that have no plain folder
//! behind them: WebDAV through the server itself (rclone caches its folder
//! listings, so files written beside it may not show) and a NATS JetStream
//! object store, each with a few lines of its wire protocol, so the suite
//! needs no client library.

pub mod nats;
pub mod required;
pub mod webdav;
