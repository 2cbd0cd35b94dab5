//! The times `litestream_set_time()` and `PRAGMA litestream_time` accept.

use crate::timefmt::days_from_civil;

/// The accepted forms, for error messages.
pub const ACCEPTED: &str = "RFC 3339 ('2024-01-15T10:30:00Z', '2024-01-15T10:30:00.5+02:00'), \
SQLite's 'YYYY-MM-DD HH:MM:SS[.SSS]' (UTC), a date 'YYYY-MM-DD', Unix seconds ('1705314600'), \
'N seconds|minutes|hours|days|weeks ago', 'yesterday', or 'latest'";

/// What a time argument asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeTarget {
    /// Follow the primary again.
    Latest,
    /// Unix milliseconds.
    At(i64),
}

/// Parses a time argument relative to `now_ms` (Unix milliseconds).
pub fn parse_time(input: &str, now_ms: i64) -> Result<TimeTarget, String> {
    let s = input.trim();
    let lower = s.to_ascii_lowercase();
    let parsed = match lower.as_str() {
        "latest" => return Ok(TimeTarget::Latest),
        "now" => Some(now_ms),

        "yesterday" => Some(now_ms - 86_400_000),
        _ => relative(&lower, now_ms)
            .or_else(|| epoch(s))
            .or_else(|| absolute(s)),
    };
    parsed
        .map(TimeTarget::At)
        .ok_or_else(|| {
            // Begins with the official extension's words, which code may
            // look for; then what we accept.
            format!(
                "invalid timestamp (expected RFC3339 or relative time like '5 minutes ago'): {input}; accepted: {ACCEPTED}"
            )
        })
}

fn relative(s: &str, now_ms: i64) -> Option<i64> {
    let rest = s.strip_suffix(" ago")?;
    let (n, unit) = rest.trim().split_once(char::is_whitespace)?;
    let n: i64 = n.parse().ok().filter(|n| *n >= 0)?;
    let unit_ms: i64 = match unit.trim().trim_end_matches('s') {
        "second" | "sec" => 1_000,
        "minute" | "min" => 60_000,
        "hour" => 3_600_000,
        "day" => 86_400_000,
        "week" => 604_800_000,
        _ => return None,
    };
    Some(now_ms - n.checked_mul(unit_ms)?)
}

fn epoch(s: &str) -> Option<i64> {
    if !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') || s.is_empty() {
        return None;
    }
    let secs: f64 = s.parse().ok()?;
    (secs.is_finite() && secs < 1e13).then(|| (secs * 1000.0).round() as i64)
}

/// `YYYY-MM-DD`, then optionally `T` or a space and `HH:MM[:SS[.fff]]`, then
/// optionally `Z` or `±HH:MM`. Without an offset the time is UTC, as in SQLite.
fn absolute(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, mo as u32, d as u32) * 86_400_000;
    let mut at = 10;
    if at == b.len() {
        return Some(ms);
    }
    if !matches!(b.get(at), Some(b'T' | b't' | b' ')) {
        return None;
    }
    at += 1;
    let (h, mi) = (num(at, 2)?, num(at + 3, 2)?);
    if b.get(at + 2) != Some(&b':') || h > 23 || mi > 59 {
        return None;
    }
    ms += (h * 3600 + mi * 60) * 1000;
    at += 5;
    if b.get(at) == Some(&b':') {
        let sec = num(at + 1, 2)?;
        if sec > 60 {
            return None;
        }
        ms += sec * 1000;
        at += 3;
        if b.get(at) == Some(&b'.') {
            let digits = s[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let frac = &s[at + 1..at + 1 + digits];
            let milli: String = frac.chars().chain("000".chars()).take(3).collect();
            ms += milli.parse::<i64>().ok()?;
            at += 1 + digits;
        }
    }
    match s.get(at..)? {
        "" | "Z" | "z" => Some(ms),
        off => {
            let sign = match off.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if off.len() != 6 || off.as_bytes().get(3) != Some(&b':') {
                return None;
            }
            Some(ms - sign * (oh * 3600 + om * 60) * 1000)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_705_314_600_000; // 2024-01-15T10:30:00Z

    fn at(s: &str) -> i64 {
        match parse_time(s, NOW) {
            Ok(TimeTarget::At(ms)) => ms,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(at("2024-01-15T10:30:00Z"), NOW);
        assert_eq!(at("2024-01-15T10:30:00.250Z"), NOW + 250);
        assert_eq!(at("2024-01-15T10:30:00.123456789Z"), NOW + 123);
        assert_eq!(at("2024-01-15T12:30:00+02:00"), NOW);
        assert_eq!(at("2024-01-15T05:30:00-05:00"), NOW);
        assert_eq!(at("2024-01-15 10:30:00"), NOW);
        assert_eq!(at("2024-01-15 10:30:00.5"), NOW + 500);
        assert_eq!(at("2024-01-15 10:30"), NOW);
        assert_eq!(at("2024-01-15"), NOW - (10 * 3600 + 30 * 60) * 1000);
        assert_eq!(at("1705314600"), NOW);
        assert_eq!(at("1705314600.5"), NOW + 500);
        assert_eq!(at("5 minutes ago"), NOW - 300_000);
        assert_eq!(at("1 minute ago"), NOW - 60_000);
        assert_eq!(at("2 hours ago"), NOW - 7_200_000);
        assert_eq!(at("3 days ago"), NOW - 3 * 86_400_000);
        assert_eq!(at("10 seconds ago"), NOW - 10_000);
        assert_eq!(at("1 week ago"), NOW - 604_800_000);
        assert_eq!(at("yesterday"), NOW - 86_400_000);
        assert_eq!(at("now"), NOW);
        assert_eq!(parse_time("LATEST", NOW), Ok(TimeTarget::Latest));
        assert_eq!(parse_time(" latest ", NOW), Ok(TimeTarget::Latest));
    }

    #[test]
    fn rejected_forms_list_what_is_accepted() {
        for bad in [
            "",
            "tomorrow",
            "soon",
            "5 lightyears ago",
            "-5 minutes ago",
            "2024-13-01",
            "2024-01-15T25:00:00Z",
            "2024-01-15T10:30:00+0200",
            "2024/01/15",
            "15-01-2024",
            "12abc",
            "2024-01-15T10:30:00.Z",
        ] {
            let err = parse_time(bad, NOW).unwrap_err();
            assert!(
                err.contains("accepted:") && err.contains("RFC 3339"),
                "{bad}: {err}"
            );
            let official = format!(
                "invalid timestamp (expected RFC3339 or relative time like '5 minutes ago'): {bad}"
            );
            assert!(err.starts_with(&official), "{bad}: {err}");
        }
    }
}
