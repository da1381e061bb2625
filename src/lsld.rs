//! Status output shows the lock's metadata exactly as `ls -ld` would, but status
//! runs constantly, so the line is rendered natively instead of spawning `ls`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use nix::errno::Errno;
use nix::libc;

/// GNU's "six months": half of an average Gregorian year (31556952 s).
const SIX_MONTHS_SECS: i64 = 31_556_952 / 2;

/// The Gregorian calendar, weekdays included, repeats every 400 years, which
/// lets dates outside jiff's ±9999 range reuse its time zone arithmetic.
const CYCLE_SECS: i64 = 146_097 * 86_400;

/// Instants beyond ±this many seconds (roughly years 8300 / -4300) are shifted
/// by whole cycles first, leaving room for any UTC offset within jiff's range.
const SHIFT_LIMIT_SECS: i64 = 200_000_000_000;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The line `ls -ld PATH` prints, rendered natively.
///
/// Matches GNU coreutils `ls -ld PATH` run with `LC_ALL=C` and stdout not a
/// terminal, without the trailing newline; `tz` plays the role of `TZ`. Like
/// `ls`, a file whose mtime is after `now` makes it re-read the clock, so a
/// file touched just after `now` was taken still counts as recent.
///
/// Non-UTF-8 bytes in the path or link target are replaced lossily.
pub fn ls_ld(path: &Path, now: Timestamp, tz: &TimeZone) -> io::Result<String> {
    let meta = std::fs::symlink_metadata(path)?;
    let mode = meta.mode();
    let file_type = mode & libc::S_IFMT;

    let mut line = mode_string(mode);
    if let Some(marker) = security_marker(path, file_type) {
        line.push(marker);
    }

    let owner = user_name(meta.uid());
    let group = group_name(meta.gid());
    let size = if file_type == libc::S_IFCHR || file_type == libc::S_IFBLK {
        let rdev = meta.rdev();
        format!(
            "{}, {}",
            nix::sys::stat::major(rdev),
            nix::sys::stat::minor(rdev)
        )
    } else {
        meta.size().to_string()
    };

    let (sec, nsec) = (meta.mtime(), meta.mtime_nsec());
    let now = if nanos(sec, nsec) > now.as_nanosecond() {
        now.max(Timestamp::now())
    } else {
        now
    };
    let date = format_mtime(sec, nsec, now, tz);

    line = format!(
        "{line} {} {owner} {group} {size} {date} {}",
        meta.nlink(),
        path.as_os_str().to_string_lossy()
    );
    if file_type == libc::S_IFLNK {
        // `ls` reports an unreadable target on stderr and still prints the
        // line, just without the arrow.
        if let Ok(target) = std::fs::read_link(path) {
            line.push_str(" -> ");
            line.push_str(&target.as_os_str().to_string_lossy());
        }
    }
    Ok(line)
}

/// GNU `filemodestring` without the trailing ACL slot: type letter plus the
/// three permission triplets with setuid/setgid/sticky folded in.
fn mode_string(mode: u32) -> String {
    let type_char = match mode & libc::S_IFMT {
        libc::S_IFREG => '-',
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        _ => '?',
    };
    let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
    let exec = |x: u32, special: u32, set: char| match (mode & x != 0, mode & special != 0) {
        (true, true) => set,
        (false, true) => set.to_ascii_uppercase(),
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        type_char,
        bit(libc::S_IRUSR, 'r'),
        bit(libc::S_IWUSR, 'w'),
        exec(libc::S_IXUSR, libc::S_ISUID, 's'),
        bit(libc::S_IRGRP, 'r'),
        bit(libc::S_IWGRP, 'w'),
        exec(libc::S_IXGRP, libc::S_ISGID, 's'),
        bit(libc::S_IROTH, 'r'),
        bit(libc::S_IWOTH, 'w'),
        exec(libc::S_IXOTH, libc::S_ISVTX, 't'),
    ]
    .iter()
    .collect()
}

/// The 11th mode column: `+` for a POSIX ACL, `.` for a security context
/// only, as coreutils decides it (libselinux context probe, then gnulib's
/// `file_has_acl`).
fn security_marker(path: &Path, file_type: u32) -> Option<char> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;

    let mut label = [0u8; 64];
    let have_context = match lgetxattr(&c_path, c"security.selinux", &mut label) {
        // libselinux reports an empty label as "no label".
        Ok(0) => false,
        Ok(n) => label[..n].split(|&b| b == 0).next() != Some(&b"unlabeled"[..]),
        // Too long for the buffer, so certainly not "unlabeled".
        Err(Errno::ERANGE) => true,
        Err(Errno::ENOTSUP | Errno::ENODATA) => false,
        // `ls` then skips the ACL probe and shows no marker.
        Err(_) => return None,
    };

    // gnulib never looks for ACLs on symlinks.
    let have_acl = file_type != libc::S_IFLNK
        && match lgetxattr(&c_path, c"system.posix_acl_access", &mut []) {
            Ok(n) if n > 0 => true,
            Ok(_) | Err(Errno::ENODATA) => {
                file_type == libc::S_IFDIR
                    && matches!(
                        lgetxattr(&c_path, c"system.posix_acl_default", &mut []),
                        Ok(n) if n > 0
                    )
            }
            Err(_) => false,
        };

    if have_acl {
        Some('+')
    } else if have_context {
        Some('.')
    } else {
        None
    }
}

/// `lgetxattr(2)`; an empty buffer asks only for the value's size.
fn lgetxattr(path: &CStr, name: &CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let value = if buf.is_empty() {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    // SAFETY: both strings are NUL-terminated and `value` is either null with
    // size 0 or valid for `buf.len()` bytes.
    let n = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), value, buf.len()) };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// As ls: the name from the system's NSS (getpwuid_r, so files, LDAP,
/// SSSD, systemd alike), or the number when no source knows the id.
fn user_name(uid: u32) -> String {
    crate::accounts::user_name(uid).unwrap_or_else(|| uid.to_string())
}

fn group_name(gid: u32) -> String {
    crate::accounts::group_name(gid).unwrap_or_else(|| gid.to_string())
}

fn nanos(sec: i64, nsec: i64) -> i128 {
    i128::from(sec) * 1_000_000_000 + i128::from(nsec)
}

/// The date column: `%b %e %H:%M` when recent, `%b %e  %Y` otherwise.
fn format_mtime(sec: i64, nsec: i64, now: Timestamp, tz: &TimeZone) -> String {
    let when = nanos(sec, nsec);
    let now_ns = now.as_nanosecond();
    // GNU compares full timespecs, so the boundary is nanosecond exact.
    let six_months_ago = now_ns - i128::from(SIX_MONTHS_SECS) * 1_000_000_000;
    let recent = six_months_ago < when && when < now_ns;

    let Some(civil) = Civil::of(sec, tz) else {
        // What `ls` prints when localtime() overflows: the raw seconds,
        // right-aligned to the width of an ordinary date.
        return format!("{sec:>12}");
    };
    let month = MONTHS[usize::from(civil.month - 1)];
    if recent {
        format!(
            "{month} {:>2} {:02}:{:02}",
            civil.day, civil.hour, civil.minute
        )
    } else {
        // gnulib's %Y pads to four characters, a minus sign included.
        let year = if civil.year < 0 {
            format!("-{:03}", -civil.year)
        } else {
            format!("{:04}", civil.year)
        };
        format!("{month} {:>2}  {year}", civil.day)
    }
}

/// The fields of `struct tm` the date column needs.
struct Civil {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
}

impl Civil {
    /// Local civil time of `sec`, or `None` where glibc's `localtime` fails
    /// (the year does not fit `tm_year`).
    fn of(sec: i64, tz: &TimeZone) -> Option<Civil> {
        let (mut shifted, mut cycles) = (i128::from(sec), 0i128);
        let (limit, cycle) = (i128::from(SHIFT_LIMIT_SECS), i128::from(CYCLE_SECS));
        if shifted > limit {
            cycles = (shifted - limit) / cycle + 1;
        } else if shifted < -limit {
            cycles = -((-limit - shifted) / cycle + 1);
        }
        shifted -= cycles * cycle;
        let stamp = Timestamp::from_second(i64::try_from(shifted).ok()?).ok()?;
        let dt = tz.to_datetime(stamp);
        let year = i128::from(dt.year()) + 400 * cycles;
        // glibc's localtime fails with EOVERFLOW past an int tm_year.
        if i32::try_from(year - 1900).is_err() {
            return None;
        }
        Some(Civil {
            year: i64::try_from(year).ok()?,
            month: u8::try_from(dt.month()).ok()?,
            day: u8::try_from(dt.day()).ok()?,
            hour: u8::try_from(dt.hour()).ok()?,
            minute: u8::try_from(dt.minute()).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::process::Command;

    use nix::fcntl::AT_FDCWD;
    use nix::sys::stat::{Mode, SFlag, UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;

    const LS: &str = "/usr/bin/ls";

    /// The zones the comparison runs under: the `TZ` value handed to `ls`
    /// and the zone built the way the binary builds it.
    fn zones() -> Vec<(&'static str, TimeZone)> {
        let mut zones: Vec<(&'static str, TimeZone)> = [
            "UTC",
            "America/New_York",
            "Asia/Kolkata",
            "Australia/Lord_Howe",
        ]
        .into_iter()
        .map(|name| (name, TimeZone::get(name).expect(name)))
        .collect();
        let posix = "EST5EDT,M3.2.0,M11.1.0";
        zones.push((posix, TimeZone::posix(posix).expect(posix)));
        zones
    }

    fn have_gnu_ls() -> bool {
        let ok = Command::new(LS)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("GNU coreutils"))
            .unwrap_or(false);
        if !ok {
            println!("note: skipping: {LS} is not GNU coreutils ls");
        }
        ok
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// `ls -ld PATH` under a clean environment; `tz` None leaves `TZ` unset.
    fn gnu_ls(path: &Path, tz: Option<&str>, tzdir: Option<&str>) -> String {
        let mut cmd = Command::new(LS);
        // BLOCK_SIZE, QUOTING_STYLE, TIME_STYLE... would change the output.
        cmd.env_clear().env("LC_ALL", "C").arg("-ld").arg(path);
        if let Some(tz) = tz {
            cmd.env("TZ", tz);
        }
        if let Some(dir) = tzdir {
            cmd.env("TZDIR", dir);
        }
        let out = cmd.output().expect("spawn ls");
        assert!(
            out.status.success(),
            "ls -ld {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8 from ls");
        text.strip_suffix('\n').expect("newline").to_owned()
    }

    /// Compares against real `ls`, taking `now` right before spawning it.
    fn assert_matches_ls(label: &str, path: &Path, tz_env: &str, tz: &TimeZone) {
        let now = Timestamp::now();
        let expected = gnu_ls(path, Some(tz_env), None);
        let actual = ls_ld(path, now, tz).expect("ls_ld");
        assert_lines_eq(&format!("{label} [TZ={tz_env}]"), &expected, &actual);
    }

    fn assert_lines_eq(label: &str, expected: &str, actual: &str) {
        if expected == actual {
            return;
        }
        let at = expected
            .chars()
            .zip(actual.chars())
            .take_while(|(a, b)| a == b)
            .count();
        panic!(
            "{label}: ls_ld differs from GNU ls at column {at}\n  \
             ls:    {expected:?}\n  \
             ls_ld: {actual:?}\n          {}^",
            " ".repeat(at)
        );
    }

    fn set_mtime(path: &Path, sec: i64, nsec: i64) {
        let t = TimeSpec::new(sec, nsec);
        utimensat(AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink)
            .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// One fixture per case, each in its own temp dir.
    struct Fixture {
        label: String,
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    fn fixture(label: impl Into<String>, make: impl FnOnce(&Path)) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("target");
        make(&path);
        Fixture {
            label: label.into(),
            _dir: dir,
            path,
        }
    }

    fn file_at(path: &Path, mode: u32, sec: i64, nsec: i64) {
        fs::write(path, b"hello\n").expect("write");
        chmod(path, mode);
        set_mtime(path, sec, nsec);
    }

    fn dir_at(path: &Path, mode: u32, sec: i64, nsec: i64) {
        fs::create_dir(path).expect("mkdir");
        chmod(path, mode);
        set_mtime(path, sec, nsec);
    }

    fn run_all(fixtures: &[Fixture]) {
        for (tz_env, tz) in zones() {
            for f in fixtures {
                assert_matches_ls(&f.label, &f.path, tz_env, &tz);
            }
        }
    }

    #[test]
    fn modes_match_gnu_ls() {
        if !have_gnu_ls() {
            return;
        }
        let base = Timestamp::now().as_second() - 3600;
        let mut fixtures = Vec::new();
        for mode in [
            0o755, 0o700, 0o000, 0o1777, 0o1776, 0o2755, 0o2745, 0o4755, 0o4644, 0o6755,
        ] {
            fixtures.push(fixture(format!("dir {mode:04o}"), |p| {
                dir_at(p, mode, base, 5)
            }));
            fixtures.push(fixture(format!("file {mode:04o}"), |p| {
                file_at(p, mode, base, 5)
            }));
        }
        fixtures.push(fixture("symlink", |p| {
            std::os::unix::fs::symlink("some/where else", p).expect("symlink");
            set_mtime(p, base - 86_400 * 300, 0);
        }));
        fixtures.push(fixture("dangling symlink to dir", |p| {
            std::os::unix::fs::symlink("/nonexistent/dir/", p).expect("symlink");
        }));
        fixtures.push(fixture("fifo", |p| {
            nix::unistd::mkfifo(p, Mode::from_bits_truncate(0o640)).expect("mkfifo");
            set_mtime(p, base, 0);
        }));
        fixtures.push(fixture("socket", |p| {
            // Binding creates the socket inode; it outlives the listener.
            drop(std::os::unix::net::UnixListener::bind(p).expect("bind"));
        }));
        fixtures.push(fixture("hard-linked file", |p| {
            file_at(p, 0o644, base, 0);
            fs::hard_link(p, p.with_extension("2")).expect("link");
            fs::hard_link(p, p.with_extension("3")).expect("link");
        }));
        fixtures.push(fixture("bigger file", |p| {
            fs::write(p, vec![b'x'; 123_456]).expect("write");
        }));
        if is_root() {
            for (label, kind, dev) in [
                ("char device", SFlag::S_IFCHR, nix::sys::stat::makedev(1, 3)),
                (
                    "block device",
                    SFlag::S_IFBLK,
                    nix::sys::stat::makedev(7, 0),
                ),
                (
                    "char device, big numbers",
                    SFlag::S_IFCHR,
                    nix::sys::stat::makedev(4000, 1_000_000),
                ),
            ] {
                fixtures.push(fixture(label, |p| {
                    nix::sys::stat::mknod(p, kind, Mode::from_bits_truncate(0o620), dev)
                        .expect("mknod");
                }));
            }
            fixtures.push(fixture("unknown owner 54321:54321", |p| {
                file_at(p, 0o640, base, 0);
                nix::unistd::chown(
                    p,
                    Some(nix::unistd::Uid::from_raw(54321)),
                    Some(nix::unistd::Gid::from_raw(54321)),
                )
                .expect("chown");
            }));
            fixtures.push(fixture("setuid dir owned by nobody:nogroup", |p| {
                dir_at(p, 0o755, base, 0);
                nix::unistd::chown(
                    p,
                    Some(nix::unistd::Uid::from_raw(65534)),
                    Some(nix::unistd::Gid::from_raw(65534)),
                )
                .expect("chown");
                chmod(p, 0o6755);
            }));
        } else {
            println!("note: not root: skipping device and chown cases");
        }
        for dev in ["/dev/null", "/dev/loop0"] {
            if Path::new(dev).exists() {
                fixtures.push(Fixture {
                    label: dev.to_owned(),
                    _dir: tempfile::tempdir().expect("tempdir"),
                    path: PathBuf::from(dev),
                });
            }
        }
        run_all(&fixtures);
    }

    #[test]
    fn mtimes_match_gnu_ls() {
        if !have_gnu_ls() {
            return;
        }
        let now = Timestamp::now();
        let (s, ns) = (now.as_second(), i64::from(now.subsec_nanosecond()));
        let day = 86_400;
        let cases: Vec<(&str, i64, i64)> = vec![
            ("now - 1h", s - 3600, ns),
            ("now - 200 days", s - 200 * day, ns),
            ("now + 1 day (future)", s + day, ns),
            ("now + 10 years", s + 3652 * day, ns),
            ("1970 epoch", 0, 0),
            ("1970 summer", 15_000_000, 0),
            ("just over six months", s - SIX_MONTHS_SECS - 2, ns),
            // A minute inside, so the gap until ls reads its clock is harmless.
            ("just under six months", s - SIX_MONTHS_SECS + 60, ns),
            ("now - 100 days", s - 100 * day, ns),
            ("before 1970", -1_000_000_000, 999_999_999),
        ];
        let fixtures: Vec<Fixture> = cases
            .into_iter()
            .flat_map(|(label, sec, nsec)| {
                [
                    fixture(format!("file, {label}"), |p| file_at(p, 0o644, sec, nsec)),
                    fixture(format!("dir, {label}"), |p| dir_at(p, 0o755, sec, nsec)),
                ]
            })
            .collect();
        run_all(&fixtures);
    }

    /// Years outside 0..=9999 and outside `tm_year`, where the filesystem can
    /// store them (tmpfs can; ext4 clamps to 1901..2446).
    #[test]
    fn extreme_years_match_gnu_ls() {
        if !have_gnu_ls() {
            return;
        }
        let Some(base) = ["/dev/shm", "/tmp"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_dir())
        else {
            return;
        };
        let cases: [(&str, i64); 12] = [
            ("year 12000", 316_516_665_600),
            ("year 9999 end", 253_402_300_740),
            ("year 10000 start", 253_402_300_800),
            ("year 33", -61_109_049_600),
            ("year 0", -62_167_219_200),
            ("year -1", -62_198_755_200),
            ("year -249", -70_000_000_000),
            ("year -10000", -377_705_116_800),
            ("2^40", 1 << 40),
            ("2^55", 1 << 55),
            ("i64::MAX", i64::MAX),
            ("i64::MIN", i64::MIN),
        ];
        let mut fixtures = Vec::new();
        for (label, sec) in cases {
            let dir = tempfile::tempdir_in(base).expect("tempdir");
            let path = dir.path().join("target");
            fs::write(&path, b"").expect("write");
            set_mtime(&path, sec, 0);
            if fs::metadata(&path).expect("stat").mtime() != sec {
                println!("note: {} cannot store {label}: skipped", base.display());
                continue;
            }
            fixtures.push(Fixture {
                label: label.to_owned(),
                _dir: dir,
                path,
            });
        }
        run_all(&fixtures);
    }

    #[test]
    fn acl_and_context_markers_match_gnu_ls() {
        if !have_gnu_ls() {
            return;
        }
        let have_setfacl = Command::new("setfacl").arg("--version").output().is_ok();
        let setfacl = |args: &[&str], p: &Path| {
            let st = Command::new("setfacl")
                .args(args)
                .arg(p)
                .status()
                .expect("setfacl");
            assert!(st.success(), "setfacl {args:?} failed");
        };
        let set_context = |p: &Path, value: &[u8]| -> bool {
            let c_path = CString::new(p.as_os_str().as_bytes()).unwrap();
            // SAFETY: valid C strings and a buffer of the given length.
            let rc = unsafe {
                libc::lsetxattr(
                    c_path.as_ptr(),
                    c"security.selinux".as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            rc == 0
        };
        let base = Timestamp::now().as_second() - 7200;
        let mut fixtures = Vec::new();
        if have_setfacl {
            fixtures.push(fixture("file with access ACL", |p| {
                file_at(p, 0o640, base, 0);
                setfacl(&["-m", "u:nobody:r"], p);
            }));
            fixtures.push(fixture("dir with default ACL only", |p| {
                dir_at(p, 0o755, base, 0);
                setfacl(&["-d", "-m", "u:nobody:rx"], p);
            }));
            fixtures.push(fixture("dir with access ACL", |p| {
                dir_at(p, 0o1770, base, 0);
                setfacl(&["-m", "g:nogroup:rwx"], p);
            }));
            fixtures.push(fixture("file with ACL equal to its mode", |p| {
                file_at(p, 0o640, base, 0);
                setfacl(&["-m", "u::rw-,g::r--,o::---"], p);
            }));
            fixtures.push(fixture("file with ACL then removed", |p| {
                file_at(p, 0o640, base, 0);
                setfacl(&["-m", "u:nobody:r"], p);
                setfacl(&["-b"], p);
            }));
        } else {
            println!("note: setfacl not installed: skipping ACL cases");
        }
        let probe = tempfile::tempdir().expect("tempdir");
        let probe_path = probe.path().join("probe");
        fs::write(&probe_path, b"").expect("write");
        if is_root() && set_context(&probe_path, b"system_u:object_r:tmp_t:s0\0") {
            fixtures.push(fixture("file with security context", |p| {
                file_at(p, 0o644, base, 0);
                assert!(set_context(p, b"system_u:object_r:tmp_t:s0\0"));
            }));
            fixtures.push(fixture("file labelled unlabeled", |p| {
                file_at(p, 0o644, base, 0);
                assert!(set_context(p, b"unlabeled\0"));
            }));
            fixtures.push(fixture("file with long security context", |p| {
                file_at(p, 0o644, base, 0);
                let long = format!("system_u:object_r:{}_t:s0\0", "x".repeat(200));
                assert!(set_context(p, long.as_bytes()));
            }));
            fixtures.push(fixture("symlink with security context", |p| {
                std::os::unix::fs::symlink("elsewhere", p).expect("symlink");
                assert!(set_context(p, b"system_u:object_r:tmp_t:s0\0"));
            }));
            if have_setfacl {
                fixtures.push(fixture("file with context and ACL", |p| {
                    file_at(p, 0o644, base, 0);
                    assert!(set_context(p, b"system_u:object_r:tmp_t:s0\0"));
                    setfacl(&["-m", "u:nobody:r"], p);
                }));
            }
        } else {
            println!("note: cannot set security.selinux here: skipping context cases");
        }
        run_all(&fixtures);
    }

    /// `time_zone_from_env` against `ls` run with the same `TZ`/`TZDIR`.
    #[test]
    fn tz_env_matches_gnu_ls() {
        if !have_gnu_ls() {
            return;
        }
        let now = Timestamp::now().as_second();
        // Recent times show the hour, so an offset mismatch is visible;
        // 100 days apart puts most zones on both sides of a DST switch.
        let fixtures: Vec<Fixture> = [
            ("now - 1h", now - 3600),
            ("now - 100 days", now - 100 * 86_400),
            ("now - 170 days", now - 170 * 86_400),
            ("1970", 15_000_000),
        ]
        .into_iter()
        .map(|(label, sec)| fixture(label, |p| file_at(p, 0o644, sec, 0)))
        .collect();

        let values: &[Option<&str>] = &[
            None,
            Some(""),
            Some(":"),
            Some("Foo/Bar"),
            Some("america/new_york"),
            Some("America"),
            Some("/dev/null"),
            Some("garbage with spaces"),
            Some(":UTC"),
            Some("UTC"),
            Some(":America/New_York"),
            Some("Australia/Lord_Howe"),
            Some("/usr/share/zoneinfo/Asia/Kolkata"),
            Some(":/usr/share/zoneinfo/America/Sao_Paulo"),
            Some("/nonexistent/zoneinfo/Europe/Paris"),
            Some("EST5EDT"),
            Some("EST5EDT,M3.2.0,M11.1.0"),
            Some("CET-1CEST,M3.5.0,M10.5.0/3"),
            Some("XYZ5"),
            Some("XYZ-3:30"),
            Some("<+0530>-5:30"),
            Some("UTC0"),
            Some("Etc/GMT+3"),
        ];
        for &value in values {
            let tz = crate::tz::time_zone_from_env(value.map(OsStr::new), None);
            for f in &fixtures {
                let now = Timestamp::now();
                let expected = gnu_ls(&f.path, value, None);
                let actual = ls_ld(&f.path, now, &tz).expect("ls_ld");
                assert_lines_eq(&format!("{} [TZ={value:?}]", f.label), &expected, &actual);
            }
        }

        // A TZDIR without the zone makes glibc fall back to UTC.
        let empty = tempfile::tempdir().expect("tempdir");
        let tzdir = empty.path().to_str().expect("utf-8 tempdir");
        for value in ["America/New_York", "Asia/Kolkata"] {
            let tz =
                crate::tz::time_zone_from_env(Some(OsStr::new(value)), Some(OsStr::new(tzdir)));
            for f in &fixtures {
                let now = Timestamp::now();
                let expected = gnu_ls(&f.path, Some(value), Some(tzdir));
                let actual = ls_ld(&f.path, now, &tz).expect("ls_ld");
                assert_lines_eq(
                    &format!("{} [TZ={value} TZDIR=empty]", f.label),
                    &expected,
                    &actual,
                );
            }
        }
    }

    #[test]
    fn mode_string_covers_all_special_bits() {
        // (setuid, setgid, sticky) × execute bits on/off in each triplet.
        for special in 0..8u32 {
            for exec in 0..8u32 {
                let mode = libc::S_IFREG
                    | (special << 9)
                    | 0o666
                    | ((exec & 4) << 4)
                    | ((exec & 2) << 2)
                    | (exec & 1);
                let got = mode_string(mode);
                let slot = |x: bool, on: bool, c: char| match (on, x) {
                    (true, true) => c,
                    (true, false) => c.to_ascii_uppercase(),
                    (false, true) => 'x',
                    (false, false) => '-',
                };
                let want: String = [
                    '-',
                    'r',
                    'w',
                    slot(exec & 4 != 0, special & 4 != 0, 's'),
                    'r',
                    'w',
                    slot(exec & 2 != 0, special & 2 != 0, 's'),
                    'r',
                    'w',
                    slot(exec & 1 != 0, special & 1 != 0, 't'),
                ]
                .iter()
                .collect();
                assert_eq!(got, want, "mode {mode:o}");
            }
        }
        let cases = [
            (libc::S_IFDIR | 0o755, "drwxr-xr-x"),
            (libc::S_IFDIR | 0o1777, "drwxrwxrwt"),
            (libc::S_IFDIR | 0o1776, "drwxrwxrwT"),
            (libc::S_IFDIR | 0o2745, "drwxr-Sr-x"),
            (libc::S_IFREG | 0o4644, "-rwSr--r--"),
            (libc::S_IFREG | 0o6755, "-rwsr-sr-x"),
            (libc::S_IFREG | 0o7000, "---S--S--T"),
            (libc::S_IFREG | 0o7777, "-rwsrwsrwt"),
            (libc::S_IFREG, "----------"),
            (libc::S_IFLNK | 0o777, "lrwxrwxrwx"),
            (libc::S_IFIFO | 0o644, "prw-r--r--"),
            (libc::S_IFSOCK | 0o755, "srwxr-xr-x"),
            (libc::S_IFCHR | 0o666, "crw-rw-rw-"),
            (libc::S_IFBLK | 0o660, "brw-rw----"),
            (0o644, "?rw-r--r--"),
        ];
        for (mode, want) in cases {
            assert_eq!(mode_string(mode), want, "mode {mode:o}");
        }
    }

    #[test]
    fn recent_boundary_is_nanosecond_exact() {
        let utc = TimeZone::UTC;
        let now = Timestamp::new(1_700_000_000, 500).unwrap();
        let (s, ns) = (1_700_000_000i64, 500i64);
        let edge = s - SIX_MONTHS_SECS;
        let recent = |sec, nsec| !format_mtime(sec, nsec, now, &utc).ends_with("  2023");
        assert!(!recent(edge, ns), "exactly six months ago is old");
        assert!(recent(edge, ns + 1));
        assert!(!recent(edge, ns - 1));
        assert!(!recent(s, ns), "exactly now is not recent");
        assert!(recent(s, ns - 1));
        assert!(!recent(s, ns + 1));
        assert_eq!(format_mtime(s - 60, 0, now, &utc), "Nov 14 22:12");
        assert_eq!(format_mtime(s, ns, now, &utc), "Nov 14  2023");
        assert_eq!(format_mtime(i64::MAX, 0, now, &utc), "9223372036854775807");
        assert_eq!(format_mtime(-1, 999_999_999, now, &utc), "Dec 31  1969");
        assert_eq!(format_mtime(-62_198_755_200, 0, now, &utc), "Jan  1  -001");
    }
}
