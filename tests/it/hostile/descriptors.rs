//! Issue 19: every mode or owner change is made on an open descriptor
//! (fchmod/fchown before the rename), never by name, where a symlink swapped
//! in could redirect it; checked with strace over the main operations, run
//! with umask 077, whose sidecars still get their documented mode.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::harness::*;

/// The syscalls that change a mode or an owner by path.
const BY_PATH: &str = "chmod,fchmodat,chown,lchown,fchownat";

#[test]
fn no_mode_or_owner_is_changed_by_name() {
    if which::which("strace").is_err() {
        skip!("needs strace");
        return;
    }
    let w = World::new();
    let log = w.tmp.path().join("strace.log");
    let trace = |script: &str| {
        let mut c = w.cmd("strace");
        c.cmd
            .args(["-f", "-qq", "-e", "signal=none", "-e"])
            .arg(format!("trace={BY_PATH},fchmod,fchown"))
            .arg("-o")
            .arg(&log)
            .args(["/bin/sh", "-c", &format!("umask 077; {script}"), "sh", BIN]);
        c.run()
    };
    // run (guard, run file, lock files, state file), an unlock of the
    // running holder from inside it (the announcement), status and list,
    // a legacy lock taken over with --force, unlock of a dead holder's lock,
    // and --reset-state of a broken state file.
    trace(
        "\"$1\" run staging -- \"$1\" unlock staging --yes >/dev/null && \
         \"$1\" status staging >/dev/null && \"$1\" list >/dev/null",
    )
    .code(0)
    .stdout("")
    .any_stderr();
    let calls = fs::read_to_string(&log).unwrap();
    w.legacy_lock("staging", now() - 60);
    w.legacy_state("staging", now() - 60, &dead_pid().to_string(), &hostname());
    trace("\"$1\" run --force staging -- true && \"$1\" unlock staging --yes >/dev/null")
        .code(0)
        .stdout("")
        .any_stderr();
    let calls = calls + &fs::read_to_string(&log).unwrap();
    w.legacy_lock("staging", now() - 60);
    w.write_state("{ broken");
    trace("\"$1\" unlock staging --reset-state --yes >/dev/null")
        .code(0)
        .stdout("")
        .any_stderr();
    let calls = calls + &fs::read_to_string(&log).unwrap();
    // The descriptor calls are traced too, so the trace is known to work:
    // the sidecars and the state file's temp copy are fchmod-ed.
    let on_fd = |l: &str| {
        l.contains(" fchmod(")
            || l.contains(" fchown(")
            // fchownat on an fd with an empty path is fchown.
            || (l.contains("fchownat(") && l.contains("\"\"") && l.contains("AT_EMPTY_PATH"))
    };
    assert!(
        calls.lines().filter(|l| l.contains(" fchmod(")).count() >= 3,
        "no fchmod traced:\n{calls}"
    );
    let by_name: Vec<&str> = calls.lines().filter(|l| !on_fd(l)).collect();
    assert!(by_name.is_empty(), "by name:\n{}", by_name.join("\n"));
    // And the documented modes, whatever the umask.
    for name in [
        ".togather-deploy-staging.run",
        "togather-deploy-staging.guard",
        ".togather-deploy-staging.unlocked",
    ] {
        let m = fs::metadata(w.locks.join(name)).unwrap().mode() & 0o7777;
        assert_eq!(m, 0o644, "{name}");
    }
}
