//! User and group names for ids, without glibc's in-process NSS.
//!
//! Why not getpwuid(3)/getgrgid(3): install.sh links deploy-lock statically
//! on glibc systems (process start-up is most of a status call, see the
//! README's performance section). A static glibc still reads the `files`
//! source itself, but loads every other source named in nsswitch.conf
//! (systemd, sss, ldap) with dlopen, built against the glibc the binary was
//! linked with; after an OS upgrade that mix can fail or crash. So no NSS
//! code runs in this process:
//! - the `files` source is read here, as nss_files does: the first entry
//!   whose id field matches wins; blank lines, `#` comments and the `+`/`-`
//!   lines of the old compat syntax are skipped;
//! - an id the file does not have is asked of `getent(1)`, the system's own
//!   dynamically linked resolver, which follows nsswitch.conf in full. That
//!   costs a process only for ids missing from /etc/passwd or /etc/group.
//!
//! Consequence, stated for whoever reads a name we print: when
//! nsswitch.conf puts another source *before* `files` and both know an id
//! under different names, we show the `files` name.

use std::path::Path;
use std::process::{Command, Stdio};

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// The name of user `uid`, or None when no source knows it.
pub fn user_name(uid: u32) -> Option<String> {
    lookup("passwd", Path::new(PASSWD), uid)
}

/// The name of group `gid`, or None when no source knows it.
pub fn group_name(gid: u32) -> Option<String> {
    lookup("group", Path::new(GROUP), gid)
}

fn lookup(database: &str, file: &Path, id: u32) -> Option<String> {
    if let Ok(text) = std::fs::read(file)
        && let Some(name) = find(&text, id)
    {
        return Some(name);
    }
    getent(database, id)
}

/// The first entry of a passwd- or group-format text whose third field is
/// `id` (both formats are `name:password:id:...`).
fn find(text: &[u8], id: u32) -> Option<String> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let line = line.trim_ascii_start();
        if line.is_empty() || matches!(line[0], b'#' | b'+' | b'-') {
            return None;
        }
        let mut fields = line.split(|&b| b == b':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let entry_id = fields.next()?;
        // Compared as numbers, as nss_files reads them (`0007` is 7).
        let entry_id: u32 = std::str::from_utf8(entry_id).ok()?.parse().ok()?;
        (entry_id == id && !name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
    })
}

/// `getent DATABASE ID`: its one line, checked to be that id (getent takes
/// an all-digit key as a name too when no id matches).
fn getent(database: &str, id: u32) -> Option<String> {
    let out = Command::new("getent")
        .arg(database)
        .arg(id.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    find(&out.stdout, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_entry_with_the_id_wins_and_comments_and_compat_lines_are_skipped() {
        let text = b"# comment\n\n+@netgroup::::::\n-evil:x:7:7::/:/bin/sh\n  root:x:0:0:root:/root:/bin/bash\ndeploy:x:1000:1000::/home/deploy:/bin/bash\ntwin:x:1000:1000::/:/bin/sh\nshort:x\n";
        assert_eq!(find(text, 0).as_deref(), Some("root"));
        assert_eq!(find(text, 1000).as_deref(), Some("deploy"));
        assert_eq!(find(text, 7), None);
        assert_eq!(find(text, 10), None);
        // A prefix of the id is not the id; leading zeros are.
        assert_eq!(find(b"a:x:100:1\n", 10), None);
        assert_eq!(find(b"b:x:0010:1\n", 10).as_deref(), Some("b"));
        assert_eq!(find(b"c:x::1\nd:x:x1:1\n", 1), None);
        // Group format: name:password:gid:members.
        assert_eq!(find(b"staff:x:50:ann,bob\n", 50).as_deref(), Some("staff"));
        // An entry with no name names nothing.
        assert_eq!(find(b":x:5:5\n", 5), None);
    }

    #[test]
    fn ids_of_this_system_resolve_as_getent_resolves_them() {
        // Root is in /etc/passwd on every system the tests run on.
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(group_name(0).as_deref(), Some("root"));
        // An id no source knows: the file misses, getent answers 2.
        assert_eq!(user_name(3_999_999_999), None);
        assert_eq!(group_name(3_999_999_999), None);
    }
}
