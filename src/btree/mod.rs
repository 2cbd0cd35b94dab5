//! Pure parsing of SQLite B-tree pages, for prefetch: which children an
//! interior page points to, which child holds a rowid, which rowids an index
//! page names, where overflow chains start, and which index belongs to which
//! table (from the schema table).
//!
//! The bytes come from the replica, so they are untrusted: every function
//! takes arbitrary bytes and answers `None` (or nothing) for a page it cannot
//! make sense of, never a panic. A wrong answer only costs a useless
//! prefetch: nothing here decides what a query returns.
//!
//! The format is SQLite's "Database File Format", sections 1.6 (B-tree
//! pages) and 2 (records).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod page;
mod record;
mod schema;
mod varint;

pub use page::{BtreePage, Cell, Kind, next_overflow, overflow_pages};
pub use record::{Record, Value};
pub use schema::{Schema, SchemaEntry};
pub use varint::read_varint;
