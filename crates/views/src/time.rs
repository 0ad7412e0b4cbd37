//! Time arithmetic for views: epoch-aligned buckets, UTC days, readable durations.

pub const NANOS_PER_SECOND: i64 = 1_000_000_000;
pub const NANOS_PER_DAY: i64 = 86_400 * NANOS_PER_SECOND;

/// Start of the epoch-aligned bucket of width `width` holding `time`.
pub fn bucket_start(time: i64, width: i64) -> i64 {
    debug_assert!(width > 0);
    time.div_euclid(width) * width
}

/// The UTC day number (days since 1970-01-01) of `time`.
pub fn day_of(time: i64) -> i64 {
    time.div_euclid(NANOS_PER_DAY)
}

/// `YYYY-MM-DD` for a day number (proleptic Gregorian).
pub fn day_label(day: i64) -> String {
    let (y, m, d) = opsflow_log::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A duration in seconds as written in definitions: `72h`, `5d`, `30m`, `90s`.
/// Whole hours up to 96 are shown in hours (targets are usually written so), longer
/// whole days in days.
pub fn format_seconds(seconds: f64) -> String {
    if seconds.fract() != 0.0 || seconds.abs() >= 1e15 {
        return format!("{seconds}s");
    }
    let s = seconds as i64;
    if s != 0 && s % 86_400 == 0 && s.abs() > 96 * 3600 {
        format!("{}d", s / 86_400)
    } else if s != 0 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s != 0 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// A span of time for people: days, hours, minutes and seconds, the zero parts left
/// out (`2h 30m`, `1d 1.5s`); seconds to the millisecond (at least 1 ms when not 0).
pub fn format_span(nanos: i64) -> String {
    // To the nearest millisecond; a span under half of one is still not none.
    let millis = match (nanos.unsigned_abs() + 500_000) / 1_000_000 {
        0 if nanos != 0 => 1,
        millis => millis,
    };
    let (days, rest) = (millis / 86_400_000, millis % 86_400_000);
    let (hours, rest) = (rest / 3_600_000, rest % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let mut parts = Vec::new();
    for (n, unit) in [(days, "d"), (hours, "h"), (minutes, "m")] {
        if n > 0 {
            parts.push(format!("{n}{unit}"));
        }
    }
    if rest > 0 || parts.is_empty() {
        let seconds = format!("{}.{:03}", rest / 1000, rest % 1000);
        parts.push(format!("{}s", seconds.trim_end_matches('0').trim_end_matches('.')));
    }
    let span = parts.join(" ");
    if nanos < 0 { format!("-{span}") } else { span }
}

/// A plain number without a trailing `.0`.
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_people_write_them() {
        let s = NANOS_PER_SECOND;
        assert_eq!(format_span(2 * 3600 * s), "2h");
        assert_eq!(format_span(9000 * s), "2h 30m");
        assert_eq!(format_span(86_401 * s + s / 2), "1d 1.5s");
        assert_eq!(format_span(61 * s + 1), "1m 1s");
        assert_eq!(format_span(0), "0s");
        assert_eq!(format_span(1), "0.001s");
        assert_eq!(format_span(1_500_000), "0.002s");
        assert_eq!(format_span(-90 * s), "-1m 30s");
    }

    #[test]
    fn day_labels() {
        assert_eq!(day_label(0), "1970-01-01");
        assert_eq!(day_label(-1), "1969-12-31");
        // 2000-01-01: 30 years of 365 days + 7 leap days (1972..1996) = 10_957;
        // 2000-03-01: + 31 + 29 = 11_017; 2025-01-01: 55 * 365 + 14 = 20_089, + 324 to Nov 21.
        assert_eq!(day_label(11_017), "2000-03-01");
        assert_eq!(day_label(10_957), "2000-01-01");
        assert_eq!(day_label(20_413), "2025-11-21");
    }

    #[test]
    fn buckets_align_to_epoch() {
        let minute = 60 * NANOS_PER_SECOND;
        assert_eq!(bucket_start(0, minute), 0);
        assert_eq!(bucket_start(minute - 1, minute), 0);
        assert_eq!(bucket_start(minute, minute), minute);
        assert_eq!(bucket_start(-1, minute), -minute);
        assert_eq!(day_of(NANOS_PER_DAY * 3 + 5), 3);
    }

    #[test]
    fn durations_read_like_definitions() {
        assert_eq!(format_seconds(72.0 * 3600.0), "72h");
        assert_eq!(format_seconds(5.0 * 86_400.0), "5d");
        assert_eq!(format_seconds(1800.0), "30m");
        assert_eq!(format_seconds(90.0), "90s");
        assert_eq!(format_seconds(0.5), "0.5s");
        assert_eq!(format_number(0.95), "0.95");
        assert_eq!(format_number(10_000.0), "10000");
    }
}
