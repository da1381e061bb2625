//! The time zone `ls` would use, read the way glibc reads `TZ`, cheaply:
//! the status line's date must match `ls -ld` and cost no directory walks.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;

/// The time zone `ls` would use, following glibc's reading of `TZ`.
///
/// `TZ` unset means `/etc/localtime` (UTC if unusable); empty means UTC; a
/// leading `:` is ignored; otherwise the value is first tried as a TZif file
/// (absolute, or relative to `TZDIR`, default `/usr/share/zoneinfo`) and then
/// as a POSIX TZ string. Anything unusable yields UTC, as glibc does. Never
/// panics.
pub fn system_time_zone() -> TimeZone {
    let tz = std::env::var_os("TZ");
    let tzdir = std::env::var_os("TZDIR");
    time_zone_from_env(tz.as_deref(), tzdir.as_deref())
}

/// `system_time_zone` with the environment passed in, so it can be tested
/// without mutating the process environment.
pub(crate) fn time_zone_from_env(tz: Option<&OsStr>, tzdir: Option<&OsStr>) -> TimeZone {
    let Some(tz) = tz else {
        // As glibc does: the zone in /etc/localtime, else UTC. Read directly
        // rather than through jiff's `TimeZone::system()`, which walks the
        // whole zoneinfo tree to name the zone (a few hundred syscalls on
        // every status call). jiff's TZ handling differs from glibc's too: it
        // tries POSIX rules before files and matches names case-insensitively,
        // hence the manual handling below.
        return local_time_zone(Path::new("/etc/localtime"));
    };
    let bytes = tz.as_bytes();
    let bytes = bytes.strip_prefix(b":").unwrap_or(bytes);
    if bytes.is_empty() {
        return TimeZone::UTC;
    }
    let value = OsStr::from_bytes(bytes);

    let file = if bytes.starts_with(b"/") {
        PathBuf::from(value)
    } else {
        let dir = tzdir
            .filter(|d| !d.is_empty())
            .unwrap_or(OsStr::new("/usr/share/zoneinfo"));
        Path::new(dir).join(value)
    };
    if let Some(data) = read_capped(&file) {
        let text = value.to_string_lossy();
        // Keep an IANA-looking name so `iana_name()` stays useful.
        let name = match text.rfind("zoneinfo/") {
            Some(i) => &text[i + "zoneinfo/".len()..],
            None => &text[..],
        };
        if let Ok(zone) = TimeZone::tzif(name, &data) {
            return zone;
        }
    }

    let Ok(text) = std::str::from_utf8(bytes) else {
        return TimeZone::UTC;
    };
    if let Ok(zone) = TimeZone::posix(text) {
        return zone;
    }
    // glibc accepts a DST zone without rules ("EST5EDT", "XYZ5junk") and
    // falls back to the US rules; jiff insists on explicit rules.
    if !text.contains(',')
        && let Ok(zone) = TimeZone::posix(&format!("{text},M3.2.0,M11.1.0"))
    {
        return zone;
    }
    TimeZone::UTC
}

/// The zone in a TZif file such as /etc/localtime, named after the zoneinfo
/// path its symlink points to when it is one; UTC when unreadable.
fn local_time_zone(path: &Path) -> TimeZone {
    let Some(data) = read_capped(path) else {
        return TimeZone::UTC;
    };
    let target = std::fs::read_link(path).ok();
    let name = target
        .as_deref()
        .and_then(|t| t.to_str())
        .and_then(|t| {
            t.rfind("zoneinfo/")
                .map(|i| t[i + "zoneinfo/".len()..].to_string())
        })
        .unwrap_or_else(|| "localtime".to_string());
    TimeZone::tzif(&name, &data).unwrap_or(TimeZone::UTC)
}

/// TZif files are a few KiB; the cap keeps `TZ=/dev/zero` from eating memory
/// (glibc gives up on the bad header instead).
fn read_capped(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    // Room for a usual zone file, so it comes in one read, not in std's
    // 32-byte probes of an empty buffer.
    let mut data = Vec::with_capacity(4096);
    std::fs::File::open(path)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut data)
        .ok()?;
    Some(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    #[test]
    fn system_time_zone_follows_tz_rules() {
        // No env mutation here (tests run in parallel): check the documented
        // fallbacks through the injectable variant, and that the public one
        // returns something usable.
        let utc = Timestamp::from_second(1_720_000_000).unwrap();
        let offset = |tz: &TimeZone| tz.to_offset(utc).seconds();
        assert_eq!(offset(&time_zone_from_env(Some(OsStr::new("")), None)), 0);
        assert_eq!(
            offset(&time_zone_from_env(Some(OsStr::new("No/Such")), None)),
            0
        );
        assert_eq!(offset(&time_zone_from_env(Some(OsStr::new(":")), None)), 0);
        assert_eq!(
            offset(&time_zone_from_env(Some(OsStr::new("/dev/zero")), None)),
            0
        );
        assert_eq!(
            offset(&time_zone_from_env(Some(OsStr::new("America")), None)),
            0
        );
        let invalid = OsStr::from_bytes(b"\xff\xfe");
        assert_eq!(offset(&time_zone_from_env(Some(invalid), None)), 0);
        let ny = time_zone_from_env(Some(OsStr::new("America/New_York")), None);
        assert_eq!(offset(&ny), -4 * 3600);
        assert_eq!(ny.iana_name(), Some("America/New_York"));
        let kolkata =
            time_zone_from_env(Some(OsStr::new(":/usr/share/zoneinfo/Asia/Kolkata")), None);
        assert_eq!(kolkata.iana_name(), Some("Asia/Kolkata"));
        // glibc supplies US rules when a DST zone has none.
        let ruleless = time_zone_from_env(Some(OsStr::new("ABC5DEF")), Some(OsStr::new("/x")));
        assert_eq!(offset(&ruleless), -4 * 3600);
        let _ = system_time_zone().to_offset(utc);
    }
}
