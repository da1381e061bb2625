//! A lock directory or guard file another user made in advance in a
//! sticky folder: a clear error, never a hang.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::harness::*;

/// Runs as another user (for the squatter tests): `setpriv` with a uid and
/// gid that have no passwd entry, so nothing on the machine changes.
const RUNNER: u32 = 54_322;
const SQUATTER: u32 = 54_321;

fn can_switch_users() -> bool {
    if !nix::unistd::geteuid().is_root() {
        skip!("the squatter tests need root (to chown and to run as another uid)");
        return false;
    }
    if which_setpriv().is_none() {
        skip!("the squatter tests need setpriv (util-linux)");
        return false;
    }
    true
}

fn which_setpriv() -> Option<PathBuf> {
    ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A world whose lock folder is a sticky, world-writable folder (like /tmp)
/// and whose checkout and HOME belong to RUNNER.
fn sticky_world() -> World {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    fs::set_permissions(w.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for p in tree(w.tmp.path()) {
        let p = w.tmp.path().join(p);
        std::os::unix::fs::lchown(&p, Some(RUNNER), Some(RUNNER)).unwrap();
    }
    std::os::unix::fs::chown(w.tmp.path(), Some(RUNNER), Some(RUNNER)).unwrap();
    std::os::unix::fs::chown(&w.locks, Some(0), Some(0)).unwrap();
    fs::set_permissions(&w.locks, fs::Permissions::from_mode(0o1777)).unwrap();
    w
}

/// `deploy-lock ARGS` as RUNNER.
fn as_runner(w: &World, args: &[&str]) -> Cmd {
    let mut c = w.cmd(which_setpriv().unwrap());
    c.cmd
        .arg(format!("--reuid={RUNNER}"))
        .arg(format!("--regid={RUNNER}"))
        .arg("--clear-groups")
        .arg(BIN)
        .args(args);
    c
}

/// Item 2: a lock directory another user created in advance in a sticky
/// folder (a denial of service). It is never emptied or removed by us, and
/// every way out says whose it is and what to do; once its owner (or root)
/// removes it, as SECURITY.md tells the operator, deploys work again.
#[test]
fn a_lock_directory_squatted_by_another_user() {
    if !can_switch_users() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    for mode in [0o700, 0o755] {
        let w = sticky_world();
        let lock = w.lock_path("staging");
        fs::create_dir(&lock).unwrap();
        // Unlistable to us with a file inside, or listable and empty (a
        // listable one with files is refused earlier, as foreign contents).
        if mode == 0o700 {
            fs::write(lock.join("mine"), "squatter's\n").unwrap();
            std::os::unix::fs::chown(lock.join("mine"), Some(SQUATTER), Some(SQUATTER)).unwrap();
        }
        std::os::unix::fs::chown(&lock, Some(SQUATTER), Some(SQUATTER)).unwrap();
        fs::set_permissions(&lock, fs::Permissions::from_mode(mode)).unwrap();
        let ident = untouched_meta(&lock);
        let marker = w.tmp.path().join("ran");
        let m = marker.to_str().unwrap();
        let not_permitted = format!(
            "ERROR: cannot remove {l}: it belongs to uid {SQUATTER} and its folder only lets owners remove entries; ask uid {SQUATTER} to check it, or clear it as root, audited under your name: sudo deploy-lock unlock staging\n",
            l = lock.display()
        );
        // Fresh: a holder we cannot know and a directory we cannot remove:
        // 75, naming its owner and the way out (not a --force that would fail).
        let out = as_runner(&w, &["run", "staging", "--", "touch", m]).run();
        out.code(75).stdout("").stderr(&format!(
            "ERROR: {l} belongs to uid {SQUATTER}, records no holder deploy-lock can check, and cannot be removed by you.\n\
             Ask uid {SQUATTER} to check it, or clear it as root, audited under your name: sudo deploy-lock unlock staging\n",
            l = lock.display()
        ));
        let last_lines: Vec<&str> = out.stderr.lines().rev().take(2).collect();
        assert_eq!(
            last_lines[..],
            [
                format!("Ask uid {SQUATTER} to check it, or clear it as root, audited under your name: sudo deploy-lock unlock staging").as_str(),
                format!("ERROR: {} belongs to uid {SQUATTER}, records no holder deploy-lock can check, and cannot be removed by you.", lock.display()).as_str(),
            ][..],
            "mode {mode:o}:\n{}",
            out.stderr
        );
        // --force does not take an unknown holder's lock (issue 10): the same.
        let forced = as_runner(&w, &["run", "--force", "staging", "--", "touch", m]).run();
        forced.code(75).stdout("").stderr(&out.stderr);
        // Force-unlock cannot remove it, and says whose.
        let out = as_runner(&w, &["unlock", "staging", "--yes"]).run();
        out.code(74).stderr(&not_permitted);
        assert!(out.stderr.ends_with(&not_permitted), "{}", out.stderr);
        // Aged past the stale timeout: the automatic takeover is tried and
        // fails the same clear way (an unlistable directory is aged by lstat).
        set_mtime(&lock, now() - 7200);
        let v: Value =
            serde_json::from_str(&as_runner(&w, &["status", "staging", "--json"]).run().stdout)
                .unwrap();
        // Stale, but not this user's to take over (issue 21: the verdict
        // says what run will do).
        assert_eq!(v["verdict"], "blocked", "mode {mode:o}: {v}");
        let out = as_runner(&w, &["run", "staging", "--", "touch", m]).run();
        out.code(74).stdout("").stderr(&not_permitted);
        assert!(out.stderr.ends_with(&not_permitted), "{}", out.stderr);
        assert!(!marker.exists());
        assert_eq!(untouched_meta(&lock), ident);
        if mode == 0o700 {
            assert_eq!(
                fs::read_to_string(lock.join("mine")).unwrap(),
                "squatter's\n"
            );
        }
        // The operator's fix (SECURITY.md): root removes it; deploys go on.
        fs::remove_dir_all(&lock).unwrap();
        as_runner(&w, &["run", "staging", "--", "touch", m])
            .run()
            .code(0)
            .stderr("");
        assert!(marker.exists());
    }
}

/// Item 2: the guard file squatted by another user (unreadable to us), or
/// planted as a FIFO or a symlink: a clear error naming it and exit 74, never
/// a hang (a FIFO used to block `run` in open(2) with its signals blocked,
/// so not even Ctrl-C ended it).
#[test]
fn a_squatted_guard_file_is_a_clear_error_not_a_hang() {
    let w = World::new();
    let guard = w.locks.join("togather-deploy-staging.guard");
    nix::unistd::mkfifo(&guard, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    let fifo_err = format!(
        "ERROR: {g}: not a regular file but a FIFO; check what it is (ls -la {g}) and remove it\n",
        g = guard.display()
    );
    let out = finish_within(
        w.deploy_lock(&["run", "staging", "--", "true"]).spawn(),
        Duration::from_secs(20),
    );
    out.code(74).stderr(&fifo_err);
    assert!(out.stderr.ends_with(&fifo_err), "{}", out.stderr);
    assert!(!w.lock_path("staging").exists());
    // unlock needs the guard only when there is something to unlock (issue 12).
    let lock = w.legacy_lock("staging", now() - 60);
    let out = finish_within(
        w.deploy_lock(&["unlock", "staging", "--yes"]).spawn(),
        Duration::from_secs(20),
    );
    out.code(74).stderr(&fifo_err);
    assert!(out.stderr.ends_with(&fifo_err), "{}", out.stderr);
    assert!(lock.join("locked_at").exists());
    fs::remove_dir_all(&lock).unwrap();
    fs::remove_file(&guard).unwrap();
    std::os::unix::fs::symlink(w.tmp.path().join("elsewhere"), &guard).unwrap();
    w.deploy_lock(&["run", "staging", "--", "true"])
        .run()
        .code(74)
        .stderr(&format!(
            "ERROR: {g} cannot be opened (Too many levels of symbolic links (os error 40)): it is a symbolic link owned by {me} with mode 0777; ask {who} to remove it while no deploy runs (sudo rm -rf {g}): deploy-lock re-creates it as a regular file with mode 0644\n",
            g = guard.display(),
            me = user_name(nix::unistd::geteuid().as_raw()),
            who = if nix::unistd::geteuid().is_root() {
                "root".to_string()
            } else {
                format!("{} (or root)", user_name(nix::unistd::geteuid().as_raw()))
            },
        ));
    assert!(
        !w.tmp.path().join("elsewhere").exists(),
        "followed the guard symlink"
    );
    assert!(!w.lock_path("staging").exists());
    fs::remove_file(&guard).unwrap();

    if !can_switch_users() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let w = sticky_world();
    let guard = w.locks.join("togather-deploy-staging.guard");
    fs::write(&guard, "").unwrap();
    std::os::unix::fs::chown(&guard, Some(SQUATTER), Some(SQUATTER)).unwrap();
    fs::set_permissions(&guard, fs::Permissions::from_mode(0o600)).unwrap();
    as_runner(&w, &["run", "staging", "--", "true"])
        .run()
        .code(74)
        .stdout("")
        .stderr(&format!(
            "ERROR: {g} cannot be opened (Permission denied (os error 13)): it is a regular file owned by uid {SQUATTER} with mode 0600; ask uid {SQUATTER} (or root) to remove it while no deploy runs (sudo rm -rf {g}): deploy-lock re-creates it as a regular file with mode 0644\n",
            g = guard.display()
        ));
    assert!(!w.lock_path("staging").exists());
}

/// The name `ls -l` shows for `uid`.
fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name)
}
