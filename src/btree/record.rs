//! Records: a header of serial types, then the values (file format,
//! section 2.1). Read lazily from the local part of a payload, so a record
//! whose tail spilled to overflow pages still yields its first columns.

use super::varint::read_varint;

/// A column value, as far as prefetch needs one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Integer(i64),
    /// The bits of the float.
    Real(u64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

/// A record, borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    bytes: &'a [u8],
    header_len: usize,
}

/// Bytes of the value of serial type `t`.
fn value_len(t: u64) -> Option<usize> {
    Some(match t {
        0 | 8 | 9 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        4 => 4,
        5 => 6,
        6 | 7 => 8,
        10 | 11 => return None,
        n => usize::try_from(n.checked_sub(12)? / 2).ok()?,
    })
}

fn int_be(b: &[u8]) -> i64 {
    let mut v: i64 = if b.first().is_some_and(|x| x & 0x80 != 0) {
        -1
    } else {
        0
    };
    for x in b {
        v = (v << 8) | i64::from(*x);
    }
    v
}

impl<'a> Record<'a> {
    pub fn new(bytes: &'a [u8]) -> Option<Record<'a>> {
        let (h, _) = read_varint(bytes)?;
        let header_len = usize::try_from(h).ok()?;
        if header_len == 0 || header_len > bytes.len() {
            return None;
        }
        Some(Record { bytes, header_len })
    }

    /// The values in column order, as far as the bytes go.
    pub fn values(&self) -> Vec<Value<'a>> {
        let mut out = Vec::new();
        let Some((_, mut at)) = read_varint(self.bytes) else {
            return out;
        };
        let mut body = self.header_len;
        while at < self.header_len {
            let Some((t, n)) = self.bytes.get(at..).and_then(read_varint) else {
                break;
            };
            let Some(at_next) = at.checked_add(n) else {
                break;
            };
            at = at_next;
            let Some(len) = value_len(t) else { break };
            let Some(end) = body.checked_add(len) else {
                break;
            };
            let Some(v) = self.bytes.get(body..end) else {
                break;
            };
            out.push(match t {
                0 => Value::Null,
                1..=6 => Value::Integer(int_be(v)),
                7 => Value::Real(int_be(v) as u64),
                8 => Value::Integer(0),
                9 => Value::Integer(1),
                n if n % 2 == 0 => Value::Blob(v),
                _ => Value::Text(v),
            });
            body = end;
        }
        out
    }

    /// The last column when it is an integer (an index cell's rowid).
    pub fn last_integer(&self) -> Option<i64> {
        self.key_and_rowid().map(|(_, r)| r)
    }

    /// An index cell's key (every column but the last, as a hash) and its
    /// rowid (the last column, an integer).
    pub fn key_and_rowid(&self) -> Option<(u64, i64)> {
        use std::hash::{Hash, Hasher};
        let values = self.values();
        let (last, key) = values.split_last()?;
        let Value::Integer(rowid) = last else {
            return None;
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for v in key {
            match v {
                Value::Null => 0u8.hash(&mut h),
                Value::Integer(i) => (1u8, i).hash(&mut h),
                Value::Real(bits) => (2u8, bits).hash(&mut h),
                Value::Text(t) => (3u8, t).hash(&mut h),
                Value::Blob(b) => (4u8, b).hash(&mut h),
            }
        }
        Some((h.finish(), *rowid))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_and_stops_at_truncation() {
        // header 4: types int8, text(2), int16; body 7, "ab", -2
        let rec = [4u8, 1, 17, 2, 7, b'a', b'b', 0xff, 0xfe];
        let r = Record::new(&rec).unwrap();
        assert_eq!(
            r.values(),
            vec![Value::Integer(7), Value::Text(b"ab"), Value::Integer(-2)]
        );
        assert_eq!(r.last_integer(), Some(-2));
        let cut = Record::new(&rec[..7]).unwrap();
        assert_eq!(cut.values().len(), 2);
        assert!(Record::new(&[9u8, 1]).is_none());
    }
}
