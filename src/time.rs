//! Durations as people write them (`30s`, `1500ms`, `1m`, `2.5s`, `5`) and
//! wall-clock stamps for the drain file, without a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::text::escaped;

/// The longest duration any option takes: a year. Longer is surely a typo,
/// and keeping every duration this short means no sum of them (nor a deadline
/// counted from drainit's start) can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// [`MAX_DURATION`] as people write it.
pub const MAX_DURATION_TEXT: &str = "8760h";

/// Parses `30s`, `1500ms`, `1m`, `1h`, `2.5s`; a bare number means seconds.
/// At most [`MAX_DURATION`]; negative values are refused as such.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let shown = escaped(t);
    if t.starts_with('-') {
        return Err(format!("invalid duration '{shown}': negative"));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at_checked(split).unwrap_or((t, ""));
    let nanos_per_unit: u128 = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1_000_000_000,
        "ms" => 1_000_000,
        "us" | "µs" => 1_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(format!(
                "invalid duration '{shown}': unknown unit '{}' (use ms, s, m or h)",
                escaped(unit)
            ));
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let well_formed = !(whole.is_empty() && fraction.is_empty())
        && whole.chars().all(|c| c.is_ascii_digit())
        && fraction.chars().all(|c| c.is_ascii_digit())
        && !(number.ends_with('.') && whole.is_empty());
    if !well_formed {
        return Err(format!(
            "invalid duration '{shown}' (examples: 30s, 1500ms, 1m, 2.5s; a bare number is seconds)"
        ));
    }
    let too_long =
        || format!("invalid duration '{shown}': longer than a year (at most {MAX_DURATION_TEXT})");
    // Leading zeros count for nothing; more digits than this is too long anyway.
    let whole = whole.trim_start_matches('0');
    let whole: u128 = if whole.is_empty() {
        0
    } else if whole.len() > 30 {
        return Err(too_long());
    } else {
        whole.parse().map_err(|_| too_long())?
    };
    // Fractions beyond nanoseconds are dropped, digit by digit, without floats.
    let mut frac_nanos: u128 = 0;
    let mut scale = nanos_per_unit;
    for digit in fraction.bytes().map(|b| u128::from(b.saturating_sub(b'0'))) {
        scale /= 10;
        frac_nanos = frac_nanos.saturating_add(digit.saturating_mul(scale));
    }
    let nanos = whole
        .checked_mul(nanos_per_unit)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(too_long)?;
    if nanos > MAX_DURATION.as_nanos() {
        return Err(too_long());
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    let subsec = u32::try_from(nanos % 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, subsec))
}

/// `0s`, `5s`, `2.5s`, `750ms`, `1m30s`: short and exact to the millisecond.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (minutes, rest_ms) = (ms / 60_000, ms % 60_000);
    let seconds = if rest_ms % 1000 == 0 {
        format!("{}s", rest_ms / 1000)
    } else {
        let s = format!("{}.{:03}", rest_ms / 1000, rest_ms % 1000);
        format!("{}s", s.trim_end_matches('0'))
    };
    match (minutes, rest_ms) {
        (0, _) => seconds,
        (m, 0) => format!("{m}m"),
        (m, _) => format!("{m}m{seconds}"),
    }
}

/// `t+2.5s`, for log lines that count from the start of a drain.
pub fn since(d: Duration) -> String {
    let tenths = d.as_millis().saturating_add(50) / 100;
    format!("t+{}.{}s", tenths / 10, tenths % 10)
}

/// UTC time in RFC 3339 with milliseconds, e.g. `2026-11-22T07:43:58.120Z`.
pub fn rfc3339(at: SystemTime) -> String {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days).unwrap_or((1970, 1, 1));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm, for days on or after the epoch); `None` past any real date.
fn civil_from_days(days: u64) -> Option<(u64, u64, u64)> {
    let z = days.checked_add(719_468)?;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = doe
        .checked_sub(doe / 1460)?
        .checked_add(doe / 36_524)?
        .checked_sub(doe / 146_096)?
        / 365;
    let doy = doe.checked_sub(
        yoe.checked_mul(365)?
            .checked_add(yoe / 4)?
            .checked_sub(yoe / 100)?,
    )?;
    let mp = doy.checked_mul(5)?.checked_add(2)? / 153;
    let d = doy
        .checked_sub(mp.checked_mul(153)?.checked_add(2)? / 5)?
        .checked_add(1)?;
    let m = if mp < 10 {
        mp.checked_add(3)?
    } else {
        mp.checked_sub(9)?
    };
    let y = yoe
        .checked_add(era.checked_mul(400)?)?
        .checked_add(u64::from(m <= 2))?;
    Some((y, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let cases = [
            ("30s", Duration::from_secs(30)),
            ("1500ms", Duration::from_millis(1500)),
            ("1m", Duration::from_secs(60)),
            ("2.5s", Duration::from_millis(2500)),
            ("5", Duration::from_secs(5)),
            ("0", Duration::ZERO),
            ("0.25", Duration::from_millis(250)),
            (".5s", Duration::from_millis(500)),
            ("1h", Duration::from_secs(3600)),
            ("1.5m", Duration::from_secs(90)),
            ("250us", Duration::from_micros(250)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for text in [
            "",
            "s",
            "-1s",
            "1.2.3s",
            "5 days",
            "1e3",
            "abc",
            ".",
            "1x",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert!(parse_duration("5d").unwrap_err().contains("'5d'"));
    }

    #[test]
    fn caps_durations_at_a_year_and_says_negative() {
        assert_eq!(parse_duration(MAX_DURATION_TEXT), Ok(MAX_DURATION));
        assert_eq!(parse_duration("525600m"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("0008760h"), Ok(MAX_DURATION));
        for text in [
            "8760.001h",
            "31536001",
            "18446744073709551615",
            "18446744073709551616",
            "340282366920938463463374607431768211456",
            "99999999999999999999999999999999999999999999999999ms",
        ] {
            let e = parse_duration(text).unwrap_err();
            assert!(e.contains("longer than a year"), "{text}: {e}");
        }
        for text in ["-1", "-1s", "-0", "-3s"] {
            let e = parse_duration(text).unwrap_err();
            assert!(e.ends_with(": negative"), "{text}: {e}");
        }
        let e = parse_duration("1\n2").unwrap_err();
        assert!(!e.contains('\n') && e.contains("'1\\n2'"), "{e}");
        let e = parse_duration("5\u{1b}[2J").unwrap_err();
        assert!(!e.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn formats_short_and_exact() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(750)), "750ms");
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(format_duration(Duration::from_secs(60)), "1m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(29_050)), "29.05s");
        assert_eq!(since(Duration::from_millis(4_960)), "t+5.0s");
        assert_eq!(since(Duration::from_millis(120)), "t+0.1s");
    }

    #[test]
    fn stamps_utc_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_334_638_120);
        assert_eq!(rfc3339(t), "2026-11-22T08:03:58.120Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
        let y2100 = UNIX_EPOCH + Duration::from_secs(4_107_542_399);
        assert_eq!(rfc3339(y2100), "2100-02-28T23:59:59.000Z");
        assert_eq!(civil_from_days(u64::MAX), None);
    }
}
