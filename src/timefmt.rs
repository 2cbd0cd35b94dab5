//! RFC 3339 times of Unix milliseconds, in UTC. The calendar is chrono's
//! (already in the tree through object_store); what is ours is the two
//! shapes of the text, Go's RFC3339Nano and one for log lines. A leaf:
//! `replica/`, `vfs/`, `sqlite/` and `log` use it (`vfs/timeparse.rs`
//! parses with chrono too).

use chrono::{DateTime, Utc};

/// As Go's `time.RFC3339Nano` prints it, which is what the official
/// extension's `litestream_time()` returns: the fraction without trailing
/// zeros, and no fraction at all for a whole second
/// (`2024-01-15T10:30:00.73Z`, `2024-01-15T10:30:00Z`).
pub fn format_rfc3339_nano(ms: i64) -> String {
    let (date_time, milli) = split(ms);
    if milli == 0 {
        return format!("{date_time}Z");
    }
    let fraction = format!("{milli:03}");
    format!("{date_time}.{}Z", fraction.trim_end_matches('0'))
}

/// Always three digits of milliseconds (`2024-01-15T10:30:00.120Z`): for
/// log lines, which line up.
pub fn format_rfc3339_millis(ms: i64) -> String {
    let (date_time, milli) = split(ms);
    format!("{date_time}.{milli:03}Z")
}

/// `2024-01-15T10:30:00` and the milliseconds. Times come from LTX headers,
/// which are untrusted: one beyond chrono's range (±262,000 years) prints
/// as the nearest it can show.
fn split(ms: i64) -> (String, i64) {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let at = DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or(if secs < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    (at.format("%Y-%m-%dT%H:%M:%S").to_string(), milli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_millis(1_705_314_600_120),
            "2024-01-15T10:30:00.120Z"
        );
        assert_eq!(
            format_rfc3339_millis(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn trims_the_fraction_as_go_rfc3339nano_does() {
        assert_eq!(format_rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339_nano(1_705_314_613_730),
            "2024-01-15T10:30:13.73Z"
        );
        assert_eq!(
            format_rfc3339_nano(1_705_314_613_700),
            "2024-01-15T10:30:13.7Z"
        );
        assert_eq!(
            format_rfc3339_nano(1_705_314_613_123),
            "2024-01-15T10:30:13.123Z"
        );
        assert_eq!(
            format_rfc3339_nano(1_705_314_613_003),
            "2024-01-15T10:30:13.003Z"
        );
        assert_eq!(format_rfc3339_nano(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn times_beyond_the_calendar_do_not_panic() {
        // LTX header times are untrusted.
        for ms in [i64::MIN, i64::MAX, -62_135_596_800_001, 253_402_300_800_000] {
            assert!(format_rfc3339_nano(ms).ends_with('Z'));
            assert!(format_rfc3339_millis(ms).ends_with('Z'));
        }
    }
}
