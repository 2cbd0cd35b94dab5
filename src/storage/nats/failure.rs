//! A failed NATS call: what kind of failure, and the client's words for it.

use crate::storage::error::StorageErrorKind;

#[derive(Debug)]
pub struct Failure {
    pub kind: StorageErrorKind,
    pub text: String,
}

impl Failure {
    pub fn new(kind: StorageErrorKind, text: impl Into<String>) -> Failure {
        Failure {
            kind,
            text: text.into(),
        }
    }
}
