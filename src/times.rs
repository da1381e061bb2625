//! The state file's time formats: reading a `locked_at` the way `date -d`
//! would for the formats deploy scripts write, and writing UTC seconds.

use jiff::Timestamp;

/// Reads the time formats a state file's `locked_at` may hold (RFC 3339 / ISO
/// 8601 with an offset or `Z`; a civil time without one is read as UTC).
pub fn parse_time(s: &str) -> Option<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    let civil: jiff::civil::DateTime = s.parse().ok()?;
    civil
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// A `locked_at` read as the legacy unlock.sh read it, through `date -d`:
/// everything [`parse_time`] reads, plus `@EPOCH`, a trailing ` UTC`, a date
/// alone (midnight), `now`, `today`, `yesterday`, `tomorrow` and `N UNIT(s)
/// ago`; a time without a zone is in `tz` (the `TZ` date -d would use).
/// Other forms date -d accepts (month names, weekdays) give None.
pub fn date_d(s: &str, now: Timestamp, tz: fn() -> jiff::tz::TimeZone) -> Option<Timestamp> {
    let s = s.trim();
    if let Some(epoch) = s.strip_prefix('@') {
        return Timestamp::from_second(epoch.parse().ok()?).ok();
    }
    // date -d knows only the extended form (2026-02-03), not jiff's basic
    // one (20260203T202546Z).
    let extended = s.contains('-');
    if extended && let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    let day = jiff::SignedDuration::from_hours(24);
    match s {
        "now" | "today" => return Some(now),
        "yesterday" => return now.checked_sub(day).ok(),
        "tomorrow" => return now.checked_add(day).ok(),
        _ => {}
    }
    if let Some(rest) = s.strip_suffix(" ago") {
        let (n, unit) = rest.split_once(' ')?;
        let n: i64 = n.parse().ok()?;
        let secs = match unit.trim_end_matches('s') {
            "sec" | "second" => 1,
            "min" | "minute" => 60,
            "hour" => 3600,
            "day" => 86_400,
            "week" => 604_800,
            _ => return None,
        };
        return now
            .checked_sub(jiff::SignedDuration::from_secs(n.checked_mul(secs)?))
            .ok();
    }
    if !extended {
        return None;
    }
    let (civil, zone) = match s.strip_suffix(" UTC") {
        Some(c) => (c, jiff::tz::TimeZone::UTC),
        None => (s, tz()),
    };
    let dt = match civil.parse::<jiff::civil::DateTime>() {
        Ok(dt) => dt,
        Err(_) => civil
            .parse::<jiff::civil::Date>()
            .ok()?
            .to_datetime(jiff::civil::Time::midnight()),
    };
    dt.to_zoned_datetime(zone).ok().map(|z| z.timestamp())
}

/// `2026-02-03T20:25:46Z`: UTC, second precision.
pub fn utc_seconds(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_d_reads_what_the_legacy_date_dash_d_read() {
        let now = Timestamp::from_second(1_770_150_346).unwrap();
        let utc = || jiff::tz::TimeZone::UTC;
        let at = |s: &str| date_d(s, now, utc).map(|t| t.as_second());
        assert_eq!(at("@1770150000"), Some(1_770_150_000));
        assert_eq!(at("2026-02-03"), Some(1_770_076_800));
        assert_eq!(at("2026-02-03 20:25:46 UTC"), Some(1_770_150_346));
        assert_eq!(at("2026-02-03T20:25:46.5Z"), Some(1_770_150_346));
        assert_eq!(at("2026-02-03T21:25:46+01:00"), Some(1_770_150_346));
        assert_eq!(at("yesterday"), Some(1_770_150_346 - 86_400));
        assert_eq!(at("2 hours ago"), Some(1_770_150_346 - 7_200));
        assert_eq!(at("soon"), None);
        assert_eq!(at("20260203T202546Z"), None);
    }
}
