use std::fmt;

/// Why bytes could not be decoded as LTX. Every variant means the input is
/// not a valid LTX file (or not the part of one that was asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LtxError {
    /// Fewer bytes than the structure needs.
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A field holds a value the format does not allow.
    Invalid { what: &'static str, detail: String },
    /// The stored file checksum does not match the content.
    Checksum { stored: u64, computed: u64 },
}

impl LtxError {
    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> LtxError {
        LtxError::Invalid {
            what,
            detail: detail.into(),
        }
    }

    pub(crate) fn truncated(what: &'static str, need: usize, have: usize) -> LtxError {
        LtxError::Truncated { what, need, have }
    }
}

impl fmt::Display for LtxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LtxError::Truncated { what, need, have } => {
                write!(f, "truncated {what}: need {need} bytes, have {have}")
            }
            LtxError::Invalid { what, detail } => write!(f, "invalid {what}: {detail}"),
            LtxError::Checksum { stored, computed } => write!(
                f,
                "file checksum mismatch: stored {stored:016x}, computed {computed:016x}"
            ),
        }
    }
}

impl std::error::Error for LtxError {}

/// Reads a big-endian integer of `N` bytes at `at`, or reports truncation.
pub(crate) fn be_bytes<const N: usize>(
    buf: &[u8],
    at: usize,
    what: &'static str,
) -> Result<[u8; N], LtxError> {
    let end = at
        .checked_add(N)
        .ok_or_else(|| LtxError::invalid(what, "offset overflow"))?;
    buf.get(at..end)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or_else(|| LtxError::truncated(what, end, buf.len()))
}

pub(crate) fn be_u16(buf: &[u8], at: usize, what: &'static str) -> Result<u16, LtxError> {
    be_bytes::<2>(buf, at, what).map(u16::from_be_bytes)
}

pub(crate) fn be_u32(buf: &[u8], at: usize, what: &'static str) -> Result<u32, LtxError> {
    be_bytes::<4>(buf, at, what).map(u32::from_be_bytes)
}

pub(crate) fn be_u64(buf: &[u8], at: usize, what: &'static str) -> Result<u64, LtxError> {
    be_bytes::<8>(buf, at, what).map(u64::from_be_bytes)
}
