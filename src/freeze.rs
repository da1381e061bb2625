//! Freezes (issue 22): what `freeze --until` accepts and when a freeze ends.
//! A freeze is a lock held by a detached deploy-lock process with no command.

use jiff::{SignedDuration, Timestamp, tz::TimeZone};

/// Why an `--until` value was not taken; the CLI words it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UntilError {
    /// Neither an RFC 3339 time, `HH:MM`, nor a duration.
    Unreadable,
    /// A time that has passed already (`HH:MM` earlier today, say).
    Past(Timestamp),
}

/// The end of a freeze, as a user types it: an RFC 3339 time
/// (`2026-02-03T18:00:00Z`, or with an offset), `HH:MM` today in `tz`, or a
/// duration from `now` (`2h`, `90m`, `1h 30m`, `1d`: days of 24 hours).
/// A time not after `now` is refused: a freeze that ends before it starts
/// is a typo (`09:00` meant for tomorrow), never silently nothing.
pub fn parse_until(text: &str, now: Timestamp, tz: &TimeZone) -> Result<Timestamp, UntilError> {
    let t = text.trim();
    let at = if let Ok(at) = t.parse::<Timestamp>() {
        at
    } else if let Some(at) = clock_time_today(t, now, tz) {
        at
    } else {
        let span: jiff::Span = t.parse().map_err(|_| UntilError::Unreadable)?;
        let secs = span
            .total((
                jiff::Unit::Second,
                jiff::SpanRelativeTo::days_are_24_hours(),
            ))
            .map_err(|_| UntilError::Unreadable)?;
        if !(-1e11..=1e11).contains(&secs) {
            return Err(UntilError::Unreadable);
        }
        now.checked_add(SignedDuration::from_secs_f64(secs))
            .map_err(|_| UntilError::Unreadable)?
    };
    if at <= now {
        return Err(UntilError::Past(at));
    }
    Ok(at)
}

/// `HH:MM` (or `H:MM`) today in `tz`.
fn clock_time_today(t: &str, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    let (h, m) = t.split_once(':')?;
    if !(1..=2).contains(&h.len()) || m.len() != 2 {
        return None;
    }
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    let today = now.to_zoned_datetime(tz.clone()).date();
    let time = jiff::civil::Time::new(h, m, 0, 0).ok()?;
    today
        .to_datetime(time)
        .to_zoned_datetime(tz.clone())
        .ok()
        .map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_takes_times_clock_times_and_durations() {
        let now: Timestamp = "2026-02-03T10:00:00Z".parse().unwrap();
        let utc = TimeZone::UTC;
        let at = |s: &str| parse_until(s, now, &utc);
        assert_eq!(
            at("2026-02-03T18:00:00Z"),
            Ok("2026-02-03T18:00:00Z".parse().unwrap())
        );
        assert_eq!(
            at("2026-02-03T19:00:00+01:00"),
            Ok("2026-02-03T18:00:00Z".parse().unwrap())
        );
        assert_eq!(at("14:30"), Ok("2026-02-03T14:30:00Z".parse().unwrap()));
        assert_eq!(at("2h"), Ok("2026-02-03T12:00:00Z".parse().unwrap()));
        assert_eq!(at("1h 30m"), Ok("2026-02-03T11:30:00Z".parse().unwrap()));
        assert_eq!(at("1d"), Ok("2026-02-04T10:00:00Z".parse().unwrap()));
        assert_eq!(
            at("09:00"),
            Err(UntilError::Past("2026-02-03T09:00:00Z".parse().unwrap()))
        );
        assert!(matches!(
            at("2026-02-01T00:00:00Z"),
            Err(UntilError::Past(_))
        ));
        assert_eq!(at("0s"), Err(UntilError::Past(now)));
        assert_eq!(at("tomorrow-ish"), Err(UntilError::Unreadable));
        assert_eq!(at("25:00"), Err(UntilError::Unreadable));
        // HH:MM is the local time zone's.
        let paris = TimeZone::get("Europe/Paris").unwrap_or(TimeZone::fixed(jiff::tz::offset(1)));
        assert_eq!(
            parse_until("14:30", now, &paris),
            Ok("2026-02-03T13:30:00Z".parse().unwrap())
        );
    }
}
