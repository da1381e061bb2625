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

/// `2026-02-03T20:25:46Z`: UTC, second precision.
pub fn utc_seconds(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
