//! The times `litestream_set_time()` and `PRAGMA litestream_time` accept.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

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

/// RFC 3339 (chrono's parser: `T`, `t` or a space between date and time,
/// `Z` or `±HH:MM`), else SQLite's forms in UTC: `YYYY-MM-DD HH:MM[:SS[.f]]`
/// (with a space or `T`) or a date `YYYY-MM-DD`. Fractions below the
/// millisecond are dropped.
fn absolute(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    // A four-digit year, as both RFC 3339 and SQLite write it: chrono's %Y
    // would also take a sign or more digits.
    if s.len() < 10 || !s.as_bytes().iter().take(4).all(u8::is_ascii_digit) {
        return None;
    }
    const FORMS: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ];
    FORMS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(NaiveTime::MIN))
        })
        .map(|t| t.and_utc().timestamp_millis())
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
        assert_eq!(at("2024-01-15T10:30:00.999999Z"), NOW + 999);
        assert_eq!(at("2024-01-15T10:30:00.5"), NOW + 500);
        assert_eq!(
            at("2024-02-29"),
            NOW + 45 * 86_400_000 - (10 * 3600 + 30 * 60) * 1000
        );
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
            "2023-02-29",
            "2024-04-31T10:00:00Z",
            "+2024-01-15",
            "20240-01-15",
            "2024-1-15",
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
