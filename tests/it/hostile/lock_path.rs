//! Whatever sits at the lock path or inside a lock directory: never
//! followed, never emptied of what is not ours.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::harness::*;

/// Item 2: whatever that is not a directory sits at the lock path is never
/// followed, emptied or removed: status shows it (the `ls -ld` line of a
/// symlink, as the legacy's `[ -d ]` and `ls -ld` did), run and run --force
/// exit 75 without running anything, force-unlock refuses; the target's files
/// and the state are untouched.
#[test]
fn a_non_directory_at_the_lock_path_is_never_followed_by_status_or_run() {
    let w = World::new();
    let lock = w.lock_path("staging");
    let target = w.tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    // A lock-looking target: an ancient locked_at and an owner file. Followed,
    // they would make the lock stale and taken over, and emptied.
    fs::write(target.join("locked_at"), "1000000000\n").unwrap();
    fs::write(target.join("owner.json"), "{}").unwrap();
    fs::write(target.join("precious.txt"), "keep me\n").unwrap();
    w.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false}, \"keep\": 1}\n");
    let state = untouched(&w.state_path());
    let marker = w.tmp.path().join("ran");
    let state_lines = "State file info:\n  Locked: false\n  Locked by: N/A\n  Locked at: N/A\n  Deployment ID: N/A\n  PID: N/A\n  Hostname: N/A\n\n";
    let fifo =
        |p: &Path| nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let kinds: [(&str, MakeAt<'_>, String, bool); 4] = [
        (
            "a symlink to a directory",
            Box::new(|p: &Path| std::os::unix::fs::symlink(&target, p).unwrap()),
            format!("a symbolic link to {}", target.display()),
            true,
        ),
        (
            "a dangling symlink",
            Box::new(|p: &Path| std::os::unix::fs::symlink("/nonexistent/x", p).unwrap()),
            "a symbolic link to /nonexistent/x".to_string(),
            false,
        ),
        (
            "a regular file",
            Box::new(|p: &Path| fs::write(p, "squatter\n").unwrap()),
            "a regular file".to_string(),
            false,
        ),
        (
            "a FIFO",
            Box::new(fifo),
            "not a directory".to_string(),
            false,
        ),
    ];
    let mut refusals = 0;
    for (name, make, described, shows_as_dir) in &kinds {
        make(&lock);
        let ident = untouched_meta(&lock);
        // The legacy block: `[ -d ]` follows a symlink, `ls -ld` does not.
        let dir_part = if *shows_as_dir {
            format!(
                "Lock directory exists: {}\n{}\n",
                lock.display(),
                real_ls_ld(&lock, "UTC")
            )
        } else {
            // The legacy said "Not found (unlocked)" and no more; now one ⚠
            // line says what blocks the path.
            format!(
                "{NO_DIR}  ⚠ {} is {described}, not a lock directory: it blocks every deploy; check it and remove it by hand\n",
                lock.display()
            )
        };
        let status = format!("{HEADER}{dir_part}\n{state_lines}");
        let child = w.unlock_sh(&["staging"]).spawn();
        finish_within(child, Duration::from_secs(20))
            .code(0)
            .stdout(&status);
        let out = w.deploy_lock(&["status", "staging", "--json"]).run();
        out.code(0);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            (
                &v["verdict"],
                &v["locked"],
                &v["lock_dir_exists"],
                &v["holder"]
            ),
            (
                &Value::from("obstructed"),
                &Value::from(true),
                &Value::from(false),
                &Value::Null
            ),
            "{name}"
        );
        let refusal = format!(
            "ERROR: {l} is {described}, not a lock directory; deploy-lock never follows or removes it: check what it is (ls -la {l}) and remove it by hand\n",
            l = lock.display()
        );
        for args in [
            &["run", "staging", "--", "touch", marker.to_str().unwrap()][..],
            &[
                "run",
                "--force",
                "staging",
                "--",
                "touch",
                marker.to_str().unwrap(),
            ],
        ] {
            let child = w.deploy_lock(args).spawn();
            finish_within(child, Duration::from_secs(20))
                .code(75)
                .stdout("")
                // Issue 12: the refusal alone; the status block is status's.
                .stderr(&refusal);
            refusals += 1;
        }
        w.deploy_lock(&["unlock", "staging", "--yes"])
            .run()
            .code(75)
            .stderr(&refusal);
        w.unlock_sh(&["staging", "--force"])
            .stdin(b"yes\n")
            .run()
            .code(1)
            .stderr(&refusal);
        refusals += 2;
        assert!(!marker.exists(), "{name}: the command ran");
        assert_eq!(
            untouched_meta(&lock),
            ident,
            "{name}: the lock path changed"
        );
        assert_eq!(untouched(&w.state_path()), state, "{name}");
        assert_eq!(
            tree(&target),
            ["locked_at", "owner.json", "precious.txt"],
            "{name}"
        );
        assert_eq!(
            fs::read_to_string(target.join("precious.txt")).unwrap(),
            "keep me\n"
        );
        fs::remove_file(&lock).unwrap();
    }
    assert_eq!(w.audit_log(), "");
    eprintln!("non-directories at the lock path: {refusals}/{refusals} refusals, 0 followed");
}

/// Item 2: inside a lock directory, `locked_at` and `owner.json` are read
/// without following symlinks. Forged as symlinks (to an ancient time, and to
/// an owner record naming this live test process), they would decide the
/// takeover; unfollowed, the lock is aged by its directory and its holder is
/// the (dead) state record.
#[test]
fn symlinks_inside_a_lock_directory_decide_nothing() {
    let w = World::new();
    let outside = w.tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("ancient"), "1000000000\n").unwrap();
    let me = std::process::id();
    fs::write(
        outside.join("owner"),
        format!(
            r#"{{"environment": "staging", "lock_id": "lock_x", "deployment_id": "dep_x", "locked_by": "mallory@{h}", "locked_at": "2026-01-01T00:00:00Z", "hostname": "{h}", "pid": {me}, "holder_pid": {me}}}"#,
            h = hostname()
        ),
    )
    .unwrap();
    let lock = w.lock_path("staging");
    fs::create_dir(&lock).unwrap();
    std::os::unix::fs::symlink(outside.join("ancient"), lock.join("locked_at")).unwrap();
    let dead = dead_pid();
    w.legacy_state("staging", now() - 60, &dead.to_string(), &hostname());
    // Followed, locked_at would make it 50+ years old and stale: taken over
    // without --force. Not followed, the directory is seconds old.
    let out = w.deploy_lock(&["status", "staging", "--json"]).run();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "orphaned", "{v}");
    assert!(v["age_seconds"].as_i64().unwrap() < 3600, "{v}");
    let before = now();
    let out = w.deploy_lock(&["run", "staging", "--", "true"]).run();
    let after = now();
    // Aged by the directory's mtime, not by the forged locked_at.
    let at = fs::symlink_metadata(&lock).unwrap().mtime();
    let wants: Vec<String> = (before..=after)
        .map(|t| dead_young_refusal("deploy@localhost", at, t, dead, "30 minutes"))
        .collect();
    out.code(75).stderr_one_of(&wants);
    assert!(lock.join("locked_at").is_symlink());
    // Followed, owner.json would name this live process: never taken over.
    std::os::unix::fs::symlink(outside.join("owner"), lock.join("owner.json")).unwrap();
    let v: Value =
        serde_json::from_str(&w.deploy_lock(&["status", "staging", "--json"]).run().stdout)
            .unwrap();
    assert_eq!(v["holder"]["source"], "state_file", "{v}");
    assert_eq!(v["holder_alive"], false, "{v}");
    // The takeover is said on stderr.
    w.deploy_lock(&["run", "--force", "staging", "--", "true"])
        .run()
        .code(0)
        .any_stderr();
    assert!(!lock.exists());
    assert_eq!(tree(&outside), ["ancient", "owner"]);
    assert_eq!(
        fs::read_to_string(outside.join("ancient")).unwrap(),
        "1000000000\n"
    );
}

/// Item 2: a dead holder's directory holding files that are not ours is
/// never taken over by run (not even with --force, not even stale): exit 75
/// naming them, every file (and what a symlink inside points at) intact.
/// Only a confirmed force-unlock removes them (the legacy contract), and it
/// still does not follow the symlink.
#[test]
fn run_never_empties_a_directory_with_unexpected_contents() {
    let w = World::new();
    let outside = w.tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("data.txt"), "keep me\n").unwrap();
    let lock = w.legacy_lock("staging", now() - 7200);
    fs::create_dir(lock.join("cache")).unwrap();
    fs::write(lock.join("cache/build.log"), "x").unwrap();
    std::os::unix::fs::symlink(&outside, lock.join("cache/escape")).unwrap();
    let dead = dead_pid();
    w.legacy_state("staging", now() - 7200, &dead.to_string(), &hostname());
    let state = untouched(&w.state_path());
    let before = tree(&lock);
    let marker = w.tmp.path().join("ran");
    for args in [
        &["run", "staging", "--", "touch", marker.to_str().unwrap()][..],
        &[
            "run",
            "--force",
            "staging",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
        &[
            "run",
            "--wait=0.3",
            "staging",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
    ] {
        let out = w.deploy_lock(args).run();
        let last = out.stderr.lines().last().unwrap_or_default().to_string();
        let refusal = format!(
            "ERROR: the staging lock's holder is not running, but {} holds files deploy-lock did not put there (cache); a takeover would delete them, so it is refused: check them, then remove the directory by hand or with unlock.sh staging --force",
            lock.display()
        );
        if args[1] == "--wait=0.3" {
            out.code(124).stdout("").stderr_after_waiting(
                "ERROR: gave up after 0.3 seconds waiting for the staging lock (held by deploy@localhost)\n",
            );
        } else {
            out.code(75).stdout("").stderr(&format!("{refusal}\n"));
            assert_eq!(last, refusal);
        }
        assert!(!marker.exists());
        assert_eq!(tree(&lock), before, "{args:?}");
        assert_eq!(untouched(&w.state_path()), state);
    }
    let out = w.unlock_sh(&["staging", "--force"]).stdin(b"yes\n").run();
    out.code(0);
    assert!(
        out.stdout
            .contains("⚠ Could not remove lock directory (may not be empty)\n  Trying force remove...\n✓ Lock directory force removed\n"),
        "{}",
        out.stdout
    );
    assert!(!lock.exists());
    assert_eq!(
        fs::read_to_string(outside.join("data.txt")).unwrap(),
        "keep me\n"
    );
}
