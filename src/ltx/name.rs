//! File names: `{min:016x}-{max:016x}.ltx`.

use std::fmt;

use super::types::Txid;

/// The TXID range a file name states. Ordered as the names sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName {
    pub min: Txid,
    pub max: Txid,
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{:016x}.ltx", self.min.0, self.max.0)
    }
}

/// Parses an LTX file name; anything else (another file in a level folder)
/// yields `None`.
pub fn parse_name(name: &str) -> Option<FileName> {
    let stem = name.strip_suffix(".ltx")?;
    let (min, max) = stem.split_once('-')?;
    let hex16 = |s: &str| {
        (s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    let (min, max) = (Txid(hex16(min)?), Txid(hex16(max)?));
    (min.0 > 0 && min <= max).then_some(FileName { min, max })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let n = FileName {
            min: Txid(1),
            max: Txid(0xab),
        };
        assert_eq!(n.to_string(), "0000000000000001-00000000000000ab.ltx");
        assert_eq!(parse_name(&n.to_string()), Some(n));
    }

    #[test]
    fn rejects_other_names() {
        for bad in [
            "",
            "x.ltx",
            "0000000000000001-0000000000000002",
            "0000000000000001-0000000000000002.ltx.tmp",
            "000000000000001-0000000000000002.ltx",
            "0000000000000001-000000000000000G.ltx",
            "0000000000000001-000000000000000A.ltx",
            "0000000000000003-0000000000000002.ltx",
            "0000000000000000-0000000000000002.ltx",
            "+000000000000001-0000000000000002.ltx",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
