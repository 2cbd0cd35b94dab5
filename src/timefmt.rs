//! RFC 3339 times of Unix milliseconds, in UTC, and the calendar arithmetic
//! behind them. A leaf: `replica/`, `vfs/`, `sqlite/` and `log` use it.

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

/// `2024-01-15T10:30:00` and the milliseconds.
fn split(ms: i64) -> (String, i64) {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        ),
        milli,
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A proleptic Gregorian date to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    fn days_round_trip() {
        for z in [-1_000_000, -1, 0, 1, 11_016, 19_737, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }
}
