//! SQLite's variable-length integers: 1 to 9 bytes, big-endian, seven bits
//! per byte with the high bit as "more follows", and all eight bits of the
//! ninth byte.

/// The value and length of the varint at the start of `buf`; `None` when
/// `buf` ends inside it.
pub fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, b) in buf.iter().take(9).enumerate() {
        if i == 8 {
            return Some(((v << 8) | u64::from(*b), 9));
        }
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Some((v, i.checked_add(1)?));
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_short_long_and_truncated() {
        assert_eq!(read_varint(&[0x05]), Some((5, 1)));
        assert_eq!(read_varint(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(read_varint(&[0xff; 9]), Some((u64::MAX, 9)));
        assert_eq!(read_varint(&[0x81]), None);
        assert_eq!(read_varint(&[]), None);
    }
}
