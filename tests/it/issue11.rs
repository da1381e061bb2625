//! Regression tests for issue 11, one per disagreement the CLI review found:
//! `--remote=H` and `--remote H` ran differently, the shorthand's flags
//! depended on their position, the two personas found the checkout by
//! different cwd rules, a full disk made every persona abort, and each
//! environment had its own man page.

use std::fs;
use std::path::Path;
use std::process::Stdio;

use crate::harness::*;

/// A deploy.sh that prints its arguments and whether the lock is held.
fn echo_deploy(w: &World) {
    w.script(
        "deploy/scripts/deploy.sh",
        "#!/bin/sh\nprintf 'deploy.sh'; printf ' %s' \"$@\"; echo\n\
         for d in \"$DEPLOY_LOCK_DIR\"/*.lock \"$CHECK_DIR\"/*.lock; do [ -d \"$d\" ] && echo \"held: $d\"; done\nexit 0\n",
    );
}

#[test]
fn issue_11_remote_with_and_without_equals_are_one_run() {
    let w = World::new();
    echo_deploy(&w);
    // The "server": any ssh call answers that its lock is free.
    let ssh = w.script(
        "fake-ssh",
        "#!/bin/sh\ncase \"$*\" in *--json*) echo '{\"verdict\": \"free\"}' ;; esac\nexit 0\n",
    );
    let run = |args: &[&str]| w.deploy_lock(args).env("DEPLOY_LOCK_SSH", &ssh).run();
    let a = run(&["staging", "--remote=deploy@h", "--dry-run"]);
    let b = run(&["staging", "--remote", "deploy@h", "--dry-run"]);
    // Server checked, no local lock, no --force added, --remote passed on.
    a.code(0)
        .stderr("")
        .stdout("deploy.sh staging --remote deploy@h --dry-run\n");
    b.code(0).stderr("").stdout(&a.stdout);
    assert!(!w.lock_path("staging").exists());
}

#[test]
fn issue_11_shorthand_flags_are_ours_wherever_they_stand() {
    let w = World::new();
    echo_deploy(&w);
    let elsewhere = w.tmp.path().join("other-locks");
    fs::create_dir(&elsewhere).unwrap();
    let x = elsewhere.to_str().unwrap();
    let held = format!("held: {x}/togather-deploy-staging.lock\n");
    for args in [
        &["staging", "--dry-run", "--lock-dir", x][..],
        &["staging", "--lock-dir", x, "--dry-run"],
        &["--lock-dir", x, "staging", "--dry-run"],
        &["staging", "--dry-run", &format!("--lock-dir={x}")],
    ] {
        w.deploy_lock(args)
            .env("CHECK_DIR", x)
            .run()
            .code(0)
            .stderr("")
            .stdout(&format!("deploy.sh staging --force --dry-run\n{held}"));
    }
    // --wait too, before or after the environment.
    for args in [
        &["--wait=5", "staging", "--branch", "main"][..],
        &["staging", "--branch", "main", "--wait=5"],
    ] {
        w.deploy_lock(args)
            .run()
            .code(0)
            .stderr("")
            .stdout(&format!(
                "deploy.sh staging --force --branch main\nheld: {}\n",
                w.lock_path("staging").display()
            ));
    }
}

/// A shortcut (symlink) into the checkout's deploy/ folder: both personas,
/// from there, use that checkout (the physical working directory, git's
/// rule).
#[test]
fn issue_11_both_personas_find_the_checkout_from_a_shortcut() {
    let w = World::new();
    w.write_state("{\"lock\": {\"locked\": false}}\n");
    let bin = w.tmp.path().join("bin");
    fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("unlock.sh")).unwrap();
    let shortcut = w.tmp.path().join("shortcut");
    std::os::unix::fs::symlink(w.root.join("deploy"), &shortcut).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let legacy = w
        .cmd("unlock.sh")
        .env("PATH", &path)
        .env("PWD", &shortcut)
        .dir(&shortcut);
    let mut legacy = legacy;
    legacy.cmd.arg("staging");
    let out = legacy.run();
    out.code(0).stderr("");
    assert!(
        out.stdout.contains("State file info:\n  Locked: false\n"),
        "{}",
        out.stdout
    );
    let out = w
        .deploy_lock(&["status", "staging"])
        .env("PWD", &shortcut)
        .dir(&shortcut)
        .run();
    out.code(0).stderr("");
    assert!(
        out.stdout.contains("State file info:\n  Locked: false\n"),
        "{}",
        out.stdout
    );
}

/// `> /dev/full`: one line on stderr and the I/O exit status, never a
/// panic or an abort, for each persona and output form.
#[test]
fn issue_11_a_full_disk_is_a_clean_error_for_each_persona() {
    if !Path::new("/dev/full").exists() {
        skip!("/dev/full is not available");
        return;
    }
    let w = World::new();
    let full = |mut c: Cmd, want: i32| {
        c.cmd
            .stdout(
                fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            )
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let out = c.grouped().output().unwrap();
        assert_eq!(out.status.code(), Some(want), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "ERROR: cannot write to standard output: No space left on device (os error 28)\n"
        );
    };
    full(w.deploy_lock(&["status", "staging"]), 74);
    full(w.deploy_lock(&["status", "staging", "--json"]), 74);
    full(w.deploy_lock(&["--help"]), 74);
    full(w.unlock_sh(&["staging"]), 1);
    full(w.unlock_sh(&["--help"]), 1);
    full(w.unlock_sh(&["staging", "--bogus"]), 1);
    // A reader that went away is no error at all.
    let mut c = w.deploy_lock(&["status", "staging"]);
    c.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.grouped().spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn issue_11_no_per_environment_man_pages() {
    let man = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let mut pages: Vec<String> = fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "deploy-lock-check.1",
            "deploy-lock-freeze.1",
            "deploy-lock-log.1",
            "deploy-lock-run.1",
            "deploy-lock-status.1",
            "deploy-lock-unfreeze.1",
            "deploy-lock-unlock.1",
            "deploy-lock-wait.1",
            "deploy-lock.1",
            "unlock.sh.1"
        ]
    );
    let run = fs::read_to_string(man.join("deploy-lock-run.1")).unwrap();
    for flag in [
        "\\-\\-wait",
        "\\-\\-remote\\-dir",
        "\\-\\-force",
        "DEPLOY_SH_ARGS",
    ] {
        assert!(run.contains(flag), "deploy-lock-run.1 lacks {flag}");
    }
}
